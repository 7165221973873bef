"""The domain's exceptions: one base class, a shallow tree.

Only `cli.py` turns these into `llmcli: error: ...` lines and exit codes.
"""

from .status import ExitStatus


class LLMCliError(Exception):
    """Base class for every error llmcli reports to the user."""

    exit_status = ExitStatus.ERROR
    type_name = "error"


class UsageError(LLMCliError):
    """The command line itself is wrong."""

    exit_status = ExitStatus.USAGE
    type_name = "usage"


class ConfigError(LLMCliError):
    """The configuration (file, environment, flags) is invalid or incomplete."""

    exit_status = ExitStatus.CONFIG
    type_name = "config"


class InputError(LLMCliError):
    """An input file, stdin or history could not be read or understood."""

    exit_status = ExitStatus.CONFIG
    type_name = "input"


class StoreError(ConfigError):
    """The conversation log cannot be opened, read or written (locked, read-only, corrupt, from a newer llmcli)."""

    type_name = "log"


class HTTPError(LLMCliError):
    """The server answered with a non-2xx status (or a 200 error body)."""

    exit_status = ExitStatus.HTTP
    type_name = "http"

    def __init__(self, message, status=None, body=None, code=None):
        super().__init__(message)
        self.status = status
        self.body = body
        self.code = code


class StreamError(LLMCliError):
    """The response stream carried an error, was malformed, or was cut short."""

    exit_status = ExitStatus.STREAM
    type_name = "stream"


class ToolRoundLimit(StreamError):
    """The model kept calling tools past --max-tool-rounds."""

    type_name = "tool_rounds"


class BudgetExceeded(LLMCliError):
    """The next request could pass --max-cost, --max-tokens-total or a daily/monthly cap: not sent.

    Exit 5 like the other ways a run stops short; what arrived before is kept (printed, in --json).
    """

    exit_status = ExitStatus.STREAM
    type_name = "budget"

    def __init__(self, message, spent=None):
        super().__init__(message)
        self.spent = spent  # {"cost": Cost.to_dict(), "tokens": n} of the run or session so far


class NetworkError(LLMCliError):
    """Connecting, reading or TLS failed: refused, reset, timed out, DNS."""

    exit_status = ExitStatus.NETWORK
    type_name = "network"


class TimeoutExpired(NetworkError):
    """A connect, read, idle or whole-run timeout expired."""

    type_name = "timeout"


class ValidationFailed(LLMCliError):
    """--schema: the answer was not valid against the schema, also after the repair request."""

    exit_status = ExitStatus.VALIDATION
    type_name = "validation"

    def __init__(self, message, errors=()):
        super().__init__(message)
        self.errors = list(errors)


class BatchItemsFailed(LLMCliError):
    """llmcli batch finished, but some items ended in an error record."""

    exit_status = ExitStatus.SOME_FAILED
    type_name = "batch"


class ToolError(LLMCliError):
    """A built-in tool failed; the message goes back to the model as the result.

    Run directly (`llmcli fetch`, `llmcli search`), it exits like the rest of llmcli: 3 for bad input or
    missing configuration, 4 when the remote answered with an HTTP error, 6 for network failures.
    """

    exit_status = ExitStatus.CONFIG
    type_name = "tool"

    def __init__(self, message, exit_status=None):
        super().__init__(message)
        if exit_status is not None:
            self.exit_status = exit_status


class Interrupted(LLMCliError):
    """The user pressed Ctrl-C (or sent SIGTERM)."""

    exit_status = ExitStatus.INTERRUPTED
    type_name = "interrupted"

    def __init__(self, message="interrupted", exit_status=ExitStatus.INTERRUPTED):
        super().__init__(message)
        self.exit_status = exit_status


def network_error(message: str) -> ToolError:
    """A ToolError caused by the network (exit 6 when the tool runs directly)."""
    return ToolError(message, exit_status=ExitStatus.NETWORK)
