"""Provider batch APIs (issue 21): `llmcli batch IN --remote`, `batch status|wait|fetch|cancel ID`, against a
local server that implements /v1/files and /v1/batches the way OpenAI documents them.

The objects the fake serves follow the published format: openai-python's `types/batch.py` (Batch: id, object,
endpoint, input_file_id, completion_window, status validating|failed|in_progress|finalizing|completed|expired|
cancelling|cancelled, output_file_id, error_file_id, errors.data[{code, line, message, param}],
request_counts), `types/batch_request_counts.py` ({total, completed, failed}), `types/file_object.py`
(FileObject: id, object "file", bytes, created_at, filename, purpose, status), and the output/error lines of
https://platform.openai.com/docs/guides/batch ({"id": "batch_req_…", "custom_id", "response": {"status_code",
"request_id", "body"} | null, "error": null | {"code", "message"}}).
"""

import email
import email.policy
import itertools
import json
import threading

import pytest
from localserver import LocalServer, Reply

from llmcli.cli.app import run_cli

KEY = "sk-test-remote-batch-0123456789"
USAGE = {"prompt_tokens": 22, "completion_tokens": 2, "total_tokens": 24}


def json_reply(obj, status=200, headers=None):
    return Reply(status=status, pieces=[json.dumps(obj).encode("utf-8")], content_type="application/json",
                 chunked=False, headers=headers or {})


def parse_multipart(rec):
    """{name: (filename, bytes)} from a multipart/form-data request (the email parser, as cgi is gone)."""
    head = f"Content-Type: {rec.headers['Content-Type']}\r\n\r\n".encode("ascii")
    msg = email.message_from_bytes(head + rec.body, policy=email.policy.HTTP)
    assert msg.is_multipart()
    parts = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_payload(decode=True))
    return parts


def completion(custom_id, content, n):
    """One output line, as in OpenAI's batch guide."""
    return {"id": f"batch_req_{n:024d}", "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": f"req_{n}",
                         "body": {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1711652795,
                                  "model": "gpt-4o-mini-2024-07-18",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": content,
                                                                       "refusal": None},
                                               "logprobs": None, "finish_reason": "stop"}],
                                  "usage": USAGE, "system_fingerprint": "fp_44709d6fcb"}},
            "error": None}


def failed_request(custom_id, n):
    """A request the provider answered with an error: the error file's line."""
    return {"id": f"batch_req_{n:024d}", "custom_id": custom_id,
            "response": {"status_code": 400, "request_id": f"req_{n}",
                         "body": {"error": {"message": "Invalid 'messages[0].content': string too long.",
                                            "type": "invalid_request_error", "param": "messages", "code": None}}},
            "error": None}


def expired_request(custom_id, n):
    return {"id": f"batch_req_{n:024d}", "custom_id": custom_id, "response": None,
            "error": {"code": "batch_expired",
                      "message": "This request could not be executed before the completion window expired."}}


