"""`llmcli cmd`: one shell command from plain words (issue 20), as plain logic with no terminal code.

The pieces: the system prompt (OS, shell, cwd; "exactly one command"), extracting one command from
whatever the model wrote (a fenced block, a `$ ` line, a bare line, prose around it), the syntax check
by the target shell itself without running anything (`bash -n`, `zsh -n`, `fish --no-execute`, `sh -n`,
pwsh's parser), one repair request carrying the shell's error, and one-line risk notes for
destructive patterns. Talking to the model goes through the same `RunWiring` that `ask` uses.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from ..errors import UsageError

SHELLS = ("bash", "zsh", "fish", "sh", "pwsh")
SYNTAX_CHECK_TIMEOUT = 5.0  # seconds; a parser that hangs must not hang llmcli

# How each shell parses a script without running it. The command is passed on stdin for the POSIX
# shells (no quoting of our own in between), as a -c argument where stdin is not read with -n.
_CHECKERS = {
    "bash": lambda exe, cmd: ([exe, "-n"], cmd),
    "sh": lambda exe, cmd: ([exe, "-n"], cmd),
    "zsh": lambda exe, cmd: ([exe, "-n"], cmd),
    "fish": lambda exe, cmd: ([exe, "--no-execute"], cmd),
    "pwsh": lambda exe, cmd: ([exe, "-NoProfile", "-NonInteractive", "-Command",
                               "$e=$null; [void][System.Management.Automation.Language.Parser]::ParseInput("
                               "$input_text, [ref]$null, [ref]$e); if ($e) { $e | ForEach-Object { "
                               "[Console]::Error.WriteLine($_.ToString()) }; exit 1 }"
                               .replace("$input_text", "[Console]::In.ReadToEnd()")], cmd),
}


def detect_shell(flag: Optional[str], environ=os.environ) -> str:
    """--shell, else the basename of $SHELL when it is one we know, else sh."""
    if flag:
        if flag not in SHELLS:
            raise UsageError(f"unknown shell {flag!r}; choose one of {', '.join(SHELLS)}")
        return flag
    name = os.path.basename(environ.get("SHELL") or "")
    return name if name in SHELLS else "sh"


def system_prompt(shell: str, cwd: Optional[str] = None, os_name: Optional[str] = None) -> str:
    os_name = os_name or _describe_os()
    cwd = cwd or os.getcwd()
    return (
        f"You turn a request into exactly one shell command. Operating system: {os_name}. "
        f"Shell: {shell}. Current directory: {cwd}.\n"
        f"Answer with the command only, on one line, valid {shell} syntax, no explanation, no Markdown. "
        "If several steps are needed, join them into one command line (&&, pipes). "
        "Never use placeholders the user would have to fill in when a sensible default exists."
    )


def describe_prompt(shell: str) -> str:
    return (f"You explain {shell} commands. Explain what the given command does, part by part: each program, "
            "option and operator on its own short line, then one line on what the whole does and any risk. "
            "Plain text, no Markdown headings.")


def _describe_os() -> str:
    system = platform.system() or "unknown"
    if system == "Linux":
        try:
            info = platform.freedesktop_os_release()
            return f"Linux ({info.get('PRETTY_NAME', 'unknown distribution')})"
        except (OSError, AttributeError):
            return "Linux"
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]}".strip()
    return system


# --------------------------------------------------------------------------------------------
# extraction

_THINK = re.compile(r"<(think|thinking|reasoning)>.*?(?:</\1>|\Z)", re.S | re.I)
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PROSE_START = re.compile(r"^(?:(?-i:[A-Z][a-z]*)[,:]?\s|(?:here|this|that|the|to|you|it|note|use|run)\b)", re.I)
_PROSE_END = re.compile(r"[.:!?]$")


@dataclass
class Extracted:
    command: str  # "" when nothing looked like a command
    others: List[str] = field(default_factory=list)  # further candidates, shown to the user, never run


def extract_command(text: str) -> Extracted:
    """Exactly one command out of the model's answer: fenced blocks first, then `$ ` lines, then the first
    line that does not read as prose. Several candidates: the first, the rest in `others`."""
    # Reasoning models served without a reasoning field write their thoughts inline: never a command.
    text = _THINK.sub("", text or "").strip()
    candidates: List[str] = []
    for match in _FENCE.finditer(text):
        lines = [_strip_prompt(line) for line in match.group(2).splitlines()]
        candidates += _join_continuations([line for line in lines if line.strip() and not line.lstrip().startswith("#")])
    if not candidates:
        dollar = [line.strip()[2:].strip() for line in text.splitlines() if line.strip().startswith("$ ")]
        candidates = [c for c in dollar if c]
    if not candidates:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        inline = [m.group(1).strip() for m in re.finditer(r"`([^`\n]+)`", text)]
        bare = [_strip_prompt(line) for line in lines if not _looks_like_prose(line)]
        candidates = inline or _join_continuations(bare)
    candidates = [c for c in dict.fromkeys(c.strip() for c in candidates) if c]
    if not candidates:
        return Extracted("")
    return Extracted(candidates[0], candidates[1:])


def _strip_prompt(line: str) -> str:
    stripped = line.strip()
    return stripped[2:].strip() if stripped.startswith("$ ") else stripped


def _join_continuations(lines: List[str]) -> List[str]:
    """`foo \\` + `  --bar` is one command."""
    out: List[str] = []
    pending = ""
    for line in lines:
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending.strip())
    return out


_LIST_ITEM = re.compile(r"^(?:[-*•]|\d+[.)])\s")


def _looks_like_prose(line: str) -> bool:
    words = line.split()
    if _LIST_ITEM.match(line):
        return True  # "- /var/log/x: a log file" or "1. First, …": a list item is prose, not a command
    if re.match(r"[A-Z][a-z]*\b", line) and re.search(r"[.!?]$", line):
        return True  # "Sorry." — a capitalised sentence; commands are lower case
    if len(words) >= 4 and _PROSE_END.search(line) and _PROSE_START.search(line):
        return True
    return bool(_PROSE_START.match(line)) and len(words) >= 4 and not any(ch in line for ch in "|&;<>$=/-")


# --------------------------------------------------------------------------------------------
# the syntax check


@dataclass
class SyntaxCheck:
    ok: bool
    error: str = ""  # the shell's own message
    checked: bool = True  # False when the shell is not installed (then ok is True: nothing to hold against it)


def check_syntax(command: str, shell: str, timeout: float = SYNTAX_CHECK_TIMEOUT) -> SyntaxCheck:
    """Parse `command` with the real `shell` without executing it."""
    if not command.strip():
        return SyntaxCheck(False, "empty command")
    exe = shutil.which(shell)
    if exe is None:
        return SyntaxCheck(True, f"{shell} is not installed; the syntax was not checked", checked=False)
    argv, stdin = _CHECKERS[shell](exe, command)
    try:
        proc = subprocess.run(argv, input=stdin if stdin is not None else "", capture_output=True, text=True,
                              timeout=timeout, env=_quiet_env())
    except subprocess.TimeoutExpired:
        return SyntaxCheck(False, f"{shell} did not finish the syntax check in {timeout:g} s")
    except OSError as exc:
        return SyntaxCheck(True, f"could not run {shell}: {exc}", checked=False)
    if proc.returncode == 0:
        return SyntaxCheck(True)
    error = (proc.stderr or proc.stdout).strip() or f"{shell} exited with status {proc.returncode}"
    return SyntaxCheck(False, error)


def _quiet_env():
    env = dict(os.environ)
    env.pop("BASH_ENV", None)  # a parse must not source the user's scripts
    env.pop("ENV", None)
    return env


def repair_message(shell: str, command: str, error: str) -> str:
    return (f"That is not valid {shell}. `{shell}` rejected it with:\n{error}\n"
            f"Answer with one corrected {shell} command only.")


# --------------------------------------------------------------------------------------------
# risk

_RISKS = [
    (re.compile(r"\brm\s+(?:-\w*[rR]\w*f|-\w*f\w*[rR]|-[rR]\s+-f|-f\s+-[rR]|--recursive\b.*--force|--force\b.*--recursive)"),
     "rm -rf deletes recursively without asking"),
    (re.compile(r"(?:^|[;&|]\s*|\bsudo\s+)dd\b"), "dd writes raw blocks and can overwrite a disk"),
    (re.compile(r"\bmkfs(?:\.\w+)?\b"), "mkfs formats a filesystem, erasing it"),
    (re.compile(r"\bchmod\s+(?:-\w*R|--recursive)"), "chmod -R changes permissions on a whole tree"),
    (re.compile(r"\b(?:curl|wget)\b[^|]*\|\s*(?:sudo\s+)?(?:ba|z|fi|da)?sh\b"), "pipes a download straight into a shell"),
    (re.compile(r"(?:^|[;&|(]\s*)sudo\b"), "runs with root privileges (sudo)"),
    # What is shown on a terminal is sanitized (ESC as ^[, bidi overrides as <U+202E>); what would run is
    # not, so say that the two differ.
    (re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]"),
     "contains control or bidi characters (shown escaped; they would run as they are)"),
]
_REDIRECT = re.compile(r"(?<![>&0-9])[0-9]?>(?![>&])\|?\s*([^\s;&|<>]+)")


def risk_notes(command: str, cwd: Optional[str] = None) -> List[str]:
    """One line per destructive pattern found in `command`."""
    notes = [note for pattern, note in _RISKS if pattern.search(command)]
    cwd = cwd or os.getcwd()
    for match in _REDIRECT.finditer(command):
        target = match.group(1).strip("'\"")
        if target.startswith("/dev/") or "$" in target:
            continue
        if os.path.isfile(os.path.join(cwd, os.path.expanduser(target))):
            notes.append(f"> overwrites the existing file {target}")
    return notes


# --------------------------------------------------------------------------------------------
# the conversation


# --------------------------------------------------------------------------------------------
# is the program there?

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PREFIXES = {"sudo", "doas", "env", "command", "exec", "time", "nice", "nohup", "builtin", "xargs"}
_NOT_JUDGED = re.compile(r"[(){}\[\]$`|&;<>*?]")


def program_of(command: str) -> Optional[str]:
    """The program the command starts with (after VAR=value and sudo/env/…), or None when that is not a
    plain word (a keyword, a subshell, an expansion): those are the shell's business, not ours."""
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: the syntax check says so already
        return None
    for word in words:
        if _ASSIGNMENT.match(word) or word in _PREFIXES:
            continue
        if word.startswith("-") and word != "-":
            return None  # an option of sudo/env/nice: which word after it is the program is theirs to say
        return None if _NOT_JUDGED.search(word) else word
    return None


