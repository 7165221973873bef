"""Chat histories: the messages sent to the model, built from prompt, stdin, files and history files.

Layout of the new user message (documented in the README): each `-f` file as a fenced block headed
by its name, then piped stdin, then the prompt words — separated by blank lines.
"""

from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence, Tuple

from ..errors import InputError

# The --history-format names; parsed by prompt/transcripts.py, named here so that defining the option
# (cli/request.py) does not import the parsers and their regular expressions (issue 22).
FORMATS = ("auto", "openai", "transcript", "markdown", "llm", "aichat")
VALID_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def decode_input(raw: bytes, what: str, warnings: List[str]) -> str:
    """Text from bytes: NUL bytes mean binary (refused); invalid UTF-8 becomes U+FFFD, with a warning."""
    if b"\x00" in raw[:8192] or b"\x00" in raw[-8192:]:
        raise InputError(f"{what} looks like binary data (it contains NUL bytes); only text can be sent")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        warnings.append(f"{what} is not valid UTF-8 (first bad byte at offset {exc.start}); "
                        "invalid bytes were replaced with U+FFFD")
        return raw.decode("utf-8", errors="replace")


def too_large(what: str, total: int) -> InputError:
    return InputError(f"{what} makes the input larger than max_input_bytes ({total:,} bytes); raise the "
                      "limit with --max-input-bytes N (or max_input_bytes in the config)")


def read_capped(stream, what: str, limit: int, total: int) -> bytes:
    """At most `limit` bytes of a binary stream, read in pieces: one byte more is an InputError at once,
    so `yes | llmcli ask` or `-f /dev/zero` ends quickly instead of filling memory."""
    pieces, size = [], 0
    read = getattr(stream, "read1", None) or stream.read
    while True:
        piece = read(min(1 << 20, max(limit - size, 0) + 1))
        if not piece:
            break
        if isinstance(piece, str):
            piece = piece.encode("utf-8")
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            raise too_large(what, total)
    return b"".join(pieces)


def read_file_bytes(path: str, limit: Optional[int] = None, total: Optional[int] = None) -> bytes:
    try:
        with open(path, "rb") as fh:
            if limit is None:
                return fh.read()
            return read_capped(fh, path, limit, total if total is not None else limit)
    except FileNotFoundError:
        raise InputError(f"file not found: {path}")
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not a file")
    except PermissionError:
        raise InputError(f"permission denied: {path}")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}")


def file_record(name: str, text: str) -> dict:
    """A -f / /file file as the conversation log records it: name, sha256 of its text, characters."""
    import hashlib

    return {"name": name, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "chars": len(text)}


def format_file_block(name: str, text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    if not text.endswith("\n"):
        text += "\n"
    return f"{name}:\n{fence}\n{text}{fence}"


def build_user_message(
    prompt: Optional[str],
    stdin_text: Optional[str],
    files: Sequence[Tuple[str, str]] = (),
) -> Optional[str]:
    """files: (display name, text). Returns None when there is nothing at all to send."""
    parts = [format_file_block(name, text) for name, text in files]
    if stdin_text is not None and stdin_text.strip():
        parts.append(stdin_text.rstrip("\n"))
    if prompt is not None and prompt.strip():
        parts.append(prompt)
    if not parts:
        return None
    return "\n\n".join(parts)


def with_system_prompt(history: List[dict], system: Optional[str], from_flag: bool) -> List[dict]:
    """The conversation to send: -s replaces a history's system prompt; the config file's default only
    fills in where the history has none (shared by ask and chat)."""
    if not system:
        return list(history)
    if not from_flag and any(m.get("role") == "system" for m in history):
        return list(history)
    return [{"role": "system", "content": system}] + [m for m in history if m.get("role") != "system"]


# --------------------------------------------------------------------------------------------
# history files: JSON array, JSONL, or YAML list of OpenAI messages


def parse_history(text: str, source: str) -> List[dict]:
    stripped = text.strip()
    if not stripped:
        return []
    messages = None
    if stripped.startswith("["):
        try:
            messages = json.loads(stripped)
        except ValueError as exc:
            raise InputError(f"{source}: invalid JSON: {exc}")
    elif stripped.startswith("{"):
        # JSONL: one message per line (a single JSON object is one message, or {"messages": [...]}).
        try:
            whole = json.loads(stripped)
        except ValueError:
            whole = None
        if isinstance(whole, dict):
            messages = whole.get("messages", [whole]) if "role" not in whole else [whole]
        else:
            messages = []
            for lineno, line in enumerate(stripped.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    messages.append(json.loads(line))
                except ValueError as exc:
                    raise InputError(f"{source}:{lineno}: invalid JSON line: {exc.msg}")
    else:
        import yaml

        try:
            messages = yaml.safe_load(stripped)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"{source}:{mark.line + 1}" if mark else source
            raise InputError(f"invalid YAML in {where}: {exc.problem}")
        if isinstance(messages, dict) and "messages" in messages:
            messages = messages["messages"]
    if not isinstance(messages, list):
        raise InputError(f"{source}: a history must be a list of messages")
    return [normalise_message(m, source, i) for i, m in enumerate(messages, 1)]


def normalise_message(message, source: str, number: int) -> dict:
    if not isinstance(message, dict):
        raise InputError(f"{source}: message {number} is not an object")
    role = message.get("role")
    if role not in VALID_ROLES:
        raise InputError(f"{source}: message {number} has an invalid role {role!r}")
    msg = dict(message)
    if role == "assistant" and msg.get("content") is None:
        msg["content"] = ""  # llama.cpp-family servers reject null content (see TurnResult.assistant_message)
    if role == "assistant" and msg.get("tool_calls"):
        calls = []
        for call in msg["tool_calls"]:
            call = dict(call)
            fn = dict(call.get("function") or {})
            # The wire format wants arguments as a JSON string; histories written by hand often hold objects.
            if not isinstance(fn.get("arguments"), str):
                fn["arguments"] = json.dumps(fn.get("arguments") or {}, ensure_ascii=False)
            call["function"] = fn
            call.setdefault("type", "function")
            calls.append(call)
        msg["tool_calls"] = calls
    if role == "tool":
        if "tool_call_id" not in msg:
            raise InputError(f"{source}: tool message {number} has no tool_call_id")
        if not isinstance(msg.get("content"), str):
            msg["content"] = json.dumps(msg.get("content"), ensure_ascii=False)
    return msg


def load_history(path: str) -> List[dict]:
    warnings: List[str] = []
    text = decode_input(read_file_bytes(path), path, warnings)
    return parse_history(text, path)


def dump_history(messages: List[dict], path: str) -> None:
    """Write messages as JSON (or YAML for .yaml/.yml) — the same formats --history reads."""
    lower = path.lower()
    if lower.endswith((".yaml", ".yml")):
        import yaml

        text = yaml.safe_dump(messages, allow_unicode=True, sort_keys=False)
    elif lower.endswith(".jsonl"):
        text = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in messages)
    else:
        text = json.dumps(messages, ensure_ascii=False, indent=2) + "\n"
    # A unique temporary file in the same directory (O_EXCL: a planted FILE.tmp symlink is never
    # followed), then one rename: parallel runs saving to one file each leave a whole conversation.
    # mkstemp makes it 0600, which a saved conversation should be anyway.
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}")
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass

