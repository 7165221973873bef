"""`llmcli doctor`: probe an OpenAI-compatible endpoint with small requests, the way a careful engineer
would, and say what it supports (issue 16).

Each probe is one small request bounded by `timeout` seconds (connect and every read, and a deadline on
the whole streamed body); whatever goes wrong in one probe becomes its finding and never stops the
others. The raw chunks are inspected here (not through StreamDecoder) because the point is to see
*which* fields the server uses: `reasoning_content` or `reasoning`, a usage chunk or none.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..config.settings import Settings

REASONING_FIELDS = ("reasoning_content", "reasoning", "reasoning_details", "thinking")
CONTEXT_KEYS = ("context_length", "max_model_len", "context_window", "max_context_length", "n_ctx")
PROBE_SCHEMA = {"type": "object", "properties": {"greeting": {"type": "string"}}, "required": ["greeting"],
                "additionalProperties": False}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "The local time in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
]


def names_response_format(status: Optional[int], text: str) -> bool:
    """Does an error answer reject the response_format itself (and not the rest of the request)?

    A 400/422 naming response_format or json_schema; or a 500 that is plainly a validation error of
    that field, because llama-cpp-python's server answers its pydantic validation errors with 500
    ("Input should be 'text' or 'json_object'", loc body.response_format.type).
    """
    text = (text or "").lower()
    named = any(word in text for word in ("response_format", "json_schema", "response format", "json schema"))
    if status in (400, 422):
        return named
    return status == 500 and named and any(w in text for w in ("validation", "input should", "literal_error"))


@dataclass
class Finding:
    name: str
    ok: Optional[bool]  # True: works; False: does not; None: unknown or not applicable
    detail: str
    value: Any = None

    def __post_init__(self):
        self.detail = " ".join(str(self.detail).split())  # one line in the table, whatever the server said

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "value": self.value}


@dataclass
class Reply:
    """What one probe request produced."""

    status: Optional[int] = None
    error: Optional[str] = None  # network failure or timeout
    body: Any = None  # parsed JSON of a non-streamed answer or an error body
    text: str = ""
    streamed: bool = False
    chunks: List[dict] = field(default_factory=list)
    done: bool = False
    seconds: float = 0.0
    first_byte: Optional[float] = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    def why(self) -> str:
        if self.error:
            return self.error
        message = ""
        if isinstance(self.body, dict):
            err = self.body.get("error")
            message = err.get("message") if isinstance(err, dict) else (err or "")
        return f"HTTP {self.status}" + (f": {str(message)[:120]}" if message else "")

    def message(self) -> dict:
        """The assistant message of a non-streamed answer, or the union of a stream's deltas."""
        if not self.streamed:
            try:
                return self.body["choices"][0]["message"] or {}
            except (KeyError, IndexError, TypeError):
                return {}
        merged: Dict[str, Any] = {}
        for c in self.chunks:
            for choice in c.get("choices") or []:
                for k, v in (choice.get("delta") or {}).items():
                    if v not in (None, ""):
                        merged.setdefault(k, v)
        return merged

    def content(self) -> str:
        if self.streamed:
            return self.text
        return str(self.message().get("content") or "")

    def usage(self) -> Optional[dict]:
        if not self.streamed:
            return self.body.get("usage") if isinstance(self.body, dict) else None
        found = None
        for c in self.chunks:
            found = c.get("usage") or (c.get("x_groq") or {}).get("usage") or found
        return found

    def tool_calls(self) -> List[dict]:
        if not self.streamed:
            return list(self.message().get("tool_calls") or [])
        calls: Dict[Any, dict] = {}
        for c in self.chunks:
            for choice in c.get("choices") or []:
                for tc in (choice.get("delta") or {}).get("tool_calls") or []:
                    key = tc.get("index", tc.get("id"))
                    entry = calls.setdefault(key, {"id": tc.get("id"), "name": None})
                    name = (tc.get("function") or {}).get("name")
                    if name:
                        entry["name"] = name
        return [{"id": v["id"], "function": {"name": v["name"]}} for v in calls.values()]


