"""Server-sent events framing over an iterator of byte chunks.

The spec is WHATWG HTML, section 9.2 "Server-sent events", "Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation);
PROTOCOL.md §1 lists what llmcli must get right.

Division of labour with sseclient-py (the `sseclient` module, a project dependency):

* **Ours: bytes → lines → event blocks.** sseclient's framing (`SSEClient._read`) is the part
  PROTOCOL.md §1 lists as broken: it merges events when LF and CRLF are mixed, loses the first event
  after a BOM, yields an event cut off by EOF, raises on invalid UTF-8, and rebuilds its buffer with
  `bytes +=` for every line piece (quadratic when a big event arrives in small network chunks). So
  `SSEDecoder` does this part itself, incrementally and in linear time:
  lines end in LF, CRLF or CR, mixed freely, including a CR that ends one chunk and an LF that starts
  the next (one line end, not two); one leading UTF-8 BOM is stripped; each *line* is decoded as UTF-8
  with `errors="replace"` (never a network chunk, which may split a multi-byte character); comment
  lines are counted and dropped; a blank line ends an event; an event still open at EOF is discarded.
* **sseclient's: fields.** Each complete event, as normalised text (LF line ends, valid UTF-8), is
  handed to `sseclient.SSEClient(...).events()`, which does the field parsing the spec asks for:
  `field: value` split at the first colon, exactly one leading space stripped (`data:x` and
  `data: x` are equal), a line with no colon is a field with an empty value, field names are
  case-sensitive, unknown fields are ignored, several `data` lines are joined with "\\n", an empty
  event name means "message".

Where sseclient's field parsing needs help, `_blocks_for` pre-normalises (each place says why):
an `id` containing NULL is dropped (the spec ignores it; sseclient keeps it), a bare `data` line is
appended so that sseclient reports events without data too (the spec still updates the last event
ID for them), and events with very many `data` lines are parsed in groups (sseclient appends each
line with `str +=`, quadratic in the number of lines). Whitespace-only lines need nothing: sseclient
skips them and the spec treats them as fields with unknown names, which are ignored as well.
"""

from __future__ import annotations

from typing import Iterable, Iterator, List, Optional

import sseclient

from ..events import FrozenValue

__all__ = ["SSEEvent", "SSEDecoder", "EventTooLarge", "iter_sse_events", "DEFAULT_MAX_EVENT_BYTES"]

# One event (its lines, comments included, up to the blank line that ends it) may be at most this big:
# a server that never sends a line end must not grow memory without bound.
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024


