"""`llmcli doctor` against the local server lacking each capability in turn; `--save` then used by
`--schema` without a failed first attempt."""

import json

import pytest
import yaml

from conftest import invoke
from endpoints import Endpoint
from localserver import Reply


def doctor(server, *args):
    r = invoke("doctor", "--base-url", server.base_url, "--json", *args)
    return r, (json.loads(r.stdout) if r.stdout.strip() else None)


def by_name(doc):
    return {f["name"]: f for f in doc["findings"]}


def test_everything_supported(server):
    Endpoint(reasoning="reasoning_content", context_length=8192).route(server)
    r, doc = doctor(server)
    assert r.exit_code == 0, r
    f = by_name(doc)
    for name in ("reachable", "auth", "models", "chat", "streaming", "include_usage", "usage", "tool_calls",
                 "parallel_tool_calls", "json_schema", "json_object"):
        assert f[name]["ok"] is True, (name, f[name])
    assert f["models"]["value"] == {"count": 1, "model": "test-model", "context_length": 8192}
    assert f["reasoning_field"]["value"] == "reasoning_content"
    assert f["tool_calls"]["value"] == {"streamed": True}
    assert doc["capabilities"]["response_format"] == "json_schema"
    assert doc["model"] == "test-model"


@pytest.mark.parametrize("lacks, finding, expect, mode", [
    ({"json_schema": "reject"}, "json_schema", False, "json_object"),
    ({"json_schema": "ignore"}, "json_schema", False, "json_object"),
    ({"json_schema": "reject", "json_object": "reject"}, "json_object", False, "prompt"),
    ({"json_schema": "ignore", "json_object": "ignore"}, "json_object", False, "json_object"),
    ({"include_usage": "reject"}, "include_usage", False, "json_schema"),
    ({"include_usage": "ignore"}, "include_usage", False, "json_schema"),
    ({"usage": False}, "usage", False, "json_schema"),
    ({"tools": "none"}, "tool_calls", False, "json_schema"),
    ({"parallel": False}, "parallel_tool_calls", False, "json_schema"),
    ({"stream": False}, "streaming", False, "json_schema"),
    ({"models": False}, "models", False, "json_schema"),
])
def test_each_capability_missing_in_turn(server, lacks, finding, expect, mode):
    Endpoint(**lacks).route(server)
    r, doc = doctor(server)
    assert r.exit_code == 0, r
    f = by_name(doc)
    assert f[finding]["ok"] is expect, f[finding]
    assert doc["capabilities"]["response_format"] == mode
    # the others still ran
    assert f["chat"]["ok"] is True and len(doc["findings"]) >= 14


def test_ignored_json_object_prose_still_counts_as_accepted(server):
    # a model that answers prose even under json_object: the format was accepted, the ladder validates
    Endpoint(json_schema="reject", json_object="ignore").route(server)
    r, doc = doctor(server)
    assert by_name(doc)["json_object"]["value"] == "ignored"
    assert doc["capabilities"]["response_format"] == "json_object"


def test_bad_key_and_unreachable(server):
    Endpoint(key="sk-right").route(server)
    r, doc = doctor(server, "--api-key", "sk-wrong")
    assert r.exit_code == 4
    assert by_name(doc)["auth"]["ok"] is False
    assert "sk-wrong" not in r.stdout + r.stderr
    r = invoke("doctor", "--base-url", "http://127.0.0.1:9/v1", "--timeout", "2")
    assert r.exit_code == 6
    assert "reachable" in r.stdout and "no " in r.stdout


def test_a_stalled_probe_is_bounded_and_the_others_run(server):
    ep = Endpoint()
    ep.route(server)

    def slow_then_ok(handler, rec):
        body = rec.json
        if body.get("tools"):
            handler.play(Reply(pieces=[b"data: {}\n\n"], end="stall"), rec)
        else:
            ep(handler, rec)

    server.chat(slow_then_ok)
    r, doc = doctor(server, "--timeout", "1")
    assert r.exit_code == 0
    f = by_name(doc)
    assert f["tool_calls"]["ok"] is False
    assert f["json_schema"]["ok"] is True


def test_table_output(server):
    Endpoint().route(server)
    r = invoke("doctor", "--base-url", server.base_url)
    assert r.exit_code == 0
    assert "json_schema" in r.stdout and "ok " in r.stdout


def test_save_then_schema_skips_the_failing_attempt(server, tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text(f"providers:\n  mine:\n    base_url: {server.base_url}\n    model: test-model\n")
    monkeypatch.setenv("LLMCLI_CONFIG", str(config))
    ep = Endpoint(json_schema="reject").route(server)
    r = invoke("doctor", "-p", "mine", "--save")
    assert r.exit_code == 0, r
    saved = yaml.safe_load(config.read_text())
    assert saved["providers"]["mine"]["base_url"] == server.base_url
    assert saved["providers"]["mine"]["capabilities"]["response_format"] == "json_object"
    assert (tmp_path / "config.yaml.bak").exists()
    ep.bodies.clear()
    r = invoke("ask", "-p", "mine", "--schema", "city, country", "capital of France?")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout) == {"city": "Paris", "country": "France"}
    assert [b.get("response_format", {}).get("type") for b in ep.bodies] == ["json_object"]
    assert r.stderr == ""
    r = invoke("config", "show", "-p", "mine", "--json")
    assert "unknown config key" not in r.stderr
    assert json.loads(r.stdout)["capabilities"]["value"]["response_format"] == "json_object"


def test_save_needs_a_provider(server):
    Endpoint().route(server)
    r = invoke("doctor", "--base-url", server.base_url, "--save")
    assert r.exit_code == 2 and "-p PROVIDER" in r.stderr
