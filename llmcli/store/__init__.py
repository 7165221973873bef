"""The conversation log: one SQLite database in the data dir (`$LLMCLI_HOME/logs.db`) holding every
`ask` and `chat` exchange, its migrations, search, export/import and the terminal-session rule for
"the latest conversation".

Owns: the schema and its versioned migrations (`db.MIGRATIONS`, one function per step), sortable ids
(`db.new_id`), the session key (`db.session_key`), every query and write (WAL, busy_timeout, short
write transactions), the pending file an ask appends to instead of opening SQLite (`pending`, moved
in by the next open), full-text search (FTS5, or LIKE when FTS5 is missing), the JSONL export/import
format and the import of simonw/llm's logs.db. stdlib only; `sqlite3` is imported by `db` itself, so
neither the `--help` path nor a plain `ask` (which imports `ids` and `pending`) loads it.

May import: config, events, errors, status.
Must not import: wire, prompt, tools, run, output, batch, repl, cli (it stores plain dicts; building
them from a run is `run.logrecord`'s job).
"""
