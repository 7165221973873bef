"""Building what is sent: the message list from prompt words, stdin and files, history files
(`--history`/`--save`), and the system-prompt rule. Attachments, templates, history hygiene and the
context window belong here too.

Modules: `history` (OpenAI-shaped histories, file blocks), `transcripts` (history formats from other
tools, auto-detected), `attach` (images, PDFs, audio as content parts; `detach_parts`: the same parts
as notes naming them, for the conversation log), `hygiene` (`clean_messages`,
run before every request), `context` (token estimate, window, truncation, /compact's pieces).
Nothing here touches the network: downloads for attachments are passed in as a function.

May import: config, events, errors, status.
"""
