"""`llmcli batch IN -o OUT`: many prompts, concurrently, resumably (issue 21)."""

import json
import os
import sys

import click

from .app import CONTEXT_SETTINGS, EXIT_CODES_HELP, settings_from_params


@click.command("batch", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("input_path", metavar="IN", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--output", "output_path", metavar="OUT", required=True,
              type=click.Path(dir_okay=False, allow_dash=True),
              help="Output JSONL ('-' for stdout). An existing file is resumed: its finished items are skipped.")
@click.option("-p", "--provider", metavar="NAME", help="Provider from the config file or a preset.")
@click.option("-m", "--model", metavar="MODEL", help="Default model (an item's own model wins).")
@click.option("--base-url", "base_urls", metavar="URL", multiple=True,
              help="API root; repeat for several endpoints (each request goes to the one with the fewest in flight).")
@click.option("--api-key", metavar="KEY", help="API key sent as a Bearer token.  [env: LLMCLI_API_KEY]")
@click.option("--config", "config", metavar="FILE", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("-s", "--system", metavar="TEXT", help="System prompt for items without one.")
@click.option("--option", "options", type=(str, str), multiple=True, metavar="KEY VALUE",
              help="Request option for every item (an item's options win). Repeatable.")
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), default=4, show_default=True, help="Concurrent requests.")
@click.option("--rpm", type=click.FloatRange(min=0, min_open=True), help="At most this many requests per minute.")
@click.option("--tpm", type=click.FloatRange(min=0, min_open=True), help="At most this many tokens per minute.")
@click.option("--ordered", is_flag=True, help="Write results in input order (bounded reorder buffer).")
@click.option("--openai-format", is_flag=True, help="Write the OpenAI batch output format.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed item.")
@click.option("--json-summary", is_flag=True, help="Write the final summary as one JSON line on stderr.")
@click.option("--cooldown", type=float, default=10.0, show_default=True, metavar="SECS",
              help="How long an endpoint that keeps failing is left out.")
@click.option("--retries", type=click.IntRange(0), metavar="N", help="Retries per item.  [default: 2]")
@click.option("--timeout", type=float, metavar="SECS", help="Read timeout.  [default: 120]")
def batch_command(input_path, output_path, base_urls, jobs, rpm, tpm, ordered, openai_format, fail_fast,
                  json_summary, cooldown, **params):
    """Run every prompt in IN (one per line) and write one JSON line per item to OUT.

    \b
    IN lines are plain text prompts, {"id", "prompt" | "messages", "system", "model", "options"}
    objects, or the OpenAI batch file format ({"custom_id", "method", "url", "body"}).
    Records are `ask --json` documents with "id" and "index" (or, with --openai-format,
    {"id", "custom_id", "response": {"status_code", "body"}, "error"}), in completion order unless
    --ordered. A failed item is an error record; the exit code is then 8.

    \b
    Examples:
      llmcli batch prompts.txt -o answers.jsonl -j 8 --rpm 600
      llmcli batch requests.jsonl -o out.jsonl --openai-format --base-url http://a:8000/v1 --base-url http://b:8000/v1
    """
    from ..batch.items import done_ids, read_items
    from ..batch.runner import BatchRunner, Limiter
    from ..errors import BatchItemsFailed, InputError, Interrupted
    from ..run.runner import isatty, make_transport

    params["base_url"] = base_urls[0] if base_urls else None
    settings = settings_from_params(params)
    urls = [settings.base_url] + [u.rstrip("/") for u in base_urls[1:]]
    skip = done_ids(output_path) if output_path != "-" else set()
    try:
        infile = sys.stdin if input_path == "-" else open(input_path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {input_path}: {exc.strerror}") from None
    out = sys.stdout if output_path == "-" else open(output_path, "a", encoding="utf-8")
    err = sys.stderr
    show_progress = isatty(err)

    def write(record):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()

    def progress(summary):
        if show_progress:
            d = summary.to_dict()
            err.write(f"\r{d['done']} done, {d['failed']} errors, {d['skipped']} skipped, "
                      f"{d['rate_per_s'] or 0}/s, tokens {d['prompt_tokens'] + d['completion_tokens']:,}\x1b[K")
            err.flush()

    runner = BatchRunner(settings, urls, make_transport, workers=jobs, limiter=Limiter(jobs, rpm, tpm),
                         ordered=ordered, fail_fast=fail_fast, openai_format=openai_format, skip=skip,
                         progress=progress, cooldown=cooldown)
    stopped = None
    try:
        runner.run(read_items(infile, settings.system), write)
    except KeyboardInterrupt as exc:
        stopped = exc
    finally:
        if show_progress:
            err.write("\r\x1b[K")
        summary = runner.summary
        if json_summary:
            err.write(json.dumps(summary.to_dict()) + "\n")
        else:
            err.write(summary.line() + "\n")
        err.flush()
        if out is not sys.stdout:
            out.close()
        if infile is not sys.stdin:
            infile.close()
    if stopped is not None:
        from ..run.runner import Terminated

        terminated = isinstance(stopped, Terminated)
        raise Interrupted("terminated" if terminated else "interrupted", 143 if terminated else 130)
    if summary.failed:
        raise BatchItemsFailed(f"{summary.failed} of {summary.done} items failed (see their error records)")
