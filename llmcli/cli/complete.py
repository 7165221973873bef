"""`llmcli complete [PROMPT…]`: the legacy `POST {base}/completions` endpoint (issue 18).

For base models and engines that take token ids (vLLM, llama.cpp's server, TGI, OpenAI's
gpt-3.5-turbo-instruct) and for the embedded model's raw completion. The prompt is built as in `ask`
(-f FILE, piped stdin, the PROMPT words), or given as token ids; choice 0's text streams to stdout.
"""

import sys

import click

from .app import CONTEXT_SETTINGS, EXIT_CODES_HELP, connection_options_for, settings_from_params
from .app import timeout_options as _timeout_options
from .paramtypes import FILE_OR_DASH


_connection_options = connection_options_for("completions", "vllm, llamacpp, openai, local, ...")


@click.command("complete", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("prompt", nargs=-1)
@_connection_options
@click.option("-f", "--file", "files", multiple=True, metavar="PATH",
              help="Add a text file to the prompt, headed by its name ('-' reads stdin). Repeatable.")
@click.option("--no-stdin", is_flag=True, help="Do not read piped standard input.")
@click.option("--token-ids", "token_ids", metavar="IDS",
              help="Send the prompt as token ids, e.g. 1,2,3 (instead of text).")
@click.option("--token-ids-file", metavar="FILE", type=FILE_OR_DASH,
              help="Read the prompt's token ids from FILE: a JSON array, or numbers separated by commas or spaces.")
@click.option("--max-tokens", type=click.IntRange(1), metavar="N", help="Tokens to generate (max_tokens).")
@click.option("--stop", "stop", multiple=True, metavar="TEXT", help="Stop at TEXT. Repeatable.")
@click.option("--echo", is_flag=True, default=None, help="Ask the server to return the prompt before the completion.")
@click.option("--logprobs", type=click.IntRange(0), metavar="N",
              help="Return the log-probabilities of the N most likely tokens at each position.")
@click.option("-n", "n", type=click.IntRange(1), metavar="N",
              help="Generate N choices (choice 0 streams to stdout; --json lists every choice).")
@click.option("--top-k", type=int, metavar="K", help="top_k sampling (vLLM, llama.cpp, TGI).")
@click.option("--min-p", type=float, metavar="P", help="min_p sampling (vLLM, llama.cpp).")
@click.option("--repetition-penalty", type=float, metavar="X",
              help="repetition_penalty (vLLM, TGI; the embedded model's repeat_penalty).")
@click.option("--stop-token-ids", metavar="IDS", help="Stop at any of these token ids, e.g. 2,32000 (vLLM).")
@click.option("--skip-special-tokens/--keep-special-tokens", "skip_special_tokens", default=None,
              help="Leave special tokens out of the text, or keep them (vLLM).")
@click.option("--priority", type=int, metavar="N", help="Request priority (vLLM with --scheduling-policy priority).")
@click.option("--return-token-ids", is_flag=True, default=None,
              help="Ask for the generated token ids (vLLM return_token_ids); shown by --json and --jsonl.")
@click.option("-o", "--option", "options", type=(str, str), multiple=True, metavar="KEY VALUE",
              help="Any request option (VALUE parsed as JSON when it can be; 'null' removes a key). Repeatable.")
@_timeout_options
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document at the end (also on failure).")
@click.option("--jsonl", "jsonl_output", is_flag=True, help="Print one JSON event per chunk as it arrives.")
@click.option("--no-stream", is_flag=True, help="Send a non-streaming request (output is printed the same way).")
@click.option("-u", "--usage", "show_usage", is_flag=True, help="Show token usage and time on stderr.")
@click.option("--raw", is_flag=True, help="On a terminal, print control characters as they are.")
def complete_command(prompt, files, no_stdin, token_ids, token_ids_file, json_output, jsonl_output, no_stream,
                     show_usage, raw, **params):
    """Complete a prompt with the legacy /completions endpoint (base models, token-id prompts).

    The prompt is built as in 'ask' (each -f FILE, piped stdin, then the PROMPT words), or given as
    token ids with --token-ids / --token-ids-file. Choice 0's text streams to stdout; with no provider
    configured the embedded local model completes it.

    \b
    Examples:
      llmcli complete -p vllm -m meta-llama/Llama-3.1-8B "The capital of France is" --max-tokens 8
      llmcli complete --base-url http://127.0.0.1:8080/v1 --token-ids 1,415,5565 --json --return-token-ids
      llmcli complete -p llamacpp --logprobs 3 --jsonl "Once upon a time"
    """
    from ..errors import UsageError

    if json_output and jsonl_output:
        raise UsageError("--json and --jsonl cannot be used together")
    settings = settings_from_params(params)
    prompt_value = read_prompt(prompt, files, no_stdin, token_ids, token_ids_file)
    body_options = list(settings.options) + request_flags(params)
    run_complete(settings, prompt_value, body_options, "json" if json_output else "jsonl" if jsonl_output else "text",
                 stream=not no_stream, show_usage=show_usage, raw=raw)


def request_flags(params) -> list:
    """(key, value) pairs for the body from the dedicated flags, in a fixed order."""
    from ..errors import UsageError

    out = []
    if params.get("max_tokens") is not None:
        out.append(("max_tokens", params["max_tokens"]))
    stop = params.get("stop") or ()
    if stop:
        out.append(("stop", list(stop)))
    if params.get("echo"):
        out.append(("echo", True))
    if params.get("logprobs") is not None:
        out.append(("logprobs", params["logprobs"]))
    if params.get("n") is not None:
        out.append(("n", params["n"]))
    for key in ("top_k", "min_p", "repetition_penalty", "skip_special_tokens", "priority"):
        if params.get(key) is not None:
            out.append((key, params[key]))
    if params.get("stop_token_ids"):
        try:
            out.append(("stop_token_ids", parse_token_ids(params["stop_token_ids"])))
        except ValueError as exc:
            raise UsageError(f"--stop-token-ids: {exc}")
    if params.get("return_token_ids"):
        out.append(("return_token_ids", True))
    for key, value in params.get("options") or ():
        from ..config.settings import parse_option_value

        out.append((key, parse_option_value(value)))
    return out


def parse_token_ids(text: str) -> list:
    """ "1,2,3", "1 2 3" or "[1, 2, 3]" → [1, 2, 3]; ValueError naming the first bad entry."""
    text = text.strip()
    if text.startswith("["):
        import json

        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not a JSON array of token ids ({exc})")
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError("the JSON array must hold whole numbers only")
        ids = value
    else:
        ids = []
        for item in text.replace(",", " ").split():
            if not item.isdigit():
                raise ValueError(f"{item!r} is not a token id (a whole number >= 0)")
            ids.append(int(item))
    if not ids:
        raise ValueError("no token ids given")
    if any(i < 0 for i in ids):
        raise ValueError("token ids are whole numbers >= 0")
    return ids


def read_prompt(words, files, no_stdin, token_ids, token_ids_file):
    """The prompt: a string built as `ask` builds its message, or a list of token ids."""
    from ..errors import InputError, UsageError
    from ..prompt.history import build_user_message, decode_input, read_file_bytes
    from ..run.runner import isatty

    if token_ids is not None or token_ids_file is not None:
        if token_ids is not None and token_ids_file is not None:
            raise UsageError("give --token-ids or --token-ids-file, not both")
        if words or files:
            raise UsageError("a token-id prompt cannot be combined with PROMPT words or -f FILE")
        if token_ids is not None:
            try:
                return parse_token_ids(token_ids)
            except ValueError as exc:
                raise UsageError(f"--token-ids: {exc}")
        if token_ids_file == "-":
            data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        else:
            data = read_file_bytes(token_ids_file)
        try:
            return parse_token_ids(data.decode("utf-8", errors="replace"))
        except ValueError as exc:
            raise InputError(f"{token_ids_file}: {exc}")
    warnings: list = []
    stdin = sys.stdin
    stdin_tty = isatty(stdin)
    cached = []

    def read_stdin():
        if not cached:
            buf = getattr(stdin, "buffer", None)
            cached.append(buf.read() if buf is not None else stdin.read().encode("utf-8"))
        return cached[0]

    parts = []
    for path in files:
        if path == "-":
            parts.append(("stdin", decode_input(read_stdin(), "stdin", warnings)))
        else:
            parts.append((path, decode_input(read_file_bytes(path), path, warnings)))
    stdin_text = None
    if "-" not in files and not no_stdin and not stdin_tty and stdin is not None:
        stdin_text = decode_input(read_stdin(), "stdin", warnings)
    text = " ".join(words) if words else None
    if text is None and stdin_text is None and not parts and stdin_tty:
        raise UsageError("no prompt: give one as arguments, pipe text on stdin, use -f FILE or --token-ids "
                         "(try 'llmcli complete --help')")
    prompt = build_user_message(text, stdin_text, parts)
    if prompt is None:
        raise UsageError("nothing to send: the prompt is empty")
    for w in warnings:
        click.echo(f"llmcli: warning: {w}", err=True)
    return prompt


def run_complete(settings, prompt, options, mode, stream=True, show_usage=False, raw=False, transport=None):
    import time

    from ..errors import Interrupted
    from ..output.completion import CompletionJSONLRenderer, CompletionJSONRenderer
    from ..output.render import Diagnostics, TextRenderer, color_enabled
    from ..run.complete import CompletionRun, make_completion_transport
    from ..run.runner import Terminated, announce_local_model, drive_events, isatty
    from ..status import ExitStatus
    from ..wire.completions import completion_body

    out, err = sys.stdout, sys.stderr
    out_tty, err_tty = isatty(out), isatty(err)
    color = color_enabled(err)
    diag = Diagnostics(err, color)
    for w in settings.warnings:
        diag.warning(w)
    if mode == "json":
        renderer = CompletionJSONRenderer(out, err, err_tty, color)
    elif mode == "jsonl":
        renderer = CompletionJSONLRenderer(out, err, err_tty, color)
    else:
        renderer = TextRenderer(out, err, out_tty, err_tty, color, show_reasoning=False,
                                show_usage=show_usage, raw=raw)
    recorder = None
    if settings.debug:
        from ..wire.record import Recorder

        recorder = Recorder()
        diag.note(f"llmcli: debug: provider={settings.provider} base_url={settings.base_url} "
                  f"model={settings.model} key={'set' if settings.api_key else 'none'} endpoint=/completions")
    deadline = time.monotonic() + settings.max_time if settings.max_time else None
    if transport is None:
        transport = make_completion_transport(settings, recorder, deadline, on_fetch=diag.note)
    body = completion_body(settings.model, prompt, stream, options)
    run = CompletionRun(transport, settings, body)
    announce_local_model(settings, getattr(transport, "local", transport), diag)
    if mode == "text" and (body.get("n") or 1) > 1:
        diag.note("llmcli: choice 0 is printed; --json lists every choice")
    error, stopped = drive_events(run.events(), renderer)
    if stopped is not None:
        terminated = isinstance(stopped, Terminated)
        error = Interrupted("terminated" if terminated else "interrupted",
                            ExitStatus.TERMINATED if terminated else ExitStatus.INTERRUPTED)
    renderer.finish(run, error)
    if recorder is not None:
        for line in recorder.summary_lines():
            diag.note(f"llmcli: debug: {line}")
        diag.note(f"llmcli: debug: {run.timing()} finish_reason={run.finish_reason} chunks={run.chunks}")
        if error is not None and settings.home:
            try:
                path = recorder.save(settings.home, str(error))
                diag.note(f"llmcli: debug: saved a replayable record to {path} (llmcli replay {path})")
            except OSError as exc:
                diag.warning(f"could not save the debug record: {exc}")
    if error is not None:
        raise error
