"""Provider batch APIs (issue 21): upload a batch file, create the batch, poll it, fetch and convert results.

The wire format is OpenAI's, which Groq, Together, Mistral-compatible gateways and vLLM's `run-batch`
share (the field names below follow openai-python's `types/batch.py`, `types/file_object.py` and
`types/batch_request_counts.py`, and https://platform.openai.com/docs/guides/batch):

  POST {base}/files             multipart/form-data, purpose=batch, file=<JSONL>  → FileObject {"id", ...}
  POST {base}/batches           {"input_file_id", "endpoint", "completion_window": "24h"} → Batch
  GET  {base}/batches/ID        → Batch {"status", "request_counts": {"total", "completed", "failed"},
                                         "output_file_id", "error_file_id", "errors", ...}
  POST {base}/batches/ID/cancel → Batch ("cancelling", later "cancelled")
  GET  {base}/files/ID/content  → the output (or error) JSONL: {"id", "custom_id",
                                  "response": {"status_code", "request_id", "body"} | null, "error"}

Requests use the chat transport's conventions: the same headers and auth (HTTPTransport.headers), the
same timeouts, retries for connect errors, 408/409/429 and 5xx with Retry-After honoured, errors as
HTTPError / NetworkError (exit 4 / 6), and any key the server echoes scrubbed from messages.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from typing import Callable, Iterator, Optional

from ..errors import ConfigError, HTTPError, InputError, LLMCliError, NetworkError, StreamError, UsageError
from ..output.render import error_dict, run_document
from .items import parse_line

CHAT_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
TERMINAL_STATUSES = ("completed", "failed", "expired", "cancelled")
DEFAULT_POLL_INTERVAL = 5.0
MAX_POLL_INTERVAL = 60.0
# Batch and file ids go into URL paths: nothing that could add a path segment or a query.
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


def check_id(value: str, what: str = "batch id") -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value) or value in (".", ".."):
        raise UsageError(f"not a {what}: {value!r}")
    return value


# -- IN → the OpenAI batch file ------------------------------------------------------------------------


def openai_line(item, settings) -> dict:
    """One BatchItem as an OpenAI batch input line for /v1/chat/completions."""
    options = dict(settings.options)
    options.update(item.options)
    body = {"model": item.model or settings.model, "messages": item.messages}
    for key, value in options.items():
        if key in ("stream", "stream_options"):
            continue  # a batch request is never streamed (providers reject stream: true)
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    if not body.get("model"):
        raise ConfigError(f"input line {item.index + 1}: no model (give -m MODEL, or \"model\" on the line)")
    return {"custom_id": item.id, "method": "POST", "url": CHAT_ENDPOINT, "body": body}


def write_batch_file(lines, out, settings) -> int:
    """Convert every input line (plain, llmcli objects, or already OpenAI lines) to OUT; the count.

    custom_id must be unique within a batch (the provider rejects the file otherwise): a given id used
    twice is an error; a hashed one (two identical plain prompts hash alike) gets "#<item index>" appended.
    """
    seen = set()
    count = 0
    index = 0
    for raw in lines:
        item = parse_line(raw, index, settings.system)
        if item is None:
            continue
        index += 1
        if item.id in seen:
            if item.given_id:
                raise InputError(f"input line {index}: id {item.id!r} is used twice (a batch needs unique ids)")
            item.id = f"{item.id}#{item.index}"
        seen.add(item.id)
        out.write(json.dumps(openai_line(item, settings), ensure_ascii=False).encode("utf-8") + b"\n")
        count += 1
    if count == 0:
        raise InputError("the input has no items")
    return count


# -- the HTTP client -----------------------------------------------------------------------------------


class BatchAPI:
    """The /files and /batches endpoints of one provider."""

    def __init__(self, settings, sleep: Callable[[float], None] = time.sleep):
        from ..wire.client import HTTPTransport

        self.settings = settings
        self.base = settings.base_url.rstrip("/")
        self.transport = HTTPTransport(settings)  # headers, auth, secrets and host naming as in a chat request
        self.session = self.transport.session
        self.secrets = self.transport.secrets
        self.sleep = sleep

    def _headers(self, content_type: Optional[str] = "application/json") -> dict:
        headers = {**self.transport.headers(), "Accept": "application/json"}
        headers.pop("Content-Type", None)
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(self, method: str, path: str, *, body=None, content_type="application/json", stream=False,
                rewind=None):
        """One call with the transport's retries; the 2xx response (the caller closes a streamed one)."""
        import requests

        from ..wire.client import (RETRYABLE_STATUS, error_message_from_body, get_following_redirects, host_of,
                                   parse_retry_after, request_failure, scrub_error, snippet)

        s = self.settings
        url = self.base + path
        host = host_of(url)
        timeout = (s.connect_timeout, s.read_timeout)
        verify = s.ca_bundle if s.ca_bundle else True
        attempt = 0
        while True:
            attempt += 1
            if rewind is not None:
                rewind()
            try:
                if method == "GET":
                    resp = get_following_redirects(self.session, url, self._headers(None), stream=stream,
                                                   timeout=timeout, verify=verify)
                else:
                    resp = self.session.request(method, url, data=body, headers=self._headers(content_type),
                                                stream=stream, timeout=timeout, verify=verify,
                                                allow_redirects=False)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                error, reason = request_failure(exc, host, s.connect_timeout, s.read_timeout)
                if reason is None or attempt > s.retries:
                    raise scrub_error(error, self.secrets)
                self.sleep(self._backoff(attempt))
                continue
            if 200 <= resp.status_code < 300:
                return resp
            raw = resp.content[:64 * 1024]
            resp.close()
            message, code = error_message_from_body(raw, resp.headers.get("content-type", ""))
            text = f"HTTP {resp.status_code} from {host}: {snippet(message, 1000)}"
            if resp.status_code == 401:
                text += " (check the API key: --api-key, LLMCLI_API_KEY or the provider's key variable)"
            elif resp.status_code == 404 and path.startswith(("/files", "/batches")) and "/" not in path[1:]:
                from ..config.secrets import redact_url

                text += f" (does this server have a batch API? requests go to {redact_url(url)})"
            error = HTTPError(text, status=resp.status_code, body=raw, code=code)
            retryable = (resp.status_code in RETRYABLE_STATUS or resp.status_code >= 500) and \
                code != "insufficient_quota" and (resp.headers.get("x-should-retry") or "").lower() != "false"
            if not retryable or attempt > s.retries:
                raise scrub_error(error, self.secrets)
            delay = parse_retry_after(resp.headers)
            if delay is not None and delay > s.retry_max_delay:
                raise scrub_error(error, self.secrets)
            self.sleep(delay if delay is not None else self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        import random

        return self.settings.retry_base_delay * (2 ** (attempt - 1)) * random.uniform(0.8, 1.2)

    def _json(self, resp) -> dict:
        try:
            data = resp.json()
        except ValueError:
            from ..wire.client import snippet

            raise StreamError(f"{resp.url} did not answer with JSON: " + snippet(resp.text))
        if not isinstance(data, dict):
            raise StreamError(f"{resp.url} answered with unexpected JSON")
        return data

    # -- the calls ---------------------------------------------------------------------------------
    def upload(self, fileobj, filename: str) -> dict:
        """POST /files (multipart, purpose=batch) from a binary file object; the FileObject.

        The multipart body is written to a temporary file, not built in memory: a batch file may be
        200 MB. Sent with a Content-Length (some servers refuse chunked uploads), rewound on a retry.
        """
        boundary = "llmcli-" + uuid.uuid4().hex
        safe_name = re.sub(r'[^A-Za-z0-9._-]', "_", filename) or "batch.jsonl"
        with tempfile.TemporaryFile() as body:
            body.write((f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
                        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe_name}\"\r\n"
                        "Content-Type: application/jsonl\r\n\r\n").encode("ascii"))
            while True:
                block = fileobj.read(1 << 20)
                if not block:
                    break
                body.write(block)
            body.write(f"\r\n--{boundary}--\r\n".encode("ascii"))
            body.flush()
            resp = self.request("POST", "/files", body=body, content_type=f"multipart/form-data; boundary={boundary}",
                                rewind=lambda: body.seek(0))
            return self._json(resp)

    def create(self, input_file_id: str, metadata: Optional[dict] = None) -> dict:
        payload = {"input_file_id": input_file_id, "endpoint": CHAT_ENDPOINT, "completion_window": COMPLETION_WINDOW}
        if metadata:
            payload["metadata"] = metadata
        return self._json(self.request("POST", "/batches", body=json.dumps(payload).encode("utf-8")))

    def retrieve(self, batch_id: str) -> dict:
        return self._json(self.request("GET", "/batches/" + check_id(batch_id)))

    def cancel(self, batch_id: str) -> dict:
        return self._json(self.request("POST", f"/batches/{check_id(batch_id)}/cancel", body=b""))

    def content_lines(self, file_id: str) -> Iterator[bytes]:
        """GET /files/ID/content, line by line (streamed: an output file can be large)."""
        from ..wire.client import request_failure, host_of

        resp = self.request("GET", f"/files/{check_id(file_id, 'file id')}/content", stream=True)
        try:
            import requests

            try:
                for line in resp.iter_lines():
                    if line.strip():
                        yield line
            except requests.exceptions.RequestException as exc:
                error, _ = request_failure(exc, host_of(self.base), self.settings.connect_timeout,
                                           self.settings.read_timeout)
                raise NetworkError(f"downloading file {file_id} failed: {error}") from None
        finally:
            resp.close()


