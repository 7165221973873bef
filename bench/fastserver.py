"""A fast local OpenAI-compatible server for benchmarks: prebuilt SSE bodies written in large writes.

The scenario is chosen per request by the URL: the base URL is
`http://127.0.0.1:PORT/<scenario>/v1`, with scenario `text-N` (an N-chunk text answer), `tool-B` (a tool
call whose B bytes of arguments arrive one byte per event; the follow-up request, which carries the tool
result, gets a short text answer) or `ttfb` (a 5-chunk answer, written in one piece). Bodies are built once
per scenario and cached, so the server writes hundreds of thousands of chunks per second and the numbers
measure the client, not the server.
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ["Hello", " wörld", ",", " the", " quick", " brown", " fox", " jumps", " over", "\n"]
_CHUNK = ('data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,'
          '"model":"bench-model","system_fingerprint":"fp_0aa8d3e20b","choices":[{"index":0,'
          '"delta":{"content":%s},"logprobs":null,"finish_reason":null}],"usage":null}\n\n')
_END = ('data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,"model":"bench-model",'
        '"choices":[{"index":0,"delta":{},"finish_reason":"%s"}],'
        '"usage":{"prompt_tokens":9,"completion_tokens":%d,"total_tokens":%d}}\n\ndata: [DONE]\n\n')


def text_answer(count):
    """(body bytes, the answer text) for a `count`-chunk answer."""
    events = [(_CHUNK % json.dumps(w, ensure_ascii=False)).encode() for w in WORDS]
    body = b"".join(events[i % len(events)] for i in range(count)) + (_END % ("stop", count, count + 9)).encode()
    text = "".join(WORDS[i % len(WORDS)] for i in range(count))
    return body, text


def tool_call(nbytes, with_index=True):
    """A call of the `sink` tool whose arguments, {"text": "xxx…"} of `nbytes` bytes, come 1 byte per event
    (without `index` in the fragments when `with_index` is false, as some servers send them)."""
    raw = '{"text": "%s"}' % ("x" * max(0, nbytes - 12))
    head = {"id": "c", "object": "chat.completion.chunk", "model": "bench-model", "choices": [{"index": 0, "delta": {
        "role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                             "function": {"name": "sink", "arguments": ""}}]}}]}
    tpl = ('data: {"id":"c","object":"chat.completion.chunk","model":"bench-model","choices":[{"index":0,'
           '"delta":{"tool_calls":[{"index":0,"function":{"arguments":%s}}]}}]}\n\n')
    if not with_index:
        tpl = tpl.replace('"tool_calls":[{"index":0,', '"tool_calls":[{')
    cache = {}
    parts = [b"data: " + json.dumps(head).encode() + b"\n\n"]
    for ch in raw:
        ev = cache.get(ch)
        if ev is None:
            ev = cache[ch] = (tpl % json.dumps(ch)).encode()
        parts.append(ev)
    parts.append((_END % ("tool_calls", len(raw), len(raw) + 9)).encode())
    return b"".join(parts), raw


class FastServer:
    def __init__(self):
        self._bodies = {}
        self._lock = threading.Lock()
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                server.requests += 1
                scenario = self.path.strip("/").split("/")[0]
                if scenario.startswith(("tool-", "toolnoidx-")) and any(m.get("role") == "tool" for m in request.get("messages", [])):
                    body = server.body("text-5")
                else:
                    body = server.body(scenario)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                view = memoryview(body)
                for i in range(0, len(body), 1 << 16):
                    self.wfile.write(view[i:i + (1 << 16)])
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def body(self, scenario):
        with self._lock:
            if scenario not in self._bodies:
                kind, _, size = scenario.partition("-")
                if kind == "text":
                    self._bodies[scenario] = text_answer(int(size))[0]
                elif kind == "tool":
                    self._bodies[scenario] = tool_call(int(size))[0]
                elif kind == "toolnoidx":
                    self._bodies[scenario] = tool_call(int(size), with_index=False)[0]
                else:  # ttfb and anything else: a short answer
                    self._bodies[scenario] = text_answer(5)[0]
            return self._bodies[scenario]

    def base_url(self, scenario):
        return f"http://127.0.0.1:{self.port}/{scenario}/v1"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
