"""The turn loop: request → stream → accumulate → run tools → repeat (a plain object, no click, no I/O).

`ChatRun.events()` is a generator of events for a renderer to write; the run's state (text so far,
reasoning, tool activity, usage, timing) lives on the object, so whatever fails, the caller still
has what arrived (PROTOCOL.md §2: "the user keeps what arrived").
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional

from ..config.settings import Settings
from ..errors import LLMCliError, ToolError, ToolRoundLimit
from ..wire.stream import (FinishReason, ReasoningDelta, RefusalDelta, TextBuffer, TextDelta, TokenLogprobs, ToolCall,
                           TurnResult)


from ..events import RunWarning, ToolActivity, ToolFinished, ToolStarted, TurnDone, describe_arguments  # noqa: F401



def make_tool_settings(settings: Settings):
    """ToolSettings from the resolved config (tools.web_search / tools.web_fetch and flags)."""
    from ..tools import ToolSettings

    cfg = dict(settings.tool_config)
    search = cfg.get("web_search") or {}
    fetch = cfg.get("web_fetch") or {}
    kwargs = {}
    backend = search.get("backend")
    if backend is False:  # YAML reads `backend: off` as false
        backend = "off"
    if backend:
        kwargs["search_backend"] = str(backend)
    if search.get("brave_api_key"):
        kwargs["brave_api_key"] = str(search["brave_api_key"])
    if search.get("brave_url"):
        kwargs["brave_url"] = str(search["brave_url"])
    if search.get("searxng_url"):
        kwargs["searxng_url"] = str(search["searxng_url"])
    if search.get("duckduckgo_url"):
        kwargs["duckduckgo_url"] = str(search["duckduckgo_url"])
    for key, convert in (("timeout", float), ("max_bytes", int), ("max_chars", int), ("max_redirects", int)):
        if fetch.get(key) is not None:
            kwargs[key] = convert(fetch[key])
    kwargs["allow_private"] = settings.allow_private_urls
    return ToolSettings(**kwargs)


PARTIAL_KEY = "partial"  # on a kept assistant message: "interrupted" (Ctrl-C/SIGTERM) or "incomplete" (error)


def sendable(messages: List[dict]) -> List[dict]:
    """The messages as the server may see them: llmcli's own bookkeeping (the partial mark) removed."""
    if not any(PARTIAL_KEY in m for m in messages):
        return messages
    return [{k: v for k, v in m.items() if k != PARTIAL_KEY} if PARTIAL_KEY in m else m for m in messages]


def close_open_tool_calls(messages: List[dict]) -> None:
    """Answer tool calls a stopped run never ran: the API refuses a call without its `tool` reply."""
    for index in range(len(messages) - 1, -1, -1):
        msg = messages[index]
        if msg.get("role") == "user":
            return
        if msg.get("role") == "assistant" and msg.get("tool_calls"):
            answered = {m.get("tool_call_id") for m in messages[index + 1:] if m.get("role") == "tool"}
            for call in msg["tool_calls"]:
                if call.get("id") not in answered:
                    messages.append({"role": "tool", "tool_call_id": call.get("id"),
                                     "content": "error: not run (interrupted)"})
            return


def build_request_body(settings: Settings, messages: List[dict], tool_schemas: List[dict], stream: bool = True) -> dict:
    body: Dict = {}
    if settings.model:
        body["model"] = settings.model
    body["messages"] = reasoning_for_provider(sendable(messages), settings)
    body["stream"] = stream
    if stream:
        # Ask for the usage chunk; servers that do not know the option ignore it (-o stream_options null drops it).
        body["stream_options"] = {"include_usage": True}
    if tool_schemas:
        body["tools"] = tool_schemas
    for key, value in settings.options:
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


REASONING_FIELDS = ("reasoning_content", "reasoning", "reasoning_details")


def reasoning_for_provider(messages: List[dict], settings: Settings) -> List[dict]:
    """The messages with only the reasoning fields this provider takes (send_reasoning).

    A conversation can carry reasoning from elsewhere (a --history saved from OpenRouter, a REPL that
    switched provider): DeepSeek answers HTTP 400 to its own `reasoning_content`, and strict servers
    reject fields they do not know, so the other fields are dropped here, on the copy that is sent.
    """
    mode = getattr(settings, "send_reasoning", "never")
    field = getattr(settings, "reasoning_field", "reasoning_content")
    keep = () if mode == "never" else (("reasoning_details", "reasoning") if field == "reasoning_details"
                                       else (field,))
    out = None
    for i, message in enumerate(messages):
        if message.get("role") == "assistant" and any(k in message and k not in keep for k in REASONING_FIELDS):
            if out is None:
                out = list(messages)
            out[i] = {k: v for k, v in message.items() if k not in REASONING_FIELDS or k in keep}
    return messages if out is None else out


