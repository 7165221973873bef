"""The reference: the smallest streaming client one would write (requests + sseclient-py + json.loads),
as in sseclient-py's README. It prints the answer's text and, for a tool call, the size of its arguments.

    python bench/refclient.py BASE_URL
"""
import json
import sys

import requests
import sseclient

resp = requests.post(sys.argv[1] + "/chat/completions", stream=True,
                     json={"model": "bench-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
resp.raise_for_status()
tty, args = sys.stdout.isatty(), []
for event in sseclient.SSEClient(resp).events():
    if event.data == "[DONE]":
        break
    for choice in json.loads(event.data).get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            sys.stdout.write(delta["content"])
            if tty:
                sys.stdout.flush()
        for call in delta.get("tool_calls") or []:
            args.append(call.get("function", {}).get("arguments") or "")
if args:
    print(len("".join(args)))
