"""`ask --logprobs N` and `--show-logprobs` (issue 18): the request, --json, --jsonl and a real pty."""

import json
import math
import os
import sys

import pexpect

from conftest import invoke
from localserver import Reply, chunk, split_three_ways, sse


def entry(token, p, alts=()):
    return {"token": token, "logprob": math.log(p), "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": math.log(q), "bytes": list(t.encode())} for t, q in alts]}


def with_logprobs(text, entries, finish=None):
    c = chunk(text, finish=finish)
    c["choices"][0]["logprobs"] = {"content": entries, "refusal": None}
    return c


STREAM = sse(chunk(role="assistant", content=""),
             with_logprobs("Paris", [entry("Par", 0.95, [("Lon", 0.03)]), entry("is", 0.99)]),
             with_logprobs(" maybe", [entry(" maybe", 0.05, [(".", 0.6)])]),
             chunk(finish="stop"))


def test_logprobs_request_and_json(server, way):
    server.chat(Reply(pieces=split_three_ways(STREAM)[way]))
    r = invoke("ask", "--base-url", server.base_url, "--logprobs", "2", "--json", "capital?")
    assert r.exit_code == 0, r
    body = server.requests[-1].json
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    doc = json.loads(r.stdout)
    assert doc["content"] == "Paris maybe"
    assert [e["token"] for e in doc["logprobs"]] == ["Par", "is", " maybe"]
    assert doc["logprobs"][0]["top_logprobs"][0]["token"] == "Lon"


def test_logprobs_jsonl_events_before_their_text(server, way):
    server.chat(Reply(pieces=split_three_ways(STREAM)[way]))
    r = invoke("ask", "--base-url", server.base_url, "--logprobs", "1", "--jsonl", "capital?")
    assert r.exit_code == 0, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["logprobs", "text", "logprobs", "text"]
    assert [e["token"] for e in events[0]["logprobs"]] == ["Par", "is"]


def test_no_logprobs_unless_asked(server):
    from localserver import text_stream

    server.chat(Reply(pieces=text_stream("Paris")))
    r = invoke("ask", "--base-url", server.base_url, "--json", "capital?")
    assert r.exit_code == 0, r
    assert "logprobs" not in server.requests[-1].json and "logprobs" not in json.loads(r.stdout)


def test_show_logprobs_in_a_pipe_prints_plain_text(server):
    server.chat(Reply(pieces=STREAM))
    r = invoke("ask", "--base-url", server.base_url, "--show-logprobs", "capital?")
    assert r.exit_code == 0, r
    assert r.stdout == "Paris maybe\n"
    assert server.requests[-1].json["logprobs"] is True
    assert "colour terminal only" in r.stderr


def test_show_logprobs_tints_tokens_on_a_terminal(server):
    server.chat(Reply(pieces=STREAM))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), TERM="xterm")
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "ask", "--base-url", server.base_url,
                                           "--show-logprobs", "capital?"],
                          env=env, dimensions=(40, 120), encoding="utf-8", timeout=20)
    child.expect(pexpect.EOF)
    child.close()
    data = child.before
    assert child.exitstatus == 0, data
    assert "\x1b[32mPar\x1b[0m\x1b[32mis\x1b[0m" in data  # >= 90 %: green
    assert "\x1b[31m maybe\x1b[0m" in data  # < 10 %: red
    assert "token probability:" in data and ">=90%" in data  # the legend (stderr, same pty)
