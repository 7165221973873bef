"""Providers, the config file and precedence: `config init/show`, keys (literal, api_key_env, api_key_cmd),
aliases, provider/model, preset detection from the environment, every preset's URL and headers, models,
and colour. Precedence is checked value by value *and* source by source, end to end through the CLI
against the real local server wherever a request is involved.
"""

import json
import os
import re
import stat
import sys

import pytest

from conftest import invoke
from llmcli.config.settings import CONFIG_TEMPLATE, PRESETS, load_config_file, redact_key, resolve_settings
from localserver import Reply, text_stream

LLMCLI = os.path.join(os.path.dirname(sys.executable), "llmcli")
ANSI = re.compile(r"\x1b\[")


def config_file():
    return os.environ["LLMCLI_CONFIG"]


def write_config(text, mode=0o600):
    path = config_file()
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, mode)
    return path


def resolve(flags=None, **env):
    """resolve_settings with an explicit environment: only the isolated paths plus `env`."""
    base = {"LLMCLI_CONFIG": os.environ["LLMCLI_CONFIG"], "LLMCLI_HOME": os.environ["LLMCLI_HOME"]}
    base.update(env)
    return resolve_settings(flags or {}, base)


def show(*args, env=None):
    """`llmcli config show --json` → {name: (value, source)}."""
    r = invoke("config", "show", "--json", *args, env=env)
    assert r.exit_code == 0, r
    return {name: (row["value"], row["source"]) for name, row in json.loads(r.stdout).items()}, r


def openai_stream():
    return Reply(pieces=text_stream("ok"))


# --------------------------------------------------------------------------------------------
# config init / show


def test_config_init_writes_the_commented_template_0600_at_the_xdg_path(monkeypatch):
    monkeypatch.delenv("LLMCLI_CONFIG")
    expected = os.path.join(os.environ["XDG_CONFIG_HOME"], "llmcli", "config.yaml")
    old_umask = os.umask(0)  # the mode must not depend on a permissive umask
    try:
        r = invoke("config", "init")
    finally:
        os.umask(old_umask)
    assert r.exit_code == 0, r
    assert r.stdout.strip() == expected
    assert invoke("config", "path").stdout.strip() == expected
    assert stat.S_IMODE(os.stat(expected).st_mode) == 0o600
    with open(expected, encoding="utf-8") as fh:
        text = fh.read()
    assert text == CONFIG_TEMPLATE
    assert all(line.startswith("#") for line in text.splitlines() if line.strip()), "every line is a comment"
    assert load_config_file(expected) == ({}, [])

    again = invoke("config", "init")
    assert again.exit_code == 3 and "already exists" in again.stderr and "--force" in again.stderr
    with open(expected, "a", encoding="utf-8") as fh:
        fh.write("model: changed\n")
    assert invoke("config", "init", "--force").exit_code == 0
    with open(expected, encoding="utf-8") as fh:
        assert fh.read() == CONFIG_TEMPLATE


def test_config_show_round_trips_what_init_wrote(monkeypatch):
    monkeypatch.delenv("LLMCLI_CONFIG")
    path = invoke("config", "init").stdout.strip()
    r = invoke("config", "show")
    assert r.exit_code == 0, r
    assert re.search(r"^config_file\s+" + re.escape(path) + r"\s+\(exists\)$", r.stdout, re.M), r.stdout

    with open(path, "a", encoding="utf-8") as fh:
        fh.write("default_provider: work\nproviders:\n  work:\n    base_url: http://127.0.0.1:9/v1/\n"
                 "    model: work-model\n")
    r = invoke("config", "show")
    assert r.exit_code == 0, r
    src = re.escape(f"(config file {path})")
    assert re.search(rf"^provider\s+work\s+{src}$", r.stdout, re.M), r.stdout
    assert re.search(rf"^base_url\s+http://127\.0\.0\.1:9/v1\s+{src}$", r.stdout, re.M), r.stdout
    assert re.search(rf"^model\s+work-model\s+{src}$", r.stdout, re.M), r.stdout
    assert r.stderr == ""
    rows, _ = show()
    assert rows["provider"] == ("work", f"config file {path}")
    assert rows["connect_timeout"] == (10.0, "default")


def test_the_template_uncommented_is_a_valid_config_without_unknown_keys():
    example = "\n".join(re.sub(r"^# (\s*[a-z_]+:.*|\s{2,}\S.*)$", r"\1", line)
                        for line in CONFIG_TEMPLATE.splitlines())
    path = write_config(example)
    data, warnings = load_config_file(path)
    assert warnings == []
    assert set(data) >= {"default_provider", "providers", "aliases", "options", "system", "timeouts", "retries",
                         "tools", "chat"}
    s = resolve(OPENROUTER_API_KEY="sk-or-example-123456")
    assert (s.provider, s.model) == ("openrouter", "anthropic/claude-3.5-haiku")
    assert s.base_url == "https://openrouter.ai/api/v1"
    assert s.api_key == "sk-or-example-123456" and s.source_of("api_key") == "OPENROUTER_API_KEY"
    assert (s.connect_timeout, s.read_timeout, s.idle_timeout, s.max_time, s.retries) == (10, 120, 300, 600, 2)
    assert s.warnings == ()


