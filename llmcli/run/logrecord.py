"""Recording runs in the conversation log (issue 14): a ChatRun's state → one plain exchange record.

`ExchangeLog` is made before a run (it allocates the conversation and exchange ids, so `--json` can
name them) and `finish()`ed once the run has ended, however it ended. The record holds the run's cost as
{amount, currency, source} (or, when pricing would mean loading the price table, each request's usage to
price later: run/cost.py `cost_for_log`), and attachments by name, type, size and sha256: their bytes in
the stored messages are replaced by a note naming them (prompt/attach.py `detach_parts`). Nothing here
imports sqlite3 until something is written, and a log that cannot be written is one warning: the answer
and the exit code never depend on it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import List, Optional
from urllib.parse import urlsplit, urlunsplit

from ..config.secrets import secret_values

def safe_base_url(url: Optional[str]) -> Optional[str]:
    """The base URL without user:password and without a query (where some proxies carry keys)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def last_user_text(messages: List[dict]) -> Optional[str]:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts: the text ones
                return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("text"))
            return None
    return None


def _scrub(value, secrets_: List[str]):
    """Remove known secrets from everything stored (an error body may quote the key back)."""
    if not secrets_:
        return value
    text = json.dumps(value, ensure_ascii=False)
    changed = text
    for secret in secrets_:
        changed = changed.replace(json.dumps(secret)[1:-1], "<redacted>")
    return value if changed == text else json.loads(changed)


class ExchangeLog:
    """One exchange to be recorded: ids now, the record when the run is over."""

    def __init__(self, settings, request_messages: List[dict], command: str, conversation_id: Optional[str] = None,
                 enabled: bool = True, files: Optional[list] = None, session: Optional[str] = None,
                 attachments: Optional[list] = None, price_now: bool = False):
        self.settings = settings
        self.enabled = enabled
        self.request_messages = [dict(m) for m in request_messages]
        self.command = command
        self.new_conversation = conversation_id is None
        self.files = files
        self.attachments = attachments  # this exchange's -a / /attach records (name, type, size, sha256)
        self.price_now = price_now  # the run prices itself anyway (-u, --json): no deferred pricing
        if enabled:
            from ..store.ids import new_id, session_key

            self.conversation_id = conversation_id or new_id()
            self.exchange_id: Optional[str] = new_id()
            self.session = session if session is not None else session_key()
        else:  # nothing will be written: no ids to make, no /proc to walk for the session (--no-log)
            self.conversation_id, self.exchange_id, self.session = conversation_id, None, session
        self.created = time.time()
        self.recorded = False
        self.logged = False
        self.messages_after: Optional[List[dict]] = None

    @property
    def ids(self) -> dict:
        return {"conversation_id": self.conversation_id, "exchange_id": self.exchange_id}

    def record_for(self, run, error=None, exit_status: int = 0, interrupted: bool = False) -> dict:
        failed = error is not None
        after = run.kept_conversation(error, interrupted)  # the one policy (run/loop.py): what a follow-up sends
        self.messages_after = after
        s = self.settings
        usage = run.usage
        timing = run.timing()
        from .cost import cost_for_log

        cost, cost_usages = cost_for_log(run, self.price_now)
        # Never the bytes of an attachment (issue 17): each data URL becomes a note naming it.
        request_messages, found = _detached(self.request_messages, self.attachments)
        response_messages, _ = _detached(after[len(self.request_messages):], self.attachments)
        attachments = self.attachments or _last_user_attachments(request_messages, found)
        record = {
            "id": self.exchange_id,
            "conversation_id": self.conversation_id,
            "created": self.created,
            "session": self.session,
            "command": self.command,
            "prompt": last_user_text(self.request_messages),
            "request_messages": request_messages,
            "response_messages": response_messages,
            "answer": run.content,
            "reasoning": run.reasoning or None,
            "refusal": "".join(run.refusal_parts) or None,
            "tool_calls": run.tool_calls_summary() or None,
            "model_requested": s.model,
            "model_reported": run.model,  # what the server said it ran (the requested name when it said nothing)
            "provider": s.provider,
            "base_url": safe_base_url(s.base_url),
            "options": dict(s.options) or None,
            "usage": usage,
            # {amount, currency, source}; None: priced from cost_usages when read (run/cost.py cost_for_log)
            "cost": cost.to_dict() if cost is not None else None,
            "cost_usages": cost_usages,
            "first_token_ms": timing.get("first_token_ms"),
            "total_ms": timing.get("total_ms"),
            "finish_reason": run.finish_reason,
            "error_type": getattr(error, "type_name", type(error).__name__) if failed else None,
            "error_message": str(error) if failed else None,
            "exit_status": int(exit_status),
            # partial: the run was cut short after something arrived (a 401 before any byte is an error, not partial)
            "partial": interrupted or (failed and bool(run.content or run.reasoning or run.tool_activity)),
            "files": self.files or None,
            "attachments": attachments or None,
        }
        # The one rule for what is secret (config/secrets.py): the key and secret-looking headers' values
        # only — scrubbing "X-Team: research" would edit answers.
        return _scrub(record, secret_values(s.api_key, s.headers))

    def finish(self, run, error=None, exit_status: int = 0, interrupted: bool = False, warn=None) -> bool:
        """Write the exchange; on any failure, call `warn(message)` once and return False."""
        if self.recorded:
            return self.logged
        self.recorded = True
        self.logged = self._write(run, error, exit_status, interrupted, warn)
        return self.logged

    def _write(self, run, error, exit_status, interrupted, warn) -> bool:
        from ..errors import LLMCliError

        try:
            if not self.enabled:  # no record to build (attachments need hashing, costs pricing)
                self.messages_after = run.kept_conversation(error, interrupted)
                return False
            record = self.record_for(run, error, exit_status, interrupted)
            from ..store import pending
            from ..store.ids import db_path

            path = db_path(self.settings.home)
            if pending.append(path, record):  # one line now; the next open of the log moves it in
                return True
            from ..store.db import Store

            with Store(path) as store:
                store.record(record)
            return True
        except Exception as exc:  # the log must never cost the user the answer or change the exit code
            if not isinstance(exc, (LLMCliError, OSError)) and "pytest" in sys.modules \
                    and not os.environ.get("LLMCLI_NO_RERAISE"):
                raise  # a bug of ours, not a broken database: let the tests see it (STYLE.md rule 3)
            if warn is not None:
                warn(f"this exchange was not logged: {exc} (--no-log skips the log)")
            return False


def _detached(messages: List[dict], records: Optional[list]):
    """`messages` without attachment bytes, and a record of each part replaced (cheap when there are none)."""
    if not any(isinstance(m.get("content"), list) for m in messages):
        return messages, []
    from ..prompt.attach import detach_parts

    return detach_parts(messages, records or ())


def _last_user_attachments(messages: List[dict], found: List[dict]) -> List[dict]:
    """Without records from the caller (a --history file with images): those in the last user message."""
    if not found:
        return []
    last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    text = json.dumps(last.get("content"), ensure_ascii=False) if last else ""
    return [r for r in found if r["sha256"] in text]


def logging_enabled(settings, no_log: bool = False) -> bool:
    """--no-log, then `logs: {enabled: false}`, then `llmcli logs off`."""
    if no_log or not settings.logs_enabled or not settings.home:
        return False
    from ..store.ids import logging_switched_off

    return not logging_switched_off(settings.home)
