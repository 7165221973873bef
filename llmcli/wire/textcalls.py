"""Tool calls that a model writes as text instead of sending `tool_calls` (pure; no I/O).

Local models behind servers without a tool-call parser for their chat template answer with the call
in the text. `TextCallFilter` recognises the common styles, for declared tool names only, and takes
them out of the answer that is shown:

- Hermes / Qwen 2.5+: `<tool_call>{"name": "f", "arguments": {...}}</tool_call>` (the closing tag
  is often missing at the end of the answer);
- Llama 3.1 JSON: a bare `{"name": "f", "parameters": {...}}` object (also `"arguments"`, and
  `{"type": "function", "name": ...}` or `{"function": {"name": ..., "arguments": ...}}`), alone on
  its line or fenced as ```json; several as a JSON array;
- Llama 3.1 `<|python_tag|>{...}` (ended by `<|eom_id|>`, `<|eot_id|>` or the end; calls may be
  separated by `;`);
- Llama 3.1 custom functions: `<function=f>{...}</function>`;
- Mistral: `[TOOL_CALLS][{"name": "f", "arguments": {...}}]`.

Streaming: text is passed through as it arrives until something could be the start of a call — a
tag's first character anywhere, a `{`, `[` or ``` at the start of a line. From there the text is held back
until it is decided: released at once when it can no longer be a call (`{"answer"` is not), removed
when it is a complete call to a declared tool. Anything still held at the end that does not parse as
a call is released then. Nothing the model wrote is lost: text that is not a call is always shown.
"""

from __future__ import annotations

import json
import re
from typing import Iterable, List, Optional, Tuple

from ..events import ToolCall
from .stream import TextBuffer

TAGS = ("<tool_call>", "<|python_tag|>", "<function=", "[TOOL_CALLS]")
# The keys an object that is a call starts with (after the opening brace).
CALL_KEYS = ('"name"', '"type"', '"function"')
_LINE_START = ("{", "[", "```")
_FUNCTION_TAG = re.compile(r"<function=([A-Za-z0-9_.-]{1,64})>")
_PYTHON_TAG_END = ("<|eom_id|>", "<|eot_id|>")