def run_timing(run) -> dict:
    """`timing` of a run's --json document, from its `started`, `first_token_at` and `ended_at` clocks;
    transports may add their own numbers (the local provider: model load time, tokens/second)."""
    end = run.ended_at or time.monotonic()
    timing = {
        "first_token_ms": None if run.first_token_at is None else round((run.first_token_at - run.started) * 1000),
        "total_ms": round((end - run.started) * 1000),
    }
    extra = getattr(run.transport, "timing_info", None)
    if callable(extra):
        timing.update(extra() or {})
    return timing


def sum_usage(usages: List[dict]) -> Optional[dict]:
    """Usage across tool rounds: numbers added up, nested details too; the last round's other fields win."""
    if not usages:
        return None
    if len(usages) == 1:
        return usages[0]

    def merge(a, b):
        out = dict(a)
        for k, v in b.items():
            if isinstance(v, bool) or k not in out:
                out[k] = v
            elif isinstance(v, (int, float)) and isinstance(out[k], (int, float)) and not isinstance(out[k], bool):
                out[k] = out[k] + v
            elif isinstance(v, dict) and isinstance(out[k], dict):
                out[k] = merge(out[k], v)
            else:
                out[k] = v
        return out

    total: dict = {}
    for u in usages:
        total = merge(total, u)
    return total


