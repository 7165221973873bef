"""The conversation log from `llmcli chat` (a real pty, as tests/test_repl.py) and the default
session rule (real shells, no $LLMCLI_SESSION)."""

import json
import os
import sqlite3
import subprocess
import sys

from conftest import invoke, log_db
from localserver import Reply, text_stream
from test_repl import Repl, chat, wait_for_requests  # noqa: F401 (the chat fixture)


def exchanges(home):
    conn = sqlite3.connect(log_db(home))
    try:
        return conn.execute("SELECT conversation_id, command, prompt, answer, partial FROM exchanges ORDER BY id").fetchall()
    finally:
        conn.close()


def test_chat_turns_are_recorded_and_chat_c_resumes_them(server, chat, isolated_env):
    server.chat([Reply(pieces=text_stream("first answer")), Reply(pieces=text_stream("second answer")),
                 Reply(pieces=text_stream("third answer"))])
    repl = chat()
    repl.prompt()
    assert "first answer" in repl.say("question one")
    assert "second answer" in repl.say("question two")
    assert repl.exit() == 0
    rows = exchanges(isolated_env)
    assert [r[1:] for r in rows] == [("chat", "question one", "first answer", 0),
                                     ("chat", "question two", "second answer", 0)]
    assert rows[0][0] == rows[1][0]
    # chat -c shows the last exchanges briefly and sends exactly the stored conversation
    repl = chat("-c")
    seen = repl.prompt()
    assert "resumed conversation " + rows[0][0] in seen and "you: question two" in seen
    assert "answer: second answer" in seen
    assert "third answer" in repl.say("question three")
    assert server.requests[-1].json["messages"] == [
        {"role": "user", "content": "question one"}, {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "question two"}, {"role": "assistant", "content": "second answer"},
        {"role": "user", "content": "question three"}]
    assert repl.exit() == 0
    assert len({r[0] for r in exchanges(isolated_env)}) == 1


def test_history_and_resume_in_the_repl(server, chat, isolated_env):
    server.chat(Reply(pieces=text_stream("noted")))
    assert invoke("ask", "--base-url", server.base_url, "remember the aubergine").exit_code == 0
    cid = exchanges(isolated_env)[0][0]
    repl = chat()
    repl.prompt()
    listed = repl.say("/history")
    assert cid[:12] in listed and "remember the aubergine" in listed
    resumed = repl.say(f"/resume {cid[:12].lower()}")
    assert "resumed conversation " + cid in resumed and "you: remember the aubergine" in resumed
    repl.say("what did I say?")
    assert server.requests[-1].json["messages"] == [
        {"role": "user", "content": "remember the aubergine"}, {"role": "assistant", "content": "noted"},
        {"role": "user", "content": "what did I say?"}]
    assert "no conversation 01ZZZZ" in repl.say("/resume 01ZZZZ")
    assert repl.exit() == 0
    assert [r[0] for r in exchanges(isolated_env)] == [cid, cid]


def test_chat_no_log_records_nothing(server, chat, isolated_env):
    server.chat(Reply(pieces=text_stream("ok")))
    repl = chat("--no-log")
    repl.prompt()
    assert "ok" in repl.say("hello")
    assert repl.exit() == 0
    assert not os.path.exists(os.path.join(str(isolated_env), "logs.db"))


