"""llmcli: a command-line client for OpenAI-compatible chat-completions APIs."""

__version__ = "0.1.0"