# --------------------------------------------------------------------------------------------
# keys: literal (redacted, permissions), api_key_cmd, api_key_env

LITERAL_KEY = "sk-literal-secret-abcdef123"


@pytest.mark.parametrize("mode,warned", [(0o644, True), (0o640, True), (0o604, True), (0o600, False), (0o400, False)])
def test_literal_key_is_redacted_and_a_readable_file_is_warned_about(mode, warned):
    path = write_config("default_provider: mine\nproviders:\n  mine:\n    base_url: http://127.0.0.1:9/v1\n"
                        f"    api_key: {LITERAL_KEY}\n", mode=mode)
    r = invoke("config", "show")
    assert r.exit_code == 0, r
    assert LITERAL_KEY not in r.stdout + r.stderr
    assert re.search(rf"^api_key\s+{re.escape(redact_key(LITERAL_KEY))}\s+\(config file ", r.stdout, re.M), r.stdout
    warning = f"llmcli: warning: {path} contains an API key and is readable by other users; run: chmod 600 {path}"
    assert (warning in r.stderr) is warned, r.stderr
    rows, rj = show()
    assert LITERAL_KEY not in rj.stdout + rj.stderr
    assert rows["api_key"][0] == redact_key(LITERAL_KEY)


def test_a_file_without_literal_keys_may_be_world_readable():
    write_config("default_provider: mine\nproviders:\n  mine:\n    base_url: http://127.0.0.1:9/v1\n"
                 "    api_key_env: MY_TEAM_KEY\n", mode=0o644)
    r = invoke("config", "show")
    assert r.exit_code == 0 and r.stderr == "", r


def test_api_key_cmd_output_is_the_bearer_token(server):
    server.chat(openai_stream())
    write_config(f"default_provider: mine\nproviders:\n  mine:\n    base_url: {server.base_url}\n"
                 "    model: m\n    api_key_cmd: echo sk-from-cmd-123456\n")
    r = invoke("ask", "q")
    assert r.exit_code == 0, r
    assert server.requests[-1].headers["Authorization"] == "Bearer sk-from-cmd-123456"
    assert "sk-from-cmd-123456" not in r.stdout + r.stderr
    rows, _ = show()
    assert rows["api_key"] == (redact_key("sk-from-cmd-123456"), "api_key_cmd")


@pytest.mark.parametrize("command,message", [
    ("exit 7", "api_key_cmd for provider 'mine' failed with exit code 7"),
    ('"true"', "api_key_cmd for provider 'mine' printed nothing"),
])
def test_a_failing_api_key_cmd_is_a_config_error(server, command, message):
    write_config(f"default_provider: mine\nproviders:\n  mine:\n    base_url: {server.base_url}\n"
                 f"    api_key_cmd: {command}\n")
    r = invoke("ask", "q")
    assert r.exit_code == 3, r
    assert r.stderr == f"llmcli: error: {message}\n"
    assert server.requests == []


def test_api_key_env_names_the_variable_holding_the_key(server):
    server.chat(openai_stream())
    write_config(f"default_provider: mine\nproviders:\n  mine:\n    base_url: {server.base_url}\n"
                 "    api_key_env: MY_TEAM_KEY\n")
    r = invoke("ask", "q", env={"MY_TEAM_KEY": "sk-team-7777777"})
    assert r.exit_code == 0, r
    assert server.requests[-1].headers["Authorization"] == "Bearer sk-team-7777777"
    rows, _ = show(env={"MY_TEAM_KEY": "sk-team-7777777"})
    assert rows["api_key"] == (redact_key("sk-team-7777777"), "MY_TEAM_KEY")
    # Unset: no key at all (nothing else is sent in its place).
    r = invoke("ask", "q")
    assert r.exit_code == 0, r
    assert "Authorization" not in server.requests[-1].headers


# --------------------------------------------------------------------------------------------
# a config file of the wrong shape is a config error (exit 3), never a crash

@pytest.mark.parametrize("text,where", [
    ("timeouts: [a]\n", "timeouts"),
    ("tools: [a]\n", "tools"),
    ("chat: [a]\n", "chat"),
    ("providers:\n  mine: some-string\n", "providers.mine"),
    ("providers: [a, b]\n", "providers"),
    ("aliases: [a]\n", "aliases"),
    ("options: [a]\n", "options"),
    ("local: [a]\n", "local"),
    ("providers:\n  groq:\n    headers: [a]\n", "providers.groq.headers"),
    ("providers:\n  groq:\n    options: [a]\n", "providers.groq.options"),
    ("providers:\n  groq:\n    timeouts: [a]\n", "providers.groq.timeouts"),
    ("tools:\n  web_search: [a]\n", "tools.web_search"),
])
def test_a_section_of_the_wrong_shape_is_a_config_error(text, where):
    path = write_config(text)
    r = invoke("config", "show", "-p", "groq", "-m", "a", env={"LLMCLI_NO_RERAISE": "1"})
    assert r.exit_code == 3, r
    assert r.stderr == f"llmcli: error: {path}: '{where}' must be a mapping\n"


