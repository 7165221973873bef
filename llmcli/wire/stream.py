"""Pure decoding of one chat-completions turn: SSE events / chunk dicts → typed events + state.

No I/O at all: `client.py` feeds bytes to `sse.SSEDecoder`, its events to `StreamDecoder.feed_event`,
and the chat loop reads the typed events (`TextDelta`, ...) and, at the end, `finish()`'s TurnResult.
PROTOCOL.md §2 (chunk semantics) and §3 (tool-call accumulation) are the spec; comments below cite the
bullet behind each quirk. Modelled on openai-python's `_streaming.py` (stop at `[DONE]`, raise on
in-stream errors) and simonw/llm (tool calls keyed by index, arguments parsed once at the end).

Everything here is linear in the size of the stream: text and argument fragments are kept as lists of
pieces and joined once.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional

from ..errors import HTTPError, StreamError

__all__ = [
    "TextDelta",
    "ReasoningDelta",
    "RefusalDelta",
    "UsageUpdate",
    "FinishReason",
    "StreamEvent",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallAccumulator",
    "StreamDecoder",
    "TextBuffer",
    "TurnResult",
    "decode_non_streamed",
    "tool_names_of",
    "error_snippet",
    "provider_error_message",
]

SNIPPET_CHARS = 80  # PROTOCOL.md §2: a non-JSON payload is reported with "a short snippet of it"


from ..events import FinishReason, ReasoningDelta, RefusalDelta, StreamEvent, TextDelta, TokenLogprobs, ToolCall, ToolCallDelta, TurnResult, UsageUpdate  # noqa: F401 (re-exported)


class _PendingCall:
    """A tool call while its deltas are still arriving."""

    __slots__ = ("index", "id", "name", "arg_parts", "arg_object", "declared", "position")

    def __init__(self, index: Optional[int], call_id: Optional[str], name: Optional[str],
                 declared: frozenset = frozenset()):
        self.declared = declared  # the tool names offered in the request (for split names)
        self.position = 0  # its place among the turn's calls
        self.index = index
        self.id = call_id
        self.name = name
        self.arg_parts: List[str] = []  # raw fragments, joined once in finish()
        self.arg_object: Any = None  # `arguments` sent as a JSON object instead of a string

    def add(self, call_id: Optional[str], name: Optional[str], arguments: Any) -> None:
        # id, type and name may be repeated on every chunk (llama.cpp): set once, never
        # concatenated. An id that changes on a continuation keeps the first one (PROTOCOL.md §3).
        if self.id is None and call_id is not None:
            self.id = call_id
        if self.name is None and name is not None:
            self.name = name
        elif name is not None and name != self.name and self.name + name in self.declared:
            # A name split across deltas ("web_" + "fetch"): joined only when the join is a tool
            # the request offered, so a repeated or changed name is still never concatenated.
            self.name = self.name + name
        if isinstance(arguments, str):
            if arguments:
                self.arg_parts.append(arguments)
        elif isinstance(arguments, (dict, list)):
            self.arg_object = arguments

    def arguments_look_complete(self) -> bool:
        if not self.arg_parts:
            return self.arg_object is not None
        try:
            json.loads("".join(self.arg_parts))
        except ValueError:
            return False
        return True

    def to_tool_call(self, call_id: str) -> ToolCall:
        raw = "".join(self.arg_parts)
        if not raw.strip() and self.arg_object is not None:
            # `arguments` sent as a JSON object: use it, and send it back as a string.
            raw = json.dumps(self.arg_object, ensure_ascii=False)
        arguments, error = _parse_arguments(raw)
        if error is not None and len(self.arg_parts) > 1:
            single = _one_copy(raw)
            if single is not None:
                raw = single
                arguments, error = _parse_arguments(raw)
        return ToolCall(id=call_id, name=self.name or "", arguments_raw=raw, arguments=arguments,
                        parse_error=error)


def _parse_arguments(raw: str):
    """Parse the complete arguments string once. Returns (dict or None, error message or None)."""
    if not raw.strip():
        return {}, None  # missing or "" means "no arguments" (PROTOCOL.md §3)
    try:
        value = json.loads(raw)
    except ValueError as exc:
        where = " at char %d" % exc.pos if getattr(exc, "pos", None) is not None else ""
        return None, "invalid JSON in tool-call arguments: %s%s; received %s" % (
            getattr(exc, "msg", str(exc)), where, error_snippet(raw))
    if isinstance(value, str):
        # Some models double-encode the arguments ("\"{\\\"a\\\": 1}\""); accept it when the
        # inner string is an object.
        try:
            inner = json.loads(value)
        except ValueError:
            inner = None
        if isinstance(inner, dict):
            return inner, None
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        return None, "tool-call arguments must be a JSON object, received %s" % error_snippet(raw)
    return value, None


def _progress(position: int, call: _PendingCall, function: Any) -> ToolCallDelta:
    arguments = function.get("arguments") if isinstance(function, dict) else None
    if not isinstance(arguments, str):
        arguments = "" if arguments is None else json.dumps(arguments, ensure_ascii=False)
    return ToolCallDelta(position, call.id, call.name, arguments)


def _one_copy(raw: str) -> Optional[str]:
    """The first copy when `raw` is the same JSON document sent two or more times, else None.

    Some providers re-send the complete arguments string in a later delta (`{"q":"x"}` then
    `{"q":"x"}` again); the concatenation is invalid JSON, but every copy is the same valid
    document, so one copy is what the model meant. Only reached when the whole string failed to
    parse, so the happy path never pays for it.
    """
    decoder = json.JSONDecoder()
    text = raw.strip()
    try:
        first, end = decoder.raw_decode(text)
    except ValueError:
        return None
    if not isinstance(first, dict):
        return None
    copy = text[:end]
    pos = end
    copies = 1
    while pos < len(text):
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            break
        try:
            again, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return None
        if again != first:
            return None
        copies += 1
    return copy if copies > 1 else None


def _normalise_id(value: Any) -> Optional[str]:
    # PROTOCOL.md §3: empty-string, "null" or integer ids; a missing one is synthesized later.
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or value.lower() in ("null", "none", "undefined"):
        return None
    return value


def _normalise_index(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _normalise_name(value: Any) -> Optional[str]:
    # `name: ""` (or null) on continuations carries nothing (PROTOCOL.md §3).
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


class ToolCallAccumulator:
    """Reassembles streamed tool calls from however the provider split, repeated or mislabelled them.

    The rules (PROTOCOL.md §3): fragments are concatenated raw and parsed once, in `finish()`; a
    delta with an `index` belongs to the call with that index, except that a *new id that also
    carries a name* starts a new call (parallel calls that all claim index 0); a delta with neither
    index nor id continues the most recent call, unless it names a different function (whole calls
    without index); ids are synthesized as `call_<n>` where missing.
    """

    def __init__(self, tool_names=()) -> None:
        self._declared = frozenset(tool_names or ())
        self._calls: List[_PendingCall] = []
        self._by_index: Dict[int, _PendingCall] = {}
        self._by_id: Dict[str, _PendingCall] = {}
        self._latest: Optional[_PendingCall] = None  # the call that received the latest delta
        self._legacy: Optional[_PendingCall] = None  # the legacy `function_call` delta, if any
        self._saw_tool_calls = False

    @property
    def has_calls(self) -> bool:
        """Whether the turn asked for tools: decide from this, not from finish_reason (§3)."""
        return bool(self._calls) or self._legacy_call_counts()

    def add_tool_call_deltas(self, deltas: Any, events: Optional[list] = None) -> None:
        """Add the `tool_calls` list of one delta (or of a non-streamed message).

        With `events`, a ToolCallDelta for each entry is appended to it (the call as it forms).
        """
        if isinstance(deltas, dict):
            deltas = [deltas]
        if not isinstance(deltas, list):
            return
        for delta in deltas:
            if isinstance(delta, dict):
                call = self._add_one(delta)
                if events is not None and call is not None:
                    events.append(_progress(call.position, call, delta.get("function")))

    def add_function_call_delta(self, fc: Any, events: Optional[list] = None) -> None:
        """Add a legacy `function_call` delta.

        Servers that send it *alongside* `tool_calls` (same call twice) must not produce two calls,
        so it is kept apart and used only if the turn carried no `tool_calls` at all (§3).
        """
        if not isinstance(fc, dict):
            return
        if self._legacy is None:
            self._legacy = _PendingCall(None, None, None)
        self._legacy.add(None, _normalise_name(fc.get("name")), fc.get("arguments"))
        if events is not None and not self._saw_tool_calls:
            events.append(_progress(0, self._legacy, fc))

    def finish(self) -> List[ToolCall]:
        """The calls in order, arguments parsed now (once), ids made unique and non-empty."""
        pending = list(self._calls)
        if not self._saw_tool_calls and self._legacy_call_counts():
            pending = [self._legacy]
        taken = {call.id for call in pending if call.id is not None}
        result = []
        for n, call in enumerate(pending):
            call_id = call.id
            if call_id is None:
                # Stable, deterministic ids ("call_0", "call_1", ...), never clashing with real ones.
                call_id = "call_%d" % n
                suffix = 0
                while call_id in taken:
                    suffix += 1
                    call_id = "call_%d_%d" % (n, suffix)
                taken.add(call_id)
            result.append(call.to_tool_call(call_id))
        return result

    def _legacy_call_counts(self) -> bool:
        legacy = self._legacy
        return (
            not self._saw_tool_calls
            and legacy is not None
            and (legacy.name is not None or bool(legacy.arg_parts) or legacy.arg_object is not None)
        )

    def _new_call(self, index: Optional[int], call_id: Optional[str], name: Optional[str]):
        call = _PendingCall(index, call_id, name, self._declared)
        call.position = len(self._calls)
        self._calls.append(call)
        if index is not None:
            self._by_index[index] = call
        return call

    def _add_one(self, delta: dict) -> Optional[_PendingCall]:
        index = _normalise_index(delta.get("index"))
        call_id = _normalise_id(delta.get("id"))
        function = delta.get("function")
        if not isinstance(function, dict):
            function = {}
        name = _normalise_name(function.get("name"))
        arguments = function.get("arguments")

        if index is None and call_id is None and name is None and arguments is None:
            return None  # `{}`: nothing to add, and not a call of its own
        self._saw_tool_calls = True
        call = self._find_call(index, call_id, name, arguments)
        if call is None:
            call = self._new_call(index, call_id, name)
        elif index is not None and call.index is None:
            call.index = index
            self._by_index[index] = call
        call.add(call_id, name, arguments)
        if call.id is not None:
            self._by_id.setdefault(call.id, call)
        self._latest = call
        return call

    def _find_call(self, index, call_id, name, arguments) -> Optional[_PendingCall]:
        """The pending call this delta continues, or None when it starts a new one."""
        if call_id is not None and call_id in self._by_id:
            known = self._by_id[call_id]
            if index is None or known.index is None or known.index == index:
                return known  # the same id again: repeated on every chunk, not a new call
        if index is not None:
            current = self._by_index.get(index)
            if current is None:
                return None
            if call_id is not None and name is not None and current.id not in (None, call_id):
                # Parallel calls that all claim index 0: a new id *with a name* is a new call.
                return None
            return current
        # No index.
        latest = self._latest
        if latest is None:
            return None
        if call_id is not None:
            # A new id with a name is a new (whole) call; a new id without one is a continuation
            # whose id changed (§3).
            return None if name is not None else latest
        if name is None:
            return latest  # a continuation carrying neither index nor id
        if latest.name is None:
            return latest  # the name arrives after the first fragment
        if latest.name != name and latest.name + name in self._declared:
            return latest  # the rest of a name split across deltas ("web_" + "fetch")
        if latest.name == name and (not arguments or not latest.arguments_look_complete()):
            # The name repeated on a continuation (or on a trailing empty delta: never risk running
            # a call twice). Only this rare shape (no index, no id, the same name again) pays for
            # a JSON check of the arguments so far.
            return latest
        return None  # a whole call without index or id (Gemini-style), or another function



class TextBuffer:
    """Streamed text kept compactly: the newest pieces in a short list, older text joined into a few
    strings of decreasing size. A long answer costs about its own size in memory, not one string
    object per delta, and each character is copied O(log n) times (no step quadratic in the answer).
    Repeated reads without new text cost nothing."""

    __slots__ = ("_parts", "_blocks")

    PIECES = 64  # deltas held as separate strings before they are joined into one block

    def __init__(self) -> None:
        self._parts: List[str] = []
        self._blocks: List[str] = []  # joined text, each block shorter than the one before it

    def append(self, text: str) -> None:
        parts = self._parts
        parts.append(text)
        if len(parts) >= self.PIECES:
            self._compact()

    def _compact(self) -> None:
        block = "".join(self._parts)
        self._parts.clear()
        blocks = self._blocks
        while blocks and len(blocks[-1]) <= len(block):
            block = blocks.pop() + block  # sizes at least double on each merge: O(log n) copies a char
        blocks.append(block)

    def __len__(self) -> int:
        return sum(map(len, self._blocks)) + sum(map(len, self._parts))

    def __bool__(self) -> bool:
        return bool(self._parts or self._blocks)

    def strings(self) -> int:
        """How many string objects hold the text (the compactness tests/test_stream.py guards)."""
        return len(self._parts) + len(self._blocks)

    def unseen(self, snapshot: str, beside_delta: bool) -> str:
        """The part of a `message` snapshot not received yet (see StreamDecoder._add_message)."""
        have = len(self)
        if have and len(snapshot) >= have and snapshot.startswith(self.value()):
            return snapshot[have:]  # the message so far, repeated: only what is new
        if beside_delta:
            return ""  # the delta beside it carried this field: that is the text
        return snapshot

    def value(self) -> str:
        blocks = self._blocks
        if self._parts or len(blocks) > 1:
            blocks.extend(self._parts)
            self._parts.clear()
            blocks[:] = ["".join(blocks)]
        return blocks[0] if blocks else ""

    def clear(self) -> None:
        self._parts.clear()
        self._blocks.clear()


class StreamDecoder:
    """The state of one streamed turn. Feed it SSE events (or chunk dicts); read typed events back.

    Every StreamError it raises carries `.partial`, the TurnResult of what arrived so far (the same
    as `partial_result()`), because whatever fails, the user keeps what arrived (PROTOCOL.md §2).
    """

    def __init__(self, tool_names=()) -> None:
        """tool_names: the tools the request offered (a split tool-call name is joined only into one)."""
        self._content = TextBuffer()
        self._reasoning = TextBuffer()
        self._refusal = TextBuffer()
        self.finish_reason: Optional[str] = None
        self.usage: Optional[dict] = None
        self.model: Optional[str] = None
        self.done = False
        self.tool_calls = ToolCallAccumulator(tool_names)
        self._tool_calls_in_delta = False
        self._reasoning_details: Optional[list] = None
        self._details_in_delta = False
        self._logprobs: list = []
        # ToolCallDelta events as calls stream: only `--jsonl` shows them, so only it pays for them.
        self.emit_tool_call_deltas = False
        self.chunks_seen = 0

    @property
    def content(self) -> str:
        return self._content.value()

    @property
    def content_buffer(self) -> "TextBuffer":
        """The answer's text as it arrives: the one copy of it (run/loop.py ChatRun reads it, issue 22)."""
        return self._content

    @property
    def reasoning(self) -> str:
        return self._reasoning.value()

    @property
    def refusal(self) -> str:
        return self._refusal.value()

    # --- input ---

    def feed_event(self, ev) -> List[StreamEvent]:
        """Consume one `sse.SSEEvent`."""
        if self.done:
            return []  # `data: [DONE]` ends the stream; anything after it is ignored (§2)
        data = ev.data
        if data.strip() == "[DONE]":
            self.done = True
            return []
        if ev.event == "error":
            raise self._error("the server reported an error in the stream: %s"
                              % error_event_message(data))
        if not data.strip():
            return []  # an empty `data:` carries nothing; it is not a malformed payload
        try:
            chunk = json.loads(data)
        except ValueError:
            # e.g. a proxy's HTML error page spliced into the stream (§2)
            raise self._error("the stream carried data that is not JSON: %s" % error_snippet(data))
        if not isinstance(chunk, dict):
            raise self._error("the stream carried JSON that is not a chunk object: %s"
                              % error_snippet(data))
        return self.feed_chunk(chunk)

    def feed_chunk(self, chunk: dict) -> List[StreamEvent]:
        """Consume one chunk dict: a `chat.completion.chunk`, or a whole non-streamed answer."""
        if self.done:
            return []
        self.chunks_seen += 1
        error = chunk.get("error")
        if error:
            # A top-level `error` object or string inside a 200 stream (§2).
            raise self._error("the server reported an error in the stream: %s"
                              % provider_error_message(error))
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self.model = model

        events: List[StreamEvent] = []
        choice = _first_choice(chunk.get("choices"))
        if choice is not None:
            # Streamed chunks carry `delta`; a non-streamed answer carries `message` (§2). Some
            # servers put `message` in streamed chunks too, instead of or beside `delta` (issue 18).
            logprobs = choice.get("logprobs")
            if logprobs:
                # Before the text they belong to, so a renderer can tint it as it writes it.
                entries = logprobs.get("content") if isinstance(logprobs, dict) else None
                if isinstance(entries, list) and entries:
                    self._logprobs.extend(entries)
                    events.append(TokenLogprobs(entries))
            delta = choice.get("delta")
            message = choice.get("message")
            if isinstance(delta, dict):
                self._add_delta(delta, events)
                if message is not None and isinstance(message, dict):
                    self._add_message(message, events, delta)
            elif isinstance(message, dict):
                self._add_message(message, events, None)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
                events.append(FinishReason(reason))
                if reason == "error":
                    detail = choice.get("error")
                    message = (provider_error_message(detail) if detail
                               else 'the server ended the turn with finish_reason "error"')
                    raise self._error("the server reported an error in the stream: %s" % message)

        usage = chunk.get("usage")
        if not isinstance(usage, dict) or not usage:
            x_groq = chunk.get("x_groq")
            usage = x_groq.get("usage") if isinstance(x_groq, dict) else None
        if isinstance(usage, dict) and usage:
            self.usage = usage  # the last non-null usage wins (§2)
            events.append(UsageUpdate(usage))
        return events

    def _add_delta(self, delta: dict, events: List[StreamEvent]) -> None:
        content = delta.get("content")  # may be null (§2)
        thinking = ""
        if content is not None and not isinstance(content, str):
            # A list of typed parts (Mistral magistral: thinking parts, then text parts).
            content, thinking = _content_parts(content)
        reasoning = _reasoning_texts(delta)
        if thinking:
            reasoning.append(thinking)
        if reasoning:
            seen_reasoning: List[str] = []
            for text in reasoning:
                # The same text in two fields (OpenRouter's `reasoning` + `reasoning_details`, ...)
                # is counted once (§2).
                if text not in seen_reasoning:
                    seen_reasoning.append(text)
                    self._reasoning.append(text)
                    events.append(ReasoningDelta(text))
        if content:
            self._content.append(content)
            events.append(TextDelta(content))
        refusal = delta.get("refusal")
        if refusal:
            refusal = _text_of(refusal)
            if refusal:
                self._refusal.append(refusal)
                events.append(RefusalDelta(refusal))
        details = delta.get("reasoning_details")
        if details and isinstance(details, list):
            self._add_details(details)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            self._tool_calls_in_delta = True
            self.tool_calls.add_tool_call_deltas(tool_calls, events if self.emit_tool_call_deltas else None)
        function_call = delta.get("function_call")
        if function_call:
            self._tool_calls_in_delta = True
            self.tool_calls.add_function_call_delta(function_call,
                                                    events if self.emit_tool_call_deltas else None)

    def _add_message(self, message: dict, events: List[StreamEvent], delta: Optional[dict]) -> None:
        """A `message` in a chunk: a whole answer, a fragment, or the message so far.

        Non-streamed answers carry only `message`; some streaming servers send it instead of `delta`
        (fragment by fragment, or the whole message so far each time) or beside it (an empty `delta`
        with the reasoning in `message`; a last chunk repeating the complete message). So each field
        adds only what was not received yet: a snapshot that extends the text so far adds its new
        end ("Hello" after "Hel" adds "lo", never "HelloHello"); otherwise it is a fragment, used
        unless the `delta` beside it carried the same field.
        """
        beside = delta or {}
        content = message.get("content")
        thinking = ""
        if content is not None and not isinstance(content, str):
            content, thinking = _content_parts(content)
        reasoning_parts = []
        for text in _reasoning_texts(message) + ([thinking] if thinking else []):
            if text not in reasoning_parts:
                reasoning_parts.append(text)
        reasoning = "".join(reasoning_parts)
        if reasoning:
            delta_reasoning = bool(_reasoning_texts(beside)) or _has_thinking(beside.get("content"))
            piece = self._reasoning.unseen(reasoning, delta_reasoning)
            if piece:
                self._reasoning.append(piece)
                events.append(ReasoningDelta(piece))
        if content:
            delta_content = beside.get("content")
            delta_text = bool(delta_content) and (isinstance(delta_content, str)
                                                  or bool(_content_parts(delta_content)[0]))
            piece = self._content.unseen(content, delta_text)
            if piece:
                self._content.append(piece)
                events.append(TextDelta(piece))
        refusal = _text_of(message.get("refusal"))
        if refusal:
            piece = self._refusal.unseen(refusal, bool(_text_of(beside.get("refusal"))))
            if piece:
                self._refusal.append(piece)
                events.append(RefusalDelta(piece))
        details = message.get("reasoning_details")
        if details and isinstance(details, list) and not self._details_in_delta:
            self._reasoning_details = [dict(item) if isinstance(item, dict) else item for item in details]
        if delta is not None and (self._tool_calls_in_delta or self.tool_calls.has_calls):
            return  # the calls came as deltas (or were taken from a message already): never twice
        progress = events if self.emit_tool_call_deltas else None
        tool_calls = message.get("tool_calls")
        if tool_calls:
            self.tool_calls.add_tool_call_deltas(tool_calls, progress)
        function_call = message.get("function_call")
        if function_call:
            self.tool_calls.add_function_call_delta(function_call, progress)

    def _add_details(self, details: list) -> None:
        """Keep OpenRouter's `reasoning_details` items as sent; a streamed item arrives in fragments
        that share its `index` and `type`, so their `text`/`summary` are joined into one item."""
        self._details_in_delta = True
        kept = self._reasoning_details
        if kept is None:
            kept = self._reasoning_details = []
        for item in details:
            if not isinstance(item, dict):
                continue
            last = kept[-1] if kept else None
            if (last is not None and "index" in item and last.get("index") == item.get("index")
                    and last.get("type") == item.get("type")):
                for key, value in item.items():
                    if key in ("text", "summary", "data") and isinstance(value, str) \
                            and isinstance(last.get(key), str):
                        last[key] += value
                    elif value is not None:
                        last[key] = value
            else:
                kept.append(dict(item))

    # --- output ---

    def partial_result(self) -> TurnResult:
        """What arrived so far, whether or not the turn completed."""
        return TurnResult(
            content=self.content,
            reasoning=self.reasoning,
            refusal=self.refusal,
            finish_reason=self.finish_reason,
            tool_calls=self.tool_calls.finish(),
            usage=self.usage,
            model=self.model,
            reasoning_details=self._reasoning_details,
            logprobs=self._logprobs or None,
        )

    def finish(self) -> TurnResult:
        """The turn's result once the input has ended; StreamError if it is not a real answer."""
        if not self.done and self.finish_reason is None:
            raise self._error("the stream ended before the answer was complete "
                              "(no [DONE] and no finish_reason): the answer is truncated")
        has_calls = self.tool_calls.has_calls
        if not (self._content or self._reasoning or self._refusal or has_calls
                or self.finish_reason):
            raise self._error("the stream ended with [DONE] but carried no answer")
        if self.finish_reason == "length" and has_calls:
            raise self._error('the answer hit the token limit (finish_reason "length") while a '
                              "tool call was being streamed; the incomplete call was not run")
        return self.partial_result()

    def _error(self, message: str) -> StreamError:
        error = StreamError(message)
        error.partial = self.partial_result()
        return error


