"""Getting a message list ready to send, for ask and chat alike: attachments downloaded through
web_fetch's SSRF guard, hygiene, the context-window check, and the one-shot summary request of
`/compact`. The pure parts live in llmcli.prompt; this module adds what needs the network.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from ..errors import HTTPError, InputError, LLMCliError, ToolError
from ..events import Value
from ..prompt.context import (MIN_WINDOW, WindowCheck, answer_budget, estimate_tokens, fit_messages, known_window,
                              window_from_models)
from ..prompt.hygiene import HygieneReport, clean_messages, describe


def attachment_fetcher(settings) -> Callable[[str], Tuple[bytes, Optional[str]]]:
    """fetch(url) → (bytes, media type) for `--attach-inline`: the same address checks, redirects and
    timeouts as web_fetch; a private address needs --allow-private-urls."""
    from dataclasses import replace

    from ..prompt.attach import MAX_PDF_BYTES
    from ..tools.fetch import fetch_bytes
    from .loop import make_tool_settings

    tool_settings = replace(make_tool_settings(settings), max_bytes=MAX_PDF_BYTES)

    def fetch(url: str):
        try:
            return fetch_bytes(url, tool_settings)
        except ToolError as exc:
            raise InputError(f"cannot attach {url}: {exc}") from None

    return fetch


def model_window(settings, tokens: int, lister=None) -> Tuple[Optional[int], Optional[str]]:
    """(window, where it came from): config context_length, the local model's n_ctx, the built-in table,
    then — only when the request is big enough for the window to matter — the server's /models."""
    request_cfg = dict(settings.request)
    if request_cfg.get("context_length"):
        return int(request_cfg["context_length"]), "config context_length"
    if settings.is_local:
        n_ctx = dict(settings.local).get("n_ctx")
        if n_ctx:
            return int(n_ctx), "local n_ctx"
    window = known_window(settings.model)
    if window:
        return window, f"built-in table ({settings.model})"
    if tokens < MIN_WINDOW // 2 or settings.is_local or not settings.base_url:
        return None, None
    try:
        if lister is None:
            from ..wire.client import list_models as lister
        window = window_from_models(lister(settings), settings.model)
    except (LLMCliError, OSError, ValueError):
        return None, None
    return (window, "the server's /models") if window else (None, None)


class Prepared(Value):
    """A cleaned, checked message list and what was done to it (the `--json` request record)."""

    __slots__ = ("messages", "hygiene", "window", "attachments", "notes", "debug", "dropped", "head")
    messages: List[dict]
    hygiene: HygieneReport
    window: WindowCheck
    attachments: List[dict]
    notes: List[str]  # said on stderr (truncation)
    debug: List[str]  # said under --debug
    dropped: List[dict]  # the turns --truncate left out of the request
    head: int  # where they were: after the leading system messages

    def __init__(self, messages: List[dict], hygiene: HygieneReport, window: WindowCheck,
                 attachments: Optional[List[dict]] = None, notes: Optional[List[str]] = None,
                 debug: Optional[List[str]] = None, dropped: Optional[List[dict]] = None, head: int = 0):
        self.messages = messages
        self.hygiene = hygiene
        self.window = window
        self.attachments = attachments if attachments is not None else []
        self.notes = notes if notes is not None else []
        self.debug = debug if debug is not None else []
        self.dropped = dropped if dropped is not None else []
        self.head = head

    def restore(self, messages: List[dict]) -> List[dict]:
        """`messages` (what was sent, and the answer) with the truncated turns back in place, for --save:
        truncation shortens the request, never the user's saved conversation."""
        if not self.dropped:
            return list(messages)
        return list(messages[:self.head]) + self.dropped + list(messages[self.head:])

    def record(self) -> dict:
        return {"attachments": list(self.attachments), "hygiene": self.hygiene.to_dict(),
                "context": self.window.to_dict()}


def prepare_messages(settings, messages: List[dict], max_input_tokens: Optional[int] = None,
                     truncate: Optional[str] = None, attachments: Optional[List[dict]] = None,
                     lister=None, check_window: bool = True) -> Prepared:
    """Hygiene, then the window check (InputError, exit 3, when over and not truncating)."""
    cleaned, report = clean_messages(messages, None)  # reasoning: settings.send_reasoning, per provider
    debug = [f"hygiene: {step}" for step in report.steps]
    summary = describe(report)
    if summary:
        debug.append(f"hygiene: {summary}")
    tokens = estimate_tokens(cleaned)
    limit = window = source = None
    if max_input_tokens:
        limit, source = max_input_tokens, "--max-input-tokens"
    elif check_window:
        window, source = model_window(settings, tokens, lister)
        if window:
            limit = max(1, window - answer_budget(window, dict(settings.options)))
    kept, check = fit_messages(cleaned, limit, truncate, window, source)
    notes = []
    if check.dropped_turns:
        notes.append(f"the request was about {check.tokens_before:,} tokens, over the limit of {limit:,}: dropped "
                     f"the {check.dropped_turns} oldest turn{'s' if check.dropped_turns != 1 else ''} "
                     f"({check.dropped_messages} message{'s' if check.dropped_messages != 1 else ''}); about "
                     f"{check.tokens:,} tokens are sent")
    debug.append(f"context: about {check.tokens:,} tokens; limit {limit if limit else 'unknown'}"
                 + (f" (window {window:,} from {source})" if window else ""))
    head = next((i for i, m in enumerate(cleaned) if m.get("role") not in ("system", "developer")), len(cleaned))
    dropped = cleaned[head:head + check.dropped_messages]
    return Prepared(kept, report, check, list(attachments or ()), notes, debug, dropped, head)


# Words of a server's refusal that point at the attachments themselves.
ATTACHMENT_WORDS = ("image", "file", "audio", "pdf", "vision", "multimodal", "modal", "content type",
                    "content part", "input_audio", "unsupported content")


def explain_rejection(error, messages: List[dict]):
    """A 4xx for a request that carried images, files or audio: say that the attachments were refused
    when the server's words point at them, else add that the request carried attachments."""
    if not isinstance(error, HTTPError) or error.status not in (400, 413, 415, 422):
        return error
    from ..prompt.attach import has_binary_parts

    if not has_binary_parts(messages):
        return error
    text = str(error)
    if any(word in text.lower() for word in ATTACHMENT_WORDS):
        text = ("the server or model refused the attachments (images, PDFs or audio may not be supported; "
                f"for PDFs try --pdf-text): {text}")
    else:
        text += " (the request carried attachments: the model may not accept them)"
    return HTTPError(text, status=error.status, body=error.body, code=error.code)


def summarise(settings, messages: List[dict], transport=None) -> str:
    """One request without tools; the answer's text (for /compact)."""
    from .loop import ChatRun
    from .runner import make_transport

    quiet = settings.with_changes(tools=())
    run = ChatRun(transport or make_transport(quiet), quiet, messages, stream=True)
    events = run.events()
    try:
        for _ in events:
            pass
    finally:
        events.close()
    text = run.content.strip()
    if not text:
        raise InputError("the summary came back empty; the conversation was left as it was")
    return text
