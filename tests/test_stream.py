"""Chunk semantics and tool-call accumulation (PROTOCOL.md §2, §3), without sockets.

Recorded-style streams go through the real SSE decoder and are fed three ways with the same
expected result: as written, joined into one chunk, and one byte per chunk (the `way` fixture).
"""

import json

import pytest

from localserver import rechunk
from llmcli.errors import HTTPError, StreamError
from llmcli.status import ExitStatus
from llmcli.wire.sse import SSEEvent, iter_sse_events
from llmcli.wire.stream import (
    FinishReason,
    ReasoningDelta,
    RefusalDelta,
    StreamDecoder,
    TextDelta,
    ToolCall,
    ToolCallAccumulator,
    TurnResult,
    UsageUpdate,
    decode_non_streamed,
)

def run(chunks, way="as_written"):
    """Bytes → SSEDecoder → StreamDecoder. Returns (typed events, decoder)."""
    decoder = StreamDecoder()
    events = []
    for sse_event in iter_sse_events(rechunk(chunks, way)):
        events += decoder.feed_event(sse_event)
    return events, decoder


def data(obj):
    """One SSE event carrying `obj` as JSON (raw UTF-8, like most servers send it)."""
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


def chunk(delta=None, finish=None, **extra):
    body = {"object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta if delta is not None else {}, "finish_reason": finish}]}
    body.update(extra)
    return body


def feed(decoder, *chunks):
    events = []
    for c in chunks:
        events += decoder.feed_chunk(c)
    return events


def call(id, name, arguments_raw, arguments, parse_error=None):
    return ToolCall(id=id, name=name, arguments_raw=arguments_raw, arguments=arguments,
                    parse_error=parse_error)


def accumulate(*delta_lists):
    acc = ToolCallAccumulator()
    for deltas in delta_lists:
        acc.add_tool_call_deltas(deltas)
    return acc.finish()


def tc(index=None, id=None, name=None, arguments=None, type="function", **function_extra):
    """One `tool_calls` delta entry; only the keys given are present."""
    entry = {}
    if index is not None:
        entry["index"] = index
    if id is not None:
        entry["id"] = id
    if type is not None and (id is not None or name is not None):
        entry["type"] = type
    function = dict(function_extra)
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        entry["function"] = function
    return entry


DONE = b"data: [DONE]\n\n"


# === Recorded-style streams (each fed three ways) =================================================

OPENAI_WITH_USAGE = [
    b'data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0aa8d3e20b","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],'
    b'"usage":null}\n\n',
    b'data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0aa8d3e20b","choices":[{"index":0,'
    b'"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}\n\ndata: {"id"',
    b':"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0aa8d3e20b","choices":[{"index":0,'
    b'"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
    b'data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0aa8d3e20b","choices":[{"index":0,'
    b'"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n',
    b'data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0aa8d3e20b","choices":[],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,'
    b'"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}'
    b'\n\n',
    b"data: [DONE]\n\n",
]
OPENAI_USAGE = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0}}


def test_openai_stream_with_usage_chunk(way):
    events, decoder = run(OPENAI_WITH_USAGE, way)
    assert events == [TextDelta("Hello"), TextDelta(" world"), FinishReason("stop"),
                      UsageUpdate(OPENAI_USAGE)]
    assert decoder.done is True
    assert decoder.finish() == TurnResult(
        content="Hello world", reasoning="", refusal="", finish_reason="stop", tool_calls=[],
        usage=OPENAI_USAGE, model="gpt-4o-mini-2024-07-18")


