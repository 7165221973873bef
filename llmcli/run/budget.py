"""Budgets: stop a run before the request that could pass a spending limit (issue 19).

Limits: `--max-cost USD` and `--max-tokens-total N` (config `budget: {max_cost, max_tokens_total}`), per
`ask` run across every tool round, per `chat` session across answers; and `budget: {daily, monthly}`,
held across processes in a small ledger file in the data dir (`SpendLedger`), and never below what the
conversation log says was spent today or this month (`logged_spend`).

Before every request the worst case of that request is added to what was spent: its prompt tokens,
estimated high (one token per 3 characters of the messages and tool schemas; real tokenizers average
about 4), plus its output limit. With `max_tokens` (or `max_completion_tokens`) in the request, that is
the limit, and a request whose worst case passes a budget is not sent. Without one, llmcli sends
`max_tokens` set to what the budget still pays for when that is below 32,768 tokens, so no answer can
pass the cap (an answer cut there ends with finish_reason `length`); above that it assumes the answer
stays under 32,768 tokens. After the request the real usage (or, unreported, the estimate) is counted.

A cost budget needs a price: the server's `usage.cost` after the fact, and genai-prices' rates before
(llmcli/run/cost.py). For a model with no known price, a cost budget is a config error (exit 3) rather
than a limit that silently does nothing; `--max-tokens-total` still works.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Optional, Tuple

from ..errors import BudgetExceeded, ConfigError

CHARS_PER_TOKEN = 3  # deliberately high token estimate (see above)
OUTPUT_CEILING = 32_768  # below this the budget sets max_tokens itself
MIN_OUTPUT_TOKENS = 16  # a request that may not even answer this much is not worth sending


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def prompt_tokens_estimate(body: dict) -> int:
    payload = json.dumps(body.get("messages") or [], ensure_ascii=False)
    if body.get("tools"):
        payload += json.dumps(body["tools"], ensure_ascii=False)
    return estimate_tokens(payload)


def _limit_label(settings, name: str, flag: str) -> str:
    source = settings.source_of(name)
    if source.endswith("flag"):
        return flag
    if source.startswith("config file"):
        return f"budget.{name}"
    return source


class Budget:
    """Spend so far and the limits, for one `ask` run or one chat session (shared by its runs)."""

    def __init__(self, settings, ledger: Optional["SpendLedger"] = None):
        self.settings = settings
        self.max_cost = settings.max_cost
        self.max_tokens_total = settings.max_tokens_total
        self.caps = tuple(settings.spend_caps)
        self.ledger = ledger if ledger is not None else (SpendLedger(settings.home) if self.caps else None)
        self.spent_cost = 0.0
        self.cost_estimated = False
        self.spent_tokens = 0
        self.requests = 0
        self.output_limit_set: Optional[int] = None  # max_tokens the budget put in the last request
        self._prices = {}
        self._reserved = 0.0  # worst case booked in the ledger for the request under way
        self._log_extra: Optional[dict] = None  # what the conversation log knows and the ledger does not

    @classmethod
    def from_settings(cls, settings) -> Optional["Budget"]:
        if settings.max_cost is None and settings.max_tokens_total is None and not settings.spend_caps:
            return None
        return cls(settings)

    @property
    def needs_prices(self) -> bool:
        return self.max_cost is not None or bool(self.caps)

    def spent(self) -> dict:
        from .cost import UNKNOWN, Cost

        # A token budget alone does not price anything (nor import the table): its cost is not known.
        cost = Cost(self.spent_cost, "estimated" if self.cost_estimated else "reported") if self.needs_prices \
            else UNKNOWN
        return {"cost": cost.to_dict(), "tokens": self.spent_tokens, "requests": self.requests}

    def _spent_text(self) -> str:
        from .cost import format_usd

        parts = [f"{self.spent_tokens:,} tokens in {self.requests} request{'s' if self.requests != 1 else ''}"]
        if self.needs_prices:
            parts.append(format_usd(self.spent_cost) + (" (estimated)" if self.cost_estimated else ""))
        return "spent so far: " + ", ".join(parts)

    def prices(self, model) -> Optional[Tuple[float, float]]:
        from .cost import token_prices

        if model not in self._prices:
            self._prices[model] = token_prices(model, self.settings.provider, self.settings.base_url)
        return self._prices[model]

    # -- before a request -------------------------------------------------------------------
    def before_request(self, body: dict) -> None:
        """Raise BudgetExceeded if this request's worst case passes a limit; may set its max_tokens."""
        from .cost import SELF_HOSTED, format_usd

        prompt = prompt_tokens_estimate(body)
        user_limit = _output_limit(body)
        model = body.get("model") or self.settings.model
        price_in = price_out = None
        priced = self.needs_prices and self.settings.provider not in SELF_HOSTED
        if priced:
            prices = self.prices(model)
            if prices is None:
                which = "--max-cost" if self.max_cost is not None else "budget." + self.caps[0][0]
                raise ConfigError(f"{which} cannot be enforced: genai-prices has no price for model "
                                  f"{model or '(none named)'!r} (install llmcli[cost], or use --max-tokens-total)")
            price_in, price_out = prices

        # The output tokens each limit still allows after this prompt.
        allowed = []
        if self.max_tokens_total is not None:
            allowed.append(("tokens", self.max_tokens_total - self.spent_tokens - prompt))
        if priced and self.max_cost is not None:
            allowed.append(("cost", _tokens_for(self.max_cost - self.spent_cost - prompt * price_in, price_out)))
        cap_spent = {}
        if priced and self.caps:
            cap_spent = self.cap_spent()
            for period, cap in self.caps:
                allowed.append((period, _tokens_for(cap - cap_spent[period] - prompt * price_in, price_out)))

        wanted = user_limit if user_limit is not None else MIN_OUTPUT_TOKENS
        for kind, tokens in allowed:
            if tokens >= wanted:
                continue
            out = user_limit if user_limit is not None else MIN_OUTPUT_TOKENS
            if kind == "tokens":
                worst = f"{self.spent_tokens + prompt + out:,} tokens"
                limit = f"{_limit_label(self.settings, 'max_tokens_total', '--max-tokens-total')} " \
                        f"{self.max_tokens_total:,}"
            elif kind == "cost":
                worst = format_usd(self.spent_cost + prompt * price_in + out * price_out)
                limit = f"{_limit_label(self.settings, 'max_cost', '--max-cost')} {format_usd(self.max_cost)}"
            else:
                cap = dict(self.caps)[kind]
                worst = format_usd(cap_spent[kind] + prompt * price_in + out * price_out) + \
                    (" today" if kind == "daily" else " this month")
                limit = f"budget.{kind} {format_usd(cap)} (spent {format_usd(cap_spent[kind])} so far, " \
                        f"every llmcli process counted)"
            what = f"max_tokens {user_limit:,}" if user_limit is not None else f"at least {out} output tokens"
            raise BudgetExceeded(
                f"budget reached: the next request (about {prompt:,} prompt tokens + {what}) could bring "
                f"the total to {worst}, above {limit}; not sent ({self._spent_text()})", spent=self.spent())

        self.output_limit_set = None
        if user_limit is None and allowed:
            limit = int(min(tokens for _, tokens in allowed))
            if limit < OUTPUT_CEILING:
                key = "max_completion_tokens" if self.settings.provider == "openai" else "max_tokens"
                body[key] = limit
                self.output_limit_set = limit
        if priced and self.caps:
            out = _output_limit(body) or OUTPUT_CEILING
            self._reserved = prompt * price_in + out * price_out
            self.ledger.add(self._reserved)

    def cap_spent(self) -> dict:
        """Today's and this month's spend: the ledger, raised to what the conversation log holds.

        The ledger counts only runs made while a cap was configured (and books worst cases); the log
        also holds what was spent before that, or after spend.json was removed. The difference is read
        once per run or chat session, so this run's own spending (which the ledger counts) is never
        counted twice, and other processes' spending still arrives through the ledger."""
        totals = self.ledger.totals()
        if self._log_extra is None:
            logged = logged_spend(self.settings.home)
            self._log_extra = {period: max(0.0, logged.get(period, 0.0) - spent) for period, spent in totals.items()}
        return {period: spent + self._log_extra.get(period, 0.0) for period, spent in totals.items()}

    def abandon(self) -> None:
        """The request was not answered (refused, unreachable): give back its booked worst case."""
        if self.ledger is not None and self._reserved:
            self.ledger.add(-self._reserved)
        self._reserved = 0.0

    # -- after it ---------------------------------------------------------------------------
    def after_request(self, body: dict, usage: Optional[dict], cost, content: str) -> None:
        """Count what the request used: the server's numbers, else the estimate."""
        self.requests += 1
        prompt_est = prompt_tokens_estimate(body)
        if usage and isinstance(usage.get("total_tokens"), int):
            tokens = usage["total_tokens"]
        elif usage and isinstance(usage.get("prompt_tokens"), int):
            tokens = usage["prompt_tokens"] + int(usage.get("completion_tokens") or 0)
        else:
            tokens = prompt_est + estimate_tokens(content)
        self.spent_tokens += tokens
        amount = None
        if cost is not None and cost.amount is not None:
            amount = cost.amount
            self.cost_estimated = self.cost_estimated or cost.source != "reported"
        elif self.needs_prices:
            prices = self.prices(body.get("model") or self.settings.model)
            if prices is not None:
                if usage and isinstance(usage.get("prompt_tokens"), int):
                    p, c = usage["prompt_tokens"], int(usage.get("completion_tokens") or 0)
                else:
                    p, c = prompt_est, estimate_tokens(content)
                amount = p * prices[0] + c * prices[1]
                self.cost_estimated = True
        if amount is not None:
            self.spent_cost += amount
        if self.ledger is not None and (self._reserved or amount):
            self.ledger.add((amount or 0.0) - self._reserved)
        self._reserved = 0.0


