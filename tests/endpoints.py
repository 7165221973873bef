"""A scripted OpenAI-compatible endpoint for the local server, with capabilities switched on and off.

`Endpoint(...)` is a route handler for tests/localserver.py: it reads each request body and answers as
a server with those capabilities would — accepting, rejecting (HTTP 400 naming the field) or silently
ignoring `response_format`, tools, `stream_options`, and so on. Tests for `--schema` and `doctor` use it.
"""

import json

from localserver import Reply, chunk, sse

REJECT_SCHEMA = {"error": {"message": "response_format.type 'json_schema' is not supported; "
                                      "use 'json_object' or 'text'", "type": "invalid_request_error",
                           "param": "response_format"}}
REJECT_OBJECT = {"error": {"message": "Invalid value for response_format: only 'text' is supported",
                           "type": "invalid_request_error", "param": "response_format"}}

LLAMA_CPP_REJECT = {"error": {"message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
                                         "'response_format', 'type'), 'msg': \"Input should be 'text' or "
                                         "'json_object'\", 'input': 'json_schema'}", "type": "internal_server_error"}}


def _json_reply(status, obj):
    return Reply(status=status, pieces=[json.dumps(obj).encode()], content_type="application/json", chunked=False)


class Endpoint:
    """json_schema / json_object: 'honour' | 'reject' | 'ignore'.

    `good` is the JSON text a model gives when it follows the schema; `prose` what it says otherwise.
    With `repairs=True` a model that ignored the format answers `good` once it is told the errors.
    """

    def __init__(self, json_schema="honour", json_object="honour", good='{"city": "Paris", "country": "France"}',
                 prose="The capital is Paris, in France.", repairs=True, stream=True, include_usage="honour",
                 usage=True, tools="native", parallel=True, reasoning=None, refusal=False, models=None,
                 context_length=None, key=None):
        self.json_schema, self.json_object = json_schema, json_object
        self.good, self.prose, self.repairs = good, prose, repairs
        self.stream, self.include_usage, self.usage = stream, include_usage, usage
        self.tools, self.parallel, self.reasoning, self.refusal = tools, parallel, reasoning, refusal
        self.models = ["test-model"] if models is None else models
        self.context_length = context_length
        self.key = key
        self.bodies = []

    def route(self, server):
        server.chat(self)
        server.route("/v1/models", self.models_handler, method="GET")
        return self

    # -- /models ---------------------------------------------------------------------------
    def models_handler(self, handler, rec):
        if not self._authorised(rec):
            handler.play(_json_reply(401, {"error": {"message": "invalid api key"}}), rec)
            return
        if self.models is False:
            handler.play(_json_reply(404, {"error": {"message": "not found"}}), rec)
            return
        data = []
        for m in self.models:
            entry = {"id": m, "object": "model", "owned_by": "test"}
            if self.context_length:
                entry["context_length"] = self.context_length
            data.append(entry)
        handler.play(_json_reply(200, {"object": "list", "data": data}), rec)

    def _authorised(self, rec):
        return self.key is None or rec.headers.get("Authorization") == f"Bearer {self.key}"

    # -- /chat/completions -----------------------------------------------------------------
    def __call__(self, handler, rec):
        body = rec.json
        self.bodies.append(body)
        if not self._authorised(rec):
            handler.play(_json_reply(401, {"error": {"message": "invalid api key"}}), rec)
            return
        fmt = (body.get("response_format") or {}).get("type")
        if fmt == "json_schema" and self.json_schema == "reject":
            handler.play(_json_reply(400, REJECT_SCHEMA), rec)
            return
        if fmt == "json_schema" and self.json_schema == "reject500":  # llama-cpp-python's server
            handler.play(_json_reply(500, LLAMA_CPP_REJECT), rec)
            return
        if fmt == "json_object" and self.json_object == "reject":
            handler.play(_json_reply(400, REJECT_OBJECT), rec)
            return
        if "stream_options" in body and self.include_usage == "reject":
            handler.play(_json_reply(400, {"error": {"message": "unknown field stream_options"}}), rec)
            return
        honoured = (fmt == "json_schema" and self.json_schema == "honour") or \
                   (fmt == "json_object" and self.json_object == "honour")
        last_user = next((m.get("content") or "" for m in reversed(body["messages"]) if m["role"] == "user"), "")
        repair = "not valid against the JSON Schema" in last_user
        calls = []
        if body.get("tools") and self.tools == "native" and not any(m["role"] == "tool" for m in body["messages"]):
            names = [t["function"]["name"] for t in body["tools"]]
            calls = names[:2] if self.parallel else names[:1]
        if calls:
            text = ""
        elif self.refusal and "refuse" in last_user:
            text = None
        elif honoured or (repair and self.repairs):
            text = self.good
        else:
            text = self.prose
        self._answer(handler, rec, body, text, calls)

    def _answer(self, handler, rec, body, text, calls):
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15} if self.usage else None
        streamed = body.get("stream") and self.stream
        if not streamed:
            message = {"role": "assistant", "content": text}
            if calls:
                message["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                                          "function": {"name": n, "arguments": "{}"}} for i, n in enumerate(calls)]
            if text is None:
                message["refusal"] = "I can't help with that."
            if self.reasoning:
                message[self.reasoning] = "thinking"
            doc = {"id": "c1", "object": "chat.completion", "model": "test-model",
                   "choices": [{"index": 0, "message": message,
                                "finish_reason": "tool_calls" if calls else "stop"}]}
            if usage:
                doc["usage"] = usage
            handler.play(_json_reply(200, doc), rec)
            return
        chunks = [chunk(role="assistant", content="")]
        if self.reasoning:
            chunks.append(chunk(**{self.reasoning: "thinking"}))
        if text is None:
            chunks.append(chunk(refusal="I can't help with that."))
        elif text:
            half = len(text) // 2
            chunks += [chunk(text[:half]), chunk(text[half:])]
        for i, name in enumerate(calls):
            chunks.append(chunk(tool_calls=[{"index": i, "id": f"call_{i}", "type": "function",
                                             "function": {"name": name, "arguments": ""}}]))
            chunks.append(chunk(tool_calls=[{"index": i, "function": {"arguments": "{}"}}]))
        chunks.append(chunk(finish="tool_calls" if calls else "stop"))
        if usage and (body.get("stream_options") or {}).get("include_usage") and self.include_usage == "honour":
            chunks.append({"id": "c1", "model": "test-model", "choices": [], "usage": usage})
        handler.play(Reply(pieces=sse(*chunks)), rec)
