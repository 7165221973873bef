"""One rule for secrets (config/secrets.py), checked everywhere a request is shown: `config show`,
`--debug`, the debug record and its replay, error messages, `--json` — plus keys the server echoes
back, passwords in base URLs, and key-carrying headers on a redirect to another host."""

import base64
import json

import pytest

from conftest import invoke
from localserver import LocalServer, Reply, chunk, sse

KEY = "sk-RECOGNISABLE-0123456789abcdef"
HEADER_VALUE = "hdr-RECOGNISABLE-fedcba9876543210"
SECRET_HEADER_NAMES = ["Authorization", "Cookie", "Proxy-Authorization", "X-Api-Key", "X-Subscription-Token",
                       "Private-Token", "X-Auth-Token", "Api-Token", "X-Session-Id", "X-Client-Secret",
                       "X-Password"]


def test_the_rule():
    from llmcli.config.secrets import is_secret_header, redact_url, scrub

    for name in SECRET_HEADER_NAMES + ["Set-Cookie", "api-key", "x-goog-api-key"]:
        assert is_secret_header(name), name
    for name in ["Content-Type", "User-Agent", "HTTP-Referer", "X-Title", "Accept"]:
        assert not is_secret_header(name), name
    assert redact_url("https://bob:hunter2@example.com/v1") == "https://***@example.com/v1"
    assert redact_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1"
    assert scrub(f"bad key {KEY}!", [KEY]) == "bad key <redacted>!"


def _config(tmp_path, server, name, password=False):
    base = server.base_url.replace("http://", "http://bob:pw-SECRET-4242@") if password else server.base_url
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"default_provider: mine\nproviders:\n  mine:\n    base_url: {base}\n    api_key: {KEY}\n"
                   f"    headers:\n      {name}: {HEADER_VALUE}\n      X-Title: visible-title\n")
    cfg.chmod(0o600)
    return str(cfg)


@pytest.mark.parametrize("name", SECRET_HEADER_NAMES)
def test_secret_header_never_shown(server, tmp_path, isolated_env, name):
    cfg = _config(tmp_path, server, name)
    shown = invoke("config", "show", "--config", cfg)
    assert shown.exit_code == 0 and HEADER_VALUE not in shown.stdout and KEY not in shown.stdout
    assert "visible-title" in shown.stdout  # the rule redacts secrets, not everything

    # --debug on a failing run: diagnostics on stderr and the saved record
    server.chat(Reply(pieces=sse(chunk("partial")) [:1], end="cut"))
    r = invoke("ask", "--config", cfg, "--debug", "--retries", "0", "q")
    assert r.exit_code == 5
    assert HEADER_VALUE not in r.stderr and KEY not in r.stderr and "visible-title" in r.stderr
    records = list((isolated_env / "debug").glob("failure-*.json"))
    assert len(records) == 1
    text = records[0].read_text()
    assert HEADER_VALUE not in text and KEY not in text
    replayed = invoke("replay", str(records[0]), "--json")
    assert HEADER_VALUE not in replayed.stdout + replayed.stderr and KEY not in replayed.stdout + replayed.stderr


def test_echoed_key_is_scrubbed_everywhere(server, tmp_path, isolated_env):
    cfg = _config(tmp_path, server, "X-Api-Key")
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}; header {HEADER_VALUE}",
                                 "code": "invalid_api_key"}}).encode()
    server.chat(Reply(status=401, pieces=[body], content_type="application/json", chunked=False))
    r = invoke("ask", "--config", cfg, "--debug", "q")
    assert r.exit_code == 4 and "Incorrect API key provided: <redacted>" in r.stderr
    assert KEY not in r.stderr and HEADER_VALUE not in r.stderr
    server.chat(Reply(status=401, pieces=[body], content_type="application/json", chunked=False))
    r = invoke("ask", "--config", cfg, "--json", "q")
    assert r.exit_code == 4 and KEY not in r.stdout and "<redacted>" in json.loads(r.stdout)["error"]["message"]
    for record in (isolated_env / "debug").glob("failure-*.json"):
        data = json.loads(record.read_text())
        raw = b"".join(base64.b64decode(ex["response_body_b64"]) for ex in data["exchanges"])
        assert KEY.encode() not in raw and KEY not in record.read_text()


def test_key_echoed_in_stream_error_is_scrubbed(server, tmp_path, isolated_env):
    cfg = _config(tmp_path, server, "X-Api-Key")
    server.chat(Reply(pieces=sse({"error": {"message": f"quota exceeded for key {KEY}"}})))
    r = invoke("ask", "--config", cfg, "--debug", "q")
    assert r.exit_code != 0 and "<redacted>" in r.stderr and KEY not in r.stderr
    for record in (isolated_env / "debug").glob("failure-*.json"):
        assert KEY not in record.read_text()
        assert KEY not in base64.b64decode(json.loads(record.read_text())["exchanges"][-1]["response_body_b64"]).decode()


def test_password_in_base_url_is_redacted(server, tmp_path):
    cfg = _config(tmp_path, server, "X-Api-Key", password=True)
    shown = invoke("config", "show", "--config", cfg)
    assert "pw-SECRET-4242" not in shown.stdout and "***@" in shown.stdout
    server.route("/v1/chat/completions", Reply(status=404, pieces=[b"no such route"], content_type="text/plain"))
    r = invoke("ask", "--config", cfg, "--debug", "q")
    assert r.exit_code == 4 and "pw-SECRET-4242" not in r.stderr, r.stderr
    refused = tmp_path / "r.yaml"
    refused.write_text("default_provider: x\nproviders:\n  x:\n    base_url: http://bob:pw-SECRET-4242@127.0.0.1:9/v1\n")
    r = invoke("ask", "--config", str(refused), "--retries", "0", "q")
    assert r.exit_code == 6 and "pw-SECRET-4242" not in r.stderr and "127.0.0.1:9" in r.stderr


def test_models_redirect_to_another_host_drops_key_headers(server, tmp_path):
    other = LocalServer().start()
    try:
        other.route("/v1/models", Reply(pieces=[b'{"data": [{"id": "m1"}]}'], content_type="application/json",
                                        chunked=False), method="GET")
        server.route("/v1/models", Reply(status=302, pieces=[b""], chunked=False,
                                         headers={"Location": other.base_url + "/models"}), method="GET")
        cfg = _config(tmp_path, server, "X-Api-Key")
        r = invoke("models", "--config", cfg)
        assert r.exit_code == 0 and "m1" in r.stdout, r
        first, = [q for q in server.requests if q.path.endswith("/models")]
        assert first.headers.get("X-Api-Key") == HEADER_VALUE and KEY in first.headers.get("Authorization", "")
        moved, = [q for q in other.requests if q.path.endswith("/models")]
        sent = json.dumps(moved.headers)
        assert KEY not in sent and HEADER_VALUE not in sent and moved.headers.get("X-Title") == "visible-title"
    finally:
        other.stop()


def test_models_redirect_on_the_same_host_keeps_the_key(server, tmp_path):
    server.route("/v1/models", Reply(status=307, pieces=[b""], chunked=False,
                                     headers={"Location": "/v1/models2"}), method="GET")
    server.route("/v1/models2", Reply(pieces=[b'{"data": [{"id": "m2"}]}'], content_type="application/json",
                                      chunked=False), method="GET")
    r = invoke("models", "--config", _config(tmp_path, server, "X-Api-Key"))
    assert r.exit_code == 0 and "m2" in r.stdout
    second, = [q for q in server.requests if q.path == "/v1/models2"]
    assert second.headers.get("X-Api-Key") == HEADER_VALUE
