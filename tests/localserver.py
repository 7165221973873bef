"""A real threaded HTTP server on 127.0.0.1 that writes scripted bytes in chosen pieces.

Tests register routes; each route answers with a `Reply` (or a queue of them, one per request, for
"429 then 200"), or with a handler function for anything dynamic. A `Reply` can end normally, cut a
chunked body, reset the connection, or stall until the client goes away — the faults that real
providers produce. Every request is recorded (method, path, headers, body) so tests can check what
llmcli sent, and whether the client closed the connection.
"""

import json
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List, Union


@dataclass
class Reply:
    """One scripted HTTP response."""

    status: int = 200
    pieces: List[bytes] = field(default_factory=list)
    headers: dict = field(default_factory=dict)
    content_type: str = "text/event-stream"
    chunked: bool = True  # else Content-Length (or close-delimited when end != "ok")
    delay: float = 0.0  # seconds before each piece
    end: str = "ok"  # ok | cut (stop mid-body, close) | reset (TCP RST) | stall (wait for client)
    headers_delay: float = 0.0  # seconds before the status line (a server that accepts, then waits)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: bytes
    client_closed: bool = False

    @property
    def json(self):
        return json.loads(self.body.decode("utf-8"))


def sse(*payloads, done=True):
    """SSE event bytes for dict/str payloads, each its own event, optionally ending in [DONE]."""
    out = []
    for p in payloads:
        data = p if isinstance(p, str) else json.dumps(p)
        out.append(f"data: {data}\n\n".encode("utf-8"))
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def chunk(content=None, finish=None, **delta_extra):
    """A chat.completion.chunk dict with one choice."""
    delta = {}
    if content is not None:
        delta["content"] = content
    delta.update(delta_extra)
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def text_stream(*texts, finish="stop", usage=None):
    """SSE pieces for a plain streamed answer made of `texts`."""
    chunks = [chunk(role="assistant", content="")] + [chunk(t) for t in texts]
    chunks.append(chunk(finish=finish))
    if usage is not None:
        chunks.append({"id": "chatcmpl-test", "model": "test-model", "choices": [], "usage": usage})
    return sse(*chunks)


def split_three_ways(pieces):
    """The same stream as written, in one write, and one byte per write."""
    whole = b"".join(pieces)
    return {
        "as_written": list(pieces),
        "one_write": [whole],
        "bytewise": [whole[i : i + 1] for i in range(len(whole))],
    }


def rechunk(pieces, way):
    """One of split_three_ways' forms by name (the `way` fixture's parameter)."""
    return split_three_ways(pieces)[way]


Handler = Callable[["_RequestHandler", Recorded], None]


class LocalServer:
    def __init__(self, tls=None):
        """tls: (certfile, keyfile) to serve HTTPS."""
        self.routes = {}
        self.requests: List[Recorded] = []
        self._stop = threading.Event()
        outer = self

        class RequestHandler(_RequestHandler):
            server_ref = outer

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                # A client that goes away mid-request is a scenario under test, not noise for the log.
                import sys

                outer.errors.append(sys.exc_info()[1])

        self.errors: List[BaseException] = []
        self.httpd = Server(("127.0.0.1", 0), RequestHandler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def base_url(self):
        return self.url + "/v1"

    # -- scripting -------------------------------------------------------------------------
    def route(self, path, reply: Union[Reply, List[Reply], Handler], method="POST"):
        """Answer `method path` with a Reply, a list of Replies (one per request; the last repeats),
        or a handler(handler, recorded)."""
        if isinstance(reply, Reply):
            reply = [reply]
        self.routes[(method, path)] = reply

    def chat(self, reply):
        self.route("/v1/chat/completions", reply)

    def wait_for_close(self, timeout=5.0):
        """Wait until the last request's client closed its connection; True if it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.requests and self.requests[-1].client_closed:
                return True
            time.sleep(0.02)
        return False


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_ref: LocalServer

    def log_message(self, *args):  # keep test output clean
        pass

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = Recorded(self.command, self.path, dict(self.headers.items()), body)
        server = self.server_ref
        server.requests.append(rec)
        path = self.path.split("?", 1)[0]
        target = server.routes.get((self.command, path)) or server.routes.get((self.command, self.path))
        if target is None:
            self.play(Reply(status=404, pieces=[b'{"error":{"message":"no such route"}}'],
                            content_type="application/json", chunked=False), rec)
            return
        if callable(target):
            target(self, rec)
            return
        # A queue of replies: pop one per request, keep the last for every later request.
        reply = target.pop(0) if len(target) > 1 else target[0]
        self.play(reply, rec)

    do_GET = do_POST = _handle

    # -- writing ---------------------------------------------------------------------------
    def play(self, reply: Reply, rec: Recorded):
        stop = self.server_ref._stop
        try:
            if reply.headers_delay:
                if self._wait_or_closed(reply.headers_delay, rec):
                    return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            total = sum(len(p) for p in reply.pieces)
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            elif reply.end == "ok":
                self.send_header("Content-Length", str(total))
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            for piece in reply.pieces:
                if reply.delay:
                    if self._wait_or_closed(reply.delay, rec):
                        return
                if reply.chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    self.wfile.write(piece)
                self.wfile.flush()
            if reply.end == "ok":
                if reply.chunked:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
            elif reply.end == "cut":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif reply.end == "reset":
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            elif reply.end == "stall":
                self.close_connection = True
                while not stop.is_set():
                    if self._wait_or_closed(0.5, rec):
                        return
        except (BrokenPipeError, ConnectionResetError, OSError):
            rec.client_closed = True
            self.close_connection = True

    def _wait_or_closed(self, seconds, rec):
        """Sleep up to `seconds`; return True (and record it) if the client closed meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.server_ref._stop.is_set():
                return False
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if readable:
                try:
                    data = self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    rec.client_closed = True
                    self.close_connection = True
                    return True
