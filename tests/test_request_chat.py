"""Issue 17 in chat: /compact (a real pty and ChatSession), /attach, hygiene and the window before each turn."""

import io
import json
import os

import pytest

from localserver import Reply, text_stream
from test_repl import answer, chat  # noqa: F401 (the pty fixture)
from test_request import decode_data_url, fixture, png_bytes
from llmcli.config.settings import Settings
from llmcli.errors import InputError
from llmcli.output.render import Diagnostics
from llmcli.prompt.context import SUMMARY_INSTRUCTION, SUMMARY_PREFIX
from llmcli.repl.session import ChatSession, stream_answer


def session_for(server, **changes):
    settings = Settings(base_url=server.base_url, retries=0, **changes)
    return ChatSession(settings)


def send(session, text):
    outcome = session.submit(text)
    assert outcome.send
    err = io.StringIO()
    stream_answer(session, Diagnostics(err, False), out=io.StringIO(), err=err)
    return err.getvalue()


def test_compact_in_a_real_pty_sends_the_summary_request_and_the_next_turn_carries_it(server, chat):  # noqa: F811
    server.chat([answer("a1"), answer("a2"), answer("SUMMARY: user asked q1, got a1"), answer("a3")])
    repl = chat()
    repl.prompt()
    repl.say("q1")
    repl.say("q2")
    out = repl.say("/compact")
    assert "compacted 2 older messages into a summary" in out
    summary_request = server.requests[2].json["messages"]
    assert [m["content"] for m in summary_request] == ["q1", "a1", SUMMARY_INSTRUCTION]
    assert "tools" not in server.requests[2].json
    repl.say("q3")
    assert server.requests[3].json["messages"] == [
        {"role": "user", "content": SUMMARY_PREFIX + "SUMMARY: user asked q1, got a1"},
        {"role": "assistant", "content": "Understood: I have the summary of our earlier conversation."},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "q3"},
    ]
    assert repl.exit() == 0


def test_compact_through_chat_session_keeps_the_system_prompt(server):
    server.chat([answer("a1"), answer("a2"), answer("the summary")])
    session = ChatSession(Settings(base_url=server.base_url, retries=0, system="be kind",
                                   sources=(("system", "--system flag"),)))
    send(session, "q1")
    send(session, "q2")
    assert session.submit("/compact").compact
    note = session.compact()
    assert "compacted 2 older messages" in note
    assert session.messages[0] == {"role": "system", "content": "be kind"}
    assert session.messages[1]["content"] == SUMMARY_PREFIX + "the summary"
    assert server.requests[-1].json["messages"][0] == {"role": "system", "content": "be kind"}


def test_compact_with_one_exchange_is_a_usage_error(server):
    server.chat(answer("a1"))
    session = session_for(server)
    send(session, "q1")
    with pytest.raises(Exception, match="nothing to compact"):
        session.submit("/compact")


def test_auto_compact_at_the_configured_threshold(server):
    server.chat([answer("a1"), answer("a2", total=900), answer("short summary")])
    session = session_for(server, request=(("context_length", 1000), ("auto_compact", 0.8)))
    send(session, "q1")
    assert not session.should_auto_compact()
    send(session, "q2")
    assert session.should_auto_compact()  # 900 of 1,000 tokens reported by the server
    session.compact()
    assert server.requests[-1].json["messages"][-1]["content"] == SUMMARY_INSTRUCTION


def test_attach_in_chat_sends_the_image_with_the_next_message(server, tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes())
    server.chat(answer("a cat"))
    session = session_for(server)
    outcome = session.submit(f"/attach {path}")
    assert "attached" in outcome.text and "image/png" in outcome.text
    assert "1 attachment(s)" in session.toolbar_text()
    send(session, "what is it?")
    content = server.requests[-1].json["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "what is it?"}
    assert decode_data_url(content[1]["image_url"]["url"]) == ("image/png", png_bytes())
    assert session.pending_attachments == []


def test_chat_cleans_a_loaded_history_before_the_request(server):
    server.chat(answer("fine"))
    session = session_for(server)
    assert "loaded 3 messages" in session.submit("/load " + fixture("orphaned-tool-call.json")).text
    send(session, "and?")
    sent = server.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "user", "user"]
    assert not any(m.get("tool_calls") for m in sent)


def test_chat_load_reads_other_formats(server):
    session = session_for(server)
    assert "loaded 4 messages" in session.submit("/load " + fixture("chat.md")).text
    assert session.messages[0] == {"role": "system", "content": "You are terse."}


def test_chat_over_the_window_names_compact_and_keeps_the_message(server):
    session = session_for(server, request=(("context_length", 200),))
    for i in range(10):
        session.messages += [{"role": "user", "content": "x" * 200}, {"role": "assistant", "content": "y" * 200}]
    session.submit("one more")
    with pytest.raises(InputError, match="/compact"):
        session.prepare()
    assert session.messages[-1] == {"role": "user", "content": "one more"}
    assert not server.requests


def test_toolbar_shows_the_window_filling_up(server):
    session = session_for(server, model="gpt-4o-mini")
    session.context_tokens = 12_800
    assert "12,800/128,000 tokens (10%)" in session.toolbar_text()
