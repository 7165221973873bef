"""Batches: many prompts through the one-request machinery, concurrently and resumably (issue 21).

Owns: reading batch input (plain lines, llmcli JSON objects, the OpenAI batch file format), the worker
pool over the synchronous transport, the shared limiter (--rpm, --tpm, adaptive back-off after 429),
several endpoints (least in flight, cool-down), resume from an existing output file, and the output
records (the `ask --json` document, or the OpenAI batch output shape). Remote batch APIs belong here too.

May import: run, output, tools, prompt, wire, store, config, events, errors, status.
Must not import: cli, repl.
"""
