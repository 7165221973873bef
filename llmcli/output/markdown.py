"""Streaming Markdown for the terminal: raw text as it arrives, then each finished line restyled in place.

Why line-based instead of re-rendering the whole answer (rich's Live): the answer keeps streaming with
no flicker, scrollback stays intact for long answers, and the cost per delta is constant. A finished
line is rewritten by moving the cursor up over the rows it wrapped to (display width via wcwidth) and
printing the styled version. Only used when stdout is a terminal and colour is allowed.
"""

from __future__ import annotations

import re
from typing import List

BOLD = "\x1b[1m"
ITALIC = "\x1b[3m"
UNDERLINE = "\x1b[4m"
DIM = "\x1b[2m"
CYAN = "\x1b[36m"
GREEN = "\x1b[32m"
MAGENTA = "\x1b[35m"
RESET = "\x1b[0m"

_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![\*\w])([*_])(?=\S)([^*_\n]+?)(?<=\S)\1(?![\*\w])")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^(\s*)([-*+])\s+(.*)$")
_NUMBERED = re.compile(r"^(\s*)(\d+[.)])\s+(.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)(.*)$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")


def display_width(text: str) -> int:
    try:
        from wcwidth import wcswidth
    except ImportError:  # prompt_toolkit depends on wcwidth; this is belt and braces
        return len(text)
    width = wcswidth(text)
    return width if width >= 0 else len(text)


def style_inline(text: str) -> str:
    # Inline code first, protected from the other rules.
    codes: List[str] = []

    def keep_code(m):
        codes.append(f"{CYAN}{m.group(1)}{RESET}")
        return f"\x00{len(codes) - 1}\x00"

    text = _INLINE_CODE.sub(keep_code, text)
    text = _LINK.sub(lambda m: f"{UNDERLINE}{m.group(1)}{RESET} {DIM}({m.group(2)}){RESET}", text)
    text = _BOLD.sub(lambda m: f"{BOLD}{m.group(2)}{RESET}", text)
    text = _ITALIC.sub(lambda m: f"{ITALIC}{m.group(2)}{RESET}", text)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)


class MarkdownStyler:
    """Turns one finished line into its styled form; remembers whether we are inside a code fence."""

    def __init__(self):
        self.in_code = False

    def style(self, line: str) -> str:
        fence = _FENCE.match(line)
        if fence:
            self.in_code = not self.in_code
            label = fence.group(2).strip()
            return f"{DIM}{'─' * 3} {label}{RESET}" if label or self.in_code else f"{DIM}{'─' * 3}{RESET}"
        if self.in_code:
            return f"{GREEN}{line}{RESET}"
        m = _HEADING.match(line)
        if m:
            return f"{BOLD}{UNDERLINE if len(m.group(1)) <= 2 else ''}{style_inline(m.group(2))}{RESET}"
        if _RULE.match(line):
            return f"{DIM}{'─' * 40}{RESET}"
        m = _BULLET.match(line)
        if m:
            return f"{m.group(1)}{MAGENTA}•{RESET} {style_inline(m.group(3))}"
        m = _NUMBERED.match(line)
        if m:
            return f"{m.group(1)}{MAGENTA}{m.group(2)}{RESET} {style_inline(m.group(3))}"
        if line.startswith(">"):
            return f"{DIM}│{RESET} {ITALIC}{style_inline(line[1:].lstrip())}{RESET}"
        return style_inline(line)


class MarkdownStream:
    """Writes deltas raw, then replaces each completed line with its styled version."""

    def __init__(self, out, columns: int):
        self.out = out
        self.columns = max(columns, 10)
        self.styler = MarkdownStyler()
        self.line: List[str] = []

    def write(self, text: str) -> None:
        while text:
            nl = text.find("\n")
            if nl < 0:
                self.out.write(text)
                self.line.append(text)
                return
            piece, text = text[:nl], text[nl + 1:]
            self.out.write(piece)
            self.line.append(piece)
            self._restyle()
            self.out.write("\n")

    def finish(self) -> None:
        if self.line:
            self._restyle()

    def _restyle(self) -> None:
        raw = "".join(self.line)
        self.line = []
        styled = self.styler.style(raw)
        if styled == raw:
            return
        rows = max(1, -(-display_width(raw) // self.columns))  # ceil: rows the raw line wrapped to
        # Back to the start of the raw line, clear to the end of the screen, print the styled line.
        up = f"\x1b[{rows - 1}A" if rows > 1 else ""
        self.out.write(f"\r{up}\x1b[J{styled}")