def test_a_provider_entry_with_no_settings_is_still_a_known_provider(server):
    server.chat(openai_stream())
    write_config("providers:\n  mine:\n")
    r = invoke("ask", "-p", "mine", "--base-url", server.base_url, "q")
    assert r.exit_code == 0, r


# --------------------------------------------------------------------------------------------
# aliases and provider/model


def test_alias_becomes_the_model_in_the_request(server):
    server.chat(openai_stream())
    write_config(f"default_provider: mine\nproviders:\n  mine:\n    base_url: {server.base_url}\n"
                 "aliases:\n  fast: some-long-model-name-v2\n")
    r = invoke("ask", "-m", "fast", "q")
    assert r.exit_code == 0, r
    assert server.requests[-1].json["model"] == "some-long-model-name-v2"
    rows, _ = show("-m", "fast")
    assert rows["model"] == ("some-long-model-name-v2", "--model flag (alias)")
    r = invoke("ask", "q", env={"LLMCLI_MODEL": "fast"})
    assert r.exit_code == 0, r
    assert server.requests[-1].json["model"] == "some-long-model-name-v2"


def test_alias_to_provider_slash_model_picks_that_provider(server):
    server.chat(openai_stream())
    write_config(f"providers:\n  mine:\n    base_url: {server.base_url}\naliases:\n  fast: mine/other-model\n")
    r = invoke("ask", "-m", "fast", "q")
    assert r.exit_code == 0, r
    assert server.requests[-1].json["model"] == "other-model"


def test_default_model_in_the_config_may_be_an_alias(server):
    server.chat(openai_stream())
    write_config(f"default_provider: mine\nmodel: fast\nproviders:\n  mine:\n    base_url: {server.base_url}\n"
                 "aliases:\n  fast: the-fast-one\n")
    assert invoke("ask", "q").exit_code == 0
    assert server.requests[-1].json["model"] == "the-fast-one"


def test_provider_slash_model_uses_the_configured_provider(server):
    server.chat(openai_stream())
    write_config(f"default_provider: openrouter\nproviders:\n  mine:\n    base_url: {server.base_url}\n")
    r = invoke("ask", "-m", "mine/some-model", "q")
    assert r.exit_code == 0, r
    req = server.requests[-1]
    assert req.path == "/v1/chat/completions" and req.json["model"] == "some-model"
    rows, _ = show("-m", "mine/some-model")
    assert rows["provider"] == ("mine", "--model flag (provider/model)")


def test_provider_slash_model_resolution():
    s = resolve({"model": "groq/llama-3.1-8b-instant"})
    assert (s.provider, s.model, s.base_url) == ("groq", "llama-3.1-8b-instant", "https://api.groq.com/openai/v1")
    # With a default provider that is a preset, a slash is part of the model id (OpenRouter's ids).
    write_config("default_provider: openrouter\n")
    s = resolve({"model": "openai/gpt-4o"})
    assert (s.provider, s.model) == ("openrouter", "openai/gpt-4o")
    # An explicit provider keeps the whole string; so does an unknown prefix.
    s = resolve({"provider": "openrouter", "model": "groq/x"})
    assert (s.provider, s.model) == ("openrouter", "groq/x")
    s = resolve({"model": "nosuch/x"}, LLMCLI_BASE_URL="http://127.0.0.1:9/v1")
    assert (s.provider, s.model) == (None, "nosuch/x")


# --------------------------------------------------------------------------------------------
# precedence: flag > env > config file > preset, values and sources


PRECEDENCE_CONFIG = """\
providers:
  groq:
    base_url: http://config.example/v1
    model: config-model
    api_key: sk-config-key-0000
    timeouts: {connect: 3, read: 30, idle: 33}
"""

