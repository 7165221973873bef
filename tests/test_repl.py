"""`llmcli chat` in a real pseudo-terminal (pexpect) against the real local server.

The child is a real `python -m llmcli chat` process on a 40x120 pty with TERM=xterm. prompt_toolkit
asks the terminal where the cursor is (CPR, ESC [6n) before it draws the bottom toolbar; like a real
terminal, `Repl.expect` answers every such request, so the toolbar is drawn as users see it.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pexpect
import pytest

from conftest import invoke
from localserver import Reply, chunk, sse, text_stream

CPR_REQUEST = "\x1b[6n"
CPR_ANSWER = "\x1b[5;1R"  # "the cursor is on row 5, column 1"
# A prompt is up when prompt_toolkit has switched bracketed paste on and drawn the "> ".
PROMPT = r"\x1b\[\?2004h(?:\x1b\[[0-9;?]*[A-Za-z]|[\r\n])*>"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]|[\x08\r]")
ESC_ENTER = "\x1b\r"  # what a terminal sends for Alt+Enter
UP = "\x1b[A"
# Every wait is bounded (None would make pexpect wait forever and hang the suite with it).
WAIT = float(os.environ.get("LLMCLI_TEST_WAIT", "30"))


def plain(text):
    return ANSI.sub("", text)


class Repl:
    """A chat child process, with waits that answer the terminal queries a real terminal answers."""

    def __init__(self, child):
        self.child = child

    def expect(self, pattern, timeout=WAIT):
        """Wait for `pattern`; returns everything seen up to and including it, without ANSI codes."""
        seen = ""
        while True:
            index = self.child.expect([re.escape(CPR_REQUEST), pattern], timeout=timeout)
            seen += self.child.before
            if index == 0:
                self.child.send(CPR_ANSWER)
                continue
            if isinstance(self.child.after, str):
                seen += self.child.after
                if CPR_REQUEST in self.child.after:
                    self.child.send(CPR_ANSWER)
            return plain(seen)

    def prompt(self, timeout=WAIT):
        return self.expect(PROMPT, timeout)

    def say(self, text):
        """Type a line and press Enter; return what was printed until the next prompt."""
        self.child.send(text + "\r")
        return self.prompt()

    def exit(self):
        self.child.sendcontrol("d")
        self.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus


@pytest.fixture
def chat(server):
    children = []

    def spawn(*args, base_url=True):
        argv = ["-m", "llmcli", "chat"] + (["--base-url", server.base_url] if base_url else []) + list(args)
        env = dict(os.environ, TERM="xterm")  # LLMCLI_HOME, LLMCLI_CONFIG, NO_PROXY: from the autouse fixture
        child = pexpect.spawn(sys.executable, argv, env=env, dimensions=(40, 120), encoding="utf-8", timeout=8)
        # Every send follows a wait for the prompt, so pexpect's safety pauses can be short.
        child.delaybeforesend = 0.01
        child.delayafterclose = 0.02
        children.append(child)
        return Repl(child)

    yield spawn
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def answer(*texts, total=None):
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": total} if total else None
    return Reply(pieces=text_stream(*texts, usage=usage))


def wait_for_requests(server, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(server.requests) < count:
        assert time.monotonic() < deadline, f"the server got {len(server.requests)} requests, not {count}"
        time.sleep(0.01)


def user_messages(request):
    return [m["content"] for m in request.json["messages"] if m["role"] == "user"]


# ------------------------------------------------------------------------------------------------


def test_message_streams_answer_with_status_line_and_toolbar(server, chat):
    server.chat(answer("Hel", "lo, ", "wörld", total=42))
    repl = chat()
    start = repl.prompt()
    assert "/help" in start  # the toolbar: where, model, help
    out = repl.say("hi there")
    assert "Hello, wörld" in out
    assert "tokens: 3 in / 2 out · 42 total · cost unknown" in out
    body = server.requests[0].json
    assert body["messages"] == [{"role": "user", "content": "hi there"}]
    assert body["stream"] is True
    # The toolbar of the next prompt knows the conversation's size and the model the server named.
    toolbar = repl.expect(r"42 tokens")
    assert "test-model" in toolbar
    assert repl.exit() == 0


def test_esc_enter_inserts_a_newline_and_a_paste_is_one_message(server, chat):
    server.chat(answer("ok"))
    repl = chat()
    repl.prompt()
    repl.child.send("line one" + ESC_ENTER + "line two")
    repl.say("")
    repl.child.send("\x1b[200~a\nb\nc\x1b[201~")  # a bracketed paste of three lines
    repl.say("")
    assert len(server.requests) == 2
    assert user_messages(server.requests[0]) == ["line one\nline two"]
    assert server.requests[1].json["messages"][-1] == {"role": "user", "content": "a\nb\nc"}
    assert repl.exit() == 0


def test_input_history_persists_across_sessions_up_and_ctrl_r(server, chat, isolated_env):
    server.chat(answer("ok"))
    first = chat()
    first.prompt()
    first.say("remember me")
    first.say("second thing")
    assert first.exit() == 0
    assert (isolated_env / "chat_history").is_file()

    second = chat()
    second.prompt()
    second.child.send(UP)
    second.say("")
    assert server.requests[-1].json["messages"][-1]["content"] == "second thing"
    second.child.sendcontrol("r")
    second.child.send("remem")
    second.child.send("\r")  # leaves the search with the found line
    second.say("")
    assert server.requests[-1].json["messages"][-1]["content"] == "remember me"
    assert second.exit() == 0


def test_ctrl_c_stops_the_stream_keeps_the_partial_answer_and_closes_the_connection(server, chat, tmp_path):
    stalled = Reply(pieces=sse(chunk(role="assistant", content=""), chunk("Hello"), chunk(" partial"), done=False),
                    end="stall")
    server.chat([stalled, answer("fine")])
    repl = chat()
    repl.prompt()
    repl.child.send("tell me\r")
    repl.expect("Hello partial")
    started = time.monotonic()
    repl.child.sendintr()
    out = repl.prompt(timeout=5)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, elapsed
    assert "[interrupted]" in out
    assert server.wait_for_close(timeout=1.0), "the HTTP connection was left open"

    saved = tmp_path / "conv.json"
    repl.say(f"/save {saved}")
    # The interruption is kept as metadata (saved, shown), not sent to the model as part of the answer.
    assert json.loads(saved.read_text()) == [
        {"role": "user", "content": "tell me"},
        {"role": "assistant", "content": "Hello partial", "partial": "interrupted"},
    ]
    assert "fine" in repl.say("and now?")
    assert server.requests[1].json["messages"][-2:] == [
        {"role": "assistant", "content": "Hello partial"},
        {"role": "user", "content": "and now?"},
    ]
    assert repl.exit() == 0


def test_ctrl_c_at_the_prompt_clears_the_line_and_ctrl_d_exits_0(server, chat):
    server.chat(answer("ok"))
    repl = chat()
    repl.prompt()
    repl.child.send("abandoned text")
    repl.child.sendintr()
    repl.prompt()
    repl.say("kept")
    assert [user_messages(r) for r in server.requests] == [["kept"]]
    assert repl.exit() == 0


def test_retry_resends_the_same_conversation_and_undo_drops_the_exchange(server, chat):
    server.chat([answer("one"), answer("two"), answer("two again"), answer("three")])
    repl = chat()
    repl.prompt()
    repl.say("first")
    repl.say("second")
    assert "two again" in repl.say("/retry")
    assert server.requests[2].json["messages"] == server.requests[1].json["messages"]
    repl.say("/undo")
    repl.say("third")
    assert server.requests[3].json["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "third"},
    ]
    assert repl.exit() == 0


def test_save_then_ask_history_and_load_round_trip(server, chat, tmp_path):
    server.chat(answer("a1"))
    saved = tmp_path / "conv.yaml"
    repl = chat("-s", "be brief")
    repl.prompt()
    repl.say("q1")
    assert "saved 3 messages" in repl.say(f"/save {saved}")
    assert repl.exit() == 0
    expected = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
    ]

    r = invoke("ask", "--base-url", server.base_url, "--history", str(saved), "q2")
    assert r.exit_code == 0, r
    assert server.requests[-1].json["messages"] == expected + [{"role": "user", "content": "q2"}]

    again = chat()
    again.prompt()
    assert "loaded 3 messages" in again.say(f"/load {saved}")
    again.say("q3")
    assert server.requests[-1].json["messages"] == expected + [{"role": "user", "content": "q3"}]
    assert again.exit() == 0


def test_http_500_prints_one_error_line_and_the_conversation_goes_on(server, chat):
    failure = Reply(status=500, pieces=[b'{"error":{"message":"upstream exploded"}}'],
                    content_type="application/json", chunked=False)
    server.chat([answer("good one"), failure, answer("good two")])
    repl = chat("--retries", "0")
    repl.prompt()
    repl.say("m1")
    out = repl.say("m2")
    errors = [line for line in out.splitlines() if "llmcli: error:" in line]
    assert len(errors) == 1 and "HTTP 500" in errors[0] and "upstream exploded" in errors[0], out
    assert "good two" in repl.say("m3")
    assert server.requests[2].json["messages"] == [
        {"role": "user", "content": "m1"},
        {"role": "assistant", "content": "good one"},
        {"role": "user", "content": "m2"},
        {"role": "user", "content": "m3"},
    ]
    assert repl.exit() == 0


def test_model_system_option_and_file_commands_shape_the_next_request(server, chat, tmp_path):
    server.chat(answer("ok"))
    notes = tmp_path / "notes.txt"
    notes.write_text("alpha\nbeta\n")
    repl = chat("-m", "first-model")
    repl.prompt()
    repl.say("/model second-model")
    repl.say("/system be terse")
    repl.say("/option temperature 0.5")
    repl.say(f"/file {notes}")
    repl.say("what is in it?")
    body = server.requests[0].json
    assert body["model"] == "second-model"
    assert body["temperature"] == 0.5
    assert body["messages"] == [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": f"{notes}:\n```\nalpha\nbeta\n```\n\nwhat is in it?"},
    ]
    repl.say("/option temperature")
    repl.say("again")
    body = server.requests[1].json
    assert "temperature" not in body and body["messages"][-1]["content"] == "again"  # the file went with one message
    assert repl.exit() == 0


def test_bad_commands_print_one_line_and_send_nothing(server, chat, tmp_path):
    server.chat(answer("ok"))
    repl = chat()
    repl.prompt()
    assert "unknown command /bogus (type /help" in repl.say("/bogus")
    assert f"llmcli: error: file not found: {tmp_path / 'nope.txt'}" in repl.say(f"/file {tmp_path / 'nope.txt'}")
    assert "unknown tool nope" in repl.say("/tools nope")
    assert "/retry" in repl.say("/help")
    assert server.requests == []
    assert repl.exit() == 0


def test_tab_completes_commands_and_model_aliases(server, chat, tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text("aliases:\n  speedy: vendor/fast-model-1\n")
    monkeypatch.setenv("LLMCLI_CONFIG", str(config))
    server.chat(answer("ok"))
    repl = chat()
    repl.prompt()
    repl.child.send("/mo\t")
    repl.expect("/model")
    repl.child.send(" spe\t")
    repl.expect("speedy")
    assert "vendor/fast-model-1" in repl.say("")
    repl.say("hello")
    assert server.requests[0].json["model"] == "vendor/fast-model-1"
    assert repl.exit() == 0


def test_ctrl_c_before_the_first_byte_closes_the_connection_and_keeps_the_message(server, chat):
    server.chat([Reply(headers_delay=5, pieces=text_stream("late")), answer("fine")])
    repl = chat()
    repl.prompt()
    repl.child.send("are you there?\r")
    wait_for_requests(server, 1)  # the server holds back its status line for 5 s
    started = time.monotonic()
    repl.child.sendintr()
    repl.prompt(timeout=5)
    assert time.monotonic() - started < 1.5
    assert server.wait_for_close(timeout=1.0)
    repl.say("hello?")
    assert user_messages(server.requests[1]) == ["are you there?", "hello?"]
    assert repl.exit() == 0


@pytest.mark.parametrize("when", ["at the prompt", "while streaming"])
def test_sigterm_exits_143(server, chat, when):
    server.chat(Reply(pieces=sse(chunk("Hello"), done=False), end="stall"))
    repl = chat()
    repl.prompt()
    if when == "while streaming":
        repl.child.send("go\r")
        repl.expect("Hello")
    else:
        repl.child.send("half a line")
    repl.child.kill(signal.SIGTERM)
    out = repl.expect(pexpect.EOF)
    repl.child.close()
    assert repl.child.exitstatus == 143
    assert "llmcli: terminated" in out
    if when == "while streaming":
        assert server.wait_for_close(timeout=1.0)


def test_first_message_argument_and_vi_mode_from_config(server, chat, tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text("chat:\n  vi_mode: true\n")
    monkeypatch.setenv("LLMCLI_CONFIG", str(config))
    server.chat(answer("ok"))
    repl = chat("sent", "at", "once")
    assert "ok" in repl.prompt()
    assert user_messages(server.requests[0]) == ["sent at once"]
    repl.child.send("world")
    repl.child.send("\x1b")  # vi: Esc to navigation mode, then 0 (line start) and i (insert)
    time.sleep(0.2)
    repl.child.send("0ihello ")
    repl.say("")
    assert user_messages(server.requests[1])[-1] == "hello world"
    assert repl.exit() == 0


def test_piped_stdin_is_refused_with_exit_2(server):
    proc = subprocess.run([sys.executable, "-m", "llmcli", "chat", "--base-url", server.base_url],
                          input=b"hello\n", capture_output=True, timeout=10)
    assert proc.returncode == 2
    assert proc.stderr.decode().strip() == ("llmcli: error: chat needs a terminal on stdin; "
                                            "for piped input use: llmcli ask")
    assert server.requests == []


# -- the conversation logic, without a terminal ------------------------------------------------------


def test_session_commands_on_the_message_list():
    from llmcli.config.settings import Settings
    from llmcli.errors import UsageError
    from llmcli.repl.session import ChatSession

    session = ChatSession(Settings(system="sys", provider="acme", model="m1", sources=(("system", "--system flag"),)),
                          history=[{"role": "system", "content": "old"}, {"role": "user", "content": "u0"},
                                   {"role": "assistant", "content": "a0"}])
    assert session.messages[0] == {"role": "system", "content": "sys"}  # -s replaces the history's, as in ask
    assert session.submit("//etc/passwd is a path").send
    assert session.messages[-1] == {"role": "user", "content": "/etc/passwd is a path"}
    assert session.submit("/undo").text.startswith("removed the last exchange (1 message)")
    assert session.messages[-1]["content"] == "a0"
    session.submit("/clear")
    assert session.messages == [{"role": "system", "content": "sys"}]
    with pytest.raises(UsageError):
        session.submit("/retry")
    with pytest.raises(UsageError, match="unknown tool"):
        session.submit("/tools web_search nope")
    session.submit("/tools web_search")
    assert session.settings.tools == ("web_search",)
    session.submit("/option stop [\"x\", \"y\"]")
    assert session.settings.option_dict() == {"stop": ["x", "y"]}
    assert session.submit("/exit").exit and session.submit("/quit").exit
    assert "acme/m1" in session.toolbar_text()


def test_stopped_tool_calls_are_answered_so_the_conversation_stays_valid():
    from llmcli.run.loop import close_open_tool_calls

    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "web_search", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "web_fetch", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "result"},
    ]
    close_open_tool_calls(messages)
    assert [m.get("tool_call_id") for m in messages[2:]] == ["c1", "c2"]
    assert messages[3]["content"].startswith("error: ")


def test_cost_in_the_usage_line_the_toolbar_and_slash_usage(server, chat):
    """Each answer's cost after it, the session's total in the toolbar, both in /usage (issue 19)."""
    from llmcli.run.cost import format_usd, turn_cost

    usage = {"prompt_tokens": 3000, "completion_tokens": 1000, "total_tokens": 4000}
    pieces = [p.replace(b'"test-model"', b'"gpt-4o-mini"') for p in text_stream("priced", usage=usage)]
    server.chat(Reply(pieces=pieces))
    one = turn_cost(usage, "gpt-4o-mini").amount
    repl = chat("-m", "gpt-4o-mini")
    repl.prompt()
    out = repl.say("first")
    assert f"{format_usd(one)} (estimated)" in out
    repl.say("second")
    toolbar = repl.expect(re.escape(f"{format_usd(2 * one)} (estimated)"))
    assert "gpt-4o-mini" in toolbar
    out = repl.say("/usage")
    assert f"last answer: 3,000 in / 1,000 out · 4,000 total · {format_usd(one)} (estimated)" in out
    assert f"conversation (2 answers): 6,000 in / 2,000 out · 8,000 total · {format_usd(2 * one)} (estimated)" in out
    assert repl.exit() == 0


def test_chat_stops_at_its_session_budget_and_keeps_going(server, chat):
    usage = {"prompt_tokens": 250, "completion_tokens": 50, "total_tokens": 300}
    server.chat(Reply(pieces=text_stream("ok", usage=usage)))
    repl = chat("--max-tokens-total", "650", "-o", "max_tokens", "10")
    repl.prompt()
    repl.say("one")
    repl.say("two")
    out = repl.say("three")
    assert "llmcli: error: budget reached" in out and "600 tokens in 2 requests" in out
    assert len(server.requests) == 2
    out = repl.say("/help")  # the session goes on: commands still work
    assert "/usage" in out
    assert repl.exit() == 0


class _Run:
    """What ChatSession.finish_turn reads of a finished ChatRun."""

    def __init__(self, messages, answer, usage=None, partial=False):
        self.messages, self.answer, self.partial = messages, answer, partial
        from llmcli.run.cost import UNKNOWN

        self.usages = [usage] if usage else []
        self.usage, self.model, self.cost = usage, "m", UNKNOWN

    def partial_assistant_message(self, why="incomplete"):
        return {"role": "assistant", "content": self.answer, "partial": why} if self.partial else None

    def kept_conversation(self, error=None, interrupted=False):
        extra = [self.partial_assistant_message()] if self.partial else [{"role": "assistant", "content": self.answer}]
        return self.messages + extra


def test_usage_bookkeeping_after_interrupt_clear_undo_and_load(tmp_path):
    from llmcli.config.settings import Settings
    from llmcli.repl.session import ChatSession

    session = ChatSession(Settings(base_url="http://127.0.0.1:9/v1"), [])

    def turn(text, usage=None, interrupted=False):
        session.add_user_message(text)
        session.finish_turn(_Run(list(session.messages), "a " + text, usage, partial=interrupted),
                            interrupted=interrupted)

    u = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    turn("one", u)
    turn("two", dict(u, completion_tokens=7, total_tokens=10))
    assert "2 answers" in session.run_command("/usage").text
    turn("three", interrupted=True)  # Ctrl-C before the usage chunk
    shown = session.run_command("/usage").text
    assert "last answer: interrupted before the server reported its usage" in shown and "3 answers" in shown
    session.run_command("/undo")  # drops the interrupted exchange
    session.run_command("/undo")  # and "two"
    shown = session.run_command("/usage").text
    assert "1 answer)" in shown and "2 out" in shown  # "two" is gone from the totals as well
    session.run_command("/clear")
    assert session.run_command("/usage").text == "no usage reported yet"
    turn("four", u)
    saved = tmp_path / "h.json"
    session.run_command(f"/save {saved}")
    session.run_command(f"/load {saved}")
    assert session.run_command("/usage").text == "no usage reported yet"
