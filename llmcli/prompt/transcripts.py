"""History files from anywhere (`--history FILE`, `/load`), auto-detected or forced (`--history-format`):

* `openai`     — OpenAI messages: a JSON array, JSONL, or a YAML list (or `{messages: [...]}`);
* `transcript` — speaker-labelled lines, `[alice]: text` or `alice: text`; a line without a label
  continues the turn before it. Speakers become user messages that keep their name (the `name` field
  when the name fits the API's `^[A-Za-z0-9_-]{1,64}$`, else a `[name]: ` prefix); `--as NAME` says
  which speaker is the assistant (speakers called user/assistant/system map to those roles);
* `markdown`   — `## user` / `## assistant` / `## system` headings, each followed by its text;
* `llm`        — simonw/llm's `llm logs --json`: an array of {prompt, system, response, …};
* `aichat`     — an aichat session YAML: {model, messages: [{role, content}], …}.

A file that fits none is an InputError (exit 3) quoting the line that broke.
"""

from __future__ import annotations

import json
import re
from typing import List, Optional

from ..errors import InputError
from .history import FORMATS, normalise_message, parse_history

NAME_FIELD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BRACKET_LABEL = re.compile(r"^\[([^\]\n]{1,64})\]:?[ \t]?(.*)$")
PLAIN_LABEL = re.compile(r"^([A-Za-z0-9][\w .'-]{0,39}?):[ \t]+(\S.*)$")
# A chat export's timestamp before the label: "[12:01] alice: hi", "12/01/2024, 10:00 - alice: hi".
TIMESTAMP = re.compile(r"^\[?\d{1,4}[/.:-]\d{1,2}[\d/.:\- ,T]*(?:[AaPp][Mm])?\]?[ \t]+(?:-[ \t]+)?")
MD_HEADING = re.compile(r"^#{1,3}[ \t]*(user|assistant|system|developer)[ \t]*:?[ \t]*$", re.I)
ROLE_NAMES = {"user": "user", "assistant": "assistant", "system": "system"}
# First-line keys of YAML histories (OpenAI lists, aichat sessions): never taken for speaker labels.
YAML_KEYS = {"messages", "model", "temperature", "top_p", "role", "content", "compressed_messages",
             "save_session", "compress_threshold", "role_name", "agent_name", "agent_variables", "use_tools",
             "rag_name", "data_urls", "name", "path"}


def _first_line(text: str):
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            return lineno, line
    return 0, ""


def _quote(line: str) -> str:
    line = line.strip()
    return line if len(line) <= 80 else line[:80] + "…"


def detect_format(text: str) -> Optional[str]:
    """The format the text looks like, from its shape (no full parse), or None."""
    stripped = text.lstrip()
    _, first = _first_line(text)
    if stripped.startswith("["):
        if BRACKET_LABEL.match(first.strip()) and not first.strip().startswith(("[{", "[\"", "[]")):
            try:
                json.loads(stripped)
            except ValueError:
                return "transcript"
        return "json"
    if stripped.startswith("{"):
        return "openai"
    if MD_HEADING.match(first.strip()):
        return "markdown"
    if first.startswith("#") and any(MD_HEADING.match(line.strip()) for line in text[:65536].splitlines()):
        return "markdown"  # a title, then the role headings
    if first.startswith(("-", "---")):
        return "openai"
    m = PLAIN_LABEL.match(first.strip()) or re.match(r"^([A-Za-z_]+):\s*$", first.strip())
    if m and m.group(1).lower() in YAML_KEYS:
        return "yaml"
    if _label(first.strip()) is not None:
        return "transcript"
    return None


def parse_any(text: str, source: str, fmt: str = "auto", assistant_name: Optional[str] = None) -> List[dict]:
    """Messages from a history file's text in format `fmt` ('auto' detects it)."""
    if not text.strip():
        return []
    if fmt == "auto":
        shape = detect_format(text)
        if shape == "json":
            data = _json(text, source)
            fmt = "llm" if _looks_like_llm_logs(data) else "openai"
            if fmt == "llm":
                return parse_llm_logs(data, source)
        elif shape == "yaml":
            fmt = "aichat" if _looks_like_aichat(text) else "openai"
        elif shape is None:
            lineno, line = _first_line(text)
            raise InputError(f"{source}:{lineno}: not a history in any known format (OpenAI messages, "
                             "speaker transcript, Markdown ## user/## assistant, llm logs --json, aichat "
                             f"session): {_quote(line)!r}")
        else:
            fmt = shape
    if fmt == "openai":
        return parse_history(text, source)
    if fmt == "transcript":
        return parse_transcript(text, source, assistant_name)
    if fmt == "markdown":
        return parse_markdown(text, source)
    if fmt == "llm":
        return parse_llm_logs(_json(text, source), source)
    if fmt == "aichat":
        return parse_aichat(text, source)
    raise InputError(f"unknown history format {fmt!r} (one of: {', '.join(FORMATS)})")


def _json(text: str, source: str):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{source}:{getattr(exc, 'lineno', '?')}: invalid JSON: {getattr(exc, 'msg', exc)}")


# -- speaker transcripts --------------------------------------------------------------------------


def _label(line: str):
    """(speaker, text, sure) for a labelled line (after any timestamp), else None; `sure` for a bracketed
    or timestamped label."""
    stamp = TIMESTAMP.match(line)
    if stamp:
        found = _label(line[stamp.end():])
        if found is not None:
            return found[0], found[1], True  # a timestamped label is as sure a speaker as a bracketed one
    m = BRACKET_LABEL.match(line)
    if m:
        return m.group(1).strip(), m.group(2), True
    m = PLAIN_LABEL.match(line)
    if m:
        return m.group(1).strip(), m.group(2), False
    return None


