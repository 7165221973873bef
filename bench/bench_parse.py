"""Parsing throughput of the pure core (llmcli.wire.sse + llmcli.wire.stream). Prints numbers, asserts nothing.

Each case runs at full and at half size; a full/half time ratio near 2.0 shows linear behaviour (a
quadratic parser would show ~4.0). Inputs are built before the clock starts. Times are CPU seconds
of this process (time.process_time), so other load on the machine disturbs the ratios less.

    /work/venv/bin/python bench/bench_parse.py
"""

import gc
import json
import sys
import time

from llmcli.wire.sse import SSEDecoder
from llmcli.wire.stream import StreamDecoder

MB = 1_000_000
PATTERN = 'héllo "wörld" \\ 日本 😀 {x: [1, 2]}\n'  # escapes and multi-byte characters


def argument_string(size):
    """A valid JSON object string of `size` characters (escapes and multi-byte characters included)."""
    encoded_pattern = json.dumps(PATTERN, ensure_ascii=False)[1:-1]
    repeats, rest = divmod(size - len('{"text": ""}'), len(encoded_pattern))
    raw = '{"text": "%s%s"}' % (encoded_pattern * repeats, "x" * rest)
    assert len(raw) == size and json.loads(raw)
    return raw


def tool_call_events(size):
    """(a1) One SSE event per 1-character fragment of a ~`size`-character argument string."""
    raw = argument_string(size)
    head = {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "write_file", "arguments": ""}}]}}]}
    template = ('data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":'
                '{"arguments":%s}}]}}]}\n\n')
    cache = {}
    chunks = [b"data: " + json.dumps(head).encode() + b"\n\n"]
    for ch in raw:
        event = cache.get(ch)
        if event is None:
            event = cache[ch] = (template % json.dumps(ch, ensure_ascii=False)).encode()
        chunks.append(event)  # shared bytes objects: ~1M chunks cost only the list
    chunks.append(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n')
    chunks.append(b"data: [DONE]\n\n")
    return chunks, raw


def one_huge_event(size):
    """(a2) The same arguments as one event, arriving as 1-byte network chunks."""
    raw = argument_string(size)
    event = {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "write_file", "arguments": raw}}]}, "finish_reason": "tool_calls"}]}
    stream = (b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"
              + b"data: [DONE]\n\n")
    return [stream[i:i + 1] for i in range(len(stream))], raw


def answer_chunks(count):
    """(b) A `count`-chunk text answer, OpenAI-shaped, one event per network chunk."""
    words = ["Hello", " wörld", ",", " 日本", " 😀", " the", " quick", " brown", " fox", "\n"]
    template = ('data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,'
                '"model":"gpt-4o-mini","system_fingerprint":"fp_0aa8d3e20b","choices":[{"index":0,'
                '"delta":{"content":%s},"logprobs":null,"finish_reason":null}],"usage":null}\n\n')
    events = [(template % json.dumps(w, ensure_ascii=False)).encode() for w in words]
    chunks = [events[i % len(events)] for i in range(count)]
    chunks.append(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
                  b'"usage":{"prompt_tokens":9,"completion_tokens":%d,"total_tokens":%d}}\n\n'
                  % (count, count + 9))
    chunks.append(b"data: [DONE]\n\n")
    expected = "".join(words[i % len(words)] for i in range(count))
    return chunks, expected


def parse(chunks):
    sse = SSEDecoder()
    turn = StreamDecoder()
    for chunk in chunks:
        for event in sse.feed(chunk):
            turn.feed_event(event)
    sse.close()
    return sse, turn.finish()


def timed(build, size):
    chunks, expected = build(size)
    gc.collect()
    gc.freeze()  # the prebuilt input is not the parser's garbage: keep the collector off it
    try:
        start = time.process_time()
        sse, result = parse(chunks)
        elapsed = time.process_time() - start
    finally:
        gc.unfreeze()
    got = result.tool_calls[0].arguments_raw if result.tool_calls else result.content
    if got != expected:  # a benchmark of a wrong answer is worthless
        sys.exit("bench: wrong result for %s(%d)" % (build.__name__, size))
    return elapsed, len(chunks), sse.bytes_seen, sse.events_seen


def report(label, build, size):
    half_time, *_ = timed(build, size // 2)
    full_time, chunks, nbytes, events = timed(build, size)
    print("%s\n  full: %9d chunks %11d bytes %9d events  %7.2f s  %6.2f us/chunk  %6.1f MB/s"
          % (label, chunks, nbytes, events, full_time, full_time / chunks * 1e6,
             nbytes / full_time / MB))
    print("  half: %7.2f s   full/half ratio %.2f (linear ~ 2.0)" % (half_time, full_time / half_time))
    sys.stdout.flush()


def sseclient_alone(size):
    """For contrast: sseclient-py's own framing on one `size`-byte event in 1-byte chunks."""
    import sseclient

    stream = b"data: " + b"x" * size + b"\n\n"
    chunks = [stream[i:i + 1] for i in range(len(stream))]
    start = time.process_time()
    events = list(sseclient.SSEClient(iter(chunks)).events())
    elapsed = time.process_time() - start
    assert len(events[0].data) == size
    return elapsed


def main():
    total = time.process_time()
    print("llmcli parse benchmark (Python %s)\n" % sys.version.split()[0])
    report("(a1) 1 MB (10^6 chars) of tool-call arguments, one SSE event per 1-char fragment",
           tool_call_events, MB)
    report("(a2) the same 10^6 chars in one event, arriving as 1-byte network chunks",
           one_huge_event, MB)
    report("(b)  200,000-chunk text answer, SSEDecoder + StreamDecoder", answer_chunks, 200_000)
    half, full = sseclient_alone(128_000), sseclient_alone(256_000)
    print("(c)  for contrast, sseclient-py's own framing: one event, 1-byte chunks (`bytes +=`)\n"
          "  256 kB: %.2f s   128 kB: %.2f s   ratio %.2f (quadratic ~ 4.0)" % (full, half, full / half))
    print("\ntotal %.1f CPU s" % (time.process_time() - total))


if __name__ == "__main__":
    main()