OPENROUTER = [
    b": OPENROUTER PROCESSING\n\n",
    b": OPENROUTER PROCESSING\n\n",
    b'data: {"id":"gen-17","provider":"DeepInfra","model":"deepseek/deepseek-r1","object":'
    b'"chat.completion.chunk","created":1740000000,"choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"","reasoning":"Two plus","reasoning_details":[{"type":"reasoning.text","text":'
    b'"Two plus","format":"unknown","index":0}]},"finish_reason":null,"native_finish_reason":null,'
    b'"logprobs":null}]}\n\n: OPENROUTER PROC',
    b'ESSING\n\ndata: {"id":"gen-17","provider":"DeepInfra","model":"deepseek/deepseek-r1","object":'
    b'"chat.completion.chunk","created":1740000000,"choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"","reasoning":" two.","reasoning_details":[{"type":"reasoning.text","text":" two.",'
    b'"format":"unknown","index":0}]},"finish_reason":null,"native_finish_reason":null,'
    b'"logprobs":null}]}\n\n',
    b'data: {"id":"gen-17","provider":"DeepInfra","model":"deepseek/deepseek-r1","object":'
    b'"chat.completion.chunk","created":1740000000,"choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"4"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}\n\n',
    b'data: {"id":"gen-17","provider":"DeepInfra","model":"deepseek/deepseek-r1","object":'
    b'"chat.completion.chunk","created":1740000000,"choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":""},"finish_reason":"stop","native_finish_reason":"stop","logprobs":null}]}\n\n',
    b'data: {"id":"gen-17","provider":"DeepInfra","model":"deepseek/deepseek-r1","object":'
    b'"chat.completion.chunk","created":1740000000,"choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":""},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"usage":'
    b'{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"cost":0.0000275,"is_byok":false,'
    b'"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":'
    b'{"reasoning_tokens":3}}}\n\n',
    b"data: [DONE]\n\n",
]
OPENROUTER_USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                    "cost": 0.0000275, "is_byok": False, "prompt_tokens_details": {"cached_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 3}}


def test_openrouter_stream_with_comments_duplicate_reasoning_and_cost(way):
    events, decoder = run(OPENROUTER, way)
    # `reasoning` and `reasoning_details` carry the same text: counted once.
    assert events == [ReasoningDelta("Two plus"), ReasoningDelta(" two."), TextDelta("4"),
                      FinishReason("stop"), UsageUpdate(OPENROUTER_USAGE)]
    result = decoder.finish()
    assert result == TurnResult(content="4", reasoning="Two plus two.", refusal="",
                                finish_reason="stop", tool_calls=[], usage=OPENROUTER_USAGE,
                                model="deepseek/deepseek-r1",
                                # the item's fragments joined, every other field as sent (issue 18)
                                reasoning_details=[{"type": "reasoning.text", "text": "Two plus two.",
                                                    "format": "unknown", "index": 0}])
    assert result.usage["cost"] == 0.0000275


DEEPSEEK = [
    b'data: {"id":"8f0c","object":"chat.completion.chunk","created":1737000000,"model":'
    b'"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08_prod0225","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":null,"reasoning_content":""},"logprobs":null,'
    b'"finish_reason":null}]}\n\n',
    b'data: {"id":"8f0c","object":"chat.completion.chunk","created":1737000000,"model":'
    b'"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08_prod0225","choices":[{"index":0,'
    b'"delta":{"content":null,"reasoning_content":"Greeting"},"logprobs":null,"finish_reason":null}]}'
    b"\n\n: keep-alive\n\n",
    b'data: {"id":"8f0c","object":"chat.completion.chunk","created":1737000000,"model":'
    b'"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08_prod0225","choices":[{"index":0,'
    b'"delta":{"content":null,"reasoning_content":"; reply."},"logprobs":null,"finish_reason":null}]}'
    b"\n\n",
    b'data: {"id":"8f0c","object":"chat.completion.chunk","created":1737000000,"model":'
    b'"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08_prod0225","choices":[{"index":0,'
    b'"delta":{"content":"Hi!","reasoning_content":null},"logprobs":null,"finish_reason":null}]}\n\n',
    b'data: {"id":"8f0c","object":"chat.completion.chunk","created":1737000000,"model":'
    b'"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08_prod0225","choices":[{"index":0,'
    b'"delta":{"content":"","reasoning_content":null},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":6,"completion_tokens":9,"total_tokens":15,"prompt_tokens_details":'
    b'{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":7},'
    b'"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":6}}\n\n',
    b"data: [DONE]\n\n",
]


def test_deepseek_reasoning_content(way):
    events, decoder = run(DEEPSEEK, way)
    assert events[:3] == [ReasoningDelta("Greeting"), ReasoningDelta("; reply."), TextDelta("Hi!")]
    assert events[3] == FinishReason("stop")
    result = decoder.finish()
    assert (result.content, result.reasoning) == ("Hi!", "Greeting; reply.")
    assert result.usage["completion_tokens_details"] == {"reasoning_tokens": 7}
    assert result.usage["prompt_cache_miss_tokens"] == 6
    assert result.model == "deepseek-reasoner"


GROQ = [
    b'data: {"id":"chatcmpl-5c","object":"chat.completion.chunk","created":1730000000,"model":'
    b'"llama-3.1-8b-instant","system_fingerprint":"fp_9cb648b966","choices":[{"index":0,"delta":'
    b'{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],'
    b'"x_groq":{"id":"req_01jb"}}\n\n',
    b'data: {"id":"chatcmpl-5c","object":"chat.completion.chunk","created":1730000000,"model":'
    b'"llama-3.1-8b-instant","system_fingerprint":"fp_9cb648b966","choices":[{"index":0,"delta":'
    b'{"content":"Hi"},"logprobs":null,"finish_reason":null}]}\n\n',
    b'data: {"id":"chatcmpl-5c","object":"chat.completion.chunk","created":1730000000,"model":'
    b'"llama-3.1-8b-instant","system_fingerprint":"fp_9cb648b966","choices":[{"index":0,"delta":{},'
    b'"logprobs":null,"finish_reason":"stop"}],"x_groq":{"id":"req_01jb","usage":{"queue_time":'
    b'0.017,"prompt_tokens":12,"prompt_time":0.0009,"completion_tokens":1,"completion_time":0.0008,'
    b'"total_tokens":13,"total_time":0.0017}}}\n\n',
    b"data: [DONE]\n\n",
]


def test_groq_usage_under_x_groq(way):
    events, decoder = run(GROQ, way)
    usage = {"queue_time": 0.017, "prompt_tokens": 12, "prompt_time": 0.0009, "completion_tokens": 1,
             "completion_time": 0.0008, "total_tokens": 13, "total_time": 0.0017}
    assert events == [TextDelta("Hi"), FinishReason("stop"), UsageUpdate(usage)]
    assert decoder.finish().usage == usage


LLAMA_CPP = [
    # llama.cpp's server: id, type and name on every chunk, and the legacy `function_call`
    # alongside the same `tool_calls`.
    b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null,'
    b'"tool_calls":[{"index":0,"id":"call_k1AbC","type":"function","function":{"name":"get_weather",'
    b'"arguments":"{\\"ci"}}],"function_call":{"name":"get_weather","arguments":"{\\"ci"}}}],'
    b'"created":1735000000,"id":"chatcmpl-Qx","model":"qwen2.5-7b-instruct","system_fingerprint":'
    b'"b4400","object":"chat.completion.chunk"}\n\n',
    b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"tool_calls":[{"index":0,'
    b'"id":"call_k1AbC","type":"function","function":{"name":"get_weather","arguments":'
    b'"ty\\": \\"Par"}}],"function_call":{"name":"get_weather","arguments":"ty\\": \\"Par"}}}],'
    b'"created":1735000000,"id":"chatcmpl-Qx","model":"qwen2.5-7b-instruct","system_fingerprint":'
    b'"b4400","object":"chat.completion.chunk"}\n\n',
    b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"tool_calls":[{"index":0,'
    b'"id":"call_k1AbC","type":"function","function":{"name":"get_weather","arguments":"is\\"}"}}],'
    b'"function_call":{"name":"get_weather","arguments":"is\\"}"}}}],"created":1735000000,'
    b'"id":"chatcmpl-Qx","model":"qwen2.5-7b-instruct","system_fingerprint":"b4400","object":'
    b'"chat.completion.chunk"}\n\n',
    b'data: {"choices":[{"finish_reason":"tool_calls","index":0,"delta":{}}],"created":1735000000,'
    b'"id":"chatcmpl-Qx","model":"qwen2.5-7b-instruct","system_fingerprint":"b4400","object":'
    b'"chat.completion.chunk","usage":{"completion_tokens":12,"prompt_tokens":40,"total_tokens":52},'
    b'"timings":{"prompt_n":40,"predicted_n":12}}\n\n',
    b"data: [DONE]\n\n",
]


def test_llama_cpp_repeated_id_and_name_plus_legacy_function_call(way):
    events, decoder = run(LLAMA_CPP, way)
    assert events == [FinishReason("tool_calls"), UsageUpdate(
        {"completion_tokens": 12, "prompt_tokens": 40, "total_tokens": 52})]
    result = decoder.finish()
    assert result.tool_calls == [
        call("call_k1AbC", "get_weather", '{"city": "Paris"}', {"city": "Paris"})]
    assert result.assistant_message() == {
        "role": "assistant", "content": "", "tool_calls": [
            {"id": "call_k1AbC", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}


OLLAMA = [
    b'data: {"id":"chatcmpl-412","object":"chat.completion.chunk","created":1740000000,"model":'
    b'"qwen3:8b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"","reasoning":"User wants weather and time."},"finish_reason":null}]}\n\n',
    b'data: {"id":"chatcmpl-412","object":"chat.completion.chunk","created":1740000000,"model":'
    b'"qwen3:8b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"","tool_calls":[{"id":"call_a1b2c3","index":0,"type":"function","function":'
    b'{"name":"get_weather","arguments":"{\\"city\\":\\"Paris\\"}"}},{"id":"call_d4e5f6","index":1,'
    b'"type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":null}]}'
    b"\n\n",
    # Older Ollama says "stop" although calls were made (PROTOCOL.md §3).
    b'data: {"id":"chatcmpl-412","object":"chat.completion.chunk","created":1740000000,"model":'
    b'"qwen3:8b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":""},"finish_reason":"stop"}]}\n\n',
    b'data: {"id":"chatcmpl-412","object":"chat.completion.chunk","created":1740000000,"model":'
    b'"qwen3:8b","system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":180,'
    b'"completion_tokens":41,"total_tokens":221}}\n\n',
    b"data: [DONE]\n\n",
]


def test_ollama_whole_calls_with_finish_reason_stop(way):
    events, decoder = run(OLLAMA, way)
    assert events == [ReasoningDelta("User wants weather and time."), FinishReason("stop"),
                      UsageUpdate({"prompt_tokens": 180, "completion_tokens": 41,
                                   "total_tokens": 221})]
    assert decoder.tool_calls.has_calls is True
    result = decoder.finish()
    assert result.finish_reason == "stop"
    assert result.tool_calls == [
        call("call_a1b2c3", "get_weather", '{"city":"Paris"}', {"city": "Paris"}),
        call("call_d4e5f6", "get_time", "{}", {}),
    ]
    assert result.reasoning == "User wants weather and time."
    assert result.content == ""


MULTIBYTE = [
    # Raw UTF-8 split inside characters, in the text and inside tool arguments; an escaped
    # "\u00e9" split inside its escape.
    b'data: {"choices":[{"index":0,"delta":{"content":"caf\xc3',
    b'\xa9 \xe6\x97',
    b'\xa5\xe6\x9c\xac \xf0\x9f\x98',
    b'\x80"}}]}\n\ndata: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1",'
    b'"function":{"name":"note","arguments":"{\\"t\\": \\"\xe6\x97\xa5"}}]}}]}\n',
    b'\ndata: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":'
    b'"\xe6\x9c\xac \\\\u00"}}]}}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":'
    b'"e9 \\\\\\"x\\\\\\" \xf0\x9f\x98\x80\\"}"}}]}}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n',
    b"data: [DONE]\n\n",
]


def test_multibyte_characters_split_across_chunks(way):
    events, decoder = run(MULTIBYTE, way)
    assert events == [TextDelta("café 日本 😀"), FinishReason("tool_calls")]
    result = decoder.finish()
    raw = '{"t": "日本 \\u00e9 \\"x\\" 😀"}'
    assert result.tool_calls == [call("c1", "note", raw, {"t": '日本 é "x" 😀'})]
    assert result.content == "café 日本 😀"


HTML_AS_DATA = [
    data(chunk({"content": "Hel"})),
    b"data: <html>\r\ndata: <head><title>502 Bad Gateway</title></head>\r\ndata: <body>\r\n"
    b"data: <center><h1>502 Bad Gateway</h1></center>\r\ndata: <hr><center>nginx</center>\r\n"
    b"data: </body>\r\ndata: </html>\r\n\r\n",
    data(chunk({"content": "lo"})),
    DONE,
]


def test_html_error_page_as_data_is_a_stream_error_with_snippet(way):
    decoder = StreamDecoder()
    seen = []
    with pytest.raises(StreamError) as excinfo:
        for sse_event in iter_sse_events(rechunk(HTML_AS_DATA, way)):
            seen += decoder.feed_event(sse_event)
    message = str(excinfo.value)
    assert message == ('the stream carried data that is not JSON: "<html> <head><title>502 Bad '
                       'Gateway</title></head> <body> <center><h1>502 Bad G…"')
    snippet = message.split(": ", 1)[1]
    assert len(snippet) == 82  # 80 characters inside the quotes
    assert excinfo.value.exit_status == ExitStatus.STREAM
    # The user keeps what arrived.
    assert seen == [TextDelta("Hel")]
    assert excinfo.value.partial.content == "Hel"
    assert decoder.partial_result().content == "Hel"


HTML_SPLICED_RAW = [
    data(chunk({"content": "Hel"})),
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
]


def test_raw_html_spliced_into_stream_is_ignored_then_truncated(way):
    # Without `data:` the page's lines are unknown SSE fields; the stream then ends with neither
    # [DONE] nor a finish reason, which is a truncated answer.
    events, decoder = run(HTML_SPLICED_RAW, way)
    assert events == [TextDelta("Hel")]
    with pytest.raises(StreamError) as excinfo:
        decoder.finish()
    assert "truncated" in str(excinfo.value)
    assert excinfo.value.partial.content == "Hel"


MIXED_LINE_ENDS = [
    b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\r\n',
    b'data: {"choices":[{"index":0,"delta":{"content":"b"}}]}\r\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":"c"}}]}\r',
    b'\rdata: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\n\r\ndata: [DONE]\n\n',
]
BOM_FIRST = [
    b'\xef\xbb\xbfdata: {"choices":[{"index":0,"delta":{"content":"first"}}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":" second"},"finish_reason":"stop"}]}\n\n',
    DONE,
]
CR_ONLY = [
    b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\r\r: ping\r\r',
    b'data: {"choices":[{"index":0,"delta":{"content":"y"},"finish_reason":"stop"}]}\r\rdata: [DONE]\r',
    b"\r",
]


@pytest.mark.parametrize("chunks, content", [
    (MIXED_LINE_ENDS, "abc"),
    (BOM_FIRST, "first second"),
    (CR_ONLY, "xy"),
], ids=["mixed_crlf_lf_cr", "bom_first_event", "cr_only"])
def test_framing_quirks_end_to_end(chunks, content, way):
    events, decoder = run(chunks, way)
    assert [e.text for e in events if isinstance(e, TextDelta)] == list(
        {"abc": ["a", "b", "c"], "first second": ["first", " second"], "xy": ["x", "y"]}[content])
    result = decoder.finish()
    assert (result.content, result.finish_reason, decoder.done) == (content, "stop", True)


# === §2: [DONE], choices, deltas =================================================================


def test_done_ends_the_stream_and_later_data_is_ignored(way):
    chunks = [data(chunk({"content": "ok"}, "stop")), DONE, b"data: <html>not json</html>\n\n",
              data({"error": {"message": "late"}}), data(chunk({"content": "more"}))]
    events, decoder = run(chunks, way)
    assert events == [TextDelta("ok"), FinishReason("stop")]
    assert decoder.done is True
    assert decoder.feed_chunk(chunk({"content": "x"})) == []
    assert decoder.finish().content == "ok"


def test_done_with_surrounding_space():
    decoder = StreamDecoder()
    decoder.feed_event(SSEEvent(data=json.dumps(chunk({"content": "a"}))))
    assert decoder.feed_event(SSEEvent(data=" [DONE] ")) == []
    assert decoder.done is True


@pytest.mark.parametrize("choices, expected", [
    ([{"index": 0, "delta": {"content": "A"}}], "A"),
    ([{"delta": {"content": "A"}}], "A"),  # missing index = 0
    ([{"index": 1, "delta": {"content": "B"}}, {"index": 0, "delta": {"content": "A"}}], "A"),
    ([{"index": 1, "delta": {"content": "B"}}], ""),
    ([], ""),
    (None, ""),
])
def test_choice_with_index_zero_is_used(choices, expected):
    decoder = StreamDecoder()
    events = decoder.feed_chunk({"choices": choices})
    assert decoder.content == expected
    assert events == ([TextDelta(expected)] if expected else [])


def test_n_greater_than_one_interleaved_only_first_choice_counts(way):
    chunks = [data({"choices": [{"index": 0, "delta": {"content": "A1"}}]}),
              data({"choices": [{"index": 1, "delta": {"content": "B1"}}]}),
              data({"choices": [{"index": 0, "delta": {"content": "A2"}, "finish_reason": "stop"}]}),
              data({"choices": [{"index": 1, "delta": {}, "finish_reason": "length"}]}),
              DONE]
    _, decoder = run(chunks, way)
    result = decoder.finish()
    assert (result.content, result.finish_reason) == ("A1A2", "stop")


def test_null_content_and_empty_content_produce_no_events():
    decoder = StreamDecoder()
    events = feed(decoder, chunk({"role": "assistant", "content": None}), chunk({"content": ""}),
                  chunk(None), {"choices": [{"index": 0, "delta": None}]})
    assert events == []
    assert decoder.content == ""


def test_refusal_is_separate_from_content():
    decoder = StreamDecoder()
    events = feed(decoder, chunk({"content": None, "refusal": "I can't"}),
                  chunk({"refusal": " help with that."}), chunk({}, "stop"))
    assert events == [RefusalDelta("I can't"), RefusalDelta(" help with that."), FinishReason("stop")]
    decoder.done = True
    result = decoder.finish()
    assert (result.content, result.refusal) == ("", "I can't help with that.")
    assert result.assistant_message() == {"role": "assistant", "content": ""}


@pytest.mark.parametrize("delta, expected", [
    ({"reasoning_content": "a"}, ["a"]),
    ({"reasoning": "a"}, ["a"]),
    ({"reasoning": [{"type": "text", "text": "a"}, {"text": "b"}]}, ["ab"]),
    ({"reasoning_details": [{"type": "reasoning.text", "text": "a"}]}, ["a"]),
    ({"reasoning_details": [{"type": "reasoning.summary", "summary": "s"}]}, ["s"]),
    ({"reasoning_details": [{"type": "reasoning.encrypted", "data": "gAAA"}]}, []),
    ({"reasoning": "a", "reasoning_details": [{"type": "reasoning.text", "text": "a"}]}, ["a"]),
    ({"reasoning_content": "a", "reasoning": "a"}, ["a"]),
    ({"reasoning_content": "a", "reasoning": "b"}, ["a", "b"]),
    ({"reasoning_content": None, "reasoning": None, "reasoning_details": []}, []),
    ({"reasoning_content": "", "reasoning": "x"}, ["x"]),
], ids=["reasoning_content", "reasoning_str", "reasoning_list", "details_text", "details_summary",
        "details_encrypted", "reasoning_and_details_same", "content_and_reasoning_same",
        "different_texts_both", "all_null", "empty_and_text"])
def test_reasoning_fields(delta, expected):
    decoder = StreamDecoder()
    events = decoder.feed_chunk(chunk(delta))
    assert events == [ReasoningDelta(t) for t in expected]
    assert decoder.reasoning == "".join(expected)
    assert decoder.content == ""


def test_events_of_one_chunk_are_ordered():
    decoder = StreamDecoder()
    events = decoder.feed_chunk(chunk({"reasoning_content": "r", "content": "c", "refusal": "n"},
                                      "stop", usage={"total_tokens": 3}))
    assert events == [ReasoningDelta("r"), TextDelta("c"), RefusalDelta("n"), FinishReason("stop"),
                      UsageUpdate({"total_tokens": 3})]


def test_message_form_of_a_non_streamed_answer_fed_as_one_chunk():
    decoder = StreamDecoder()
    events = decoder.feed_chunk({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "m1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi",
                                              "reasoning_content": "think"},
                     "finish_reason": "stop"}],
        "usage": {"total_tokens": 5}})
    assert events == [ReasoningDelta("think"), TextDelta("Hi"), FinishReason("stop"),
                      UsageUpdate({"total_tokens": 5})]


def test_content_as_list_of_parts():
    decoder = StreamDecoder()
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}},
             {"type": "text", "text": "b"}]
    decoder.feed_chunk(chunk({"content": parts}))
    assert decoder.content == "ab"


def test_model_is_recorded_last_non_empty_wins():
    decoder = StreamDecoder()
    feed(decoder, chunk({"content": "a"}, model="m-1"), chunk({"content": "b"}, model=""),
         chunk({}, model="m-2"), chunk({}))
    assert decoder.model == "m-2"


def test_content_is_joined_lazily_and_correctly():
    decoder = StreamDecoder()
    for i in range(1000):
        decoder.feed_chunk(chunk({"content": str(i % 10)}))
        if i == 500:
            assert decoder.content == "".join(str(j % 10) for j in range(501))
    assert decoder.content == "".join(str(j % 10) for j in range(1000))
    assert decoder.content == "".join(str(j % 10) for j in range(1000))


# --- usage ---

@pytest.mark.parametrize("chunks, expected", [
    # on every chunk (cumulative): the last one wins
    ([chunk({"content": "a"}, usage={"total_tokens": 1}),
      chunk({"content": "b"}, usage={"total_tokens": 2}),
      chunk({}, "stop", usage={"total_tokens": 3})], {"total_tokens": 3}),
    # on the last chunk, with empty choices
    ([chunk({"content": "a"}, usage=None), chunk({}, "stop", usage=None),
      {"choices": [], "usage": {"total_tokens": 7}}], {"total_tokens": 7}),
    # on the finish chunk, then null again
    ([chunk({"content": "a"}), chunk({}, "stop", usage={"total_tokens": 4}),
      chunk({}, usage=None)], {"total_tokens": 4}),
    # never
    ([chunk({"content": "a"}), chunk({}, "stop")], None),
    # Groq's legacy place
    ([chunk({"content": "a"}), chunk({}, "stop", x_groq={"id": "req", "usage": {"total_tokens": 9}})],
     {"total_tokens": 9}),
    # top-level usage preferred over x_groq in the same chunk
    ([chunk({}, "stop", usage={"total_tokens": 1}, x_groq={"usage": {"total_tokens": 2}})],
     {"total_tokens": 1}),
    # an empty object does not replace a real one
    ([chunk({}, "stop", usage={"total_tokens": 5}), {"choices": [], "usage": {}}], {"total_tokens": 5}),
], ids=["every_chunk", "last_chunk_empty_choices", "finish_chunk", "never", "x_groq",
        "usage_over_x_groq", "empty_object_ignored"])
def test_usage_last_non_null_wins(chunks, expected):
    decoder = StreamDecoder()
    feed(decoder, *chunks)
    assert decoder.usage == expected
    decoder.done = True
    assert decoder.finish().usage == expected


# --- finish reasons ---

@pytest.mark.parametrize("reason", ["stop", "length", "tool_calls", "content_filter",
                                    "function_call", "eos", "recitation"])
def test_finish_reasons_are_recorded(reason, way):
    _, decoder = run([data(chunk({"content": "x"})), data(chunk({}, reason)), DONE], way)
    result = decoder.finish()
    assert (result.finish_reason, result.content) == (reason, "x")


def test_finish_reason_without_done_is_complete():
    decoder = StreamDecoder()
    feed(decoder, chunk({"content": "x"}), chunk({}, "stop"))
    assert decoder.done is False
    assert decoder.finish().content == "x"


def test_done_with_only_a_finish_reason_is_an_empty_answer_not_an_error():
    decoder = StreamDecoder()
    feed(decoder, chunk({}, "stop"))
    decoder.feed_event(SSEEvent(data="[DONE]"))
    assert decoder.finish().content == ""


# --- errors inside a 200 stream ---

ERROR_STREAMS = {
    "error_object": (
        [data(chunk({"content": "par"})), data({"error": {"message": "Rate limit exceeded",
                                                          "code": 429}})],
        "the server reported an error in the stream: Rate limit exceeded (429)"),
    "error_object_type": (
        [data(chunk({"content": "par"})),
         data({"error": {"message": "The server had an error", "type": "server_error",
                         "param": None, "code": None}})],
        "the server reported an error in the stream: The server had an error (server_error)"),
    "error_string": (
        [data(chunk({"content": "par"})), data({"error": "Model overloaded"})],
        "the server reported an error in the stream: Model overloaded"),
    "event_error_json": (
        [data(chunk({"content": "par"})),
         b'event: error\ndata: {"error": {"message": "upstream timeout", "type": "server_error"}}\n\n'],
        "the server reported an error in the stream: upstream timeout (server_error)"),
    "event_error_text": (
        [data(chunk({"content": "par"})), b"event: error\ndata: boom\n\n"],
        'the server reported an error in the stream: "boom"'),
    "finish_reason_error_with_detail": (
        [data(chunk({"content": "par"})),
         data({"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error",
                            "error": {"code": 502, "message": "Provider returned error"}}]})],
        "the server reported an error in the stream: Provider returned error (502)"),
    "finish_reason_error": (
        [data(chunk({"content": "par"})), data(chunk({}, "error"))],
        'the server reported an error in the stream: the server ended the turn with '
        'finish_reason "error"'),
    "non_json_data": (
        [data(chunk({"content": "par"})), b"data: Internal Server Error\n\n"],
        'the stream carried data that is not JSON: "Internal Server Error"'),
    "json_not_an_object": (
        [data(chunk({"content": "par"})), b"data: 42\n\n"],
        'the stream carried JSON that is not a chunk object: "42"'),
}


