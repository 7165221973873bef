"""What a run cost: reported by the server, estimated from a maintained price table, or unknown.

`usage.cost` from the server (OpenRouter and a few others send it) is the exact amount (`reported`).
Otherwise the usage numbers are priced by the `genai-prices` package (pydantic's maintained table of
provider prices; `pip install 'llmcli[cost]'`) as that package prices them — its own usage extractor for
the provider's chat-completions shape maps cached input (`prompt_tokens_details.cached_tokens`) and
reasoning tokens (`completion_tokens_details.reasoning_tokens`), and its `calc_price` applies the
provider's rates (`estimated`). A model the table does not know, a self-hosted server, or a turn with no
usage is `unknown`: never 0.

genai-prices costs ~150 ms to import (pydantic, a 30,000-line table), so it is imported only when a cost
is asked for (`-u`, `--json`, `--jsonl`, chat, a budget): a plain `ask` never loads it
(tests/test_startup.py).
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

from ..events import FrozenValue

_set = object.__setattr__  # how a FrozenValue sets its own fields

CURRENCY = "USD"

# llmcli provider names whose servers run on the user's own machine: their tokens cost nothing the
# table can know (and a local model called "gpt-oss" must not be priced as OpenAI's).
SELF_HOSTED = {"local", "ollama", "llamacpp", "vllm", "lmstudio"}

# llmcli preset names that genai-prices spells differently (the rest are the same ids).
PROVIDER_IDS = {"gemini": "google"}


class Cost(FrozenValue):
    """An amount in `currency`, and where it came from: reported | estimated | unknown (amount None)."""

    __slots__ = ("amount", "source", "currency")
    amount: Optional[float]
    source: str
    currency: str

    def __init__(self, amount: Optional[float], source: str, currency: str = CURRENCY):
        _set(self, "amount", amount)
        _set(self, "source", source)
        _set(self, "currency", currency)

    @property
    def known(self) -> bool:
        return self.amount is not None

    def to_dict(self) -> dict:
        return {"amount": self.amount, "currency": self.currency, "source": self.source}

    def shown(self) -> str:
        """`$0.0041 (estimated)`, `$0.000123 (reported)`, `cost unknown`."""
        if self.amount is None:
            return "cost unknown"
        return f"{format_usd(self.amount)} ({self.source})"


UNKNOWN = Cost(None, "unknown")


def format_usd(amount: float) -> str:
    """Dollars to two significant digits (at least cents): $1.23, $0.50, $0.0041, $0.000012."""
    import math

    if amount <= 0 or amount >= 1:
        return f"${amount:,.2f}"
    decimals = max(2, 1 - math.floor(math.log10(amount)))
    return f"${amount:.{decimals}f}"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def reported_cost(usage: Optional[dict]) -> Optional[Cost]:
    if usage and _number(usage.get("cost")) and usage["cost"] >= 0:
        return Cost(float(usage["cost"]), "reported")
    return None


def turn_cost(usage: Optional[dict], model: Optional[str], provider: Optional[str] = None,
              base_url: Optional[str] = None, when: Optional[float] = None) -> Cost:
    """The cost of one request from its `usage` object."""
    reported = reported_cost(usage)
    if reported is not None:
        return reported
    if not usage or not model or not _number(usage.get("prompt_tokens")):
        return UNKNOWN
    calc = price_calculation(usage, model, provider, base_url, when)
    if calc is None:
        return UNKNOWN
    return Cost(float(calc.total_price), "estimated")


def sum_costs(costs: Iterable[Cost]) -> Cost:
    """Several requests: unknown if any is unknown (or there are none), reported only if all were."""
    costs = list(costs)
    if not costs or any(c.amount is None for c in costs):
        return UNKNOWN
    source = "reported" if all(c.source == "reported" for c in costs) else "estimated"
    return Cost(sum(c.amount for c in costs), source)


# --------------------------------------------------------------------------------------------
# genai-prices


def _genai():
    try:
        import genai_prices
        from genai_prices import data_snapshot
    except ImportError:
        return None, None
    return genai_prices, data_snapshot.get_snapshot()


def _find_provider(snapshot, provider: Optional[str], base_url: Optional[str]):
    """The table's provider: by the API URL first, then by llmcli's provider name; None to match by model."""
    if base_url:
        try:
            return snapshot.find_provider(None, None, base_url)
        except LookupError:
            pass
    if provider:
        try:
            return snapshot.find_provider(None, PROVIDER_IDS.get(provider, provider), None)
        except LookupError:
            pass
    return None


def price_usage(usage: dict, model: str, snapshot, table_provider):
    """`usage` (chat-completions shape) as a genai_prices Usage, read by the package's own extractor."""
    data = {"model": model, "usage": _clean(usage)}
    for prov in (table_provider, _find_provider(snapshot, "openai", None)):
        if prov is None or not prov.extractors:
            continue
        try:
            return prov.extract_usage(data, api_flavor="chat")[1]
        except (ValueError, TypeError, LookupError):
            continue
    return None


