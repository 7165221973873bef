"""Budgets stop a run before the request that could pass them: per run (every tool round), per chat
session, and the daily cap across processes (the server counts the requests that arrived)."""

import io
import json
import os
import subprocess
import sys

import pytest

from conftest import invoke
from localserver import Reply
from test_cost import stream

from llmcli.run.cost import format_usd, turn_cost

ROUND_USAGE = {"prompt_tokens": 250, "completion_tokens": 50, "total_tokens": 300}
PRICED_USAGE = {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200}


def tool_round(usage, text="Looking. "):
    return Reply(pieces=stream(text, usage, tool_call=("call_1", "web_search", '{"query": "x"}')))


def ask(server, *args):
    return invoke("ask", "--base-url", server.base_url, "-m", "gpt-4o-mini", *args)


def test_token_budget_stops_a_tool_loop_before_the_request_that_would_pass_it(server):
    # The model calls a tool forever; each round uses 300 tokens. 700: two rounds fit, a third could not.
    server.chat(tool_round(ROUND_USAGE))
    r = ask(server, "-T", "web_search", "-o", "max_tokens", "10", "--max-tokens-total", "700", "--json", "q")
    assert r.exit_code == 5, r
    assert len(server.requests) == 2
    doc = json.loads(r.stdout)
    assert doc["error"]["type"] == "budget"
    assert "above --max-tokens-total 700" in doc["error"]["message"]
    assert "spent so far: 600 tokens in 2 requests" in doc["error"]["message"]
    assert doc["content"] == "Looking. Looking. "  # the partial answer is kept
    assert doc["usage"]["total_tokens"] == 600
    assert doc["error"]["spent"] == {"tokens": 600, "requests": 2,
                                     "cost": {"amount": None, "currency": "USD", "source": "unknown"}}
    # text mode: the answer so far on stdout, one error line
    server.requests.clear()
    r = ask(server, "-T", "web_search", "-o", "max_tokens", "10", "--max-tokens-total", "700", "q")
    assert r.exit_code == 5 and r.stdout.startswith("Looking.") and len(server.requests) == 2
    assert r.stderr.count("llmcli: error: budget reached") == 1, r.stderr


def test_cost_budget_stops_a_tool_loop(server):
    server.chat(tool_round(PRICED_USAGE))
    one = turn_cost(PRICED_USAGE, "gpt-4o-mini").amount  # $0.00027 at genai-prices' gpt-4o-mini rates
    cap = one * 2.1  # two rounds fit; the third's worst case (its prompt and 10 tokens) does not
    r = ask(server, "-T", "web_search", "-o", "max_tokens", "10", "--max-cost", repr(cap), "--json", "q")
    assert r.exit_code == 5, r
    assert len(server.requests) == 2
    message = json.loads(r.stdout)["error"]["message"]
    assert f"spent so far: 2,400 tokens in 2 requests, {format_usd(2 * one)} (estimated)" in message
    assert f"above --max-cost {format_usd(cap)}" in message
    spent = json.loads(r.stdout)["error"]["spent"]
    assert spent["cost"]["source"] == "estimated" and spent["cost"]["amount"] == pytest.approx(2 * one)


def test_a_reported_cost_counts_as_spent(server):
    server.chat(tool_round(dict(PRICED_USAGE, cost=0.01)))
    r = ask(server, "-T", "web_search", "-o", "max_tokens", "10", "--max-cost", "0.015", "q")
    assert r.exit_code == 5 and len(server.requests) == 2
    assert "2 requests, $0.020)" in r.stderr, r.stderr  # reported, not estimated


def test_the_first_request_is_refused_when_its_own_worst_case_is_over(server):
    server.chat(Reply(pieces=stream("never", ROUND_USAGE)))
    r = ask(server, "-o", "max_tokens", "1000", "--max-tokens-total", "500", "q")
    assert r.exit_code == 5 and server.requests == [] and r.stdout == ""
    assert "max_tokens 1,000" in r.stderr and "not sent" in r.stderr


def test_without_max_tokens_the_budget_sets_what_it_still_allows(server):
    server.chat(Reply(pieces=stream("ok", ROUND_USAGE)))
    r = ask(server, "--max-tokens-total", "500", "q")
    assert r.exit_code == 0, r
    limit = server.requests[0].json["max_tokens"]
    assert 0 < limit < 500
    # a budget that pays for more than 32k output tokens leaves the request alone
    r = ask(server, "--max-tokens-total", "1000000", "q")
    assert "max_tokens" not in server.requests[1].json