@pytest.mark.parametrize("name", sorted(ERROR_STREAMS))
def test_errors_inside_a_200_stream(name, way):
    chunks, message = ERROR_STREAMS[name]
    decoder = StreamDecoder()
    with pytest.raises(StreamError) as excinfo:
        for sse_event in iter_sse_events(rechunk(chunks + [DONE], way)):
            decoder.feed_event(sse_event)
    assert str(excinfo.value) == message
    assert excinfo.value.exit_status == ExitStatus.STREAM
    assert excinfo.value.partial.content == "par"
    assert decoder.partial_result().content == "par"


def test_non_json_snippet_is_short():
    decoder = StreamDecoder()
    with pytest.raises(StreamError) as excinfo:
        decoder.feed_event(SSEEvent(data="x" * 5000))
    assert str(excinfo.value) == 'the stream carried data that is not JSON: "%s…"' % ("x" * 79)


def test_empty_data_is_not_an_error():
    decoder = StreamDecoder()
    assert decoder.feed_event(SSEEvent(data="")) == []
    assert decoder.feed_event(SSEEvent(data=" ")) == []


def test_comments_are_never_json_parsed(way):
    chunks = [b": {not json\n\n", b':{"error": "no"}\n\n', data(chunk({"content": "ok"}, "stop")), DONE]
    _, decoder = run(chunks, way)
    assert decoder.finish().content == "ok"


