"""HTTP transport: one chat-completions request, with retries, timeouts and a debug record.

`HTTPTransport.open(body)` is a generator: it yields a `Retrying` notice before each back-off sleep (so
the caller can say so *before* waiting) and finally one `Exchange`, whose `events()` drive the SSE
framing and the stream decoder. Retries happen only before any body was consumed (PROTOCOL.md §4):
once an `Exchange` has been handed out, nothing is ever retried.

Timeouts: requests' read timeout bounds the gap between received bytes; keep-alive comments reset
it, so a separate watchdog thread enforces the idle timeout (time since the last *data* event) and
`--max-time` (the whole run) by shutting the socket down, which unblocks the read at once.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from typing import Iterator, Optional

from ..config.secrets import redact_headers, redact_url, scrub, secret_values
from ..config.settings import Settings
from ..errors import HTTPError, LLMCliError, NetworkError, StreamError, TimeoutExpired
from .sse import EventTooLarge, SSEDecoder
from .stream import StreamDecoder, TextBuffer, decode_non_streamed, tool_names_of

RETRYABLE_STATUS = {408, 409, 429}
READ_SIZE = 65536
ERROR_BODY_LIMIT = 64 * 1024
ERROR_TEXT_LIMIT = 1000  # characters of a plain-text error body quoted in the message
TAIL_BYTES = 64  # the last bytes of a stream quoted when it fails


from ..events import Retrying  # noqa: E402,F401 (re-exported)




def parse_retry_after(headers, now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from retry-after-ms, then retry-after (seconds or an HTTP date)."""
    import math

    def usable(seconds):  # negative, NaN, infinite or already past: the normal back-off applies
        return seconds if math.isfinite(seconds) and seconds >= 0 else None

    value = headers.get("retry-after-ms")
    if value:
        try:
            return usable(float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return usable(float(value))
        except ValueError:
            import email.utils  # only for an HTTP-date retry-after; keeps start-up lean

            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when is None:
                return None
            return usable(when.timestamp() - (now if now is not None else time.time()))
    return None


def host_of(url: str) -> str:
    """host[:port] of a URL, never its user:password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or redact_url(url)


def scrub_error(exc: "LLMCliError", secrets) -> "LLMCliError":
    """The same error with any secret removed from its message (and from an HTTP error's body)."""
    if exc.args and isinstance(exc.args[0], str):
        cleaned = scrub(exc.args[0], secrets or ())
        if cleaned != exc.args[0]:
            exc.args = (cleaned,) + tuple(exc.args[1:])
    if secrets and isinstance(getattr(exc, "body", None), bytes):
        from ..config.secrets import scrub_bytes

        exc.body = scrub_bytes(exc.body, secrets)
    return exc


def error_message_from_body(body: bytes, content_type: str = "") -> tuple:
    """(message, code) from an error body: OpenAI-style {"error": {...}}, {"error": "..."}, {"message"}, or text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Gemini wraps errors in a list
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("msg") or err.get("detail") or data.get("message")
            code = err.get("code") or err.get("type")
            if msg:
                return str(msg), (str(code) if code is not None else None)
        elif isinstance(err, str):
            return err, None
        if data.get("detail"):
            return str(data["detail"]), None
    if "html" in content_type.lower() or text.lstrip().lower().startswith(("<!doctype", "<html")):
        return "the server answered with an HTML page: " + snippet(text), None
    # A plain-text body is often the whole explanation (a proxy's, a framework's traceback line): quote
    # enough of it for a bug report, on one line.
    return snippet(text, ERROR_TEXT_LIMIT) or "(empty body)", None


def snippet(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_LEADING_NOISE = b"\xef\xbb\xbf \t\r\n"
_SSE_STARTS = (b"data", b"event", b"id", b"retry", b":")


def body_kind(first_bytes: bytes, declared_sse: bool) -> Optional[str]:
    """"sse" or "other" (a JSON answer, or an error page to quote) from how a 200 body starts;
    None while the bytes so far could still go either way (a lone "d" may become "data:")."""
    head = first_bytes.lstrip(_LEADING_NOISE)
    if head[:1] in (b"{", b"[", b"<"):
        return "other"
    if head.startswith(_SSE_STARTS):
        return "sse"
    if not head or any(start.startswith(head) for start in _SSE_STARTS):
        return None
    return "sse" if declared_sse else "other"


class Watchdog:
    """Shuts a socket down when the idle timeout or the whole-run deadline passes.

    requests' read timeout cannot see either: keep-alive comments keep resetting it (PROTOCOL.md §4).
    """

    def __init__(self, idle: Optional[float], deadline: Optional[float]):
        self.idle = idle
        self.deadline = deadline
        self.last_data = time.monotonic()
        self.expired: Optional[str] = None
        self._sock = None
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = None

    def start(self, sock):
        self._sock = sock
        if sock is None or (self.idle is None and self.deadline is None):
            return
        self._thread = threading.Thread(target=self._run, name="llmcli-watchdog", daemon=True)
        self._thread.start()

    def data_seen(self):
        self.last_data = time.monotonic()

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _next_deadline(self):
        candidates = []
        if self.idle is not None:
            candidates.append((self.last_data + self.idle, "idle"))
        if self.deadline is not None:
            candidates.append((self.deadline, "max_time"))
        return min(candidates)

    def _run(self):
        with self._cond:
            while not self._stopped:
                when, kind = self._next_deadline()
                left = when - time.monotonic()
                if left <= 0:
                    self.expired = kind
                    try:
                        self._sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                self._cond.wait(min(left, 0.25))


def _socket_of(raw):
    """The socket under a urllib3 response (so the watchdog can shut it down)."""
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        return sock
    fp = getattr(raw, "_fp", None)
    try:
        return fp.fp.raw._sock
    except AttributeError:
        return None


class Exchange:
    """One successful (2xx) response being read: yields stream events, never retried."""

    def __init__(self, response, settings: Settings, started: float, deadline: Optional[float], recorder=None,
                 tool_names=(), decoder=None):
        self.response = response
        self.settings = settings
        self.started = started
        self.deadline = deadline
        # A chat StreamDecoder, or another decoder with the same interface (wire/completions.py).
        self.decoder = decoder if decoder is not None else StreamDecoder(tool_names)
        self.sse = SSEDecoder(settings.max_event_bytes)
        self.recorder = recorder
        self.bytes_read = 0
        self.tail = b""  # the last bytes received (quoted when the stream fails)
        ctype = response.headers.get("content-type", "")
        self.declared_sse = "text/event-stream" in ctype.lower() or not ctype
        self.watchdog = Watchdog(settings.idle_timeout, deadline)

    secrets: tuple = ()

    def events(self) -> Iterator:
        try:
            yield from self._events()
        except (StreamError, TimeoutExpired, NetworkError) as exc:
            _add_context(exc, self.context())
            raise scrub_error(exc, self.secrets)
        except LLMCliError as exc:
            raise scrub_error(exc, self.secrets)

    def context(self) -> str:
        """What a bug report needs from a failed stream: how much arrived, and how it ended."""
        chunks = getattr(self.decoder, "chunks_seen", 0)
        events = self.sse.events_seen
        text = (f"{chunks} chunk{'s' if chunks != 1 else ''} in {events} SSE event{'s' if events != 1 else ''}"
                " received")
        if self.tail:
            text += "; the last bytes were " + escape_bytes(self.tail)
        return text

    def _events(self) -> Iterator:
        raw = self.response.raw
        self.watchdog.start(_socket_of(raw))
        try:
            data = self._read(raw)
            while data and body_kind(data, self.declared_sse) is None:  # read until the start is decisive
                more = self._read(raw)
                if not more:
                    break
                data += more
            # Servers mislabel both ways (SSE sent as application/json or text/plain; a JSON error or an
            # HTML page sent as text/event-stream), so the first bytes decide; the header breaks ties.
            if (body_kind(data, self.declared_sse) or ("sse" if self.declared_sse else "other")) != "sse":
                self.watchdog.idle = None  # a whole JSON body has no data events to be idle between
                yield from self._plain_json(raw, data)
                return
            while data:
                try:
                    sse_events = self.sse.feed(data)
                except EventTooLarge as exc:
                    raise StreamError(self._elapsed_msg(
                        f"the server sent an event larger than {exc.limit:,} bytes (max_event_bytes) "
                        "without ending it"))
                for sse_event in sse_events:
                    self.watchdog.data_seen()
                    yield from self.decoder.feed_event(sse_event)
                    if self.decoder.done:
                        return
                data = self._read(raw)
            self.sse.close()
            self._check_watchdog()
        finally:
            self.watchdog.stop()
            if self.recorder is not None:
                self.recorder.stream_done(sse_events=self.sse.events_seen, comments=self.sse.comments_seen,
                                          chunks=getattr(self.decoder, "chunks_seen", 0),
                                          discarded_partial_event=self.sse.discarded_partial)

    def _plain_json(self, raw, first: bytes):
        """A 200 that is plain JSON instead of SSE is a valid non-streamed answer (PROTOCOL.md §2)."""
        pieces, size = [first], len(first)
        while first:
            data = self._read(raw)
            if not data:
                break
            pieces.append(data)
            size += len(data)
            if size > self.settings.max_event_bytes:
                raise StreamError(self._elapsed_msg(
                    f"the server's answer is larger than {self.settings.max_event_bytes:,} bytes (max_event_bytes)"))
        self._check_watchdog()
        body = b"".join(pieces)
        try:
            parsed = json.loads(body.decode("utf-8", errors="replace"))
        except ValueError:
            raise StreamError("the server sent a response that is neither SSE nor JSON: "
                              + snippet(body.decode("utf-8", errors="replace")))
        if not isinstance(parsed, dict):
            raise StreamError("the server sent unexpected JSON: " + snippet(json.dumps(parsed)))
        if not isinstance(self.decoder, StreamDecoder):
            yield from self.decoder.feed_whole(parsed)
            return
        result = decode_non_streamed(parsed)
        self.decoder = _ReplayedDecoder(result)
        yield from self.decoder.replay_events()

    def _read(self, raw) -> bytes:
        import urllib3.exceptions as ue

        try:
            # requests opens the response with decode_content=False; a gzip-compressed stream (proxies do
            # that) must be inflated incrementally here, or the parser sees compressed bytes.
            data = raw.read1(READ_SIZE, decode_content=True)
        except ue.ReadTimeoutError:
            raise TimeoutExpired(self._elapsed_msg(
                f"no data from the server for {self.settings.read_timeout:g} s (read timeout)"))
        except ue.ProtocolError as exc:
            self._check_watchdog()
            inner = exc.args[1] if len(exc.args) > 1 else exc
            if isinstance(inner, (ConnectionResetError, BrokenPipeError)):
                raise NetworkError(self._elapsed_msg("the connection was reset by the server"))
            raise StreamError(self._elapsed_msg("the response was cut off before it ended"))
        except ue.DecodeError:
            encoding = self.response.headers.get("content-encoding", "?")
            raise StreamError(self._elapsed_msg(
                f"the server labelled the body with Content-Encoding: {encoding}, but it is not {encoding} data"))
        except (OSError, ue.HTTPError) as exc:
            self._check_watchdog()
            raise NetworkError(self._elapsed_msg(f"reading the response failed: {exc}"))
        if data:
            self.bytes_read += len(data)
            self.tail = (self.tail + data)[-TAIL_BYTES:] if len(data) < TAIL_BYTES else data[-TAIL_BYTES:]
            if self.recorder is not None:
                self.recorder.response_bytes(data)
        else:
            self._check_watchdog()
        return data

    def _check_watchdog(self):
        if self.watchdog.expired == "idle":
            raise TimeoutExpired(self._elapsed_msg(
                f"no data event for {self.settings.idle_timeout:g} s (idle timeout)"))
        if self.watchdog.expired == "max_time":
            raise TimeoutExpired(self._elapsed_msg(f"the run took longer than --max-time {self.settings.max_time:g} s"))

    def _elapsed_msg(self, msg):
        secs = time.monotonic() - self.started
        return f"{msg}; after {secs:.1f} s and {self.bytes_read} bytes"

    def close(self):
        self.watchdog.stop()
        try:
            self.response.close()
        except Exception:  # closing must never mask the real error
            pass


class _ReplayedDecoder:
    """Stands in for StreamDecoder when the answer came whole (non-streamed)."""

    def __init__(self, result):
        self.result = result
        self.done = True
        self.content_buffer = TextBuffer()  # the text the replay hands out, as StreamDecoder's
        if result.content:
            self.content_buffer.append(result.content)

    def replay_events(self):
        from .stream import FinishReason, ReasoningDelta, TextDelta, UsageUpdate

        if self.result.reasoning:
            yield ReasoningDelta(self.result.reasoning)
        if self.result.logprobs:
            from .stream import TokenLogprobs

            yield TokenLogprobs(self.result.logprobs)
        if self.result.content:
            yield TextDelta(self.result.content)
        if self.result.usage:
            yield UsageUpdate(self.result.usage)
        if self.result.finish_reason:
            yield FinishReason(self.result.finish_reason)

    def finish(self):
        return self.result

    def partial_result(self):
        return self.result


_interim_skipped = False


def skip_interim_responses() -> None:
    """Make every HTTP connection of this process skip 1xx interim responses (103 Early Hints, 102).

    http.client skips only 100 Continue; a 103 before the real answer would be taken as the answer
    (with an empty body) and the real one left unread. Set once, on urllib3's connection classes."""
    global _interim_skipped
    if _interim_skipped:
        return
    import http.client

    import urllib3.connection

    class InterimSkippingResponse(http.client.HTTPResponse):
        def _read_status(self):
            while True:
                version, status, reason = super()._read_status()
                if not (100 < status < 200) or status == 101:  # 100 is begin()'s; 101 switches protocols
                    return version, status, reason
                http.client._read_headers(self.fp)  # an interim response has headers and no body

    for cls in (urllib3.connection.HTTPConnection, urllib3.connection.HTTPSConnection):
        cls.response_class = InterimSkippingResponse
    _interim_skipped = True


class HTTPTransport:
    """`path` and `make_decoder` serve another endpoint with the same retries and timeouts: the legacy
    /completions (wire/completions.py) is this transport with a CompletionDecoder."""

    def __init__(self, settings: Settings, recorder=None, run_deadline: Optional[float] = None,
                 path: str = "/chat/completions", make_decoder=None):
        import requests

        skip_interim_responses()
        self.settings = settings
        self.recorder = recorder
        self.run_deadline = run_deadline
        self.session = requests.Session()
        self.path = path
        self.make_decoder = make_decoder
        self.url = settings.base_url.rstrip("/") + path
        self.secrets = secret_values(settings.api_key, self.headers())
        if recorder is not None:
            recorder.secrets = self.secrets

    def headers(self) -> dict:
        h = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json",
             "User-Agent": "llmcli/0.1"}
        h.update(dict(self.settings.headers))
        if self.settings.api_key:
            h["Authorization"] = f"Bearer {self.settings.api_key}"
        return h

    def open(self, body: dict) -> Iterator:
        """Yield Retrying notices, then exactly one Exchange (or raise). A key the server echoes back
        in an error message is scrubbed from it (the message is shown, recorded and put in --json)."""
        try:
            for item in self._open(body):
                if isinstance(item, Exchange):
                    item.secrets = self.secrets
                yield item
        except LLMCliError as exc:
            raise scrub_error(exc, self.secrets)

    def _open(self, body: dict) -> Iterator:
        import requests

        s = self.settings
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = self.headers()
        if self.recorder is not None:
            self.recorder.request(redact_url(self.url), redact_headers(headers), body, len(payload))
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            read_timeout = s.read_timeout
            if self.run_deadline is not None:
                left = self.run_deadline - started
                if left <= 0:
                    raise TimeoutExpired(f"the run took longer than --max-time {s.max_time:g} s")
                read_timeout = min(read_timeout, left)
            retry_reason, retry_after, final_error = None, None, None
            try:
                resp = self.session.post(
                    self.url, data=payload, headers=headers, stream=True,
                    timeout=(s.connect_timeout, read_timeout),
                    allow_redirects=False,  # a redirected POST silently becomes a GET; say where instead
                    verify=s.ca_bundle if s.ca_bundle else True,
                )
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                final_error, retry_reason = request_failure(exc, self._host(), s.connect_timeout, read_timeout)
                if retry_reason is None:
                    raise final_error
            else:
                if self.recorder is not None:
                    self.recorder.response_head(resp.status_code, redact_headers(resp.headers),
                                                round((time.monotonic() - started) * 1000))
                if 200 <= resp.status_code < 300:
                    yield Exchange(resp, s, started, self.run_deadline, self.recorder, tool_names_of(body),
                                   decoder=self.make_decoder() if self.make_decoder is not None else None)
                    return
                final_error = self._http_error(resp)
                if (self.stream_options_rejected(final_error) and "stream_options" in body
                        and "stream_options" not in dict(s.options)):
                    # Strict servers refuse the usage request added to every streamed call; resend once
                    # without it (it is llmcli's addition, not the user's) before anything was printed.
                    body = {k: v for k, v in body.items() if k != "stream_options"}
                    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
                    if self.recorder is not None:
                        self.recorder.request(redact_url(self.url), redact_headers(headers), body, len(payload))
                    attempt -= 1
                    continue
                retry_reason, retry_after = self._should_retry(resp, final_error)
            if retry_reason is None or attempt > s.retries:
                raise final_error
            if retry_after is not None and retry_after > s.retry_max_delay:
                # Waiting out an hour-long retry-after is not a retry; say what the server asked for.
                raise HTTPError(f"{final_error} (the server asks to retry after {retry_after:.0f} s, longer "
                                f"than the {s.retry_max_delay:.0f} s llmcli waits)",
                                status=final_error.status, body=final_error.body, code=final_error.code)
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if self.run_deadline is not None and time.monotonic() + delay >= self.run_deadline:
                raise final_error
            yield Retrying(attempt, delay, retry_reason)
            time.sleep(delay)

    def _host(self):
        return host_of(self.url)

    def _backoff(self, attempt):
        base = self.settings.retry_base_delay * (2 ** (attempt - 1))
        return base * random.uniform(0.8, 1.2)  # jitter, so many clients do not retry in lockstep

    def _http_error(self, resp) -> HTTPError:
        try:
            body = resp.raw.read(ERROR_BODY_LIMIT, decode_content=True) or b""
        except Exception:
            body = b""
        finally:
            resp.close()
        if self.recorder is not None:
            self.recorder.response_bytes(body)
        message, code = error_message_from_body(body, resp.headers.get("content-type", ""))
        message = snippet(message, ERROR_TEXT_LIMIT)  # one line, whatever the server put in it
        reason = resp.reason or ""
        text = f"HTTP {resp.status_code}{' ' + reason if reason else ''} from {self._host()}: {message}"
        if resp.status_code == 401:
            text += " (check the API key: --api-key, LLMCLI_API_KEY or the provider's key variable)"
        elif 300 <= resp.status_code < 400 and resp.headers.get("location"):
            text = (f"HTTP {resp.status_code} from {self._host()}: the server redirects to "
                    f"{resp.headers['location']}; use that as the base URL (without {self.path})")
        elif resp.status_code == 404:
            text += f" (is the base URL right? requests go to {redact_url(self.url)})"
        return HTTPError(text, status=resp.status_code, body=body, code=code)

    @staticmethod
    def stream_options_rejected(error: HTTPError) -> bool:
        return error.status in (400, 422) and b"stream_options" in (error.body or b"")

    def _should_retry(self, resp, error: HTTPError):
        override = (resp.headers.get("x-should-retry") or "").strip().lower()
        if override == "false":
            return None, None
        if error.code == "insufficient_quota" or "insufficient_quota" in (error.body or b"").decode("utf-8", "replace"):
            return None, None  # a 429 for an empty balance does not get better by waiting
        from .probe import names_response_format

        if override != "true" and names_response_format(resp.status_code, (error.body or b"").decode("utf-8", "replace")):
            return None, None  # a request validation error (llama-cpp-python sends it as 500) is final
        if override == "true" or resp.status_code in RETRYABLE_STATUS or resp.status_code >= 500:
            return f"HTTP {resp.status_code} {snippet(str(error.args[0]).split(': ', 1)[-1], 60)}", parse_retry_after(resp.headers)
        return None, None


def escape_bytes(data: bytes, limit: int = TAIL_BYTES) -> str:
    """Bytes for an error message: quoted, control characters and invalid UTF-8 escaped, capped."""
    text = data[-limit:].decode("utf-8", errors="backslashreplace")
    shown = json.dumps(text, ensure_ascii=True)
    return ("…" if len(data) > limit else "") + shown


def _add_context(exc, context: str) -> None:
    """Append the stream's context to an error's message (once; the object, and `.partial`, stay)."""
    if not exc.args or not isinstance(exc.args[0], str) or getattr(exc, "_context_added", False):
        return
    exc.args = (f"{exc.args[0]} ({context})",) + exc.args[1:]
    exc._context_added = True


def request_failure(exc, host: str, connect_timeout: float, read_timeout: float):
    """(the error, the retry reason or None) for a request that got no response at all.

    requests' exception classes overlap (SSLError, ProxyError and ConnectTimeout are ConnectionErrors),
    so the order of the checks matters.
    """
    import requests.exceptions as rex

    if isinstance(exc, rex.SSLError):
        return NetworkError(f"TLS error talking to {host}: {_reason(exc)} "
                            "(use --ca-bundle FILE or REQUESTS_CA_BUNDLE for a private CA)"), None
    if isinstance(exc, rex.ProxyError):
        return NetworkError(f"proxy error: {_reason(exc)}"), None
    if isinstance(exc, rex.ConnectTimeout):
        return TimeoutExpired(f"connecting to {host} timed out after {connect_timeout:g} s"), "connect timeout"
    if isinstance(exc, rex.Timeout):
        return (TimeoutExpired(f"{host} accepted the connection but sent no response within {read_timeout:g} s"),
                "no response (read timeout)")
    error = NetworkError(_connection_message(exc, host))
    if _refused(exc) and _is_loopback(host):
        # Nothing listens on that port of this machine: waiting and trying again only delays the answer.
        return error, None
    return error, str(error)


def _refused(exc) -> bool:
    seen, cur = set(), exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError) or "Connection refused" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__ or (cur.args[0] if cur.args and isinstance(cur.args[0], BaseException)
                                                   else getattr(cur, "reason", None))
    return False