def logged_spend(home: Optional[str]) -> dict:
    """{daily, monthly}: the known costs of the exchanges in the conversation log today and this month
    (local time; an unknown cost adds nothing, as in the ledger). {} when there is no readable log."""
    if not home:
        return {}
    from ..errors import StoreError
    from ..store.db import Store, db_path
    from ..store.pending import log_exists
    from .cost import exchange_cost

    path = db_path(home)
    if not log_exists(path):
        return {}
    now = time.localtime()
    day_start = time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0, 0, 0, -1))
    month_start = time.mktime((now.tm_year, now.tm_mon, 1, 0, 0, 0, 0, 0, -1))
    try:
        with Store(path, create=False) as store:
            rows = store.cost_rows(since=month_start)
    except (StoreError, OSError):
        return {}  # a broken log must not stop a run: the ledger still holds
    daily = monthly = 0.0
    for ex in rows:
        amount = exchange_cost(ex).amount
        if amount:
            monthly += amount
            if (ex.get("created") or 0) >= day_start:
                daily += amount
    return {"daily": daily, "monthly": monthly}


def _output_limit(body: dict) -> Optional[int]:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _tokens_for(dollars: float, price_per_token: float) -> float:
    if dollars < 0:
        return -1
    if price_per_token <= 0:
        return math.inf
    return dollars / price_per_token