def test_cost_budget_for_a_model_without_a_price_is_a_config_error(server):
    server.chat(Reply(pieces=stream("never", ROUND_USAGE)))
    r = invoke("ask", "--base-url", server.base_url, "-m", "my-own-model", "--max-cost", "1", "q")
    assert r.exit_code == 3 and server.requests == []
    assert "genai-prices has no price for model 'my-own-model'" in r.stderr


def test_config_budget_is_validated_at_start(server, tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    monkeypatch.setenv("LLMCLI_CONFIG", str(cfg))
    cfg.write_text("budget: {max_cost: two}\n")
    r = ask(server, "q")
    assert r.exit_code == 3 and server.requests == []
    assert "max_cost must be an amount in US dollars, got 'two'" in r.stderr
    cfg.write_text("budget: {max_tokens_total: 400, weekly: 3}\n")
    server.chat(Reply(pieces=stream("ok", ROUND_USAGE)))
    r = ask(server, "q")
    assert "unknown config key 'budget.weekly'" in r.stderr
    assert server.requests[0].json["max_tokens"] < 400
    r = invoke("config", "show", "--base-url", server.base_url, "--json")
    assert json.loads(r.stdout)["max_tokens_total"]["value"] == 400


def test_chat_session_budget_counts_every_answer(server):
    from llmcli.config.settings import resolve_settings
    from llmcli.output.render import Diagnostics
    from llmcli.repl.session import ChatSession, stream_answer

    server.chat(Reply(pieces=stream("answer", ROUND_USAGE)))
    settings = resolve_settings({"base_url": server.base_url, "model": "gpt-4o-mini", "max_tokens_total": 650,
                                 "options": [("max_tokens", 10)]})
    session = ChatSession(settings)
    err = io.StringIO()
    diag = Diagnostics(err, color=False)
    for n in range(3):
        session.add_user_message(f"message {n}")
        stream_answer(session, diag, out=io.StringIO(), err=err)
    assert len(server.requests) == 2
    assert "budget reached" in err.getvalue() and "600 tokens in 2 requests" in err.getvalue()


def test_daily_cap_across_processes(server, tmp_path, monkeypatch):
    one = turn_cost(PRICED_USAGE, "gpt-4o-mini").amount
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"budget: {{daily: {one * 2.1!r}}}\n")
    monkeypatch.setenv("LLMCLI_CONFIG", str(cfg))
    server.chat(Reply(pieces=stream("ok", PRICED_USAGE)))

    def run():
        return subprocess.run([sys.executable, "-m", "llmcli", "ask", "--base-url", server.base_url, "-m",
                               "gpt-4o-mini", "-o", "max_tokens", "100", "q"], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, env=dict(os.environ))

    codes = [run().returncode for _ in range(2)]
    third = run()
    assert codes == [0, 0] and third.returncode == 5, third.stderr
    assert len(server.requests) == 2
    assert "budget.daily" in third.stderr and "every llmcli process counted" in third.stderr
    ledger = json.loads((tmp_path / "llmcli-home" / "spend.json").read_text())
    assert list(ledger["daily"].values()) == [pytest.approx(2 * one)]
    assert oct(os.stat(tmp_path / "llmcli-home" / "spend.json").st_mode & 0o777) == "0o600"


def test_two_processes_at_once_cannot_both_pass_the_daily_cap(server, tmp_path, monkeypatch):
    """A request books its worst case in the ledger before it is sent: while the first process waits for
    its answer, a second one whose worst case would not fit beside it is refused."""
    import threading

    small = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
    worst = turn_cost({"prompt_tokens": 0, "completion_tokens": 1000}, "gpt-4o-mini").amount
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"budget: {{daily: {worst * 1.5!r}}}\n")  # room for one worst case, not two
    monkeypatch.setenv("LLMCLI_CONFIG", str(cfg))
    release = threading.Event()

    def held(handler, rec):
        release.wait(30)
        handler.play(Reply(pieces=stream("ok", small)), rec)

    server.chat(held)
    argv = [sys.executable, "-m", "llmcli", "ask", "--base-url", server.base_url, "-m", "gpt-4o-mini",
            "-o", "max_tokens", "1000", "q"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL, env=dict(os.environ))
    try:
        import time

        deadline = time.monotonic() + 30
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.requests, "the first process sent nothing"
        second = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                                env=dict(os.environ))
        assert second.returncode == 5, second.stderr
        assert "budget.daily" in second.stderr and len(server.requests) == 1
    finally:
        release.set()
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    # the first run's booking became its real (small) cost: a third run fits again
    third = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                           env=dict(os.environ))
    assert third.returncode == 0, third.stderr
    assert len(server.requests) == 2
