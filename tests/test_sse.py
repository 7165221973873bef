"""SSE framing (PROTOCOL.md §1): pure parser tests over lists of byte chunks.

Every stream fixture is fed three ways with the same expected result: as written, joined into one
chunk, and one byte per chunk (the `way` fixture).
"""

import pytest

from localserver import rechunk
from llmcli.wire.sse import SSEDecoder, SSEEvent, iter_sse_events

def decode(chunks, way):
    decoder = SSEDecoder()
    events = list(iter_sse_events(rechunk(chunks, way), decoder=decoder))
    return events, decoder


def E(data, event="message", id=None):
    return SSEEvent(event=event, data=data, id=id)


CASES = {
    # -- basics
    "split_mid_line": ([b"data: Hel", b"lo\n\n"], [E("Hello")]),
    "two_events_one_chunk": ([b"data: a\n\ndata: b\n\n"], [E("a"), E("b")]),
    "empty_chunks_between": ([b"", b"data: a\n", b"", b"\n", b""], [E("a")]),
    # -- fields: exactly one space stripped; no colon = empty value; case-sensitive; unknown ignored
    "no_space_after_colon": ([b"data:x\n\n"], [E("x")]),
    "only_one_space_stripped": ([b"data:  two\n\n"], [E(" two")]),
    "colon_in_value": ([b"data: {\"a\": \"b:c\"}\n\n"], [E('{"a": "b:c"}')]),
    "data_without_colon": ([b"data\n\n"], [E("")]),
    "two_bare_data_lines": ([b"data\ndata\n\n"], [E("\n")]),
    "empty_data_value": ([b"data:\n\n"], [E("")]),
    "multi_line_data_joined_with_lf": ([b"data: a\n", b"data: b\ndata:\n\n"], [E("a\nb\n")]),
    "field_names_case_sensitive": ([b"Data: no\nDATA: no\ndata: yes\n\n"], [E("yes")]),
    "unknown_fields_ignored": ([b"foo: bar\nretry: 10\ndata: x\nx-y: z\n\n"], [E("x")]),
    "space_before_field_name": ([b" data: no\ndata: yes\n\n"], [E("yes")]),
    "event_name": ([b"event: ping\ndata: {}\n\n"], [E("{}", event="ping")]),
    "empty_event_name_is_message": ([b"event:\ndata: x\n\n"], [E("x")]),
    "later_event_field_resets_name": ([b"event: foo\nevent:\ndata: x\n\n"], [E("x")]),
    "event_name_does_not_persist": (
        [b"event: error\ndata: a\n\ndata: b\n\n"], [E("a", event="error"), E("b")]),
    # -- events without data are not dispatched; blank lines alone do nothing
    "event_without_data": ([b"event: x\n\n", b"data: y\n\n"], [E("y")]),
    "only_blank_lines": ([b"\n\n\n\r\n\r"], []),
    # -- whitespace-only lines are field lines (unknown names), not blank lines
    "whitespace_only_lines": ([b"data: a\n \n\t\ndata: b\n\n"], [E("a\nb")]),
    # -- comments: keep-alives, never parsed, never dispatched
    "comments": (
        [b": OPENROUTER PROCESSING\n\n", b": keep-alive\ndata: x\n:\n\n"], [E("x")]),
    "comment_looking_like_json": ([b':{"error": "no"}\n\ndata: 1\n\n'], [E("1")]),
    # -- ids: the spec's last event ID persists; an empty id resets it; an id with NULL is ignored
    "id_persists": (
        [b"id: 1\ndata: a\n\ndata: b\n\nid:\ndata: c\n\n"], [E("a", id="1"), E("b", id="1"), E("c")]),
    "id_only_event_sets_last_id": ([b"id: 5\n\ndata: x\n\n"], [E("x", id="5")]),
    "id_with_null_ignored": (
        [b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"], [E("a", id="1"), E("b", id="1")]),
    "integer_looking_id": ([b"id: 42\ndata: x\n\n"], [E("x", id="42")]),
    # -- line ends: LF, CRLF, CR, mixed in one stream (sseclient merges events here)
    "crlf": ([b"data: a\r\n\r\ndata: b\r\n\r\n"], [E("a"), E("b")]),
    "cr_only": ([b"data: a\r\rdata: b\rdata: c\r\r"], [E("a"), E("b\nc")]),
    "mixed_lf_crlf": ([b"data: a\n\r\ndata: b\r\n\ndata: c\n\n"], [E("a"), E("b"), E("c")]),
    "mixed_all_three": ([b"data: a\r\ndata: b\rdata: c\n\r\n\rdata: d\n\n"], [E("a\nb\nc"), E("d")]),
    "crlf_split_across_chunks": (
        [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n", b"data: c\r\n\r\n"], [E("a\nb"), E("c")]),
    "cr_then_cr_across_chunks": ([b"data: a\r", b"\r", b"data: b\r", b"\r"], [E("a"), E("b")]),
    "cr_end_then_lf_line_then_blank": ([b"data: a\r", b"\n", b"\n"], [E("a")]),
    # -- BOM: one leading BOM stripped (sseclient loses the first event)
    "bom_first_event": ([b"\xef\xbb\xbfdata: a\n\n", b"data: b\n\n"], [E("a"), E("b")]),
    "bom_split_across_chunks": ([b"\xef", b"\xbb", b"\xbfdata: a\n\n"], [E("a")]),
    "only_one_bom_stripped": (
        [b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n"], [E("b")]),
    "bom_later_is_not_stripped": ([b"data: a\n\n\xef\xbb\xbfdata: b\n\n"], [E("a")]),
    "bom_prefix_then_other_bytes": ([b"\xef\xbb", b"x\n\ndata: ok\n\n"], [E("ok")]),
    "bom_then_comment": ([b"\xef\xbb\xbf: hi\n\ndata: a\n\n"], [E("a")]),
    # -- UTF-8: decoded per line, never per chunk; invalid bytes become U+FFFD
    "multibyte_split_across_chunks": (
        [b"data: caf\xc3", b"\xa9 \xe6\x97", b"\xa5\xe6\x9c\xac \xf0\x9f", b"\x98\x80\n\n"],
        [E("café 日本 😀")]),
    "invalid_utf8_replaced": ([b"data: \xff\xfeok\n\n"], [E("\ufffd\ufffdok")]),
    "truncated_sequence_before_line_end": ([b"data: \xe6\x97\ndata: ok\n\n"], [E("\ufffd\nok")]),
    "surrogate_bytes_replaced": ([b"data: \xed\xa0\x80!\n\n"], [E("\ufffd\ufffd\ufffd!")]),
    "invalid_bytes_in_field_name": ([b"d\xffta: no\ndata: yes\n\n"], [E("yes")]),
    "nul_in_data_kept": ([b"data: a\x00b\n\n"], [E("a\x00b")]),
    "non_ascii_line_separators_are_not_line_ends": (
        [b"data: a\xe2\x80\xa8b\x0bc\x0cd\xc2\x85e\n\n"], [E("a\u2028b\x0bc\x0cd\x85e")]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_stream_fixture(name, way):
    chunks, expected = CASES[name]
    events, decoder = decode(chunks, way)
    assert events == expected
    assert decoder.events_seen == len(expected)
    assert decoder.bytes_seen == len(b"".join(chunks))
    assert decoder.discarded_partial is False


UNTERMINATED = {
    "no_blank_line": ([b"data: a\n\ndata: b\n"], [E("a")], True),
    "no_line_end": ([b"data: a\n\ndata: b"], [E("a")], True),
    "cr_at_eof": ([b"data: a\n\ndata: b\r"], [E("a")], True),
    "field_without_data": ([b"data: a\n\nevent: x\n"], [E("a")], True),
    "only_partial": ([b"data: {\"choices\": [{\"delta\": {\"content\": \"cut"], [], True),
    "partial_bom": ([b"\xef\xbb"], [], True),
    "trailing_comment_line": ([b"data: a\n\n: keep-alive\n"], [E("a")], False),
    "trailing_partial_comment": ([b"data: a\n\n: keep-al"], [E("a")], False),
    "complete": ([b"data: a\n\n"], [E("a")], False),
    "empty_stream": ([], [], False),
}


@pytest.mark.parametrize("name", sorted(UNTERMINATED))
def test_event_cut_off_by_eof_is_discarded(name, way):
    chunks, expected, discarded = UNTERMINATED[name]
    events, decoder = decode(chunks, way)
    assert events == expected
    assert decoder.discarded_partial is discarded


def test_comment_counter(way):
    chunks = [b": OPENROUTER PROCESSING\n\n", b": OPENROUTER PROCESSING\n\ndata: x\n:\n\n"]
    events, decoder = decode(chunks, way)
    assert events == [E("x")]
    assert decoder.comments_seen == 3
    assert decoder.events_seen == 1


def test_many_data_lines_in_one_event(way):
    # More lines than one sseclient call parses (64): the grouped path must give the same result.
    lines = [b"event: first\n", b"id: 7\n"]
    lines += [b"data: line %d\n" % i for i in range(300)]
    lines += [b"data\n", b"event: chunk\n", b"retry: 5\n", b": comment\n", b"data:x\n", b"\n"]
    events, _ = decode(lines, way)
    expected = "\n".join(["line %d" % i for i in range(300)] + ["", "x"])
    assert events == [E(expected, event="chunk", id="7")]


def test_many_lines_without_data_dispatch_nothing(way):
    lines = [b"event: e%d\n" % i for i in range(100)] + [b"id: 3\n\n", b"data: after\n\n"]
    events, _ = decode(lines, way)
    assert events == [E("after", id="3")]


def test_large_event_in_one_byte_chunks():
    payload = b"x" * 300_000 + "é".encode() * 1000
    decoder = SSEDecoder()
    chunks = [b"data: "] + [payload[i:i + 1] for i in range(len(payload))] + [b"\n", b"\n"]
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    assert events == [E("x" * 300_000 + "é" * 1000)]


def test_events_are_yielded_as_soon_as_complete():
    def chunks():
        yield b"data: a\n\n"
        raise AssertionError("read past the first event")

    assert next(iter_sse_events(chunks())) == E("a")


def test_feed_returns_events_completed_by_that_chunk():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b") == [E("a")]
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\ndata: c\n\n") == [E("b"), E("c")]
    assert decoder.close() == []


def test_close_is_idempotent_and_feed_after_close_fails():
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n")
    assert decoder.close() == []
    assert decoder.discarded_partial is True
    assert decoder.close() == []
    with pytest.raises(ValueError):
        decoder.feed(b"\n")
