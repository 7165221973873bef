"""One legacy text completion (`llmcli complete`): request → stream → result, as a plain object.

Like `loop.ChatRun`, `CompletionRun.events()` is a generator of `llmcli.events` values for a renderer,
and the run's state (text so far, every choice, usage, timing) lives on the object, so whatever fails,
the caller keeps what arrived. There are no tools and no turns: one request, one stream.
"""

from __future__ import annotations

import time
from typing import List, Optional

from ..errors import LLMCliError
from ..events import CompletionChunk, FinishReason, Retrying, TextDelta, UsageUpdate
from .loop import run_timing


def make_completion_transport(settings, recorder=None, run_deadline=None, on_fetch=None):
    """The transport for `/completions`: the HTTP transport on that path, or the embedded model."""
    from ..errors import ConfigError

    if settings.is_local:
        from ..wire.local import LocalTransport

        return _LocalCompletions(LocalTransport(settings, run_deadline=run_deadline, on_fetch=on_fetch))
    if not settings.base_url:
        raise ConfigError("no base URL: pass --base-url, set LLMCLI_BASE_URL, or choose a provider with -p")
    from ..wire.client import HTTPTransport
    from ..wire.completions import CompletionDecoder

    return HTTPTransport(settings, recorder=recorder, run_deadline=run_deadline, path="/completions",
                         make_decoder=CompletionDecoder)


class _LocalCompletions:
    """The embedded model's raw completion behind the transport contract (`open(body)`)."""

    def __init__(self, local):
        self.local = local

    def open(self, body):
        return self.local.open_completion(body)

    def describe(self):
        return self.local.describe()

    def timing_info(self):
        return self.local.timing_info()


class CompletionRun:
    def __init__(self, transport, settings, body: dict):
        self.transport = transport
        self.settings = settings
        self.body = body
        self.model: Optional[str] = settings.model
        self.result = None  # the CompletionResult (partial after a failure)
        self.text_parts: List[str] = []  # choice 0, as printed
        self.refusal_parts: List[str] = []  # none here; the shared end-of-run warnings read it
        self.chunks = 0
        self.started = time.monotonic()
        self.first_token_at: Optional[float] = None
        self.ended_at: Optional[float] = None

    @property
    def content(self) -> str:
        return "".join(self.text_parts)

    @property
    def usage(self):
        return self.result.usage if self.result is not None else None

    @property
    def finish_reason(self):
        first = self.result.first if self.result is not None else None
        return first.finish_reason if first is not None else None

    @property
    def choices(self) -> list:
        return [c.to_dict() for c in self.result.choices] if self.result is not None else []

    def timing(self) -> dict:
        return run_timing(self)

    def events(self):
        exchange = None
        try:
            for item in self.transport.open(self.body):
                if isinstance(item, Retrying):
                    yield item
                else:
                    exchange = item
            try:
                for ev in exchange.events():
                    if isinstance(ev, CompletionChunk):
                        self.chunks += 1
                        if ev.text and self.first_token_at is None:
                            self.first_token_at = time.monotonic()
                        yield ev
                        if ev.index == 0 and ev.text:
                            self.text_parts.append(ev.text)
                            yield TextDelta(ev.text)
                    elif isinstance(ev, (UsageUpdate, FinishReason)):
                        yield ev
                self.result = exchange.decoder.finish()
            except LLMCliError:
                self.result = exchange.decoder.partial_result()
                raise
        finally:
            self.ended_at = time.monotonic()
            if exchange is not None:
                if self.result is None:
                    self.result = exchange.decoder.partial_result()
                model = getattr(self.result, "model", None)
                if model:
                    self.model = model
                exchange.close()
