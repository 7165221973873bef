"""Writing a run for people and scripts: the text, JSON and JSONL renderers (`render`) over file objects
they are given, `llmcli complete`'s JSON and JSONL renderers (`completion`), and line-by-line Markdown
for terminals (`markdown`). The terminal sanitizer for
everything from outside belongs here too.

A renderer consumes `llmcli.events` values and the finished run; it never imports the loop or the
transport.

May import: config, events, errors, status.
"""
