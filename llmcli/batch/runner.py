"""The batch runner: worker threads over the synchronous transport, one shared limiter, many endpoints.

Threads, not processes or asyncio: each request spends its time waiting on a socket, and the existing
`ChatRun` + `HTTPTransport` (with its retries, timeouts and watchdog) is reused unchanged. Each worker
keeps one transport (one connection pool) per endpoint.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from ..errors import HTTPError, LLMCliError, NetworkError
from ..output.render import run_document
from ..run.loop import ChatRun
from .items import BatchItem

COOLDOWN_AFTER_FAILURES = 3
DEFAULT_COOLDOWN = 10.0


class Limiter:
    """Shared by every worker: requests per minute, tokens per minute, and adaptive back-off.

    A 429 (or any Retry-After) pauses *all* workers until the server's time has passed and halves how
    many may be in flight at once; each success then lets one more back in (additive increase), so the
    batch ramps back up to -j N.
    """

    def __init__(self, workers: int, rpm: Optional[float] = None, tpm: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.workers = workers
        self.rpm = rpm
        self.tpm = tpm
        self.clock = clock
        self.allowed = float(workers)
        self.in_flight = 0
        self.paused_until = 0.0
        self.next_start = 0.0
        self.tokens = collections.deque()  # (time, tokens) in the last minute
        self.cond = threading.Condition()
        self.stopped = False

    def _token_sum(self, now):
        while self.tokens and self.tokens[0][0] < now - 60:
            self.tokens.popleft()
        return sum(t for _, t in self.tokens)

    def acquire(self) -> bool:
        """Wait for a slot; False when the batch is stopping."""
        with self.cond:
            while True:
                if self.stopped:
                    return False
                now = self.clock()
                wait = 0.0
                if now < self.paused_until:
                    wait = self.paused_until - now
                elif self.in_flight >= max(1, int(self.allowed)):
                    wait = 0.5  # woken by release()
                elif self.rpm and now < self.next_start:
                    wait = self.next_start - now
                elif self.tpm and self._token_sum(now) >= self.tpm:
                    wait = max(0.05, self.tokens[0][0] + 60 - now)
                else:
                    self.in_flight += 1
                    if self.rpm:
                        self.next_start = max(now, self.next_start) + 60.0 / self.rpm
                    return True
                self.cond.wait(min(wait, 0.5))

    def release(self, tokens: int = 0, ok: bool = True):
        with self.cond:
            self.in_flight -= 1
            if tokens and self.tpm:
                # Kept only for --tpm, and only for a minute: memory must not grow with the batch.
                now = self.clock()
                self.tokens.append((now, tokens))
                self._token_sum(now)
            if ok and self.allowed < self.workers:
                self.allowed = min(float(self.workers), self.allowed + 1)
            self.cond.notify_all()

    def slow_down(self, delay: float):
        """A 429 / Retry-After: every worker waits `delay`, and fewer run at once for a while."""
        with self.cond:
            self.paused_until = max(self.paused_until, self.clock() + max(delay, 0.0))
            self.allowed = max(1.0, self.allowed / 2)
            self.cond.notify_all()

    def stop(self):
        with self.cond:
            self.stopped = True
            self.cond.notify_all()


@dataclass
class Endpoint:
    base_url: str
    in_flight: int = 0
    failures: int = 0  # consecutive
    cooled_until: float = 0.0
    done: int = 0


class Endpoints:
    """Each request to the endpoint with the fewest in flight; one that keeps failing cools down."""

    def __init__(self, base_urls: List[str], cooldown: float = DEFAULT_COOLDOWN, clock=time.monotonic):
        self.items = [Endpoint(u) for u in base_urls]
        self.cooldown = cooldown
        self.clock = clock
        self.lock = threading.Lock()

    def pick(self, avoid=None) -> Endpoint:
        with self.lock:
            now = self.clock()
            live = [e for e in self.items if e.cooled_until <= now] or self.items
            if avoid is not None and len(live) > 1:
                live = [e for e in live if e is not avoid] or live
            best = min(live, key=lambda e: (e.in_flight, e.cooled_until))
            best.in_flight += 1
            return best

    def done(self, ep: Endpoint, endpoint_failed: bool):
        with self.lock:
            ep.in_flight -= 1
            if endpoint_failed:
                ep.failures += 1
                if ep.failures >= COOLDOWN_AFTER_FAILURES:
                    ep.cooled_until = self.clock() + self.cooldown
                    ep.failures = 0
            else:
                ep.failures = 0
                ep.done += 1


def endpoint_fault(error: Optional[LLMCliError]) -> bool:
    """Failures that say more about the server than the item: network errors, 5xx."""
    if isinstance(error, NetworkError):
        return True
    return isinstance(error, HTTPError) and (error.status or 0) >= 500


@dataclass
class Summary:
    total_seen: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    started: float = field(default_factory=time.monotonic)
    interrupted: bool = False

    def to_dict(self):
        secs = time.monotonic() - self.started
        return {"done": self.done, "failed": self.failed, "skipped": self.skipped,
                "succeeded": self.done - self.failed, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost": round(self.cost, 6) or None,
                "seconds": round(secs, 3), "rate_per_s": round(self.done / secs, 2) if secs > 0 else None,
                "interrupted": self.interrupted}

    def line(self):
        d = self.to_dict()
        text = (f"llmcli: batch: {d['done']} done ({d['succeeded']} ok, {d['failed']} failed), "
                f"{d['skipped']} skipped, {d['seconds']:.1f} s, {d['rate_per_s'] or 0}/s, "
                f"tokens in {d['prompt_tokens']:,} out {d['completion_tokens']:,}")
        if d["cost"]:
            text += f", cost ${d['cost']}"
        return text + (" (interrupted)" if self.interrupted else "")


def openai_record(item: BatchItem, run: Optional[ChatRun], error: Optional[LLMCliError]) -> dict:
    """The OpenAI batch output line: {"id", "custom_id", "response": {"status_code", "body"}, "error"}."""
    rid = "batch_req_" + uuid.uuid4().hex[:24]
    if error is None:
        message = {"role": "assistant", "content": run.content}
        calls = [a.call.to_message_dict() for a in run.tool_activity] + \
                [c.to_message_dict() for c in run.unexecuted_calls]
        if calls:
            message["tool_calls"] = calls
        if run.reasoning:
            message["reasoning_content"] = run.reasoning
        body = {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion",
                "created": int(time.time()), "model": run.model,
                "choices": [{"index": 0, "message": message, "finish_reason": run.finish_reason}],
                "usage": run.usage}
        return {"id": rid, "custom_id": item.id, "response": {"status_code": 200, "request_id": rid, "body": body},
                "error": None}
    status = getattr(error, "status", None)
    response = None
    if status:
        response = {"status_code": status, "request_id": rid,
                    "body": {"error": {"message": str(error), "type": error.type_name,
                                       "code": getattr(error, "code", None)}}}
    return {"id": rid, "custom_id": item.id, "response": response,
            "error": {"code": error.type_name, "message": str(error)}}


def llmcli_record(item: BatchItem, run: ChatRun, error: Optional[LLMCliError]) -> dict:
    rec = {"id": item.id, "index": item.index}
    if item.openai:
        rec["custom_id"] = item.id
    rec.update(run_document(run, error))
    return rec


class BatchRunner:
    """Runs items from an iterator through `workers` threads; `write(record)` is called in one thread."""

    def __init__(self, settings, base_urls: List[str], make_transport, workers: int = 4, limiter=None,
                 ordered: bool = False, fail_fast: bool = False, openai_format: bool = False,
                 skip: Optional[set] = None, progress: Optional[Callable[[Summary], None]] = None,
                 cooldown: float = DEFAULT_COOLDOWN, reorder_window: Optional[int] = None):
        self.settings = settings
        self.endpoints = Endpoints(base_urls or [settings.base_url], cooldown)
        self.make_transport = make_transport
        self.workers = max(1, workers)
        self.limiter = limiter or Limiter(self.workers)
        self.ordered = ordered
        self.fail_fast = fail_fast
        self.openai_format = openai_format
        self.skip = skip or set()
        self.progress = progress
        self.summary = Summary()
        self.stop = threading.Event()
        self.reorder_window = reorder_window or max(4 * self.workers, 16)
        self.todo: "queue.Queue" = queue.Queue(maxsize=2 * self.workers)
        self.results: "queue.Queue" = queue.Queue()
        self.local = threading.local()

    # -- one item --------------------------------------------------------------------------
    def _transport(self, ep: Endpoint):
        cache = getattr(self.local, "transports", None)
        if cache is None:
            cache = self.local.transports = {}
        t = cache.get(ep.base_url)
        if t is None:
            t = cache[ep.base_url] = self.make_transport(self.settings.with_changes(base_url=ep.base_url))
        return t

    def _item_settings(self, item: BatchItem, base_url: str):
        changes = {"base_url": base_url}
        if item.model:
            changes["model"] = item.model
        if item.options:
            merged = dict(self.settings.options)
            merged.update(item.options)
            changes["options"] = tuple(merged.items())
        return self.settings.with_changes(**changes)

    def run_item(self, item: BatchItem):
        """(run, error) after as many endpoints as it takes; never raises an LLMCliError."""
        attempts = max(1, len(self.endpoints.items))
        avoid = None
        run = error = None
        for attempt in range(attempts):
            ep = self.endpoints.pick(avoid)
            transport = self._transport(ep)
            run = ChatRun(transport, self._item_settings(item, ep.base_url), item.messages)
            error = None
            events = run.events()
            try:
                for ev in events:
                    reason = getattr(ev, "reason", None)
                    if isinstance(reason, str) and getattr(ev, "delay", None) is not None and (
                            reason.startswith("HTTP 429") or reason.startswith("HTTP 503")):
                        self.limiter.slow_down(ev.delay)
                    if self.stop.is_set():
                        break
            except LLMCliError as exc:
                error = exc
            except Exception as exc:  # a bug on one item must not end the batch
                error = LLMCliError(f"unexpected {type(exc).__name__}: {exc}")
            finally:
                events.close()
            failed_here = endpoint_fault(error)
            self.endpoints.done(ep, failed_here)
            if not failed_here or self.stop.is_set():
                break
            avoid = ep
        return run, error

    def _worker(self):
        while True:
            item = self.todo.get()
            if item is None:
                return
            if not self.limiter.acquire():
                self.results.put((item, None, None, True))
                continue
            run = error = None
            try:
                run, error = self.run_item(item)
            finally:
                usage = (run.usage if run is not None else None) or {}
                tokens = usage.get("total_tokens") or 0
                self.limiter.release(tokens if isinstance(tokens, int) else 0, ok=error is None)
            self.results.put((item, run, error, False))

    # -- the whole batch -------------------------------------------------------------------
    def record(self, item, run, error) -> dict:
        if self.openai_format:
            return openai_record(item, run, error)
        return llmcli_record(item, run, error)

    def _account(self, run, error):
        s = self.summary
        s.done += 1
        if error is not None:
            s.failed += 1
        usage = (run.usage if run is not None else None) or {}
        for key, attr in (("prompt_tokens", "prompt_tokens"), ("completion_tokens", "completion_tokens")):
            if isinstance(usage.get(key), int):
                setattr(s, attr, getattr(s, attr) + usage[key])
        if isinstance(usage.get("cost"), (int, float)):
            s.cost += usage["cost"]

    def run(self, items, write: Callable[[dict], None]):
        threads = [threading.Thread(target=self._worker, name=f"llmcli-batch-{i}", daemon=True)
                   for i in range(self.workers)]
        for t in threads:
            t.start()
        pending = {}  # --ordered: index → record, waiting for the ones before it
        order: collections.deque = collections.deque()  # indexes submitted, in input order
        in_flight = 0
        source = iter(items)
        exhausted = False
        try:
            while True:
                # Feed the workers while there is room (and, ordered, while the reorder buffer has room).
                while not exhausted and not self.stop.is_set() and in_flight < 2 * self.workers and (
                        not self.ordered or not order or order[-1] - order[0] < self.reorder_window):
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    self.summary.total_seen += 1
                    if item.id in self.skip:
                        self.summary.skipped += 1
                        continue
                    self.todo.put(item)
                    order.append(item.index)
                    in_flight += 1
                if in_flight == 0:
                    break
                try:
                    item, run, error, dropped = self.results.get(timeout=0.2)
                except queue.Empty:
                    if self.progress:
                        self.progress(self.summary)
                    continue
                in_flight -= 1
                if dropped:
                    pending[item.index] = None
                else:
                    self._account(run, error)
                    pending[item.index] = self.record(item, run, error)
                    if error is not None and self.fail_fast:
                        self.stop.set()
                        self.limiter.stop()
                if not self.ordered:
                    rec = pending.pop(item.index)
                    order.remove(item.index)
                    if rec is not None:
                        write(rec)
                else:
                    while order and order[0] in pending:
                        rec = pending.pop(order.popleft())
                        if rec is not None:
                            write(rec)
                if self.progress:
                    self.progress(self.summary)
        except KeyboardInterrupt:
            self.summary.interrupted = True
            self.stop.set()
            self.limiter.stop()
            # Whatever finished is kept; in-flight requests end when the process does (daemon threads),
            # and a re-run with the same output file does them again.
            while True:
                try:
                    item, run, error, dropped = self.results.get_nowait()
                except queue.Empty:
                    break
                if not dropped and not self.ordered:
                    self._account(run, error)
                    write(self.record(item, run, error))
            raise
        finally:
            self.stop.set()
            self.limiter.stop()
            for _ in threads:
                try:
                    self.todo.put_nowait(None)
                except queue.Full:
                    break
        return self.summary
