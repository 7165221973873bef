"""llmcli keys: a real keyring backend (keyrings.alt's file, chosen by PYTHON_KEYRING_BACKEND with its
data dir under tmp), the 0600 fallback, the lookup order, and a recognisable key that never shows."""

import json
import os
import re
import stat

import pytest

from conftest import invoke
from localserver import Reply, text_stream

KEY = "sk-RECOGNISABLE-7f3a9c2e5b1d"
ALT = "keyrings.alt.file.PlaintextKeyring"
NONE = "keyring.backends.fail.Keyring"


@pytest.fixture
def backend(monkeypatch, tmp_path):
    """Choose a keyring backend for this test (keyring keeps the one it picked for the process)."""
    import keyring.core

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))

    def choose(name):
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", name)
        keyring.core._keyring_backend = None

    yield choose
    keyring.core._keyring_backend = None


def stored_files(home):
    return {p.name for p in home.iterdir()} if home.exists() else set()


def config_rows(*args):
    r = invoke("config", "show", "--json", *args)
    assert r.exit_code == 0, r
    return json.loads(r.stdout), r


def test_keyring_backend_set_get_list_rm_and_use(backend, server, isolated_env, tmp_path):
    backend(ALT)
    r = invoke("keys", "set", "openrouter", input=KEY + "\n")
    assert r.exit_code == 0, r
    assert "stored the key for openrouter in the keyring" in r.stderr and "warning" not in r.stderr
    assert KEY not in r.stdout + r.stderr
    # the key is in the keyring's own file, not in llmcli's
    assert "keys.json" not in stored_files(isolated_env)
    keyring_file = tmp_path / "xdg-data" / "python_keyring" / "keyring_pass.cfg"
    assert keyring_file.exists()
    import keyring

    assert keyring.get_password("llmcli", "openrouter") == KEY

    r = invoke("keys", "list")
    assert r.stdout == "openrouter  keyring\n"
    r = invoke("keys", "get", "openrouter")
    assert r.exit_code == 0 and KEY not in r.stdout and "openrouter: set" in r.stdout and ALT in r.stdout
    r = invoke("keys", "get", "openrouter", "--show")
    assert r.stdout == KEY + "\n"

    rows, r = config_rows("-p", "openrouter")
    assert rows["api_key"]["source"].startswith(f"llmcli keys: keyring ({ALT}")
    assert KEY not in r.stdout and rows["api_key"]["value"] != KEY

    server.chat(Reply(pieces=text_stream("hi")))
    r = invoke("ask", "-p", "openrouter", "--base-url", server.base_url, "q")
    assert r.exit_code == 0 and server.requests[-1].headers["Authorization"] == f"Bearer {KEY}"

    r = invoke("keys", "rm", "openrouter")
    assert r.exit_code == 0 and keyring.get_password("llmcli", "openrouter") is None
    assert invoke("keys", "list").stdout == ""
    r = invoke("keys", "get", "openrouter")
    assert r.exit_code == 3 and "no key is stored for openrouter" in r.stderr
    assert invoke("keys", "rm", "openrouter").exit_code == 3


def test_without_a_usable_backend_the_key_goes_to_a_0600_file_with_a_warning(backend, server, isolated_env):
    backend(NONE)
    r = invoke("keys", "set", "work", input=KEY)
    assert r.exit_code == 0, r
    path = isolated_env / "keys.json"
    assert f"llmcli: warning: no keyring backend is available" in r.stderr and str(path) in r.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(isolated_env / "keys-index.json").st_mode) == 0o600
    assert KEY not in (isolated_env / "keys-index.json").read_text()
    assert invoke("keys", "list").stdout == f"work  key file {path}\n"
    assert invoke("keys", "path").stdout == f"{path}\n"
    # a configured provider called "work" finds it
    cfg = isolated_env.parent / "c.yaml"
    cfg.write_text(f"providers:\n  work:\n    base_url: {server.base_url}\n    model: m\n")
    server.chat(Reply(pieces=text_stream("hi")))
    r = invoke("ask", "--config", cfg, "-p", "work", "q")
    assert r.exit_code == 0 and server.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


