"""Debug records: the request body and the raw response bytes of a failed run, saved for `llmcli replay`.

Secrets never reach a record: request headers are redacted before they get here (config/secrets.py
says which are secret), the body of a chat request holds no key, and a key echoed back by the server
is scrubbed from the response bytes kept.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import List, Optional


class Recorder:
    secrets: tuple = ()  # set by the transport: the key and secret header values, scrubbed from bytes kept

    def __init__(self):
        self.url: Optional[str] = None
        self.request_headers: dict = {}
        self.request_body: Optional[dict] = None
        self.status: Optional[int] = None
        self.response_headers: dict = {}
        self.chunks: List[bytes] = []
        self.exchanges: List[dict] = []
        self.stream_stats: dict = {}

    def request(self, url, headers, body, payload_bytes: Optional[int] = None):
        self._flush()
        self.url, self.request_headers, self.request_body = url, headers, body
        self.payload_bytes = payload_bytes
        self.headers_ms: Optional[int] = None

    def response_head(self, status, headers, headers_ms: Optional[int] = None):
        # A retried attempt replaces the previous head; the body bytes belong to the last attempt.
        self.status, self.response_headers, self.chunks = status, dict(headers), []
        self.stream_stats = {}
        self.headers_ms = headers_ms  # time from sending the request to the response headers

    def stream_done(self, **stats):
        """Counters from the parser (SSE events, comments, chunks, a discarded partial event)."""
        self.stream_stats = stats

    def summary_lines(self) -> List[str]:
        """--debug diagnostics: one line per request (and its response headers, minus secrets)."""
        lines = []
        for ex in self.exchanges + ([self._exchange()] if self.url is not None else []):
            size = sum(ex["response_chunk_sizes"])
            stats = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (ex.get("stream_stats") or {}).items())
            sent = f" ({ex['request_bytes']} bytes sent)" if ex.get("request_bytes") is not None else ""
            head = f" headers after {ex['headers_ms']} ms;" if ex.get("headers_ms") is not None else ""
            lines.append(f"POST {ex['url']}{sent} → HTTP {ex['status']};{head} {size} bytes in "
                         f"{len(ex['response_chunk_sizes'])} reads" + (f"; {stats}" if stats else ""))
            lines.append("request headers: " + json.dumps(ex["request_headers"]))
            if ex["response_headers"]:
                lines.append("response headers: " + json.dumps(ex["response_headers"]))
        return lines

    def response_bytes(self, data: bytes):
        self.chunks.append(data)

    def _flush(self):
        if self.url is not None:
            self.exchanges.append(self._exchange())
        self.url, self.chunks = None, []

    def _exchange(self):
        from ..config.secrets import scrub_bytes

        body = scrub_bytes(b"".join(self.chunks), self.secrets)  # a key the server echoed stays out
        return {
            "url": self.url,
            "request_headers": self.request_headers,
            "request_body": self.request_body,
            "status": self.status,
            "response_headers": self.response_headers,
            "response_body_b64": base64.b64encode(body).decode("ascii"),
            "response_chunk_sizes": [len(c) for c in self.chunks],
            "stream_stats": self.stream_stats,
            "request_bytes": getattr(self, "payload_bytes", None),
            "headers_ms": getattr(self, "headers_ms", None),
        }

    def save(self, home: str, error: Optional[str]) -> str:
        self._flush()
        directory = os.path.join(home, "debug")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, time.strftime("failure-%Y%m%d-%H%M%S") + f"-{os.getpid()}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"llmcli_debug_record": 1, "error": error, "exchanges": self.exchanges}, fh, indent=2)
        os.chmod(path, 0o600)
        return path


def load_record(path: str):
    """(request_body, response bytes, response headers) of the last exchange in a record, or of a raw
    SSE capture file (anything that is not a debug record is replayed as raw response bytes)."""
    from ..errors import InputError
    from ..prompt.history import read_file_bytes

    raw = read_file_bytes(path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and data.get("llmcli_debug_record"):
        exchanges = data.get("exchanges") or []
        if not exchanges:
            raise InputError(f"{path}: the debug record holds no exchange")
        last = exchanges[-1]
        return last.get("request_body"), base64.b64decode(last.get("response_body_b64") or ""), \
            last.get("response_headers") or {}
    return None, raw, {}


class _ReplayRaw:
    """Plays recorded bytes back in their original chunk sizes, like a socket would."""

    def __init__(self, chunks):
        self._chunks = list(chunks)

    def read1(self, amt=None, decode_content=True):
        return self._chunks.pop(0) if self._chunks else b""


class ReplayResponse:
    def __init__(self, body: bytes, headers: dict, chunk_sizes=None):
        chunks, pos = [], 0
        for size in chunk_sizes or [len(body)]:
            chunks.append(body[pos:pos + size])
            pos += size
        if pos < len(body):
            chunks.append(body[pos:])
        self.raw = _ReplayRaw([c for c in chunks if c])
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.status_code = 200

    def close(self):
        pass


class ReplayTransport:
    """A transport that answers from a saved record, through the same Exchange and parser as live runs."""

    def __init__(self, settings, body: bytes, headers: dict):
        self.settings = settings
        self.body = body
        self.headers = headers or {"content-type": "text/event-stream"}

    def open(self, request_body):
        import time

        from .client import Exchange

        yield Exchange(ReplayResponse(self.body, self.headers), self.settings, time.monotonic(), None)
