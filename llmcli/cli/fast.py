"""The start-up fast path: `--help`, `--version` and the common shell-completion TABs answered from
text generated from the click definition (`_static.py`, written by scripts/generate_docs.py and
checked for staleness by tests/test_docs.py), without importing click or anything of the app.

Importing click and building the command tree costs more than Python's own start-up, and these are the
invocations people make most often by hand. The answers are byte for byte click's own
(tests/test_fastpath.py compares them); anything this module is not sure of returns False and the
caller runs click as usual. Only `os` and `sys` are used here.
"""

import os
import sys

_HELP_FLAGS = ("--help", "-h")
_MAX_CONTENT_WIDTH = 100  # CONTEXT_SETTINGS["max_content_width"] in app.py (the generator checks)


def _terminal_columns() -> int:
    # shutil.get_terminal_size(), which click uses, without importing shutil.
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns


def help_width() -> int:
    """The width click's HelpFormatter wraps to on this terminal."""
    return max(min(_terminal_columns(), _MAX_CONTENT_WIDTH) - 2, 50)


def _write(text: str) -> None:
    out = sys.stdout
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        pass


def try_help_or_version(argv) -> bool:
    if argv == ["--version"]:
        from .. import __version__

        _write(f"llmcli {__version__}\n")
        return True
    if not argv or argv[-1] not in _HELP_FLAGS:
        return False
    from . import _static

    text = _static.HELP.get((" ".join(argv[:-1]), help_width()))
    if text is None:
        return False
    _write(text)
    return True


def _split_words(value: str):
    # click uses shlex; the fast path takes only plain words (no quotes or escapes) and leaves the rest to it.
    if any(c in value for c in "'\"\\"):
        return None
    return value.split()


def try_completion(environ) -> bool:
    instruction = environ.get("_LLMCLI_COMPLETE", "")
    shell, _, action = instruction.partition("_")
    if action != "complete" or shell not in ("bash", "zsh", "fish"):
        return False
    words = _split_words(environ.get("COMP_WORDS", ""))
    if words is None:
        return False
    if shell == "fish":
        incomplete = environ.get("COMP_CWORD", "")
        if _split_words(incomplete) is None or len(incomplete.split()) > 1:
            return False
        incomplete = incomplete.strip()
        args = words[1:]
        if incomplete and args and args[-1] == incomplete:
            args.pop()
    else:
        try:
            cword = int(environ.get("COMP_CWORD", ""))
        except ValueError:
            return False
        args = words[1:cword]
        incomplete = words[cword] if cword < len(words) else ""
    from . import _static

    path = " ".join(args)
    if "=" in incomplete:
        return False
    if incomplete[:1] == "-":
        items = _static.OPTIONS.get(path)
    else:
        items = _static.COMMANDS.get(path)  # None for a leaf command: its arguments are click's to complete
    if items is None:
        return False
    lines = []
    for value, help_ in items:
        if not value.startswith(incomplete):
            continue
        if shell == "bash":
            lines.append(f"plain,{value}")
        elif shell == "zsh":
            h = help_ or "_"
            v = value.replace(":", r"\:") if h != "_" else value
            lines.append(f"plain\n{v}\n{h}")
        else:
            lines.append(f"plain,{value}\t{help_.replace(chr(10), chr(92) + 'n').replace(chr(9), ' ')}" if help_
                         else f"plain,{value}")
    _write("\n".join(lines) + "\n")
    return True