LAYERS = {
    # layer: (flags as CLI args, env, expected rows {name: (value, source)}) — the config layer's source
    # is filled in per test because it names the file.
    "preset": ([], {"GROQ_API_KEY": "gsk-preset-key-1111"}, {
        "base_url": ("https://api.groq.com/openai/v1", "preset groq"),
        "model": ("llama-3.3-70b-versatile", "preset groq"),
        "api_key": (redact_key("gsk-preset-key-1111"), "GROQ_API_KEY"),
        "connect_timeout": (10.0, "default"), "timeout": (120.0, "default"), "idle_timeout": (300.0, "default"),
    }),
    "config": ([], {}, {
        "base_url": ("http://config.example/v1", "FILE"),
        "model": ("config-model", "FILE"),
        # keys: any environment variable beats a key written in the file (issue 19: flag > env >
        # api_key_cmd > keyring > config file), the preset's own variable too
        "api_key": (redact_key("gsk-preset-key-1111"), "GROQ_API_KEY"),
        "connect_timeout": (3.0, "FILE"), "timeout": (30.0, "FILE"), "idle_timeout": (33.0, "FILE"),
    }),
    "env": ([], {"LLMCLI_BASE_URL": "http://env.example/v1", "LLMCLI_MODEL": "env-model",
                 "LLMCLI_API_KEY": "sk-env-key-2222", "LLMCLI_CONNECT_TIMEOUT": "4", "LLMCLI_TIMEOUT": "40",
                 "LLMCLI_IDLE_TIMEOUT": "44"}, {
        "base_url": ("http://env.example/v1", "LLMCLI_BASE_URL"),
        "model": ("env-model", "LLMCLI_MODEL"),
        "api_key": (redact_key("sk-env-key-2222"), "LLMCLI_API_KEY"),
        "connect_timeout": (4.0, "LLMCLI_CONNECT_TIMEOUT"), "timeout": (40.0, "LLMCLI_TIMEOUT"),
        "idle_timeout": (44.0, "LLMCLI_IDLE_TIMEOUT"),
    }),
    "flag": (["--base-url", "http://flag.example/v1", "-m", "flag-model", "--api-key", "sk-flag-key-3333"], {}, {
        "base_url": ("http://flag.example/v1", "--base-url flag"),
        "model": ("flag-model", "--model flag"),
        "api_key": (redact_key("sk-flag-key-3333"), "--api-key flag"),
    }),
}
ORDER = ["preset", "config", "env", "flag"]


@pytest.mark.parametrize("top", ORDER)
def test_precedence_flag_over_env_over_config_over_preset(top):
    """Every layer up to `top` is present; `top` wins for each value, and the source says so."""
    args, env = ["-p", "groq"], {}
    for layer in ORDER[: ORDER.index(top) + 1]:
        layer_args, layer_env, _ = LAYERS[layer]
        args += layer_args
        env.update(layer_env)
        if layer == "config":
            write_config(PRECEDENCE_CONFIG)
    rows, r = show(*args, env=env)
    for name, (value, source) in LAYERS[top][2].items():
        source = f"config file {config_file()}" if source == "FILE" else source
        assert rows[name] == (value, source), name
    assert rows["provider"] == ("groq", "--provider flag")
    for secret in ("gsk-preset-key-1111", "sk-config-key-0000", "sk-env-key-2222", "sk-flag-key-3333"):
        assert secret not in r.stdout + r.stderr


def test_timeout_flags_beat_env_and_config():
    write_config(PRECEDENCE_CONFIG)
    s = resolve({"provider": "groq", "connect_timeout": 5.0, "timeout": 50.0, "idle_timeout": 55.0,
                 "max_time": 60.0, "retries": 0}, **LAYERS["env"][1], LLMCLI_MAX_TIME="70", LLMCLI_RETRIES="4")
    assert (s.connect_timeout, s.read_timeout, s.idle_timeout, s.max_time, s.retries) == (5.0, 50.0, 55.0, 60.0, 0)
    assert [s.source_of(n) for n in ("connect_timeout", "timeout", "idle_timeout", "max_time", "retries")] == [
        "--connect-timeout flag", "--timeout flag", "--idle-timeout flag", "--max-time flag", "--retries flag"]


def test_the_winning_layer_is_what_the_request_uses(server):
    """The precedence shown by `config show` is the precedence of the request: key, URL and model."""
    server.chat(openai_stream())
    write_config(PRECEDENCE_CONFIG.replace("http://config.example/v1", "http://127.0.0.1:9/v1"))
    # env beats config: LLMCLI_BASE_URL points at the server, the config at a closed port.
    env = {"LLMCLI_BASE_URL": server.base_url, "GROQ_API_KEY": "gsk-preset-key-1111"}
    r = invoke("ask", "-p", "groq", "q", env=env)
    assert r.exit_code == 0, r
    req = server.requests[-1]
    assert req.headers["Authorization"] == "Bearer gsk-preset-key-1111"  # the environment beats the file's key
    assert req.json["model"] == "config-model"
    # flags beat env.
    r = invoke("ask", "-p", "groq", "--base-url", server.base_url, "--api-key", "sk-flag-key-3333", "-m", "flag-model",
               "q", env={"LLMCLI_BASE_URL": "http://127.0.0.1:9/v1", "LLMCLI_API_KEY": "sk-env-key-2222",
                         "LLMCLI_MODEL": "env-model"})
    assert r.exit_code == 0, r
    req = server.requests[-1]
    assert req.headers["Authorization"] == "Bearer sk-flag-key-3333"
    assert req.json["model"] == "flag-model"