class EventTooLarge(ValueError):
    """An event grew past the decoder's cap before it ended; `size` bytes were seen of it."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"an SSE event grew past {limit:,} bytes without ending")
        self.size = size
        self.limit = limit

_BOM = b"\xef\xbb\xbf"
_COLON = 0x3A  # a line starting with ":" is a comment
# sseclient appends every `data` line with `str +=`; parsing at most this many lines per call keeps
# an event with thousands of `data` lines linear (the factor is bounded by this constant).
_MAX_DATA_LINES_PER_PARSE = 64
# A bare `data` line appended to every block: it adds "\n" to sseclient's data buffer, so sseclient
# always yields the event (its data buffer is never empty) and we can apply the spec's own dispatch
# rule, "if the data buffer is an empty string, ... return", while still seeing the event's `id`.
_SENTINEL_LINE = "data"


class SSEEvent(FrozenValue):
    """One dispatched event.

    `id` is the spec's last event ID: it persists across events until a later `id` field changes it;
    None when no id was ever set (or it was reset with an empty `id` field).
    """

    __slots__ = ("event", "data", "id")
    event: str
    data: str
    id: Optional[str]

    def __init__(self, event: str = "message", data: str = "", id: Optional[str] = None):
        _set(self, "event", event)
        _set(self, "data", data)
        _set(self, "id", id)


_set = object.__setattr__


class SSEDecoder:
    """Incremental SSE decoder: feed byte chunks as they arrive, get complete events back.

    Pure (no I/O). Every step is linear in the bytes fed, however they are split: pieces of an
    unfinished line are kept in a list and joined once when the line ends.
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._event_bytes = 0  # bytes of the event still open (since the last blank line)
        self.bytes_seen = 0
        self.events_seen = 0
        self.comments_seen = 0
        self.discarded_partial = False
        self.last_event_id: Optional[str] = None
        self._head: Optional[bytes] = b""  # first bytes until we know whether they are a BOM; then None
        self._line_parts: List[bytes] = []  # pieces of the current, unterminated line
        self._skip_lf = False  # the previous chunk ended with CR: an LF starting this one completes CRLF
        self._event_lines: List[str] = []  # decoded field lines of the current event (no comments)
        self._closed = False
        self._fields = _FieldParser()

    def feed(self, chunk: bytes) -> List[SSEEvent]:
        """Consume one network chunk; return the events it completed (possibly none)."""
        if self._closed:
            raise ValueError("SSEDecoder.feed() called after close()")
        self.bytes_seen += len(chunk)
        if not chunk:
            return []
        if self._head is not None:
            # The spec strips one leading BOM; it may itself arrive split across chunks.
            head = self._head + chunk  # at most 2 saved bytes: happens only at the start
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head
                return []
            self._head = None
            chunk = head[len(_BOM):] if head.startswith(_BOM) else head
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\n" not in chunk and b"\r" not in chunk:
            # Fast path for a chunk inside a line (e.g. a big event arriving in small pieces).
            if chunk:
                self._line_parts.append(chunk)
                self._event_bytes += len(chunk)
                if self._event_bytes > self.max_event_bytes:
                    raise EventTooLarge(self._event_bytes, self.max_event_bytes)
            return []

        events: List[SSEEvent] = []
        # bytes.splitlines() splits on exactly the spec's line ends (LF, CRLF, CR), nothing else.
        pieces = chunk.splitlines(True)
        last = len(pieces) - 1
        consumed = 0  # bytes of this chunk handled so far
        start = 0  # where in this chunk the open event began
        earlier = self._event_bytes  # bytes of the open event from earlier chunks
        for n, piece in enumerate(pieces):
            if piece.endswith(b"\r\n"):
                body = piece[:-2]
            elif piece.endswith((b"\n", b"\r")):
                body = piece[:-1]
                if n == last and piece[-1:] == b"\r":
                    # CR at the end of a chunk: if the next chunk starts with LF, it is the same
                    # line end (CRLF split across chunks), not an extra blank line.
                    self._skip_lf = True
            else:  # only the last piece can lack a line end
                self._line_parts.append(piece)
                break

            consumed += len(piece)
            if self._line_parts:
                self._line_parts.append(body)
                body = b"".join(self._line_parts)
                self._line_parts = []
            elif not body:
                # A blank line ends the event, whatever its size; check it before it is parsed.
                size = earlier + consumed - start
                if size > self.max_event_bytes:
                    raise EventTooLarge(size, self.max_event_bytes)
                earlier, start = 0, consumed
            event = self._end_line(body)
            if event is not None:
                events.append(event)
        self._event_bytes = earlier + len(chunk) - start
        if self._event_bytes > self.max_event_bytes:
            raise EventTooLarge(self._event_bytes, self.max_event_bytes)
        return events

    def close(self) -> List[SSEEvent]:
        """Signal end of input. Returns [] always: an event not ended by a blank line is discarded
        (spec: "Once the end of the file is reached, any pending data must be discarded"), and
        `discarded_partial` tells whether there was one."""
        if self._closed:
            return []
        self._closed = True
        partial_line_start = self._line_parts[0] if self._line_parts else (self._head or b"")
        # An unfinished comment line carries nothing; unfinished field lines or an event without
        # its blank line are a cut-off event.
        self.discarded_partial = bool(self._event_lines) or (
            bool(partial_line_start) and partial_line_start[0] != _COLON
        )
        self._line_parts = []
        self._event_lines = []
        self._head = None
        return []

    def _end_line(self, line: bytes) -> Optional[SSEEvent]:
        if not line:
            # A blank line dispatches the event. Only an empty line is blank: " " is a field line.
            if not self._event_lines:
                return None
            lines, self._event_lines = self._event_lines, []
            return self._dispatch(lines)
        if line[0] == _COLON:
            self.comments_seen += 1  # keep-alives such as ": OPENROUTER PROCESSING"; never parsed
            return None
        # Decode per line, after splitting: a multi-byte character never spans a line end, and
        # invalid bytes become U+FFFD instead of an exception (PROTOCOL.md §1).
        self._event_lines.append(line.decode("utf-8", "replace"))
        return None

    def _dispatch(self, lines: List[str]) -> Optional[SSEEvent]:
        event_type, event_id, data_buffer = self._fields.parse(lines)
        if event_id is not None:
            self.last_event_id = event_id or None
        # Spec, "dispatch the event": an empty data buffer dispatches nothing; otherwise drop the
        # buffer's final LF.
        if not data_buffer:
            return None
        self.events_seen += 1
        return SSEEvent(event=event_type or "message", data=data_buffer[:-1], id=self.last_event_id)


