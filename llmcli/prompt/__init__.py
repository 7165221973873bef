"""Building what is sent: the message list from prompt words, stdin and files, history files
(`--history`/`--save`), and the system-prompt rule. Attachments, templates, history hygiene and the
context window belong here too.

May import: config, events, errors, status.
"""
