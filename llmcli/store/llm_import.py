"""Reading simonw/llm's logs.db, so its users bring their history (`llmcli logs import --from-llm`).

llm's schema (llm/migrations.py, m010 onwards): `conversations(id, name, model)` and
`responses(id, model, prompt, system, prompt_json, options_json, response, response_json,
conversation_id, duration_ms, datetime_utc, input_tokens, output_tokens, token_details, …)`, with
`tool_calls(response_id, name, arguments, tool_call_id)` and `tool_results(response_id, name, output,
tool_call_id)` since m017. Its ids are lower-case ULIDs; ours are upper-case, so an id keeps its value.

Each llm response becomes one exchange whose request is the conversation so far (system, then every
earlier prompt and answer, tool calls and results included) plus its prompt, as llm itself sends it.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from typing import List

from ..errors import InputError


def _timestamp(text) -> float:
    if not text:
        return 0.0
    try:
        dt = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)  # llm writes UTC without an offset
    return dt.timestamp()


def _json(text):
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _tables(conn) -> set:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def read_llm_db(path: str) -> List[dict]:
    """Export-format records (conversation, then its exchanges) for everything in llm's database."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputError(f"cannot open {path}: {exc}")
    try:
        tables = _tables(conn)
        if "responses" not in tables:
            raise InputError(f"{path} is not an llm logs.db (it has no 'responses' table)")
        conn.row_factory = sqlite3.Row
        names = {r["id"]: r for r in conn.execute("SELECT * FROM conversations")} if "conversations" in tables else {}
        calls, results = {}, {}
        if "tool_calls" in tables:
            for r in conn.execute("SELECT * FROM tool_calls ORDER BY id"):
                calls.setdefault(r["response_id"], []).append(r)
        if "tool_results" in tables:
            for r in conn.execute("SELECT * FROM tool_results ORDER BY id"):
                results.setdefault(r["response_id"], []).append(r)
        responses = conn.execute("SELECT * FROM responses ORDER BY conversation_id, id").fetchall()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"cannot read {path} as an llm logs.db: {exc}")
    finally:
        conn.close()
    records: List[dict] = []
    history: List[dict] = []
    current = object()
    for r in responses:
        keys = r.keys()
        cid = r["conversation_id"] or r["id"]
        if cid != current:
            current, history = cid, []
            conv = names.get(cid)
            records.append({"type": "conversation", "id": cid.upper(), "created": _timestamp(r["datetime_utc"]),
                            "session": "llm-import", "model": r["model"], "provider": "llm",
                            "title": (conv["name"] if conv is not None and conv["name"] else (r["prompt"] or ""))[:80]})
            if r["system"]:
                history.append({"role": "system", "content": r["system"]})
        request = list(history)
        for res in results.get(r["id"], []):
            request.append({"role": "tool", "tool_call_id": res["tool_call_id"] or "", "content": res["output"] or ""})
        if r["prompt"]:
            request.append({"role": "user", "content": r["prompt"]})
        answer = {"role": "assistant", "content": r["response"] or ""}
        own_calls = calls.get(r["id"], [])
        if own_calls:
            answer["tool_calls"] = [{"id": c["tool_call_id"] or "", "type": "function",
                                     "function": {"name": c["name"], "arguments": c["arguments"] or "{}"}}
                                    for c in own_calls]
        usage = None
        if "input_tokens" in keys and (r["input_tokens"] is not None or r["output_tokens"] is not None):
            usage = {"prompt_tokens": r["input_tokens"], "completion_tokens": r["output_tokens"]}
            details = _json(r["token_details"]) if "token_details" in keys else None
            if details:
                usage["details"] = details
        records.append({
            "type": "exchange", "id": r["id"].upper(), "conversation_id": cid.upper(),
            "created": _timestamp(r["datetime_utc"]), "session": "llm-import", "command": "llm",
            "prompt": r["prompt"], "request_messages": request, "response_messages": [answer],
            "answer": r["response"] or "", "model_requested": r["model"],
            "model_reported": (r["resolved_model"] if "resolved_model" in keys and r["resolved_model"] else r["model"]),
            "provider": "llm", "options": _json(r["options_json"]), "usage": usage,
            "total_ms": r["duration_ms"], "exit_status": 0, "partial": False,
            "tool_calls": [{"id": c["tool_call_id"], "name": c["name"], "arguments": _json(c["arguments"])}
                           for c in own_calls] or None,
        })
        history = request + [answer]
    return records