class ChatRun:
    """One user request: as many model turns as the tool loop needs."""

    def __init__(
        self,
        transport,
        settings: Settings,
        messages: List[dict],
        tools: Optional[list] = None,
        tool_settings=None,
        confirm: Optional[Callable[[ToolCall], str]] = None,
        stream: bool = True,
        approval=None,
        budget=None,
    ):
        self.transport = transport
        self.settings = settings
        self.messages = list(messages)
        self.tools = {t.name: t for t in (tools or [])}
        self.tool_settings = tool_settings
        self.confirm = confirm
        # The approval policy (llmcli.tools.approval); without one, the old rule: ask only when a
        # confirm callback is given (--confirm-tools), else allow.
        self.approval = approval
        # llmcli.run.budget.Budget: checked before every request; shared by a chat session's runs.
        self.budget = budget
        self.pending_warnings: List[str] = []
        self.stream = stream
        self.max_rounds = settings.max_tool_rounds
        self.max_calls_per_turn = settings.max_tool_calls
        # state, readable at any time (also after a failure)
        # The answer and the reasoning so far, every turn, each kept once and compactly (TextBuffer:
        # not one string per delta). `_content` holds the turns that ended; the turn in progress is
        # read from its decoder's own buffer (`_live_exchange`), so a streamed answer is held once, not
        # twice (issue 22), or from `_turn_own` where the run's text differs from the decoder's
        # (--text-tool-calls takes calls out of it). `content` reads both, `turn_text()` the live one.
        self._content = TextBuffer()
        self._reasoning = TextBuffer()
        self._live_exchange = None
        self._turn_own: Optional[TextBuffer] = None
        self.refusal_parts: List[str] = []
        self.logprobs: List[dict] = []  # the answer's token logprobs, every turn (--logprobs)
        self.tool_activity: List[ToolActivity] = []
        self.usages: List[dict] = []
        self.usage_models: List[Optional[str]] = []  # the model each entry of `usages` came from
        self.finish_reason: Optional[str] = None
        self.model: Optional[str] = settings.model
        self.started = time.monotonic()
        self.first_token_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        self.unexecuted_calls: List[ToolCall] = []
        self.requests_sent = 0
        self._always_allowed = False
        # A last word on each request body (run/structured.py sets response_format through it).
        self.body_hook: Optional[Callable[[dict], dict]] = None
        # ToolCallDelta events while calls stream (`--jsonl` shows calls forming; others need not pay).
        self.tool_call_deltas = False

    # -- state -------------------------------------------------------------------------------
    @property
    def content(self) -> str:
        live = self._turn_buffer()
        if live is None or not live:
            return self._content.value()
        if not self._content:
            return live.value()
        return self._content.value() + live.value()

    @property
    def reasoning(self) -> str:
        return self._reasoning.value()

    def clear_content(self) -> None:
        """Forget the answer so far (run/structured.py: the document is the last attempt's answer)."""
        self._content.clear()
        self._live_exchange = self._turn_own = None

    def turn_text(self) -> str:
        """The text of the turn in progress (empty between turns)."""
        live = self._turn_buffer()
        return live.value() if live is not None else ""

    def _turn_buffer(self) -> Optional[TextBuffer]:
        if self._turn_own is not None:
            return self._turn_own
        exchange = self._live_exchange
        return exchange.decoder.content_buffer if exchange is not None else None

    def _end_turn_text(self, text: Optional[str] = None) -> None:
        """The turn's text joins the run's; `text` (the TurnResult's, when equal) is the object kept."""
        live = self._turn_buffer()
        if live is not None and live:
            seen = live.value()
            self._content.append(text if text is not None and text == seen else seen)
        self._live_exchange = self._turn_own = None

    @property
    def usage(self) -> Optional[dict]:
        return sum_usage(self.usages)

    def turn_costs(self) -> list:
        """The cost of each request that reported usage (run.cost.Cost values; priced lazily)."""
        from .cost import run_costs

        return run_costs(self.usages, self.usage_models, self.settings.provider, self.settings.base_url)

    @property
    def cost(self):
        """What the whole run cost (`Cost`: amount, currency, source reported|estimated|unknown).

        Computed when asked for, so a run nobody asks the price of never imports the price table; a
        request that reported no usage makes the total unknown."""
        from .cost import UNKNOWN, sum_costs

        if self.requests_sent > len(self.usages):
            return UNKNOWN
        return sum_costs(self.turn_costs())

    def tool_calls_summary(self) -> List[dict]:
        """Every tool call of the run for `--json`: the ones run, then the ones left unexecuted."""
        out = [a.to_dict() for a in self.tool_activity]
        for call in self.unexecuted_calls:
            out.append({"id": call.id, "name": call.name, "arguments": call.shown_arguments,
                        "output": None, "error": "not executed"})
        return out

    def timing(self) -> dict:
        return run_timing(self)

    # -- the loop ----------------------------------------------------------------------------
    def events(self):
        try:
            round_no = 0
            while True:
                turn = yield from self._one_turn(round_no)
                calls = turn.tool_calls
                self._end_turn_text(turn.content)  # in the conversation now, not "in progress"
                self.messages.append(turn.assistant_message(self._reasoning_field(turn)))
                yield TurnDone(turn, round_no)
                while self.pending_warnings:
                    yield RunWarning(self.pending_warnings.pop(0))
                if not calls:
                    return
                if not self.tools:
                    # The server sent calls for tools we did not offer (e.g. a pinned tool_choice): report, do not run.
                    self.unexecuted_calls.extend(calls)
                    self.messages.pop()
                    self.messages.append(_without_calls(turn))
                    yield RunWarning("the model asked for tools ("
                                   + ", ".join(c.name or "?" for c in calls)
                                   + ") but none are enabled; enable them with -T NAME or --tools")
                    return
                round_no += 1
                if round_no > self.max_rounds:
                    self.unexecuted_calls.extend(calls)
                    self.messages.pop()
                    raise ToolRoundLimit(
                        f"the model was still calling tools after {self.max_rounds} rounds "
                        "(--max-tool-rounds); stopping")
                for number, call in enumerate(calls):
                    activity = ToolActivity(call, round_no)
                    self.tool_activity.append(activity)
                    yield ToolStarted(activity)
                    if number >= self.max_calls_per_turn:
                        # A server can ask for thousands of calls in one turn; the extra ones are not
                        # run, and the model reads why (every call id still gets its answer).
                        activity.error = (f"not run: more than {self.max_calls_per_turn} tool calls in one turn "
                                          "(tools.max_calls); call fewer tools at a time")
                    else:
                        self._run_tool(activity)
                    self.messages.append({"role": "tool", "tool_call_id": call.id, "content": activity.content})
                    yield ToolFinished(activity)
                    while self.pending_warnings:
                        yield RunWarning(self.pending_warnings.pop(0))
        finally:
            self.ended_at = time.monotonic()

    def _reasoning_field(self, turn: TurnResult) -> Optional[str]:
        """How this turn's reasoning goes back on its assistant message, or None (send_reasoning)."""
        mode = getattr(self.settings, "send_reasoning", "never")
        if mode == "always" or (mode == "tool_turns" and turn.tool_calls):
            return getattr(self.settings, "reasoning_field", "reasoning_content")
        return None

    def _one_turn(self, round_no):
        from ..wire.client import Retrying

        body = build_request_body(self.settings, self.messages, [t.schema() for t in self.tools.values()], self.stream)
        if round_no > 0 and _forces_a_call(body.get("tool_choice")):
            # A tool_choice that forces a call ("required" or a named function) holds for the first
            # request only: repeated after the results, it makes the model call again on every round,
            # so the run could only end at --max-tool-rounds. Afterwards the model may answer.
            body["tool_choice"] = "auto"
        if self.body_hook is not None:
            body = self.body_hook(body)
        exchange = None
        self._end_turn_text()
        if self.budget is not None:
            self.budget.before_request(body)  # BudgetExceeded: this request is not sent
        try:
            for item in self.transport.open(body):
                if isinstance(item, Retrying):
                    yield item
                else:
                    exchange = item
        except BaseException:
            if self.budget is not None:
                self.budget.abandon()
            raise
        self.requests_sent += 1
        if self.tool_call_deltas and hasattr(exchange.decoder, "emit_tool_call_deltas"):
            exchange.decoder.emit_tool_call_deltas = True
        textcalls = None
        if self.settings.text_tool_calls and self.tools:
            from ..wire.textcalls import TextCallFilter

            # ids unique in the conversation (a chat starts each message at round 0): count its turns
            turn_no = sum(1 for m in self.messages if isinstance(m, dict) and m.get("role") == "assistant")
            textcalls = TextCallFilter(self.tools, id_prefix=f"text_call_{turn_no}")
        # The turn's text is the decoder's own buffer (every chat decoder has `content_buffer`) unless the
        # run's text differs from it.
        own = textcalls is not None
        if own:
            self._turn_own = TextBuffer()
        else:
            self._live_exchange = exchange
        try:
            try:
                events = exchange.events() if textcalls is None else _text_calls_removed(exchange.events(), textcalls)
                for ev in events:
                    if isinstance(ev, TextDelta):
                        self._first_token()
                        if own:
                            self._turn_own.append(ev.text)
                    elif isinstance(ev, ReasoningDelta):
                        self._first_token()
                        self._reasoning.append(ev.text)
                    elif isinstance(ev, RefusalDelta):
                        self.refusal_parts.append(ev.text)
                    elif isinstance(ev, TokenLogprobs):
                        self.logprobs.extend(ev.entries)
                    elif isinstance(ev, FinishReason):
                        self.finish_reason = ev.reason
                    yield ev
                turn = exchange.decoder.finish()
                if textcalls is not None:
                    turn = _with_text_calls(turn, textcalls)
            except LLMCliError:
                if textcalls is not None and textcalls.holding:
                    # the stream failed while a possible call was held back: the user keeps that text
                    held = TextDelta(textcalls.holding)
                    self._turn_own.append(held.text)
                    yield held
                partial = exchange.decoder.partial_result()
                self._note_turn(partial)
                self._count_spend(body, partial)
                raise
            except BaseException:  # Ctrl-C: what arrived still counts
                self._count_spend(body, None)
                raise
            self._note_turn(turn)
            self._count_spend(body, turn)
            if turn.finish_reason == "length" and self.budget is not None and self.budget.output_limit_set:
                self.pending_warnings.append(
                    f"the budget limited this answer to {self.budget.output_limit_set:,} output tokens "
                    "(what --max-cost/--max-tokens-total still allowed)")
            return turn
        finally:
            exchange.close()

    def _count_spend(self, body: dict, turn: Optional[TurnResult]) -> None:
        if self.budget is None:
            return
        usage = turn.usage if turn is not None else None
        cost = None
        if self.budget.needs_prices and usage:
            from .cost import turn_cost

            cost = turn_cost(usage, turn.model or self.settings.model, self.settings.provider, self.settings.base_url)
        self.budget.after_request(body, usage, cost, self.turn_text())

    def _note_turn(self, turn: TurnResult):
        if turn.model:
            self.model = turn.model
        if turn.usage:
            self.usages.append(turn.usage)
            self.usage_models.append(turn.model or self.settings.model)
        if turn.finish_reason:
            self.finish_reason = turn.finish_reason

    def _first_token(self):
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def _run_tool(self, activity: ToolActivity):
        call = activity.call
        started = time.monotonic()
        try:
            if call.parse_error:
                raw = call.arguments_raw if len(call.arguments_raw) <= 200 else call.arguments_raw[:200] + "…"
                raise ToolError(f"the arguments are not valid JSON ({call.parse_error}): {raw}; "
                                "call the tool again with a JSON object")
            tool = self.tools.get(call.name)
            if tool is None:
                available = ", ".join(self.tools) or "none"
                raise ToolError(f"unknown tool {call.name!r}; available tools: {available}")
            args = tool.validate(call.arguments or {})
            self._approve(call, tool)
            activity.output = tool.run(args, self.tool_settings)
        except ToolError as exc:
            activity.error = str(exc)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a tool bug must not end the run: the model hears about it
            activity.error = f"the tool failed unexpectedly: {type(exc).__name__}: {exc}"
        finally:
            activity.seconds = time.monotonic() - started

    def _approve(self, call: ToolCall, tool):
        """Raise ToolError (which the model reads) unless the policy or the user allows this call."""
        if self.approval is None:
            decision = "ask" if self.confirm is not None and not self._always_allowed else "allow"
        else:
            decision = self.approval.decide(tool.name, getattr(tool, "origin", "builtin"),
                                            getattr(tool, "aliases", ()))
        if decision == "allow":
            return
        if decision == "deny":
            raise ToolError(f"refused: the approval policy denies {tool.name} "
                            "(tools.approval / --deny-tool); do not call it again")
        answer = self.confirm(call) if self.confirm is not None else "no-terminal"
        if answer == "always":
            self._always_allowed = True
            if self.approval is not None:
                self.approval.remember(tool.name)
            return
        if answer == "yes":
            return
        if answer == "no-terminal":
            self.pending_warnings.append(
                f"refused {tool.name}: it needs approval and there is no terminal to ask; "
                f"allow it with --allow-tool {tool.name} (or --yes, or tools.approval: {{{tool.name}: allow}})")
            # The model reads the same words as for a "no" at the prompt (tests/test_tool_loop.py).
            raise ToolError("refused by user")
        raise ToolError("refused by user")

    def partial_assistant_message(self, why: str = "incomplete") -> Optional[dict]:
        """The text of the turn in progress, marked partial as metadata (never as text the model reads)."""
        text = self.turn_text()
        if not text:
            return None
        return {"role": "assistant", "content": text, PARTIAL_KEY: why}

    def kept_conversation(self, error=None, interrupted: bool = False) -> List[dict]:
        """The one policy that keeps a conversation valid however the run ended (ask --save, chat, the
        log): tool calls that never ran are answered, and a partial answer is kept, marked partial."""
        messages = list(self.messages)
        if error is not None or interrupted:
            close_open_tool_calls(messages)
            partial = self.partial_assistant_message("interrupted" if interrupted else "incomplete")
            if partial is not None:
                messages.append(partial)
        return messages


def _text_calls_removed(events, textcalls):
    """The turn's events with tool calls written as text taken out of the TextDeltas (--text-tool-calls).
    The finish reason waits until the held-back text is decided, so it still comes after the last text."""
    finish = []
    for ev in events:
        if isinstance(ev, TextDelta):
            shown = textcalls.feed(ev.text)
            if shown:
                yield TextDelta(shown)
        elif isinstance(ev, FinishReason):
            finish.append(ev)
        else:
            yield ev
    tail = textcalls.finish()
    if tail:
        yield TextDelta(tail)
    yield from finish


def _with_text_calls(turn: TurnResult, textcalls) -> TurnResult:
    """The turn as if the calls written as text had come as `tool_calls` (its content without them)."""
    if not textcalls.calls:
        return turn
    return turn.replace(content=textcalls.shown, tool_calls=list(turn.tool_calls) + textcalls.calls)


def _forces_a_call(tool_choice) -> bool:
    return tool_choice == "required" or (isinstance(tool_choice, dict) and tool_choice.get("type") == "function")


def _without_calls(turn: TurnResult) -> dict:
    msg = turn.assistant_message()
    msg.pop("tool_calls", None)
    return msg
