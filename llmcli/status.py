"""The one exit-code enum. Documented in `llmcli --help` and the README."""

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1  # unexpected
    USAGE = 2
    CONFIG = 3  # config or input
    HTTP = 4  # non-2xx, or a 200 whose JSON body is an error object
    STREAM = 5  # in-stream error, malformed or truncated stream, tool-round limit, budget reached
    NETWORK = 6  # connect failure, timeout, reset
    VALIDATION = 7  # --schema: the answer failed validation, also after the repair request
    SOME_FAILED = 8  # llmcli batch: some items failed (each has an error record)
    INTERRUPTED = 130  # Ctrl-C
    TERMINATED = 143  # SIGTERM