# -- the batch object ------------------------------------------------------------------------------


def counts_of(batch: dict) -> dict:
    counts = batch.get("request_counts") or {}
    return {k: counts.get(k) if isinstance(counts.get(k), int) else 0 for k in ("total", "completed", "failed")}


def describe(batch: dict) -> str:
    """One line for people: `batch_abc in_progress: 40/100 completed, 2 failed`."""
    c = counts_of(batch)
    text = f"{batch.get('id')} {batch.get('status')}: {c['completed']}/{c['total']} completed, {c['failed']} failed"
    errors = ((batch.get("errors") or {}).get("data") or []) if isinstance(batch.get("errors"), dict) else []
    if errors and isinstance(errors[0], dict):
        first = errors[0]
        where = f" (line {first['line']})" if first.get("line") is not None else ""
        text += f"; {first.get('code') or 'error'}{where}: {first.get('message') or ''}".rstrip()
        if len(errors) > 1:
            text += f" (+{len(errors) - 1} more)"
    return text


def outcome_error(batch: dict) -> Optional[LLMCliError]:
    """None for a batch that completed with every request succeeded; else the error that exits 8."""
    from ..errors import BatchItemsFailed

    status = batch.get("status")
    c = counts_of(batch)
    if status == "completed" and not c["failed"]:
        return None
    if status == "completed":
        return BatchItemsFailed(f"batch {batch.get('id')}: {c['failed']} of {c['total']} requests failed "
                                "(llmcli batch fetch writes their error records)")
    return BatchItemsFailed(f"batch {batch.get('id')} ended {status}: {describe(batch)}")


