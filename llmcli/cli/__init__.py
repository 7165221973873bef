"""The command line: click commands, option parsing, renderer choice, and the one place where exceptions
become `llmcli: error: …` on stderr and an exit code (`app.run_cli`).

Owns: every click definition (`app.py`), shell completion, and the mapping of `LLMCliError` subclasses,
usage errors, Ctrl-C/SIGTERM and closed pipes to `status.ExitStatus`. Nothing below this package
calls `sys.exit`, imports click, or writes to `sys.stdout` on its own.

May import: repl, batch, run, output, tools, prompt, wire, store, config, events, errors, status.
Must not be imported by any other package (only by `llmcli.__main__`).
"""