class SpendLedger:
    """Spend per day and per month (local time) across llmcli processes: `spend.json` in the data dir,
    updated under an exclusive lock (fcntl.flock), mode 0600.

    A request books its worst case before it is sent and corrects it to the real cost afterwards, so two
    processes that check at the same moment cannot both pass a cap. A process killed mid-request leaves
    its worst case booked: the ledger errs on the side of spending less.
    """

    def __init__(self, home: Optional[str]):
        self.path = os.path.join(home or ".", "spend.json")

    def _update(self, change: float) -> dict:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
            except ImportError:  # Windows: no lock, best effort
                pass
            raw = b""
            while True:
                piece = os.read(fd, 65536)
                if not piece:
                    break
                raw += piece
            try:
                data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
            except ValueError:
                data = {}
            if not isinstance(data, dict):
                data = {}
            day, month = time.strftime("%Y-%m-%d"), time.strftime("%Y-%m")
            days = data.get("daily") if isinstance(data.get("daily"), dict) else {}
            months = data.get("monthly") if isinstance(data.get("monthly"), dict) else {}
            if change:
                days = {day: max(0.0, float(days.get(day) or 0.0) + change)}  # only today is kept
                months = {k: v for k, v in months.items() if k >= _months_ago(2)}
                months[month] = max(0.0, float(months.get(month) or 0.0) + change)
                out = json.dumps({"daily": days, "monthly": months}).encode("utf-8")
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, out)
            return {"daily": float(days.get(day) or 0.0), "monthly": float(months.get(month) or 0.0)}
        except OSError as exc:
            raise ConfigError(f"cannot update the spend ledger {self.path}: {exc.strerror or exc}")
        finally:
            os.close(fd)  # releases the lock

    def totals(self) -> dict:
        return self._update(0.0)

    def add(self, amount: float) -> dict:
        return self._update(amount)


def _months_ago(n: int) -> str:
    year, month = time.localtime().tm_year, time.localtime().tm_mon - n
    while month <= 0:
        year, month = year - 1, month + 12
    return f"{year:04d}-{month:02d}"