# --- truncation and empty answers ---

def test_truncated_stream_is_an_error_keeping_the_partial_answer(way):
    chunks = [data(chunk({"reasoning_content": "hm"})), data(chunk({"content": "The answ"})),
              b'data: {"choices":[{"index":0,"delta":{"content":"er is']
    events, decoder = run(chunks, way)
    assert events == [ReasoningDelta("hm"), TextDelta("The answ")]
    with pytest.raises(StreamError) as excinfo:
        decoder.finish()
    assert str(excinfo.value) == ("the stream ended before the answer was complete "
                                  "(no [DONE] and no finish_reason): the answer is truncated")
    assert excinfo.value.partial == TurnResult(
        content="The answ", reasoning="hm", refusal="", finish_reason=None, tool_calls=[],
        usage=None, model=None)
    assert decoder.partial_result() == excinfo.value.partial


def test_empty_stream_is_truncated():
    with pytest.raises(StreamError, match="truncated"):
        StreamDecoder().finish()


def test_done_without_anything_is_an_error(way):
    chunks = [b": OPENROUTER PROCESSING\n\n", data(chunk({"role": "assistant", "content": ""})),
              data({"choices": [], "usage": {"total_tokens": 3}}), DONE]
    _, decoder = run(chunks, way)
    with pytest.raises(StreamError) as excinfo:
        decoder.finish()
    assert str(excinfo.value) == "the stream ended with [DONE] but carried no answer"
    assert excinfo.value.partial.usage == {"total_tokens": 3}