def _clean(usage: dict) -> dict:
    """Drop nulls (`prompt_tokens_details: null`), which the extractors take for malformed data."""
    out = {}
    for key, value in usage.items():
        if isinstance(value, dict):
            out[key] = _clean(value)
        elif value is not None and not isinstance(value, bool):
            out[key] = value
    return out


def price_calculation(usage: dict, model: str, provider: Optional[str] = None, base_url: Optional[str] = None,
                      when: Optional[float] = None):
    """genai-prices' PriceCalculation for this usage, or None (package missing, model or provider unknown).
    `when` (unix time): price at the rates of that moment (a logged exchange priced later)."""
    if provider in SELF_HOSTED:
        return None
    genai_prices, snapshot = _genai()
    if genai_prices is None:
        return None
    table_provider = _find_provider(snapshot, provider, base_url)
    priced = price_usage(usage, model, snapshot, table_provider)
    if priced is None:
        return None
    extra = {}
    if when is not None:
        from datetime import datetime, timezone

        extra["genai_request_timestamp"] = datetime.fromtimestamp(when, tz=timezone.utc)
    try:
        if table_provider is not None:
            return genai_prices.calc_price(priced, model, provider_id=table_provider.id, **extra)
        return genai_prices.calc_price(priced, model, **extra)
    except (LookupError, ValueError, TypeError, ArithmeticError):
        return None


def token_prices(model: Optional[str], provider: Optional[str] = None,
                 base_url: Optional[str] = None) -> Optional[Tuple[float, float]]:
    """(USD per input token, USD per output token) for the budget's worst case, or None when unknown.

    Read off genai-prices' own calculation for one million tokens each way, so tiered and dated prices
    come out as the package applies them now.
    """
    if not model:
        return None
    million = 1_000_000
    inp = price_calculation({"prompt_tokens": million, "completion_tokens": 0}, model, provider, base_url)
    out = price_calculation({"prompt_tokens": 0, "completion_tokens": million}, model, provider, base_url)
    if inp is None or out is None:
        return None
    return float(inp.total_price) / million, float(out.total_price) / million


def run_costs(usages: List[dict], models: List[Optional[str]], provider, base_url,
              when: Optional[float] = None) -> List[Cost]:
    return [turn_cost(u, m, provider, base_url, when) for u, m in zip(usages, models)]


# --------------------------------------------------------------------------------------------
# the conversation log: a cost per exchange


def needs_table(usage: Optional[dict], model: Optional[str], provider: Optional[str]) -> bool:
    """Whether pricing this request would have to read the price table (and so import genai-prices)."""
    return (reported_cost(usage) is None and bool(usage) and bool(model) and _number(usage.get("prompt_tokens"))
            and provider not in SELF_HOSTED)


def cost_for_log(run, price_now: bool = False) -> Tuple[Optional[Cost], Optional[list]]:
    """(cost, None) when the run's cost is known without new work, else (None, each request's usage).

    Importing genai-prices takes ~150 ms, thirty times what recording an exchange may add (issue 14:
    5 ms). So the log prices an exchange now only when that is free: the server reported the cost, the
    cost is plainly unknown (no usage, a self-hosted server), the table is already loaded (chat, a
    budget), or `price_now`: the run shows its cost anyway (-u, --json, --jsonl). Otherwise it keeps
    each request's usage and model, and `logs cost` prices them at the exchange's own time
    (`exchange_cost`).
    """
    import sys

    usages, models = list(run.usages), list(run.usage_models)
    if run.requests_sent > len(usages) or not usages:
        return UNKNOWN, None  # a request without usage: the sum is unknown, whatever the table says
    provider = run.settings.provider
    if price_now or "genai_prices" in sys.modules \
            or not any(needs_table(u, m, provider) for u, m in zip(usages, models)):
        return run.cost, None
    return None, [{"model": m, "usage": u} for u, m in zip(usages, models)]


def exchange_cost(exchange: dict) -> Cost:
    """A logged exchange's cost: as stored, or priced now from its usage (at the rates of its time)."""
    stored = exchange.get("cost")
    if isinstance(stored, dict) and stored.get("source"):
        amount = stored.get("amount")
        return Cost(float(amount) if _number(amount) else None, stored["source"], stored.get("currency") or CURRENCY)
    turns = exchange.get("cost_usages")
    if not isinstance(turns, list):  # logged before costs were kept (schema 3): the run's summed usage
        turns = [{"model": exchange.get("model_reported") or exchange.get("model_requested"),
                  "usage": exchange.get("usage")}] if exchange.get("usage") else []
    turns = [t for t in turns if isinstance(t, dict)]
    if not turns:
        return UNKNOWN
    return sum_costs(turn_cost(t.get("usage") if isinstance(t.get("usage"), dict) else None, t.get("model"),
                               exchange.get("provider"), exchange.get("base_url"), exchange.get("created"))
                     for t in turns)