# --------------------------------------------------------------------------------------------
# presets: chosen from the environment, URLs, headers


EXPECTED_PRESETS = {
    # name: (base URL, key variable, default headers)
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY",
                   {"HTTP-Referer": "https://github.com/llmcli/llmcli", "X-Title": "llmcli"}),
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY", {}),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY", {}),
    "deepseek": ("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", {}),
    "mistral": ("https://api.mistral.ai/v1", "MISTRAL_API_KEY", {}),
    "together": ("https://api.together.xyz/v1", "TOGETHER_API_KEY", {}),
    "fireworks": ("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY", {}),
    "gemini": ("https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY", {}),
    "ollama": ("http://127.0.0.1:11434/v1", None, {}),
    "llamacpp": ("http://127.0.0.1:8080/v1", None, {}),
    "vllm": ("http://127.0.0.1:8000/v1", None, {}),
    "lmstudio": ("http://127.0.0.1:1234/v1", None, {}),
}
KEYED = [name for name, (_, key_env, _) in EXPECTED_PRESETS.items() if key_env]


def test_every_preset_has_an_expectation_here():
    assert set(PRESETS) == set(EXPECTED_PRESETS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PRESETS))
def test_preset_resolves_to_its_url_key_and_headers(name):
    base_url, key_env, headers = EXPECTED_PRESETS[name]
    env = {key_env: f"key-for-{name}-123456"} if key_env else {}
    s = resolve({"provider": name}, **env)
    assert s.provider == name and s.source_of("provider") == "--provider flag"
    assert (s.base_url, s.source_of("base_url")) == (base_url, f"preset {name}")
    assert dict(s.headers) == headers
    if key_env:
        assert (s.api_key, s.source_of("api_key")) == (f"key-for-{name}-123456", key_env)
        assert s.model and s.source_of("model") == f"preset {name}"
    else:
        assert s.api_key is None


@pytest.mark.parametrize("name", KEYED)
def test_exactly_one_provider_key_in_the_environment_selects_its_preset(name):
    base_url, key_env, _ = EXPECTED_PRESETS[name]
    s = resolve({}, **{key_env: "the-only-key-123456"})
    assert (s.provider, s.base_url, s.api_key) == (name, base_url, "the-only-key-123456")
    assert s.source_of("provider") == f"{key_env} is set"
    assert s.warnings == ()


def test_only_groq_key_selects_groq():
    s = resolve({}, GROQ_API_KEY="gsk-only")
    assert s.provider == "groq" and s.base_url == "https://api.groq.com/openai/v1"


def test_several_provider_keys_are_an_error_not_a_guess():
    from llmcli.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        resolve({}, GROQ_API_KEY="gsk-1", OPENAI_API_KEY="sk-2")
    assert "several provider keys are set" in str(exc.value)
    assert "OPENAI_API_KEY" in str(exc.value) and "GROQ_API_KEY" in str(exc.value)
    # A provider chosen any way at all settles it, without a warning.
    assert resolve({"provider": "groq"}, GROQ_API_KEY="gsk-1", OPENAI_API_KEY="sk-2").warnings == ()
    write_config("default_provider: openai\n")
    assert resolve({}, GROQ_API_KEY="gsk-1", OPENAI_API_KEY="sk-2").provider == "openai"

    os.remove(config_file())
    # config show still shows everything else, and says why no provider is chosen (issue 11)
    r = invoke("config", "show", env={"GROQ_API_KEY": "gsk-1", "OPENAI_API_KEY": "sk-2"})
    assert r.exit_code == 0 and "base_url" in r.stdout
    assert r.stderr.startswith("llmcli: warning: several provider keys are set")


@pytest.mark.parametrize("how", [("-p", "nope"), ("env",), ("config",)])
def test_unknown_provider_exits_3_listing_the_known_ones(server, how):
    write_config(f"providers:\n  mine:\n    base_url: {server.base_url}\n"
                 + ("default_provider: nope\n" if how == ("config",) else ""))
    args = list(how) if how[0] == "-p" else []
    env = {"LLMCLI_PROVIDER": "nope"} if how == ("env",) else None
    r = invoke("ask", *args, "q", env=env)
    assert r.exit_code == 3, r
    known = ", ".join(["mine"] + list(PRESETS) + ["local"])
    assert r.stderr == f"llmcli: error: unknown provider 'nope' (known: {known})\n"
    assert server.requests == []


