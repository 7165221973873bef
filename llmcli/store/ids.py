"""Ids, paths, the session key and the on/off switch: what `ask` needs before (or instead of) opening
the database, so none of it imports sqlite3."""

from __future__ import annotations

import os
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
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")  # what secrets.randbits(80) does, unimported
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


SHELLS = {"bash", "zsh", "fish", "sh", "dash", "ksh", "mksh", "oksh", "yash", "tcsh", "csh", "ash", "busybox",
          "nu", "xonsh", "elvish", "pwsh", "ion", "osh", "oil.ovm"}


def _proc_stat(pid: int):
    """(name, ppid, start time, tty_nr) from /proc/PID/stat (proc(5)), or None off Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
        name = raw[raw.index(b"(") + 1: raw.rindex(b")")].decode("utf-8", "replace")
        fields = raw.rsplit(b")", 1)[1].split()
        return name, int(fields[1]), fields[19].decode(), fields[4].decode()
    except (OSError, ValueError, IndexError):
        return None


def session_key(env=os.environ) -> str:
    """Which "terminal session" this process belongs to, for `-c` ("the latest conversation *here*").

    `$LLMCLI_SESSION` when set. Otherwise the shell that started llmcli (the nearest ancestor that is
    a shell, so `uv run`, `time` or `nice` in between change nothing): its pid and start time (pids are
    reused) together with the controlling terminal. Commands typed in one terminal share their shell;
    two scripts running at once are two shells, so each continues its own conversations.
    """
    explicit = env.get(SESSION_ENV)
    if explicit:
        return "env:" + explicit
    ppid = os.getppid()
    chosen = None
    pid = ppid
    for _ in range(8):  # a few launchers deep at most
        stat = _proc_stat(pid)
        if stat is None:
            break
        if stat[0] in SHELLS:
            chosen = (pid, stat)
            break
        if stat[1] <= 1:
            break
        pid = stat[1]
    if chosen is None:
        stat = _proc_stat(ppid)
        chosen = (ppid, stat) if stat is not None else None
    if chosen is not None:
        pid, (_, _, start, tty) = chosen
        return f"shell:{pid}:{start}:tty:{tty}"
    tty = ""
    for fd in (0, 1, 2):
        try:
            tty = os.ttyname(fd)
            break
        except OSError:
            continue
    return f"shell:{ppid}::tty:{tty}"


def own_key() -> Optional[str]:
    """This process as a shell would have been keyed: `sh -c 'llmcli ask a; llmcli ask -c b'` runs the
    first llmcli as the shell's child but *execs* the last one in the shell's place (same pid, same
    start time), so the second finds the first's session under its own pid."""
    stat = _proc_stat(os.getpid())
    return None if stat is None else f"shell:{os.getpid()}:{stat[2]}:tty:{stat[3]}"


def lookup_sessions(env=os.environ) -> list:
    """The session keys "the latest conversation here" matches, in order (the first with any wins): the
    one of the shell we replaced (if a shell exec'd us), then ours. Only that shell's own children can have recorded the second, so it never
    picks up anyone else's conversation."""
    keys = [session_key(env)]
    if not env.get(SESSION_ENV):
        mine = own_key()
        if mine is not None and mine not in keys:
            # First: when a shell exec'd us, its own children's conversations are ours exactly, while
            # the nearest shell above is shared (xargs -P 4 sh -c '…; llmcli ask -c …' has one).
            keys.insert(0, mine)
    return keys


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