@pytest.mark.parametrize("delta", [
    {"reasoning_content": "only thinking"},
    {"refusal": "no"},
    {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}]},
])
def test_done_with_something_but_no_finish_reason_is_fine(delta):
    decoder = StreamDecoder()
    decoder.feed_chunk(chunk(delta))
    decoder.feed_event(SSEEvent(data="[DONE]"))
    assert decoder.finish().finish_reason is None


def test_length_while_tool_call_streamed_is_an_error(way):
    chunks = [data(chunk({"content": "Let me write it."})),
              data(chunk({"tool_calls": [
                  tc(0, "call_1", "write_file", '{"path": "a.txt", "text": "lo')]})),
              data(chunk({"tool_calls": [tc(0, arguments="ng")]})),
              data(chunk({}, "length")), DONE]
    _, decoder = run(chunks, way)
    with pytest.raises(StreamError) as excinfo:
        decoder.finish()
    assert str(excinfo.value) == ('the answer hit the token limit (finish_reason "length") while a '
                                  'tool call was being streamed; the incomplete call was not run')
    partial = excinfo.value.partial
    assert partial.content == "Let me write it."
    assert [(c.id, c.name, c.arguments) for c in partial.tool_calls] == [("call_1", "write_file", None)]
    assert partial.tool_calls[0].parse_error.startswith("invalid JSON in tool-call arguments")


def test_length_without_tool_call_is_a_normal_answer():
    decoder = StreamDecoder()
    feed(decoder, chunk({"content": "cut sh"}), chunk({}, "length"))
    assert decoder.finish().finish_reason == "length"


# --- non-streamed answers ---

