"""Every value a run emits or produces: pure, immutable-in-spirit value types (no I/O, no llmcli imports).

The contract between the layers: `wire` decodes bytes into these, `run` drives turns and emits them,
`output` renders them, and `cli`/`repl` pick a renderer. A renderer imports this module and `errors`,
never the loop or the transport (STYLE.md; modelled on simonw/llm's `llm/parts.py`, "pure values").
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Union


class Value:
    """What `@dataclass` would generate (init, repr, ==, and hash when frozen), written once: each
    generated dataclass costs ~0.25 ms of exec() at import, paid by every run (issue 22), and these
    small event values are made per chunk, where __slots__ is also the cheaper instance."""

    __slots__ = ()

    def _values(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __repr__(self):
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    __hash__ = None  # mutable, like a plain @dataclass

    def replace(self, **changes):
        """A copy with some fields changed (dataclasses.replace)."""
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        new = object.__new__(type(self))
        for name in self.__slots__:
            _set(new, name, changes[name] if name in changes else getattr(self, name))
        return new


class FrozenValue(Value):
    """As @dataclass(frozen=True): assignment raises (AttributeError, as FrozenInstanceError is one)."""

    __slots__ = ()

    def __hash__(self):
        return hash(self._values())

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete field {name!r}")


_set = object.__setattr__

# --- typed events -----------------------------------------------------------------------------


class TextDelta(FrozenValue):
    """A piece of the answer (the only thing that goes to stdout)."""

    __slots__ = ("text",)
    text: str

    def __init__(self, text: str):
        _set(self, "text", text)


class ReasoningDelta(FrozenValue):
    """A piece of the model's reasoning: stderr at most, never stdout (PROTOCOL.md §2)."""

    __slots__ = ("text",)
    text: str

    def __init__(self, text: str):
        _set(self, "text", text)


class RefusalDelta(FrozenValue):
    """A piece of a refusal: a warning on stderr, never printed as the answer (PROTOCOL.md §2)."""

    __slots__ = ("text",)
    text: str

    def __init__(self, text: str):
        _set(self, "text", text)


class UsageUpdate(FrozenValue):
    """A non-null `usage` object arrived; the last one wins."""

    __slots__ = ("usage",)
    usage: dict

    def __init__(self, usage: dict):
        _set(self, "usage", usage)


class FinishReason(FrozenValue):
    """The choice's `finish_reason` arrived (stop, length, tool_calls, content_filter, ...)."""

    __slots__ = ("reason",)
    reason: str

    def __init__(self, reason: str):
        _set(self, "reason", reason)


class ToolCallDelta(FrozenValue):
    """A piece of a tool call while it streams, for UIs that show a call forming (`--jsonl`).

    `index` is the call's position in the turn (0, 1, …: the order of the complete calls that follow),
    whatever index the provider sent; `id` and `name` are what is known so far (None until they
    arrive); `arguments` is this delta's raw fragment ("" when it carried none). Only emitted when the
    decoder is asked to (`StreamDecoder.emit_tool_call_deltas`): the complete call is the contract.
    """

    __slots__ = ("index", "id", "name", "arguments")
    index: int
    id: Optional[str]
    name: Optional[str]
    arguments: str

    def __init__(self, index: int, id: Optional[str], name: Optional[str], arguments: str):
        _set(self, "index", index)
        _set(self, "id", id)
        _set(self, "name", name)
        _set(self, "arguments", arguments)


class TokenLogprobs(FrozenValue):
    """The logprobs of the tokens of the TextDelta that follows it (chat `logprobs: true`): OpenAI's
    `choices[].logprobs.content` entries, `{token, logprob, bytes, top_logprobs: [...]}`, as sent."""

    __slots__ = ("entries",)
    entries: list

    def __init__(self, entries: list):
        _set(self, "entries", entries)


class CompletionChunk(FrozenValue):
    """One choice's piece of a legacy `/completions` stream (`llmcli complete`): its text, and the token
    ids and logprobs the server sent with it (vLLM's `return_token_ids`, `logprobs: N`)."""

    __slots__ = ("index", "text", "token_ids", "logprobs", "finish_reason")
    index: int
    text: str
    token_ids: Optional[list]
    logprobs: Optional[dict]
    finish_reason: Optional[str]

    def __init__(self, index: int, text: str, token_ids: Optional[list] = None, logprobs: Optional[dict] = None,
                 finish_reason: Optional[str] = None):
        _set(self, "index", index)
        _set(self, "text", text)
        _set(self, "token_ids", token_ids)
        _set(self, "logprobs", logprobs)
        _set(self, "finish_reason", finish_reason)


StreamEvent = Union[TextDelta, ReasoningDelta, RefusalDelta, UsageUpdate, FinishReason, ToolCallDelta,
                    TokenLogprobs]


# --- tool calls ---------------------------------------------------------------------------------


