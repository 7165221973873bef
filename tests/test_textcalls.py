"""Tool calls written as text by local models (`--text-tool-calls`): the pure parser, fed whole and one
character at a time, then end to end through the tool loop against the local test server (issue 15)."""

import json

import pytest
from conftest import invoke
from localserver import Reply, chunk, sse, text_stream

from llmcli.wire.textcalls import TextCallFilter, parse_text_calls

NAMES = ("web_search", "add")


def run_filter(text, pieces):
    """Feed `text` in `pieces`-sized parts; returns (shown text, calls, what was shown before the end)."""
    f = TextCallFilter(NAMES)
    early = []
    for i in range(0, len(text), pieces):
        early.append(f.feed(text[i:i + pieces]))
    shown = "".join(early) + f.finish()
    assert shown == f.shown
    return shown, [(c.name, c.arguments) for c in f.calls], "".join(early)


CASES = [
    # (style, text, expected shown text, expected calls)
    ("hermes", 'Let me look.\n<tool_call>\n{"name": "web_search", "arguments": {"query": "paris"}}\n</tool_call>',
     "Let me look.\n", [("web_search", {"query": "paris"})]),
    ("hermes unclosed", '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}',
     "", [("add", {"a": 1, "b": 2})]),
    ("hermes two", '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>\n'
                   '<tool_call>{"name": "add", "arguments": {"a": 2}}</tool_call>',
     "\n", [("add", {"a": 1}), ("add", {"a": 2})]),
    ("qwen string arguments", '<tool_call>{"name": "add", "arguments": "{\\"a\\": 5}"}</tool_call>',
     "", [("add", {"a": 5})]),
    ("bare json", '{"name": "web_search", "arguments": {"query": "x"}}', "", [("web_search", {"query": "x"})]),
    ("llama3 parameters", 'Sure.\n{"type": "function", "name": "add", "parameters": {"a": 3}}',
     "Sure.\n", [("add", {"a": 3})]),
    ("openai-like nested", '{"type": "function", "function": {"name": "add", "arguments": {"a": 4}}}',
     "", [("add", {"a": 4})]),
    ("array", '[{"name": "add", "arguments": {"a": 1}}, {"name": "add", "arguments": {"a": 2}}]',
     "", [("add", {"a": 1}), ("add", {"a": 2})]),
    ("fenced", 'I will call it:\n```json\n{"name": "add", "arguments": {"a": 7}}\n```\nDone.',
     "I will call it:\n\nDone.", [("add", {"a": 7})]),
    ("python_tag", '<|python_tag|>{"name": "web_search", "parameters": {"query": "rome"}}<|eom_id|>',
     "", [("web_search", {"query": "rome"})]),
    ("python_tag two", '<|python_tag|>{"name": "add", "parameters": {"a": 1}}; {"name": "add", "parameters": {"a": 2}}',
     "", [("add", {"a": 1}), ("add", {"a": 2})]),
    ("function tag", 'Checking <function=web_search>{"query": "oslo"}</function> now',
     "Checking  now", [("web_search", {"query": "oslo"})]),
    ("mistral", '[TOOL_CALLS][{"name": "add", "arguments": {"a": 9}}]', "", [("add", {"a": 9})]),
    ("no arguments", '<tool_call>{"name": "add"}</tool_call>', "", [("add", {})]),
]


@pytest.mark.parametrize("pieces", [1, 3, 1000])
@pytest.mark.parametrize("style, text, shown, calls", CASES, ids=[c[0] for c in CASES])
def test_styles(style, text, shown, calls, pieces):
    got_shown, got_calls, _ = run_filter(text, pieces)
    assert got_calls == calls
    assert got_shown == shown


NOT_CALLS = [
    ("undeclared tool", '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>'),
    ("undeclared bare", '{"name": "delete_all", "arguments": {}}'),
    ("data object", '{"name": "Bob", "age": 42}'),
    ("json answer", '{"answer": 42}'),
    ("code", "int main() {\n{\n  return 0;\n}\n}"),
    ("code block", "```python\nprint({'name': 1})\n```"),
    ("prose brackets", "See [1] and [the docs](http://x) for {details}."),
    ("comparison", "a < b and b <c> d"),
    ("tag with prose", "<tool_call>I think I should search</tool_call>"),
    ("unfinished json", '{"name": "add", "arguments": {"a": 1'),
    ("function tag bad json", "<function=add>not json</function>"),
    ("mid-line brace", 'The call looks like {"name": "add", "arguments": {}} in JSON.'),
]


@pytest.mark.parametrize("pieces", [1, 1000])
@pytest.mark.parametrize("label, text", NOT_CALLS, ids=[c[0] for c in NOT_CALLS])
def test_text_that_is_not_a_call_is_shown_unchanged(label, text, pieces):
    shown, calls, _ = run_filter(text, pieces)
    assert calls == [] and shown == text


