"""The tool loop end to end: a scripted chat server streams tool calls in pieces, llmcli runs the
built-in tools against local pages and a local search endpoint, and sends well-formed follow-ups."""

import json

import pytest

from conftest import invoke
from localserver import Reply, chunk, split_three_ways, sse, text_stream


def tool_call_stream(calls, split=7):
    """SSE pieces for a turn that streams `calls` [(id, name, args_json)] with arguments in small fragments."""
    chunks = [chunk(role="assistant", content=None)]
    for index, (cid, name, args) in enumerate(calls):
        chunks.append(chunk(tool_calls=[{"index": index, "id": cid, "type": "function",
                                         "function": {"name": name, "arguments": ""}}]))
        for i in range(0, len(args), split):
            chunks.append(chunk(tool_calls=[{"index": index, "function": {"arguments": args[i:i + split]}}]))
    chunks.append(chunk(finish="tool_calls"))
    return sse(*chunks)


def check_follow_up(body, calls):
    """The follow-up must carry the assistant message with string arguments and one tool message per call."""
    msgs = body["messages"]
    n = len(calls)
    assistant = msgs[-(n + 1)]
    assert assistant["role"] == "assistant"
    assert [c["id"] for c in assistant["tool_calls"]] == [c[0] for c in calls]
    for sent, (cid, name, args) in zip(assistant["tool_calls"], calls):
        assert sent["type"] == "function" and sent["function"]["name"] == name
        assert isinstance(sent["function"]["arguments"], str)
    tool_msgs = msgs[-n:]
    assert [m["role"] for m in tool_msgs] == ["tool"] * n
    assert [m["tool_call_id"] for m in tool_msgs] == [c[0] for c in calls]
    return tool_msgs


@pytest.fixture
def page(server):
    from localserver import Reply as R

    html = (b"<html><head><title>Local page</title><script>var secret='SCRIPT-TEXT';</script></head>"
            b"<body><nav>NAV-MENU</nav><article><h1>Local page</h1><p>The answer is 42. "
            b"See <a href='/more'>more</a>.</p><p>" + b"Filler sentence for the article body. " * 10
            + b"</p></article></body></html>")
    server.route("/page", R(pieces=[html], content_type="text/html; charset=utf-8", chunked=False), method="GET")
    return server.url + "/page"


@pytest.mark.parametrize("way", ["as_written", "one_write", "bytewise"])
def test_fetch_loop_three_ways(server, page, way):
    calls = [("call_a", "web_fetch", json.dumps({"url": page}))]
    first = split_three_ways(tool_call_stream(calls))[way]
    server.chat([Reply(pieces=first), Reply(pieces=text_stream("The page says ", "42."))])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_fetch", "--allow-private-urls", "--json", "read it")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["content"] == "The page says 42."
    assert len(doc["tool_calls"]) == 1
    tc = doc["tool_calls"][0]
    assert tc["name"] == "web_fetch" and tc["arguments"] == {"url": page} and tc["error"] is None
    assert "The answer is 42" in tc["output"] and "SCRIPT-TEXT" not in tc["output"]
    chat_requests = [q for q in server.requests if q.path == "/v1/chat/completions"]
    assert len(chat_requests) == 2
    assert [t["function"]["name"] for t in chat_requests[0].json["tools"]] == ["web_fetch"]
    tool_msgs = check_follow_up(chat_requests[1].json, calls)
    assert "The answer is 42" in tool_msgs[0]["content"]
    assert "[tool] web_fetch(" in r.stderr