def decode_non_streamed(body: Any) -> TurnResult:
    """Decode a plain-JSON answer (`--no-stream`, or a 200 that is not SSE)."""
    if isinstance(body, dict) and body.get("error"):
        # A 200 whose JSON body is an error is HTTP-class, like a non-2xx (§2, exit 4).
        error = body["error"]
        code = (error.get("code") or error.get("type")) if isinstance(error, dict) else None
        raise HTTPError(provider_error_message(error), status=200, body=body, code=code)
    decoder = StreamDecoder()
    if not isinstance(body, dict):
        raise decoder._error("the server's JSON answer is not a chat completion: %s"
                             % error_snippet(json.dumps(body)))
    decoder.feed_chunk(body)
    decoder.done = True  # a complete JSON document cannot be truncated
    return decoder.finish()


# --- helpers ------------------------------------------------------------------------------------


def tool_names_of(body: dict) -> tuple:
    """The function names a request offers (a tool-call name split across deltas is joined only into one)."""
    names = []
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return tuple(names)


def error_snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """A short, single-line, quoted excerpt of `text` (at most `limit` characters inside quotes)."""
    flat = re.sub(r"\s+", " ", text[: limit * 4]).strip()
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return '"%s"' % flat


def provider_error_message(error: Any) -> str:
    """The provider's own message from an `error` object or string."""
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or error.get("detail")
        if isinstance(message, dict):
            return provider_error_message(message)
        if not message and error.get("error"):
            return provider_error_message(error["error"])
        if message:
            code = error.get("code") or error.get("type")
            if code and str(code) not in str(message):
                return "%s (%s)" % (message, code)
            return str(message)
    return json.dumps(error, ensure_ascii=False)[:200]