class TextCallFilter:
    """Feed the answer's text deltas; get back what to show now. `finish()` flushes the rest.

    `calls` holds the recognised calls, in order; `shown` is the whole answer without them.
    """

    def __init__(self, names: Iterable[str], id_prefix: str = "text_call"):
        self.names = set(names)
        self.id_prefix = id_prefix
        self.calls: List[ToolCall] = []
        self._held = ""  # text from a candidate's first character on, not yet decided
        self._shown = TextBuffer()  # compact: not one string per delta (issue 22)
        self._at_line_start = True  # for the line-start candidates ({, [, ```)
        self._pending: List[tuple] = []  # the calls of the candidate being decided
        # Where the scan for the end of a held JSON candidate stopped: the held text only grows while
        # it waits, so each delta is scanned once (a long call streamed in small deltas stays linear).
        self._scan: Optional[_JsonScan] = None

    @property
    def shown(self) -> str:
        return self._shown.value()

    @property
    def holding(self) -> str:
        """The text held back right now (shown by the caller if the stream fails)."""
        return self._held

    def feed(self, text: str) -> str:
        out: List[str] = []
        self._held += text
        while self._held:
            start = self._candidate_start(self._held)
            if start is None:
                out.append(self._release(self._held))
                self._held = ""
                break
            if start:
                out.append(self._release(self._held[:start]))
                self._held, self._scan = self._held[start:], None
            verdict, end = self._decide(self._held, final=False)
            if verdict == "wait":
                break
            if verdict == "call":
                self._commit(end)
                continue
            # not a call: show its first character and look again from the next one
            out.append(self._release(self._held[0]))
            self._held, self._scan = self._held[1:], None
        shown = "".join(out)
        self._shown.append(shown)
        return shown

    def finish(self) -> str:
        """The end of the answer: decide what is still held; returns the text still to show."""
        out: List[str] = []
        while self._held:
            start = self._candidate_start(self._held)
            if start is None:
                out.append(self._release(self._held))
                self._held = ""
                break
            if start:
                out.append(self._release(self._held[:start]))
                self._held, self._scan = self._held[start:], None
            verdict, end = self._decide(self._held, final=True)
            if verdict == "call":
                self._commit(end)
                continue
            out.append(self._release(self._held[0]))
            self._held, self._scan = self._held[1:], None
        self._held = ""
        shown = "".join(out)
        self._shown.append(shown)
        return shown

    # -- internals ---------------------------------------------------------------------------
    def _commit(self, end: int) -> None:
        for name, arguments in self._pending:
            self.calls.append(_tool_call(f"{self.id_prefix}_{len(self.calls)}", name, arguments))
        self._pending = []
        self._held, self._scan = self._held[end:], None

    def _release(self, text: str) -> str:
        if text:
            self._at_line_start = text.rstrip(" \t").endswith("\n") or (self._at_line_start and not text.strip(" \t"))
        return text

    def _candidate_start(self, text: str) -> Optional[int]:
        """Index of the first place in `text` where a call could begin, or None."""
        line_start = self._at_line_start
        for i, ch in enumerate(text):
            if ch in "<[" and any(tag.startswith(text[i:i + len(tag)]) for tag in TAGS):
                return i
            if line_start and any(text.startswith(p, i) or p.startswith(text[i:]) for p in _LINE_START):
                return i
            if ch == "\n":
                line_start = True
            elif ch not in " \t":
                line_start = False
        return None

    def _decide(self, text: str, final: bool) -> Tuple[str, int]:
        """("wait", 0) | ("no", 0) | ("call", end): is `text` (a candidate at 0) a call, and where does it end?"""
        for tag in TAGS:
            if len(text) < len(tag) and tag.startswith(text):
                return ("no", 0) if final else ("wait", 0)
            if text.startswith(tag):
                return self._after_tag(tag, text, final)
        if text.startswith("```") or "```".startswith(text):
            return self._fenced(text, final)
        if text[0] in "{[":
            return self._bare(text, 0, final)
        return "no", 0

    def _after_tag(self, tag: str, text: str, final: bool) -> Tuple[str, int]:
        if tag == "<tool_call>":
            close = text.find("</tool_call>")
            if close < 0 and not final:
                return "wait", 0
            if close >= 0:
                objects, used = _leading_objects(text[len(tag):close])
                if text[len(tag) + used:close].strip():
                    return "no", 0
                return self._accept(objects, close + len("</tool_call>"))
            # no closing tag by the end of the answer (common): the JSON after the tag, if any
            objects, used = _leading_objects(text[len(tag):])
            return self._accept(objects, len(tag) + used)
        if tag == "<function=":
            match = _FUNCTION_TAG.match(text)
            if match is None:
                if not final and re.fullmatch(r"<function=[A-Za-z0-9_.-]{0,64}", text):
                    return "wait", 0
                return "no", 0
            close = text.find("</function>", match.end())
            if close < 0 and not final:
                return "wait", 0
            body = text[match.end():close if close >= 0 else len(text)]
            end = close + len("</function>") if close >= 0 else len(text)
            try:
                arguments = json.loads(body) if body.strip() else {}
            except ValueError:
                return "no", 0
            return self._accept([{"name": match.group(1), "arguments": arguments}], end)
        # <|python_tag|> and [TOOL_CALLS] run to the end of the answer (or an end-of-message token)
        ends = [text.find(t) for t in _PYTHON_TAG_END if text.find(t) >= 0]
        if not ends and not final:
            return "wait", 0
        stop = min(ends) if ends else len(text)
        objects, used = _leading_objects(text[len(tag):stop])
        if text[len(tag) + used:stop].strip():
            return "no", 0
        end = stop + next((len(t) for t in _PYTHON_TAG_END if text.startswith(t, stop)), 0)
        return self._accept(objects, end)

    def _fenced(self, text: str, final: bool) -> Tuple[str, int]:
        if re.fullmatch(r"`{1,3}(j(s(o(n)?)?)?)?[ \t]*\r?\n?[ \t]*", text):
            return ("no", 0) if final else ("wait", 0)  # still inside the opening fence
        match = re.match(r"```(?:json)?[ \t]*\r?\n?[ \t]*", text)
        if match is None:
            return "no", 0
        head = match.end()
        if text[head] not in "{[":
            return "no", 0
        verdict, end = self._bare(text, head, final, fenced=True)
        if verdict != "call":
            return verdict, 0
        close = re.match(r"\s*```", text[end:])
        if close is None:
            if not final and not text[end:].strip():
                return "wait", 0
            if not final and "```".startswith(text[end:].strip()):
                return "wait", 0
            return ("call", end) if final else ("no", 0)
        return "call", end + close.end()

    def _bare(self, text: str, start: int, final: bool, fenced: bool = False) -> Tuple[str, int]:
        """A JSON object (or array of them) at `start` that is a call; decided as early as possible."""
        if not _could_be_call_json(text[start:start + 64]):
            return "no", 0
        if self._scan is None or self._scan.start != start:
            self._scan = _JsonScan(start)
        end = self._scan.end_in(text)
        if end is None:
            return ("no", 0) if final else ("wait", 0)
        try:
            value = json.loads(text[start:end])
        except ValueError:
            return "no", 0
        objects = value if isinstance(value, list) else [value]
        return self._accept(objects, end)

    def _accept(self, objects, end: int) -> Tuple[str, int]:
        calls = [c for c in (_as_call(o) for o in objects) if c is not None]
        if not calls or len(calls) != len(objects) or any(name not in self.names for name, _ in calls):
            return "no", 0
        self._pending = calls
        return "call", end