def test_parallel_calls_search_and_fetch(server, page):
    server.route("/searx/search", Reply(pieces=[json.dumps({"results": [
        {"title": "Result one", "url": "https://one.example/", "content": "first snippet"}]}).encode()],
        content_type="application/json", chunked=False), method="GET")
    cfg = server.url
    calls = [("c1", "web_search", '{"query": "life", "count": 1}'), ("c2", "web_fetch", json.dumps({"url": page}))]
    server.chat([Reply(pieces=tool_call_stream(calls, split=3)), Reply(pieces=text_stream("done"))])
    r = invoke("ask", "--base-url", server.base_url, "--tools", "--allow-private-urls", "--jsonl", "go",
               env={"LLMCLI_SEARXNG_URL": cfg + "/searx"})
    assert r.exit_code == 0, r
    events = [json.loads(x) for x in r.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds.count("tool_call") == 2 and kinds.count("tool_result") == 2
    results = [e for e in events if e["type"] == "tool_result"]
    assert "Result one" in results[0]["output"] and "https://one.example/" in results[0]["output"]
    assert "The answer is 42" in results[1]["output"]
    follow = [q for q in server.requests if q.path == "/v1/chat/completions"][1].json
    check_follow_up(follow, calls)
    search_req = [q for q in server.requests if q.path.startswith("/searx/search")][0]
    assert "q=life" in search_req.path and "format=json" in search_req.path


def test_bad_calls_become_error_results_and_the_run_goes_on(server):
    calls = [("c1", "no_such_tool", "{}"), ("c2", "web_fetch", '{"url": "http://x'), ("c3", "web_fetch", "{}")]
    server.chat([Reply(pieces=tool_call_stream(calls)), Reply(pieces=text_stream("sorry"))])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_fetch", "--json", "go")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    errors = [t["error"] for t in doc["tool_calls"]]
    assert "unknown tool 'no_such_tool'" in errors[0]
    assert "not valid JSON" in errors[1]
    assert "url" in errors[2]
    follow = [q for q in server.requests if q.path == "/v1/chat/completions"][1].json
    tool_msgs = check_follow_up(follow, calls)
    assert all(m["content"].startswith("error: ") for m in tool_msgs)
    assert r.stderr.count("[tool]") == 3


def test_round_limit_exit_5(server):
    calls = [("c1", "web_search", '{"query": "x"}')]
    server.chat(Reply(pieces=tool_call_stream(calls)))  # the model never stops calling
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_search", "--max-tool-rounds", "2", "--json", "go")
    assert r.exit_code == 5
    doc = json.loads(r.stdout)
    assert doc["error"]["type"] == "tool_rounds" and "2 rounds" in doc["error"]["message"]
    assert len([t for t in doc["tool_calls"] if t["error"] != "not executed"]) == 2
    assert len([q for q in server.requests if q.path == "/v1/chat/completions"]) == 3


def test_confirm_tools_without_terminal_refuses(server, page):
    calls = [("c1", "web_fetch", json.dumps({"url": page}))]
    server.chat([Reply(pieces=tool_call_stream(calls)), Reply(pieces=text_stream("ok"))])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_fetch", "--allow-private-urls", "--confirm-tools",
               "--json", "go")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["tool_calls"][0]["error"] == "refused by user"
    assert not any(q.path == "/page" for q in server.requests)


def test_private_address_refused_by_default(server, page):
    calls = [("c1", "web_fetch", json.dumps({"url": page}))]
    server.chat([Reply(pieces=tool_call_stream(calls)), Reply(pieces=text_stream("ok"))])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_fetch", "--json", "go")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert "allow" in doc["tool_calls"][0]["error"]
    assert not any(q.path == "/page" for q in server.requests)


def test_schemas_only_sent_when_tools_enabled(server):
    server.chat(Reply(pieces=text_stream("hi")))
    invoke("ask", "--base-url", server.base_url, "q")
    assert "tools" not in server.requests[-1].json
    invoke("ask", "--base-url", server.base_url, "--tools", "q")
    assert [t["function"]["name"] for t in server.requests[-1].json["tools"]] == ["web_search", "web_fetch"]


def test_calls_without_enabled_tools_are_reported_not_run(server):
    calls = [("c1", "web_search", '{"query": "x"}')]
    server.chat(Reply(pieces=tool_call_stream(calls)))
    r = invoke("ask", "--base-url", server.base_url, "--json", "go")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["tool_calls"] == [{"id": "c1", "name": "web_search", "arguments": {"query": "x"},
                                  "output": None, "error": "not executed"}]
    assert "none are enabled" in r.stderr
    assert len(server.requests) == 1


def test_length_while_streaming_a_call_is_exit_5_and_not_run(server):
    pieces = sse(chunk(tool_calls=[{"index": 0, "id": "c1", "type": "function",
                                    "function": {"name": "web_search", "arguments": '{"que'}}]),
                 chunk(finish="length"))
    server.chat(Reply(pieces=pieces))
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_search", "go")
    assert r.exit_code == 5
    assert len(server.requests) == 1


def test_tools_command_lists_schemas():
    r = invoke("tools", "--json")
    assert r.exit_code == 0
    schemas = json.loads(r.stdout)
    names = [s["function"]["name"] for s in schemas]
    assert names == ["web_search", "web_fetch"]
    assert schemas[0]["function"]["parameters"]["required"] == ["query"]


