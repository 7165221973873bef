"""`llmcli complete --json` / `--jsonl`: the document and the events of a text completion.

The text mode is `render.TextRenderer` itself (a completion streams `TextDelta`s like a chat answer);
these two add what only a completion has: every choice (`-n`), token ids and logprobs.
"""

from __future__ import annotations

from typing import Optional

from ..errors import LLMCliError
from ..events import CompletionChunk, Retrying, RunWarning, UsageUpdate
from .render import _Renderer, error_dict, json_text


def completion_document(run, error: Optional[LLMCliError]) -> dict:
    """The one --json document: choice 0's fields at the top (text, finish_reason, token_ids, logprobs),
    every choice under `choices`, and usage, timing and error like `ask --json`."""
    choices = run.choices
    first = choices[0] if choices else {}
    doc = {
        "model": run.model,
        "text": first.get("text", run.content),
        "finish_reason": first.get("finish_reason"),
        "usage": run.usage,
    }
    for key in ("token_ids", "prompt_token_ids", "logprobs"):
        if key in first:
            doc[key] = first[key]
    doc["choices"] = choices
    doc["timing"] = run.timing()
    doc["error"] = error_dict(error)
    return doc


class CompletionJSONRenderer(_Renderer):
    def handle(self, ev):
        if isinstance(ev, RunWarning):
            self.diag.warning(ev.message)
        else:
            self._diagnose(ev)

    def finish(self, run, error):
        self._finish_warnings(run)
        self.out.write(json_text(completion_document(run, error), indent=2) + "\n")
        self.out.flush()


class CompletionJSONLRenderer(_Renderer):
    """One line per chunk of every choice (with its token ids and logprobs), then done or error."""

    def handle(self, ev):
        if isinstance(ev, CompletionChunk):
            event = {"type": "chunk", "index": ev.index, "text": ev.text}
            if ev.token_ids is not None:
                event["token_ids"] = ev.token_ids
            if ev.logprobs is not None:
                event["logprobs"] = ev.logprobs
            if ev.finish_reason is not None:
                event["finish_reason"] = ev.finish_reason
            self._emit(event)
        elif isinstance(ev, UsageUpdate):
            self._emit({"type": "usage", "usage": ev.usage})
        elif isinstance(ev, RunWarning):
            self._emit({"type": "warning", "message": ev.message})
        elif isinstance(ev, Retrying):
            self._diagnose(ev)
            self._emit({"type": "retry", "attempt": ev.attempt, "delay": round(ev.delay, 3), "reason": ev.reason})

    def finish(self, run, error):
        self._finish_warnings(run)
        doc = completion_document(run, error)
        if error is None:
            self._emit({"type": "done", "finish_reason": doc["finish_reason"], "usage": doc["usage"],
                        "timing": doc["timing"], "model": doc["model"]})
        else:
            self._emit({"type": "error", "error": doc["error"], "timing": doc["timing"]})
