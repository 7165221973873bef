"""`-x/--extract`: the first (or last, or first of a language) fenced code block of an answer."""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

# A fence is ``` or ~~~ (three or more) at the start of a line, with an optional info string; the block
# ends at a closing fence of the same character and at least the same length, or at the end of the
# answer (a reply cut off by max_tokens still has its code). CommonMark §4.5.
_OPEN = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*$", re.M)

LANG_ALIASES = {
    "py": "python", "python3": "python", "js": "javascript", "ts": "typescript", "sh": "shell",
    "bash": "shell", "zsh": "shell", "console": "shell", "yml": "yaml", "rb": "ruby", "rs": "rust",
    "c++": "cpp", "cc": "cpp", "golang": "go", "md": "markdown", "ps1": "powershell",
}


def _canonical(lang: str) -> str:
    lang = lang.lower().strip().lstrip(".")
    return LANG_ALIASES.get(lang, lang)


def code_blocks(text: str) -> List[Tuple[str, str]]:
    """Every fenced block as (language, code), in order."""
    blocks = []
    pos = 0
    while True:
        m = _OPEN.search(text, pos)
        if not m:
            return blocks
        fence, lang = m.group(1), m.group(2)
        body_start = m.end() + 1
        close = re.compile(r"^[ ]{0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$", re.M)
        c = close.search(text, body_start) if body_start <= len(text) else None
        if c is None:
            blocks.append((lang, text[body_start:]))
            return blocks
        blocks.append((lang, text[body_start:c.start()].rstrip("\n")))
        pos = c.end()


def extract_code(text: str, last: bool = False, lang: Optional[str] = None) -> Optional[str]:
    """The chosen block's code (ending in a newline), or None when there is none."""
    blocks = code_blocks(text)
    if lang:
        want = _canonical(lang)
        blocks = [b for b in blocks if _canonical(b[0]) == want]
    if not blocks:
        return None
    code = (blocks[-1] if last else blocks[0])[1]
    return code.rstrip("\n") + "\n"