class Prober:
    def __init__(self, settings: Settings, timeout: float = 20.0):
        import requests

        from .client import HTTPTransport

        self.settings = settings
        self.timeout = timeout
        self.session = requests.Session()
        self.headers = HTTPTransport(settings).headers()
        self.base = settings.base_url.rstrip("/")
        self.model = settings.model

    # -- requests ---------------------------------------------------------------------------
    def get(self, path: str) -> Reply:
        headers = {k: v for k, v in self.headers.items() if k != "Content-Type"}
        headers["Accept"] = "application/json"
        return self._send("GET", path, None, headers)

    def chat(self, body: dict) -> Reply:
        body = {"model": self.model, **body} if self.model else dict(body)
        return self._send("POST", "/chat/completions", body, self.headers)

    def _send(self, method, path, body, headers) -> Reply:
        import requests

        from .sse import SSEDecoder

        reply = Reply()
        started = time.monotonic()
        deadline = started + self.timeout
        try:
            resp = self.session.request(method, self.base + path, headers=headers,
                                        data=None if body is None else json.dumps(body),
                                        timeout=(min(self.settings.connect_timeout, self.timeout), self.timeout),
                                        stream=True, verify=self.settings.ca_bundle or True)
        except requests.exceptions.Timeout:
            reply.error = f"timed out after {self.timeout:g} s"
            return reply
        except requests.exceptions.RequestException as exc:
            reply.error = f"cannot connect: {type(exc).__name__}"
            return reply
        try:
            reply.status = resp.status_code
            kind = resp.headers.get("content-type", "")
            if "text/event-stream" in kind and reply.ok:
                reply.streamed = True
                decoder = SSEDecoder()
                for piece in resp.iter_content(chunk_size=None):
                    if reply.first_byte is None:
                        reply.first_byte = time.monotonic() - started
                    for ev in decoder.feed(piece):
                        self._on_event(reply, ev.data)
                    if reply.done:
                        break
                    if time.monotonic() > deadline:
                        reply.error = f"the stream did not end within {self.timeout:g} s"
                        break
            else:
                data = b""
                for piece in resp.iter_content(chunk_size=65536):
                    data += piece
                    if len(data) > 1 << 20 or time.monotonic() > deadline:
                        break
                reply.first_byte = time.monotonic() - started
                try:
                    reply.body = json.loads(data.decode("utf-8", "replace"))
                except ValueError:
                    reply.body = None
                    reply.text = data[:200].decode("utf-8", "replace")
        except requests.exceptions.RequestException as exc:
            reply.error = f"the response broke off: {type(exc).__name__}"
        finally:
            resp.close()
            reply.seconds = time.monotonic() - started
        return reply

    @staticmethod
    def _on_event(reply: Reply, data: str):
        if data.strip() == "[DONE]":
            reply.done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            return
        if not isinstance(chunk, dict):
            return
        reply.chunks.append(chunk)
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if isinstance(text, str):
                reply.text += text

    # -- probes -----------------------------------------------------------------------------
    def run(self) -> List[Finding]:
        findings: List[Finding] = []
        for probe in (self.probe_models, self.probe_plain, self.probe_stream, self.probe_tools,
                      self.probe_json_schema, self.probe_json_object):
            try:
                findings.extend(probe())
            except Exception as exc:  # one probe's bug must not stop the others
                findings.append(Finding(probe.__name__.replace("probe_", ""), False,
                                        f"probe failed: {type(exc).__name__}: {exc}"))
        return findings

    def probe_models(self) -> List[Finding]:
        r = self.get("/models")
        if r.error:
            return [Finding("reachable", False, r.error), Finding("auth", None, "not reached"),
                    Finding("models", None, "not reached")]
        out = [Finding("reachable", True, f"HTTP {r.status} in {r.seconds * 1000:.0f} ms")]
        if r.status in (401, 403):
            return out + [Finding("auth", False, r.why() + " (check the API key)"), Finding("models", None, "no access")]
        out.append(Finding("auth", True, "key accepted" if self.settings.api_key else "no key needed"))
        if not r.ok or not isinstance(r.body, (dict, list)):
            return out + [Finding("models", False, f"/models not offered ({r.why()})")]
        items = r.body.get("data", r.body.get("models")) if isinstance(r.body, dict) else r.body
        items = [i if isinstance(i, dict) else {"id": i} for i in (items or [])]
        if not self.model and items:
            self.model = str(items[0].get("id"))
        entry = next((i for i in items if str(i.get("id")) == str(self.model)), None)
        ctx = None
        if entry:
            for key in CONTEXT_KEYS:
                value = entry.get(key) if key in entry else (entry.get("meta") or {}).get(key + "_train")
                if isinstance(value, int):
                    ctx = value
                    break
        detail = f"{len(items)} model(s)"
        if self.model:
            detail += f"; {self.model}" + ("" if entry else " not listed")
        if ctx:
            detail += f", context {ctx:,} tokens"
        out.append(Finding("models", True, detail, {"count": len(items), "model": self.model, "context_length": ctx}))
        return out

    def probe_plain(self) -> List[Finding]:
        r = self.chat({"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "stream": False})
        if not r.ok:
            return [Finding("chat", False, r.why()), Finding("latency", None, "no answer"),
                    Finding("refusal_field", None, "no answer")]
        msg = r.message()
        out = [Finding("chat", True, f"answered {len(r.content())} chars"),
               Finding("latency", True, f"{r.seconds * 1000:.0f} ms round trip", round(r.seconds * 1000))]
        out.append(Finding("refusal_field", "refusal" in msg,
                           "message has a refusal field" if "refusal" in msg else "no refusal field in messages"))
        self._plain_usage = r.usage()
        return out

    def probe_stream(self) -> List[Finding]:
        body = {"messages": [{"role": "user", "content": "Count from 1 to 5."}], "max_tokens": 24, "stream": True,
                "stream_options": {"include_usage": True}}
        r = self.chat(body)
        rejected = False
        if not r.ok and r.status in (400, 422) and "stream_options" in json.dumps(r.body or {}):
            rejected = True
            body.pop("stream_options")
            r = self.chat(body)
        if not r.ok:
            return [Finding("streaming", False, r.why()), Finding("include_usage", None, "no stream"),
                    Finding("usage", None, "no stream"), Finding("reasoning_field", None, "no stream")]
        out = []
        if r.streamed:
            first = f", first byte {r.first_byte * 1000:.0f} ms" if r.first_byte is not None else ""
            out.append(Finding("streaming", True, f"{len(r.chunks)} chunks{first}" +
                               ("" if r.done else " (no [DONE])")))
        else:
            out.append(Finding("streaming", False, "answered with one JSON body instead of SSE"))
        usage = r.usage()
        if rejected:
            out.append(Finding("include_usage", False, "stream_options rejected (HTTP 400)"))
        else:
            out.append(Finding("include_usage", bool(usage), "usage chunk sent" if usage
                               else "accepted, but no usage in the stream"))
        plain = getattr(self, "_plain_usage", None)
        reported = usage or plain
        out.append(Finding("usage", bool(reported),
                           ("reported: " + ", ".join(f"{k} {v}" for k, v in reported.items()
                                                     if isinstance(v, int))) if reported else "not reported"))
        fields = [f for f in REASONING_FIELDS if any(
            f in (ch.get("delta") or {}) for c in r.chunks for ch in (c.get("choices") or []))]
        out.append(Finding("reasoning_field", None, fields[0] if fields else "none seen (not a reasoning model?)",
                           fields[0] if fields else None))
        return out

    def probe_tools(self) -> List[Finding]:
        r = self.chat({"messages": [{"role": "user", "content":
                                     "What are the weather and the local time in Paris? Use both tools."}],
                       "tools": TOOLS, "max_tokens": 120, "stream": True})
        if not r.ok:
            return [Finding("tool_calls", False, r.why()), Finding("parallel_tool_calls", None, "no tool calls")]
        calls = r.tool_calls()
        if not calls:
            return [Finding("tool_calls", False, "no tool call in the answer (tools ignored?)"),
                    Finding("parallel_tool_calls", None, "no tool calls")]
        how = "streamed" if r.streamed else "not streamed"
        names = ", ".join(str(c["function"]["name"]) for c in calls)
        return [Finding("tool_calls", True, f"native, {how}: {names}", {"streamed": r.streamed}),
                Finding("parallel_tool_calls", len(calls) > 1, f"{len(calls)} call(s) in one turn")]

    def _format_probe(self, name: str, response_format: dict, prompt: str) -> Finding:
        r = self.chat({"messages": [{"role": "user", "content": prompt}], "max_tokens": 60, "stream": False,
                       "response_format": response_format})
        if not r.ok:
            if names_response_format(r.status, json.dumps(r.body) if r.body is not None else r.text):
                return Finding(name, False, "rejected: " + r.why(), "rejected")
            return Finding(name, None, r.why(), "error")
        text = r.content().strip()
        try:
            data = json.loads(text, strict=False)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return Finding(name, True, "honoured (the answer is a JSON object)", "honoured")
        return Finding(name, False, "accepted but ignored (the answer is not JSON): " + text[:40], "ignored")

    def probe_json_schema(self) -> List[Finding]:
        fmt = {"type": "json_schema", "json_schema": {"name": "greeting", "schema": PROBE_SCHEMA, "strict": True}}
        return [self._format_probe("json_schema", fmt, "Say hello.")]

    def probe_json_object(self) -> List[Finding]:
        # OpenAI rejects json_object unless the word JSON appears in the messages.
        return [self._format_probe("json_object", {"type": "json_object"},
                                   'Say hello as JSON: {"greeting": "..."}')]


def capabilities(findings: List[Finding]) -> Dict[str, Any]:
    """What --save writes into the provider's config (read by --schema and shown by config show)."""
    by = {f.name: f for f in findings}

    def value(name):
        return by[name].value if name in by else None

    js, jo = value("json_schema"), value("json_object")
    if js == "honoured":
        mode = "json_schema"
    elif jo in ("honoured", "ignored"):
        mode = "json_object"  # accepted: the ladder adds the schema to the system prompt and validates
    elif js is None and jo is None:
        mode = None
    else:
        mode = "prompt"
    caps: Dict[str, Any] = {}
    if mode:
        caps["response_format"] = mode
    for name in ("streaming", "include_usage", "tool_calls", "parallel_tool_calls"):
        if name in by and by[name].ok is not None:
            caps[name] = bool(by[name].ok)
    if value("reasoning_field"):
        caps["reasoning_field"] = value("reasoning_field")
    models = value("models") or {}
    if models.get("context_length"):
        caps["context_length"] = models["context_length"]
    caps["checked"] = time.strftime("%Y-%m-%d")
    return caps
