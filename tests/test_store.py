"""The conversation log (issue 14): real SQLite files, real processes, the real local server."""

import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import invoke, log_db
from localserver import Reply, chunk, sse, text_stream

from llmcli.store import db as store_db
from llmcli.store.db import MIGRATIONS, SCHEMA_VERSION, Store, new_id, parse_duration

SECRET = "sk-test-RECOGNISABLE-9f8e7d6c5b4a"


def echo_reply(handler, rec):
    """Answer with the last user message, reversed word order, so every answer is tied to its prompt."""
    body = rec.json
    last = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    handler.play(Reply(pieces=text_stream("echo: ", last)), rec)


def db_file(home):
    return log_db(home)


def rows(home, sql, args=()):
    conn = sqlite3.connect(db_file(home))
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def ask(server, *args, env=None):
    return invoke("ask", "--base-url", server.base_url, *args, env=env)


def spawn(server, *args, env=None):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "llmcli", "ask", "--base-url", server.base_url, *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full)


def slow_stream():
    return Reply(pieces=[p for i in range(200) for p in sse(chunk(f"w{i} "), done=False)], delay=0.05)


# -- recording -----------------------------------------------------------------------------------

def test_an_ask_is_recorded_with_every_field(server, isolated_env):
    server.chat(Reply(pieces=text_stream("Hello", " there", usage={"prompt_tokens": 5, "completion_tokens": 2,
                                                                  "total_tokens": 7})))
    base = server.base_url.replace("http://", "http://user:pw@")
    r = invoke("ask", "--base-url", base, "-s", "be brief", "-o", "temperature", "0.2", "hi")
    assert r.exit_code == 0 and r.stdout == "Hello there\n" and r.stderr == ""
    with Store(db_file(isolated_env)) as store:
        (conv,) = store.list_conversations()
        (ex,) = store.exchanges(conv["id"])
    assert ex["request_messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert ex["request_messages"] == server.requests[-1].json["messages"]
    assert ex["response_messages"] == [{"role": "assistant", "content": "Hello there"}]
    assert ex["answer"] == "Hello there" and ex["prompt"] == "hi" and ex["command"] == "ask"
    assert ex["model_reported"] == "test-model" and ex["finish_reason"] == "stop"
    assert ex["usage"]["total_tokens"] == 7 and ex["options"] == {"temperature": 0.2}
    assert ex["exit_status"] == 0 and ex["partial"] is False and ex["error_type"] is None
    assert ex["base_url"] == server.base_url  # no user:pass, no query
    assert ex["total_ms"] is not None and len(ex["id"]) == 26


def test_files_are_recorded_by_name_and_sha256(server, isolated_env, tmp_path):
    import hashlib

    notes = tmp_path / "notes.md"
    notes.write_text("line one\n")
    server.chat(Reply(pieces=text_stream("ok")))
    assert ask(server, "-f", str(notes), "summarise").exit_code == 0
    with Store(db_file(isolated_env)) as store:
        (ex,) = store.exchanges(store.list_conversations()[0]["id"])
    assert ex["files"] == [{"name": str(notes), "sha256": hashlib.sha256(b"line one\n").hexdigest(), "chars": 9}]
    assert "line one" in ex["request_messages"][-1]["content"]  # the text itself is in the message


def test_ask_json_names_the_conversation_and_exchange(server, isolated_env):
    server.chat(Reply(pieces=text_stream("ok")))
    doc = json.loads(ask(server, "--json", "q").stdout)
    assert rows(isolated_env, "SELECT conversation_id, id FROM exchanges") == [
        (doc["conversation_id"], doc["exchange_id"])]
    done = json.loads(ask(server, "--jsonl", "q").stdout.splitlines()[-1])
    assert done["type"] == "done" and rows(isolated_env, "SELECT id FROM exchanges WHERE id = ?",
                                           (done["exchange_id"],)) == [(done["exchange_id"],)]
    doc = json.loads(ask(server, "--json", "--no-log", "q").stdout)
    assert doc["conversation_id"] is None and doc["exchange_id"] is None
    assert rows(isolated_env, "SELECT COUNT(*) FROM exchanges") == [(2,)]


def test_no_log_and_config_and_logs_off(server, isolated_env, tmp_path, monkeypatch):
    server.chat(Reply(pieces=text_stream("ok")))
    assert ask(server, "--no-log", "q").exit_code == 0
    assert not os.path.exists(db_file(isolated_env))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("logs: {enabled: false}\n")
    monkeypatch.setenv("LLMCLI_CONFIG", str(cfg))
    assert ask(server, "q").stdout == "ok\n"
    assert not os.path.exists(db_file(isolated_env))
    assert "off (logs.enabled is false" in invoke("logs", "status").stdout
    monkeypatch.setenv("LLMCLI_CONFIG", str(tmp_path / "none.yaml"))
    assert invoke("logs", "off").exit_code == 0
    assert ask(server, "q").stdout == "ok\n"
    assert not os.path.exists(db_file(isolated_env))
    assert "logging: off" in invoke("logs", "status").stdout
    invoke("logs", "on")
    assert ask(server, "q").exit_code == 0
    assert rows(isolated_env, "SELECT COUNT(*) FROM exchanges") == [(1,)]
    assert invoke("logs", "path").stdout.strip() == db_file(isolated_env)


def test_failed_exchange_is_recorded_with_its_error(server, isolated_env):
    server.chat(Reply(status=401, pieces=[b'{"error":{"message":"bad key"}}'], content_type="application/json",
                      chunked=False))
    r = ask(server, "--retries", "0", "q")
    assert r.exit_code == 4
    (ex,) = rows(isolated_env, "SELECT error_type, error_message, exit_status, partial FROM exchanges")
    assert ex[0] == "http" and "bad key" in ex[1] and ex[2] == 4 and ex[3] == 0  # nothing arrived: not partial


def test_a_stream_cut_after_some_text_is_partial(server, isolated_env):
    server.chat(Reply(pieces=sse(chunk(role="assistant", content=""), chunk("half an"), done=False), end="cut"))
    r = ask(server, "--retries", "0", "q")
    assert r.exit_code in (5, 6) and r.stdout.startswith("half an")
    ((answer, partial, status, error_type),) = rows(isolated_env, "SELECT answer, partial, exit_status, error_type "
                                                                  "FROM exchanges")
    assert answer == "half an" and partial == 1 and status == r.exit_code and error_type in ("stream", "network")


def test_a_recognisable_key_never_reaches_the_database(server, isolated_env):
    # The server quotes the key back in its error, as some providers do.
    server.chat(Reply(status=401, pieces=[json.dumps({"error": {"message": f"invalid key {SECRET}"}}).encode()],
                      content_type="application/json", chunked=False))
    r = invoke("ask", "--base-url", server.base_url, "--api-key", SECRET, "--retries", "0", "q")
    assert r.exit_code == 4
    server.chat(Reply(pieces=text_stream("fine")))
    r = invoke("ask", "--base-url", server.base_url, "--api-key", SECRET, "-c", "again")
    assert r.exit_code == 0
    assert server.requests[-1].headers["Authorization"] == f"Bearer {SECRET}"  # it was really used
    assert os.path.getsize(os.path.join(isolated_env, "logs.db.pending")) > 0  # the second, waiting: read too
    for name in os.listdir(isolated_env):
        with open(os.path.join(isolated_env, name), "rb") as fh:
            assert SECRET.encode() not in fh.read(), name
    assert SECRET not in invoke("logs", "export").stdout


def test_sixteen_parallel_asks_are_all_recorded(server, isolated_env):
    server.chat(echo_reply)
    procs = [spawn(server, f"prompt number {i}") for i in range(16)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        outs.append((p.returncode, out.decode(), err.decode()))
    for i, (code, out, err) in enumerate(outs):
        assert code == 0 and out == f"echo: prompt number {i}\n" and err == "", (i, code, out, err)
    got = dict(rows(isolated_env, "SELECT prompt, answer FROM exchanges"))
    assert got == {f"prompt number {i}": f"echo: prompt number {i}" for i in range(16)}
    assert rows(isolated_env, "SELECT COUNT(DISTINCT conversation_id) FROM exchanges") == [(16,)]


def test_asks_and_readers_in_parallel_move_every_exchange_in_exactly_once(server, isolated_env):
    """Appenders (asks) and movers (every reader of the log) at once, as real processes: each exchange ends
    in the database once, none stays behind (store/pending.py)."""
    server.chat(echo_reply)
    assert ask(server, "prompt number 0").exit_code == 0
    reader = [sys.executable, "-m", "llmcli", "logs", "list", "--json", "-n", "100"]
    procs = []
    for i in range(1, 17):
        procs.append(spawn(server, f"prompt number {i}"))
        if i % 3 == 0:
            procs.append(subprocess.Popen(reader, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE))
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and err == b"", (p.args, err)
    got = rows(isolated_env, "SELECT prompt, COUNT(*) FROM exchanges GROUP BY prompt")
    assert dict(got) == {f"prompt number {i}": 1 for i in range(17)}
    assert os.path.getsize(os.path.join(isolated_env, "logs.db.pending")) == 0
    assert not os.path.exists(os.path.join(isolated_env, "logs.db.pending.bad"))


def test_an_append_waits_while_the_pending_file_is_being_moved(isolated_env):
    from llmcli.store import pending

    os.makedirs(isolated_env)
    path = os.path.join(str(isolated_env), "logs.db")
    record = {"id": new_id(), "conversation_id": new_id(), "prompt": "late", "request_messages": []}
    assert pending.append(path, dict(record, id=new_id(), prompt="early"))
    taken = pending.take(path)  # what a mover holds between reading the lines and emptying the file
    code = ("import json, sys; from llmcli.store import pending; "
            "pending.append(sys.argv[1], json.loads(sys.argv[2])); print('appended')")
    child = subprocess.Popen([sys.executable, "-c", code, path, json.dumps(record)], stdout=subprocess.PIPE)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.5)  # blocked on the flock: it would otherwise take ~50 ms
        assert [r["prompt"] for r in taken.records()] == ["early"]
        taken.empty()
    finally:
        taken.close()
    assert child.communicate(timeout=20)[0] == b"appended\n"
    with Store(path) as store:
        assert [e["prompt"] for e in store.exchanges(record["conversation_id"])] == ["late"]
    assert os.path.getsize(path + ".pending") == 0


def test_a_move_repeated_after_its_commit_inserts_nothing_twice(isolated_env):
    """A mover killed between COMMIT and emptying the file leaves lines already in the database."""
    from llmcli.store import pending

    os.makedirs(isolated_env)
    path = os.path.join(str(isolated_env), "logs.db")
    record = {"id": new_id(), "conversation_id": new_id(), "prompt": "once", "answer": "a",
              "request_messages": [{"role": "user", "content": "once"}]}
    assert pending.append(path, record)
    line = pathlib.Path(path + ".pending").read_bytes()
    Store(path).close()
    with open(path + ".pending", "ab") as fh:
        fh.write(line)  # as if the file had not been emptied
    with Store(path) as store:
        assert store.count() == (1, 1)
    assert os.path.getsize(path + ".pending") == 0


def test_a_broken_pending_line_is_kept_aside_and_the_others_move_in(isolated_env):
    from llmcli.store import pending

    os.makedirs(isolated_env)
    path = os.path.join(str(isolated_env), "logs.db")
    good = [{"id": new_id(), "conversation_id": new_id(), "prompt": f"p{i}", "request_messages": []} for i in range(2)]
    assert pending.append(path, good[0])
    with open(path + ".pending", "ab") as fh:
        fh.write(b'{"id": "01CUT", "conversation_id": "01C", "prompt": "a write cut sh\n')  # a full disk
    assert pending.append(path, good[1])
    refused = {"id": new_id(), "conversation_id": new_id(), "prompt": "no request", "request_messages": None}
    assert pending.append(path, refused)  # NOT NULL in the schema: SQLite refuses it
    r = invoke("logs", "list", "--json")
    assert r.exit_code == 0 and sorted(c["title"] for c in json.loads(r.stdout)) == ["p0", "p1"]
    bad = pathlib.Path(path + ".pending.bad").read_text(encoding="utf-8").splitlines()
    assert len(bad) == 2 and "a write cut sh" in bad[0] and json.loads(bad[1])["prompt"] == "no request"
    assert os.path.getsize(path + ".pending") == 0


@pytest.mark.parametrize("length", [10, 1 << 18, (1 << 19) + 7])
def test_a_long_answer_goes_through_the_pending_file_exactly(isolated_env, length):
    """From SLICE characters on, the answer is written slice by slice (store/pending.py): each slice
    escaped on its own must still make one valid line, whatever the text holds."""
    from llmcli.store import pending

    os.makedirs(isolated_env)
    path = os.path.join(str(isolated_env), "logs.db")
    alphabet = 'ab "quoted" \\ back\\slash \n\t\x00\x1b[31m wörld ✓ 😀 \u2028 '
    answer = (alphabet * (length // len(alphabet) + 1))[:length]
    cid = new_id()
    record = {"id": new_id(), "conversation_id": cid, "prompt": "long", "answer": answer,
              "request_messages": [{"role": "user", "content": "long"}],
              "response_messages": [{"role": "assistant", "content": answer}]}
    before = {"id": new_id(), "conversation_id": new_id(), "prompt": "before", "request_messages": []}
    assert pending.append(path, before) and pending.append(path, record) and pending.append(path, dict(before, id=new_id()))
    lines = pathlib.Path(path + ".pending").read_bytes().split(b"\n")
    assert len(lines) == 4 and lines[-1] == b""  # three whole lines
    assert json.loads(lines[1])["answer"] == answer
    with Store(path) as store:
        (ex,) = store.exchanges(cid)
        assert store.count() == (2, 3)  # the two "before" lines share a conversation
    assert ex["answer"] == answer and ex["response_messages"] == [{"role": "assistant", "content": answer}]


def test_a_lone_surrogate_keeps_the_line_valid_and_the_log_readable(isolated_env):
    from llmcli.store import pending

    os.makedirs(isolated_env)
    path = os.path.join(str(isolated_env), "logs.db")
    odd = {"id": new_id(), "conversation_id": new_id(), "prompt": "odd", "answer": "half a pair \ud800 here",
           "request_messages": []}
    fine = {"id": new_id(), "conversation_id": new_id(), "prompt": "fine", "request_messages": []}
    assert pending.append(path, odd) and pending.append(path, fine)
    assert json.loads(pathlib.Path(path + ".pending").read_bytes().splitlines()[0])["answer"] == odd["answer"]
    r = invoke("logs", "list", "--json")
    assert r.exit_code == 0 and [c["title"] for c in json.loads(r.stdout)] == ["fine"]
    (kept,) = pathlib.Path(path + ".pending.bad").read_text(encoding="utf-8").splitlines()
    assert json.loads(kept)["answer"] == odd["answer"]  # kept aside whole, for a person to look at


def test_a_newer_database_leaves_the_pending_exchanges_waiting(server, isolated_env):
    server.chat(Reply(pieces=text_stream("kept")))
    assert ask(server, "q").exit_code == 0
    Store(db_file(isolated_env)).close()
    assert ask(server, "q2").exit_code == 0
    conn = sqlite3.connect(os.path.join(str(isolated_env), "logs.db"), isolation_level=None)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    waiting = pathlib.Path(isolated_env, "logs.db.pending").read_bytes()
    r = invoke("logs", "list")
    assert r.exit_code == 3 and "newer llmcli" in r.stderr
    assert pathlib.Path(isolated_env, "logs.db.pending").read_bytes() == waiting and b"q2" in waiting


def test_sigkill_mid_stream_keeps_a_database_with_the_earlier_exchanges(server, isolated_env):
    server.chat(Reply(pieces=text_stream("first answer")))
    assert ask(server, "first").exit_code == 0
    server.chat(slow_stream())
    proc = spawn(server, "second")
    assert proc.stdout.read(6) == b"w0 w1 "
    proc.kill()
    proc.communicate(timeout=10)
    with Store(db_file(isolated_env)) as store:
        assert store.count() == (1, 1)
        assert [c["title"] for c in store.list_conversations()] == ["first"]
    assert invoke("logs", "list").exit_code == 0
    assert rows(isolated_env, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_stream_records_the_partial_answer(server, isolated_env, sig, code):
    server.chat(slow_stream())
    proc = spawn(server, "tell me")
    first = proc.stdout.read(6)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == code
    shown = (first + out).decode().rstrip("\n")
    ((answer, partial, status, response),) = rows(
        isolated_env, "SELECT answer, partial, exit_status, response_messages FROM exchanges")
    assert partial == 1 and status == code
    assert answer == shown and answer.startswith("w0 w1 ")
    # the text is stored once, in `answer`; the message refers to it and reads back whole
    assert json.loads(response)[-1] == {"role": "assistant", "content_is_answer": True, "partial": "interrupted"}
    with Store(db_file(isolated_env)) as store:
        (ex,) = store.exchanges(rows(isolated_env, "SELECT conversation_id FROM exchanges")[0][0])
    assert ex["response_messages"][-1] == {"role": "assistant", "content": answer, "partial": "interrupted"}


def test_closed_pipe_still_records(server, isolated_env):
    server.chat(slow_stream())
    cmd = f"'{sys.executable}' -m llmcli ask --base-url {server.base_url} q | head -c 10"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, timeout=30)
    assert proc.stdout == b"w0 w1 w2 w" and proc.returncode == 0 and proc.stderr == b""
    ((answer, partial),) = rows(isolated_env, "SELECT answer, partial FROM exchanges")
    assert answer.startswith("w0 w1 w2") and partial == 1


# -- continuing ----------------------------------------------------------------------------------

TOOL_CALL_HISTORY = [
    {"role": "system", "content": "stored system"},
    {"role": "user", "content": "what time is it?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "clock", "arguments": "{\"tz\": \"UTC\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
    {"role": "assistant", "content": "It is noon."},
]


def test_continue_sends_exactly_the_stored_messages(server, isolated_env, tmp_path):
    history = tmp_path / "h.json"
    history.write_text(json.dumps(TOOL_CALL_HISTORY[:-1]))
    server.chat(Reply(pieces=text_stream("It is noon.")))
    assert ask(server, "--history", str(history), "and tomorrow?").exit_code == 0
    first = server.requests[-1].json["messages"]
    server.chat(Reply(pieces=text_stream("Same time.")))
    r = ask(server, "-c", "really?")
    assert r.exit_code == 0, r
    sent = server.requests[-1].json["messages"]
    assert sent == first + [{"role": "assistant", "content": "It is noon."}, {"role": "user", "content": "really?"}]
    assert sent[2]["tool_calls"][0]["function"]["arguments"] == "{\"tz\": \"UTC\"}"
    (conv,) = rows(isolated_env, "SELECT DISTINCT conversation_id FROM exchanges")
    # --cid with a prefix: the same again; -s replaces the stored system prompt
    server.chat(Reply(pieces=text_stream("ok")))
    assert ask(server, "--cid", conv[0][:12].lower(), "-s", "new system", "once more").exit_code == 0
    again = server.requests[-1].json["messages"]
    assert again[0] == {"role": "system", "content": "new system"}
    assert again[1:-1] == sent[1:] + [{"role": "assistant", "content": "Same time."}]
    assert rows(isolated_env, "SELECT COUNT(DISTINCT conversation_id), COUNT(*) FROM exchanges") == [(1, 3)]


def test_continue_keeps_the_stored_system_prompt_over_the_config(server, isolated_env, tmp_path, monkeypatch):
    server.chat(Reply(pieces=text_stream("a")))
    assert ask(server, "one").exit_code == 0
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("system: from the config\n")
    monkeypatch.setenv("LLMCLI_CONFIG", str(cfg))
    assert ask(server, "-c", "two").exit_code == 0
    assert server.requests[-1].json["messages"] == [
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "two"}]


def test_two_terminals_each_continue_their_own(server, isolated_env):
    server.chat(echo_reply)
    a, b = {"LLMCLI_SESSION": "terminal-a"}, {"LLMCLI_SESSION": "terminal-b"}
    assert ask(server, "alpha", env=a).exit_code == 0
    assert ask(server, "beta", env=b).exit_code == 0
    # both continue at once, as two scripts would
    pa, pb = spawn(server, "-c", "alpha two", env=a), spawn(server, "-c", "beta two", env=b)
    assert pa.communicate(timeout=30)[0] == b"echo: alpha two\n"
    assert pb.communicate(timeout=30)[0] == b"echo: beta two\n"
    sent = {r.json["messages"][-1]["content"]: r.json["messages"] for r in server.requests}
    assert [m["content"] for m in sent["alpha two"]] == ["alpha", "echo: alpha", "alpha two"]
    assert [m["content"] for m in sent["beta two"]] == ["beta", "echo: beta", "beta two"]
    # a third terminal has nothing to continue, unless --global
    r = ask(server, "-c", "gamma", env={"LLMCLI_SESSION": "terminal-c"})
    assert r.exit_code == 3 and "no conversation to continue" in r.stderr and "--global" in r.stderr
    r = ask(server, "-c", "--global", "gamma", env={"LLMCLI_SESSION": "terminal-c"})
    assert r.exit_code == 0
    assert server.requests[-1].json["messages"][0]["content"] in ("alpha", "beta")


def test_cid_ambiguous_prefix_lists_the_candidates(server, isolated_env):
    with Store(db_file(isolated_env)) as store:
        for cid in ("01AAAAAAAAAAAAAAAAAAAAAAAA", "01AAAAAAAAAAAAAAAAAAAAAAAB"):
            store.record({"id": new_id(), "conversation_id": cid, "request_messages": [{"role": "user", "content": "x"}],
                          "prompt": "x", "answer": "y"})
    r = ask(server, "--cid", "01AAAA", "q")
    assert r.exit_code == 3
    assert "01AAAAAAAAAAAAAAAAAAAAAAAA" in r.stderr and "01AAAAAAAAAAAAAAAAAAAAAAAB" in r.stderr
    assert r.stderr.count("\n") == 1
    r = ask(server, "--cid", "01ZZZ", "q")
    assert r.exit_code == 3 and "no conversation 01ZZZ" in r.stderr
    assert ask(server, "--cid", "x", "--history", "f.json", "q").exit_code == 2


def test_logs_show_messages_fed_to_history_reproduces_the_request(server, isolated_env, tmp_path):
    history = tmp_path / "h.json"
    history.write_text(json.dumps(TOOL_CALL_HISTORY))
    server.chat(Reply(pieces=text_stream("answer one")))
    assert ask(server, "--history", str(history), "next").exit_code == 0
    server.chat(Reply(pieces=text_stream("answer two")))
    assert ask(server, "-c", "follow").exit_code == 0
    continued = server.requests[-1].json["messages"]
    shown = invoke("logs", "show", "--messages")
    assert shown.exit_code == 0
    saved = tmp_path / "shown.json"
    saved.write_text(shown.stdout)
    assert ask(server, "--no-log", "--history", str(saved), "follow").exit_code == 0
    replayed = server.requests[-1].json["messages"]
    assert replayed[:len(continued)] == continued
    assert json.loads(shown.stdout) == continued + [{"role": "assistant", "content": "answer two"}]
    assert replayed == json.loads(shown.stdout) + [{"role": "user", "content": "follow"}]


# -- logs commands ---------------------------------------------------------------------------------

def test_search_finds_a_word_of_an_answer(server, isolated_env):
    server.chat([Reply(pieces=text_stream("The aubergine is purple.")), Reply(pieces=text_stream("Bananas."))])
    ask(server, "a vegetable?")
    ask(server, "a fruit?")
    r = invoke("logs", "list", "-q", "aubergine")
    assert r.exit_code == 0 and "a vegetable?" in r.stdout and "a fruit" not in r.stdout
    docs = json.loads(invoke("logs", "list", "-q", "AUBERGINE", "--json").stdout)
    assert [d["title"] for d in docs] == ["a vegetable?"]
    assert invoke("logs", "list", "-q", "nothing-like-it").stdout == ""
    assert len(invoke("logs", "list").stdout.splitlines()) == 2
    assert len(invoke("logs", "list", "-n", "1").stdout.splitlines()) == 1
    assert "a fruit?" in invoke("logs", "list", "-m", "test-mod").stdout
    assert invoke("logs", "list", "-m", "gpt").stdout == ""


def test_search_falls_back_to_like_without_fts(isolated_env):
    with Store(db_file(isolated_env)) as store:
        store.fts = False
        store.record({"id": new_id(), "conversation_id": new_id(), "request_messages": [],
                      "prompt": "p", "answer": "an unusual word: quux"})
        assert len(store.list_conversations(query="quux")) == 1
        assert store.list_conversations(query="zzz") == []


def test_rm_older_than_removes_exactly_the_old_ones(isolated_env):
    now = time.time()
    with Store(db_file(isolated_env)) as store:
        for days, cid in ((40, "OLD"), (31, "OLD"), (29, "NEW"), (1, "NEWER")):
            created = now - days * 86400
            store.record({"id": new_id(created), "conversation_id": cid, "created": created,
                          "request_messages": [], "prompt": f"{days} days", "answer": "a"})
    r = invoke("logs", "rm", "--older-than", "30d")
    assert r.exit_code == 0 and "removed 2 exchanges and 1 conversation" in r.stderr
    assert sorted(rows(isolated_env, "SELECT prompt FROM exchanges")) == [("1 days",), ("29 days",)]
    assert sorted(rows(isolated_env, "SELECT id FROM conversations")) == [("NEW",), ("NEWER",)]
    assert parse_duration("12h") == 43200 and parse_duration("2w") == 14 * 86400
    assert invoke("logs", "rm", "--older-than", "soon").exit_code == 3


def test_rm_ids_and_last(server, isolated_env):
    server.chat(Reply(pieces=text_stream("x")))
    for word in ("one", "two"):
        ask(server, word)
    ask(server, "-c", "two more")
    convs = json.loads(invoke("logs", "list", "--json").stdout)
    assert [c["turns"] for c in convs] == [2, 1]
    r = invoke("logs", "rm", "--last")
    assert "removed 1 exchange and 0 conversations" in r.stderr
    assert [c["turns"] for c in json.loads(invoke("logs", "list", "--json").stdout)] == [1, 1]
    r = invoke("logs", "rm", convs[1]["id"][:14])
    assert r.exit_code == 0 and "removed 1 exchange and 1 conversation" in r.stderr
    assert [c["title"] for c in json.loads(invoke("logs", "list", "--json").stdout)] == ["two"]
    assert invoke("logs", "rm").exit_code == 2


def test_a_long_answer_is_stored_once_and_read_back_whole(server, isolated_env):
    """Issue 22: the answer's text lives in the `answer` column only; the stored response message refers to
    it, and everything that reads the log (-c, export, show) gets the whole message back."""
    answer = "wörld " * 20_000
    server.chat(Reply(pieces=text_stream(*(["wörld "] * 20_000))))
    assert ask(server, "first").stdout.rstrip("\n") == answer
    ((stored, column),) = rows(isolated_env, "SELECT response_messages, answer FROM exchanges")
    assert column == answer and len(stored) < 200 and "wörld" not in stored
    assert json.loads(stored) == [{"role": "assistant", "content_is_answer": True}]
    server.chat(Reply(pieces=text_stream("ok")))
    assert ask(server, "-c", "second").exit_code == 0
    sent = server.requests[-1].json["messages"]
    assert sent[-2] == {"role": "assistant", "content": answer} and sent[-1]["content"] == "second"
    exported = [json.loads(line) for line in invoke("logs", "export").stdout.splitlines()]
    first = next(e for e in exported if e.get("type") == "exchange" and e["prompt"] == "first")
    assert first["response_messages"] == [{"role": "assistant", "content": answer}]


def test_an_answer_that_is_not_the_message_text_is_kept_in_the_message(isolated_env):
    """Only a message whose text is the answer refers to it: tool rounds and the rest keep their own copy."""
    messages = [{"role": "assistant", "content": "let me look", "tool_calls": [{"id": "c"}]},
                {"role": "tool", "tool_call_id": "c", "content": "42"},
                {"role": "assistant", "content": "It is 42."}]
    with Store(db_file(isolated_env)) as store:
        store.record({"id": new_id(), "conversation_id": "C1", "request_messages": [], "prompt": "q",
                      "response_messages": messages, "answer": "let me lookIt is 42."})
        store.record({"id": new_id(), "conversation_id": "C2", "request_messages": [], "prompt": "q",
                      "response_messages": messages, "answer": "It is 42."})
        (one,) = store.exchanges("C1")
        (two,) = store.exchanges("C2")
    assert one["response_messages"] == messages and two["response_messages"] == messages
    stored = dict(rows(isolated_env, "SELECT conversation_id, response_messages FROM exchanges"))
    assert "It is 42." in stored["C1"] and "It is 42." not in stored["C2"]
    assert json.loads(stored["C2"])[2] == {"role": "assistant", "content_is_answer": True}


def test_export_import_round_trip_keeps_ids(server, isolated_env, tmp_path, monkeypatch):
    server.chat(Reply(pieces=text_stream("x")))
    ask(server, "one")
    ask(server, "-c", "two")
    ask(server, "three")
    exported = invoke("logs", "export").stdout
    assert len(exported.splitlines()) == 5
    dump = tmp_path / "all.jsonl"
    dump.write_text(exported)
    monkeypatch.setenv("LLMCLI_HOME", str(tmp_path / "elsewhere"))
    r = invoke("logs", "import", str(dump))
    assert r.exit_code == 0 and "imported 3 exchanges" in r.stderr
    assert invoke("logs", "export").stdout == exported
    r = invoke("logs", "import", str(dump))
    assert "imported 0 exchanges (3 already in the log)" in r.stderr
    assert invoke("logs", "export", "--since", "1h").stdout == exported
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "exchange"}\n')
    r = invoke("logs", "import", str(bad))
    assert r.exit_code == 3 and "bad.jsonl:1" in r.stderr


def test_logs_show_is_readable_and_json_is_complete(server, isolated_env):
    server.chat(Reply(pieces=text_stream("**bold** answer")))
    ask(server, "-s", "sys", "question?")
    r = invoke("logs", "show")
    assert r.exit_code == 0
    assert "question?" in r.stdout and "**bold** answer" in r.stdout and "System:** sys" in r.stdout
    doc = json.loads(invoke("logs", "show", "--json").stdout)
    assert doc["exchanges"][0]["answer"] == "**bold** answer" and doc["exchanges"][0]["usage"] is None
    assert invoke("logs", "show", "--global").exit_code == 0
    assert invoke("logs", "show", "01NOPE").exit_code == 3


# -- failures of the log itself --------------------------------------------------------------------

def test_a_corrupt_database_costs_no_answer_and_no_exchange(server, isolated_env):
    os.makedirs(isolated_env, exist_ok=True)
    path = os.path.join(str(isolated_env), "logs.db")
    with open(path, "wb") as fh:
        fh.write(b"this is not sqlite at all" * 100)
    server.chat(Reply(pieces=text_stream("still here")))
    r = ask(server, "q")
    assert r.exit_code == 0 and r.stdout == "still here\n" and r.stderr == ""  # an ask only appends its line
    doc = json.loads(ask(server, "--json", "q").stdout)
    assert doc["content"] == "still here" and doc["conversation_id"]
    r = ask(server, "-c", "q")  # reading the log is where a broken database shows: one line, exit 3
    assert r.exit_code == 3 and r.stderr.startswith("llmcli: error: cannot open the conversation log")
    r = invoke("logs", "list")
    assert r.exit_code == 3 and "not a valid SQLite database" in r.stderr and r.stderr.count("\n") == 1
    assert pathlib.Path(path + ".pending").read_text(encoding="utf-8").count("still here") == 2  # both wait, the text once each
    os.rename(path, path + ".broken")  # the user moves the broken file away: nothing was lost
    listed = json.loads(invoke("logs", "list", "--json").stdout)
    assert len(listed) == 2 and doc["conversation_id"] in {c["id"] for c in listed}
    assert os.path.getsize(path + ".pending") == 0


def test_a_pending_file_that_cannot_be_written_is_one_warning_and_the_answer_stands(server, isolated_env):
    os.makedirs(os.path.join(str(isolated_env), "logs.db.pending"))  # a directory: nothing can be appended
    server.chat(Reply(pieces=text_stream("fine")))
    r = ask(server, "q")
    assert r.exit_code == 0 and r.stdout == "fine\n"
    assert r.stderr.count("\n") == 1 and "warning: this exchange was not logged" in r.stderr
    doc = json.loads(ask(server, "--json", "q").stdout)
    assert doc["content"] == "fine" and doc["conversation_id"] is None
    server.chat(Reply(status=500, pieces=[b"{}"], content_type="application/json", chunked=False))
    r = ask(server, "--retries", "0", "q")
    assert r.exit_code == 4 and "not logged" in r.stderr and r.stderr.count("\n") == 2


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_database_is_one_warning_and_the_exit_code_stays(server, isolated_env):
    server.chat(Reply(pieces=text_stream("ok")))
    assert ask(server, "first").exit_code == 0
    os.chmod(db_file(isolated_env), 0o444)
    os.chmod(db_file(isolated_env) + ".pending", 0o444)  # what an ask writes to
    os.chmod(isolated_env, 0o555)
    try:
        r = ask(server, "second")
        assert r.exit_code == 0 and r.stdout == "ok\n"
        assert r.stderr.count("\n") == 1 and "not logged" in r.stderr
        server.chat(Reply(status=500, pieces=[b"{}"], content_type="application/json", chunked=False))
        r = ask(server, "--retries", "0", "third")
        assert r.exit_code == 4 and "not logged" in r.stderr
    finally:
        os.chmod(isolated_env, 0o755)
        os.chmod(db_file(isolated_env) + ".pending", 0o600)
        os.chmod(db_file(isolated_env), 0o644)


def test_a_newer_database_is_refused_clearly(isolated_env):
    with Store(db_file(isolated_env)) as store:
        store.conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(store_db.StoreError, match="newer llmcli"):
        Store(db_file(isolated_env))
    assert "newer llmcli" in invoke("logs", "list").stderr


# -- migrations ------------------------------------------------------------------------------------

def build_at_version(path, version):
    """A database as an llmcli with schema `version` left it, with one conversation in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    store_db.migrate(conn, target=version)
    conn.execute("INSERT INTO conversations (id, created, session, model, provider, title) "
                 "VALUES ('01OLD', 1000.0, 's', 'm', 'p', 'old question')")
    conn.execute("INSERT INTO exchanges (id, conversation_id, created, session, command, prompt, request_messages, "
                 "response_messages, answer, partial) VALUES ('01OLDX', '01OLD', 1000.0, 's', 'ask', "
                 "'old question', '[{\"role\": \"user\", \"content\": \"old question\"}]', "
                 "'[{\"role\": \"assistant\", \"content\": \"a searchable reply\"}]', 'a searchable reply', 0)")
    conn.close()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_every_older_version_migrates(isolated_env, version):
    os.makedirs(isolated_env)
    path = db_file(isolated_env)
    build_at_version(path, version)
    with Store(path) as store:
        assert store_db.schema_version(store.conn) == SCHEMA_VERSION
        (ex,) = store.exchanges("01OLD")
        assert ex["answer"] == "a searchable reply" and ex["cost"] is None
        assert [c["id"] for c in store.list_conversations(query="searchable")] == ["01OLD"]
        store.record({"id": new_id(), "conversation_id": "01OLD", "request_messages": [], "prompt": "new",
                      "answer": "b", "cost": 0.5})
    assert os.path.exists(f"{path}.v{version}.bak")
    backup = sqlite3.connect(f"{path}.v{version}.bak")
    assert backup.execute("SELECT version FROM schema_version").fetchone() == (version,)
    backup.close()
    assert len(MIGRATIONS) == SCHEMA_VERSION


def test_fresh_database_is_wal_with_the_current_schema(isolated_env):
    with Store(db_file(isolated_env)) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert store_db.schema_version(store.conn) == SCHEMA_VERSION
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_ids_sort_by_time_and_are_unique():
    ids = [new_id(1_700_000_000 + i) for i in range(100)]
    assert ids == sorted(ids) and len(set(ids)) == 100 and all(len(i) == 26 for i in ids)
    assert len({new_id() for _ in range(1000)}) == 1000


# -- import from simonw/llm ------------------------------------------------------------------------

LLM_SCHEMA = """
CREATE TABLE [_llm_migrations] ([name] TEXT PRIMARY KEY, [applied_at] TEXT);
CREATE TABLE [conversations] ([id] TEXT PRIMARY KEY, [name] TEXT, [model] TEXT);
CREATE TABLE [schemas] ([id] TEXT PRIMARY KEY, [content] TEXT);
CREATE TABLE "responses" ([id] TEXT PRIMARY KEY, [model] TEXT, [prompt] TEXT, [system] TEXT, [prompt_json] TEXT,
  [options_json] TEXT, [response] TEXT, [response_json] TEXT, [conversation_id] TEXT REFERENCES [conversations]([id]),
  [duration_ms] INTEGER, [datetime_utc] TEXT, [input_tokens] INTEGER, [output_tokens] INTEGER, [token_details] TEXT,
  [schema_id] TEXT REFERENCES [schemas]([id]), [resolved_model] TEXT);
CREATE TABLE [tools] ([id] INTEGER PRIMARY KEY, [hash] TEXT, [name] TEXT, [description] TEXT, [input_schema] TEXT,
  [plugin] TEXT);
CREATE TABLE [tool_calls] ([id] INTEGER PRIMARY KEY, [response_id] TEXT REFERENCES [responses]([id]),
  [tool_id] INTEGER REFERENCES [tools]([id]), [name] TEXT, [arguments] TEXT, [tool_call_id] TEXT);
CREATE TABLE [tool_results] ([id] INTEGER PRIMARY KEY, [response_id] TEXT REFERENCES [responses]([id]),
  [tool_id] INTEGER REFERENCES [tools]([id]), [name] TEXT, [output] TEXT, [tool_call_id] TEXT,
  [instance_id] INTEGER, [exception] TEXT);
"""


def test_import_from_an_llm_logs_db(server, isolated_env, tmp_path):
    """A fixture built from llm's own schema (llm/migrations.py, m010–m022)."""
    path = tmp_path / "llm-logs.db"
    conn = sqlite3.connect(path)
    conn.executescript(LLM_SCHEMA)
    conn.execute("INSERT INTO conversations VALUES ('01j0aaaaaaaaaaaaaaaaaaaaaa', 'Capitals', 'gpt-4o-mini')")
    conn.execute("INSERT INTO conversations VALUES ('01j0bbbbbbbbbbbbbbbbbbbbbb', 'Time', 'gpt-4o-mini')")
    conn.executemany(
        "INSERT INTO responses (id, model, prompt, system, options_json, response, conversation_id, duration_ms, "
        "datetime_utc, input_tokens, output_tokens, resolved_model) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", [
            ("01j0aaaaaaaaaaaaaaaaaaaaa1", "gpt-4o-mini", "Capital of France?", "Be brief", "{}", "Paris.",
             "01j0aaaaaaaaaaaaaaaaaaaaaa", 800, "2024-06-01T10:00:00.000000", 12, 2, "gpt-4o-mini-2024-07-18"),
            ("01j0aaaaaaaaaaaaaaaaaaaaa2", "gpt-4o-mini", "And Spain?", "Be brief", "{}", "Madrid.",
             "01j0aaaaaaaaaaaaaaaaaaaaaa", 700, "2024-06-01T10:01:00.000000", 20, 2, None),
            ("01j0bbbbbbbbbbbbbbbbbbbbb1", "gpt-4o-mini", "What time is it?", None, "{}", "",
             "01j0bbbbbbbbbbbbbbbbbbbbbb", 500, "2024-06-02T09:00:00", None, None, None),
            ("01j0bbbbbbbbbbbbbbbbbbbbb2", "gpt-4o-mini", "", None, "{}", "It is noon.",
             "01j0bbbbbbbbbbbbbbbbbbbbbb", 500, "2024-06-02T09:00:05", None, None, None),
        ])
    conn.execute("INSERT INTO tool_calls (response_id, name, arguments, tool_call_id) VALUES "
                 "('01j0bbbbbbbbbbbbbbbbbbbbb1', 'clock', '{}', 'call_9')")
    conn.execute("INSERT INTO tool_results (response_id, name, output, tool_call_id) VALUES "
                 "('01j0bbbbbbbbbbbbbbbbbbbbb2', 'clock', '12:00', 'call_9')")
    conn.commit()
    conn.close()
    r = invoke("logs", "import", "--from-llm", str(path))
    assert r.exit_code == 0 and "imported 4 exchanges" in r.stderr, r
    listed = json.loads(invoke("logs", "list", "--json").stdout)
    assert {c["title"]: c["turns"] for c in listed} == {"Capitals": 2, "Time": 2}
    messages = json.loads(invoke("logs", "show", "01J0AAAA", "--messages").stdout)
    assert messages == [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Capital of France?"},
                        {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And Spain?"},
                        {"role": "assistant", "content": "Madrid."}]
    tool_messages = json.loads(invoke("logs", "show", "01J0BBBB", "--messages").stdout)
    assert tool_messages[1]["tool_calls"][0]["id"] == "call_9"
    assert tool_messages[2] == {"role": "tool", "tool_call_id": "call_9", "content": "12:00"}
    # an imported conversation continues like any other
    server.chat(Reply(pieces=text_stream("Rome.")))
    assert ask(server, "--cid", "01j0aaaa", "And Italy?").exit_code == 0
    assert server.requests[-1].json["messages"] == messages + [{"role": "user", "content": "And Italy?"}]
    assert "imported 0 exchanges" in invoke("logs", "import", "--from-llm", str(path)).stderr
    not_llm = tmp_path / "other.db"
    sqlite3.connect(not_llm).close()
    r = invoke("logs", "import", "--from-llm", str(not_llm))
    assert r.exit_code == 3 and "not an llm logs.db" in r.stderr


def test_an_unopenable_database_keeps_the_exchanges_waiting(server, isolated_env):
    path = os.path.join(str(isolated_env), "logs.db")
    os.makedirs(path)  # a directory where the file should be: sqlite cannot open it
    server.chat(Reply(pieces=text_stream("fine")))
    r = ask(server, "q")
    assert r.exit_code == 0 and r.stdout == "fine\n" and r.stderr == ""
    server.chat(Reply(status=500, pieces=[b"{}"], content_type="application/json", chunked=False))
    r = ask(server, "--retries", "0", "q")
    assert r.exit_code == 4 and r.stderr.count("\n") == 1  # the server's error, nothing about the log
    r = invoke("logs", "list")
    assert r.exit_code == 3 and r.stderr.startswith("llmcli: error: cannot open the conversation log")
    os.rmdir(path)
    shown = json.loads(invoke("logs", "show", "--json").stdout)  # the latest: the failed one, as it failed
    assert shown["exchanges"][-1]["exit_status"] == 4 and shown["exchanges"][-1]["error_type"]
    assert len(json.loads(invoke("logs", "list", "--json").stdout)) == 2


def test_a_writer_holding_the_lock_makes_others_wait_not_fail(server, isolated_env):
    server.chat(echo_reply)
    assert ask(server, "create the database").exit_code == 0
    holder = sqlite3.connect(db_file(isolated_env), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # what a slow writer (or a migration) looks like to the others
    try:
        procs = [spawn(server, f"waiting {i}") for i in range(4)]
        time.sleep(1.0)
    finally:
        holder.execute("COMMIT")
        holder.close()
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and out == f"echo: waiting {i}\n".encode() and err == b"", err
    assert rows(isolated_env, "SELECT COUNT(*) FROM exchanges") == [(5,)]


def test_list_since(isolated_env):
    now = time.time()
    with Store(db_file(isolated_env)) as store:
        for hours, title in ((50, "old"), (1, "recent")):
            store.record({"id": new_id(now - hours * 3600), "conversation_id": title.upper(),
                          "created": now - hours * 3600, "request_messages": [], "prompt": title, "answer": "a"})
    assert [c["title"] for c in json.loads(invoke("logs", "list", "--since", "2d", "--json").stdout)] == ["recent"]
    assert len(json.loads(invoke("logs", "list", "--since", "3d", "--json").stdout)) == 2


def test_logs_config_is_parsed_strictly(server, isolated_env, tmp_path, monkeypatch):
    server.chat(Reply(pieces=text_stream("ok")))
    cfg = tmp_path / "cfg.yaml"
    monkeypatch.setenv("LLMCLI_CONFIG", str(cfg))
    cfg.write_text("logs: {enabled: perhaps}\n")
    r = ask(server, "q")
    assert r.exit_code == 3 and "logs.enabled" in r.stderr
    cfg.write_text("logs: {enable: false}\n")  # a typo: warned about, and logging stays on
    r = ask(server, "q")
    assert r.exit_code == 0 and "unknown config key 'logs.enable'" in r.stderr
    assert rows(isolated_env, "SELECT COUNT(*) FROM exchanges") == [(1,)]


def test_a_database_in_rollback_mode_is_switched_to_wal(isolated_env):
    os.makedirs(isolated_env)
    path = db_file(isolated_env)
    conn = sqlite3.connect(path, isolation_level=None)
    store_db.migrate(conn)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    with Store(path) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
