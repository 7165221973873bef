"""Running a conversation: the turn loop (`loop.ChatRun`: request → stream → tools → repeat, a plain
object whose `events()` yields `llmcli.events` values) and the wiring that ask and chat share
(`runner`: transport choice, tool confirmation, driving a renderer), what a run cost (`cost`: reported,
estimated by genai-prices, or unknown), the budgets that stop it (`budget`), structured output
(`structured`), and one legacy text completion (`complete.CompletionRun`, for `llmcli complete`).

May import: tools, prompt, wire, store, config, events, errors, status.
Must not import: output, cli, repl (it yields events; what shows them is not its concern).
"""
