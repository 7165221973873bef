"""Renderers: text, --json and --jsonl, over file objects they are given. Chosen once, at the top.

stdout carries only the answer (or exactly one JSON document, or JSON lines); everything else goes to
stderr. On a terminal every delta is flushed; in a pipe output is buffered and flushed at line ends
(and at least every 100 ms), so `llmcli ask … | other` still streams without a syscall per token.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Optional

from ..errors import LLMCliError
from .sanitize import StreamSanitizer, sanitize
from ..events import (FinishReason, ReasoningDelta, RefusalDelta, Retrying, RunWarning, TextDelta, TokenLogprobs, ToolCallDelta, ToolFinished,
                      ToolStarted, TurnDone, UsageUpdate, describe_arguments)

DIM = "\x1b[2m"
YELLOW = "\x1b[33m"
RED = "\x1b[31m"
RESET = "\x1b[0m"
PIPE_FLUSH_INTERVAL = 0.1


def color_enabled(stream, env=os.environ) -> bool:
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Diagnostics:
    """Lines on stderr: `llmcli: warning: …`, dim notes, retries.

    On a terminal every line is sanitized (it may quote a server, a tool's arguments or a web page; issue
    13) before llmcli's own styling is added; `safe=None` decides by `err.isatty()`.
    """

    def __init__(self, err, color: bool, safe: Optional[bool] = None):
        self.err = err
        self.color = color
        self.safe = _isatty(err) if safe is None else safe

    def clean(self, text: str) -> str:
        """``text`` as it may be shown on stderr (sanitized, bidi overrides too, on a terminal)."""
        return sanitize(text, bidi=True) if self.safe else text

    @staticmethod
    def clean_for_terminal(text: str) -> str:
        """``text`` sanitized whatever ``err`` is (for the /dev/tty confirm prompt)."""
        return sanitize(text, bidi=True)

    def _line(self, text, style=""):
        text = self.clean(text)
        if self.color and style:
            text = f"{style}{text}{RESET}"
        try:
            self.err.write(text + "\n")
            self.err.flush()
        except (BrokenPipeError, ValueError):
            pass

    def warning(self, message):
        self._line(f"llmcli: warning: {message}", YELLOW)

    def error(self, message):
        self._line(f"llmcli: error: {message}", RED)

    def note(self, message):
        self._line(message, DIM)

    def retry(self, ev):
        self._line(f"llmcli: retrying in {ev.delay:.1f} s: {ev.reason}", YELLOW)

    def tool(self, activity):
        call = activity.call
        if activity.error is not None:
            result = f"error: {activity.error}"
        else:
            result = f"{len(activity.output or ''):,} chars"
        self._line(f"[tool] {call.name}({describe_arguments(call)}) → {result} ({activity.seconds:.1f} s)", DIM)

    def usage(self, usage: Optional[dict], timing: dict, cost=None):
        """`tokens: 1,234 in / 567 out · $0.0041 (estimated) · 1.2 s` (cost: a run.cost.Cost, or None)."""
        seconds = f"{timing['total_ms'] / 1000:.1f} s"
        if not usage:
            self.note(f"tokens: not reported by the server; cost unknown; {seconds}")
            return
        parts = usage_parts(usage, cost) + [seconds]
        speed = _tokens_per_second(usage, timing)
        if speed is not None:
            parts.append(f"{speed:,.0f} tok/s")
        self.note("tokens: " + " · ".join(parts))


def _tokens_per_second(usage: dict, timing: dict) -> Optional[float]:
    """Generation speed: the local model measures it; for a server, answer tokens over the time from the
    first token to the end (None when either is unknown or too short to mean anything)."""
    if isinstance(timing.get("tokens_per_second"), (int, float)):
        return float(timing["tokens_per_second"])
    tokens = usage.get("completion_tokens")
    first, total = timing.get("first_token_ms"), timing.get("total_ms")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 2 or first is None or total is None:
        return None
    span = (total - first) / 1000
    return tokens / span if span >= 0.05 else None


def usage_parts(usage: dict, cost=None) -> list:
    """The pieces of a usage line: tokens in/out (cached and reasoning when reported), total, cost."""

    def count(key, details=None, sub=None):
        value = usage.get(key) if details is None else (usage.get(details) or {}).get(sub)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    tokens = []
    for key, label, details, sub, sub_label in (
            ("prompt_tokens", "in", "prompt_tokens_details", "cached_tokens", "cached"),
            ("completion_tokens", "out", "completion_tokens_details", "reasoning_tokens", "reasoning")):
        n = count(key)
        if n is None:
            continue
        extra = count(None, details, sub)
        tokens.append(f"{n:,} {label}" + (f" ({extra:,} {sub_label})" if extra else ""))
    parts = [" / ".join(tokens)] if tokens else []
    total = count("total_tokens")
    if total is not None:
        parts.append(f"{total:,} total")
    if cost is not None:
        parts.append(cost.shown())
    elif count("cost") is not None:
        parts.append(f"${usage['cost']} (reported)")
    return parts


_C1 = re.compile("[\x7f-\x9f]")


def json_text(obj, indent=None) -> str:
    """JSON as llmcli prints it: UTF-8 kept, but DEL and the C1 controls escaped (U+009B is a CSI on many
    terminals, and `--json` output does end up on one); JSON itself already escapes ESC and the C0 range.
    Those characters only occur inside strings, so escaping them in the text keeps the document valid."""
    return _C1.sub(lambda m: f"\\u{ord(m.group(0)):04x}", json.dumps(obj, ensure_ascii=False, indent=indent))


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def finish_warnings(run) -> list:
    out = []
    if run.finish_reason == "length":
        out.append("the answer was cut off at the token limit (finish_reason: length); "
                   "raise it with -o max_tokens N")
    elif run.finish_reason == "content_filter":
        out.append("the provider's content filter stopped the answer (finish_reason: content_filter)")
    refusal = "".join(run.refusal_parts)
    if refusal:
        out.append(f"the model refused: {refusal}")
    return out


def error_dict(error: Optional[LLMCliError]) -> Optional[dict]:
    if error is None:
        return None
    out = {"type": error.type_name, "message": str(error)}
    spent = getattr(error, "spent", None)
    if spent is not None:  # BudgetExceeded: what the run (or chat session) had spent when it stopped
        out["spent"] = spent
    return out


def run_usage(run) -> Optional[dict]:
    """The run's usage with `cost` as {amount, currency, source} (the server's number, when it sent one, is
    the amount with source "reported"); None when the server reported no usage."""
    usage = run.usage
    if not usage:
        return None
    usage = dict(usage)
    cost = getattr(run, "cost", None)
    if cost is not None:
        usage["cost"] = cost.to_dict()
    return usage


def run_document(run, error: Optional[LLMCliError], extras=None) -> dict:
    """The --json document; `run.document_extras()` (a --schema run: data, validation) and `extras`
    (e.g. -x: extracted) are added after the common keys."""
    doc = {
        "model": run.model,
        "content": run.content,
        "reasoning": run.reasoning or None,
        "refusal": "".join(run.refusal_parts) or None,
        "finish_reason": run.finish_reason,
        "tool_calls": run.tool_calls_summary(),
        "usage": run_usage(run),
        "timing": run.timing(),
        "error": error_dict(error),
    }
    logprobs = getattr(run, "logprobs", None)
    if logprobs:
        doc["logprobs"] = logprobs  # --logprobs: the answer's tokens, as the server sent them
    more = getattr(run, "document_extras", None)
    if callable(more):
        doc.update(more())
    if extras is not None:
        doc.update(extras(run))
    # ask adds where the conversation log keeps this exchange (None when it was not logged)
    doc.update(getattr(run, "log_ids", None) or {})
    # What went into the request (ask): attachments by name/type/size/sha256, hygiene counts, context.
    doc.update(getattr(run, "request_report", None) or {})
    return doc


# --show-logprobs: (lowest probability, SGR colour, legend label), highest first.
LOGPROB_TINTS = ((0.9, "\x1b[32m", ">=90%"), (0.5, "\x1b[36m", ">=50%"), (0.1, "\x1b[33m", ">=10%"),
                 (0.0, "\x1b[31m", "<10%"))


def logprob_colour(logprob) -> str:
    import math

    try:
        p = math.exp(float(logprob))
    except (TypeError, ValueError, OverflowError):
        return ""
    for floor, colour, _ in LOGPROB_TINTS:
        if p >= floor:
            return colour
    return LOGPROB_TINTS[-1][1]


class _Renderer:
    """What every renderer shares: stdout, the diagnostics on stderr, and the end-of-run warnings."""

    extras = None  # run -> dict of keys added to the --json document (-x: extracted)

    def __init__(self, out, err, err_tty: bool, color: bool):
        self.out = out
        self.diag = Diagnostics(err, color and err_tty)

    def _emit(self, obj) -> None:
        """One JSON event on its own line, flushed at once (for --jsonl readers)."""
        self.out.write(json_text(obj) + "\n")
        self.out.flush()

    def _diagnose(self, ev) -> None:
        """Tool activity and retries are told on stderr whatever the output mode."""
        if isinstance(ev, ToolFinished):
            self.diag.tool(ev.activity)
        elif isinstance(ev, Retrying):
            self.diag.retry(ev)

    def _finish_warnings(self, run) -> None:
        for message in finish_warnings(run):
            self.diag.warning(message)


class TextRenderer(_Renderer):
    def __init__(self, out, err, out_tty: bool, err_tty: bool, color: bool, show_reasoning: Optional[bool] = None,
                 show_usage: bool = False, render_markdown: bool = False, raw: bool = False,
                 show_logprobs: bool = False):
        super().__init__(out, err, err_tty, color)
        # --show-logprobs: each token tinted by its probability, on a colour terminal only (a pipe
        # gets the plain text); the logprobs of a chunk arrive just before its text.
        self.tint = show_logprobs and out_tty and color_enabled(out)
        self.pending_logprobs = None
        self.legend_shown = False
        if show_logprobs and not self.tint:
            self.diag.note("llmcli: --show-logprobs tints tokens on a colour terminal only; "
                           "use --json or --jsonl for the numbers")
        self.out_tty = out_tty
        # On a terminal, the answer and reasoning pass the sanitizer unless --raw; pipes get exact bytes.
        self.out_san = StreamSanitizer() if out_tty and not raw else None
        self.err_san = StreamSanitizer() if err_tty and not raw else None
        self.markdown = None
        if render_markdown and out_tty and color_enabled(out):
            # Markdown is styled only on a terminal, never in a pipe (issue 7).
            import shutil

            from .markdown import MarkdownStream

            self.markdown = MarkdownStream(out, shutil.get_terminal_size().columns)
        if self.tint:
            self.markdown = None  # tinted tokens are the text as sent, not restyled
        self.err = err
        self.color = color and err_tty
        self.show_reasoning = err_tty if show_reasoning is None else show_reasoning
        self.show_usage = show_usage
        self.last_flush = time.monotonic()
        self.ends_with_newline = True
        self.wrote_text = False
        self.in_reasoning = False

    def handle(self, ev):
        if isinstance(ev, TextDelta):
            self._end_reasoning()
            if self.pending_logprobs is not None:
                self._write_tinted(ev.text, self.pending_logprobs)
                self.pending_logprobs = None
            else:
                self._write(ev.text)
        elif isinstance(ev, TokenLogprobs):
            if self.tint:
                self.pending_logprobs = ev.entries
        elif isinstance(ev, ReasoningDelta):
            if self.show_reasoning:
                self._reasoning(ev.text)
        elif isinstance(ev, ToolFinished):
            self._end_reasoning()
            self._break_line()
            self._diagnose(ev)
        elif isinstance(ev, TurnDone):
            self._end_reasoning()
            if ev.turn.tool_calls:
                self._break_line()
        elif isinstance(ev, RunWarning):
            self._break_line()
            self.diag.warning(ev.message)
        else:
            self._diagnose(ev)
        # RefusalDelta, UsageUpdate, FinishReason, ToolStarted: reported at the end / by ToolFinished

    def _write(self, text):
        if not text:
            return
        if self.out_san is not None:
            text = self.out_san.feed(text)
            if not text:
                return
        if self.markdown is not None:
            self.markdown.write(text)
        else:
            self.out.write(text)
        self.wrote_text = True
        self.ends_with_newline = text.endswith("\n")
        now = time.monotonic()
        if self.out_tty or "\n" in text or now - self.last_flush >= PIPE_FLUSH_INTERVAL:
            self.out.flush()
            self.last_flush = now

    def _write_tinted(self, text, entries):
        """The text token by token, each in the colour of its probability (LOGPROB_TINTS)."""
        tokens = [e.get("token") for e in entries if isinstance(e, dict)]
        if not all(isinstance(t, str) for t in tokens) or "".join(tokens) != text:
            self._write(text)  # tokens that do not spell the text (byte-split characters): plain
            return
        if not self.legend_shown:
            self.legend_shown = True
            self.diag.note("llmcli: token probability: " + " ".join(
                f"{colour}{label}{RESET}" for _, colour, label in LOGPROB_TINTS))
        for entry, token in zip(entries, tokens):
            colour = logprob_colour(entry.get("logprob"))
            if self.out_san is not None:
                token = self.out_san.feed(token)
            if token:
                self.out.write(colour + token + RESET)
                self.wrote_text = True
                self.ends_with_newline = token.endswith("\n")
        self.out.flush()

    def _reasoning(self, text):
        if not self.in_reasoning:
            self.in_reasoning = True
            if self.color:
                self.err.write(DIM)
        if self.err_san is not None:
            text = self.err_san.feed(text)
        self.err.write(text)
        self.err.flush()

    def _end_reasoning(self):
        if self.in_reasoning:
            self.in_reasoning = False
            if self.err_san is not None:
                self.err.write(self.err_san.finish())
            self.err.write((RESET if self.color else "") + "\n")
            self.err.flush()

    def _break_line(self):
        if self.wrote_text and not self.ends_with_newline:
            self._write("\n")

    def finish(self, run, error: Optional[LLMCliError]):
        self._end_reasoning()
        if self.out_san is not None:
            held = self.out_san.finish()
            if held:
                self.out_san = None
                self._write(held)
        if self.markdown is not None:
            self.markdown.finish()
        if self.wrote_text and not self.ends_with_newline:
            self.out.write("\n")
            self.ends_with_newline = True
        self.out.flush()
        self._finish_warnings(run)
        if self.show_usage:
            self.diag.usage(run.usage, run.timing(), getattr(run, "cost", None) if run.usage else None)


class FinalTextRenderer(TextRenderer):
    """stdout gets only what `final(run)` makes of the answer at the end (the --schema document, the
    -x code block); while it arrives, the answer streams to stderr when that is a terminal.

    On failure the answer received so far is not lost: it is on the terminal already, or else it is
    written to stdout as it came (the exit code tells the script it is not the final form).
    """

    def __init__(self, out, err, out_tty: bool, err_tty: bool, color: bool, final, **kwargs):
        kwargs["render_markdown"] = False
        super().__init__(err, err, err_tty, err_tty, color, **kwargs)
        self.final_out = out
        self.final_out_tty = out_tty
        self.final = final
        self.streams = err_tty

    def handle(self, ev):
        if isinstance(ev, TextDelta) and not self.streams:
            return
        super().handle(ev)

    def finish(self, run, error):
        super().finish(run, error)
        text = self.final(run, self.diag) if error is None else (None if self.streams else run.content)
        if text:
            if self.final_out_tty:
                text = sanitize(text)
            self.final_out.write(text if text.endswith("\n") else text + "\n")
        self.final_out.flush()


class JSONRenderer(_Renderer):
    """Exactly one JSON document on stdout at the end — also when the run failed."""


    def handle(self, ev):
        if isinstance(ev, RunWarning):
            self.diag.warning(ev.message)
        else:
            self._diagnose(ev)

    def finish(self, run, error):
        self._finish_warnings(run)
        self.out.write(json_text(run_document(run, error, self.extras), indent=2) + "\n")
        self.out.flush()


class JSONLRenderer(_Renderer):
    """One JSON event per line, as things happen, for programs that stream."""

    def handle(self, ev):
        if isinstance(ev, TextDelta):
            self._emit({"type": "text", "text": ev.text})
        elif isinstance(ev, ReasoningDelta):
            self._emit({"type": "reasoning", "text": ev.text})
        elif isinstance(ev, RefusalDelta):
            self._emit({"type": "refusal", "text": ev.text})
        elif isinstance(ev, UsageUpdate):
            self._emit({"type": "usage", "usage": ev.usage})
        elif isinstance(ev, FinishReason):
            self._emit({"type": "finish", "finish_reason": ev.reason})
        elif isinstance(ev, TokenLogprobs):
            self._emit({"type": "logprobs", "logprobs": ev.entries})
        elif isinstance(ev, ToolCallDelta):
            self._emit({"type": "tool_call_delta", "index": ev.index, "id": ev.id, "name": ev.name,
                        "arguments": ev.arguments})
        elif isinstance(ev, ToolStarted):
            c = ev.activity.call
            self._emit({"type": "tool_call", "id": c.id, "name": c.name,
                        "arguments": c.shown_arguments})
        elif isinstance(ev, ToolFinished):
            self._diagnose(ev)
            self._emit({"type": "tool_result", **ev.activity.to_dict()})
        elif isinstance(ev, RunWarning):
            self._emit({"type": "warning", "message": ev.message})
        elif isinstance(ev, Retrying):
            self._diagnose(ev)
            self._emit({"type": "retry", "attempt": ev.attempt, "delay": round(ev.delay, 3), "reason": ev.reason})

    def finish(self, run, error):
        self._finish_warnings(run)
        for message in finish_warnings(run):  # on stderr above, and as events for the program reading
            self._emit({"type": "warning", "message": message})
        doc = run_document(run, error, self.extras)
        ids = {k: doc[k] for k in ("conversation_id", "exchange_id") if k in doc}  # ask: where the log keeps it
        if error is None:
            done = {"type": "done", "finish_reason": doc["finish_reason"], "usage": doc["usage"],
                    "timing": doc["timing"], "model": doc["model"]}
            done.update({k: doc[k] for k in ("data", "validation", "extracted") if k in doc})
            self._emit({**done, **ids})
        else:
            self._emit({"type": "error", "error": doc["error"], "usage": doc["usage"], "timing": doc["timing"], **ids})
