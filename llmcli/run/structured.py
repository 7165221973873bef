"""Structured output that holds on any OpenAI-compatible server (`--schema`).

The request ladder, best first (issue 16):

1. `json_schema`: `response_format: {type: json_schema, json_schema: {name, schema, strict}}`, which
   OpenAI, llama.cpp (by grammar), vLLM and others enforce while generating;
2. `json_object`: `response_format: {type: json_object, schema}` plus the schema in the system prompt, for
   servers that reject (1) with a 400/422 naming response_format or json_schema;
3. `prompt`: the schema in the system prompt only, for servers that reject (2) as well.

Whatever the server claims, the answer is validated here (jsonschema, imported lazily): an invalid
answer gets one repair request that quotes the validation errors; still invalid is `ValidationFailed`
(exit 7). The mode that worked is remembered per endpoint+model (`ModeMemory`, a JSON file in the data
dir), so a later run does not repeat a rejected attempt; `llmcli doctor --save` can set it in the
provider's config (`capabilities.response_format`), which wins over the memory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Tuple

from ..errors import HTTPError, UsageError, ValidationFailed
from ..events import RunWarning, TurnDone

MODES = ("json_schema", "json_object", "prompt")
MEMORY_FILE = "structured-modes.json"
MAX_ERRORS_SHOWN = 5


# --- the schema itself ------------------------------------------------------------------------


def check_schema(schema: dict) -> None:
    """UsageError (exit 2) naming where the schema is not a valid JSON Schema (draft 2020-12)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise UsageError(f"invalid JSON schema at {_json_path(exc.absolute_path)}: {exc.message}") from None


