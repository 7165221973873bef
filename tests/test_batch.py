"""llmcli batch (issue 21) against real local servers: order, per-item errors, 429 back-off shared by every
worker, resume after SIGKILL, two endpoints with one failing, the OpenAI batch format in and out."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from localserver import LocalServer, Reply, text_stream

from llmcli.cli.app import run_cli

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def answering(server, delay=0.0, special=None):
    """A chat route that echoes the prompt; `special(prompt)` may return a Reply instead."""
    stamps = []
    lock = threading.Lock()

    def handler(h, rec):
        prompt = rec.json["messages"][-1]["content"]
        with lock:
            stamps.append((time.monotonic(), prompt))
        reply = special(prompt) if special else None
        if reply is None:
            if delay:
                time.sleep(delay)
            reply = Reply(pieces=text_stream("echo:", prompt, usage=USAGE))
        h.play(reply, rec)

    server.chat(handler)
    return stamps


def run_batch(args, capsys):
    code = run_cli(["batch"] + args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def lines_of(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_plain_lines_completion_order_and_ordered(tmp_path, capsys):
    srv = LocalServer().start()
    try:
        # Item 0 is slow, so in completion order it comes last; --ordered puts it first again.
        answering(srv, special=lambda p: Reply(pieces=text_stream("echo:", p, usage=USAGE), delay=0.1)
                  if p == "p0" else None)
        inp = tmp_path / "in.txt"
        inp.write_text("".join(f"p{i}\n" for i in range(6)))
        out = tmp_path / "out.jsonl"
        code, _, err = run_batch([str(inp), "-o", str(out), "--base-url", srv.base_url, "-j", "4"], capsys)
        assert code == 0, err
        recs = lines_of(out)
        assert sorted(r["index"] for r in recs) == list(range(6))
        assert recs[0]["index"] != 0
        assert {r["content"] for r in recs} == {f"echo:p{i}" for i in range(6)}
        assert recs[0]["usage"] == dict(USAGE, cost={"amount": None, "currency": "USD", "source": "unknown"})
        assert recs[0]["error"] is None
        assert "6 done (6 ok, 0 failed)" in err
        out2 = tmp_path / "ordered.jsonl"
        code, _, err = run_batch([str(inp), "-o", str(out2), "--base-url", srv.base_url, "-j", "4", "--ordered"],
                                 capsys)
        assert code == 0
        assert [r["index"] for r in lines_of(out2)] == list(range(6))
    finally:
        srv.stop()


def test_per_item_errors_are_records_and_exit_8(tmp_path, capsys):
    srv = LocalServer().start()
    try:
        def special(p):
            if p == "bad":
                return Reply(status=400, pieces=[b'{"error":{"message":"bad request"}}'],
                             content_type="application/json", chunked=False)
            if p == "cut":
                return Reply(pieces=text_stream("partial")[:2], end="cut")
            return None

        answering(srv, special=special)
        inp = tmp_path / "in.jsonl"
        inp.write_text('{"id": "a", "prompt": "ok1"}\n{"id": "b", "prompt": "bad"}\n'
                       '{"id": "c", "prompt": "cut"}\n{"id": "d", "prompt": "ok2"}\n')
        code, out, err = run_batch([str(inp), "-o", "-", "--base-url", srv.base_url, "-j", "2", "--ordered",
                                    "--json-summary"], capsys)
        assert code == 8
        recs = {r["id"]: r for r in map(json.loads, out.splitlines())}
        assert recs["a"]["error"] is None and recs["d"]["content"] == "echo:ok2"
        assert recs["b"]["error"]["type"] == "http"
        assert recs["c"]["error"]["type"] in ("stream", "network")
        summary = json.loads(err.splitlines()[0])
        assert summary["failed"] == 2 and summary["succeeded"] == 2
        assert "2 of 4 items failed" in err
    finally:
        srv.stop()


def test_429_with_retry_after_slows_every_worker(tmp_path, capsys):
    srv = LocalServer().start()
    try:
        first = []

        def special(p):
            if p == "p3" and not first:
                first.append(time.monotonic())
                return Reply(status=429, headers={"Retry-After": "0.6"},
                             pieces=[b'{"error":{"message":"slow down"}}'], content_type="application/json",
                             chunked=False)
            return None

        stamps = answering(srv, delay=0.05, special=special)
        inp = tmp_path / "in.txt"
        inp.write_text("".join(f"p{i}\n" for i in range(16)))
        code, _, err = run_batch([str(inp), "-o", str(tmp_path / "o.jsonl"), "--base-url", srv.base_url,
                                  "-j", "4"], capsys)
        assert code == 0, err
        t429 = first[0]
        # No worker starts a request while the server's Retry-After runs (those in flight may finish).
        during = [p for t, p in stamps if t429 + 0.1 < t < t429 + 0.55]
        assert during == [], during
        assert len(stamps) == 17
    finally:
        srv.stop()


def test_resume_after_sigkill_does_each_item_once(tmp_path):
    srv = LocalServer().start()
    try:
        stamps = answering(srv, delay=0.1)
        inp = tmp_path / "in.txt"
        n = 30
        inp.write_text("".join(f"p{i}\n" for i in range(n)))
        out = tmp_path / "out.jsonl"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        cmd = [sys.executable, "-m", "llmcli", "batch", str(inp), "-o", str(out), "--base-url", srv.base_url,
               "-j", "2"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= 6:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        first_run = len(lines_of(out))
        assert 6 <= first_run < n
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"{first_run} skipped" in done.stderr
        recs = lines_of(out)
        contents = sorted(r["content"] for r in recs)
        assert contents == sorted(f"echo:p{i}" for i in range(n))  # each exactly once
        # Only the items in flight at the kill (at most -j 2 of them, plus one being written) ran twice.
        assert n <= len(stamps) <= n + 3
    finally:
        srv.stop()


def test_two_endpoints_one_failing(tmp_path, capsys):
    good, bad = LocalServer().start(), LocalServer().start()
    try:
        answering(good)
        bad.chat(Reply(status=500, pieces=[b'{"error":{"message":"down"}}'], content_type="application/json",
                       chunked=False))
        inp = tmp_path / "in.txt"
        inp.write_text("".join(f"p{i}\n" for i in range(20)))
        code, out, err = run_batch([str(inp), "-o", "-", "--base-url", bad.base_url, "--base-url", good.base_url,
                                    "-j", "2", "--retries", "0"], capsys)
        assert code == 0, err
        assert len(out.splitlines()) == 20
        assert all(json.loads(line)["error"] is None for line in out.splitlines())
        # The failing endpoint is cooled down after a few failures instead of getting half the work.
        assert len(bad.requests) <= 5
    finally:
        good.stop()
        bad.stop()


OPENAI_INPUT = [
    {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-3.5-turbo-0125", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                                          {"role": "user", "content": "Hello world!"}],
              "max_tokens": 1000}},
    {"custom_id": "request-2", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-3.5-turbo-0125", "messages": [{"role": "user", "content": "fail me"}],
              "max_tokens": 1000}},
]


def test_openai_format_in_and_out(tmp_path, capsys):
    srv = LocalServer().start()
    try:
        answering(srv, special=lambda p: Reply(status=400, pieces=[b'{"error":{"message":"nope"}}'],
                                               content_type="application/json", chunked=False)
                  if p == "fail me" else None)
        inp = tmp_path / "batch.jsonl"
        inp.write_text("".join(json.dumps(x) + "\n" for x in OPENAI_INPUT))
        code, out, err = run_batch([str(inp), "-o", "-", "--base-url", srv.base_url, "--openai-format",
                                    "--ordered"], capsys)
        assert code == 8
        r1, r2 = map(json.loads, out.splitlines())
        assert r1["custom_id"] == "request-1" and r1["id"].startswith("batch_req_") and r1["error"] is None
        assert r1["response"]["status_code"] == 200
        body = r1["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo:Hello world!"}
        assert body["usage"] == USAGE
        assert r2["custom_id"] == "request-2" and r2["response"]["status_code"] == 400
        assert r2["error"]["message"]
        sent = [rec.json for rec in srv.requests]
        assert all(b["model"] == "gpt-3.5-turbo-0125" and b["max_tokens"] == 1000 for b in sent)
    finally:
        srv.stop()


def test_bad_input_line_is_one_error(tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"nothing": 1}\n')
    code, out, err = run_batch([str(inp), "-o", "-", "--base-url", "http://127.0.0.1:9/v1"], capsys)
    assert code == 3
    assert "llmcli: error: input line 1" in err


def test_ctrl_c_stops_cleanly_with_a_summary(tmp_path):
    srv = LocalServer().start()
    try:
        answering(srv, delay=0.2)
        inp = tmp_path / "in.txt"
        inp.write_text("".join(f"p{i}\n" for i in range(50)))
        out = tmp_path / "out.jsonl"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        proc = subprocess.Popen([sys.executable, "-m", "llmcli", "batch", str(inp), "-o", str(out), "--base-url",
                                 srv.base_url, "-j", "2"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (out.exists() and len(out.read_text().splitlines()) >= 2):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        assert "(interrupted)" in err and "llmcli: interrupted" in err
        recs = lines_of(out)  # every line written is whole
        assert 2 <= len(recs) < 50
    finally:
        srv.stop()