class ToolCall(Value):
    """One complete tool call, known only once the stream has ended (PROTOCOL.md §3)."""

    __slots__ = ("id", "name", "arguments_raw", "arguments", "parse_error")
    id: str
    name: str
    arguments_raw: str
    arguments: Optional[dict]
    parse_error: Optional[str]

    def __init__(self, id: str, name: str, arguments_raw: str, arguments: Optional[dict],
                 parse_error: Optional[str]):
        self.id = id
        self.name = name
        self.arguments_raw = arguments_raw
        self.arguments = arguments
        self.parse_error = parse_error

    @property
    def shown_arguments(self):
        """For people and JSON output: the parsed object, or the raw text when it did not parse."""
        return self.arguments if self.arguments is not None else self.arguments_raw

    def to_message_dict(self) -> dict:
        """The entry for the assistant message's `tool_calls` in the follow-up request.

        `function.arguments` is always a JSON *string* holding valid JSON (PROTOCOL.md §3): strict
        providers reject a follow-up whose arguments do not parse, so invalid JSON (quoted back to the
        model in the tool's error result instead) and no arguments are both sent as "{}".
        """
        raw = self.arguments_raw
        if not raw.strip() or self.parse_error is not None:
            raw = "{}"
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": raw}}


# --- the turn -----------------------------------------------------------------------------------


class TurnResult(Value):
    """Everything one turn produced; also the partial result of a failed turn."""

    __slots__ = ("content", "reasoning", "refusal", "finish_reason", "tool_calls", "usage", "model",
                 "reasoning_details", "logprobs")
    content: str
    reasoning: str
    refusal: str
    finish_reason: Optional[str]
    tool_calls: List[ToolCall]
    usage: Optional[dict]
    model: Optional[str]
    # OpenRouter's `reasoning_details` items as received (stream fragments of one item merged), to be
    # handed back verbatim: thinking models need them across tool calls (issue 18).
    reasoning_details: Optional[list]
    logprobs: Optional[list]  # the chosen tokens' logprobs entries, when asked for (--logprobs)

    def __init__(self, content: str, reasoning: str, refusal: str, finish_reason: Optional[str],
                 tool_calls: Optional[List[ToolCall]] = None, usage: Optional[dict] = None,
                 model: Optional[str] = None, reasoning_details: Optional[list] = None,
                 logprobs: Optional[list] = None):
        self.content = content
        self.reasoning = reasoning
        self.refusal = refusal
        self.finish_reason = finish_reason
        self.tool_calls = tool_calls if tool_calls is not None else []
        self.usage = usage
        self.model = model
        self.reasoning_details = reasoning_details
        self.logprobs = logprobs

    def assistant_message(self, reasoning_field: Optional[str] = None) -> dict:
        """The assistant message to send back before the tool results (PROTOCOL.md §3).

        Reasoning and refusal are not sent back unless `reasoning_field` names how this provider takes
        it (`send_reasoning` in the config): several providers reject unknown fields in input, and
        DeepSeek rejects its own `reasoning_content`. "reasoning_details" (OpenRouter) sends the
        details verbatim, or the text as `reasoning` when there were none; "reasoning_content" (vLLM,
        llama.cpp, Moonshot, ...) sends the text.
        """
        # "" rather than null when the turn only called tools: OpenAI accepts either, but
        # llama-cpp-python's server (HTTP 500), llama.cpp's server (ggml-org/llama.cpp#13471) and SGLang reject null.
        message: Dict[str, Any] = {"role": "assistant", "content": self.content}
        if reasoning_field == "reasoning_details":
            if self.reasoning_details:
                message["reasoning_details"] = self.reasoning_details
            elif self.reasoning:
                message["reasoning"] = self.reasoning
        elif reasoning_field and self.reasoning:
            message[reasoning_field] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = [call.to_message_dict() for call in self.tool_calls]
        return message


# --- what the loop and the transport emit around turns ---------------------------------------


class Retrying(Value):
    """Emitted before a back-off sleep."""

    __slots__ = ("attempt", "delay", "reason")

    attempt: int  # the attempt that failed, 1-based
    delay: float
    reason: str

    def __init__(self, attempt: int, delay: float, reason: str):
        self.attempt = attempt
        self.delay = delay
        self.reason = reason


class ToolActivity(Value):
    """A tool call being run, and how it went."""

    __slots__ = ("call", "round", "output", "error", "seconds")
    call: ToolCall
    round: int
    output: Optional[str]
    error: Optional[str]
    seconds: float

    def __init__(self, call: ToolCall, round: int, output: Optional[str] = None, error: Optional[str] = None,
                 seconds: float = 0.0):
        self.call = call
        self.round = round
        self.output = output
        self.error = error
        self.seconds = seconds

    def to_dict(self):
        return {
            "id": self.call.id,
            "name": self.call.name,
            "arguments": self.call.shown_arguments,
            "output": self.output,
            "error": self.error,
        }

    @property
    def content(self) -> str:
        """What the model gets back as the `role: tool` message."""
        if self.error is not None:
            return f"error: {self.error}"
        return self.output or ""


class ToolStarted(Value):
    __slots__ = ("activity",)
    activity: ToolActivity

    def __init__(self, activity: ToolActivity):
        self.activity = activity


class ToolFinished(Value):
    __slots__ = ("activity",)
    activity: ToolActivity

    def __init__(self, activity: ToolActivity):
        self.activity = activity


class TurnDone(Value):
    __slots__ = ("turn", "round")
    turn: TurnResult
    round: int

    def __init__(self, turn: TurnResult, round: int):
        self.turn = turn
        self.round = round


class RunWarning(Value):
    __slots__ = ("message",)
    message: str

    def __init__(self, message: str):
        self.message = message



def describe_arguments(call: ToolCall, limit: int = 100) -> str:
    text = json.dumps(call.arguments, ensure_ascii=False) if call.arguments is not None else call.arguments_raw
    return text if len(text) <= limit else text[: limit - 1] + "…"