def test_two_scripts_at_once_each_continue_their_own_by_default(server, isolated_env, tmp_path):
    """No $LLMCLI_SESSION: two shells running at once are two sessions (tests/test_store.py sets it)."""

    def echo(handler, rec):
        last = [m for m in rec.json["messages"] if m["role"] == "user"][-1]["content"]
        handler.play(Reply(pieces=text_stream("re: " + last)), rec)

    server.chat(echo)
    env = {k: v for k, v in os.environ.items() if k != "LLMCLI_SESSION"}
    llmcli = f"'{sys.executable}' -m llmcli ask --base-url {server.base_url}"
    scripts = []
    for name in ("alpha", "beta"):
        script = tmp_path / f"{name}.sh"
        # `timeout` (which forks) in between: a launcher is not a session; the shell is
        script.write_text(f"set -e\n{llmcli} {name} one\nsleep 0.3\ntimeout 60 {llmcli} -c {name} two\n")
        scripts.append(subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, env=env))
    for proc in scripts:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    sent = {r.json["messages"][-1]["content"]: [m["content"] for m in r.json["messages"]] for r in server.requests}
    assert sent["alpha two"] == ["alpha one", "re: alpha one", "alpha two"]
    assert sent["beta two"] == ["beta one", "re: beta one", "beta two"]
    convs = json.loads(invoke("logs", "list", "--json").stdout)
    assert sorted(c["turns"] for c in convs) == [2, 2]


def test_chat_with_an_unwritable_log_warns_once_and_keeps_answering(server, chat, isolated_env):
    os.makedirs(os.path.join(str(isolated_env), "logs.db.pending"))  # a directory: no line can be appended
    server.chat([Reply(pieces=text_stream("answer one")), Reply(pieces=text_stream("answer two"))])
    repl = chat()
    repl.prompt()
    first = repl.say("one")
    assert "answer one" in first and first.count("not logged") == 1
    second = repl.say("two")
    assert "answer two" in second and "not logged" not in second
    assert repl.exit() == 0


def test_ctrl_c_in_chat_records_the_partial_answer(server, chat, isolated_env):
    from localserver import chunk, sse

    stalled = Reply(pieces=sse(chunk(role="assistant", content=""), chunk("Hello"), chunk(" partial"), done=False),
                    end="stall")
    server.chat([stalled, Reply(pieces=text_stream("fine"))])
    repl = chat()
    repl.prompt()
    repl.child.send("tell me\r")
    repl.expect("Hello partial")
    repl.child.sendintr()
    repl.prompt(timeout=10)
    assert "fine" in repl.say("and now?")
    assert repl.exit() == 0
    rows = exchanges(isolated_env)
    assert [r[2:] for r in rows] == [("tell me", "Hello partial", 1), ("and now?", "fine", 0)]
    assert rows[0][0] == rows[1][0]
    conn = sqlite3.connect(log_db(isolated_env))
    (status, response), = conn.execute("SELECT exit_status, response_messages FROM exchanges ORDER BY id LIMIT 1")
    conn.close()
    assert status == 130  # the text is stored once, in `answer` (checked above); the message refers to it
    assert json.loads(response) == [{"role": "assistant", "content_is_answer": True, "partial": "interrupted"}]


def test_sh_c_snippets_in_parallel_each_continue_their_own(server, isolated_env):
    """`sh -c 'llmcli ask …; llmcli ask -c …'`: the shell execs its last command in its own place (bash
    and dash both do), so that command is no longer the shell's child; it must still find the first one's
    conversation, and four such snippets run by xargs -P 4 must not see each other's."""

    def echo(handler, rec):
        last = [m for m in rec.json["messages"] if m["role"] == "user"][-1]["content"]
        handler.play(Reply(pieces=text_stream("re: " + last)), rec)

    server.chat(echo)
    env = {k: v for k, v in os.environ.items() if k != "LLMCLI_SESSION"}
    llmcli = f"'{sys.executable}' -m llmcli ask --base-url {server.base_url}"
    for shell in ("bash", "sh"):
        snippet = f"{llmcli} \"$0 {shell} one\" >/dev/null; {llmcli} -c \"$0 {shell} two\""
        proc = subprocess.run(["bash", "-c", f"printf 'a\\nb\\nc\\nd\\n' | xargs -P 4 -I{{}} {shell} -c '{snippet}' {{}}"],
                              capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        sent = {r.json["messages"][-1]["content"]: [m["content"] for m in r.json["messages"]]
                for r in server.requests}
        for name in "abcd":
            assert sent[f"{name} {shell} two"] == [f"{name} {shell} one", f"re: {name} {shell} one",
                                                   f"{name} {shell} two"], (shell, name)
