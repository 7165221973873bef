"""The budget options of `ask` and `chat` (issue 19); the limits themselves are llmcli/run/budget.py."""

import click

BUDGET_FLAG_NAMES = ("max_cost", "max_tokens_total")


def budget_options(f):
    """--max-cost and --max-tokens-total, for one `ask` run (every tool round) or one chat session."""
    f = click.option("--max-tokens-total", type=click.IntRange(1), metavar="N",
                     help="Stop (exit 5) before a request that could bring the tokens of this run (chat: this "
                          "session) above N, prompt and answer of every round counted.  "
                          "[env: LLMCLI_MAX_TOKENS_TOTAL; config budget.max_tokens_total]")(f)
    f = click.option("--max-cost", type=click.FloatRange(min=0, min_open=True), metavar="USD",
                     help="Stop (exit 5) before a request that could bring the cost of this run (chat: this "
                          "session) above USD, from the server's usage.cost or genai-prices' prices.  "
                          "[env: LLMCLI_MAX_COST; config budget.max_cost]")(f)
    return f