@pytest.mark.parametrize("name", sorted(EXPECTED_PRESETS))
def test_each_preset_sends_its_key_headers_and_model_to_chat_completions(server, name):
    """The local server stands in for the provider (--base-url); everything else comes from the preset."""
    base_url, key_env, headers = EXPECTED_PRESETS[name]
    server.chat(openai_stream())
    env = {key_env: f"key-for-{name}-123456"} if key_env else {}
    r = invoke("ask", "-p", name, "--base-url", server.base_url, "q", env=env)
    assert r.exit_code == 0, r
    req = server.requests[-1]
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    if key_env:
        assert req.headers["Authorization"] == f"Bearer key-for-{name}-123456"
        assert req.json["model"] == PRESETS[name].model
    else:
        assert "Authorization" not in req.headers
    for header, value in headers.items():
        assert req.headers[header] == value


def test_openrouter_end_to_end_with_cost_in_usage(server):
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "cost": 0.0001234, "is_byok": False}
    server.chat(Reply(pieces=text_stream("Hi", " there", usage=usage)))
    env = {"OPENROUTER_API_KEY": "sk-or-v1-abcdef0123456789"}
    r = invoke("ask", "-p", "openrouter", "--base-url", server.base_url, "--json", "q", env=env)
    assert r.exit_code == 0, r
    req = server.requests[-1]
    assert req.path == "/v1/chat/completions"
    assert req.headers["Authorization"] == "Bearer sk-or-v1-abcdef0123456789"
    assert req.headers["HTTP-Referer"] == "https://github.com/llmcli/llmcli"
    assert req.headers["X-Title"] == "llmcli"
    assert req.json["model"] == "openrouter/auto" and req.json["stream_options"] == {"include_usage": True}
    doc = json.loads(r.stdout)
    assert doc["content"] == "Hi there"
    assert doc["usage"]["cost"] == {"amount": 0.0001234, "currency": "USD", "source": "reported"}
    assert doc["usage"]["total_tokens"] == 15

    server.chat(Reply(pieces=text_stream("Hi", usage=usage)))
    r = invoke("ask", "-p", "openrouter", "--base-url", server.base_url, "-u", "q", env=env)
    assert r.exit_code == 0, r
    assert "$0.00012 (reported)" in r.stderr


# --------------------------------------------------------------------------------------------
# models


MODELS = {"object": "list", "data": [
    {"id": "zeta-large", "object": "model", "owned_by": "z"},
    {"id": "alpha-small", "object": "model", "owned_by": "a"},
    {"id": "mid-7b", "object": "model", "owned_by": "m"},
]}


def models_reply(status=200, body=MODELS):
    return Reply(status=status, pieces=[json.dumps(body).encode()], content_type="application/json", chunked=False)


def test_models_lists_ids_sorted(server):
    server.route("/v1/models", models_reply(), method="GET")
    r = invoke("models", "--base-url", server.base_url, "--api-key", "sk-models-123456")
    assert r.exit_code == 0, r
    assert r.stdout == "alpha-small\nmid-7b\nzeta-large\n"
    req = server.requests[-1]
    assert (req.method, req.path) == ("GET", "/v1/models")
    assert req.headers["Authorization"] == "Bearer sk-models-123456"


def test_models_json_prints_the_entries(server):
    server.route("/v1/models", models_reply(), method="GET")
    r = invoke("models", "--base-url", server.base_url, "--json")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout) == MODELS["data"]


def test_models_with_a_preset_sends_its_headers(server):
    server.route("/v1/models", models_reply(), method="GET")
    r = invoke("models", "-p", "openrouter", "--base-url", server.base_url, env={"OPENROUTER_API_KEY": "sk-or-1234567"})
    assert r.exit_code == 0, r
    req = server.requests[-1]
    assert req.headers["Authorization"] == "Bearer sk-or-1234567" and req.headers["X-Title"] == "llmcli"


def test_models_http_error_exits_4(server):
    server.route("/v1/models", models_reply(401, {"error": {"message": "bad key"}}), method="GET")
    r = invoke("models", "--base-url", server.base_url)
    assert r.exit_code == 4, r
    assert "401" in r.stderr and "bad key" in r.stderr


# --------------------------------------------------------------------------------------------
# colour: NO_COLOR and non-terminal output


WARNING_CONFIG = "surprise_key: 1\n"  # an unknown key → a warning on stderr on every run


def test_no_ansi_escapes_when_stderr_is_not_a_terminal(server):
    write_config(WARNING_CONFIG)
    server.chat(openai_stream())
    r = invoke("ask", "--base-url", server.base_url, "--debug", "-u", "q")
    assert r.exit_code == 0, r
    assert "llmcli: warning: " in r.stderr and "unknown config key 'surprise_key'" in r.stderr
    assert not ANSI.search(r.stderr + r.stdout)


