"""`ask --logprobs N` / `--show-logprobs` (issue 18): the options and what they add to the request.

Kept apart from app.py (one line applies the options there) and imports nothing but click.
"""

import click


def logprob_options(f):
    options = [
        click.option("--logprobs", "logprobs", type=click.IntRange(0, 20), metavar="N", default=None,
                     help="Ask for each answer token's log-probability and the N most likely alternatives "
                          "(chat logprobs/top_logprobs); --json and --jsonl carry them."),
        click.option("--show-logprobs", "show_logprobs", is_flag=True, default=None,
                     help="On a colour terminal, tint each token by its probability (a legend goes to stderr). "
                          "Implies --logprobs 0."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def apply_logprobs(settings, params):
    """(settings with logprobs/top_logprobs in the request options, whether to tint)."""
    n = params.pop("logprobs", None)
    show = bool(params.pop("show_logprobs", None))
    if n is None and not show:
        return settings, False
    options = [(k, v) for k, v in settings.options if k not in ("logprobs", "top_logprobs")]
    options.append(("logprobs", True))
    if n:
        options.append(("top_logprobs", n))
    return settings.with_changes(options=tuple(options)), show
