"""A long answer is kept once and compactly: never one string object per streamed delta (issue 22).

Counts the strings that hold the text (no timing, no RSS thresholds); bench/run.py case (c) measures the
peak RSS itself."""

import gc

from localserver import Reply, chunk, sse, text_stream
from llmcli.wire.stream import StreamDecoder, TextBuffer

N = 50_000
WORDS = ["Hello", " wörld", ",", " the", " quick", " brown", " fox", " jumps", " over", "\n"]
ANSWER = "".join(WORDS[i % len(WORDS)] for i in range(N))


def strings_held(buf: TextBuffer) -> int:
    return sum(1 for ref in gc.get_referents(*gc.get_referents(buf)) if isinstance(ref, str))


def test_text_buffer_holds_few_strings_and_the_exact_text():
    buf = TextBuffer()
    for i in range(N):
        buf.append(WORDS[i % len(WORDS)])
        if i == 12_345:
            assert buf.value() == "".join(WORDS[j % len(WORDS)] for j in range(i + 1))
    assert buf.strings() < 100 and strings_held(buf) == buf.strings()
    assert len(buf) == len(ANSWER)
    assert buf.value() == ANSWER and buf.strings() == 1
    buf.clear()
    assert not buf and buf.value() == "" and len(buf) == 0


def test_decoder_keeps_a_50k_delta_answer_in_a_handful_of_strings():
    decoder = StreamDecoder()
    for i in range(N):
        decoder.feed_chunk(chunk(WORDS[i % len(WORDS)], reasoning_content="r"))
    for buf in (decoder._content, decoder._reasoning):
        assert buf.strings() < 100  # a string per delta would be 50,000
    decoder.feed_chunk(chunk(finish="stop"))
    turn = decoder.finish()
    assert turn.content == ANSWER and turn.reasoning == "r" * N


def test_chat_run_keeps_the_answer_once(server):
    from llmcli.config.settings import resolve_settings
    from llmcli.run.loop import ChatRun, TurnDone
    from llmcli.run.runner import make_transport

    reasoning = [chunk(reasoning_content="think ") for _ in range(N // 10)]
    pieces = sse(*reasoning, done=False) + text_stream(*(WORDS[i % len(WORDS)] for i in range(N)))
    server.chat(Reply(pieces=[b"".join(pieces)]))
    settings = resolve_settings({"base_url": server.base_url, "model": "test-model", "no_log": True})
    run = ChatRun(make_transport(settings), settings, [{"role": "user", "content": "hi"}])
    seen_mid_stream = None
    for i, ev in enumerate(run.events()):
        if i == N // 2:
            # the turn in progress is the decoder's buffer, not a second copy in the run
            live = run._live_exchange.decoder.content_buffer
            assert run._turn_own is None and not run._content and live.strings() < 100
            seen_mid_stream = (live.strings(), run._reasoning.strings(), run.turn_text())
        if isinstance(ev, TurnDone):
            turn = ev.turn
    content_strings, reasoning_strings, partial = seen_mid_stream
    assert content_strings < 100 and reasoning_strings < 100
    assert ANSWER.startswith(partial) and len(partial) > 1000
    assert run.content == ANSWER and run.reasoning == "think " * (N // 10)
    # one copy: the run's answer is the very string of the turn (and of the conversation message)
    assert run.content is turn.content
    assert run.messages[-1]["content"] is run.content
    assert run.turn_text() == "" and run.partial_assistant_message() is None


def test_text_call_filter_keeps_the_shown_text_compactly():
    from llmcli.wire.textcalls import TextCallFilter

    f = TextCallFilter(["get_time"])
    out = [f.feed(WORDS[i % len(WORDS)]) for i in range(N)]
    assert f._shown.strings() < 100
    out.append(f.finish())
    assert "".join(out) == ANSWER == f.shown