def missing_program(command: str, shell: str, cwd: Optional[str] = None) -> Optional[str]:
    """A note when the command's program is neither on PATH nor a builtin, function or keyword of
    `shell` (asked with `type`, which runs nothing); None when it is there or cannot be judged."""
    word = program_of(command)
    if not word or shell == "pwsh":
        return None
    if "/" in word:
        path = os.path.join(cwd or os.getcwd(), os.path.expanduser(word))
        return None if os.path.exists(path) else f"{word} does not exist"
    if shutil.which(word):
        return None
    exe = shutil.which(shell)
    if exe is None:
        return None
    argv = ([exe, "--no-config", "-c", "type -q -- $argv[1]", word] if shell == "fish"
            else [exe, "-c", 'type "$1" >/dev/null 2>&1', "llmcli", word])
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=SYNTAX_CHECK_TIMEOUT,
                              env=_quiet_env())
    except (OSError, subprocess.SubprocessError):
        return None
    return None if proc.returncode == 0 else f"{word} is not installed here (not on PATH, not a {shell} builtin)"


@dataclass
class Proposal:
    command: str
    shell: str
    syntax: SyntaxCheck
    others: List[str]
    risk: List[str]
    repaired: bool = False
    answer: str = ""  # what the model wrote last
    notes: List[str] = field(default_factory=list)  # e.g. the program is not installed (not a bar to running)