def test_held_back_only_while_undecided():
    f = TextCallFilter(NAMES)
    assert f.feed("Hello ") == "Hello "
    assert f.feed("world.\n{") == "world.\n"  # a { at a line start may begin a call: held
    assert f.holding == "{"
    assert f.feed('"answer"') == '{"answer"'  # no call starts like that: released at once
    assert f.feed(": 1}\n<") == ": 1}\n"
    assert f.feed("b>bold</b>") == "<b>bold</b>"
    assert f.feed("<tool_") == ""
    assert f.feed('call>{"name": "add"') == ""
    assert f.feed('}</tool_call> after') == " after"
    assert f.finish() == ""
    assert [c.name for c in f.calls] == ["add"]


def test_ids_and_argument_errors():
    shown, calls = parse_text_calls('<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>'
                                    '<tool_call>{"name": "add", "arguments": "not json"}</tool_call>',
                                    NAMES, id_prefix="r1")
    assert shown == ""
    assert [c.id for c in calls] == ["r1_0", "r1_1"]
    assert calls[0].arguments is None and "must be a JSON object" in calls[0].parse_error
    assert calls[1].arguments is None and calls[1].parse_error


# -- end to end: the loop runs them like native calls -----------------------------------------------


def _tools_py(tmp_path):
    path = tmp_path / "tools.py"
    path.write_text('def add(a: int, b: int = 0) -> int:\n    """Add two integers."""\n    return a + b\n')
    return str(path)


def text_pieces(text, size=2):
    """A streamed answer whose text arrives in `size`-character deltas."""
    chunks = [chunk(role="assistant", content="")]
    chunks += [chunk(content=text[i:i + size]) for i in range(0, len(text), size)]
    chunks.append(chunk(finish="stop"))
    return sse(*chunks)


CALL_TEXT = 'Adding.\n<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'