def _is_loopback(host: str) -> bool:
    import ipaddress

    name = host.rsplit("@", 1)[-1]
    name = name[1:].split("]", 1)[0] if name.startswith("[") else name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _reason(exc) -> str:
    text = str(exc)
    for marker in ("certificate verify failed", "wrong version number", "handshake failure"):
        if marker in text.lower():
            return marker
    return snippet(text, 160)


def _connection_message(exc, host) -> str:
    text = str(exc)
    low = text.lower()
    if "name or service not known" in low or "nodename nor servname" in low or "failed to resolve" in low \
            or "temporary failure in name resolution" in low or "no address associated" in low:
        return f"cannot resolve host {host.split(':')[0]!r} (DNS lookup failed)"
    if "connection refused" in low or "errno 111" in low:
        return f"cannot connect to {host}: connection refused (is the server running?)"
    if "reset" in low:
        return f"the connection to {host} was reset"
    if "remotedisconnected" in low or "remote end closed" in low:
        return f"{host} closed the connection without answering"
    return f"cannot connect to {host}: {snippet(text, 160)}"


MAX_REDIRECTS = 5


def get_following_redirects(session, url: str, headers: dict, **kwargs):
    """GET that follows up to MAX_REDIRECTS redirects itself, so that no key-carrying header (by the
    one rule in config/secrets.py, not only Authorization as requests does) reaches another origin."""
    from urllib.parse import urljoin, urlsplit

    from ..config.secrets import is_secret_header

    def origin(u):
        parts = urlsplit(u)
        return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)

    first = origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        resp = session.get(url, headers=headers, allow_redirects=False, **kwargs)
        location = resp.headers.get("location")
        if resp.status_code not in (301, 302, 303, 307, 308) or not location:
            return resp
        resp.close()
        url = urljoin(url, location)
        if origin(url) != first:
            headers = {k: v for k, v in headers.items() if not is_secret_header(k)}
    raise HTTPError(f"more than {MAX_REDIRECTS} redirects from {host_of(url)}", status=resp.status_code)


