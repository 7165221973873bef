"""Ids, paths, the session key and the on/off switch: what `ask` needs before (or instead of) opening
the database, so none of it imports sqlite3."""

import os
import secrets
import time
from typing import Optional

from ..errors import StoreError

DB_NAME = "logs.db"
OFF_MARKER = "logs-off"  # `llmcli logs off` creates it in the data dir; `logs on` removes it
SESSION_ENV = "LLMCLI_SESSION"


# --------------------------------------------------------------------------------------------
# ids and the session key

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(now: Optional[float] = None) -> str:
    """A ULID-style id: 48 bits of milliseconds then 80 random bits, 26 Crockford base-32 characters.

    Ids sort by creation time as text, so "latest" and `--since` need no extra column (ulid/spec).
    """
    ms = int((time.time() if now is None else now) * 1000)
    value = (ms << 80) | secrets.randbits(80)
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def session_key(env=os.environ) -> str:
    """Which "terminal session" this process belongs to, for `-c` ("the latest conversation *here*").

    `$LLMCLI_SESSION` when set. Otherwise the shell that started llmcli: its pid and start time (pids
    are reused) together with the controlling terminal. Commands typed in one terminal share their
    shell; two scripts running at once are two shells, so each continues its own conversations.
    """
    explicit = env.get(SESSION_ENV)
    if explicit:
        return "env:" + explicit
    ppid = os.getppid()
    start = ""
    tty = ""
    try:
        with open(f"/proc/{ppid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        start = fields[19].decode()  # starttime, field 22 of proc(5)
        tty = fields[4].decode()  # tty_nr, field 7
    except (OSError, IndexError):
        for fd in (0, 1, 2):
            try:
                tty = os.ttyname(fd)
                break
            except OSError:
                continue
    return f"shell:{ppid}:{start}:tty:{tty}"


# --------------------------------------------------------------------------------------------
# paths and the on/off switch


def db_path(home: str) -> str:
    return os.path.join(home, DB_NAME)


def logging_switched_off(home: str) -> bool:
    return os.path.exists(os.path.join(home, OFF_MARKER))


def switch_logging(home: str, on: bool) -> None:
    marker = os.path.join(home, OFF_MARKER)
    try:
        if on:
            if os.path.exists(marker):
                os.remove(marker)
        else:
            os.makedirs(home, exist_ok=True)
            with open(marker, "w", encoding="utf-8") as fh:
                fh.write("llmcli logs off: conversations are not recorded (llmcli logs on)\n")
    except OSError as exc:
        raise StoreError(f"cannot switch logging {'on' if on else 'off'} in {home}: {exc.strerror or exc}")