def test_confirm_tools_on_a_terminal_yes_no_always(server, page):
    """On a real terminal each call is asked about: n refuses, a allows this and every later call."""
    import os
    import sys

    import pexpect

    calls = [("c1", "web_fetch", json.dumps({"url": page})), ("c2", "web_fetch", json.dumps({"url": page})),
             ("c3", "web_fetch", json.dumps({"url": page}))]
    server.chat([Reply(pieces=tool_call_stream(calls)), Reply(pieces=tool_call_stream([calls[0]])),
                 Reply(pieces=text_stream("fin"))])
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "ask", "--base-url", server.base_url, "-T", "web_fetch",
                                           "--allow-private-urls", "--confirm-tools", "go"],
                          env=dict(os.environ), encoding="utf-8", timeout=10)
    child.expect_exact("llmcli: run web_fetch(")
    child.expect_exact("[y]es/[n]o/[a]lways: ")
    child.sendline("n")
    child.expect_exact("[y]es/[n]o/[a]lways: ")
    child.sendline("a")
    child.expect_exact("fin")  # c3 and the next round's call ran without asking again
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    follow = [q for q in server.requests if q.path == "/v1/chat/completions"][1].json
    contents = [m["content"] for m in follow["messages"] if m["role"] == "tool"]
    assert contents[0] == "error: refused by user"
    assert "The answer is 42" in contents[1] and "The answer is 42" in contents[2]
    assert len([q for q in server.requests if q.path == "/page"]) == 3


# -- the tools run directly ---------------------------------------------------------------------

def test_fetch_command_text_and_json(server, page):
    r = invoke("fetch", "--allow-private-urls", page)
    assert r.exit_code == 0, r
    assert "The answer is 42" in r.stdout and "NAV-MENU" not in r.stdout
    r = invoke("fetch", "--allow-private-urls", "--json", "--max-chars", "30", page)
    doc = json.loads(r.stdout)
    assert doc["title"] == "Local page" and doc["truncated"] is True and doc["url"] == page


@pytest.mark.parametrize("args,code,message", [
    ([], 3, "allow-private-urls"),  # loopback refused by default: input error
    (["--allow-private-urls"], 4, "answered HTTP 404"),
])
def test_fetch_command_exit_codes(server, args, code, message):
    r = invoke("fetch", *args, server.url + "/missing")
    assert r.exit_code == code, r
    assert r.stderr.startswith("llmcli: error: ") and message in r.stderr
    assert r.stdout == ""


def test_fetch_command_network_error_exit_6():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = invoke("fetch", "--allow-private-urls", f"http://127.0.0.1:{port}/")
    assert r.exit_code == 6 and "could not connect" in r.stderr


def test_search_command(server):
    server.route("/searx/search", Reply(pieces=[json.dumps({"results": [
        {"title": "T1", "url": "https://a.example/", "content": "s1"},
        {"title": "T2", "url": "https://b.example/", "content": "s2"}]}).encode()],
        content_type="application/json", chunked=False), method="GET")
    env = {"LLMCLI_SEARXNG_URL": server.url + "/searx"}
    r = invoke("search", "-n", "2", "cats", env=env)
    assert r.exit_code == 0, r
    assert r.stdout == "1. T1\n   https://a.example/\n   s1\n2. T2\n   https://b.example/\n   s2\n"
    r = invoke("search", "--json", "cats", env=env)
    assert [x["url"] for x in json.loads(r.stdout)] == ["https://a.example/", "https://b.example/"]


def test_search_command_not_configured_uses_the_keyless_backend(tmp_path):
    r = invoke("search", "cats")  # DuckDuckGo, which conftest points at a closed local port
    assert r.exit_code == 6 and "could not connect to DuckDuckGo at http://127.0.0.1:9/html/" in r.stderr
    config = tmp_path / "config.yaml"
    config.write_text("tools:\n  web_search:\n    backend: off\n")
    r = invoke("search", "--config", str(config), "cats")
    assert r.exit_code == 3 and "BRAVE_API_KEY" in r.stderr


def test_tool_commands_need_no_provider(server, page):
    env = {"OPENAI_API_KEY": "sk-a-123456789", "GROQ_API_KEY": "gsk-b-123456789"}  # ambiguous for `ask`
    r = invoke("fetch", "--allow-private-urls", page, env=env)
    assert r.exit_code == 0, r
    assert "The answer is 42" in r.stdout


def test_invalid_arguments_follow_up_is_valid_json_and_the_error_quotes_them(server):
    calls = [("c1", "web_fetch", '{"url": "http://x')]
    server.chat([Reply(pieces=tool_call_stream(calls)), Reply(pieces=text_stream("ok"))])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_fetch", "go")
    assert r.exit_code == 0, r
    follow = [q for q in server.requests if q.path == "/v1/chat/completions"][1].json
    sent = follow["messages"][-2]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(sent) == {}
    assert '{"url": "http://x' in follow["messages"][-1]["content"]


