"""`llmcli cmd WORDS…`: one shell command from plain words, checked before it can run, never run without a
person (issue 20); `llmcli widget SHELL`: the key binding that puts such a command on the command line.

The logic (prompt, extraction, syntax check, repair, risk notes) is `run/shellcmd.py`; this module is the
terminal around it: the menu on /dev/tty, running the command in the user's shell, --print, --json.
Talking to the model goes through `RunWiring`, the path `ask` takes.
"""

import os
import sys

import click

from .app import CONTEXT_SETTINGS, connection_options, settings_from_params

# run/shellcmd.SHELLS, spelled out so that defining the command imports nothing (tests/test_cmd_cli.py
# holds the two equal).
SHELL_CHOICES = ("bash", "zsh", "fish", "sh", "pwsh")
WIDGET_SHELLS = ("bash", "zsh", "fish")

CMD_EXIT_CODES_HELP = """\b
Exit codes:
  0    the command was printed, copied, or the menu was left with Abort
  N    Execute: the command's own exit status (128+n when a signal n ended it)
  2    usage error (also --execute without a terminal)
  3    config or input error
  4/5/6  HTTP, stream or network error (5 also when the answer held no command)
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM)
"""


def cmd_options(f):
    options = [
        click.option("--shell", type=click.Choice(SHELL_CHOICES), metavar="SHELL",
                     help="The shell the command is for: bash, zsh, fish, sh or pwsh.  [default: from $SHELL, else sh]"),
        click.option("--print", "print_only", is_flag=True,
                     help="Print only the command and exit; never execute (the default without a terminal)."),
        click.option("--execute", "execute_now", is_flag=True,
                     help="On a terminal, run the command at once when it passed the syntax check and has no risk "
                          "note (otherwise the menu is shown). Refused without a terminal (exit 2)."),
        click.option("--explain", is_flag=True, help="Explain the command given as WORDS instead of writing one."),
        click.option("--json", "json_output", is_flag=True,
                     help="Print one JSON document: command, shell, syntax_ok, syntax_error, risk, notes, others, executed, "
                          "exit_status."),
        click.option("--no-stdin", is_flag=True, help="Do not read piped standard input as context."),
        click.option("-o", "--option", "options", type=(str, str), multiple=True, metavar="KEY VALUE",
                     help="Request option (temperature, max_tokens, seed, …), as for ask. Repeatable."),
        click.option("--retries", type=click.IntRange(0), metavar="N",
                     help="Retries before any output.  [default: 2]"),
        click.option("--timeout", type=float, metavar="SECS", help="Read timeout.  [default: 120]"),
        click.option("--debug", is_flag=True, default=None, help="Diagnostics on stderr.  [env: LLMCLI_DEBUG=1]"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("cmd", context_settings=CONTEXT_SETTINGS, epilog=CMD_EXIT_CODES_HELP)
@click.argument("words", nargs=-1)
@cmd_options
@connection_options
def cmd_command(words, shell, print_only, execute_now, explain, json_output, no_stdin, **params):
    """Turn WORDS into one shell command for your shell, syntax-checked by that shell.

    The model is told the OS, the shell and the current directory and asked for exactly one command;
    the command is taken from its answer (a fenced block, a `$ ` line or the bare line) and parsed by
    the shell itself without running it (bash -n, zsh -n, fish --no-execute, sh -n, pwsh's parser). A
    command the shell rejects is sent back once with the shell's error; if the correction fails too,
    it is shown with the error and cannot be executed from the menu. Piped stdin is context.

    \b
    On a terminal a menu follows (one key):
      e  Execute in your shell, on the terminal (its exit status is llmcli's)
      m  Modify the line in place, then check it again
      r  Revise: say what to change (the conversation goes on)
      d  Describe each part of the command
      c  Copy to the clipboard (wl-copy, xclip, xsel or pbcopy)
      a  Abort (also q, Esc, Ctrl-D)

    Without a terminal on stdout, or with --print, only the command is printed and nothing is
    executed; risk notes and the shell's error go to stderr.

    \b
    Examples:
      llmcli cmd find files over 100 MB modified this week
      ls | llmcli cmd "delete the empty ones"
      llmcli cmd --print --shell fish "count lines of python code here"
      llmcli cmd --explain 'tar -xzvf a.tgz -C /tmp'
    """
    code = run_cmd(words, shell, print_only, execute_now, explain, json_output, no_stdin, params)
    if code:
        raise click.exceptions.Exit(code)


def run_cmd(words, shell_flag, print_only, execute_now, explain, json_output, no_stdin, params) -> int:
    from ..errors import UsageError
    from ..run.runner import isatty
    from ..run.shellcmd import detect_shell

    shell = detect_shell(shell_flag)
    if print_only and execute_now:
        raise UsageError("--print and --execute cannot be used together")
    params = dict(params, no_tools=True)  # a shell command is all cmd asks for: no tool rounds
    request = " ".join(words).strip()
    if explain:
        context = "" if no_stdin or isatty(sys.stdin) else _read_stdin()
        return _explain(settings_from_params(params), shell, request or context.strip(), json_output)
    if not request:
        raise UsageError("no request: say what the command should do, e.g. llmcli cmd list the largest files")
    terminal = None if print_only else Terminal.open()
    if execute_now and terminal is None:
        raise UsageError("--execute needs a terminal (stdout and /dev/tty); nothing was run "
                         "(use --print to get the command)")
    settings = settings_from_params(params)
    context = "" if no_stdin or isatty(sys.stdin) else _read_stdin()
    warnings = list(settings.warnings)
    size = len(context.encode("utf-8"))
    if size > settings.max_input_bytes:
        warnings.append(f"the piped context is large ({size:,} bytes, above max_input_bytes "
                        f"{settings.max_input_bytes:,}); it may exceed the model's context")
    try:
        return CmdSession(settings, shell, request, context, terminal, json_output, execute_now, warnings).run()
    finally:
        if terminal is not None:
            terminal.close()


def _read_stdin() -> str:
    from ..prompt.history import decode_input

    buf = getattr(sys.stdin, "buffer", None)
    data = buf.read() if buf is not None else sys.stdin.read().encode("utf-8")
    return decode_input(data, "stdin", [])


def _explain(settings, shell, command, json_output) -> int:
    from ..errors import UsageError
    from ..run.shellcmd import describe_prompt
    from .app import run_ask

    if not command:
        raise UsageError("--explain needs a command, e.g. llmcli cmd --explain 'tar -xzvf a.tgz -C /tmp'")
    messages = [{"role": "system", "content": describe_prompt(shell)},
                {"role": "user", "content": f"Explain this {shell} command:\n{command}"}]
    run_ask(settings, messages, "json" if json_output else "text", pre_warnings=list(settings.warnings))
    return 0


# --------------------------------------------------------------------------------------------
# the terminal


class Terminal:
    """/dev/tty, read key by key and written with llmcli's styling. Open only when stdout is a terminal:
    in a pipe cmd prints the command and nothing else (so `llmcli cmd … | sh` is the user's own choice)."""

    def __init__(self, tty_in, tty_out):
        self.inp = tty_in
        self.out = tty_out
        from ..output.render import color_enabled

        self.color = color_enabled(tty_out)

    @classmethod
    def open(cls):
        from ..run.runner import isatty

        if not isatty(sys.stdout):
            return None
        try:
            tty_in = open("/dev/tty", "rb", buffering=0)
        except OSError:
            return None
        try:
            tty_out = open("/dev/tty", "w", encoding=getattr(sys.stdout, "encoding", None) or "utf-8",
                           errors="replace")
        except OSError:
            tty_in.close()
            return None
        return cls(tty_in, tty_out)

    def close(self):
        for f in (self.inp, self.out):
            try:
                f.close()
            except OSError:
                pass

    def write(self, text="", style=""):
        """A line of llmcli's own; `text` must already be sanitized when it quotes anything from outside."""
        if self.color and style:
            text = f"{style}{text}\x1b[0m"
        self.out.write(text + "\n")
        self.out.flush()

    def key(self) -> str:
        """One keypress, lower-cased; Ctrl-C raises KeyboardInterrupt (ISIG stays on in cbreak mode)."""
        import termios
        import tty

        fd = self.inp.fileno()
        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            data = os.read(fd, 32)  # an escape sequence (arrow keys) arrives in one read
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if not data:
            return "\x04"
        ch = data[:1].decode("latin-1")
        return "\x1b" if ch == "\x1b" else ch.lower()

    def edit(self, message: str, default: str = "") -> "str | None":
        """A line edited with prompt-toolkit on the terminal; None when cancelled (Ctrl-C, Ctrl-D)."""
        from prompt_toolkit import PromptSession
        from prompt_toolkit.input import create_input
        from prompt_toolkit.output import create_output

        with open("/dev/tty", "r") as tty_in:
            session = PromptSession(input=create_input(tty_in), output=create_output(self.out))
            try:
                return session.prompt(message, default=default)
            except (KeyboardInterrupt, EOFError):
                return None


BOLD = "\x1b[1m"
DIM = "\x1b[2m"
YELLOW = "\x1b[33m"
RED = "\x1b[31m"
CYAN_BOLD = "\x1b[1;36m"

MENU = [("e", "Execute"), ("m", "Modify"), ("r", "Revise"), ("d", "Describe"), ("c", "Copy"), ("a", "Abort")]


def highlight(command: str, shell: str, color: bool) -> str:
    """The (already sanitized) command with shell syntax colours, or bold without pygments."""
    if not color:
        return command
    try:
        from pygments import highlight as pyg_highlight
        from pygments.formatters import TerminalFormatter
        from pygments.lexers import get_lexer_by_name

        lexer = get_lexer_by_name({"zsh": "zsh", "fish": "fish", "pwsh": "powershell"}.get(shell, "bash"))
        return BOLD + pyg_highlight(command, lexer, TerminalFormatter()).rstrip("\n") + "\x1b[0m"
    except Exception:  # no pygments, or no lexer: bold is highlight enough
        return CYAN_BOLD + command + "\x1b[0m"


class CmdSession:
    """One `cmd` run: propose, then (on a terminal) the menu until the command is run, copied or dropped."""

    def __init__(self, settings, shell, request, context, terminal, json_output, execute_now, warnings=()):
        from ..output.render import Diagnostics, color_enabled
        from ..run.shellcmd import CommandConversation

        self.settings = settings
        self.shell = shell
        self.terminal = terminal
        self.json_output = json_output
        self.execute_now = execute_now
        self.diag = Diagnostics(sys.stderr, color_enabled(sys.stderr))
        for w in warnings:
            self.diag.warning(w)
        self.announced = False
        self.conversation = CommandConversation(shell, request, self.ask_model, context=context)
        self.executed = False
        self.exit_status = None

    # -- the model ---------------------------------------------------------------------------
    def ask_model(self, messages) -> str:
        """The assistant's text for `messages`, through the same RunWiring as ask (so it can be logged alike)."""
        text, _ = self._drive(messages, _Collector(self.diag))
        return text

    def _drive(self, messages, renderer):
        from ..errors import Interrupted
        from ..run.runner import RunWiring, Terminated, announce_local_model
        from ..status import ExitStatus

        # A new wiring per request, as ask builds one (the embedded model stays loaded: wire/local keeps it).
        wiring = RunWiring(self.settings, messages, self.diag, sys.stderr)
        if not self.announced:
            announce_local_model(self.settings, wiring.run.transport, self.diag)
            self.announced = True
        waiting = self.terminal is not None and isinstance(renderer, _Collector)
        if waiting:
            self.terminal.out.write(self._style(f"llmcli: asking for a {self.shell} command…", DIM))
            self.terminal.out.flush()
        try:
            error, stopped = wiring.drive(renderer)
        finally:
            if waiting:
                self.terminal.out.write("\r\x1b[K")
                self.terminal.out.flush()
        if hasattr(renderer, "finish"):
            renderer.finish(wiring.run, error)
        wiring.after(error)
        if stopped is not None:
            terminated = isinstance(stopped, Terminated)
            raise Interrupted("terminated" if terminated else "interrupted",
                              ExitStatus.TERMINATED if terminated else ExitStatus.INTERRUPTED)
        if error is not None:
            raise error
        return wiring.run.content, wiring.run

    def _style(self, text, style):
        return f"{style}{text}\x1b[0m" if self.terminal.color else text

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> int:
        proposal = self.conversation.propose()
        if self.terminal is None:
            return self._print(proposal)
        return self._menu(proposal)

    def _print(self, proposal) -> int:
        from ..errors import StreamError
        from ..output.render import json_text
        from ..output.sanitize import sanitize
        from ..run.runner import isatty

        self._report_to_stderr(proposal)
        if self.json_output:
            sys.stdout.write(json_text(self._document(proposal)) + "\n")
            sys.stdout.flush()
        if not proposal.command:
            raise StreamError("the model's answer held no command: " + _excerpt(proposal.answer))
        if self.json_output:
            return 0
        # A pipe gets the exact bytes (the widget puts them on the command line, for review).
        sys.stdout.write((sanitize(proposal.command, bidi=True) if isatty(sys.stdout) else proposal.command) + "\n")
        sys.stdout.flush()
        return 0

    def _report_to_stderr(self, proposal):
        for note in proposal.risk:
            self.diag.warning(f"risk: {note}")
        for note in proposal.notes:
            self.diag.warning(note)
        if proposal.command and not proposal.syntax.ok:
            self.diag.warning(f"{self.shell} rejected the command, also after one correction: {proposal.syntax.error}")
        elif not proposal.syntax.checked and proposal.command:
            self.diag.note(f"llmcli: {proposal.syntax.error}")
        for other in proposal.others:
            self.diag.note(f"llmcli: another candidate: {other}")

    def _document(self, proposal) -> dict:
        return {"command": proposal.command or None, "shell": self.shell,
                "syntax_ok": bool(proposal.command) and proposal.syntax.ok and proposal.syntax.checked,
                "syntax_checked": proposal.syntax.checked,
                "syntax_error": None if proposal.syntax.ok else proposal.syntax.error,
                "risk": list(proposal.risk), "notes": list(proposal.notes), "others": list(proposal.others),
                "repaired": proposal.repaired, "executed": self.executed, "exit_status": self.exit_status}

    def _show(self, proposal):
        from ..output.sanitize import sanitize

        t = self.terminal
        if not proposal.command:
            t.write("llmcli: the answer held no command:", RED)
            t.write(sanitize(_excerpt(proposal.answer, 400), bidi=True))
            return
        t.write("")
        t.write("  " + highlight(sanitize(proposal.command, bidi=True), self.shell, t.color))
        if proposal.risk:
            t.write("  risk: " + sanitize("; ".join(proposal.risk), bidi=True), YELLOW)  # may quote a file name
        for note in proposal.notes:
            t.write("  note: " + sanitize(note, bidi=True), YELLOW)
        if not proposal.syntax.ok:
            t.write(f"  {self.shell} rejected it: " + sanitize(proposal.syntax.error, bidi=True).replace("\n", " | "), RED)
        elif not proposal.syntax.checked:
            t.write(f"  {sanitize(proposal.syntax.error)}", DIM)
        for other in proposal.others:
            t.write("  or: " + sanitize(other, bidi=True), DIM)

    def _menu(self, proposal) -> int:
        t = self.terminal
        self._show(proposal)
        if self.execute_now and proposal.command and proposal.syntax.ok and not proposal.risk:
            return self._finish(proposal, self._execute(proposal.command))
        while True:
            runnable = bool(proposal.command) and proposal.syntax.ok
            entries = [(k, label) for k, label in MENU
                       if (k != "e" or runnable) and (k not in "mdc" or proposal.command)]
            line = "  ".join(f"[{label[0]}]{label[1:]}" for _, label in entries)
            if proposal.command and not runnable:
                t.write("  (no Execute: the shell rejected the command; Modify or Revise it)", DIM)
            t.out.write(self._style(line, BOLD) + " ")
            t.out.flush()
            key = t.key()
            t.write("")
            if key == "e" and runnable:
                return self._finish(proposal, self._execute(proposal.command))
            if key in ("a", "q", "\x1b", "\x04"):
                t.write("llmcli: aborted; nothing was run", DIM)
                return self._finish(proposal, 0)
            if key == "m" and proposal.command:
                edited = t.edit("edit> ", proposal.command)
                if edited is not None and edited.strip():
                    proposal = self.conversation.check(edited.strip())
                self._show(proposal)
            elif key == "r":
                change = t.edit("what should change? ")
                if change and change.strip():
                    proposal = self._keep_on_failure(lambda: self.conversation.revise(change.strip()), proposal)
                self._show(proposal)
            elif key == "d" and proposal.command:
                self._keep_on_failure(lambda: self._describe(proposal.command), None)
            elif key == "c" and proposal.command:
                t.write(copy_to_clipboard(proposal.command), DIM)

    def _keep_on_failure(self, action, fallback):
        """A failed request (network, HTTP) inside the menu is told, and the command shown stays usable."""
        from ..errors import Interrupted, LLMCliError
        from ..output.sanitize import sanitize

        try:
            return action()
        except Interrupted:
            raise
        except LLMCliError as exc:
            self.terminal.write("llmcli: error: " + sanitize(str(exc), bidi=True), RED)
            return fallback

    def _finish(self, proposal, code) -> int:
        if self.json_output:
            from ..output.render import json_text

            sys.stdout.write(json_text(self._document(proposal)) + "\n")
            sys.stdout.flush()
        return code

    def _describe(self, command):
        from ..output.render import TextRenderer
        from ..run.shellcmd import describe_prompt

        t = self.terminal
        messages = [{"role": "system", "content": describe_prompt(self.shell)},
                    {"role": "user", "content": f"Explain this {self.shell} command:\n{command}"}]
        # The renderer sanitizes the explanation: its output is the terminal.
        renderer = TextRenderer(t.out, sys.stderr, True, self.diag.safe, t.color, show_reasoning=False)
        self._drive(messages, renderer)

    def _execute(self, command) -> int:
        """Run in the user's shell with the terminal; the exit status (128+n for signal n) is returned."""
        import signal
        import subprocess

        from ..run.shellcmd import shell_argv

        self.terminal.write("")
        stdin = None
        if not _isatty_fd(0):
            stdin = open("/dev/tty", "rb")  # stdin was the piped context: the command gets the terminal
        # Like a shell waiting for its job: Ctrl-C belongs to the command, not to us.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            try:
                proc = subprocess.Popen(shell_argv(self.shell, command), stdin=stdin,
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            except OSError as exc:  # the shell itself is missing: what a shell says for a missing program
                self.terminal.write(f"llmcli: error: cannot run {self.shell}: {exc.strerror}", RED)
                self.executed, self.exit_status = False, 127
                return 127
            while True:
                try:
                    code = proc.wait(timeout=3600)
                    break
                except subprocess.TimeoutExpired:
                    continue  # a long job: keep waiting for it, as a shell would
        finally:
            signal.signal(signal.SIGINT, previous)
            if stdin is not None:
                stdin.close()
        self.executed = True
        self.exit_status = code if code >= 0 else 128 - code
        return self.exit_status


def _isatty_fd(fd) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _excerpt(text, limit=200) -> str:
    text = " ".join((text or "").split())
    return (text[:limit] + "…") if len(text) > limit else (text or "(empty)")


class _Collector:
    """A renderer that keeps nothing on screen: the text is read from the run; warnings and retries go to
    stderr."""

    def __init__(self, diag):
        self.diag = diag

    def handle(self, ev):
        from ..events import Retrying, RunWarning

        if isinstance(ev, RunWarning):
            self.diag.warning(ev.message)
        elif isinstance(ev, Retrying):
            self.diag.retry(ev)


CLIPBOARD_TOOLS = (
    ("wl-copy", ["wl-copy"], "WAYLAND_DISPLAY"),
    ("xclip", ["xclip", "-selection", "clipboard"], "DISPLAY"),
    ("xsel", ["xsel", "--clipboard", "--input"], "DISPLAY"),
    ("pbcopy", ["pbcopy"], None),
)


def copy_to_clipboard(text, environ=os.environ) -> str:
    """Copy with the first clipboard tool that is installed (and has its display); says what happened."""
    import shutil
    import subprocess

    for name, argv, display in CLIPBOARD_TOOLS:
        if shutil.which(name) is None or (display and not environ.get(display)):
            continue
        try:
            subprocess.run(argv, input=text.encode("utf-8"), check=True, timeout=5,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"llmcli: {name} failed ({exc}); the command was not copied"
        return f"llmcli: copied to the clipboard ({name})"
    return "llmcli: no clipboard tool found (wl-copy, xclip, xsel or pbcopy); the command was not copied"