Ask = Callable[[List[dict]], str]  # messages → the assistant's text


class CommandConversation:
    """The messages of one `cmd` session and the rule: ask, extract, check, repair once."""

    def __init__(self, shell: str, request: str, ask: Ask, context: str = "", cwd: Optional[str] = None):
        self.shell = shell
        self.ask = ask
        self.cwd = cwd or os.getcwd()
        user = request if not context else f"{request}\n\nContext (from standard input):\n{context}"
        self.messages: List[dict] = [{"role": "system", "content": system_prompt(shell, self.cwd)},
                                     {"role": "user", "content": user}]

    def _turn(self) -> Proposal:
        answer = self.ask(self.messages)
        self.messages.append({"role": "assistant", "content": answer})
        got = extract_command(answer)
        check = check_syntax(got.command, self.shell) if got.command else SyntaxCheck(False, "no command in the answer")
        return Proposal(got.command, self.shell, check, got.others, risk_notes(got.command, self.cwd), answer=answer,
                        notes=self._notes(got.command))

    def _notes(self, command: str) -> List[str]:
        missing = missing_program(command, self.shell, self.cwd) if command else None
        return [missing] if missing else []

    def propose(self) -> Proposal:
        """A command; when the shell rejects it, one repair request with the shell's error."""
        first = self._turn()
        if first.syntax.ok:
            return first
        if first.command:
            repair = repair_message(self.shell, first.command, first.syntax.error)
        else:
            repair = f"Your answer held no command. Answer with one {self.shell} command only, on one line."
        self.messages.append({"role": "user", "content": repair})
        second = self._turn()
        second.repaired = True
        if not second.command:
            first.repaired = True
            return first
        return second

    def revise(self, change: str) -> Proposal:
        self.messages.append({"role": "user", "content": f"Change the command: {change}\n"
                                                         "Answer with the one new command only."})
        return self.propose()

    def check(self, command: str) -> Proposal:
        """The user's own edit, checked the same way (no model involved). The edit is noted in the
        conversation so that a later revision starts from it."""
        self.messages.append({"role": "user", "content": f"I edited the command to:\n{command}"})
        self.messages.append({"role": "assistant", "content": command})
        return Proposal(command, self.shell, check_syntax(command, self.shell), [], risk_notes(command, self.cwd),
                        notes=self._notes(command))


def shell_argv(shell: str, command: str, environ=os.environ) -> List[str]:
    """How to run `command` in the user's shell (the $SHELL binary when it is that shell)."""
    exe = environ.get("SHELL") if os.path.basename(environ.get("SHELL") or "") == shell else None
    exe = exe or shutil.which(shell) or shell
    if shell == "pwsh":
        return [exe, "-NoProfile", "-Command", command]
    return [exe, "-c", command]