def test_tool_loop_without_streaming(server, page):
    first = {"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "web_fetch", "arguments": json.dumps({"url": page})}}]}}]}
    final = {"id": "y", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": "It says 42."}}]}
    server.chat([Reply(pieces=[json.dumps(first).encode()], content_type="application/json", chunked=False),
                 Reply(pieces=[json.dumps(final).encode()], content_type="application/json", chunked=False)])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_fetch", "--allow-private-urls", "--no-stream", "--json", "go")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["content"] == "It says 42."
    assert "The answer is 42" in doc["tool_calls"][0]["output"]
    chat_requests = [q for q in server.requests if q.path == "/v1/chat/completions"]
    assert [q.json["stream"] for q in chat_requests] == [False, False]
    check_follow_up(chat_requests[1].json, [("c1", "web_fetch", "")])


@pytest.mark.parametrize("choice", ['{"type": "function", "function": {"name": "web_fetch"}}', '"required"'])
def test_a_forced_tool_choice_holds_for_the_first_request_only(server, choice):
    """Repeated after the tool results, a forced call would loop to --max-tool-rounds; then it is auto."""
    server.chat([Reply(pieces=tool_call_stream([("c1", "web_fetch", "{}")])), Reply(pieces=text_stream("done"))])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_fetch", "-o", "tool_choice", choice, "go")
    assert r.exit_code == 0, r
    assert r.stdout == "done\n"
    first, second = [q.json for q in server.requests if q.path == "/v1/chat/completions"]
    assert first["tool_choice"] == json.loads(choice)
    assert second["tool_choice"] == "auto"


def test_jsonl_tool_call_deltas_before_the_complete_call(server, page, way):
    calls = [("call_a", "web_fetch", json.dumps({"url": page}))]
    server.chat([Reply(pieces=split_three_ways(tool_call_stream(calls, split=5))[way]),
                 Reply(pieces=text_stream("ok"))])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_fetch", "--allow-private-urls", "--jsonl", "go")
    assert r.exit_code == 0, r
    events = [json.loads(x) for x in r.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    deltas = [e for e in events if e["type"] == "tool_call_delta"]
    assert deltas and kinds.index("tool_call") > kinds.index("tool_call_delta")
    assert max(i for i, k in enumerate(kinds) if k == "tool_call_delta") < kinds.index("tool_call")
    assert {d["index"] for d in deltas} == {0}
    assert deltas[0]["id"] == "call_a" and deltas[0]["name"] == "web_fetch"
    assert "".join(d["arguments"] for d in deltas) == calls[0][2]


def test_tool_call_deltas_only_in_jsonl(server, page):
    calls = [("call_a", "web_fetch", json.dumps({"url": page}))]
    server.chat([Reply(pieces=tool_call_stream(calls)), Reply(pieces=text_stream("ok"))])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_fetch", "--allow-private-urls", "--json", "go")
    assert r.exit_code == 0, r
    assert "tool_call_delta" not in r.stdout and "tool_call_delta" not in r.stderr


def test_split_tool_name_joined_end_to_end(server, page):
    pieces = sse(chunk(tool_calls=[{"index": 0, "id": "c1", "type": "function",
                                    "function": {"name": "web_", "arguments": ""}}]),
                 chunk(tool_calls=[{"index": 0, "function": {"name": "fetch",
                                                             "arguments": json.dumps({"url": page})}}]),
                 chunk(finish="tool_calls"))
    server.chat([Reply(pieces=pieces), Reply(pieces=text_stream("ok"))])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_fetch", "--allow-private-urls", "--json", "go")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["tool_calls"][0]["name"] == "web_fetch" and "42" in doc["tool_calls"][0]["output"]


# --- reasoning across tool calls (issue 18): what the follow-up carries, per provider --------------

def reasoning_tool_stream(url, details=True, field="reasoning"):
    """A thinking model's turn: reasoning (with OpenRouter's reasoning_details), then one tool call."""
    def think(text, n):
        delta = {field: text}
        if details:
            delta["reasoning_details"] = [{"type": "reasoning.text", "text": text, "format": "anthropic-claude-v1",
                                           "index": 0, **({"signature": "sig-XYZ"} if n else {})}]
        return chunk(**delta)
    return sse(chunk(role="assistant", content=""), think("Need the ", 0), think("page.", 1),
               chunk(tool_calls=[{"index": 0, "id": "c1", "type": "function",
                                  "function": {"name": "web_fetch", "arguments": json.dumps({"url": url})}}]),
               chunk(finish="tool_calls"))


def follow_up_assistant(server):
    follow = [q for q in server.requests if q.path == "/v1/chat/completions"][1].json
    return [m for m in follow["messages"] if m["role"] == "assistant"][-1]


def test_openrouter_reasoning_details_go_back_verbatim(server, page, way):
    server.chat([Reply(pieces=split_three_ways(reasoning_tool_stream(page))[way]),
                 Reply(pieces=text_stream("42"))])
    r = invoke("ask", "-p", "openrouter", "--base-url", server.base_url, "-T", "web_fetch",
               "--allow-private-urls", "--json", "go", env={"OPENROUTER_API_KEY": "sk-or-test"})
    assert r.exit_code == 0, r
    assistant = follow_up_assistant(server)
    assert assistant["reasoning_details"] == [{"type": "reasoning.text", "text": "Need the page.",
                                               "format": "anthropic-claude-v1", "index": 0,
                                               "signature": "sig-XYZ"}]
    assert "reasoning_content" not in assistant
    assert assistant["tool_calls"][0]["id"] == "c1"


def test_deepseek_reasoning_content_never_sent_back(server, page):
    server.chat([Reply(pieces=reasoning_tool_stream(page, details=False, field="reasoning_content")),
                 Reply(pieces=text_stream("42"))])
    r = invoke("ask", "-p", "deepseek", "--base-url", server.base_url, "-T", "web_fetch",
               "--allow-private-urls", "--json", "go", env={"DEEPSEEK_API_KEY": "sk-ds-test"})
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["reasoning"].startswith("Need the page.")
    assistant = follow_up_assistant(server)
    assert set(assistant) == {"role", "content", "tool_calls"}


def test_generic_provider_sends_no_reasoning_by_default(server, page):
    server.chat([Reply(pieces=reasoning_tool_stream(page)), Reply(pieces=text_stream("42"))])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_fetch", "--allow-private-urls", "go")
    assert r.exit_code == 0, r
    assert set(follow_up_assistant(server)) == {"role", "content", "tool_calls"}


def test_send_reasoning_tool_turns_for_a_configured_provider(server, page, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"providers:\n  mine:\n    base_url: {server.base_url}\n    send_reasoning: tool_turns\n")
    server.chat([Reply(pieces=reasoning_tool_stream(page, details=False, field="reasoning_content")),
                 Reply(pieces=text_stream("42"))])
    r = invoke("ask", "--config", str(cfg), "-p", "mine", "-T", "web_fetch", "--allow-private-urls", "go")
    assert r.exit_code == 0, r
    assistant = follow_up_assistant(server)
    assert assistant["reasoning_content"] == "Need the page."
    assert "reasoning_details" not in assistant


def test_send_reasoning_bad_value_is_a_config_error(server, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"providers:\n  mine:\n    base_url: {server.base_url}\n    send_reasoning: sometimes\n")
    r = invoke("ask", "--config", str(cfg), "-p", "mine", "go")
    assert r.exit_code == 3, r
    assert "send_reasoning" in r.stderr and "never, tool_turns, always" in r.stderr
    assert not server.requests


def test_reasoning_in_a_history_is_not_sent_to_deepseek(server, tmp_path):
    history = tmp_path / "h.json"
    history.write_text(json.dumps([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "reasoning_content": "greet", "reasoning_details": [
            {"type": "reasoning.text", "text": "greet"}]}]))
    server.chat(Reply(pieces=text_stream("ok")))
    r = invoke("ask", "-p", "deepseek", "--base-url", server.base_url, "--history", str(history), "again",
               env={"DEEPSEEK_API_KEY": "sk-ds"})
    assert r.exit_code == 0, r
    assistant = [m for m in server.requests[-1].json["messages"] if m["role"] == "assistant"][0]
    assert assistant == {"role": "assistant", "content": "hello"}
    # OpenRouter keeps its own details (and drops DeepSeek's field)
    server.chat(Reply(pieces=text_stream("ok")))
    r = invoke("ask", "-p", "openrouter", "--base-url", server.base_url, "--history", str(history), "again",
               env={"OPENROUTER_API_KEY": "sk-or"})
    assert r.exit_code == 0, r
    assistant = [m for m in server.requests[-1].json["messages"] if m["role"] == "assistant"][0]
    assert assistant["reasoning_details"] == [{"type": "reasoning.text", "text": "greet"}]
    assert "reasoning_content" not in assistant
