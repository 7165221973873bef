"""`llmcli ask` end to end against a real local server that writes SSE bytes in chosen pieces."""

import json

import pytest

from conftest import invoke
from localserver import Reply, chunk, split_three_ways, sse, text_stream

OPENAI_STREAM = text_stream("Hel", "lo, ", "wörld", " 日本", finish="stop",
                            usage={"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9})


@pytest.mark.parametrize("way", ["as_written", "one_write", "bytewise"])
def test_text_streams_to_stdout_whatever_the_chunking(server, llmcli, way):
    server.chat(Reply(pieces=split_three_ways(OPENAI_STREAM)[way]))
    r = llmcli("hi")
    assert r.exit_code == 0, r
    assert r.stdout == "Hello, wörld 日本\n"
    assert r.stderr == ""


@pytest.mark.parametrize("way", ["as_written", "one_write", "bytewise"])
def test_json_document(server, llmcli, way):
    server.chat(Reply(pieces=split_three_ways(OPENAI_STREAM)[way]))
    r = llmcli("--json", "hi")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["content"] == "Hello, wörld 日本"
    assert doc["finish_reason"] == "stop"
    assert doc["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9,
                            "cost": {"amount": None, "currency": "USD", "source": "unknown"}}
    assert doc["model"] == "test-model"
    assert doc["error"] is None and doc["tool_calls"] == []
    assert isinstance(doc["timing"]["first_token_ms"], int) and doc["timing"]["total_ms"] >= doc["timing"]["first_token_ms"]


def test_request_body_carries_prompt_model_options_and_auth(server, llmcli):
    server.chat(Reply(pieces=OPENAI_STREAM))
    r = llmcli("-m", "my-model", "--api-key", "sk-test-123456789", "-s", "be brief",
               "-o", "temperature", "0.2", "-o", "max_tokens", "50", "-o", "stop", '["x"]', "hello", "there")
    assert r.exit_code == 0, r
    req = server.requests[-1]
    assert req.path == "/v1/chat/completions"
    assert req.headers["Authorization"] == "Bearer sk-test-123456789"
    body = req.json
    assert body["model"] == "my-model"
    assert body["stream"] is True
    assert body["temperature"] == 0.2 and body["max_tokens"] == 50 and body["stop"] == ["x"]
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    assert "tools" not in body
    assert "sk-test-123456789" not in r.stdout + r.stderr


def test_short_options_bundled_and_a_misspelt_long_one(server, llmcli):
    """Short options skip click's long-option lookup (cli/app.py LLMCliCommand, issue 22): bundled,
    attached and separate forms still parse, and a misspelt long option still gets its suggestion."""
    for args in (("-qm", "my-model"), ("-mmy-model",), ("-m", "my-model", "-q"), ("-m=my-model",)):
        server.chat(Reply(pieces=OPENAI_STREAM))
        r = llmcli(*args, "hello")
        assert r.exit_code == 0, (args, r)
        assert server.requests[-1].json["model"] == ("=my-model" if args == ("-m=my-model",) else "my-model"), args
    r = llmcli("--modle", "x", "hello")
    assert r.exit_code == 2 and "No such option '--modle'" in r.stderr and "--model" in r.stderr, r
    r = llmcli("-Z", "hello")
    assert r.exit_code == 2 and "No such option '-Z'" in r.stderr, r


def test_stdin_then_blank_line_then_prompt(server, llmcli):
    server.chat(Reply(pieces=OPENAI_STREAM))
    r = llmcli("summarise", input="line one\nline two\n")
    assert r.exit_code == 0, r
    assert server.requests[-1].json["messages"][-1]["content"] == "line one\nline two\n\nsummarise"


def test_files_are_inserted_with_their_names(server, llmcli, tmp_path):
    f = tmp_path / "notes.md"
    f.write_text("# Notes\nsome text\n")
    server.chat(Reply(pieces=OPENAI_STREAM))
    r = llmcli("-f", str(f), "what is this?")
    assert r.exit_code == 0, r
    content = server.requests[-1].json["messages"][-1]["content"]
    assert content == f"{f}:\n```\n# Notes\nsome text\n```\n\nwhat is this?"


def test_history_file_json_yaml_jsonl(server, llmcli, tmp_path):
    msgs = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "web_search", "arguments": {"query": "w"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
    ]
    import yaml

    paths = {"h.json": json.dumps(msgs), "h.yaml": yaml.safe_dump(msgs),
             "h.jsonl": "\n".join(json.dumps(m) for m in msgs)}
    for name, text in paths.items():
        (tmp_path / name).write_text(text)
        server.chat(Reply(pieces=OPENAI_STREAM))
        r = llmcli("--history", str(tmp_path / name), "and tomorrow?")
        assert r.exit_code == 0, (name, r)
        sent = server.requests[-1].json["messages"]
        assert len(sent) == 5
        assert sent[1]["tool_calls"][0]["function"]["arguments"] == '{"query": "w"}'
        assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        assert sent[-1] == {"role": "user", "content": "and tomorrow?"}


def test_jsonl_events(server, llmcli):
    server.chat(Reply(pieces=OPENAI_STREAM))
    r = llmcli("--jsonl", "hi")
    assert r.exit_code == 0, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    texts = [e["text"] for e in events if e["type"] == "text"]
    assert "".join(texts) == "Hello, wörld 日本"
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "stop"
    assert any(e["type"] == "usage" for e in events)


def test_no_stream_sends_stream_false_and_prints_the_same(server, llmcli):
    body = {"id": "x", "model": "m1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                                                    "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    server.chat(Reply(pieces=[json.dumps(body).encode()], content_type="application/json", chunked=False))
    r = llmcli("--no-stream", "--json", "capital?")
    assert r.exit_code == 0, r
    assert server.requests[-1].json["stream"] is False
    doc = json.loads(r.stdout)
    assert doc["content"] == "Paris." and doc["usage"]["total_tokens"] == 5 and doc["model"] == "m1"


def test_reasoning_and_refusal_never_reach_stdout(server, llmcli):
    pieces = sse(chunk(reasoning_content="thinking…"), chunk("Answer"), chunk(refusal="I can't"), chunk(finish="stop"))
    server.chat(Reply(pieces=pieces))
    r = llmcli("--reasoning", "q")
    assert r.exit_code == 0, r
    assert r.stdout == "Answer\n"
    assert "thinking…" in r.stderr
    assert "llmcli: warning: the model refused: I can't" in r.stderr


def test_length_finish_is_success_with_a_warning(server, llmcli):
    server.chat(Reply(pieces=text_stream("partial", finish="length")))
    r = llmcli("q")
    assert r.exit_code == 0
    assert r.stdout == "partial\n"
    assert "cut off at the token limit" in r.stderr


# -- exit codes ---------------------------------------------------------------------------------

def test_http_401_exit_4_with_server_message(server, llmcli):
    server.chat(Reply(status=401, pieces=[b'{"error":{"message":"Invalid API key provided","code":"invalid_api_key"}}'],
                      content_type="application/json", chunked=False))
    r = llmcli("--api-key", "sk-secret-value-999", "q")
    assert r.exit_code == 4
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmcli: error: HTTP 401")
    assert "Invalid API key provided" in lines[0]
    assert "sk-secret-value-999" not in r.stderr


def test_200_json_error_body_is_http_class(server, llmcli):
    server.chat(Reply(pieces=[b'{"error":{"message":"model not found"}}'], content_type="application/json", chunked=False))
    r = llmcli("--json", "q")
    assert r.exit_code == 4
    doc = json.loads(r.stdout)
    assert doc["error"]["type"] == "http" and "model not found" in doc["error"]["message"]


def test_truncated_stream_exit_5_keeps_text(server, llmcli):
    server.chat(Reply(pieces=sse(chunk("Hello"), chunk(" wor"), done=False)))
    r = llmcli("q")
    assert r.exit_code == 5, r
    assert r.stdout == "Hello wor\n"
    assert r.stderr.count("llmcli: error:") == 1


def test_truncated_stream_json_still_one_document(server, llmcli):
    server.chat(Reply(pieces=sse(chunk("Hello"), done=False)))
    r = llmcli("--json", "q")
    assert r.exit_code == 5
    doc = json.loads(r.stdout)
    assert doc["content"] == "Hello" and doc["error"]["type"] == "stream"


def test_in_stream_error_exit_5(server, llmcli):
    server.chat(Reply(pieces=sse(chunk("Hi"), {"error": {"message": "upstream overloaded", "code": 502}})))
    r = llmcli("q")
    assert r.exit_code == 5
    assert r.stdout == "Hi\n"
    assert "upstream overloaded" in r.stderr


def test_refused_port_exit_6(llmcli):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = invoke("ask", "--base-url", f"http://127.0.0.1:{port}/v1", "--retries", "0", "q")
    assert r.exit_code == 6
    assert "connection refused" in r.stderr


def test_usage_error_exit_2():
    r = invoke("ask", "--json", "--jsonl", "q")
    assert r.exit_code == 2


def test_invalid_yaml_config_exit_3_with_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("providers:\n  x:\n    base_url: [unclosed\n")
    r = invoke("ask", "--config", str(cfg), "q")
    assert r.exit_code == 3
    assert str(cfg) + ":" in r.stderr and "invalid YAML" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_file_exit_3(server, llmcli, tmp_path):
    r = llmcli("-f", str(tmp_path / "nope.txt"), "q")
    assert r.exit_code == 3
    assert r.stderr.strip() == f"llmcli: error: file not found: {tmp_path / 'nope.txt'}"
    assert server.requests == []


def test_base_url_without_scheme_exit_3():
    r = invoke("ask", "--base-url", "127.0.0.1:9/v1", "q")
    assert r.exit_code == 3
    assert "has no scheme" in r.stderr


def test_no_prompt_on_a_terminal_is_a_usage_error_not_a_hang(server):
    import os
    import sys

    import pexpect

    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "ask", "--base-url", server.base_url],
                          env=dict(os.environ), encoding="utf-8", timeout=10)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert "llmcli: error: no prompt" in child.before
    assert server.requests == []


def test_non_utf8_locale_does_not_crash_on_emoji(server):
    import os
    import subprocess
    import sys

    server.chat(Reply(pieces=text_stream("ok 🎉 done")))
    env = dict(os.environ, PYTHONIOENCODING="latin-1", LC_ALL="C", LANG="C", PYTHONUTF8="0")
    proc = subprocess.run([sys.executable, "-m", "llmcli", "ask", "--base-url", server.base_url, "q"],
                          capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"ok ? done\n"


def test_system_prompt_precedence_with_history(server, tmp_path):
    hist = tmp_path / "h.json"
    hist.write_text(json.dumps([{"role": "system", "content": "from history"}, {"role": "user", "content": "a"},
                                {"role": "assistant", "content": "b"}]))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("system: from config\n")
    server.chat(Reply(pieces=OPENAI_STREAM))

    def system_sent(*args):
        r = invoke("ask", "--base-url", server.base_url, "--config", cfg, *args, "q")
        assert r.exit_code == 0, r
        return [m["content"] for m in server.requests[-1].json["messages"] if m["role"] == "system"]

    assert system_sent("--history", hist) == ["from history"]  # the config default does not override
    assert system_sent("--history", hist, "-s", "from flag") == ["from flag"]
    assert system_sent() == ["from config"]


@pytest.mark.parametrize("args,message", [
    (["asdf"], "llmcli: error: No such command 'asdf' (try 'llmcli --help')"),
    (["ask", "--bogus", "x"], "llmcli: error: No such option '--bogus' (try 'llmcli ask --help')"),
])
def test_usage_errors_are_one_line(args, message):
    r = invoke(*args)
    assert r.exit_code == 2
    assert r.stderr == message + "\n"


def test_usage_flag_with_and_without_server_usage(server, llmcli):
    server.chat([Reply(pieces=OPENAI_STREAM), Reply(pieces=text_stream("x"))])
    r = llmcli("-u", "q")
    assert "tokens: 5 in / 4 out · 9 total · cost unknown ·" in r.stderr
    r = llmcli("-u", "q")
    assert "tokens: not reported by the server;" in r.stderr


def test_a_preset_without_its_key_is_refused_before_any_request(monkeypatch):
    for name in ("OPENAI_API_KEY", "LLMCLI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    r = invoke("ask", "-p", "openai", "--retries", "0", "q")
    assert r.exit_code == 3, r
    assert r.stderr.strip() == ("llmcli: error: no API key for openai: set OPENAI_API_KEY, pass --api-key, or store "
                                "one with 'llmcli keys set openai'")
    # the preset pointed at one's own proxy may need no key: then the request goes out
    r = invoke("ask", "-p", "openai", "--base-url", "http://127.0.0.1:9/v1", "--retries", "0", "q")
    assert r.exit_code == 6 and "no API key" not in r.stderr


def test_config_show_works_with_two_provider_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-one-0123456789")
    monkeypatch.setenv("GROQ_API_KEY", "gsk-two-0123456789")
    r = invoke("ask", "q")
    assert r.exit_code == 3 and "several provider keys are set (OPENAI_API_KEY, GROQ_API_KEY)" in r.stderr
    assert "-p/--provider" in r.stderr
    r = invoke("config", "show")
    assert r.exit_code == 0 and "base_url" in r.stdout and "several provider keys" in r.stderr
    assert "sk-one-0123456789" not in r.stdout + r.stderr


def test_a_refused_loopback_port_is_not_retried():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    for host in ("127.0.0.1", "localhost"):
        r = invoke("ask", "--base-url", f"http://{host}:{port}/v1", "--retries", "3", "q")
        assert r.exit_code == 6 and "connection refused" in r.stderr
        assert "retrying" not in r.stderr, r.stderr


def test_loopback_detection():
    from llmcli.wire.client import _is_loopback

    assert _is_loopback("127.0.0.1:8080") and _is_loopback("localhost:1") and _is_loopback("[::1]:8080")
    assert _is_loopback("127.0.0.2") and not _is_loopback("10.0.0.1:80") and not _is_loopback("example.com:443")


def test_jsonl_emits_a_warning_event_for_a_length_finish(server, llmcli):
    server.chat(Reply(pieces=sse(chunk("abc"), chunk(finish="length"))))
    r = llmcli("--jsonl", "q")
    assert r.exit_code == 0
    events = [json.loads(line) for line in r.stdout.splitlines()]
    warnings = [e for e in events if e["type"] == "warning"]
    assert len(warnings) == 1 and "token limit" in warnings[0]["message"]
    assert [e["type"] for e in events][-2:] == ["warning", "done"]


def test_usage_line_shows_tokens_per_second(server, llmcli):
    usage = {"prompt_tokens": 3, "completion_tokens": 40, "total_tokens": 43}
    pieces = sse(chunk("a"), *[chunk("b") for _ in range(5)], chunk(finish="stop"), {"choices": [], "usage": usage})
    server.chat(Reply(pieces=pieces, delay=0.03))
    r = llmcli("-u", "q")
    assert r.exit_code == 0
    line, = [x for x in r.stderr.splitlines() if x.startswith("tokens:")]
    assert "40 out" in line and line.endswith(" tok/s"), line
    speed = float(line.rsplit("·", 1)[1].split()[0].replace(",", ""))
    assert 10 < speed < 40 / 0.1, line  # 40 tokens over ~0.2 s of pieces