def test_decode_non_streamed_full_answer():
    body = {
        "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "deepseek-reasoner",
        "choices": [{"index": 0, "message": {
            "role": "assistant", "content": None, "reasoning_content": "Need the weather.",
            "tool_calls": [
                {"id": "call_0_aa", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
                {"id": "call_1_bb", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50}}
    result = decode_non_streamed(body)
    assert result == TurnResult(
        content="", reasoning="Need the weather.", refusal="", finish_reason="tool_calls",
        tool_calls=[call("call_0_aa", "get_weather", '{"city": "Oslo"}', {"city": "Oslo"}),
                    call("call_1_bb", "get_weather", '{"city": "Rome"}', {"city": "Rome"})],
        usage={"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
        model="deepseek-reasoner")


def test_decode_non_streamed_text_answer():
    result = decode_non_streamed({"choices": [{"message": {"role": "assistant", "content": "Hi"},
                                               "finish_reason": "stop"}], "model": "m"})
    assert (result.content, result.finish_reason, result.model) == ("Hi", "stop", "m")


@pytest.mark.parametrize("body, message, code", [
    ({"error": {"message": "Invalid API key", "type": "invalid_request_error",
                "code": "invalid_api_key"}}, "Invalid API key (invalid_api_key)", "invalid_api_key"),
    ({"error": {"message": "quota", "type": "insufficient_quota"}}, "quota (insufficient_quota)",
     "insufficient_quota"),
    ({"error": "model not found"}, "model not found", None),
    ({"error": {"message": "Provider returned error", "code": 400,
                "metadata": {"raw": "{\"detail\": \"bad\"}"}}}, "Provider returned error (400)", 400),
])
def test_decode_non_streamed_error_body_is_http_class(body, message, code):
    with pytest.raises(HTTPError) as excinfo:
        decode_non_streamed(body)
    assert str(excinfo.value) == message
    assert excinfo.value.exit_status == ExitStatus.HTTP
    assert (excinfo.value.status, excinfo.value.code, excinfo.value.body) == (200, code, body)


@pytest.mark.parametrize("body", [{"choices": []}, {}, {"object": "chat.completion", "choices": None}])
def test_decode_non_streamed_without_answer_is_a_stream_error(body):
    with pytest.raises(StreamError, match="carried no answer"):
        decode_non_streamed(body)


def test_decode_non_streamed_not_an_object():
    with pytest.raises(StreamError) as excinfo:
        decode_non_streamed(["a"])
    assert str(excinfo.value) == 'the server\'s JSON answer is not a chat completion: "["a"]"'


def test_decode_non_streamed_length_with_tool_call_is_an_error():
    body = {"choices": [{"message": {"content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\": "}}]},
        "finish_reason": "length"}]}
    with pytest.raises(StreamError, match="token limit"):
        decode_non_streamed(body)


# === §3: tool-call accumulation ===================================================================

ARGS = '{"path": "C:\\\\dir\\\\new", "q": "caf\\u00e9 \\"quoted\\"", "n": [1, 2.5e3], "u": "日本😀"}'


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 1000])
def test_arguments_split_at_arbitrary_points(size):
    pieces = [ARGS[i:i + size] for i in range(0, len(ARGS), size)]
    deltas = [[tc(0, "call_1", "write", pieces[0])]] + [[tc(0, arguments=p)] for p in pieces[1:]]
    assert accumulate(*deltas) == [call("call_1", "write", ARGS, json.loads(ARGS))]
    assert json.loads(ARGS)["q"] == 'café "quoted"'


def test_arguments_split_inside_multibyte_characters_on_the_wire(way):
    raw = '{"u": "日本😀é"}'
    encoded = json.dumps(raw, ensure_ascii=False).encode()
    head = (b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":'
            b'{"name":"f","arguments":')
    stream = (head + encoded + b'}}]}}]}\n\n'
              + b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n')
    # split inside each multi-byte character
    cuts = [0] + [stream.index(ch.encode()) + n for ch, n in (("日", 1), ("😀", 2), ("é", 1))]
    chunks = [stream[a:b] for a, b in zip(cuts, cuts[1:] + [len(stream)])] + [DONE]
    assert all(len(c) for c in chunks) and b"".join(chunks[:-1]) == stream
    _, decoder = run(chunks, way)
    assert decoder.finish().tool_calls == [call("c", "f", raw, {"u": "日本😀é"})]


def test_parallel_calls_interleaved_by_index():
    result = accumulate(
        [tc(0, "a", "f", "")],
        [tc(1, "b", "g", "")],
        [tc(0, arguments='{"x":')],
        [tc(1, arguments='{"y":')],
        [tc(1, arguments="2}"), tc(0, arguments="1}")],
    )
    assert result == [call("a", "f", '{"x":1}', {"x": 1}), call("b", "g", '{"y":2}', {"y": 2})]


def test_parallel_calls_in_one_delta_list():
    result = accumulate([tc(0, "a", "f", '{"x": 1}'), tc(1, "b", "g", '{"y": 2}')])
    assert result == [call("a", "f", '{"x": 1}', {"x": 1}), call("b", "g", '{"y": 2}', {"y": 2})]


def test_whole_calls_without_index():
    result = accumulate([tc(id="a", name="f", arguments="{}"),
                         tc(id="b", name="g", arguments='{"k": 1}')])
    assert result == [call("a", "f", "{}", {}), call("b", "g", '{"k": 1}', {"k": 1})]


def test_whole_calls_without_index_or_id_same_function_twice():
    # Gemini-style: `id: ""`, no index, two complete calls to the same function in one delta.
    result = accumulate([
        {"id": "", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
    ])
    assert result == [call("call_0", "get_weather", '{"city":"Paris"}', {"city": "Paris"}),
                      call("call_1", "get_weather", '{"city":"Rome"}', {"city": "Rome"})]


def test_whole_calls_without_index_or_id_different_functions():
    result = accumulate([tc(name="f", arguments="{}")], [tc(name="g", arguments="{}")])
    assert [(c.id, c.name) for c in result] == [("call_0", "f"), ("call_1", "g")]


@pytest.mark.parametrize("first", [tc(0, "a", "f", '{"x"'), tc(id="a", name="f", arguments='{"x"')],
                         ids=["first_has_index", "first_without_index"])
def test_continuations_with_neither_index_nor_id(first):
    result = accumulate([first], [{"function": {"arguments": ": 1"}}],
                        [{"function": {"arguments": "}"}}])
    assert result == [call("a", "f", '{"x": 1}', {"x": 1})]


def test_continuation_without_index_or_id_goes_to_the_latest_call():
    result = accumulate([tc(0, "a", "f", "{")], [tc(1, "b", "g", "{")],
                        [{"function": {"arguments": "}"}}], [tc(0, arguments="}")])
    assert result == [call("a", "f", "{}", {}), call("b", "g", "{}", {})]


def test_repeated_name_without_index_or_id_is_a_continuation():
    result = accumulate([tc(name="f", arguments='{"a"')], [tc(name="f", arguments=": 1}")],
                        [tc(name="f", arguments="")])
    assert result == [call("call_0", "f", '{"a": 1}', {"a": 1})]


def test_parallel_calls_all_claiming_index_zero():
    result = accumulate(
        [tc(0, "call_a", "get_weather", "")],
        [tc(0, arguments='{"city": "Paris"}')],
        [tc(0, "call_b", "get_time", "")],
        [tc(0, arguments='{"tz": "CET"}')],
        [tc(0, "call_c", "get_weather", '{"city": "Rome"}')],
    )
    assert result == [
        call("call_a", "get_weather", '{"city": "Paris"}', {"city": "Paris"}),
        call("call_b", "get_time", '{"tz": "CET"}', {"tz": "CET"}),
        call("call_c", "get_weather", '{"city": "Rome"}', {"city": "Rome"}),
    ]


def test_id_type_and_name_repeated_on_every_chunk_are_not_concatenated():
    result = accumulate(*[[tc(0, "call_9", "search", piece)] for piece in ['{"q"', ': "ab', 'c"}']])
    assert result == [call("call_9", "search", '{"q": "abc"}', {"q": "abc"})]


def test_name_is_set_once_never_replaced_or_concatenated():
    result = accumulate([tc(0, "a", "get_weather", "{")], [tc(0, "a", "get_time", "")],
                        [tc(0, "a", "get_weather", "}")])
    assert result == [call("a", "get_weather", "{}", {})]


def test_repeated_id_after_other_calls_goes_back_to_its_call():
    result = accumulate([tc(0, "a", "f", "{")], [tc(0, "b", "g", "{")], [tc(0, "a", "f", "}")],
                        [tc(0, "b", "g", "}")])
    assert result == [call("a", "f", "{}", {}), call("b", "g", "{}", {})]


@pytest.mark.parametrize("raw_id, expected", [
    ("", "call_0"), ("null", "call_0"), (None, "call_0"), ("  ", "call_0"), (7, "7"), (0, "0"),
    ("call_x", "call_x"),
])
def test_id_normalisation(raw_id, expected):
    delta = {"index": 0, "type": "function", "function": {"name": "f", "arguments": "{}"}}
    if raw_id is not None:
        delta["id"] = raw_id
    result = accumulate([delta], [{"index": 0, "id": raw_id, "function": {"arguments": ""}}])
    assert result == [call(expected, "f", "{}", {})]


def test_ids_missing_altogether_are_synthesized_in_order():
    result = accumulate([tc(0, name="f", arguments="{}")], [tc(1, name="g", arguments="{}")],
                        [tc(2, name="h", arguments="{}")])
    assert [c.id for c in result] == ["call_0", "call_1", "call_2"]


def test_synthesized_ids_do_not_clash_with_real_ones():
    result = accumulate([tc(0, name="f", arguments="{}")], [tc(1, "call_0", "g", "{}")])
    assert [c.id for c in result] == ["call_0_1", "call_0"]


def test_empty_name_on_continuations_is_ignored():
    result = accumulate([tc(0, "a", "f", "")],
                        [{"index": 0, "id": "", "type": "function",
                          "function": {"name": "", "arguments": "{}"}}],
                        [{"index": 0, "function": {"name": None, "arguments": ""}}])
    assert result == [call("a", "f", "{}", {})]


@pytest.mark.parametrize("with_index", [True, False])
def test_id_changing_on_continuation_chunks_keeps_the_first(with_index):
    index = 0 if with_index else None
    result = accumulate([tc(index, "call_first", "f", '{"a"')],
                        [tc(index, "call_second", arguments=": 1")],
                        [tc(index, "call_third", arguments="}")])
    assert result == [call("call_first", "f", '{"a": 1}', {"a": 1})]


@pytest.mark.parametrize("arguments, raw, parsed, sent", [
    ({"city": "Paris", "n": 1}, '{"city": "Paris", "n": 1}', {"city": "Paris", "n": 1},
     '{"city": "Paris", "n": 1}'),
    (None, "", {}, "{}"),
    ("", "", {}, "{}"),
    ("  ", "  ", {}, "{}"),
    ("null", "null", {}, "null"),
    ('"{\\"a\\": 1}"', '"{\\"a\\": 1}"', {"a": 1}, '"{\\"a\\": 1}"'),
], ids=["json_object", "missing", "empty_string", "whitespace", "null", "double_encoded"])
def test_argument_shapes(arguments, raw, parsed, sent):
    result = accumulate([tc(0, "a", "f", arguments)])
    assert result == [call("a", "f", raw, parsed)]
    assert result[0].to_message_dict()["function"]["arguments"] == sent


def test_object_arguments_repeated_are_not_concatenated():
    result = accumulate([tc(0, "a", "f", {"x": 1})], [tc(0, "a", "f", {"x": 1})])
    assert result == [call("a", "f", '{"x": 1}', {"x": 1})]


def test_whole_arguments_in_first_delta_then_empty_fragments():
    result = accumulate([tc(0, "a", "f", '{"x": 1}')], [tc(0, arguments="")],
                        [{"index": 0, "function": {}}], [{"index": 0}])
    assert result == [call("a", "f", '{"x": 1}', {"x": 1})]


@pytest.mark.parametrize("raw, error", [
    ('{"x": 1', 'invalid JSON in tool-call arguments: Expecting \',\' delimiter at char 7; '
                'received "{"x": 1"'),
    ('{"x": 1}}', 'invalid JSON in tool-call arguments: Extra data at char 8; received "{"x": 1}}"'),
    ("[1, 2]", 'tool-call arguments must be a JSON object, received "[1, 2]"'),
    ("42", 'tool-call arguments must be a JSON object, received "42"'),
])
def test_invalid_arguments_become_a_parse_error_not_a_crash(raw, error):
    result = accumulate([tc(0, "a", "f", raw)])
    assert result == [call("a", "f", raw, None, error)]
    # the follow-up must parse on strict providers: "{}" (the error result quotes what the model wrote)
    assert result[0].to_message_dict() == {
        "id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def test_legacy_function_call_alone():
    acc = ToolCallAccumulator()
    acc.add_function_call_delta({"name": "get_time", "arguments": '{"tz"'})
    acc.add_function_call_delta({"name": "get_time", "arguments": ': "UTC"}'})
    acc.add_function_call_delta({"arguments": ""})
    assert acc.has_calls is True
    assert acc.finish() == [call("call_0", "get_time", '{"tz": "UTC"}', {"tz": "UTC"})]


def test_legacy_function_call_alongside_tool_calls_is_not_a_duplicate():
    decoder = StreamDecoder()
    feed(decoder,
         chunk({"function_call": {"name": "f", "arguments": "{}"},
                "tool_calls": [tc(0, "c1", "f", "{}")]}),
         chunk({}, "function_call"))
    assert decoder.finish().tool_calls == [call("c1", "f", "{}", {})]


def test_legacy_function_call_before_tool_calls_is_not_a_duplicate():
    acc = ToolCallAccumulator()
    acc.add_function_call_delta({"name": "f", "arguments": "{}"})
    acc.add_tool_call_deltas([tc(0, "c1", "f", "{}")])
    assert acc.finish() == [call("c1", "f", "{}", {})]


def test_finish_reason_stop_although_calls_were_made():
    decoder = StreamDecoder()
    feed(decoder, chunk({"tool_calls": [tc(0, "c1", "f", '{"a": 1}')]}), chunk({}, "stop"))
    result = decoder.finish()
    assert decoder.tool_calls.has_calls is True
    assert result.finish_reason == "stop"
    assert result.tool_calls == [call("c1", "f", '{"a": 1}', {"a": 1})]


def test_no_calls():
    acc = ToolCallAccumulator()
    acc.add_tool_call_deltas([])
    acc.add_tool_call_deltas(None)
    acc.add_tool_call_deltas([{}])
    acc.add_function_call_delta(None)
    assert acc.has_calls is False
    assert acc.finish() == []


def test_finish_is_repeatable():
    acc = ToolCallAccumulator()
    acc.add_tool_call_deltas([tc(0, "a", "f", '{"x": 1}')])
    assert acc.finish() == acc.finish() == [call("a", "f", '{"x": 1}', {"x": 1})]


def test_large_arguments_in_one_char_fragments():
    text = "é日x" * 40_000
    raw = json.dumps({"text": text}, ensure_ascii=False)
    acc = ToolCallAccumulator()
    acc.add_tool_call_deltas([tc(0, "big", "write", "")])
    for ch in raw:
        acc.add_tool_call_deltas([{"index": 0, "function": {"arguments": ch}}])
    [result] = acc.finish()
    assert result.arguments == {"text": text}
    assert result.arguments_raw == raw


# --- the follow-up message ---

def test_assistant_message_with_text_and_calls():
    result = TurnResult(content="Checking.", reasoning="r", refusal="", finish_reason="tool_calls",
                        tool_calls=[call("a", "f", '{"x": 1}', {"x": 1}), call("b", "g", "", {})],
                        usage=None, model=None)
    assert result.assistant_message() == {
        "role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}


def test_assistant_message_without_calls():
    result = TurnResult(content="", reasoning="", refusal="", finish_reason="stop")
    assert result.assistant_message() == {"role": "assistant", "content": ""}


# === Chunk shapes still misread (issue 18), each fed three ways ===================================

def run_with_tools(chunks, way, tool_names):
    decoder = StreamDecoder(tool_names)
    events = []
    for sse_event in iter_sse_events(rechunk(chunks, way)):
        events += decoder.feed_event(sse_event)
    return events, decoder


def message_chunk(message, finish=None, delta="absent"):
    choice = {"index": 0, "message": message, "finish_reason": finish}
    if delta != "absent":
        choice["delta"] = delta
    return {"object": "chat.completion.chunk", "choices": [choice]}


MESSAGE_INSTEAD_OF_DELTA = [
    data(message_chunk({"role": "assistant", "content": "Hel"})),
    data(message_chunk({"content": "lo"})),
    data(message_chunk({"content": ""}, finish="stop")),
    DONE,
]


def test_message_fragments_instead_of_delta(way):
    events, decoder = run(MESSAGE_INSTEAD_OF_DELTA, way)
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Hel"), TextDelta("lo")]
    assert decoder.finish().content == "Hello"


MESSAGE_SNAPSHOTS = [
    data(message_chunk({"role": "assistant", "content": "Hel"})),
    data(message_chunk({"role": "assistant", "content": "Hello"})),
    data(message_chunk({"role": "assistant", "content": "Hello"}, finish="stop")),
    DONE,
]


def test_message_snapshots_add_only_what_is_new(way):
    events, decoder = run(MESSAGE_SNAPSHOTS, way)
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Hel"), TextDelta("lo")]
    assert decoder.finish().content == "Hello"


MESSAGE_BESIDE_DELTA = [
    # an empty delta with the reasoning in `message`
    data(message_chunk({"role": "assistant", "reasoning": "Think."}, delta={})),
    data(message_chunk({"content": "Hel"}, delta={"content": "Hel"})),
    data(message_chunk({"content": "lo"}, delta={"content": "lo"})),
    # the last chunk repeats the complete message beside an empty delta
    data(message_chunk({"role": "assistant", "content": "Hello", "reasoning": "Think."}, delta={},
                       finish="stop")),
    DONE,
]


def test_message_beside_delta_keeps_reasoning_and_never_doubles_text(way):
    events, decoder = run(MESSAGE_BESIDE_DELTA, way)
    turn = decoder.finish()
    assert turn.content == "Hello"  # not "HelloHello"
    assert turn.reasoning == "Think."
    assert events[0] == ReasoningDelta("Think.")


MESSAGE_BESIDE_DELTA_WITH_CALLS = [
    data(chunk({"tool_calls": [tc(0, "call_a", "lookup", '{"q":')]})),
    data(chunk({"tool_calls": [tc(0, arguments='"x"}')]})),
    data(message_chunk({"role": "assistant", "content": None,
                        "tool_calls": [tc(0, "call_a", "lookup", '{"q":"x"}')]}, delta={},
                       finish="tool_calls")),
    DONE,
]


def test_message_beside_delta_does_not_repeat_tool_calls(way):
    _, decoder = run(MESSAGE_BESIDE_DELTA_WITH_CALLS, way)
    assert decoder.finish().tool_calls == [call("call_a", "lookup", '{"q":"x"}', {"q": "x"})]


REASONING_OBJECTS = [
    data(chunk({"reasoning": {"text": "One. "}})),
    data(chunk({"reasoning": {"content": "Two. "}})),
    data(chunk({"reasoning": [{"type": "reasoning_text", "text": "Three"}, {"content": "."}]})),
    data(chunk({"reasoning_content": {"text": " Four."}})),
    data(chunk({"content": "Answer"}, finish="stop")),
    DONE,
]


def test_reasoning_sent_as_objects_and_lists(way):
    events, decoder = run(REASONING_OBJECTS, way)
    turn = decoder.finish()
    assert turn.reasoning == "One. Two. Three. Four."
    assert turn.content == "Answer"
    assert TextDelta("One. ") not in events


MAGISTRAL = [
    data(chunk({"role": "assistant", "content": [
        {"type": "thinking", "thinking": [{"type": "text", "text": "Let me think"}]}]})),
    data(chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": " more."}]}]})),
    data(chunk({"content": [{"type": "text", "text": "The answer"}]})),
    data(chunk({"content": [{"type": "reasoning", "text": " (aside)"}, {"type": "text", "text": " is 4."}]})),
    data(chunk({"content": " Done."}, finish="stop")),
    DONE,
]


def test_content_as_typed_parts_thinking_is_reasoning(way):
    events, decoder = run(MAGISTRAL, way)
    turn = decoder.finish()
    assert turn.content == "The answer is 4. Done."
    assert turn.reasoning == "Let me think more. (aside)"
    assert not any(isinstance(e, TextDelta) and "think" in e.text for e in events)


def test_non_streamed_message_with_typed_parts():
    turn = decode_non_streamed({"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": [{"type": "thinking", "thinking": "Hmm."},
                                         {"type": "text", "text": "Yes."}]}}]})
    assert (turn.content, turn.reasoning) == ("Yes.", "Hmm.")


SPLIT_NAME = [
    data(chunk({"tool_calls": [tc(0, "call_1", "web_", "")]})),
    data(chunk({"tool_calls": [{"index": 0, "function": {"name": "fetch", "arguments": '{"url":'}}]})),
    data(chunk({"tool_calls": [tc(0, arguments='"http://x"}')]}, finish="tool_calls")),
    DONE,
]


def test_tool_name_split_across_deltas_is_joined_when_declared(way):
    _, decoder = run_with_tools(SPLIT_NAME, way, ["web_fetch", "web_search"])
    assert decoder.finish().tool_calls == [
        call("call_1", "web_fetch", '{"url":"http://x"}', {"url": "http://x"})]


def test_tool_name_pieces_not_joined_when_the_join_is_not_declared(way):
    # Without the declaration the first name stands (a changed name is never concatenated).
    _, decoder = run_with_tools(SPLIT_NAME, way, ["web_search"])
    assert decoder.finish().tool_calls[0].name == "web_"


SPLIT_NAME_NO_INDEX = [
    data(chunk({"tool_calls": [{"function": {"name": "web_"}}]})),
    data(chunk({"tool_calls": [{"function": {"name": "search", "arguments": '{"q":"x"}'}}]})),
    data(chunk({}, finish="tool_calls")),
    DONE,
]


def test_tool_name_split_without_index(way):
    _, decoder = run_with_tools(SPLIT_NAME_NO_INDEX, way, ["web_search"])
    calls = decoder.finish().tool_calls
    assert [(c.name, c.arguments) for c in calls] == [("web_search", {"q": "x"})]


RESENT_ARGUMENTS = [
    data(chunk({"tool_calls": [tc(0, "call_1", "lookup", '{"q":')]})),
    data(chunk({"tool_calls": [tc(0, arguments='"x"}')]})),
    data(chunk({"tool_calls": [tc(0, arguments='{"q": "x"}')]}, finish="tool_calls")),
    DONE,
]


def test_arguments_resent_whole_keep_one_copy(way):
    _, decoder = run(RESENT_ARGUMENTS, way)
    assert decoder.finish().tool_calls == [call("call_1", "lookup", '{"q":"x"}', {"q": "x"})]


def test_resent_arguments_that_differ_stay_an_error():
    calls = accumulate([tc(0, "c", "f", '{"q":"x"}')], [tc(0, arguments='{"q":"y"}')])
    assert calls[0].arguments is None and "invalid JSON" in calls[0].parse_error


def test_tool_call_delta_events_when_asked(way):
    from llmcli.wire.stream import ToolCallDelta

    stream = [
        data(chunk({"tool_calls": [tc(0, "a", "f", ""), tc(1, "b", "g", '{"y"')]})),
        data(chunk({"tool_calls": [tc(0, arguments='{"x":1}')]})),
        data(chunk({"tool_calls": [tc(1, arguments=":2}")]}, finish="tool_calls")),
        DONE,
    ]
    decoder = StreamDecoder()
    decoder.emit_tool_call_deltas = True
    events = []
    for sse_event in iter_sse_events(rechunk(stream, way)):
        events += decoder.feed_event(sse_event)
    assert [e for e in events if isinstance(e, ToolCallDelta)] == [
        ToolCallDelta(0, "a", "f", ""), ToolCallDelta(1, "b", "g", '{"y"'),
        ToolCallDelta(0, "a", "f", '{"x":1}'), ToolCallDelta(1, "b", "g", ":2}")]
    # off by default: the text path never pays for them
    _, quiet = run(stream, way)
    assert not any(isinstance(e, ToolCallDelta) for e in _)
