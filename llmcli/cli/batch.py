"""`llmcli batch IN -o OUT`: many prompts, concurrently, resumably; and provider batch APIs (issue 21).

`llmcli batch IN …` keeps its positional IN, and `llmcli batch status|wait|fetch|cancel ID` are
subcommands of the same command: `BatchGroup` is a click group whose own parameters are those of the
IN form, used whenever the first argument is not a subcommand's name (a file called `status` is
`./status`). A group with a default command would have moved IN's options to another page of --help.
"""

import json
import os
import sys

import click

from .app import CONTEXT_SETTINGS, EXIT_CODES_HELP, echo_outside, settings_from_params
from .paramtypes import FILE, FILE_OR_DASH

REMOTE_COMMANDS = ("status", "wait", "fetch", "cancel")


class BatchGroup(click.Group):
    """`batch IN [OPTIONS]` runs a batch; `batch COMMAND ID [OPTIONS]` talks to a provider's batch API."""

    allow_extra_args = False  # `batch a.txt b.txt` is an error, as it was
    allow_interspersed_args = True  # options may follow IN

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("invoke_without_command", True)
        kwargs.setdefault("no_args_is_help", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx, args):
        if args and args[0] in self.commands:
            ctx._protected_args, ctx.args = args[:1], args[1:]
            return ctx.args
        return click.Command.parse_args(self, ctx, args)

    def invoke(self, ctx):
        if not ctx._protected_args:
            return click.Command.invoke(self, ctx)
        name = ctx._protected_args[0]
        command = self.commands[name]
        args, ctx.args, ctx._protected_args = ctx.args, [], []
        with ctx:
            ctx.invoked_subcommand = name
            with command.make_context(name, args, parent=ctx) as sub_ctx:
                return sub_ctx.command.invoke(sub_ctx)

    def list_commands(self, ctx):
        return [name for name in REMOTE_COMMANDS if name in self.commands]

    def collect_usage_pieces(self, ctx):
        return click.Command.collect_usage_pieces(self, ctx)

    def format_usage(self, ctx, formatter):
        formatter.write_usage(ctx.command_path, " ".join(self.collect_usage_pieces(ctx)))
        formatter.write_usage(ctx.command_path, "status|wait|fetch|cancel ID [OPTIONS]", prefix="   or: ")