def _json_path(parts: Iterable) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def strict_compatible(schema) -> bool:
    """OpenAI's `strict: true` needs every object closed (additionalProperties false) and all its
    properties required; say `strict` only when that holds, else a strict server rejects the schema."""
    if isinstance(schema, list):
        return all(strict_compatible(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False or set(schema.get("required") or ()) != set(props):
            return False
    return all(strict_compatible(v) for k, v in schema.items() if isinstance(v, (dict, list)) and k != "enum"
               and k != "const")


def schema_name(schema: dict) -> str:
    """json_schema.name must match ^[a-zA-Z0-9_-]{1,64}$ (OpenAI)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(schema.get("title") or "output")).strip("_")
    return (name or "output")[:64]


def schema_instruction(schema: dict) -> str:
    return ("Answer with a single JSON document, and nothing else (no prose, no Markdown fence), that is "
            "valid against this JSON Schema:\n" + json.dumps(schema, ensure_ascii=False))


# --- requests ---------------------------------------------------------------------------------


def response_format(schema: dict, mode: str) -> Optional[dict]:
    if mode == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": schema_name(schema), "schema": schema, "strict": strict_compatible(schema)}}
    if mode == "json_object":
        # `schema` beside json_object is how llama-cpp-python, Together and Fireworks take a schema
        # (enforced by grammar); servers that do not know it ignore it or reject it, and a rejection
        # moves the ladder on to prompt-only.
        return {"type": "json_object", "schema": schema}
    return None


def messages_for_mode(messages: List[dict], schema: dict, mode: str) -> List[dict]:
    """json_object and prompt carry the schema in the system prompt (the model cannot see it otherwise)."""
    if mode == "json_schema":
        return list(messages)
    instruction = schema_instruction(schema)
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
        out[0]["content"] = out[0]["content"].rstrip() + "\n\n" + instruction
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out


def rejects_response_format(error: Exception) -> bool:
    """An HTTP error that rejects the mode, not the data (wire/probe.py: names_response_format)."""
    from ..wire.probe import names_response_format

    if not isinstance(error, HTTPError):
        return False
    body = error.body or b""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return names_response_format(error.status, f"{error} {body}")


def repair_message(errors: List[str], schema: dict) -> dict:
    """The repair request: the errors, and the schema again (in json_schema mode the model may never
    have seen it, when the server ignored response_format)."""
    listed = "\n".join(f"- {e}" for e in errors[:20])
    return {"role": "user", "content": "That answer is not valid against the JSON Schema:\n" + listed
            + "\nReply again with only the corrected JSON document, valid against this JSON Schema:\n"
            + json.dumps(schema, ensure_ascii=False)}


# --- answers ----------------------------------------------------------------------------------

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n[ \t]*```", re.S)


def parse_answer(text: str) -> Tuple[Optional[object], Optional[str]]:
    """(data, None), or (None, why not). Tolerates a Markdown fence and prose around one JSON value."""
    stripped = text.strip()
    candidates = [stripped]
    m = _FENCE.search(text)
    if m:
        candidates.append(m.group(1).strip())
    starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
    if starts:
        start = min(starts)
        end = max(stripped.rfind("}"), stripped.rfind("]"))
        if end > start:
            candidates.append(stripped[start:end + 1])
    first_error = None
    for candidate in candidates:
        try:
            # strict=False: a raw newline or tab inside a string is a slip of small models, not a reason
            # to throw the data away
            return json.loads(candidate, strict=False), None
        except ValueError as exc:
            if first_error is None:
                first_error = f"the answer is not JSON ({exc.msg}: line {exc.lineno} column {exc.colno})"
    if not stripped:
        return None, "the answer is empty"
    return None, first_error


def validation_errors(data, schema: dict) -> List[str]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_json_path(e.absolute_path)}: {e.message}" for e in errors]


def check_answer(text: str, schema: dict) -> Tuple[Optional[object], List[str]]:
    data, why = parse_answer(text)
    if why is not None:
        return None, [why]
    return data, validation_errors(data, schema)


# --- memory -----------------------------------------------------------------------------------


class ModeMemory:
    """What worked per endpoint and model: {"<base_url> <model>": "json_object"} in the data dir."""

    def __init__(self, home: Optional[str]):
        self.path = os.path.join(home, MEMORY_FILE) if home else None

    @staticmethod
    def key(settings) -> str:
        return f"{settings.base_url or settings.provider} {settings.model or ''}".strip()

    def _load(self) -> dict:
        if not self.path:
            return {}
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}  # a missing or broken cache only costs one failed attempt

    def get(self, key: str) -> Optional[str]:
        mode = self._load().get(key)
        return mode if mode in MODES else None

    def remember(self, key: str, mode: str) -> None:
        if not self.path:
            return
        data = self._load()
        if data.get(key) == mode:
            return
        data[key] = mode
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            pass


def configured_mode(settings) -> Optional[str]:
    """The provider config's `capabilities.response_format` (written by `llmcli doctor --save`)."""
    caps = dict(getattr(settings, "capabilities", ()) or ())
    value = caps.get("response_format")
    if value in MODES:
        return value
    if value in ("none", False):
        return "prompt"
    return None


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Validation:
    mode: Optional[str] = None
    attempts: int = 0
    errors: List[str] = field(default_factory=list)
    rejected: List[str] = field(default_factory=list)  # modes the server refused in this run

    def to_dict(self) -> dict:
        return {"mode": self.mode, "attempts": self.attempts, "errors": list(self.errors),
                "rejected_modes": list(self.rejected)}


class StructuredRun:
    """A ChatRun driven through the ladder and validated; reads like a ChatRun for the renderers."""

    def __init__(self, run, schema: dict, memory: Optional[ModeMemory] = None, start_mode: Optional[str] = None):
        self.run = run
        self.schema = schema
        self.memory = memory
        self.key = ModeMemory.key(run.settings)
        first = start_mode or configured_mode(run.settings) or (memory.get(self.key) if memory else None)
        self.ladder = list(MODES[MODES.index(first):]) if first in MODES else list(MODES)
        self.validation = Validation()
        self.data = None
        self.base_messages = list(run.messages)

    def __getattr__(self, name):  # content, model, usage, timing(), tool_calls_summary(), messages …
        return getattr(self.run, name)

    def document_extras(self) -> dict:
        return {"data": self.data, "validation": self.validation.to_dict()}

    def _use(self, mode: str) -> None:
        self.validation.mode = mode
        self.run.messages = messages_for_mode(self.base_messages, self.schema, mode)
        fmt = response_format(self.schema, mode)

        def hook(body, fmt=fmt):
            body.pop("response_format", None)
            if fmt is not None:
                body["response_format"] = fmt
            return body

        self.run.body_hook = hook

    def events(self):
        rung = 0
        self._use(self.ladder[rung])
        while True:
            self.run.clear_content()  # the document is the last attempt's answer
            answer = None
            inner = self.run.events()
            try:
                for ev in inner:
                    if isinstance(ev, TurnDone):
                        answer = ev.turn.content  # with tools, the last turn's text is the answer
                    yield ev
            except HTTPError as exc:
                if rejects_response_format(exc) and rung + 1 < len(self.ladder) and not self.run.content:
                    rejected = self.ladder[rung]
                    self.validation.rejected.append(rejected)
                    rung += 1
                    yield RunWarning(f"the server rejected response_format {rejected} (HTTP {exc.status}); "
                                     f"trying {self.ladder[rung]} (remembered for next time)")
                    self._use(self.ladder[rung])
                    continue
                raise
            finally:
                inner.close()  # closing us closes the stream now (RunWiring.drive)
            self.validation.attempts += 1
            data, errors = check_answer(self.run.content if answer is None else answer, self.schema)
            if self.memory is not None and self.validation.attempts == 1:
                mode = self.validation.mode
                if mode == "json_schema" and errors:
                    # A server that enforced json_schema could not have sent an invalid answer: it
                    # accepted the field and ignored it. Next time, json_object with the schema in the
                    # system prompt (the ladder still moves on if that is rejected).
                    mode = "json_object"
                self.memory.remember(self.key, mode)
            self.validation.errors = errors
            if not errors:
                self.data = data
                return
            if self.validation.attempts >= 2:
                shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
                more = f" (and {len(errors) - MAX_ERRORS_SHOWN} more)" if len(errors) > MAX_ERRORS_SHOWN else ""
                raise ValidationFailed(f"the answer does not match the schema, also after a repair request: "
                                       f"{shown}{more}", errors)
            yield RunWarning(f"the answer does not match the schema ({errors[0]}"
                             + (f", and {len(errors) - 1} more" if len(errors) > 1 else "")
                             + "); asking once more")
            self.run.messages.append(repair_message(errors, self.schema))