def parse_text_calls(text: str, names: Iterable[str], id_prefix: str = "text_call") -> Tuple[str, List[ToolCall]]:
    """The whole answer at once: (the text without the calls, the calls)."""
    f = TextCallFilter(names, id_prefix)
    shown = f.feed(text) + f.finish()
    return shown, f.calls


def _could_be_call_json(text: str) -> bool:
    """Whether `text` (starting at { or [) could still be the start of a call object or array."""
    rest = text
    if rest.startswith("["):
        rest = rest[1:].lstrip()
        if not rest:
            return True
        if rest[0] != "{":
            return False
    rest = rest[1:].lstrip()
    if not rest:
        return True
    return any(key.startswith(rest[:len(key)]) for key in CALL_KEYS)


class _JsonScan:
    """Finds the end of the JSON value that starts at `start`, resuming where the last call stopped."""

    def __init__(self, start: int):
        self.start = self.pos = start
        self.depth, self.in_string, self.escaped = 0, False, False

    def end_in(self, text: str) -> Optional[int]:
        """The index just after the value, or None if `text` does not close it yet."""
        depth, in_string, escaped = self.depth, self.in_string, self.escaped
        for i in range(self.pos, len(text)):
            ch = text[i]
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
        self.pos, self.depth, self.in_string, self.escaped = len(text), depth, in_string, escaped
        return None


def _json_end(text: str, start: int) -> Optional[int]:
    """The index just after the JSON object/array that starts at `start`, or None if it is not closed yet."""
    return _JsonScan(start).end_in(text)


def _leading_objects(body: str) -> Tuple[list, int]:
    """The JSON values at the start of a tag's body — one object, an array of them, or several
    separated by `;`, `,` or newlines — and how many characters they took."""
    out: list = []
    i = used = 0
    while i < len(body):
        while i < len(body) and body[i] in " \t\r\n;,":
            i += 1
        if i >= len(body) or body[i] not in "{[":
            break
        end = _json_end(body, i)
        if end is None:
            break
        try:
            value = json.loads(body[i:end])
        except ValueError:
            break
        out.extend(value if isinstance(value, list) else [value])
        i = used = end
    return out, used


def _as_call(obj) -> Optional[Tuple[str, object]]:
    """(name, arguments) from the shapes models use, or None."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # {"type": "function", "function": {"name", "arguments"}}
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None
    if set(obj) - {"name", "arguments", "parameters", "type", "id"}:
        return None  # an object with other keys is data that happens to have a name, not a call
    arguments = obj.get("arguments", obj.get("parameters", {}))
    return name, arguments


def _tool_call(call_id: str, name: str, arguments) -> ToolCall:
    if isinstance(arguments, str):  # double-encoded arguments
        raw = arguments
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return ToolCall(id=call_id, name=name, arguments_raw=raw, arguments=None,
                            parse_error="the arguments are not a JSON object")
    if arguments is None:
        arguments = {}
    raw = json.dumps(arguments, ensure_ascii=False)
    if not isinstance(arguments, dict):
        return ToolCall(id=call_id, name=name, arguments_raw=raw, arguments=None,
                        parse_error="tool-call arguments must be a JSON object")
    return ToolCall(id=call_id, name=name, arguments_raw=raw, arguments=arguments, parse_error=None)
