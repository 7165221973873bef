"""The conversation log on the command line (issue 14): `ask`/`chat` options (-c, --cid, --global,
--no-log), what they continue, and the `llmcli logs` group (list, show, rm, on/off/status/path,
export, import).

Nothing heavy at module level: `llmcli --help` imports this module; sqlite3 is imported by
`llmcli.store.db`, which only the commands that read or write the log import.
"""

import json
import os
import sys
import time

import click

from .paramtypes import FILE, FILE_OR_DASH

# The same as app.CONTEXT_SETTINGS: app.py imports this module for log_options, so not the other way round.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def echo_outside(text):
    from .app import echo_outside as echo

    echo(text)

LATEST_RULE = ("'The latest conversation' is the latest one continued or started from this terminal session: "
               "the same shell (commands typed in one terminal share it; two scripts running at once do not), "
               "or the same $LLMCLI_SESSION when that is set. --global ignores the session.")


# --------------------------------------------------------------------------------------------
# options for ask and chat


def log_options(f):
    """-c/--continue, --cid, --global, --no-log (ask and chat)."""
    options = [
        click.option("-c", "--continue", "continue_", is_flag=True,
                     help="Continue the latest conversation of this terminal session (see --global)."),
        click.option("--cid", metavar="ID", help="Continue conversation ID (any unique prefix; see llmcli logs)."),
        click.option("--global", "global_", is_flag=True,
                     help="With -c: the latest conversation of any session, not only this terminal's."),
        click.option("--no-log", is_flag=True, help="Do not record this run in the conversation log."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def continued_conversation(settings, params):
    """(conversation id, stored messages) for -c/--cid, else None. The messages are exactly what the
    last exchange sent plus what it received, so the server sees the same conversation again."""
    from ..errors import UsageError

    if not params.get("continue_") and not params.get("cid"):
        if params.get("global_"):
            raise UsageError("--global only applies with -c/--continue")
        return None
    if params.get("history_file"):
        raise UsageError("--history cannot be combined with -c/--continue or --cid")
    from ..errors import StoreError
    from ..store.db import Store, conversation_messages, db_path, lookup_sessions
    from ..store.pending import log_exists

    if not log_exists(db_path(settings.home)):
        raise StoreError(f"no conversation to continue: nothing is logged yet ({db_path(settings.home)})")
    with Store(db_path(settings.home), create=False) as store:
        if params.get("cid"):
            cid = store.resolve(params["cid"])
            last = store.latest_exchange(conversation_id=cid)
        else:
            last = store.latest_exchange(session=None if params.get("global_") else lookup_sessions())
            if last is None:
                raise StoreError("no conversation to continue in this terminal session "
                                 "(--global continues the latest of any; llmcli logs list shows them)")
            cid = last["conversation_id"]
    return cid, conversation_messages(last) if last else []


def exchange_log(settings, params, messages, command, continued=None, files=None, attachments=None,
                 price_now=False):
    """The run's log entry. `price_now`: the run shows its cost anyway (-u, --json, --jsonl), so the log
    prices it too; otherwise an exchange that needs the price table is priced when the log is read."""
    from ..run.logrecord import ExchangeLog, logging_enabled

    return ExchangeLog(settings, messages, command, conversation_id=continued[0] if continued else None,
                       enabled=logging_enabled(settings, params.get("no_log")), files=files,
                       attachments=attachments, price_now=price_now)


# --------------------------------------------------------------------------------------------
# helpers


def _store(settings_home=None, create=False):
    from ..store.db import Store, db_path

    return Store(db_path(settings_home or _home()), create=create)


def _home():
    from ..config.settings import home_dir

    return home_dir(os.environ)


def _local_time(ts) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "?"


def _short_ids(ids, minimum=10):
    """The shortest prefixes (at least `minimum` characters) that tell these ids apart."""
    length = minimum
    while length < 26 and len({i[:length] for i in ids}) < len(set(ids)):
        length += 1
    return {i: i[:length] for i in ids}


def _since(value):
    if not value:
        return None
    from ..store.db import parse_duration

    return time.time() - parse_duration(value)


def _print_json(obj):
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


def _no_log_yet(home):
    from ..store.ids import db_path
    from ..store.pending import log_exists

    return not log_exists(db_path(home))


# --------------------------------------------------------------------------------------------
# the group


@click.group("logs", context_settings=CONTEXT_SETTINGS, invoke_without_command=True,
             epilog=LATEST_RULE)
@click.pass_context
def logs_group(ctx):
    """The conversation log: every ask and chat exchange, in $LLMCLI_HOME/logs.db.

    \b
    Examples:
      llmcli logs                      recent conversations (same as: llmcli logs list)
      llmcli logs list -q docker       conversations that mention docker
      llmcli logs show 01JF3K          one conversation (any unique id prefix)
      llmcli ask -c "and in French?"   continue the latest conversation of this terminal
      llmcli logs rm --older-than 30d  forget what is older than 30 days
      llmcli logs export > all.jsonl   everything, one JSON record per line
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(logs_list)


@logs_group.command("list")
@click.option("-n", "--count", type=click.IntRange(0), default=20, show_default=True, metavar="N",
              help="Show the N most recent conversations (0: all).")
@click.option("-m", "--model", metavar="MODEL", help="Only conversations with this model (substring).")
@click.option("-q", "--query", metavar="TEXT", help="Only conversations whose prompts or answers contain these words.")
@click.option("--since", metavar="AGE", help="Only activity newer than AGE (e.g. 2d, 12h, 90m, 2w).")
@click.option("--here", is_flag=True, help="Only conversations of this terminal session.")
@click.option("--cost", "show_cost", is_flag=True,
              help="Add each conversation's cost (reported or estimated; '≥' when some exchanges are unknown).")
@click.option("--json", "json_output", is_flag=True, help="Print a JSON array.")
def logs_list(count, model, query, since, here, show_cost, json_output):
    """Recent conversations, newest first: id prefix, local time, model, turns, first words."""
    home = _home()
    if _no_log_yet(home):
        if json_output:
            click.echo("[]")
        else:
            click.echo("no conversations logged yet", err=True)
        return
    from ..store.db import lookup_sessions

    with _store(home) as store:
        rows = store.list_conversations(limit=count or None, model=model, query=query, since=_since(since),
                                        session=lookup_sessions() if here else None)
        if query and not store.fts and not json_output:
            click.echo("llmcli: note: full-text search (FTS5) is not available in this SQLite; "
                       "searched with LIKE", err=True)
        costs = _conversation_costs(store, [r["id"] for r in rows]) if show_cost else {}
    if show_cost:
        for r in rows:
            r["cost"] = costs.get(r["id"], CostTotal()).to_dict()
    if json_output:
        _print_json(rows)
        return
    short = _short_ids([r["id"] for r in rows])
    for r in rows:
        title = r.get("title") or ""
        if len(title) > 60:
            title = title[:59] + "…"
        turns = f"{r['turns']} turn{'s' if r['turns'] != 1 else ''}"
        cost = f"  {costs.get(r['id'], CostTotal()).shown():>10}" if show_cost else ""
        echo_outside(f"{short[r['id']]}  {_local_time(r['last_created'])}{cost}  {r.get('model') or '-'}  {turns}  "
                     f"{title}")


# --------------------------------------------------------------------------------------------
# cost (issue 19): summed from the log


class CostTotal:
    """Exchanges' costs added up: the known amounts summed, the unknown ones counted (never as 0)."""

    def __init__(self):
        self.amount = 0.0
        self.exchanges = self.reported = self.estimated = self.unknown = 0
        self.currencies = set()

    def add(self, cost) -> None:
        self.exchanges += 1
        if cost.amount is None:
            self.unknown += 1
            return
        self.amount += cost.amount
        self.currencies.add(cost.currency)
        if cost.source == "reported":
            self.reported += 1
        else:
            self.estimated += 1

    @property
    def priced(self) -> int:
        return self.reported + self.estimated

    @property
    def source(self) -> str:
        if not self.priced:
            return "unknown"
        return "reported" if not self.estimated else "estimated"

    def to_dict(self) -> dict:
        currency = sorted(self.currencies)[0] if len(self.currencies) == 1 else ("USD" if not self.currencies
                                                                                  else "mixed")
        return {"amount": round(self.amount, 10) if self.priced else None, "currency": currency,
                "source": self.source, "exchanges": self.exchanges, "reported": self.reported,
                "estimated": self.estimated, "unknown": self.unknown}

    def shown(self) -> str:
        """`$0.0041`, `≥$0.0041` (some exchanges unknown), `unknown`."""
        from ..run.cost import format_usd

        if not self.priced:
            return "unknown"
        return ("≥" if self.unknown else "") + format_usd(self.amount)


def _conversation_costs(store, conversation_ids) -> dict:
    from ..run.cost import exchange_cost

    totals = {}
    for ex in store.cost_rows(conversation_ids=list(conversation_ids)):
        totals.setdefault(ex["conversation_id"], CostTotal()).add(exchange_cost(ex))
    return totals


def _group_key(ex, by):
    if by == "model":
        return ex.get("model_reported") or ex.get("model_requested") or "-"
    if by == "provider":
        return ex.get("provider") or "-"
    return time.strftime("%Y-%m-%d", time.localtime(ex.get("created") or 0))


@logs_group.command("cost")
@click.option("--since", metavar="AGE", help="Only exchanges newer than AGE (e.g. 7d, 12h, 2w).  [default: all]")
@click.option("--by", "by", type=click.Choice(["model", "provider", "day"]), metavar="model|provider|day",
              help="One line per model, provider or (local) day.")
@click.option("--json", "json_output", is_flag=True, help="Print the totals as one JSON document.")
def logs_cost(since, by, json_output):
    """What the logged exchanges cost: the reported or estimated amounts summed.

    An exchange whose price is unknown (a model the price table does not know, a local server, no usage
    reported) is counted as unknown, never as $0. Exchanges recorded without a price are priced from
    their stored usage at the rates of their own date (genai-prices, pip install 'llmcli[cost]').

    \b
    Examples:
      llmcli logs cost --since 7d            the last week's total
      llmcli logs cost --since 30d --by day  one line per day
      llmcli logs cost --by model --json     per model, as JSON
    """
    from ..run.cost import exchange_cost

    home = _home()
    cutoff = _since(since)
    total, groups = CostTotal(), {}
    if not _no_log_yet(home):
        with _store(home) as store:
            rows = store.cost_rows(since=cutoff)
        for ex in rows:
            cost = exchange_cost(ex)
            total.add(cost)
            if by:
                groups.setdefault(_group_key(ex, by), CostTotal()).add(cost)
    if json_output:
        doc = {"since": cutoff and time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(cutoff)), "by": by,
               "total": total.to_dict()}
        if by:
            doc["groups"] = [{by: key, **g.to_dict()} for key, g in sorted(groups.items())]
        _print_json(doc)
        return
    if by:
        width = max([len(by)] + [len(k) for k in groups])
        echo_outside(f"{by.upper():<{width}}  {'COST':>10}  {'EXCHANGES':>9}  {'UNKNOWN':>7}")
        for key, g in sorted(groups.items()):
            echo_outside(f"{key:<{width}}  {g.shown():>10}  {g.exchanges:>9}  {g.unknown:>7}")
        echo_outside(f"{'total':<{width}}  {total.shown():>10}  {total.exchanges:>9}  {total.unknown:>7}")
        return
    span = f"since {_local_time(cutoff)}" if cutoff else "all logged"
    sources = ", ".join(f"{n} {what}" for n, what in ((total.reported, "reported"), (total.estimated, "estimated"))
                        if n)
    line = f"{total.shown()} over {total.exchanges} exchange{'s' if total.exchanges != 1 else ''} ({span})"
    if sources:
        line += f"; {sources}"
    if total.unknown:
        line += f"; {total.unknown} with cost unknown (not counted)"
    click.echo(line)


def _resolve_or_latest(store, conversation_id, global_):
    from ..errors import StoreError
    from ..store.db import lookup_sessions

    if conversation_id:
        return store.resolve(conversation_id)
    last = store.latest_exchange(session=None if global_ else lookup_sessions())
    if last is None:
        raise StoreError("no conversation in this terminal session (give an ID, or --global)")
    return last["conversation_id"]


@logs_group.command("show")
@click.argument("conversation_id", metavar="[ID]", required=False)
@click.option("--json", "json_output", is_flag=True, help="Print every stored field of every exchange as JSON.")
@click.option("--messages", "messages_output", is_flag=True,
              help="Print the conversation as OpenAI messages, exactly the format --history reads.")
@click.option("--global", "global_", is_flag=True, help="Without ID: the latest conversation of any session.")
def logs_show(conversation_id, json_output, messages_output, global_):
    """Print a conversation (default: the latest of this terminal session).

    On a terminal the text is rendered as Markdown; in a pipe it is plain.
    """
    from ..store.db import conversation_messages

    with _store() as store:
        cid = _resolve_or_latest(store, conversation_id, global_)
        conv = store.conversation(cid)
        exchanges = store.exchanges(cid)
    if json_output:
        _print_json({**(conv or {"id": cid}), "exchanges": [_with_cost(ex) for ex in exchanges]})
        return
    if messages_output:
        messages = conversation_messages(exchanges[-1]) if exchanges else []
        click.echo(json.dumps(messages, ensure_ascii=False, indent=2))
        return
    _show_readable(cid, exchanges, sys.stdout)


def _with_cost(ex: dict) -> dict:
    """An exchange as `logs show --json` prints it: one priced out later gets its cost object too."""
    if ex.get("cost") is not None or not (ex.get("usage") or ex.get("cost_usages")):
        return ex
    from ..run.cost import exchange_cost

    return {**ex, "cost": exchange_cost(ex).to_dict()}


def conversation_text(cid, exchanges) -> str:
    """The conversation as Markdown: a heading per exchange, the prompt, the answer, the facts."""
    lines = [f"# Conversation {cid}", ""]
    for n, ex in enumerate(exchanges, 1):
        model = ex.get("model_reported") or ex.get("model_requested") or "-"
        lines.append(f"## {n}. {_local_time(ex.get('created'))} · {model} · {ex.get('command') or ''}".rstrip(" ·"))
        lines.append("")
        if n == 1:
            system = next((m.get("content") for m in ex.get("request_messages") or [] if m.get("role") == "system"),
                          None)
            if system:
                lines += [f"**System:** {system}", ""]
        lines += ["**You:**", "", ex.get("prompt") or "", ""]
        for call in ex.get("tool_calls") or []:
            lines.append(f"- tool `{call.get('name')}` {json.dumps(call.get('arguments'), ensure_ascii=False)}")
        if ex.get("tool_calls"):
            lines.append("")
        lines += ["**Answer:**", "", ex.get("answer") or "", ""]
        facts = []
        if ex.get("partial"):
            facts.append("partial")
        if ex.get("error_message"):
            facts.append(f"error ({ex.get('error_type')}): {ex['error_message']}")
        usage = ex.get("usage") or {}
        if usage.get("total_tokens") is not None:
            facts.append(f"{usage['total_tokens']} tokens")
        if ex.get("cost") or usage:
            from ..run.cost import exchange_cost

            facts.append(exchange_cost(ex).shown())
        for a in ex.get("attachments") or []:
            size = f", {a['size']:,} bytes" if a.get("size") is not None else ""
            facts.append(f"attached {a.get('name')} ({a.get('type')}{size})")
        if facts:
            lines += ["_" + "; ".join(facts) + "_", ""]
    return "\n".join(lines)


def _show_readable(cid, exchanges, out):
    from ..output.render import color_enabled
    from ..output.sanitize import sanitize
    from ..run.runner import isatty

    text = conversation_text(cid, exchanges)
    if isatty(out):
        text = sanitize(text, bidi=True)
        if color_enabled(out):
            import shutil

            from ..output.markdown import MarkdownStream

            md = MarkdownStream(out, shutil.get_terminal_size().columns)
            md.write(text + "\n")
            md.finish()
            out.flush()
            return
    out.write(text + "\n")
    out.flush()


@logs_group.command("rm")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--older-than", metavar="AGE", help="Remove every exchange older than AGE (e.g. 30d, 12h).")
@click.option("--last", "last", is_flag=True, help="Remove the last exchange of this terminal session.")
@click.option("--global", "global_", is_flag=True, help="With --last: the last exchange of any session.")
def logs_rm(ids, older_than, last, global_):
    """Remove conversations by ID (unique prefixes), everything older than AGE, or the last exchange."""
    from ..errors import StoreError, UsageError
    from ..store.db import lookup_sessions, parse_duration

    if sum(bool(x) for x in (ids, older_than, last)) != 1:
        raise UsageError("give conversation IDs, --older-than AGE or --last (one of them)")
    with _store() as store:
        if ids:
            resolved = list(dict.fromkeys(store.resolve(i) for i in ids))
            conversations, exchanges = store.delete_conversations(resolved)
        elif older_than:
            conversations, exchanges = store.delete_older_than(time.time() - parse_duration(older_than))
        else:
            ex = store.latest_exchange(session=None if global_ else lookup_sessions())
            if ex is None:
                raise StoreError("no exchange in this terminal session to remove (--global: of any session)")
            conversations, exchanges = store.delete_exchange(ex["id"])
    click.echo(f"removed {exchanges} exchange{'s' if exchanges != 1 else ''} and {conversations} "
               f"conversation{'s' if conversations != 1 else ''}", err=True)


@logs_group.command("on")
def logs_on():
    """Record conversations again (the default)."""
    from ..store.ids import switch_logging

    switch_logging(_home(), True)
    click.echo("logging is on", err=True)


@logs_group.command("off")
def logs_off():
    """Stop recording conversations (until llmcli logs on)."""
    from ..store.ids import switch_logging

    switch_logging(_home(), False)
    click.echo("logging is off", err=True)


@logs_group.command("status")
@click.option("--config", "config", metavar="FILE", type=FILE, help="YAML config file.")
def logs_status(config):
    """Whether conversations are recorded, where, and how many there are."""
    from ..config.settings import config_path, load_config_file, strict_bool
    from ..store.db import db_path
    from ..store.ids import logging_switched_off

    home = _home()
    data, _ = load_config_file(config_path(os.environ, config))
    by_config = strict_bool((data.get("logs") or {}).get("enabled", True), "logs.enabled")
    if logging_switched_off(home):
        click.echo("logging: off (llmcli logs off; llmcli logs on turns it back on)")
    elif not by_config:
        click.echo("logging: off (logs.enabled is false in the config file)")
    else:
        click.echo("logging: on")
    path = db_path(home)
    click.echo(f"database: {path}")
    from ..store.pending import log_exists

    if log_exists(path):
        with _store(home) as store:
            conversations, exchanges = store.count()
            from ..store.db import SCHEMA_VERSION

            click.echo(f"conversations: {conversations}, exchanges: {exchanges}")
            click.echo(f"size: {os.path.getsize(path):,} bytes, schema {SCHEMA_VERSION}, "
                       f"search: {'FTS5' if store.fts else 'LIKE (FTS5 unavailable)'}")
    else:
        click.echo("conversations: 0 (no database yet)")


@logs_group.command("path")
def logs_path():
    """Print the database's path, with every exchange in it: those that asks left waiting
    (logs.db.pending) are moved in first, for a tool that reads the file itself."""
    from ..store.ids import db_path
    from ..store.pending import waiting

    home = _home()
    path = db_path(home)
    if waiting(path):
        from ..errors import StoreError

        try:
            _store(home).close()
        except StoreError:
            pass  # the path is still the answer; `logs status` tells what is wrong
    click.echo(path)


@logs_group.command("export")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--since", metavar="AGE", help="Only exchanges newer than AGE (e.g. 7d).")
def logs_export(ids, since):
    """Write conversations as JSON lines on stdout (every field; llmcli logs import reads them back)."""
    home = _home()
    if _no_log_yet(home):
        return
    with _store(home) as store:
        wanted = [store.resolve(i) for i in ids] if ids else None
        out = sys.stdout
        for record in store.export(since=_since(since), conversation_ids=wanted):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()


@logs_group.command("import")
@click.argument("path", metavar="FILE", type=FILE_OR_DASH)
@click.option("--from-llm", "from_llm", is_flag=True,
              help="FILE is simonw/llm's logs.db (e.g. ~/.config/io.datasette.llm/logs.db).")
def logs_import(path, from_llm):
    """Read conversations from a llmcli logs export (JSONL), or from llm's logs.db; ids are kept,
    and what is already in the log is skipped."""
    from ..errors import InputError

    if from_llm:
        from ..store.llm_import import read_llm_db

        records = read_llm_db(path)
    else:
        records = []
        try:
            fh = sys.stdin if path == "-" else open(path, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}")
        with fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise InputError(f"{path}:{lineno}: invalid JSON line: {exc}")
                if not isinstance(record, dict) or record.get("type") not in ("conversation", "exchange"):
                    raise InputError(f"{path}:{lineno}: not a llmcli log record (type conversation or exchange)")
                if record["type"] == "exchange" and not isinstance(record.get("request_messages"), list):
                    raise InputError(f"{path}:{lineno}: an exchange needs request_messages")
                records.append(record)
    with _store(create=True) as store:
        added, skipped = store.import_records(records)
    click.echo(f"imported {added} exchange{'s' if added != 1 else ''}"
               + (f" ({skipped} already in the log)" if skipped else ""), err=True)