def parse_transcript(text: str, source: str, assistant_name: Optional[str] = None) -> List[dict]:
    lines = text.splitlines()
    labelled = [_label(line) for line in lines]
    # An unbracketed "word: text" is a speaker only if that word labels a line more than once, labels the
    # first line, or is a role name: "Note: see above" inside a turn stays text.
    counts = {}
    for item in labelled:
        if item is not None and not item[2]:
            counts[item[0]] = counts.get(item[0], 0) + 1
    first_index = next((i for i, line in enumerate(lines) if line.strip()), None)
    speakers = set()
    for i, item in enumerate(labelled):
        if item is None:
            continue
        name, _, bracketed = item
        if bracketed or counts.get(name, 0) > 1 or i == first_index or name.lower() in ROLE_NAMES \
                or (assistant_name and name.lower() == assistant_name.lower()):
            speakers.add(name)
    turns = []  # [speaker, [lines]]
    for i, line in enumerate(lines):
        item = labelled[i]
        if item is not None and item[0] in speakers:
            turns.append([item[0], [item[1]]])
        elif turns:
            turns[-1][1].append(line)
        elif line.strip():
            raise InputError(f"{source}:{i + 1}: expected a speaker label ('[name]: text' or 'name: text'): "
                             f"{_quote(line)!r}")
    if not turns:
        raise InputError(f"{source}: no speaker-labelled lines")
    wanted = assistant_name.lower() if assistant_name else None
    messages = []
    for speaker, body in turns:
        content = "\n".join(body).strip("\n")
        low = speaker.lower()
        if wanted is not None and low == wanted:
            messages.append({"role": "assistant", "content": content})
        elif wanted is None and low in ROLE_NAMES:
            messages.append({"role": ROLE_NAMES[low], "content": content})
        elif low == "system":
            messages.append({"role": "system", "content": content})
        elif NAME_FIELD.match(speaker):
            messages.append({"role": "user", "name": speaker, "content": content})
        else:
            messages.append({"role": "user", "content": f"[{speaker}]: {content}"})
    return messages


# -- Markdown -------------------------------------------------------------------------------------


def parse_markdown(text: str, source: str) -> List[dict]:
    messages, role, body = [], None, []
    in_fence = None

    def flush():
        if role is not None:
            messages.append({"role": role, "content": "\n".join(body).strip("\n")})

    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            in_fence = None if in_fence == marker else (in_fence or marker)
        m = MD_HEADING.match(stripped) if in_fence is None else None
        if m:
            flush()
            role, body = m.group(1).lower(), []
            continue
        if role is None:
            if stripped and not stripped.startswith("#"):  # a title before the first role heading is fine
                raise InputError(f"{source}:{lineno}: text before the first '## user' or '## assistant' "
                                 f"heading: {_quote(line)!r}")
            continue
        body.append(line)
    flush()
    if not messages:
        raise InputError(f"{source}: no '## user' or '## assistant' headings")
    return messages


# -- simonw/llm logs --json -----------------------------------------------------------------------


def _looks_like_llm_logs(data) -> bool:
    return (isinstance(data, list) and bool(data) and all(isinstance(r, dict) for r in data)
            and all("role" not in r and ("prompt" in r or "response" in r) for r in data))


def parse_llm_logs(data, source: str) -> List[dict]:
    """`llm logs --json`: one record per exchange, {prompt, system, response, datetime_utc, …}."""
    if not _looks_like_llm_logs(data):
        raise InputError(f"{source}: not llm logs --json output (an array of objects with prompt and response)")
    records = list(data)
    if all(isinstance(r.get("datetime_utc"), str) for r in records):
        records.sort(key=lambda r: r["datetime_utc"])  # stable: equal times keep file order
    messages: List[dict] = []
    system = None
    for r in records:
        if r.get("system") and r["system"] != system:
            system = r["system"]
            if not any(m["role"] == "system" for m in messages):
                messages.insert(0, {"role": "system", "content": str(system)})
        if r.get("prompt") is not None:
            messages.append({"role": "user", "content": str(r["prompt"])})
        if r.get("response") is not None:
            messages.append({"role": "assistant", "content": str(r["response"])})
    return messages


# -- aichat sessions ------------------------------------------------------------------------------


def _looks_like_aichat(text: str) -> bool:
    head = text[:4096]
    return bool(re.search(r"^model:\s*\S", head, re.M)) and bool(re.search(r"^messages:", text, re.M))


def parse_aichat(text: str, source: str) -> List[dict]:
    """aichat's session YAML: {model, temperature?, messages: [{role, content}], …}.

    Content is a string, a list of OpenAI-style parts, or (tool use) a mapping whose `text` is the answer.
    """
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"invalid YAML in {source}{':' + str(mark.line + 1) if mark else ''}: "
                         f"{getattr(exc, 'problem', exc)}")
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise InputError(f"{source}: not an aichat session (a mapping with a messages list)")
    messages = []
    for number, m in enumerate(data["messages"], 1):
        if not isinstance(m, dict):
            raise InputError(f"{source}: message {number} is not a mapping")
        content = m.get("content")
        if isinstance(content, dict):
            content = str(content.get("text") or "")
        messages.append(normalise_message({"role": m.get("role"), "content": content}, source, number))
    return messages


def load_any(path: str, fmt: str = "auto", assistant_name: Optional[str] = None) -> List[dict]:
    """Read a history file in `fmt` ('auto' detects it)."""
    from .history import decode_input, read_file_bytes

    warnings: List[str] = []
    text = decode_input(read_file_bytes(path), path, warnings)
    return parse_any(text, path, fmt, assistant_name)
