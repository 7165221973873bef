"""Where the features meet: cost in the conversation log (issue 19 × 14) and attachments in the log
(issue 17 × 14). Real SQLite files, real processes, the real local server."""

import base64
import hashlib
import io
import json
import os
import pathlib
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import invoke
from localserver import Reply, sse, text_stream
from test_request import png_bytes
from test_store import build_at_version, db_file, rows

from llmcli.config.settings import Settings
from llmcli.output.render import Diagnostics
from llmcli.repl.session import ChatSession, stream_answer
from llmcli.run.cost import format_usd, turn_cost
from llmcli.store import db as store_db
from llmcli.store.db import Store

USAGE = {"prompt_tokens": 12_000, "completion_tokens": 3_000, "total_tokens": 15_000}


def stream(text, usage, model="gpt-4o-mini"):
    """A streamed answer whose chunks name `model`, ending with a usage chunk (None: no usage)."""
    chunks = [{"id": "c", "object": "chat.completion.chunk", "model": model,
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
              {"id": "c", "object": "chat.completion.chunk", "model": model,
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    if usage is not None:
        chunks.append({"id": "c", "model": model, "choices": [], "usage": usage})
    return Reply(pieces=sse(*chunks))


def ask(server, *args):
    return invoke("ask", "--base-url", server.base_url, *args)


def ask_process(server, *args):
    """A real `llmcli ask` process: genai-prices is not already loaded there, as in a user's shell."""
    return subprocess.run([sys.executable, "-m", "llmcli", "ask", "--base-url", server.base_url, *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=dict(os.environ))


def stored_exchanges(home):
    with Store(db_file(home)) as store:
        return [ex for conv in reversed(store.list_conversations(limit=None)) for ex in store.exchanges(conv["id"])]


def logs_cost(*args):
    r = invoke("logs", "cost", *args, "--json")
    assert r.exit_code == 0, r
    return json.loads(r.stdout)


# --------------------------------------------------------------------------------------------
# cost in the log


def test_a_plain_ask_stores_usage_to_price_later_and_logs_cost_prices_it(server, isolated_env):
    """Recording a plain ask must not load the price table (~150 ms): the usage is kept instead."""
    server.chat([stream("a", USAGE), stream("b", USAGE)])
    proc = ask_process(server, "-m", "gpt-4o-mini", "q1")
    assert proc.returncode == 0 and proc.stdout == "a\n", proc.stderr
    # asked for a cost (-u), the run priced itself: the log stores that price as it is
    proc = ask_process(server, "-m", "gpt-4o-mini", "-u", "q2")
    assert proc.returncode == 0, proc.stderr
    (cost1, source1, usages1), (cost2, source2, usages2) = rows(
        isolated_env, "SELECT cost, cost_source, cost_usages FROM exchanges ORDER BY id")
    expected = turn_cost(USAGE, "gpt-4o-mini").amount
    assert expected and expected > 0
    assert cost1 is None and source1 is None  # not priced at record time
    assert json.loads(usages1) == [{"model": "gpt-4o-mini", "usage": USAGE}]
    assert cost2 == pytest.approx(expected) and source2 == "estimated" and usages2 is None
    doc = logs_cost("--since", "7d")
    assert doc["total"]["amount"] == pytest.approx(2 * expected)
    assert doc["total"]["estimated"] == 2 and doc["total"]["unknown"] == 0 and doc["total"]["source"] == "estimated"
    # logs show --json gives every exchange a cost object once read
    with Store(db_file(isolated_env)) as store:
        first = store.exchanges(store.list_conversations()[-1]["id"])[0]
    assert first["cost"] is None and first["cost_usages"]


def test_reported_estimated_and_unknown_costs_are_stored_as_objects(server, isolated_env):
    server.chat([stream("r", dict(USAGE, cost=0.25)), stream("e", USAGE), stream("u", USAGE, model="my-own-model"),
                 stream("n", None)])
    for prompt in ("reported", "estimated", "unknown model", "no usage"):
        assert ask(server, "-m", "gpt-4o-mini", "--json", prompt).exit_code == 0
    costs = [ex["cost"] for ex in stored_exchanges(isolated_env)]
    estimated = turn_cost(USAGE, "gpt-4o-mini").amount
    assert costs[0] == {"amount": 0.25, "currency": "USD", "source": "reported"}
    assert costs[1]["source"] == "estimated" and costs[1]["amount"] == pytest.approx(estimated)
    assert costs[2] == {"amount": None, "currency": "USD", "source": "unknown"}  # never 0
    assert costs[3] == {"amount": None, "currency": "USD", "source": "unknown"}
    # the --json document and the log agree
    assert rows(isolated_env, "SELECT COUNT(*) FROM exchanges WHERE cost = 0")[0][0] == 0


def test_logs_cost_sums_by_model_and_counts_unknown_separately(server, isolated_env):
    server.chat([stream("a", USAGE), stream("b", dict(USAGE, cost=0.5)), stream("c", USAGE, model="my-own-model")])
    for prompt in ("one", "two", "three"):
        assert ask(server, "-m", "gpt-4o-mini", "-u", prompt).exit_code == 0
    estimated = turn_cost(USAGE, "gpt-4o-mini").amount
    doc = logs_cost("--by", "model")
    assert doc["total"]["amount"] == pytest.approx(estimated + 0.5)
    assert (doc["total"]["exchanges"], doc["total"]["unknown"], doc["total"]["reported"]) == (3, 1, 1)
    groups = {g["model"]: g for g in doc["groups"]}
    assert groups["gpt-4o-mini"]["amount"] == pytest.approx(estimated + 0.5)
    assert groups["my-own-model"]["amount"] is None and groups["my-own-model"]["unknown"] == 1
    text = invoke("logs", "cost").stdout
    assert format_usd(estimated + 0.5) in text and "1 with cost unknown (not counted)" in text
    table = invoke("logs", "cost", "--by", "provider").stdout.splitlines()
    assert table[0].split() == ["PROVIDER", "COST", "EXCHANGES", "UNKNOWN"] and table[-1].split()[0] == "total"
    assert logs_cost("--by", "day")["groups"][0]["exchanges"] == 3
    # nothing in the window: an empty total, unknown, not $0
    empty = logs_cost("--since", "0s")
    assert empty["total"]["exchanges"] == 0 and empty["total"]["amount"] is None


def test_logs_list_cost_column(server, isolated_env):
    server.chat([stream("a", dict(USAGE, cost=0.5)), stream("b", USAGE, model="my-own-model"),
                 stream("c", dict(USAGE, cost=0.25))])
    assert ask(server, "-m", "gpt-4o-mini", "first").exit_code == 0
    assert ask(server, "-m", "gpt-4o-mini", "second").exit_code == 0
    assert ask(server, "-m", "gpt-4o-mini", "-c", "third").exit_code == 0  # continues "second"
    lines = invoke("logs", "list", "--cost").stdout.splitlines()
    assert "≥$0.25" in lines[0] and "2 turns" in lines[0]  # one exchange unknown, one $0.25
    assert "$0.50" in lines[1] and "≥" not in lines[1]
    assert "$" not in invoke("logs", "list").stdout
    listed = json.loads(invoke("logs", "list", "--cost", "--json").stdout)
    assert listed[0]["cost"]["amount"] == 0.25 and listed[0]["cost"]["unknown"] == 1
    assert listed[1]["cost"]["source"] == "reported"


def test_a_schema_3_database_keeps_its_reported_costs_and_prices_the_rest(isolated_env):
    os.makedirs(isolated_env)
    path = db_file(isolated_env)
    build_at_version(path, 3)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE exchanges SET cost = 0.5, usage = ? WHERE id = '01OLDX'", (json.dumps(USAGE),))
    conn.execute("INSERT INTO exchanges (id, conversation_id, created, request_messages, model_reported, usage, "
                 "partial) VALUES ('01OLDY', '01OLD', 2000.0, '[]', 'gpt-4o-mini', ?, 0)", (json.dumps(USAGE),))
    conn.close()
    with Store(path) as store:
        assert store_db.schema_version(store.conn) == store_db.SCHEMA_VERSION
        reported, unpriced = store.exchanges("01OLD")
    assert reported["cost"] == {"amount": 0.5, "currency": "USD", "source": "reported"}
    assert unpriced["cost"] is None and unpriced["attachments"] is None
    doc = logs_cost()
    assert doc["total"]["reported"] == 1 and doc["total"]["estimated"] == 1
    assert doc["total"]["amount"] == pytest.approx(0.5 + turn_cost(USAGE, "gpt-4o-mini", when=2000.0).amount)


def test_export_and_import_keep_the_cost_object(server, isolated_env, tmp_path):
    server.chat(stream("a", dict(USAGE, cost=0.125)))
    assert ask(server, "-m", "gpt-4o-mini", "q").exit_code == 0
    exported = invoke("logs", "export").stdout
    (exchange,) = [json.loads(line) for line in exported.splitlines() if '"exchange"' in line]
    assert exchange["cost"] == {"amount": 0.125, "currency": "USD", "source": "reported"}
    invoke("logs", "rm", exchange["conversation_id"])
    dump = tmp_path / "all.jsonl"
    dump.write_text(exported)
    assert invoke("logs", "import", str(dump)).exit_code == 0
    assert stored_exchanges(isolated_env)[0]["cost"] == exchange["cost"]
    # an export from schema 3 had the reported amount as a number
    old = dict(exchange, id="01OLDEXPORT000000000000000", cost=0.75)
    dump.write_text(json.dumps(old) + "\n")
    assert invoke("logs", "import", str(dump)).exit_code == 0
    assert {ex["id"]: ex["cost"] for ex in stored_exchanges(isolated_env)}[old["id"]]["source"] == "reported"


# --------------------------------------------------------------------------------------------
# attachments in the log


def _no_bytes(text, data):
    return base64.b64encode(data).decode()[:40] not in text


def test_ask_attach_is_logged_by_reference_and_a_continued_request_stays_valid(server, isolated_env, tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(png_bytes())
    digest = hashlib.sha256(png_bytes()).hexdigest()
    server.chat([stream("a cat", None), stream("still a cat", None)])
    r = ask(server, "-a", str(image), "--json", "what is it?")
    assert r.exit_code == 0, r
    sent = server.requests[-1].json["messages"][-1]["content"]
    assert sent[1]["image_url"]["url"].startswith("data:image/png;base64,")  # the server got the bytes
    waiting = pathlib.Path(os.path.join(isolated_env, "logs.db.pending")).read_bytes()  # the exchange, not yet moved in
    assert digest.encode() in waiting and base64.b64encode(png_bytes())[:40] not in waiting
    (ex,) = stored_exchanges(isolated_env)
    record = {"name": str(image), "type": "image/png", "size": len(png_bytes()), "sha256": digest}
    assert ex["attachments"] == [record]
    assert json.loads(r.stdout)["attachments"] == [record]  # --json and the log say the same
    stored = ex["request_messages"][-1]["content"]
    assert stored[0] == {"type": "text", "text": "what is it?"}
    assert stored[1]["type"] == "text" and "not kept in the conversation log" in stored[1]["text"]
    assert str(image) in stored[1]["text"] and digest in stored[1]["text"] and "image/png" in stored[1]["text"]
    assert ex["prompt"] == "what is it?"
    raw = pathlib.Path(db_file(isolated_env)).read_bytes() + b"".join(
        pathlib.Path(db_file(isolated_env) + s).read_bytes() for s in ("-wal",) if os.path.exists(db_file(isolated_env) + s))
    assert base64.b64encode(png_bytes())[:40] not in raw
    # -c sends the stored conversation: the note, not a broken or empty part
    assert ask(server, "-c", "and its colour?").exit_code == 0
    continued = server.requests[-1].json["messages"]
    assert continued[0]["content"] == stored and continued[-1] == {"role": "user", "content": "and its colour?"}
    assert all(p.get("type") == "text" for m in continued if isinstance(m["content"], list) for p in m["content"])
    messages = json.loads(invoke("logs", "show", "--messages").stdout)
    assert messages[0]["content"] == stored and _no_bytes(json.dumps(messages), png_bytes())
    assert stored_exchanges(isolated_env)[1]["attachments"] is None  # the second exchange attached nothing


def test_a_history_file_with_a_data_url_is_logged_without_the_bytes(server, isolated_env, tmp_path):
    data = png_bytes()
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    history = tmp_path / "h.json"
    history.write_text(json.dumps([{"role": "user", "content": [{"type": "text", "text": "look"},
                                                               {"type": "image_url", "image_url": {"url": url}}]},
                                   {"role": "assistant", "content": "a picture"}]))
    server.chat(stream("ok", None))
    assert ask(server, "--history", str(history), "more?").exit_code == 0
    (ex,) = stored_exchanges(isolated_env)
    assert _no_bytes(json.dumps(ex), data)
    assert ex["request_messages"][0]["content"][1]["text"].startswith("[attachment not kept")
    assert ex["attachments"] is None  # it came with the history, not with this message


def test_chat_attach_and_file_are_recorded(server, isolated_env, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    notes = tmp_path / "notes.txt"
    notes.write_text("the notes\n")
    server.chat([stream("a1", None), stream("a2", None)])
    session = ChatSession(Settings(base_url=server.base_url, retries=0, home=str(isolated_env)))
    session.log_enabled = True
    session.submit(f"/attach {image}")
    session.submit(f"/file {notes}")
    for text in ("what is this?", "thanks"):
        assert session.submit(text).send
        err = io.StringIO()
        stream_answer(session, Diagnostics(err, False), out=io.StringIO(), err=err)
        assert "not logged" not in err.getvalue(), err.getvalue()
    first, second = stored_exchanges(isolated_env)
    assert first["attachments"] == [{"name": str(image), "type": "image/png", "size": len(png_bytes()),
                                     "sha256": hashlib.sha256(png_bytes()).hexdigest()}]
    assert first["files"] == [{"name": str(notes), "sha256": hashlib.sha256(b"the notes\n").hexdigest(),
                               "chars": len("the notes\n")}]
    assert second["attachments"] is None and second["files"] is None
    # the session itself still holds the bytes (the next turn re-sends them); the log never does
    assert server.requests[-1].json["messages"][0]["content"][1]["type"] == "image_url"
    assert _no_bytes(json.dumps(second), png_bytes()) and _no_bytes(json.dumps(first), png_bytes())


# --------------------------------------------------------------------------------------------
# budget.daily / monthly also read the log


def test_the_daily_cap_counts_what_the_log_holds_and_the_ledger_does_not(server, isolated_env, tmp_path,
                                                                        monkeypatch):
    """Spent before the cap was configured (no spend.json yet): the log says so, and the cap holds."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("budget: {daily: 2.00}\n")
    monkeypatch.setenv("LLMCLI_CONFIG", str(cfg))
    with Store(db_file(isolated_env)) as store:
        store.record({"id": store_db.new_id(), "conversation_id": store_db.new_id(), "request_messages": [],
                      "prompt": "earlier today", "answer": "x", "cost": {"amount": 1.5, "currency": "USD",
                                                                          "source": "reported"}})
        store.record({"id": store_db.new_id(time.time() - 40 * 86400), "conversation_id": store_db.new_id(),
                      "created": time.time() - 40 * 86400, "request_messages": [], "prompt": "long ago",
                      "answer": "y", "cost": {"amount": 100.0, "currency": "USD", "source": "reported"}})
    server.chat([stream("ok", dict(USAGE, cost=0.5)), stream("never", USAGE)])
    first = ask(server, "-m", "gpt-4o-mini", "-o", "max_tokens", "100", "q1")  # 1.5 + its worst case < 2
    assert first.exit_code == 0, first
    second = ask(server, "-m", "gpt-4o-mini", "-o", "max_tokens", "100", "q2")  # 1.5 + 0.5 = 2.00 spent
    assert second.exit_code == 5 and len(server.requests) == 1, second
    assert "budget.daily" in second.stderr and "$2.00" in second.stderr
    # without the log's earlier exchange the same request would have gone out
    from llmcli.run.budget import logged_spend

    spent = logged_spend(str(isolated_env))
    assert spent["daily"] == pytest.approx(2.0) and spent["monthly"] >= spent["daily"]


def test_logs_show_prints_cost_and_attachments(server, isolated_env, tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(png_bytes())
    server.chat(stream("a cat", dict(USAGE, cost=0.25)))
    assert ask(server, "-a", str(image), "what?").exit_code == 0
    text = invoke("logs", "show").stdout
    assert "$0.25 (reported)" in text and f"attached {image} (image/png, {len(png_bytes()):,} bytes)" in text
    shown = json.loads(invoke("logs", "show", "--json").stdout)["exchanges"][0]
    assert shown["cost"] == {"amount": 0.25, "currency": "USD", "source": "reported"}


def test_recording_a_plain_ask_does_not_load_the_price_table(server, isolated_env):
    """The measurement behind the choice (bench/run.py g): importing genai-prices is ~150 ms."""
    server.chat(stream("hi", USAGE))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "llmcli", "ask", "--base-url", server.base_url,
                           "-m", "gpt-4o-mini", "q"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=dict(os.environ))
    assert proc.returncode == 0 and proc.stdout == "hi\n"
    assert "llmcli.store.pending" in proc.stderr  # it was recorded (so the check below can fail)
    assert "genai_prices" not in proc.stderr
    (usages,) = rows(isolated_env, "SELECT cost_usages FROM exchanges")[0]
    assert json.loads(usages)[0]["usage"] == USAGE
    doc = json.loads(invoke("logs", "show", "--json").stdout)
    assert doc["exchanges"][0]["cost"]["source"] == "estimated"  # priced when read