class WaitTimeout(NetworkError):
    """`batch wait --timeout` passed before the batch ended (it goes on at the provider)."""

    type_name = "timeout"


def wait(api: BatchAPI, batch_id: str, timeout: Optional[float] = None, poll_interval: float = DEFAULT_POLL_INTERVAL,
         progress: Optional[Callable[[dict, float], None]] = None, sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> dict:
    """Poll until the batch is completed, failed, expired or cancelled; the last Batch object.

    The interval starts at `poll_interval` and grows by half each poll in which nothing changed (up to
    MAX_POLL_INTERVAL, never below `poll_interval`); any change in status or counts resets it.
    """
    started = clock()
    interval = poll_interval
    last = None
    while True:
        batch = api.retrieve(batch_id)
        if progress is not None:
            progress(batch, clock() - started)
        if batch.get("status") in TERMINAL_STATUSES:
            return batch
        state = (batch.get("status"), tuple(counts_of(batch).values()))
        interval = poll_interval if state != last else min(max(poll_interval, MAX_POLL_INTERVAL), interval * 1.5)
        last = state
        if timeout is not None:
            left = timeout - (clock() - started)
            if left <= 0:
                raise WaitTimeout(f"batch {batch_id} is still {batch.get('status')} after {timeout:g} s (--timeout); "
                                  "it goes on at the provider: wait again, or fetch later")
            interval = min(interval, left)
        sleep(interval)


# -- output lines → llmcli batch records --------------------------------------------------------------


class _ProviderRun:
    """What run_document reads, filled from one batch output line's chat.completion body."""

    def __init__(self, result, usage):
        self.model = result.model
        self.content = result.content
        self.reasoning = result.reasoning
        self.refusal_parts = [result.refusal] if result.refusal else []
        self.finish_reason = result.finish_reason
        self.usage = usage
        self.cost = None  # batch prices differ from the synchronous ones; no estimate rather than a wrong one
        self.logprobs = result.logprobs
        self._calls = result.tool_calls

    def tool_calls_summary(self):
        return [{"id": c.id, "name": c.name, "arguments": c.shown_arguments, "output": None, "error": "not executed"}
                for c in self._calls]

    def timing(self):
        return {"first_token_ms": None, "total_ms": None}



def _empty_run():
    from ..events import TurnResult

    return _ProviderRun(TurnResult("", "", "", None), None)


def convert_line(line: dict, index: Optional[int]) -> dict:
    """One provider output/error line as the record `llmcli batch` writes (the `ask --json` document with
    "id", "index" and "custom_id")."""
    from ..wire.stream import decode_non_streamed

    custom_id = line.get("custom_id")
    response = line.get("response") if isinstance(line.get("response"), dict) else None
    run, error = None, None
    status = response.get("status_code") if response else None
    body = response.get("body") if response else None
    if line.get("error"):
        err = line["error"]
        message = err.get("message") if isinstance(err, dict) else str(err)
        code = err.get("code") if isinstance(err, dict) else None
        error = HTTPError(f"{code + ': ' if code else ''}{message or 'the request failed'}", status=status, code=code)
        error.type_name = "batch"
    elif status is not None and not 200 <= int(status) < 300:
        from ..wire.stream import provider_error_message

        inner = body.get("error") if isinstance(body, dict) else body
        error = HTTPError(f"HTTP {status}: {provider_error_message(inner) if inner else 'error'}", status=status)
    else:
        try:
            result = decode_non_streamed(body)
            run = _ProviderRun(result, result.usage)
        except LLMCliError as exc:
            error = exc
    rec = {"id": custom_id, "index": index, "custom_id": custom_id}
    rec.update(run_document(run or _empty_run(), error))
    if error is not None and status is not None:
        rec["error"] = dict(error_dict(error), status=status)
    return rec


def input_order(api: BatchAPI, batch: dict) -> dict:
    """custom_id → input index, read from the batch's input file (empty when it cannot be read)."""
    order = {}
    file_id = batch.get("input_file_id")
    if not file_id:
        return order
    try:
        for i, raw in enumerate(api.content_lines(file_id)):
            try:
                cid = json.loads(raw).get("custom_id")
            except (ValueError, AttributeError):
                continue
            if cid is not None:
                order.setdefault(str(cid), i)
    except (HTTPError, UsageError):
        return {}  # the input file was deleted, or the server keeps none: records go without an index
    return order


def fetch(api: BatchAPI, batch: dict, write: Callable[[dict], None], openai_format: bool = False) -> dict:
    """Download the output and error files and write one record per line; counts {"ok", "failed"}."""
    order = {} if openai_format else input_order(api, batch)
    counts = {"ok": 0, "failed": 0}
    for key in ("output_file_id", "error_file_id"):
        file_id = batch.get(key)
        if not file_id:
            continue
        for raw in api.content_lines(file_id):
            try:
                line = json.loads(raw)
            except ValueError:
                raise StreamError(f"file {file_id} has a line that is not JSON") from None
            if not isinstance(line, dict):
                raise StreamError(f"file {file_id} has a line that is not a JSON object")
            if openai_format:
                rec = line
                failed = bool(line.get("error")) or not (200 <= int(((line.get("response") or {}).get("status_code")
                                                                     or 0)) < 300)
            else:
                rec = convert_line(line, order.get(str(line.get("custom_id"))))
                failed = rec.get("error") is not None
            counts["failed" if failed else "ok"] += 1
            write(rec)
    return counts


def upload_name(input_path: str) -> str:
    base = os.path.basename(input_path) if input_path not in ("-", "") else "stdin"
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return (stem or "batch") + ".jsonl"
