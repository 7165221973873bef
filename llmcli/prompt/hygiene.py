"""History hygiene: make a message list one that servers accept, before every request.

Histories come from files, from a stopped chat, from other tools' logs; servers answer 400 to a tool
call without its result ("An assistant message with 'tool_calls' must be followed by tool messages
responding to each 'tool_call_id'"), to a result whose call is gone, and some to empty messages.
`clean_messages` fixes what it can and says what it did; the rules, in the order they run:

1. a tool call id that repeats keeps its latest call, and its latest result;
2. results that arrive later in the same turn (before the next user or system message) are moved up
   to follow their call, so every `tool_call_id` is answered before the next user turn;
3. an assistant tool call without a result is dropped (the message stays if it has text);
   a tool result whose call is gone is dropped;
4. empty messages are dropped (no text, no parts, no tool calls);
5. an assistant message identical to the one before it is dropped;
6. reasoning fields (`reasoning_content`, `reasoning`) on assistant messages are removed, unless the
   caller says they go back (with `reattach_reasoning=None` they are left alone: `ask` and `chat` leave
   the choice to the provider's `send_reasoning`, applied when the request body is built, and
   `request.reattach_reasoning: true` means `send_reasoning: always`).

Pure functions, linear in the number of messages; the shared conversation log calls this too.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ..events import Value

REASONING_KEYS = ("reasoning_content", "reasoning", "reasoning_details")

COUNTERS = ("repeated_call_ids", "moved_tool_results", "dropped_tool_calls", "dropped_tool_results",
            "dropped_empty", "dropped_duplicates", "stripped_reasoning", "reattached_reasoning")


class HygieneReport(Value):
    """What cleaning did: counts for `--json` and one line per change for `--debug`."""

    __slots__ = ("counts", "steps")
    counts: Dict[str, int]
    steps: List[str]

    def __init__(self, counts: Optional[Dict[str, int]] = None, steps: Optional[List[str]] = None):
        self.counts = counts if counts is not None else {name: 0 for name in COUNTERS}
        self.steps = steps if steps is not None else []

    def note(self, counter: str, text: str, n: int = 1) -> None:
        self.counts[counter] += n
        self.steps.append(text)

    @property
    def changed(self) -> bool:
        return any(self.counts.values())

    def to_dict(self) -> Dict[str, int]:
        return dict(self.counts)


def _has_content(content) -> bool:
    if content is None:
        return False
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                return True
            if part.get("type") != "text" or str(part.get("text") or "").strip():
                return True
        return False
    return True


def clean_messages(messages: List[dict], reattach_reasoning: Optional[bool] = False) -> Tuple[List[dict], HygieneReport]:
    """A cleaned copy of `messages` (the input is not changed) and the report of what changed."""
    report = HygieneReport()
    msgs = [dict(m) for m in messages]
    msgs = _latest_call_ids(msgs, report)
    msgs = _pair_tool_results(msgs, report)
    out: List[dict] = []
    for index, m in enumerate(msgs):
        role = m.get("role")
        if role != "tool" and not m.get("tool_calls") and not _has_content(m.get("content")):
            report.note("dropped_empty", f"message {index + 1} ({role}) is empty: dropped")
            continue
        if role == "assistant" and out and out[-1] == m:
            report.note("dropped_duplicates", f"message {index + 1} repeats the assistant message before it: dropped")
            continue
        out.append(m)
    for index, m in enumerate(out):
        if reattach_reasoning is None:  # the request builder decides per provider (run/loop.py send_reasoning)
            break
        if m.get("role") != "assistant":
            continue
        present = [k for k in REASONING_KEYS if k in m]
        if not present:
            continue
        if reattach_reasoning:
            if "reasoning_content" not in m and isinstance(m.get("reasoning"), str):
                m["reasoning_content"] = m.pop("reasoning")
                report.note("reattached_reasoning", f"assistant message {index + 1}: reasoning sent back as reasoning_content")
        else:
            for k in present:
                m.pop(k)
            report.note("stripped_reasoning", f"assistant message {index + 1}: reasoning not sent back "
                                              "(request.reattach_reasoning is off)")
    return out, report


def _latest_call_ids(msgs: List[dict], report: HygieneReport) -> List[dict]:
    """Rule 1: a repeated tool call id keeps its last call and its last result."""
    last_call: Dict[str, int] = {}
    last_result: Dict[str, int] = {}
    for index, m in enumerate(msgs):
        if m.get("role") == "assistant":
            for call in m.get("tool_calls") or ():
                if isinstance(call, dict) and call.get("id") is not None:
                    last_call[call["id"]] = index
        elif m.get("role") == "tool":
            last_result[m.get("tool_call_id")] = index
    out = []
    for index, m in enumerate(msgs):
        if m.get("role") == "assistant" and m.get("tool_calls"):
            calls, seen = [], set()
            for call in m["tool_calls"]:
                cid = call.get("id") if isinstance(call, dict) else None
                if cid is not None and (last_call.get(cid) != index or cid in seen):
                    report.note("repeated_call_ids", f"tool call id {cid!r} repeats: the earlier call in "
                                                     f"message {index + 1} dropped")
                    continue
                seen.add(cid)
                calls.append(call)
            m["tool_calls"] = calls
            if not calls:
                m.pop("tool_calls")
        elif m.get("role") == "tool" and last_result.get(m.get("tool_call_id")) != index:
            report.note("repeated_call_ids", f"tool result {m.get('tool_call_id')!r} repeats: the earlier one "
                                             f"(message {index + 1}) dropped")
            continue
        out.append(m)
    return out


def _pair_tool_results(msgs: List[dict], report: HygieneReport) -> List[dict]:
    """Rules 2 and 3: every call answered right after it, within its turn; orphans on either side dropped."""
    out: List[dict] = []
    taken = set()  # indexes of tool messages already placed after their call
    n = len(msgs)
    for index, m in enumerate(msgs):
        role = m.get("role")
        if role == "tool":
            if index not in taken:
                report.note("dropped_tool_results", f"tool result {m.get('tool_call_id')!r} (message {index + 1}) "
                                                    "has no call before it: dropped")
            continue
        if role != "assistant" or not m.get("tool_calls"):
            out.append(m)
            continue
        # The turn's end: the next user or system message.
        results: Dict[str, int] = {}
        late = set()  # results with another message between them and the call
        moved = 0
        end = index + 1
        adjacent = True
        while end < n and msgs[end].get("role") not in ("user", "system", "developer"):
            other = msgs[end]
            if other.get("role") == "tool":
                if end not in taken and other.get("tool_call_id") not in results:
                    results[other.get("tool_call_id")] = end
                    if not adjacent:
                        late.add(end)
            else:
                adjacent = False
            end += 1
        calls, answers = [], []
        for call in m["tool_calls"]:
            cid = call.get("id") if isinstance(call, dict) else None
            if cid in results:
                calls.append(call)
                answers.append(msgs[results[cid]])
                taken.add(results[cid])
                moved += results[cid] in late
            else:
                report.note("dropped_tool_calls", f"assistant message {index + 1}: tool call {cid!r} has no result: "
                                                  "dropped")
        if moved:
            report.note("moved_tool_results", f"assistant message {index + 1}: {moved} tool result(s) moved up "
                                              "to follow their call", moved)
        if calls:
            m["tool_calls"] = calls
        else:
            m.pop("tool_calls")
        out.append(m)
        out.extend(answers)
    return out


def describe(report: HygieneReport) -> Optional[str]:
    """One summary line ('dropped_tool_calls=1, dropped_empty=2'), or None when nothing changed."""
    if not report.changed:
        return None
    return ", ".join(f"{k}={v}" for k, v in report.counts.items() if v)