def test_lookup_order_flag_env_cmd_keyring_file(backend, isolated_env):
    backend(NONE)
    invoke("keys", "set", "work", input="sk-from-store-123456")
    cfg = isolated_env.parent / "c.yaml"

    def source(provider_cfg, env=None, *args):
        cfg.write_text("providers:\n  work:\n    base_url: http://127.0.0.1:9/v1\n" + provider_cfg)
        cfg.chmod(0o600)
        rows, _ = config_rows("--config", cfg, "-p", "work", *args) if env is None else (None, None)
        if env is not None:
            r = invoke("config", "show", "--json", "--config", cfg, "-p", "work", *args, env=env)
            rows = json.loads(r.stdout)
        return rows["api_key"]["source"]

    file_key = "    api_key: sk-from-file-123456\n"
    assert source(file_key).startswith("llmcli keys: key file")  # the store beats the file
    assert source(file_key + "    api_key_cmd: echo sk-from-cmd-123456\n") == "api_key_cmd"
    assert source(file_key + "    api_key_cmd: echo x\n    api_key_env: TEAM_KEY\n",
                  {"TEAM_KEY": "sk-from-env-123456"}) == "TEAM_KEY"
    assert source(file_key, {"LLMCLI_API_KEY": "sk-from-env-123456"}) == "LLMCLI_API_KEY"
    assert source(file_key, {"LLMCLI_API_KEY": "sk-from-env-123456"}, "--api-key", "sk-flag-123456") == \
        "--api-key flag"
    invoke("keys", "rm", "work")
    assert source(file_key).startswith("config file ")
    assert source("") == "not set; looked in --api-key > LLMCLI_API_KEY > llmcli keys (work) > config file"
    assert source("    api_key_env: TEAM_KEY\n") == \
        "not set; looked in --api-key > LLMCLI_API_KEY > TEAM_KEY > llmcli keys (work) > config file"


def test_bad_names_and_empty_keys(backend):
    backend(NONE)
    r = invoke("keys", "set", "../evil", input=KEY)
    assert r.exit_code == 3 and "invalid key name" in r.stderr
    r = invoke("keys", "set", "ok", input="\n")
    assert r.exit_code == 2 and "no key given" in r.stderr


def test_a_recognisable_key_never_appears_in_output_debug_records_or_json(backend, server, isolated_env):
    backend(ALT)
    invoke("keys", "set", "openrouter", input=KEY)
    seen = []
    # a failing run with --debug saves a replayable record; -u, --json, --jsonl, config show, keys list/get
    server.chat(Reply(status=500, pieces=[b'{"error": {"message": "boom"}}'], content_type="application/json",
                      chunked=False))
    for args in (["--debug", "--json"], ["--debug", "-u"], ["--jsonl"]):
        r = invoke("ask", "-p", "openrouter", "--base-url", server.base_url, "--retries", "0", *args, "q")
        assert r.exit_code == 4, r
        seen += [r.stdout, r.stderr]
    server.chat(Reply(pieces=text_stream("fine", usage={"prompt_tokens": 1, "completion_tokens": 1,
                                                        "total_tokens": 2})))
    r = invoke("ask", "-p", "openrouter", "--base-url", server.base_url, "--debug", "--json", "-u", "q")
    seen += [r.stdout, r.stderr]
    for args in (["config", "show", "-p", "openrouter"], ["config", "show", "--json", "-p", "openrouter"],
                 ["keys", "list"], ["keys", "get", "openrouter"], ["keys", "path"]):
        r = invoke(*args)
        seen += [r.stdout, r.stderr]
    assert server.requests[-1].headers["Authorization"] == f"Bearer {KEY}"  # it was used
    records = list((isolated_env / "debug").glob("*"))
    assert records, "--debug saved no record"
    for path in isolated_env.rglob("*"):
        if path.is_file():
            seen.append(path.read_text(errors="replace"))
    for text in seen:
        assert KEY not in text and KEY[3:20] not in text


def test_a_group_readable_config_with_a_literal_key_warns(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"providers:\n  work:\n    base_url: http://127.0.0.1:9/v1\n    api_key: {KEY}\n")
    cfg.chmod(0o640)
    r = invoke("config", "show", "--config", cfg, "-p", "work")
    assert re.search(r"warning: .* contains an API key and is readable by other users; run: chmod 600", r.stderr)
    assert KEY not in r.stdout + r.stderr


def test_keys_set_prompts_without_echo_on_a_terminal(isolated_env, tmp_path):
    import sys

    import pexpect

    env = dict(os.environ, PYTHON_KEYRING_BACKEND=NONE, XDG_DATA_HOME=str(tmp_path / "xdg-data"))
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "keys", "set", "typed"], env=env, encoding="utf-8",
                          timeout=30, dimensions=(24, 100))
    try:
        child.expect("API key for typed: ")
        child.sendline(KEY)
        child.expect(pexpect.EOF)
        shown = child.before
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, shown
    assert KEY not in shown and "stored the key for typed" in shown
    assert json.loads((isolated_env / "keys.json").read_text()) == {"typed": KEY}
