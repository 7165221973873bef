"""Cost: reported by the server, estimated by genai-prices (as that package computes it), or unknown."""

import json
from decimal import Decimal

import genai_prices
import pytest

from conftest import invoke
from localserver import Reply, sse

from llmcli.run.cost import Cost, format_usd, sum_costs, token_prices, turn_cost

USAGE = {"prompt_tokens": 12_000, "completion_tokens": 3_000, "total_tokens": 15_000}
CACHED = dict(USAGE, prompt_tokens_details={"cached_tokens": 8_000},
              completion_tokens_details={"reasoning_tokens": 2_000})


def stream(text, usage, model="gpt-4o-mini", tool_call=None):
    """A streamed answer whose chunks name `model`, ending with a usage chunk."""
    def ch(delta, finish=None):
        return {"id": "c", "object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    chunks = [ch({"role": "assistant", "content": text})]
    if tool_call is not None:
        chunks.append(ch({"tool_calls": [{"index": 0, "id": tool_call[0], "type": "function",
                                          "function": {"name": tool_call[1], "arguments": tool_call[2]}}]}))
        chunks.append(ch({}, "tool_calls"))
    else:
        chunks.append(ch({}, "stop"))
    if usage is not None:
        chunks.append({"id": "c", "model": model, "choices": [], "usage": usage})
    return sse(*chunks)


def genai(model, **tokens):
    return genai_prices.calc_price(genai_prices.Usage(**tokens), model).total_price


# --------------------------------------------------------------------------------------------
# the three sources, for fixed numbers


def test_reported_cost_is_the_servers_number():
    assert turn_cost(dict(USAGE, cost=0.0123), "gpt-4o-mini") == Cost(0.0123, "reported")


def test_estimated_cost_equals_genai_prices_own_calculation():
    cost = turn_cost(USAGE, "gpt-4o-mini")
    assert cost.source == "estimated"
    assert Decimal(str(cost.amount)) == genai("gpt-4o-mini", input_tokens=12_000, output_tokens=3_000)


def test_cached_input_and_reasoning_tokens_priced_as_genai_prices_prices_them():
    cost = turn_cost(CACHED, "gpt-4o-mini")
    expected = genai("gpt-4o-mini", input_tokens=12_000, cache_read_tokens=8_000, output_tokens=3_000,
                     output_reasoning_tokens=2_000)
    assert Decimal(str(cost.amount)) == expected
    # the cache discount is applied: cheaper than the same tokens uncached
    assert cost.amount < turn_cost(USAGE, "gpt-4o-mini").amount
    # a reasoning model, its reasoning billed as output the way the table says
    o3 = turn_cost(CACHED, "o3", "openai", "https://api.openai.com/v1")
    assert Decimal(str(o3.amount)) == genai_prices.calc_price(
        genai_prices.Usage(input_tokens=12_000, cache_read_tokens=8_000, output_tokens=3_000,
                           output_reasoning_tokens=2_000), "o3", provider_id="openai").total_price


@pytest.mark.parametrize("model, provider, base_url", [
    ("no-such-model-xyz", None, "http://127.0.0.1:9/v1"),
    ("gpt-oss:20b", "ollama", "http://127.0.0.1:11434/v1"),  # self-hosted: never OpenAI's price
    ("gpt-4o-mini", "local", None),
    (None, None, None),
])
def test_unknown_model_or_self_hosted_is_unknown_never_zero(model, provider, base_url):
    cost = turn_cost(USAGE, model, provider, base_url)
    assert cost == Cost(None, "unknown") and cost.shown() == "cost unknown"


def test_the_provider_found_by_url_is_used_not_a_guess_from_the_model_name():
    # Groq does not sell gpt-4o-mini: no price, rather than OpenAI's
    assert turn_cost(USAGE, "gpt-4o-mini", "groq", "https://api.groq.com/openai/v1").source == "unknown"
    groq = turn_cost(USAGE, "llama-3.3-70b-versatile", "groq", "https://api.groq.com/openai/v1")
    assert Decimal(str(groq.amount)) == genai_prices.calc_price(
        genai_prices.Usage(input_tokens=12_000, output_tokens=3_000), "llama-3.3-70b-versatile",
        provider_id="groq").total_price


def test_sums_and_formatting():
    assert sum_costs([Cost(0.01, "reported"), Cost(0.02, "reported")]) == Cost(0.03, "reported")
    assert sum_costs([Cost(0.01, "reported"), Cost(0.02, "estimated")]).source == "estimated"
    assert sum_costs([Cost(0.01, "reported"), Cost(None, "unknown")]).amount is None
    assert sum_costs([]).source == "unknown"
    assert [format_usd(a) for a in (0.0041, 0.000123, 1.5, 0.25)] == ["$0.0041", "$0.00012", "$1.50", "$0.25"]
    inp, out = token_prices("gpt-4o-mini")
    assert (Decimal(str(inp)) * 1_000_000, Decimal(str(out)) * 1_000_000) == (
        genai("gpt-4o-mini", input_tokens=1_000_000), genai("gpt-4o-mini", output_tokens=1_000_000))


# --------------------------------------------------------------------------------------------
# end to end: -u, --json, --jsonl


def test_json_usage_cost_estimated_reported_unknown(server):
    server.chat([Reply(pieces=stream("a", CACHED)), Reply(pieces=stream("b", dict(USAGE, cost=0.5))),
                 Reply(pieces=stream("c", USAGE, model="my-own-model"))])
    docs = [json.loads(invoke("ask", "--base-url", server.base_url, "-m", "gpt-4o-mini", "--json", "q").stdout)
            for _ in range(3)]
    est = turn_cost(CACHED, "gpt-4o-mini").amount
    assert docs[0]["usage"]["cost"] == {"amount": est, "currency": "USD", "source": "estimated"}
    assert docs[0]["usage"]["prompt_tokens_details"] == {"cached_tokens": 8_000}
    assert docs[1]["usage"]["cost"] == {"amount": 0.5, "currency": "USD", "source": "reported"}
    # the model the server names is the one priced
    assert docs[2]["usage"]["cost"] == {"amount": None, "currency": "USD", "source": "unknown"}


def test_usage_line_shows_tokens_and_cost(server, llmcli):
    server.chat([Reply(pieces=stream("a", CACHED)), Reply(pieces=stream("b", None))])
    r = llmcli("-m", "gpt-4o-mini", "-u", "q")
    est = format_usd(turn_cost(CACHED, "gpt-4o-mini").amount)
    assert f"tokens: 12,000 in (8,000 cached) / 3,000 out (2,000 reasoning) · 15,000 total · {est} (estimated) · " \
        in r.stderr, r.stderr
    r = llmcli("-m", "gpt-4o-mini", "-u", "q")
    assert "tokens: not reported by the server; cost unknown;" in r.stderr


def test_cost_across_tool_rounds_and_in_jsonl(server):
    server.chat([Reply(pieces=stream("", dict(USAGE, cost=0.25), tool_call=("c1", "web_search", '{"query": "x"}'))),
                 Reply(pieces=stream("done", USAGE))])
    r = invoke("ask", "--base-url", server.base_url, "-m", "gpt-4o-mini", "-T", "web_search", "--jsonl", "q")
    assert r.exit_code == 0, r
    done = [json.loads(line) for line in r.stdout.splitlines()][-1]
    assert done["type"] == "done"
    # one reported, one estimated: the total is an estimate
    assert done["usage"]["cost"]["source"] == "estimated"
    assert done["usage"]["cost"]["amount"] == pytest.approx(0.25 + turn_cost(USAGE, "gpt-4o-mini").amount)
    assert done["usage"]["prompt_tokens"] == 24_000


def test_a_request_without_usage_makes_the_total_unknown(server):
    server.chat([Reply(pieces=stream("", USAGE, tool_call=("c1", "web_search", '{"query": "x"}'))),
                 Reply(pieces=stream("done", None))])
    r = invoke("ask", "--base-url", server.base_url, "-m", "gpt-4o-mini", "-T", "web_search", "--json", "q")
    assert json.loads(r.stdout)["usage"]["cost"]["source"] == "unknown"
