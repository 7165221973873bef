"""Exchanges on their way into the database: one JSON line each in `logs.db.pending` (stdlib only, no sqlite3).

An `ask` appends its exchange here in one write (~0.5 ms, this module's import included) instead of
importing sqlite3, opening the database, reading its WAL and committing (~3-4 ms of every ask, against
issue 22's "the log adds ≤ 5 ms"). The next open of the log — any `logs` command, `-c`, chat, a budget
check — moves every waiting line into SQLite in one transaction (`Store._take_pending`), so what reads
the log through llmcli sees every exchange. A tool that reads logs.db itself sees an exchange once
llmcli has opened the log since (`llmcli logs path` does).

Concurrency, with nothing lost and nothing inserted twice:
- an appender holds a shared flock on the file while it writes its line in one `writev` with
  O_APPEND (lines never interleave on a local file system; a line with a long answer is written in
  pieces under the exclusive flock), and never touches SQLite;
- the mover first takes the database's write lock (BEGIN IMMEDIATE), then an exclusive flock (so it
  waits for lines being written, and new ones wait for it), inserts every line with INSERT OR IGNORE,
  commits, and only then empties the file. A move cut short after its COMMIT inserts nothing twice
  the next time. One lock order (SQLite, then the flock) and appenders that take only the flock: no
  deadlock. The file is emptied, never replaced, so no appender can write into a file nobody reads.
A line that is not a JSON object (a write cut short by a full disk) goes to `logs.db.pending.bad`,
never silently away.
"""

from __future__ import annotations

import json
import os
from typing import IO, Iterator, Optional

SUFFIX = ".pending"
BAD_SUFFIX = ".pending.bad"

try:
    import fcntl
except ImportError:  # no flock (Windows): the exchange is written to the database directly
    fcntl = None


ANSWER_REF = "content_is_answer"  # on a stored response message: its content is the `answer` column (v5)


def answer_once(messages, answer):
    """`messages` with the last assistant message whose text is `answer` referring to that column instead
    of holding a second copy of it (a long answer's JSON copy cost ~3.5 MB of peak memory per MB of text)."""
    if not answer or not isinstance(messages, list):
        return messages
    for i in range(len(messages) - 1, -1, -1):
        msg = messages[i]
        if isinstance(msg, dict) and msg.get("role") == "assistant":
            if msg.get("content") == answer:  # the very object, for an answer just streamed: no compare
                ref = {k: v for k, v in msg.items() if k != "content"}
                ref[ANSWER_REF] = True
                return messages[:i] + [ref] + messages[i + 1:]
    return messages


def pending_path(db_file: str) -> str:
    return db_file + SUFFIX


def waiting(db_file: str) -> bool:
    """Whether exchanges wait in the pending file (one stat)."""
    try:
        return os.stat(pending_path(db_file)).st_size > 0
    except OSError:
        return False


def log_exists(db_file: str) -> bool:
    """Whether anything is logged: the database, or exchanges waiting to make it."""
    return os.path.exists(db_file) or waiting(db_file)


SLICE = 1 << 18  # characters: a longer answer is written in slices of this size (append)


def append(db_file: str, record: dict) -> bool:
    """Append one exchange; False when this platform cannot (no flock): write it to the database instead.
    Raises OSError (a read-only or full disk).

    A line is one `writev` under a shared lock, so appenders never wait for each other. A long answer
    (SLICE characters or more) is written slice by slice under the exclusive lock instead, so no
    second whole copy of it exists at once (issue 22: the peak RSS of a 200k-chunk answer); the lock
    keeps its line whole."""
    if fcntl is None:
        return False
    answer = record.get("answer")
    if isinstance(answer, str):  # the text once, as the database keeps it
        record = {**record, "response_messages": answer_once(record.get("response_messages"), answer)}
    long_answer = isinstance(answer, str) and len(answer) >= SLICE
    if long_answer:
        record = {k: v for k, v in record.items() if k != "answer"}
    head = _encoded(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    os.makedirs(os.path.dirname(os.path.abspath(db_file)), exist_ok=True)
    fd = os.open(pending_path(db_file), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if not long_answer:
            fcntl.flock(fd, fcntl.LOCK_SH)
            _write(fd, (head, b"\n"), db_file)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # head ends with "}": the answer becomes its last key
            _write(fd, (head[:-1], b',"answer":"' if len(head) > 2 else b'"answer":"'), db_file)
            for i in range(0, len(answer), SLICE):
                _write(fd, (_encoded(json.dumps(answer[i:i + SLICE], ensure_ascii=False)[1:-1]),), db_file)
            _write(fd, (b'"}\n',), db_file)
    finally:
        os.close(fd)
    return True


def _encoded(text: str) -> bytes:
    # A lone surrogate (a server's bad escape) becomes its JSON escape again: the line stays valid JSON.
    return text.encode("utf-8", "backslashreplace")


def _write(fd: int, parts, db_file: str) -> None:
    total = sum(len(p) for p in parts)
    written = os.writev(fd, parts)
    if written != total:  # a full disk: end the cut line, so the next one stays whole
        try:
            os.write(fd, b"\n")
        except OSError:
            pass
        raise OSError(f"the disk is full (wrote {written} of {total} bytes to {pending_path(db_file)})")


class Taken:
    """The pending file, exclusively locked: its lines, then `empty()` once they are committed."""

    def __init__(self, f: IO[bytes], db_file: str):
        self.file, self.db_file = f, db_file

    def records(self) -> Iterator[dict]:
        """Each line's exchange, in order; a line that is not a JSON object is kept aside (BAD_SUFFIX)."""
        for line in self.file:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and record.get("id") and record.get("conversation_id"):
                yield record
            else:
                self.keep_bad(line)

    def keep_bad(self, line) -> None:
        """A line kept aside (BAD_SUFFIX), for a person to look at: never silently dropped."""
        data = line.encode("utf-8") if isinstance(line, str) else line
        with open(self.db_file + BAD_SUFFIX, "ab") as bad:
            bad.write(data if data.endswith(b"\n") else data + b"\n")

    def empty(self) -> None:
        os.ftruncate(self.file.fileno(), 0)

    def close(self) -> None:
        self.file.close()  # closes fd, which releases the flock


def take(db_file: str) -> Optional[Taken]:
    """The pending file locked exclusively (waits for appenders mid-write), or None when there is none.
    Call with the database's write lock held."""
    if fcntl is None:
        return None
    try:
        fd = os.open(pending_path(db_file), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return Taken(os.fdopen(fd, "rb"), db_file)
    except BaseException:
        os.close(fd)
        raise
