"""The legacy text-completions endpoint (`POST {base}/completions`): base models and token-id prompts.

vLLM, llama.cpp's server, TGI, SGLang and OpenAI's `gpt-3.5-turbo-instruct` still serve it; it is the way
to drive a base model, or a prompt that is already tokenized (`prompt: [1, 2, 3]`). The stream is the
same SSE as chat (so `sse.py`, the transport's retries, timeouts and watchdog are shared); its chunks are
`text_completion` objects whose choices carry `text` instead of a `delta`:

    {"object": "text_completion", "choices": [{"index": 0, "text": "…", "logprobs": {…} | null,
     "finish_reason": null | "stop" | "length", "token_ids": [..] (vLLM return_token_ids)}], "usage": …}

`CompletionDecoder` is the pure decoder (no I/O), like `stream.StreamDecoder`: it keeps every choice
(`-n`), merges streamed logprobs, and applies the same rules for the end of a stream, in-stream errors
and what the user keeps when something fails (PROTOCOL.md §2).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from ..errors import HTTPError, StreamError
from ..events import CompletionChunk, FinishReason, UsageUpdate
from .stream import error_event_message, error_snippet, provider_error_message

__all__ = ["CompletionChoice", "CompletionDecoder", "CompletionResult", "completion_body"]

# Request keys only vLLM / llama.cpp / TGI know; passed through as they are (servers ignore or reject
# unknown keys: see the README's table).
EXTRA_KEYS = ("top_k", "min_p", "repetition_penalty", "stop_token_ids", "skip_special_tokens", "priority",
              "return_token_ids")


class CompletionChoice:
    """One choice as it streams: text pieces (joined once), token ids, logprobs, finish reason."""

    __slots__ = ("index", "parts", "finish_reason", "token_ids", "prompt_token_ids", "logprobs")

    def __init__(self, index: int):
        self.index = index
        self.parts: List[str] = []
        self.finish_reason: Optional[str] = None
        self.token_ids: Optional[List[int]] = None
        self.prompt_token_ids: Optional[List[int]] = None
        self.logprobs: Optional[Dict[str, list]] = None

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def add_logprobs(self, logprobs: Any) -> None:
        # OpenAI's completions logprobs are parallel lists (tokens, token_logprobs, top_logprobs,
        # text_offset); streamed, each chunk carries the lists for its own tokens: concatenate them.
        if not isinstance(logprobs, dict):
            return
        if self.logprobs is None:
            self.logprobs = {}
        for key, value in logprobs.items():
            if isinstance(value, list):
                self.logprobs.setdefault(key, []).extend(value)
            elif value is not None:
                self.logprobs[key] = value

    def to_dict(self) -> dict:
        out: Dict[str, Any] = {"index": self.index, "text": self.text, "finish_reason": self.finish_reason}
        if self.token_ids is not None:
            out["token_ids"] = self.token_ids
        if self.prompt_token_ids is not None:
            out["prompt_token_ids"] = self.prompt_token_ids
        if self.logprobs is not None:
            out["logprobs"] = self.logprobs
        return out


class CompletionResult:
    """What a completion produced (also the partial result of a failed one)."""

    def __init__(self, choices: List[CompletionChoice], usage: Optional[dict], model: Optional[str]):
        self.choices = choices
        self.usage = usage
        self.model = model

    @property
    def first(self) -> Optional[CompletionChoice]:
        return self.choices[0] if self.choices else None


class CompletionDecoder:
    """The state of one streamed completion: feed it SSE events (or chunk dicts), read events back.

    Like StreamDecoder, every StreamError it raises carries `.partial` (here a CompletionResult).
    """

    def __init__(self) -> None:
        self.choices: Dict[int, CompletionChoice] = {}
        self.usage: Optional[dict] = None
        self.model: Optional[str] = None
        self.done = False
        self.chunks_seen = 0
        self.emit_tool_call_deltas = False  # no tools here; present so the transport can treat both alike

    @property
    def finish_reason(self) -> Optional[str]:
        first = self.choices.get(0)
        return first.finish_reason if first is not None else None

    def feed_event(self, ev) -> list:
        if self.done:
            return []
        data = ev.data
        if data.strip() == "[DONE]":
            self.done = True
            return []
        if ev.event == "error":
            raise self._error("the server reported an error in the stream: %s" % error_event_message(data))
        if not data.strip():
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._error("the stream carried data that is not JSON: %s" % error_snippet(data))
        if not isinstance(chunk, dict):
            raise self._error("the stream carried JSON that is not a chunk object: %s" % error_snippet(data))
        return self.feed_chunk(chunk)

    def feed_chunk(self, chunk: dict) -> list:
        if self.done:
            return []
        self.chunks_seen += 1
        error = chunk.get("error")
        if error:
            raise self._error("the server reported an error in the stream: %s" % provider_error_message(error))
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self.model = model
        events: list = []
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for raw in choices:
                if isinstance(raw, dict):
                    self._add_choice(raw, events)
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage:
            self.usage = usage
            events.append(UsageUpdate(usage))
        return events

    def _add_choice(self, raw: dict, events: list) -> None:
        index = raw.get("index", 0)
        if not isinstance(index, int) or isinstance(index, bool):
            index = 0
        choice = self.choices.get(index)
        if choice is None:
            choice = self.choices[index] = CompletionChoice(index)
        text = raw.get("text")
        if not isinstance(text, str):
            # A server that answers /completions with chat-shaped choices (some proxies do).
            delta = raw.get("delta") or raw.get("message")
            text = delta.get("content") if isinstance(delta, dict) else None
            if not isinstance(text, str):
                text = ""
        if text:
            choice.parts.append(text)
        token_ids = raw.get("token_ids")
        if isinstance(token_ids, list):
            choice.token_ids = (choice.token_ids or []) + token_ids
        prompt_ids = raw.get("prompt_token_ids")
        if isinstance(prompt_ids, list) and choice.prompt_token_ids is None:
            choice.prompt_token_ids = prompt_ids
        logprobs = raw.get("logprobs")
        if logprobs:
            choice.add_logprobs(logprobs)
        reason = raw.get("finish_reason")
        reason = reason if isinstance(reason, str) and reason else None
        if reason:
            choice.finish_reason = reason
        if text or token_ids or logprobs or reason:
            events.append(CompletionChunk(index, text, token_ids if isinstance(token_ids, list) else None,
                                          logprobs if isinstance(logprobs, dict) else None, reason))
        if reason and index == 0:
            events.append(FinishReason(reason))
        if reason == "error":
            raise self._error("the server reported an error in the stream: %s"
                              % (provider_error_message(raw["error"]) if raw.get("error")
                                 else 'the server ended the completion with finish_reason "error"'))

    def partial_result(self) -> CompletionResult:
        return CompletionResult([self.choices[i] for i in sorted(self.choices)], self.usage, self.model)

    def finish(self) -> CompletionResult:
        if not self.done and not any(c.finish_reason for c in self.choices.values()):
            raise self._error("the stream ended before the completion was complete "
                              "(no [DONE] and no finish_reason): the text is truncated")
        if not self.choices:
            raise self._error("the stream ended with [DONE] but carried no completion")
        return self.partial_result()

    def feed_whole(self, body: Any) -> list:
        """A plain-JSON answer (`--no-stream`, or a 200 that is not SSE)."""
        if isinstance(body, dict) and body.get("error"):
            error = body["error"]
            code = (error.get("code") or error.get("type")) if isinstance(error, dict) else None
            raise HTTPError(provider_error_message(error), status=200, body=body, code=code)
        if not isinstance(body, dict):
            raise self._error("the server's JSON answer is not a completion: %s" % error_snippet(json.dumps(body)))
        events = self.feed_chunk(body)
        self.done = True
        return events

    def _error(self, message: str) -> StreamError:
        error = StreamError(message)
        error.partial = self.partial_result()
        return error


def completion_body(model: Optional[str], prompt: Any, stream: bool, options) -> dict:
    """The request body: model, prompt (text or token ids), stream (+ the usage request), then the options
    (-o KEY VALUE and the flags, in order; a None value removes a key)."""
    body: Dict[str, Any] = {}
    if model:
        body["model"] = model
    body["prompt"] = prompt
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    for key, value in options:
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body
