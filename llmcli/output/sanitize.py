"""The terminal sanitizer: the one filter between bytes from outside and a terminal.

A hostile server (or web page, or tool result) must not drive the user's terminal: OSC 52 writes the
clipboard, OSC 0 sets the window title, OSC 8 plants links, CSI clears the screen and moves the cursor
to draw a fake prompt, a bare CR or backspaces overwrite what was shown. curl, less and git treat such
bytes as untrusted on a terminal; so does llmcli.

The choice: controls are *shown*, not dropped, so the user sees that something was there and nothing is
silently lost.

  ESC and the other C0 controls    caret notation: ESC → ``^[``, BEL → ``^G``, BS → ``^H``, DEL → ``^?``
  bare CR (not followed by LF)     ``^M``  (CRLF stays CRLF: it overwrites nothing)
  C1 controls U+0080–U+009F        ``<U+009B>``  (U+009B is a one-character CSI on many terminals)
  bidi overrides (``bidi=True``)   ``<U+202E>``  (for the tool-confirm prompt and ``[tool]`` lines)

Text, ``\\n`` and ``\\t`` pass unchanged, and llmcli's own styling is added *after* sanitizing, so it stays.
Because every introducer (ESC, U+009B, …) is neutralised on its own, a sequence split across two deltas is
harmless too: its head is already visible text. The one thing that needs state is CR: a CR at the end of
one delta is held until the next tells whether LF follows.

Pipes and files never pass through here: they keep the answer's exact bytes, as `cat` does.
"""

import re

# Every C0 control but TAB and LF, DEL, and the C1 range.  CR is handled separately (CRLF is fine).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f\x80-\x9f]")
_BARE_CR = re.compile("\r(?!\n)")
# Bidi embeddings/overrides/isolates and the marks that reorder what a prompt appears to say.
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")


def _show(match) -> str:
    ch = match.group(0)
    code = ord(ch)
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return f"<U+{code:04X}>"


def sanitize(text: str, bidi: bool = False) -> str:
    """The whole of ``text`` made safe for a terminal (for complete strings: messages, names, lines)."""
    if not text:
        return text
    text = _BARE_CR.sub("^M", text)
    text = _CONTROLS.sub(_show, text)
    if bidi:
        text = _BIDI.sub(_show, text)
    return text


class StreamSanitizer:
    """Stateful ``sanitize`` for a stream of deltas: a CR that ends one delta is held until the next."""

    def __init__(self, bidi: bool = False):
        self.bidi = bidi
        self._pending_cr = False

    def feed(self, text: str) -> str:
        if not text:
            return text
        if self._pending_cr:
            text = "\r" + text
            self._pending_cr = False
        if text.endswith("\r"):
            self._pending_cr = True
            text = text[:-1]
        return sanitize(text, self.bidi)

    def finish(self) -> str:
        """What is still held (a CR at the very end, shown as ``^M``)."""
        if self._pending_cr:
            self._pending_cr = False
            return "^M"
        return ""


class SafeStream:
    """A file-like wrapper that sanitizes everything written through it (for a terminal)."""

    def __init__(self, stream, bidi: bool = False):
        self._stream = stream
        self._san = StreamSanitizer(bidi)

    def write(self, text):
        return self._stream.write(self._san.feed(text))

    def flush(self):
        return self._stream.flush()

    def isatty(self):
        return self._stream.isatty()

    def __getattr__(self, name):
        return getattr(self._stream, name)