def _complete_in(ctx, param, incomplete):
    """Files, and the subcommand names (the file item first: bash falls back to files only when no
    name matches)."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")] + [CompletionItem(name) for name in REMOTE_COMMANDS
                                                        if name.startswith(incomplete)]


class _SubcommandContext(click.Context):
    @property
    def command_path(self):
        # click puts the parent's arguments in a subcommand's path ("llmcli batch IN status"); IN is not
        # part of these forms.
        return f"{self.parent.command_path} {self.info_name}"


class RemoteCommand(click.Command):
    context_class = _SubcommandContext


@click.group("batch", cls=BatchGroup, context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("input_path", metavar="IN", type=FILE_OR_DASH,
                shell_complete=_complete_in)
@click.option("-o", "--output", "output_path", metavar="OUT",
              type=FILE_OR_DASH,
              help="Output JSONL ('-' for stdout). An existing file is resumed: its finished items are skipped. "
                   "Required unless --remote.")
@click.option("-p", "--provider", metavar="NAME", help="Provider from the config file or a preset.")
@click.option("-m", "--model", metavar="MODEL", help="Default model (an item's own model wins).")
@click.option("--base-url", "base_urls", metavar="URL", multiple=True,
              help="API root; repeat for several endpoints (each request goes to the one with the fewest in flight).")
@click.option("--api-key", metavar="KEY", help="API key sent as a Bearer token.  [env: LLMCLI_API_KEY]")
@click.option("--config", "config", metavar="FILE", type=FILE, help="YAML config file.")
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
@click.option("--remote", is_flag=True,
              help="Do not run the requests here: convert IN to the OpenAI batch file format, upload it to the "
                   "provider (POST /files) and create a batch (POST /batches, 24h window); prints the batch id.")
@click.option("--json", "json_output", is_flag=True, help="With --remote: print the created batch object as JSON.")
@click.pass_context
def batch_command(ctx, input_path, output_path, base_urls, jobs, rpm, tpm, ordered, openai_format, fail_fast,
                  json_summary, cooldown, remote, json_output, **params):
    """Run every prompt in IN (one per line) and write one JSON line per item to OUT.

    \b
    IN lines are plain text prompts, {"id", "prompt" | "messages", "system", "model", "options"}
    objects, or the OpenAI batch file format ({"custom_id", "method", "url", "body"}).
    Records are `ask --json` documents with "id" and "index" (or, with --openai-format,
    {"id", "custom_id", "response": {"status_code", "body"}, "error"}), in completion order unless
    --ordered. A failed item is an error record; the exit code is then 8.

    \b
    With --remote the provider runs the batch (its batch API, at its batch price): IN is uploaded and
    the batch id printed; then `batch status ID`, `batch wait ID`, `batch fetch ID -o OUT` (the same
    records as above, or --openai-format) and `batch cancel ID`.

    \b
    Examples:
      llmcli batch prompts.txt -o answers.jsonl -j 8 --rpm 600
      llmcli batch requests.jsonl -o out.jsonl --openai-format --base-url http://a:8000/v1 --base-url http://b:8000/v1
      id=$(llmcli batch prompts.txt --remote -p openai -m gpt-4o-mini)
      llmcli batch wait "$id" -p openai && llmcli batch fetch "$id" -p openai -o answers.jsonl
    """
    if remote:
        return submit_remote(ctx, input_path, output_path, base_urls, json_output, params)
    if output_path is None:
        raise click.UsageError("Missing option '-o' / '--output' (it is needed unless --remote)", ctx)
    if json_output:
        raise click.UsageError("--json is for --remote (use --json-summary for the summary)", ctx)
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


# --------------------------------------------------------------------------------------------
# provider batch APIs: --remote, status, wait, fetch, cancel

_LOCAL_ONLY = ("output_path", "jobs", "rpm", "tpm", "ordered", "openai_format", "fail_fast", "json_summary",
               "cooldown")


def _remote_settings(params):
    settings = settings_from_params(params)
    if not (settings.base_url or "").startswith(("http://", "https://")):
        from ..errors import ConfigError

        raise ConfigError(f"provider {settings.provider!r} has no HTTP batch API (give -p NAME or --base-url URL)")
    return settings


def _print_batch(batch, json_output):
    from ..batch.remote import describe

    if json_output:
        click.echo(json.dumps(batch, ensure_ascii=False, indent=2))
    else:
        echo_outside(describe(batch))


def submit_remote(ctx, input_path, output_path, base_urls, json_output, params):
    """--remote: IN → the OpenAI batch file → POST /files → POST /batches; the batch id on stdout."""
    import tempfile

    from ..batch.remote import BatchAPI, upload_name, write_batch_file
    from ..errors import InputError

    given = [name for name in _LOCAL_ONLY
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        names = ", ".join("--" + n.replace("_path", "").replace("_", "-") for n in given)
        raise click.UsageError(f"{names}: not with --remote (the provider runs the requests; "
                               "fetch the results with 'llmcli batch fetch ID -o OUT')", ctx)
    if len(base_urls) > 1:
        raise click.UsageError("--remote sends the batch to one provider: give one --base-url", ctx)
    params["base_url"] = base_urls[0] if base_urls else None
    settings = _remote_settings(params)
    try:
        infile = sys.stdin if input_path == "-" else open(input_path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {input_path}: {exc.strerror}") from None
    api = BatchAPI(settings)
    with tempfile.TemporaryFile() as converted:
        try:
            count = write_batch_file(infile, converted, settings)
        finally:
            if infile is not sys.stdin:
                infile.close()
        converted.seek(0)
        uploaded = api.upload(converted, upload_name(input_path))
    from ..batch.remote import check_id
    from ..errors import StreamError, UsageError

    try:
        file_id = check_id(uploaded.get("id"), "file id")
        batch = api.create(file_id)
        check_id(batch.get("id"))
    except UsageError as exc:  # ids go into later URLs and onto the terminal: only plain ones are taken
        raise StreamError(f"the server answered with {exc}") from None
    click.echo(f"llmcli: batch: uploaded {count} request{'s' if count != 1 else ''} as {file_id}; "
               f"batch {batch.get('id')} is {batch.get('status')} "
               f"(llmcli batch wait {batch.get('id')})", err=True)
    if json_output:
        _print_batch(batch, True)
    else:
        echo_outside(str(batch.get("id")))


def remote_options(f):
    """Where the batch API is: -p/--base-url/--api-key/--config, and the retries of every request."""
    options = [
        click.option("-p", "--provider", metavar="NAME", help="Provider from the config file or a preset (openai, groq, ...)."),
        click.option("--base-url", metavar="URL", help="API root, e.g. https://api.openai.com/v1 (requests go to "
                                                        "URL/batches and URL/files).  [env: LLMCLI_BASE_URL]"),
        click.option("--api-key", metavar="KEY", help="API key sent as a Bearer token.  [env: LLMCLI_API_KEY]"),
        click.option("--config", "config", metavar="FILE", type=FILE, help="YAML config file."),
        click.option("--retries", type=click.IntRange(0), metavar="N",
                     help="Retries of each request for connect errors, timeouts, 429 and 5xx.  [default: 2]"),
        click.option("--connect-timeout", type=float, metavar="SECS", help="Connect timeout.  [default: 10]"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@batch_command.command("status", cls=RemoteCommand, context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("batch_id", metavar="ID")
@remote_options
@click.option("--json", "json_output", is_flag=True, help="Print the batch object as JSON.")
def status_command(batch_id, json_output, **params):
    """Show a provider batch: its status and request counts (GET /batches/ID).

    \b
    Statuses: validating, in_progress, finalizing, completed; failed, expired, cancelling, cancelled.
    """
    from ..batch.remote import BatchAPI

    _print_batch(BatchAPI(_remote_settings(params)).retrieve(batch_id), json_output)


@batch_command.command("wait", cls=RemoteCommand, context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("batch_id", metavar="ID")
@remote_options
@click.option("--timeout", "wait_timeout", type=click.FloatRange(min=0), metavar="SECS",
              help="Give up after SECS (exit 6; the batch goes on).  [default: wait until it ends]")
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=5.0, show_default=True, metavar="SECS",
              help="First interval between polls; it grows by half while nothing changes (up to 60 s).")
@click.option("--json", "json_output", is_flag=True, help="Print the final batch object as JSON.")
def wait_command(batch_id, wait_timeout, poll_interval, json_output, **params):
    """Poll a provider batch until it is completed, failed, expired or cancelled.

    Progress goes to stderr when it is a terminal; the final status to stdout. Exit 0 when it completed
    with every request succeeded, 8 when some requests failed or it ended failed, expired or cancelled
    (fetch what there is), 6 when --timeout passed first.
    """
    from ..batch.remote import BatchAPI, describe, outcome_error, wait
    from ..errors import Interrupted
    from ..output.sanitize import sanitize
    from ..run.runner import isatty

    err = sys.stderr
    show = isatty(err)

    def progress(batch, elapsed):
        if show:
            err.write(f"\r{sanitize(describe(batch))}, {elapsed:.0f} s\x1b[K")
            err.flush()

    try:
        batch = wait(BatchAPI(_remote_settings(params)), batch_id, wait_timeout, poll_interval, progress)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; batch {batch_id} goes on at the provider "
                          f"(llmcli batch cancel {batch_id} stops it)") from None
    finally:
        if show:
            err.write("\r\x1b[K")
            err.flush()
    _print_batch(batch, json_output)
    error = outcome_error(batch)
    if error is not None:
        raise error


@batch_command.command("fetch", cls=RemoteCommand, context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("batch_id", metavar="ID")
@click.option("-o", "--output", "output_path", metavar="OUT", required=True,
              type=FILE_OR_DASH, help="Output JSONL ('-' for stdout); overwritten.")
@click.option("--openai-format", is_flag=True, help="Write the provider's output and error lines as they are.")
@remote_options
def fetch_command(batch_id, output_path, openai_format, **params):
    """Download a provider batch's results (its output and error files) as llmcli batch records.

    Each line becomes the record `llmcli batch` writes: the `ask --json` document with "id", "index"
    (the line of the batch's input file) and "custom_id"; a failed request is an error record. Exit 8
    when some requests failed or the batch did not complete.
    """
    from ..batch.remote import BatchAPI, describe, fetch, outcome_error
    from ..errors import LLMCliError

    api = BatchAPI(_remote_settings(params))
    batch = api.retrieve(batch_id)
    status = batch.get("status")
    if status not in ("completed", "failed", "expired", "cancelled") and not (
            batch.get("output_file_id") or batch.get("error_file_id")):
        raise LLMCliError(f"batch {batch_id} is {status}: no results yet (llmcli batch wait {batch_id})")
    # A file is written beside OUT and renamed over it at the end: a download that fails half-way
    # leaves an earlier OUT as it was.
    if output_path == "-":
        out, part = sys.stdout, None
    else:
        part = f"{output_path}.part"
        out = open(part, "w", encoding="utf-8")

    def write(record):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        if part is None:
            out.flush()

    try:
        counts = fetch(api, batch, write, openai_format=openai_format)
    except BaseException:
        if part is not None:
            out.close()
            os.unlink(part)
        raise
    if part is not None:
        out.close()
        os.replace(part, output_path)
    click.echo(f"llmcli: batch: {counts['ok'] + counts['failed']} records ({counts['ok']} ok, {counts['failed']} "
               f"failed) from {describe(batch)}", err=True)
    error = outcome_error(batch)
    if error is None and counts["failed"]:
        from ..errors import BatchItemsFailed

        error = BatchItemsFailed(f"{counts['failed']} requests failed (see their error records)")
    if error is not None:
        raise error


@batch_command.command("cancel", cls=RemoteCommand, context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("batch_id", metavar="ID")
@remote_options
@click.option("--json", "json_output", is_flag=True, help="Print the batch object as JSON.")
def cancel_command(batch_id, json_output, **params):
    """Cancel a provider batch (POST /batches/ID/cancel): it goes to cancelling, then cancelled.

    Requests already done are kept: `llmcli batch fetch ID` gets them once it is cancelled.
    """
    from ..batch.remote import BatchAPI

    _print_batch(BatchAPI(_remote_settings(params)).cancel(batch_id), json_output)