def iter_sse_events(
    chunks: Iterable[bytes], decoder: Optional[SSEDecoder] = None
) -> Iterator[SSEEvent]:
    """Yield the events of a byte stream as soon as each is complete.

    Pass `decoder` to read its counters (and `discarded_partial`) afterwards.
    """
    decoder = decoder if decoder is not None else SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.close()


def _field_name(line: str) -> str:
    # Spec: the field name is everything up to the first colon, or the whole line if it has none.
    colon = line.find(":")
    return line if colon < 0 else line[:colon]


class _Blocks:
    """A re-iterable event source: one SSEClient serves every event of a stream (constructing one
    per event costs more than parsing a typical one-line event)."""

    def __init__(self) -> None:
        self.items: List[bytes] = []

    def __iter__(self):
        return iter(self.items)


class _FieldParser:
    """Field-parses complete events with sseclient."""

    def __init__(self) -> None:
        self._blocks = _Blocks()
        self._client = sseclient.SSEClient(self._blocks)

    def parse(self, lines: List[str]):
        """Returns (event type, id or None when the event set none, data buffer).

        The data buffer is the spec's: every `data` value followed by "\\n", so "" means the event
        carried no data.
        """
        blocks = _blocks_for(lines)
        # Each block is a complete event (ends in a blank line) and, thanks to the sentinel line,
        # yields exactly one sseclient event.
        self._blocks.items = [
            "\n".join(block + [_SENTINEL_LINE]).encode("utf-8") + b"\n\n" for block in blocks]
        parsed = list(self._client.events())
        self._blocks.items = []
        if len(parsed) != len(blocks):  # would mean sseclient changed its dispatch rules
            raise RuntimeError("sseclient returned %d events for %d blocks"
                               % (len(parsed), len(blocks)))
        # sseclient strips one final "\n" from its buffer: that was the sentinel's, so what
        # remains is the spec's data buffer for the block.
        data_buffer = "".join(p.data for p in parsed)
        # sseclient maps an empty `event:` value to "message"; so does the spec at dispatch time.
        return parsed[0].event, parsed[0].id, data_buffer


def _blocks_for(lines: List[str]) -> List[List[str]]:
    """The event's lines, pre-normalised where sseclient needs help, in blocks to parse."""
    if any("\x00" in line for line in lines):
        # Spec: "If the field value does not contain U+0000 NULL, then set the last event ID
        # buffer to the field value. Otherwise, ignore the field." sseclient would keep it.
        lines = [ln for ln in lines if not ("\x00" in ln and _field_name(ln) == "id")]

    if len(lines) <= _MAX_DATA_LINES_PER_PARSE:
        return [lines]
    # Many lines: keep sseclient linear by parsing `data` lines in bounded groups and joining the
    # groups' buffers ourselves. Of the other fields only the last `event` and the last `id`
    # matter (each assignment replaces the previous one), so one small first block carries them.
    data_lines = [ln for ln in lines if _field_name(ln) == "data"]
    last_of = {}
    for ln in lines:
        name = _field_name(ln)
        if name in ("event", "id"):
            last_of[name] = ln
    blocks = [list(last_of.values())]
    blocks += [
        data_lines[i:i + _MAX_DATA_LINES_PER_PARSE]
        for i in range(0, len(data_lines), _MAX_DATA_LINES_PER_PARSE)
    ]
    return blocks
