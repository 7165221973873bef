"""Running a conversation: the turn loop (`loop.ChatRun`: request → stream → tools → repeat, a plain
object whose `events()` yields `llmcli.events` values) and the wiring that ask and chat share
(`runner`: transport choice, tool confirmation, driving a renderer), and one legacy text completion
(`complete.CompletionRun`, for `llmcli complete`). Budgets and structured output
belong here too.

May import: tools, prompt, wire, store, config, events, errors, status.
Must not import: output, cli, repl (it yields events; what shows them is not its concern).
"""
