"""The wire: bytes in, typed `events` out, for one exchange with a model.

Owns: SSE framing (`sse`), the pure chunk decoder and tool-call accumulator (`stream`, no I/O), the
HTTP transport with retries, timeouts and the idle watchdog (`client`), the embedded llama.cpp model
behind the same transport contract (`local`, with its raw completion), debug records and their
replay (`record`), and the legacy `/completions` endpoint's decoder (`completions`, served by the same
HTTP transport on another path).

May import: prompt, config, events, errors, status.
Must not import: run, output, tools, cli, repl (the transport knows nothing of the loop or the screen).
"""