@pytest.mark.parametrize("no_color", [True, False])
def test_no_color_on_a_terminal(server, no_color):
    """On a real terminal warnings are yellow, unless NO_COLOR is set (https://no-color.org)."""
    pexpect = pytest.importorskip("pexpect")
    if not os.path.exists(LLMCLI):
        pytest.skip(f"{LLMCLI} is not installed")
    write_config(WARNING_CONFIG)
    server.chat(openai_stream())
    env = dict(os.environ, TERM="xterm")
    env.pop("NO_COLOR", None)
    if no_color:
        env["NO_COLOR"] = "1"
    child = pexpect.spawn(LLMCLI, ["ask", "--base-url", server.base_url, "-u", "q"], env=env, encoding="utf-8",
                          timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    output = child.before
    assert child.exitstatus == 0, output
    assert "llmcli: warning: " in output and "ok" in output
    assert bool(ANSI.search(output)) is (not no_color), repr(output)


# --------------------------------------------------------------------------------------------
# the table of scalar settings (settings.FIELDS): every field, parametrised over the table itself, so
# a field added to it is held to the same three rules without a new test.
from llmcli.config.settings import FIELDS, describe_settings  # noqa: E402
from llmcli.errors import ConfigError  # noqa: E402

TABLE_PROVIDER = "mine"


def _accepts(field, *values):
    try:
        for value in values:
            field.kind(value, field.name, "test")
    except ConfigError:
        return False
    return True


def layer_values(field):
    """Good raw values for flag, env and each file key (top layer first), as the user writes them,
    with the value each must give; and a bad value for env and file. Chosen by what the kind accepts,
    so that a new kind of field fails here loudly instead of being skipped."""
    n = 2 + len(field.file)
    if _accepts(field, "from-a-layer"):  # text
        good = [(f"text-{i}", f"text-{i}") for i in range(n)]
        return good, None, ["not", "text"]
    if not _accepts(field, 7) and _accepts(field, True, False, "yes"):  # a boolean
        good = [(i % 2 == 0, i % 2 == 0) for i in range(n)]
        return good, "maybe", "maybe"
    for start in (7, 2048):  # numbers: small ones, or ones above a minimum (max_event_bytes ≥ 1024)
        if _accepts(field, *range(start, start + n)):
            return [(start + i, start + i) for i in range(n)], "lots", "lots"
    raise AssertionError(f"test_config.py has no sample values for the kind of {field.name}; add them")


def file_yaml(values_by_key):
    """A config file setting each dotted key (providers.*. is the provider `mine`, the default)."""
    import yaml

    data = {"default_provider": TABLE_PROVIDER, "providers": {TABLE_PROVIDER: {"base_url": "http://127.0.0.1:9/v1"}}}
    for key, value in values_by_key.items():
        node = data
        parts = key.replace("providers.*.", f"providers.{TABLE_PROVIDER}.").split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return yaml.safe_dump(data)


def table_layers(field):
    """[(label, flags, env, file keys → raw value, expected value, expected source)], top layer first."""
    good, _, _ = layer_values(field)
    layers = []
    if field.flag:
        layers.append(("flag", {field.flag: good[0][0]}, {}, {}, good[0][1], f"--{field.flag.replace('_', '-')} flag"))
    if field.env:
        layers.append(("env", {}, {field.env: str(good[1][0]).lower() if isinstance(good[1][0], bool) else str(good[1][0])},
                       {}, good[1][1], field.env))
    for i, key in enumerate(field.file):
        layers.append((f"file {key}", {}, {}, {key: good[2 + i][0]}, good[2 + i][1], f"config file {config_file()}"))
    return layers


@pytest.mark.parametrize("field", FIELDS, ids=[f.name for f in FIELDS])
def test_every_table_field_takes_flag_then_env_then_each_file_key_then_the_default(field):
    layers = table_layers(field)
    assert layers, f"{field.name} is in no layer at all"
    for top in range(len(layers) + 1):
        flags, env, file_values = {}, {}, {}
        for _, f, e, v, _, _ in layers[top:]:
            flags.update(f)
            env.update(e)
            file_values.update(v)
        write_config(file_yaml(file_values))
        s = resolve(flags, **env)
        got = (getattr(s, field.attribute), s.source_of(field.name))
        if top < len(layers):
            label, _, _, _, value, source = layers[top]
            assert got == (value, source), f"{field.name} from the {label} layer"
        else:
            assert got == (field.default, "default"), f"{field.name} with no layer set"


@pytest.mark.parametrize("field", FIELDS, ids=[f.name for f in FIELDS])
def test_every_table_field_is_a_config_show_row_with_its_source(field, monkeypatch):
    monkeypatch.delenv("LLMCLI_RETRY_BASE_DELAY", raising=False)  # conftest's, an env layer of its own
    for label, flags, env, file_values, value, source in table_layers(field):
        write_config(file_yaml(file_values))
        if flags:  # not every flag is an option of `config show`: the rows are the same function
            rows = {name: (v, src) for name, v, src in describe_settings(resolve(flags))}
        else:
            rows, _ = show(env=env)
        assert rows[field.name] == (value, source), f"{field.name} from the {label} layer"
    write_config(file_yaml({}))
    rows, _ = show()
    assert rows[field.name] == (field.default, "default")


@pytest.mark.parametrize("field", FIELDS, ids=[f.name for f in FIELDS])
def test_every_table_field_rejects_a_wrong_type_at_start_up_with_exit_3_naming_the_key(field, server,
                                                                                        monkeypatch):
    monkeypatch.delenv("LLMCLI_RETRY_BASE_DELAY", raising=False)
    _, bad_env, bad_file = layer_values(field)
    cases = []
    if field.env and bad_env is not None:
        cases.append(({field.env: bad_env}, {}, field.name))
    for key in field.file:
        cases.append(({}, {key: bad_file}, key.replace("providers.*.", f"providers.{TABLE_PROVIDER}.")))
    assert cases, f"{field.name}: no layer where a wrong type can be written"
    for env, file_values, named in cases:
        write_config(file_yaml(file_values).replace("http://127.0.0.1:9/v1", server.base_url))
        for args in (["config", "show"], ["ask", "q"]):
            r = invoke(*args, env=env)
            assert r.exit_code == 3, (field.name, args, r)
            assert named in r.stderr and "Traceback" not in r.stderr, (field.name, args, r.stderr)
            assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("llmcli: error: "), r.stderr
    assert server.requests == []


def test_a_providers_own_key_is_read_before_the_top_level_one():
    paired = [f for f in FIELDS if any(k.startswith("providers.*.") and k[len("providers.*."):] in f.file
                                       for k in f.file)]
    assert {f.name for f in paired} >= {"connect_timeout", "timeout", "idle_timeout", "max_time"}
    for field in paired:
        provider_key = next(k for k in field.file if k.startswith("providers.*."))
        assert field.file.index(provider_key) < field.file.index(provider_key[len("providers.*."):]), field.name
    write_config(file_yaml({"timeouts.idle": 30, "timeouts.connect": 4, "providers.*.timeouts.idle": 20}))
    s = resolve()
    assert (s.idle_timeout, s.connect_timeout) == (20, 4)
    write_config(file_yaml({"timeouts.idle": 30, "providers.*.timeouts.idle": None}))
    assert resolve().idle_timeout == 300  # a provider's explicit null is its own: the default, as before


def test_config_show_gives_the_real_source_of_the_merged_values_and_switches_too():
    """headers, options, tools and the switches (on if any layer says so) are not in the table, but their
    rows say where the value came from as well, not "config/flags"."""
    path = write_config("default_provider: openrouter\nproviders:\n  openrouter:\n    headers: {X-A: b}\n"
                        "    options: {top_p: 1}\noptions: {temperature: 0.2}\n"
                        "tools: {enabled: [web_fetch], confirm: true, web_fetch: {allow_private: true}}\n")

    def rows(flags=None, **env):
        return {name: (value, source) for name, value, source in describe_settings(resolve(flags, **env))}

    file_src = f"config file {path}"
    got = rows(OPENROUTER_API_KEY="sk-or-123456789")
    assert got["headers"][1] == f"preset openrouter + {file_src} (providers.openrouter.headers)"
    assert got["options"] == ({"temperature": 0.2, "top_p": 1},
                              f"{file_src} (options + providers.openrouter.options)")
    assert got["tools"] == (["web_fetch"], file_src)
    assert got["confirm_tools"] == (True, file_src) and got["allow_private_urls"] == (True, file_src)
    assert got["debug"] == (False, "default")
    got = rows({"options": [("seed", 3)], "all_tools": True, "confirm_tools": True, "allow_private_urls": True,
                "debug": True}, OPENROUTER_API_KEY="sk-or-123456789")
    assert got["options"][1] == f"{file_src} (options + providers.openrouter.options) + -o flag"
    assert got["tools"] == (["web_search", "web_fetch"], "--tools flag")
    assert [got[n][1] for n in ("confirm_tools", "allow_private_urls", "debug")] == [
        "--confirm-tools flag", "--allow-private-urls flag", "--debug flag"]
    got = rows({"no_tools": True}, OPENROUTER_API_KEY="sk-or-123456789", LLMCLI_ALLOW_PRIVATE_URLS="1",
               LLMCLI_DEBUG="1")
    assert got["tools"] == ([], "--no-tools flag")
    assert got["allow_private_urls"][1] == "LLMCLI_ALLOW_PRIVATE_URLS" and got["debug"] == (True, "LLMCLI_DEBUG")
    write_config("")
    got = rows({"provider": "openai"}, OPENAI_API_KEY="sk-123456789")
    assert [got[n] for n in ("headers", "options", "tools", "confirm_tools")] == [
        ({}, "default"), ({}, "default"), ([], "default"), (False, "default")]


def test_a_boolean_flags_off_side_is_the_source_as_written():
    write_config(file_yaml({"providers.*.text_tool_calls": True}))
    s = resolve({"text_tool_calls": False})
    assert (s.text_tool_calls, s.source_of("text_tool_calls")) == (False, "--no-text-tool-calls flag")