def test_end_to_end_json(server, tmp_path):
    server.chat([Reply(pieces=text_pieces(CALL_TEXT)), Reply(pieces=text_stream("The sum is 5."))])
    r = invoke("ask", "--base-url", server.base_url, "--functions", _tools_py(tmp_path), "--allow-tool", "add",
               "--text-tool-calls", "--json", "add 2 and 3")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["content"] == "Adding.\nThe sum is 5."
    assert doc["tool_calls"] == [{"id": "text_call_0_0", "name": "add", "arguments": {"a": 2, "b": 3},
                                  "output": "5", "error": None, **{k: v for k, v in doc["tool_calls"][0].items()
                                                                   if k not in ("id", "name", "arguments",
                                                                                "output", "error")}}]
    follow = server.requests[1].json["messages"]
    assert follow[-2] == {"role": "assistant", "content": "Adding.\n", "tool_calls": [
        {"id": "text_call_0_0", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]}
    assert follow[-1] == {"role": "tool", "tool_call_id": "text_call_0_0", "content": "5"}


def test_end_to_end_text_output_hides_the_call(server, tmp_path):
    server.chat([Reply(pieces=text_pieces(CALL_TEXT, size=1)), Reply(pieces=text_stream("Five."))])
    r = invoke("ask", "--base-url", server.base_url, "--functions", _tools_py(tmp_path), "--yes",
               "--text-tool-calls", "add")
    assert r.exit_code == 0, r
    assert "tool_call" not in r.stdout and '"name"' not in r.stdout
    assert "Adding." in r.stdout and "Five." in r.stdout


def test_end_to_end_jsonl_reports_the_call(server, tmp_path):
    server.chat([Reply(pieces=text_pieces(CALL_TEXT)), Reply(pieces=text_stream("Five."))])
    r = invoke("ask", "--base-url", server.base_url, "--functions", _tools_py(tmp_path), "--yes",
               "--text-tool-calls", "--jsonl", "add")
    assert r.exit_code == 0, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    text = "".join(e.get("text", "") for e in events if e.get("type") in ("text", "delta", "text_delta"))
    assert "tool_call" not in text
    starts = [e for e in events if "tool" in e.get("type", "") and e.get("name") == "add"]
    assert starts, events


def test_off_by_default_and_approval_applies(server, tmp_path):
    server.chat([Reply(pieces=text_pieces(CALL_TEXT))])
    r = invoke("ask", "--base-url", server.base_url, "--functions", _tools_py(tmp_path), "--json", "add")
    doc = json.loads(r.stdout)
    assert doc["content"] == CALL_TEXT and doc["tool_calls"] == []  # not enabled: just text
    server.chat([Reply(pieces=text_pieces(CALL_TEXT)), Reply(pieces=text_stream("ok"))])
    r = invoke("ask", "--base-url", server.base_url, "--functions", _tools_py(tmp_path), "--json",
               "--text-tool-calls", "add")
    doc = json.loads(r.stdout)
    assert doc["tool_calls"][0]["error"] == "refused by user"  # ask, no terminal: fail closed
    assert "--allow-tool add" in r.stderr


def test_provider_config_switch(server, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"providers:\n  mine:\n    base_url: {server.base_url}\n    text_tool_calls: yes\n")
    server.chat([Reply(pieces=text_pieces(CALL_TEXT)), Reply(pieces=text_stream("ok"))])
    r = invoke("ask", "--config", str(config), "-p", "mine", "--functions", _tools_py(tmp_path), "--yes",
               "--json", "add")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["tool_calls"][0]["output"] == "5"
    assert "unknown config key" not in r.stderr
    # --no-text-tool-calls wins over the config
    server.chat([Reply(pieces=text_pieces(CALL_TEXT))])
    r = invoke("ask", "--config", str(config), "-p", "mine", "--functions", _tools_py(tmp_path), "--yes",
               "--json", "--no-text-tool-calls", "add")
    assert json.loads(r.stdout)["tool_calls"] == []
    config.write_text(f"providers:\n  mine:\n    base_url: {server.base_url}\n    text_tool_calls: maybe\n")
    r = invoke("ask", "--config", str(config), "-p", "mine", "add")
    assert r.exit_code == 3 and "providers.mine.text_tool_calls" in r.stderr


def test_held_text_is_kept_when_the_stream_fails(server, tmp_path):
    pieces = text_pieces('Start.\n<tool_call>{"name": "add"', size=4)[:-2]  # no finish, no [DONE]
    server.chat([Reply(pieces=pieces)])
    r = invoke("ask", "--base-url", server.base_url, "--functions", _tools_py(tmp_path), "--yes",
               "--text-tool-calls", "--json", "add")
    assert r.exit_code == 5, r
    doc = json.loads(r.stdout)
    assert doc["content"] == 'Start.\n<tool_call>{"name": "add"'
    assert doc["error"]


def test_long_call_in_one_character_deltas():
    text = "x" * 20000
    call = json.dumps({"name": "web_search", "arguments": {"query": text}})
    f = TextCallFilter(NAMES)
    shown = "".join(f.feed(ch) for ch in "Here:\n" + call + "\nbye") + f.finish()
    assert shown == "Here:\n\nbye"
    assert f.calls[0].arguments == {"query": text}


def test_terminal_shows_text_at_once_and_never_the_call(server, tmp_path):
    """On a real terminal: the text before a call is on the screen while the call is still arriving
    (the server waits until the test has seen it), and the call's text never appears."""
    import io
    import os
    import sys
    import threading

    import pexpect

    gate = threading.Event()
    first = text_pieces('Visible text.\n<tool_call>{"name": "ad', size=3)[:-2]  # no finish, no [DONE] yet
    rest = sse(chunk(content='d", "arguments": {"a": 2, "b": 3}}</tool_call>'), chunk(finish="stop"))
    requests_seen = []

    def handle(h, rec):
        requests_seen.append(rec)
        pieces = (first, rest) if len(requests_seen) == 1 else (text_stream("The sum is 5."), [])
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for n, part in enumerate(pieces):
            if n == 1:
                gate.wait(10)
            for piece in part:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    server.route("/v1/chat/completions", handle)
    screen = io.StringIO()
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "ask", "--base-url", server.base_url, "--functions",
                                           _tools_py(tmp_path), "--yes", "--text-tool-calls", "add 2 and 3"],
                          env=dict(os.environ), encoding="utf-8", timeout=10)
    child.logfile_read = screen
    try:
        child.expect("Visible text.")  # shown before the rest of the stream was even sent
        gate.set()
        child.expect("The sum is 5.")
        child.expect(pexpect.EOF)
    finally:
        gate.set()
        child.close(force=True)
    assert child.exitstatus == 0, screen.getvalue()
    assert "tool_call" not in screen.getvalue() and '"name"' not in screen.getvalue()
    assert len(requests_seen) == 2


def test_ids_stay_unique_across_rounds_and_history(server, tmp_path):
    history = tmp_path / "history.json"
    history.write_text(json.dumps([{"role": "user", "content": "add"}, {"role": "assistant", "content": "ok"}]))
    server.chat([Reply(pieces=text_pieces(CALL_TEXT)), Reply(pieces=text_pieces(CALL_TEXT)),
                 Reply(pieces=text_stream("done"))])
    r = invoke("ask", "--base-url", server.base_url, "--functions", _tools_py(tmp_path), "--yes",
               "--text-tool-calls", "--history", str(history), "--json", "add")
    assert r.exit_code == 0, r
    assert [c["id"] for c in json.loads(r.stdout)["tool_calls"]] == ["text_call_1_0", "text_call_2_0"]