class FakeBatchProvider:
    """/v1/files and /v1/batches on a LocalServer; each GET of a batch moves it one step along `plan`."""

    def __init__(self, server, plan=("validating", "in_progress", "finalizing", "completed"), end_with=None):
        self.server = server
        self.plan = list(plan)
        self.end_with = end_with  # "expired" | None: how requests that did not run are reported
        self.files = {}  # id → (FileObject, bytes)
        self.batches = {}  # id → dict
        self.steps = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.fail_next_get = 0  # answer this many batch GETs with 429 first
        self.served = []  # (batch id, status) of every GET answered
        server.route("/v1/files", self.upload)
        server.route("/v1/batches", self.create)

    # -- files -----------------------------------------------------------------------------
    def add_file(self, data: bytes, filename: str, purpose: str) -> dict:
        fid = f"file-{next(self.ids):06d}"
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": 1711471533, "filename": filename,
               "purpose": purpose, "status": "processed"}
        self.files[fid] = (obj, data)
        self.server.route(f"/v1/files/{fid}/content",
                          lambda h, rec: h.play(Reply(pieces=[data], content_type="application/octet-stream",
                                                      chunked=False), rec), method="GET")
        return obj

    def upload(self, h, rec):
        parts = parse_multipart(rec)
        filename, data = parts["file"]
        purpose = parts["purpose"][1].decode()
        h.play(json_reply(self.add_file(data, filename, purpose)), rec)

    # -- batches ---------------------------------------------------------------------------
    def create(self, h, rec):
        body = rec.json
        fid = body["input_file_id"]
        if fid not in self.files:
            h.play(json_reply({"error": {"message": "No such File object", "type": "invalid_request_error"}}, 404), rec)
            return
        bid = f"batch_{next(self.ids):06d}"
        lines = self.files[fid][1].decode().splitlines()
        batch = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                 "input_file_id": fid, "completion_window": body["completion_window"], "status": self.plan[0],
                 "output_file_id": None, "error_file_id": None, "created_at": 1711471533,
                 "in_progress_at": None, "expires_at": 1711557933, "finalizing_at": None, "completed_at": None,
                 "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
                 "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata")}
        self.batches[bid] = batch
        self.steps[bid] = 0
        self.server.route(f"/v1/batches/{bid}", lambda h2, r2: self.retrieve(h2, r2, bid, lines), method="GET")
        self.server.route(f"/v1/batches/{bid}/cancel", lambda h2, r2: self.cancel(h2, r2, bid))
        h.play(json_reply(batch), rec)

    def retrieve(self, h, rec, bid, lines):
        with self.lock:
            if self.fail_next_get:
                self.fail_next_get -= 1
                h.play(json_reply({"error": {"message": "Rate limit reached", "type": "requests"}}, 429,
                                  {"Retry-After": "0"}), rec)
                return
            batch = self.batches[bid]
            if batch["status"] == "cancelling":
                self.finish(batch, lines, "cancelled")
            elif batch["status"] not in ("completed", "failed", "expired", "cancelled"):
                self.steps[bid] = min(self.steps[bid] + 1, len(self.plan) - 1)
                status = self.plan[self.steps[bid]]
                batch["status"] = status
                total = len(lines)
                if status == "in_progress":
                    batch["request_counts"] = {"total": total, "completed": total // 2, "failed": 0}
                elif status in ("completed", "expired"):
                    self.finish(batch, lines, status)
                elif status == "failed":
                    batch["errors"] = {"object": "list", "data": [
                        {"code": "invalid_json_line", "line": 2, "message": "This line is not parseable as valid JSON.",
                         "param": None}]}
            self.served.append((bid, batch["status"]))
            h.play(json_reply(batch), rec)

    def finish(self, batch, lines, status):
        outputs, errors = [], []
        for n, raw in enumerate(lines):
            line = json.loads(raw)
            prompt = line["body"]["messages"][-1]["content"]
            if prompt == "fail me":
                errors.append(failed_request(line["custom_id"], n))
            elif status != "completed" and n >= 1:
                errors.append(expired_request(line["custom_id"], n))  # the window closed before these ran
            else:
                outputs.append(completion(line["custom_id"], "echo:" + prompt, n))
        outputs.reverse()  # output order is not input order (the guide says so): fetch must not rely on it

        def jsonl(rows):
            return "".join(json.dumps(r) + "\n" for r in rows).encode()

        if outputs:
            batch["output_file_id"] = self.add_file(jsonl(outputs), "batch_output.jsonl", "batch_output")["id"]
        if errors:
            batch["error_file_id"] = self.add_file(jsonl(errors), "batch_errors.jsonl", "batch_output")["id"]
        batch["status"] = status
        batch["request_counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}
        batch[f"{status}_at"] = 1711475533

    def cancel(self, h, rec, bid):
        batch = self.batches[bid]
        batch["status"] = "cancelling"
        batch["cancelling_at"] = 1711475000
        h.play(json_reply(batch), rec)


def llmcli(capsys, *args):
    code = run_cli([str(a) for a in args])
    cap = capsys.readouterr()
    assert KEY not in cap.out and KEY not in cap.err  # keys are never printed
    return code, cap.out, cap.err


@pytest.fixture
def provider():
    srv = LocalServer().start()
    yield FakeBatchProvider(srv)
    srv.stop()


def conn(provider):
    return ["--base-url", provider.server.base_url, "--api-key", KEY, "--retries", "2"]


INPUT = [
    "What is 2+2?",  # a plain prompt
    json.dumps({"id": "mine", "prompt": "Hello world!", "options": {"temperature": 0}}),  # llmcli object
    json.dumps({"custom_id": "request-3", "method": "POST", "url": "/v1/chat/completions",  # already OpenAI
                "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 5}}),
]


def submit(provider, tmp_path, capsys, lines=INPUT, *extra):
    inp = tmp_path / "prompts.txt"
    inp.write_text("\n".join(lines) + "\n")
    code, out, err = llmcli(capsys, "batch", inp, "--remote", "-m", "gpt-4o-mini", *conn(provider), *extra)
    assert code == 0, err
    return out.strip(), err


def test_submit_uploads_the_openai_batch_file_and_creates_the_batch(provider, tmp_path, capsys):
    batch_id, err = submit(provider, tmp_path, capsys)
    assert batch_id == "batch_000002"
    assert "uploaded 3 requests as file-000001" in err
    upload, create = provider.server.requests
    assert upload.path == "/v1/files" and upload.headers["Authorization"] == f"Bearer {KEY}"
    assert upload.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert int(upload.headers["Content-Length"]) == len(upload.body)  # not chunked
    parts = parse_multipart(upload)
    assert parts["purpose"] == (None, b"batch")
    filename, data = parts["file"]
    assert filename == "prompts.jsonl"
    lines = [json.loads(x) for x in data.decode().splitlines()]
    assert [x["custom_id"] for x in lines][1:] == ["mine", "request-3"] and lines[0]["custom_id"].startswith("h-")
    assert all(x["method"] == "POST" and x["url"] == "/v1/chat/completions" for x in lines)
    assert lines[0]["body"] == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is 2+2?"}]}
    assert lines[1]["body"]["temperature"] == 0 and "stream" not in lines[1]["body"]
    assert lines[2]["body"] == {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 5}
    assert create.path == "/v1/batches" and create.json == {
        "input_file_id": "file-000001", "endpoint": "/v1/chat/completions", "completion_window": "24h"}


def test_status_wait_and_fetch_through_every_status(provider, tmp_path, capsys):
    batch_id, _ = submit(provider, tmp_path, capsys)
    code, out, _ = llmcli(capsys, "batch", "status", batch_id, *conn(provider), "--json")
    assert code == 0
    status = json.loads(out)
    assert status["status"] == "in_progress" and status["request_counts"] == {"total": 3, "completed": 1, "failed": 0}
    code, out, err = llmcli(capsys, "batch", "wait", batch_id, *conn(provider), "--poll-interval", "0.01",
                            "--timeout", "30")
    assert code == 0, err
    assert out.strip() == f"{batch_id} completed: 3/3 completed, 0 failed"
    assert [status for _, status in provider.served] == ["in_progress", "finalizing", "completed"]  # polled through each status until the end
    out_path = tmp_path / "answers.jsonl"
    code, _, err = llmcli(capsys, "batch", "fetch", batch_id, "-o", out_path, *conn(provider))
    assert code == 0, err
    assert "3 records (3 ok, 0 failed)" in err
    recs = sorted((json.loads(x) for x in out_path.read_text().splitlines()), key=lambda r: r["index"])
    assert [r["index"] for r in recs] == [0, 1, 2]  # from the input file, although the output came reversed
    assert [r["content"] for r in recs] == ["echo:What is 2+2?", "echo:Hello world!", "echo:Say hi"]
    assert recs[1]["id"] == recs[1]["custom_id"] == "mine"
    # the same keys as a local `llmcli batch` record (the ask --json document)
    for key in ("model", "content", "reasoning", "refusal", "finish_reason", "tool_calls", "usage", "timing", "error"):
        assert key in recs[0]
    assert recs[0]["usage"] == USAGE and recs[0]["finish_reason"] == "stop" and recs[0]["error"] is None
    assert recs[0]["model"] == "gpt-4o-mini-2024-07-18"


def test_fetch_converts_the_error_file_and_exits_8(provider, tmp_path, capsys):
    batch_id, _ = submit(provider, tmp_path, capsys, ["first", "fail me", "third"])
    code, out, err = llmcli(capsys, "batch", "wait", batch_id, *conn(provider), "--poll-interval", "0.01")
    assert code == 8
    assert "1 of 3 requests failed" in err and out.startswith(f"{batch_id} completed: 2/3 completed, 1 failed")
    code, out, err = llmcli(capsys, "batch", "fetch", batch_id, "-o", "-", *conn(provider))
    assert code == 8
    recs = {r["index"]: r for r in map(json.loads, out.splitlines())}
    assert recs[0]["content"] == "echo:first" and recs[2]["content"] == "echo:third"
    bad = recs[1]
    assert bad["error"]["type"] == "http" and bad["error"]["status"] == 400
    assert "string too long" in bad["error"]["message"] and bad["content"] == ""
    # --openai-format keeps the provider's lines
    code, out, _ = llmcli(capsys, "batch", "fetch", batch_id, "-o", "-", "--openai-format", *conn(provider))
    assert code == 8
    lines = [json.loads(x) for x in out.splitlines()]
    assert sorted(x["response"]["status_code"] for x in lines) == [200, 200, 400]
    assert all(x["id"].startswith("batch_req_") for x in lines)


def test_expired_batch_fetches_what_ran_and_exits_8(tmp_path, capsys):
    srv = LocalServer().start()
    try:
        provider = FakeBatchProvider(srv, plan=("validating", "in_progress", "expired"))
        batch_id, _ = submit(provider, tmp_path, capsys, ["one", "two"])
        code, out, err = llmcli(capsys, "batch", "wait", batch_id, *conn(provider), "--poll-interval", "0.01")
        assert code == 8 and "ended expired" in err
        code, out, err = llmcli(capsys, "batch", "fetch", batch_id, "-o", "-", *conn(provider))
        assert code == 8
        recs = {r["index"]: r for r in map(json.loads, out.splitlines())}
        assert recs[0]["error"] is None and recs[0]["content"] == "echo:one"
        assert recs[1]["error"]["type"] == "batch" and "batch_expired" in recs[1]["error"]["message"]
    finally:
        srv.stop()


def test_failed_batch_ends_wait_with_its_error(tmp_path, capsys):
    srv = LocalServer().start()
    try:
        provider = FakeBatchProvider(srv, plan=("validating", "failed"))
        batch_id, _ = submit(provider, tmp_path, capsys, ["one", "two"])
        code, out, err = llmcli(capsys, "batch", "wait", batch_id, *conn(provider), "--poll-interval", "0.01",
                                "--json")
        assert code == 8
        assert json.loads(out)["status"] == "failed"
        assert "ended failed" in err and "invalid_json_line (line 2)" in err
        code, out, err = llmcli(capsys, "batch", "fetch", batch_id, "-o", "-", *conn(provider))
        assert code == 8 and out == ""  # nothing to fetch, said so by the exit code
    finally:
        srv.stop()


def test_cancel_then_wait_ends_cancelled(tmp_path, capsys):
    srv = LocalServer().start()
    try:
        provider = FakeBatchProvider(srv, plan=("validating", "in_progress"))
        batch_id, _ = submit(provider, tmp_path, capsys, ["one", "two", "three"])
        code, out, _ = llmcli(capsys, "batch", "cancel", batch_id, *conn(provider), "--json")
        assert code == 0 and json.loads(out)["status"] == "cancelling"
        assert provider.server.requests[-1].path == f"/v1/batches/{batch_id}/cancel"
        assert provider.server.requests[-1].method == "POST"
        code, out, err = llmcli(capsys, "batch", "wait", batch_id, *conn(provider), "--poll-interval", "0.01")
        assert code == 8 and "ended cancelled" in err
        code, out, _ = llmcli(capsys, "batch", "fetch", batch_id, "-o", "-", *conn(provider))
        assert code == 8 and len(out.splitlines()) == 3  # the one that ran, and two error records
    finally:
        srv.stop()


def test_wait_timeout_is_exit_6_and_the_batch_goes_on(tmp_path, capsys):
    srv = LocalServer().start()
    try:
        provider = FakeBatchProvider(srv, plan=("validating", "in_progress"))
        batch_id, _ = submit(provider, tmp_path, capsys, ["one"])
        code, _, err = llmcli(capsys, "batch", "wait", batch_id, *conn(provider), "--poll-interval", "0.05",
                              "--timeout", "0.3")
        assert code == 6
        assert "still in_progress after 0.3 s" in err
        code, _, err = llmcli(capsys, "batch", "fetch", batch_id, "-o", "-", *conn(provider))
        assert code == 1 and "no results yet" in err
    finally:
        srv.stop()


def test_429_on_a_poll_is_retried(provider, tmp_path, capsys):
    batch_id, _ = submit(provider, tmp_path, capsys, ["one"])
    provider.fail_next_get = 2
    code, out, err = llmcli(capsys, "batch", "status", batch_id, *conn(provider))
    assert code == 0, err
    assert "in_progress" in out
    provider.fail_next_get = 1
    code, _, err = llmcli(capsys, "batch", "status", batch_id, *conn(provider)[:-2], "--retries", "0")
    assert code == 4 and "HTTP 429" in err and "Rate limit reached" in err


def test_errors_are_one_line_with_their_exit_codes(provider, tmp_path, capsys):
    inp = tmp_path / "in.txt"
    inp.write_text("hello\n")
    code, _, err = llmcli(capsys, "batch", inp, "--remote", "-j", "8", "-m", "m", *conn(provider))
    assert code == 2 and "--jobs: not with --remote" in err
    code, _, err = llmcli(capsys, "batch", inp, "--remote", *conn(provider))  # no model for a plain prompt
    assert code == 3 and "no model" in err
    code, _, err = llmcli(capsys, "batch", inp, "--base-url", provider.server.base_url)  # the local form needs -o
    assert code == 2 and "Missing option '-o'" in err
    code, _, err = llmcli(capsys, "batch", "status", "../files", *conn(provider))
    assert code == 2 and "not a batch id" in err
    code, _, err = llmcli(capsys, "batch", "status", "batch_nope", *conn(provider))
    assert code == 4 and "HTTP 404" in err
    code, _, err = llmcli(capsys, "batch", "wait", *conn(provider))
    assert code == 2 and "Missing argument 'ID'" in err
    assert len(err.strip().splitlines()) == 1


def spawn_wait(provider, batch_id, *args):
    import os
    import sys

    import pexpect

    argv = ["-m", "llmcli", "batch", "wait", batch_id, *conn(provider), *args]
    env = dict(os.environ, TERM="xterm", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    child = pexpect.spawn(sys.executable, argv, env=env, dimensions=(40, 160), encoding="utf-8", timeout=15)
    child.delayafterclose = 0.02
    return child


def test_wait_shows_progress_on_a_terminal_and_ctrl_c_leaves_the_batch_running(tmp_path, capsys):
    import pexpect

    srv = LocalServer().start()
    try:
        provider = FakeBatchProvider(srv, plan=("validating", "in_progress"))
        batch_id, _ = submit(provider, tmp_path, capsys, ["one", "two"])
        child = spawn_wait(provider, batch_id, "--poll-interval", "0.1")
        try:
            child.expect(r"\r" + batch_id + r" in_progress: 1/2 completed, 0 failed, \d+ s\x1b\[K")
            n = len(provider.served)
            child.expect(r"\x1b\[K")  # it keeps polling, redrawing the same line
            assert len(provider.served) > n
            child.sendintr()
            child.expect(f"llmcli: interrupted; batch {batch_id} goes on at the provider")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        assert child.exitstatus == 130
        assert provider.batches[batch_id]["status"] == "in_progress"  # Ctrl-C did not cancel it
    finally:
        srv.stop()


def test_a_given_id_twice_is_an_input_error_and_nothing_is_uploaded(provider, tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    code, _, err = llmcli(capsys, "batch", inp, "--remote", "-m", "m", *conn(provider))
    assert code == 3 and "id 'a' is used twice" in err
    assert provider.server.requests == []
    # identical plain prompts hash alike: they get distinct ids
    batch_id, _ = submit(provider, tmp_path, capsys, ["same", "same"])
    data = parse_multipart(provider.server.requests[0])["file"][1]
    ids = [json.loads(x)["custom_id"] for x in data.decode().splitlines()]
    assert len(set(ids)) == 2 and ids[1] == ids[0] + "#1"


def test_a_failed_download_leaves_an_earlier_output_as_it_was(provider, tmp_path, capsys):
    batch_id, _ = submit(provider, tmp_path, capsys, ["one"])
    code, _, _ = llmcli(capsys, "batch", "wait", batch_id, *conn(provider), "--poll-interval", "0.01")
    assert code == 0
    out_path = tmp_path / "answers.jsonl"
    out_path.write_text("earlier\n")
    out_id = provider.batches[batch_id]["output_file_id"]
    provider.server.route(f"/v1/files/{out_id}/content",
                          Reply(status=500, pieces=[b'{"error":{"message":"storage down"}}'],
                                content_type="application/json", chunked=False), method="GET")
    code, _, err = llmcli(capsys, "batch", "fetch", batch_id, "-o", out_path, *conn(provider))
    assert code == 4 and "storage down" in err
    assert out_path.read_text() == "earlier\n" and not (tmp_path / "answers.jsonl.part").exists()


def test_a_server_without_a_batch_api_is_named_as_such(server, tmp_path, capsys):
    # vLLM's own server has /v1/chat/completions but no /v1/files: the fleet form is the one for it.
    inp = tmp_path / "in.txt"
    inp.write_text("hello\n")
    code, _, err = llmcli(capsys, "batch", inp, "--remote", "-m", "m", "--base-url", server.base_url, "--api-key", KEY)
    assert code == 4
    assert "HTTP 404" in err and "does this server have a batch API?" in err
    assert [r.path for r in server.requests] == ["/v1/files"]  # a 404 is not retried