def error_event_message(data: str) -> str:
    """The message of an in-stream error event (JSON or not), for chat and legacy completions alike."""
    try:
        payload = json.loads(data)
    except ValueError:
        return error_snippet(data) if data.strip() else "no details"
    if isinstance(payload, dict) and payload.get("error"):
        return provider_error_message(payload["error"])
    return provider_error_message(payload)


def _first_choice(choices: Any) -> Optional[dict]:
    """The choice whose `index` is 0 (a missing index counts as 0); `choices` may be empty (§2)."""
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) in (0, None):
            return choice
    return None


def _text_of(value: Any) -> str:
    """Text from a string, or from a list of content parts / objects with `text`."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, str):
                parts.append(item)
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                parts.append(item["text"])
        return "".join(parts)
    return ""


_THINKING_TYPES = frozenset(("thinking", "reasoning", "reasoning_text", "reasoning_content", "summary_text"))


def _content_parts(value: Any):
    """(text, reasoning) from `content` sent as a list of typed parts.

    Mistral's magistral sends `[{"type": "thinking", "thinking": [{"type": "text", "text": …}]},
    {"type": "text", "text": …}]`; others `{"type": "reasoning", "text": …}`. Text parts are the
    answer; thinking parts are reasoning and never reach stdout (§2).
    """
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return "", ""
    text, thinking = [], []
    for item in value:
        if isinstance(item, str):
            text.append(item)
        elif isinstance(item, dict):
            kind = item.get("type")
            if kind in _THINKING_TYPES:
                inner = item.get("thinking")
                if inner is None:
                    inner = item.get("text", item.get("content", item.get("reasoning")))
                thinking.append(_reasoning_text_of(inner))
            elif kind in (None, "text", "output_text") and isinstance(item.get("text"), str):
                text.append(item["text"])
    return "".join(text), "".join(thinking)


def _has_thinking(value: Any) -> bool:
    return value is not None and not isinstance(value, str) and bool(_content_parts(value)[1])


def _reasoning_text_of(value: Any) -> str:
    """Reasoning text from a string, an object (`{text}`, `{content}`, `{summary}`, `{thinking}`) or a
    list of either (issue 18: reasoning is not always a string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("text", "content", "summary", "thinking", "reasoning"):
            inner = value.get(key)
            if inner is not None:
                return _reasoning_text_of(inner)
        return ""
    if isinstance(value, list):
        return "".join(_reasoning_text_of(item) for item in value)
    return ""


def _reasoning_texts(delta: dict) -> List[str]:
    """The non-empty reasoning text of each field that carries it, in order (§2)."""
    texts = []
    content = delta.get("reasoning_content")  # DeepSeek, vLLM, llama.cpp
    if content:
        texts.append(content if isinstance(content, str) else _reasoning_text_of(content))
    reasoning = delta.get("reasoning")  # OpenRouter, Ollama, Groq: a string, an object or a list
    if reasoning:
        texts.append(reasoning if isinstance(reasoning, str) else _reasoning_text_of(reasoning))
    details = delta.get("reasoning_details")  # OpenRouter: [{type, text | summary | data}]
    if isinstance(details, list) and details:
        parts = []
        for item in details:
            if isinstance(item, dict):
                text = item.get("text")
                if not isinstance(text, str):
                    text = item.get("summary")
                if isinstance(text, str):
                    parts.append(text)
        texts.append("".join(parts))
    return [text for text in texts if text] if texts else texts