def list_models(settings: Settings) -> list:
    """GET {base}/models → the server's model entries (dicts with at least "id")."""
    import requests

    transport = HTTPTransport(settings)  # the same headers (auth, preset) and host naming as a chat request
    url = settings.base_url.rstrip("/") + "/models"
    headers = {**transport.headers(), "Accept": "application/json"}
    headers.pop("Content-Type", None)
    host = transport._host()
    try:
        resp = get_following_redirects(transport.session, url, headers,
                                       timeout=(settings.connect_timeout, settings.read_timeout),
                                       verify=settings.ca_bundle if settings.ca_bundle else True)
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise scrub_error(request_failure(exc, host, settings.connect_timeout, settings.read_timeout)[0],
                          transport.secrets)
    if not 200 <= resp.status_code < 300:
        message, code = error_message_from_body(resp.content, resp.headers.get("content-type", ""))
        raise scrub_error(HTTPError(f"HTTP {resp.status_code} from {host_of(resp.url or url)}: {message}",
                                    status=resp.status_code, code=code), transport.secrets)
    try:
        data = resp.json()
    except ValueError:
        raise StreamError(f"{url} did not answer with JSON: " + snippet(resp.text))
    items = data.get("data", data.get("models")) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise StreamError(f"{url} answered with unexpected JSON: " + snippet(json.dumps(data)))
    out = []
    for item in items:
        if isinstance(item, str):
            item = {"id": item}
        if isinstance(item, dict):
            if "id" not in item and "name" in item:
                item = {"id": item["name"], **item}
            out.append(item)
    return out
