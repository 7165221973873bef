"""The interactive chat: a plain `ChatSession` (the conversation and every /command, no terminal code)
and a thin prompt-toolkit loop over it (`session.run_repl`), started by `llmcli chat`.

Owns: prompt-toolkit (key bindings, the history file, completion, the toolbar), the /commands, and
Ctrl-C while an answer streams.

May import: batch, run, output, tools, prompt, wire, store, config, events, errors, status.
Must not import: cli.
"""
