"""The conversation log in SQLite: schema, migrations, writes and queries (stdlib only).

Concurrency (issue 14: "xargs -P 16 loses nothing, never 'database is locked'"): the database is in WAL
mode, so readers never block the one writer; every connection waits up to BUSY_TIMEOUT_MS for a lock;
every write is one short `BEGIN IMMEDIATE` transaction, so no lock is held while a model is streaming.
An ask does not write here at all: it appends its exchange to the pending file (store/pending.py, no
sqlite3: issue 22), and every open moves what waits there in, in one transaction (`_take_pending`).
SIGKILL can only lose the exchange that was in flight: it was never written, and WAL keeps the file
consistent (https://www.sqlite.org/wal.html).

Schema versions live in a one-row `schema_version` table; `MIGRATIONS[n]` takes a database from version
n to n + 1 inside one transaction. A database from a newer llmcli is refused with a clear error; an
older one is migrated after a copy of it is kept next to it (`logs.db.v1.bak`).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from ..errors import StoreError
from . import pending
from .pending import ANSWER_REF, answer_once
from .ids import DB_NAME, db_path, lookup_sessions, new_id, session_key  # noqa: F401 (re-exported)

BUSY_TIMEOUT_MS = 15000
WAL_CHECKPOINT_PAGES = 256  # 1 MB of WAL (SQLite's default is 1000 pages): what the next open may read


class AmbiguousId(StoreError):
    """An id prefix matches more than one conversation."""


# --------------------------------------------------------------------------------------------
# migrations: one function per step, each takes the schema from version n to n + 1


def _v0_to_v1(conn):
    """The first schema: conversations and their exchanges, every field of a request and its answer."""
    conn.execute("""CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        session TEXT,
        model TEXT,
        provider TEXT,
        title TEXT)""")
    conn.execute("""CREATE TABLE exchanges (
        id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        created REAL NOT NULL,
        session TEXT,
        command TEXT,
        prompt TEXT,
        request_messages TEXT NOT NULL,
        response_messages TEXT,
        answer TEXT,
        reasoning TEXT,
        refusal TEXT,
        tool_calls TEXT,
        model_requested TEXT,
        model_reported TEXT,
        provider TEXT,
        base_url TEXT,
        options TEXT,
        usage TEXT,
        first_token_ms INTEGER,
        total_ms INTEGER,
        finish_reason TEXT,
        error_type TEXT,
        error_message TEXT,
        exit_status INTEGER,
        partial INTEGER NOT NULL DEFAULT 0)""")


def _v1_to_v2(conn):
    """Cost (filled in when a price is known), the files sent (name, sha256), and the indexes that
    `-c` ("latest in this session") and `logs list` read by."""
    conn.execute("ALTER TABLE exchanges ADD COLUMN cost REAL")
    conn.execute("ALTER TABLE exchanges ADD COLUMN files TEXT")
    conn.execute("CREATE INDEX exchanges_by_conversation ON exchanges(conversation_id, id)")
    conn.execute("CREATE INDEX exchanges_by_session ON exchanges(session, id)")


def _v2_to_v3(conn):
    """Full-text search over prompts and answers (FTS5, kept in step by triggers). Without FTS5 in this
    SQLite build the step does nothing and search falls back to LIKE."""
    if not fts5_available(conn):
        return
    conn.execute("CREATE VIRTUAL TABLE exchanges_fts USING fts5(prompt, answer, content='exchanges', "
                 "content_rowid='rowid')")
    conn.execute("""CREATE TRIGGER exchanges_fts_insert AFTER INSERT ON exchanges BEGIN
        INSERT INTO exchanges_fts(rowid, prompt, answer) VALUES (new.rowid, new.prompt, new.answer); END""")
    conn.execute("""CREATE TRIGGER exchanges_fts_delete AFTER DELETE ON exchanges BEGIN
        INSERT INTO exchanges_fts(exchanges_fts, rowid, prompt, answer)
        VALUES ('delete', old.rowid, old.prompt, old.answer); END""")
    conn.execute("""CREATE TRIGGER exchanges_fts_update AFTER UPDATE OF prompt, answer ON exchanges BEGIN
        INSERT INTO exchanges_fts(exchanges_fts, rowid, prompt, answer)
        VALUES ('delete', old.rowid, old.prompt, old.answer);
        INSERT INTO exchanges_fts(rowid, prompt, answer) VALUES (new.rowid, new.prompt, new.answer); END""")
    conn.execute("INSERT INTO exchanges_fts(exchanges_fts) VALUES ('rebuild')")


def _v3_to_v4(conn):
    """The cost as an object (issue 19: amount, currency, source reported|estimated|unknown), the usage
    of each request for exchanges priced later, and the attachments sent (issue 17: name, type, size,
    sha256; never the bytes). A cost already stored was the provider's own number: `reported`, USD. An
    exchange with no cost source is priced from its usage when the log is read (`logs cost`)."""
    conn.execute("ALTER TABLE exchanges ADD COLUMN cost_currency TEXT")
    conn.execute("ALTER TABLE exchanges ADD COLUMN cost_source TEXT")
    conn.execute("ALTER TABLE exchanges ADD COLUMN cost_usages TEXT")
    conn.execute("ALTER TABLE exchanges ADD COLUMN attachments TEXT")
    conn.execute("UPDATE exchanges SET cost_currency = 'USD', cost_source = 'reported' WHERE cost IS NOT NULL")


def _v4_to_v5(conn):
    """The answer stored once (issue 22): the assistant message in `response_messages` whose text is the
    exchange's `answer` is written without its `content` and with `"content_is_answer": true`, and read
    back with the `answer` column as its content (`_decode`). Rows written before keep their full copy
    and read as they are; the step changes no row. An older llmcli, which would read such a message as
    having no text, refuses the database instead (its schema is older)."""


MIGRATIONS = (_v0_to_v1, _v1_to_v2, _v2_to_v3, _v3_to_v4, _v4_to_v5)
SCHEMA_VERSION = len(MIGRATIONS)


def fts5_available(conn) -> bool:
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.fts5_probe USING fts5(x)")
        conn.execute("DROP TABLE temp.fts5_probe")
        return True
    except sqlite3.OperationalError:
        return False


def schema_version(conn) -> int:
    try:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    return int(row[0]) if row else 0


def migrate(conn, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to `target` in one write transaction; returns the version found before."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(conn)  # again, under the lock: another process may have migrated meanwhile
        if found == 0:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        for step in MIGRATIONS[found:target]:
            step(conn)
        if found < target:
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
        conn.execute("COMMIT")
        return found
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# --------------------------------------------------------------------------------------------
# the store

JSON_FIELDS = ("request_messages", "response_messages", "tool_calls", "options", "usage", "files", "cost_usages",
               "attachments")
EXCHANGE_FIELDS = (
    "id", "conversation_id", "created", "session", "command", "prompt", "request_messages", "response_messages",
    "answer", "reasoning", "refusal", "tool_calls", "model_requested", "model_reported", "provider", "base_url",
    "options", "usage", "first_token_ms", "total_ms", "finish_reason", "error_type", "error_message",
    "exit_status", "partial", "cost", "files", "cost_currency", "cost_source", "cost_usages", "attachments",
)


def _describe(exc: Exception) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return "the database is read-only"
    if "not a database" in text or "malformed" in text:
        return "the file is not a valid SQLite database (corrupt?)"
    if "locked" in text or "busy" in text:
        return "the database is locked by another process"
    if "disk" in text and "full" in text:
        return "the disk is full"
    return text


OPEN_ATTEMPTS = 50  # about 25 s in all, beyond busy_timeout's own waits


class _Busy(Exception):
    """Opening hit SQLITE_BUSY where SQLite does not wait by itself."""


class Store:
    """An open log. Every public method is one short transaction or one query."""

    def __init__(self, path: str, create: bool = True):
        self.path = path
        self.fts = False
        if not create and not os.path.exists(path):
            if not pending.waiting(path):
                raise StoreError(f"no conversation log yet at {path}")
            create = True  # only asks so far: their exchanges wait to make the database
        # Two processes creating the database at once: switching a new file to WAL (and its first
        # migration) can answer SQLITE_BUSY without waiting on busy_timeout; such an open is tried
        # again, a bounded number of times, instead of costing that run its log entry.
        for attempt in range(OPEN_ATTEMPTS):
            try:
                self._open(path, create)
                return
            except _Busy:
                self._close_quietly()
                time.sleep(0.02 * (attempt + 1))
            except StoreError:
                self._close_quietly()  # a refused database (corrupt, newer) leaves no connection behind
                raise
        raise StoreError(f"cannot open the conversation log {path}: the database is locked by another process")

    def _close_quietly(self):
        conn = getattr(self, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self.conn = None

    def _open(self, path: str, create: bool) -> None:
        try:
            if create:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fresh = not os.path.exists(path) or os.path.getsize(path) == 0
            # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE itself.
            self.conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # WAL is persistent, so this is set once; a database made elsewhere (or by `.backup`) gets it too.
            if fresh or self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across crashes of llmcli
            # The last connection's close would checkpoint and delete the WAL: two fsyncs, and a new WAL
            # file for the next open. Python 3.12+ turns that off here (on 3.11 it stays: the readers of
            # the log pay it, never an ask, which only appends to the pending file). SQLite's automatic
            # checkpoint then does the work, every WAL_CHECKPOINT_PAGES pages, and an open reads the WAL
            # left behind (recovery: ~0.4 ms per MB), which the smaller-than-default bound keeps short.
            no_checkpoint = getattr(sqlite3, "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE", None)
            if no_checkpoint is not None and hasattr(self.conn, "setconfig"):
                self.conn.setconfig(no_checkpoint, True)
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            version = schema_version(self.conn)
            if version > SCHEMA_VERSION:
                raise StoreError(f"{path} was written by a newer llmcli (log schema {version}; this llmcli "
                                 f"knows up to {SCHEMA_VERSION}): upgrade llmcli, or use another LLMCLI_HOME")
            if version < SCHEMA_VERSION:
                if version > 0:
                    self._backup(version)
                migrate(self.conn)
            self.fts = self._has_fts()
            self._take_pending()
        except StoreError:
            raise
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise _Busy() from None
            raise StoreError(f"cannot open the conversation log {path}: {_describe(exc)}") from None
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the conversation log {path}: {_describe(exc)}") from None

    def _backup(self, version: int) -> None:
        target = f"{self.path}.v{version}.bak"
        if os.path.exists(target):
            return
        dest = sqlite3.connect(target)
        try:
            self.conn.backup(dest)
        finally:
            dest.close()

    def _has_fts(self) -> bool:
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'exchanges_fts'").fetchone()
        return row is not None

    def close(self):
        try:
            self.conn.close()
        except sqlite3.Error:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _write(self, statements: Iterable[Tuple[str, tuple]]) -> int:
        """Run statements in one BEGIN IMMEDIATE transaction; returns the rows they changed."""
        changed = 0
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    changed += self.conn.execute(sql, args).rowcount
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the conversation log {self.path}: {_describe(exc)}") from None
        return changed

    def _query(self, sql: str, args: tuple = ()) -> List[sqlite3.Row]:
        try:
            cur = self.conn.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the conversation log {self.path}: {_describe(exc)}") from None

    # -- writing -------------------------------------------------------------------------------
    def record(self, exchange: dict, conversation: Optional[dict] = None) -> None:
        """One exchange (and its conversation, the first time) in one transaction."""
        # A long answer's pages need not all stay cached until COMMIT (SQLite spills them to the WAL):
        # a small page cache keeps the peak memory of an `ask` close to the answer's size (issue 22).
        self.conn.execute("PRAGMA cache_size = -256")
        self._write(_record_statements(exchange, conversation))

    def _take_pending(self) -> None:
        """Move the exchanges that asks left in the pending file (store/pending.py) into the database, in
        one transaction. SQLite failing (read-only, locked past busy_timeout) leaves them waiting for the
        next open; a line SQLite refuses is kept aside, as a broken line is."""
        if not pending.waiting(self.path):
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")  # first the database's lock, then the file's (pending.py)
        except sqlite3.Error:
            return
        taken = None
        try:
            taken = pending.take(self.path)
            if taken is not None:
                self._insert_pending(taken)
            self.conn.execute("COMMIT")
        except BaseException as exc:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, (sqlite3.Error, OSError)):
                return
            raise
        else:
            if taken is not None:
                taken.empty()  # after COMMIT: a failure here only repeats a move that inserts nothing new
        finally:
            if taken is not None:
                taken.close()

    def _insert_pending(self, taken: "pending.Taken") -> None:
        """Each waiting exchange in a savepoint of its own: one that SQLite refuses is kept aside alone."""
        self.conn.execute("PRAGMA cache_size = -256")
        for record in taken.records():
            self.conn.execute("SAVEPOINT exchange")
            try:
                for sql, args in _record_statements(record, ignore_existing=True):
                    self.conn.execute(sql, args)
            except (sqlite3.IntegrityError, sqlite3.InterfaceError, TypeError, KeyError, ValueError):
                self.conn.execute("ROLLBACK TO exchange")
                taken.keep_bad(json.dumps(record))  # ASCII: whatever SQLite refused, it is written
            self.conn.execute("RELEASE exchange")

    def import_records(self, records: Iterable[dict]) -> Tuple[int, int]:
        """Conversations and exchanges from `export` lines; ids kept, existing ids skipped. (added, skipped)"""
        added = skipped = 0
        statements = []
        for rec in records:
            if rec.get("type") == "conversation":
                statements.append((_INSERT_CONVERSATION, (rec["id"], rec["created"], rec.get("session"),
                                                          rec.get("model"), rec.get("provider"), rec.get("title"))))
            elif rec.get("type") == "exchange":
                # An exchange without its conversation line still gets one (a hand-cut export).
                conversation, (sql, args) = _record_statements(rec)
                statements += [conversation, (sql.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1), args)]
        changed = self._write_counting(statements)
        for (sql, _), n in zip(statements, changed):
            if "INTO exchanges" in sql:
                if n:
                    added += 1
                else:
                    skipped += 1
        return added, skipped

    def _write_counting(self, statements) -> List[int]:
        counts = []
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    counts.append(self.conn.execute(sql, args).rowcount)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the conversation log {self.path}: {_describe(exc)}") from None
        return counts

    def delete_conversations(self, ids: List[str]) -> Tuple[int, int]:
        """(conversations, exchanges) removed."""
        statements = []
        for cid in ids:
            statements.append(("DELETE FROM exchanges WHERE conversation_id = ?", (cid,)))
            statements.append(("DELETE FROM conversations WHERE id = ?", (cid,)))
        counts = self._write_counting(statements)
        return sum(counts[1::2]), sum(counts[0::2])

    def delete_older_than(self, cutoff: float) -> Tuple[int, int]:
        """Exchanges created before `cutoff` (unix time), then conversations left with none."""
        counts = self._write_counting([
            ("DELETE FROM exchanges WHERE created < ?", (cutoff,)),
            ("DELETE FROM conversations WHERE id NOT IN (SELECT conversation_id FROM exchanges)", ()),
        ])
        return counts[1], counts[0]

    def delete_exchange(self, exchange_id: str) -> Tuple[int, int]:
        counts = self._write_counting([
            ("DELETE FROM exchanges WHERE id = ?", (exchange_id,)),
            ("DELETE FROM conversations WHERE id NOT IN (SELECT conversation_id FROM exchanges)", ()),
        ])
        return counts[1], counts[0]

    # -- reading -------------------------------------------------------------------------------
    def latest_exchange(self, session: Optional[str] = None, conversation_id: Optional[str] = None) -> Optional[dict]:
        """The newest exchange, of this session (None: of any) or of this conversation. With a list of
        sessions, the first one that has any exchange decides (see ids.lookup_sessions)."""
        if session is not None and not isinstance(session, str):
            for key in session:
                found = self.latest_exchange(key, conversation_id)
                if found is not None:
                    return found
            return None
        where, args = [], []
        if session is not None:
            sessions = [session] if isinstance(session, str) else list(session)
            where.append(f"session IN ({','.join('?' * len(sessions))})")
            args += sessions
        if conversation_id is not None:
            where.append("conversation_id = ?")
            args.append(conversation_id)
        sql = "SELECT * FROM exchanges" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._query(sql + " ORDER BY id DESC LIMIT 1", tuple(args))
        return _decode(rows[0]) if rows else None

    def resolve(self, prefix: str) -> str:
        """The conversation whose id starts with `prefix` (case-insensitive); an exchange id works too."""
        wanted = prefix.strip().upper()
        if not wanted or not re.fullmatch(r"[0-9A-Z]+", wanted):
            raise StoreError(f"not a conversation id: {prefix!r} (see llmcli logs list)")
        rows = self._query("SELECT id FROM conversations WHERE id >= ? AND id < ? ORDER BY id LIMIT 11",
                           (wanted, wanted + "~"))
        ids = [r["id"] for r in rows]
        if not ids:
            found = self._query("SELECT conversation_id FROM exchanges WHERE id = ?", (wanted,))
            if found:
                return found[0]["conversation_id"]
            raise StoreError(f"no conversation {prefix} in the log (see llmcli logs list)")
        if len(ids) > 1:
            shown = ", ".join(ids[:10]) + (", …" if len(ids) > 10 else "")
            raise AmbiguousId(f"the id prefix {prefix} matches {len(ids) if len(ids) <= 10 else 'more than 10'} "
                              f"conversations: {shown}; give more characters")
        return ids[0]

    def exchanges(self, conversation_id: str) -> List[dict]:
        rows = self._query("SELECT * FROM exchanges WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        return [_decode(r) for r in rows]

    def conversation(self, conversation_id: str) -> Optional[dict]:
        rows = self._query("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
        return rows[0] if rows else None

    def list_conversations(self, limit: Optional[int] = 20, model: Optional[str] = None, query: Optional[str] = None,
                           since: Optional[float] = None, session: Optional[str] = None) -> List[dict]:
        """Newest first: each conversation with its exchange count, last activity and first prompt."""
        where, args = [], []
        if model:
            where.append("(e.model_requested LIKE ? OR e.model_reported LIKE ?)")
            args += [f"%{model}%", f"%{model}%"]
        if since is not None:
            where.append("e.created >= ?")
            args.append(since)
        if session is not None:
            sessions = [session] if isinstance(session, str) else list(session)
            where.append(f"e.session IN ({','.join('?' * len(sessions))})")
            args += sessions
        if query:
            ids = self.search_exchange_rowids(query)
            if not ids:
                return []
            where.append(f"e.rowid IN ({','.join('?' * len(ids))})")
            args += ids
        # The filters choose conversations; the counts are over all of each one's exchanges.
        chosen = ("SELECT DISTINCT e.conversation_id FROM exchanges e WHERE " + " AND ".join(where)) if where else None
        sql = ("SELECT c.id, c.created, c.title, c.provider, COUNT(a.id) AS turns, MAX(a.id) AS last_exchange, "
               "MAX(a.created) AS last_created, "
               "(SELECT COALESCE(model_reported, model_requested) FROM exchanges WHERE conversation_id = c.id "
               "ORDER BY id DESC LIMIT 1) AS model "
               "FROM conversations c JOIN exchanges a ON a.conversation_id = c.id"
               + (f" WHERE c.id IN ({chosen})" if chosen else "")
               + " GROUP BY c.id ORDER BY last_exchange DESC")
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._query(sql, tuple(args))

    def search_exchange_rowids(self, query: str) -> List[int]:
        if self.fts:
            # Each word is quoted, so FTS5 syntax in what the user typed (AND, *, quotes) cannot fail the query.
            terms = " ".join('"' + w.replace('"', '""') + '"' for w in query.split())
            try:
                rows = self._query("SELECT rowid FROM exchanges_fts WHERE exchanges_fts MATCH ?", (terms,))
                return [r["rowid"] for r in rows]
            except StoreError:
                pass
        where = " AND ".join("(prompt LIKE ? OR answer LIKE ?)" for _ in query.split()) or "1"
        args = []
        for w in query.split():
            args += [f"%{w}%", f"%{w}%"]
        return [r["rowid"] for r in self._query(f"SELECT rowid FROM exchanges WHERE {where}", tuple(args))]

    def export(self, since: Optional[float] = None, conversation_ids: Optional[List[str]] = None) -> Iterator[dict]:
        """JSONL records: each conversation, then its exchanges (every field), oldest first."""
        where, args = "", ()
        if since is not None:
            where, args = " WHERE id IN (SELECT conversation_id FROM exchanges WHERE created >= ?)", (since,)
        for conv in self._query("SELECT * FROM conversations" + where + " ORDER BY id", args):
            if conversation_ids is not None and conv["id"] not in conversation_ids:
                continue
            yield {"type": "conversation", **conv}
            for ex in self.exchanges(conv["id"]):
                if since is None or ex["created"] >= since:
                    yield {"type": "exchange", **ex}

    def cost_rows(self, since: Optional[float] = None, conversation_ids: Optional[List[str]] = None) -> List[dict]:
        """What pricing needs of each exchange (newer than `since`, or of these conversations), oldest first."""
        where, args = [], []
        if since is not None:
            where.append("created >= ?")
            args.append(since)
        if conversation_ids is not None:
            if not conversation_ids:
                return []
            where.append(f"conversation_id IN ({','.join('?' * len(conversation_ids))})")
            args += list(conversation_ids)
        sql = ("SELECT id, conversation_id, created, model_requested, model_reported, provider, base_url, usage, "
               "cost, cost_currency, cost_source, cost_usages FROM exchanges"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id")
        return [_decode(r) for r in self._query(sql, tuple(args))]

    def count(self) -> Tuple[int, int]:
        rows = self._query("SELECT (SELECT COUNT(*) FROM conversations) AS c, (SELECT COUNT(*) FROM exchanges) AS e")
        return rows[0]["c"], rows[0]["e"]


def _title(prompt: Optional[str]) -> Optional[str]:
    if not prompt:
        return None
    words = " ".join(prompt.split())
    return words[:80]


def _cost_columns(ex: dict) -> dict:
    """An exchange's `cost` ({amount, currency, source}, or None: priced later from its usage) as the
    columns cost, cost_currency, cost_source. A bare number (an export from schema 3) was reported."""
    cost = ex.get("cost")
    if isinstance(cost, dict):
        amount = cost.get("amount")
        amount = float(amount) if isinstance(amount, (int, float)) and not isinstance(amount, bool) else None
        return {"cost": amount, "cost_currency": cost.get("currency") or "USD", "cost_source": cost.get("source")}
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        return {"cost": float(cost), "cost_currency": ex.get("cost_currency") or "USD",
                "cost_source": ex.get("cost_source") or "reported"}
    return {"cost": None, "cost_currency": None, "cost_source": None}


def _answer_restored(messages, answer):
    if not isinstance(messages, list):
        return messages
    out = []
    for msg in messages:
        if isinstance(msg, dict) and msg.get(ANSWER_REF) is True:
            msg = {k: v for k, v in msg.items() if k != ANSWER_REF}
            msg["content"] = answer
        out.append(msg)
    return out


_INSERT_CONVERSATION = ("INSERT OR IGNORE INTO conversations (id, created, session, model, provider, title) "
                        "VALUES (?,?,?,?,?,?)")


def _record_statements(exchange: dict, conversation: Optional[dict] = None,
                       ignore_existing: bool = False) -> List[Tuple[str, tuple]]:
    """An exchange's conversation (the first time) and the exchange. `ignore_existing`: an exchange
    already stored is skipped (a pending line moved twice, store/pending.py)."""
    conv = dict(conversation or {})
    conv.setdefault("id", exchange["conversation_id"])
    conv.setdefault("created", exchange.get("created") or time.time())
    sql, args = _insert_exchange(exchange)
    if ignore_existing:  # not OR IGNORE, which would also drop a row that breaks NOT NULL, silently
        sql += " ON CONFLICT(id) DO NOTHING"
    return [(_INSERT_CONVERSATION, (
        conv["id"], conv["created"], conv.get("session", exchange.get("session")),
        conv.get("model", exchange.get("model_requested") or exchange.get("model_reported")),
        conv.get("provider", exchange.get("provider")), conv.get("title", _title(exchange.get("prompt"))),
    )), (sql, args)]


def _insert_exchange(ex: dict) -> Tuple[str, tuple]:
    ex = {**ex, **_cost_columns(ex)}
    if isinstance(ex.get("answer"), str):
        ex["response_messages"] = answer_once(ex.get("response_messages"), ex["answer"])
    values = []
    for name in EXCHANGE_FIELDS:
        value = ex.get(name)
        if name in JSON_FIELDS and value is not None and not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False)
        elif name == "partial":
            value = 1 if value else 0
        elif name == "created" and value is None:
            value = time.time()
        values.append(value)
    sql = f"INSERT INTO exchanges ({', '.join(EXCHANGE_FIELDS)}) VALUES ({', '.join('?' * len(EXCHANGE_FIELDS))})"
    return sql, tuple(values)


def _decode(row: Dict) -> dict:
    out = dict(row)
    for name in JSON_FIELDS:
        if isinstance(out.get(name), str):
            try:
                out[name] = json.loads(out[name])
            except ValueError:
                pass
    out["partial"] = bool(out.get("partial"))
    if "response_messages" in out:
        out["response_messages"] = _answer_restored(out["response_messages"], out.get("answer"))
    # One cost object, as --json shows it; None when it is to be priced from the usage (run/cost.py).
    amount, currency, source = out.get("cost"), out.pop("cost_currency", None), out.pop("cost_source", None)
    out["cost"] = {"amount": amount, "currency": currency or "USD", "source": source} if source else None
    return out


def conversation_messages(exchange: dict) -> List[dict]:
    """What a continued request starts from: the exchange's request messages and what the run added."""
    return list(exchange.get("request_messages") or []) + list(exchange.get("response_messages") or [])


# --------------------------------------------------------------------------------------------
# durations: --since 2d, --older-than 30d

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds from '30d', '12h', '90m', '2w', '45s' (a plain number is days)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not m:
        raise StoreError(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m, 2w)")
    return float(m.group(1)) * _UNITS[m.group(2) or "d"]
