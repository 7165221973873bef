"""Batch input: one item per line, read lazily (a 100,000-line file streams in constant memory)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

from ..errors import InputError

# Keys of an OpenAI batch `body` that llmcli sets itself rather than passing through as options.
_OWN_BODY_KEYS = {"model", "messages", "stream", "stream_options"}


@dataclass
class BatchItem:
    index: int
    id: str  # the given id/custom_id, or "h-" + a hash of the request (the resume key)
    messages: List[dict]
    model: Optional[str] = None
    options: Tuple[Tuple[str, object], ...] = ()
    openai: bool = False  # came in the OpenAI batch file format (custom_id)
    given_id: bool = False
    extra: dict = field(default_factory=dict)


def request_hash(messages, model, options) -> str:
    blob = json.dumps({"messages": messages, "model": model, "options": list(options)}, sort_keys=True,
                      ensure_ascii=False)
    return "h-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def parse_line(line: str, index: int, system: Optional[str] = None) -> Optional[BatchItem]:
    """The item on one input line; None for a blank line. Bad JSON objects are InputError."""
    text = line.strip()
    if not text:
        return None
    if not text.startswith("{"):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return BatchItem(index, request_hash(messages, None, ()), messages)
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise InputError(f"input line {index + 1}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InputError(f"input line {index + 1}: expected a JSON object")
    if "custom_id" in obj and "body" in obj:
        body = obj.get("body")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise InputError(f"input line {index + 1}: an OpenAI batch line needs body.messages")
        url = str(obj.get("url") or "/v1/chat/completions")
        if not url.endswith("/chat/completions"):
            raise InputError(f"input line {index + 1}: only /v1/chat/completions is supported, not {url}")
        options = tuple((k, v) for k, v in body.items() if k not in _OWN_BODY_KEYS)
        return BatchItem(index, str(obj["custom_id"]), list(body["messages"]), body.get("model"), options,
                         openai=True, given_id=True)
    if isinstance(obj.get("messages"), list):
        messages = list(obj["messages"])
    elif isinstance(obj.get("prompt"), str):
        messages = [{"role": "user", "content": obj["prompt"]}]
    else:
        raise InputError(f"input line {index + 1}: needs \"prompt\" (a string) or \"messages\" (a list)")
    item_system = obj.get("system", system)
    if item_system and not any(m.get("role") == "system" for m in messages if isinstance(m, dict)):
        messages = [{"role": "system", "content": str(item_system)}] + messages
    opts = obj.get("options") or {}
    if not isinstance(opts, dict):
        raise InputError(f"input line {index + 1}: \"options\" must be an object")
    options = tuple(opts.items())
    model = obj.get("model")
    if obj.get("id") is not None:
        return BatchItem(index, str(obj["id"]), messages, model, options, given_id=True)
    return BatchItem(index, request_hash(messages, model, options), messages, model, options)


def read_items(lines, system: Optional[str] = None) -> Iterator[BatchItem]:
    index = 0
    for line in lines:
        item = parse_line(line, index, system)
        if item is not None:
            yield item
            index += 1


def done_ids(path: str) -> set:
    """Ids of the items an earlier run finished without error (read from its output file)."""
    done = set()
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        return done
    with f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash: that item runs again
            if not isinstance(rec, dict) or rec.get("error"):
                continue
            key = rec.get("custom_id") if rec.get("custom_id") is not None else rec.get("id")
            if key is not None:
                done.add(str(key))
    return done
