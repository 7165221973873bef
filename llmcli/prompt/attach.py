"""Attachments (`-a/--attach PATH|URL|-`, `/attach` in chat): images, PDFs and audio as content parts.

The type comes from the bytes, never from the name (a `.png` that is a JPEG is sent as JPEG; a text
file named `x.png` is refused). Shapes follow the OpenAI chat-completions content parts:

* image → `{"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}` (a URL attachment
  is passed through as the URL itself unless it is downloaded first, `--attach-inline`);
* PDF → `{"type": "file", "file": {"filename": NAME, "file_data": "data:application/pdf;base64,…"}}`,
  or with `--pdf-text` the text extracted locally (pypdf, imported only then) as a fenced block;
* audio (wav, mp3) → `{"type": "input_audio", "input_audio": {"data": BASE64, "format": "wav"}}`.

No imaging library is a dependency, so an image over the limit is refused with the limit named rather
than downscaled. Downloading is not done here (prompt/ must not import tools/): the caller passes a
`fetch(url) -> (bytes, content_type)` that goes through web_fetch's SSRF guard.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

from ..errors import InputError

# Provider limits are of this order (OpenAI: 20 MB per image, 32 MB per PDF, 25 MB per audio file).
MAX_IMAGE_BYTES = 20_000_000
MAX_PDF_BYTES = 32_000_000
MAX_AUDIO_BYTES = 25_000_000
MAX_PDF_TEXT_CHARS = 2_000_000

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")

Fetch = Callable[[str], Tuple[bytes, Optional[str]]]


@dataclass(frozen=True)
class Attachment:
    """One attachment, ready to send: its content part (or a text block) and what `--json` records."""

    name: str
    media_type: str
    size: Optional[int]  # None for a URL passed through
    sha256: Optional[str]
    part: Optional[dict] = None  # a content part for the user message
    text_block: Optional[str] = None  # --pdf-text: a fenced block instead of a part

    @property
    def kind(self) -> str:
        if self.media_type.startswith("image/"):
            return "image"
        if self.media_type.startswith("audio/"):
            return "audio"
        return "pdf" if self.text_block is None else "pdf-text"

    def record(self) -> dict:
        """For `--json` and the conversation log: never the bytes."""
        return {"name": self.name, "type": self.media_type, "size": self.size, "sha256": self.sha256}


def sniff(data: bytes) -> Optional[str]:
    """The media type of a supported attachment from its first bytes, or None."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    # MP3: an ID3v2 tag, or an MPEG audio frame header (11 sync bits, layer III).
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE6) == 0xE2):
        return "audio/mpeg"
    return None


def is_url(spec: str) -> bool:
    return spec.lower().startswith(("http://", "https://"))


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _limit_for(media_type: str) -> Tuple[int, str]:
    if media_type.startswith("image/"):
        return MAX_IMAGE_BYTES, "images"
    if media_type.startswith("audio/"):
        return MAX_AUDIO_BYTES, "audio"
    return MAX_PDF_BYTES, "PDFs"


def from_bytes(name: str, data: bytes, pdf_text: bool = False) -> Attachment:
    """An attachment from its bytes: sniffed, size-checked, shaped."""
    media_type = sniff(data)
    if media_type is None:
        raise InputError(f"{name}: not an image, PDF or audio file (png, jpeg, webp, gif, pdf, wav, mp3 are "
                         "recognised by their bytes); for a text file use -f")
    limit, what = _limit_for(media_type)
    if len(data) > limit:
        extra = " (no image library is installed to shrink it; resize it first)" if what == "images" else ""
        raise InputError(f"{name}: {len(data):,} bytes is over the {limit:,}-byte limit for {what}{extra}")
    digest = hashlib.sha256(data).hexdigest()
    base = os.path.basename(name) or name
    if media_type.startswith("image/"):
        part = {"type": "image_url", "image_url": {"url": data_url(media_type, data)}}
        return Attachment(name, media_type, len(data), digest, part=part)
    if media_type.startswith("audio/"):
        fmt = "wav" if media_type == "audio/wav" else "mp3"
        part = {"type": "input_audio",
                "input_audio": {"data": base64.b64encode(data).decode("ascii"), "format": fmt}}
        return Attachment(name, media_type, len(data), digest, part=part)
    if pdf_text:
        return Attachment(name, media_type, len(data), digest, text_block=pdf_text_block(name, data))
    part = {"type": "file", "file": {"filename": base, "file_data": data_url(media_type, data)}}
    return Attachment(name, media_type, len(data), digest, part=part)


def pdf_text_block(name: str, data: bytes) -> str:
    """The PDF's text as a fenced block headed by its name (pypdf, imported only here)."""
    from .history import format_file_block

    try:
        import io

        from pypdf import PdfReader
    except ImportError:
        raise InputError("--pdf-text needs pypdf: pip install 'llmcli[pdf]'") from None
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as exc:  # pypdf raises many types for broken files
        raise InputError(f"{name}: cannot read the PDF: {type(exc).__name__}: {exc}") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise InputError(f"{name}: the PDF has no extractable text (a scan?); send it without --pdf-text")
    if len(text) > MAX_PDF_TEXT_CHARS:
        raise InputError(f"{name}: the PDF's text is {len(text):,} characters, over the "
                         f"{MAX_PDF_TEXT_CHARS:,}-character limit")
    return format_file_block(name, text)


def load_attachment(spec: str, read_stdin: Callable[[], bytes], fetch: Optional[Fetch] = None,
                    inline: bool = False, pdf_text: bool = False) -> Attachment:
    """PATH, URL or '-' (stdin) → Attachment. A URL is passed through unless `inline` (then `fetch`)."""
    from .history import read_file_bytes

    if spec == "-":
        return from_bytes("stdin", read_stdin(), pdf_text)
    if is_url(spec):
        if not inline:
            # The chat-completions API takes URLs for images only; the server downloads it.
            path = spec.split("?", 1)[0].split("#", 1)[0].lower()
            if path.endswith((".pdf", ".wav", ".mp3")):
                raise InputError(f"{spec}: only image URLs can be passed to the server as URLs; "
                                 "add --attach-inline to download it here and send the bytes")
            return Attachment(spec, "image/url", None, None, part={"type": "image_url", "image_url": {"url": spec}})
        if fetch is None:
            raise InputError(f"{spec}: cannot download attachments here")
        data, _content_type = fetch(spec)
        return from_bytes(spec, data, pdf_text)
    return from_bytes(spec, read_file_bytes(os.path.expanduser(spec)), pdf_text)


def user_content(text: Optional[str], attachments: Sequence[Attachment]) -> Union[str, List[dict], None]:
    """The user message's content: a string when only text goes, else text part first, then each part.

    `--pdf-text` blocks come before the text, as `-f` files do.
    """
    blocks = [a.text_block for a in attachments if a.text_block is not None]
    if blocks:
        text = "\n\n".join(blocks + ([text] if text else []))
    parts = [a.part for a in attachments if a.part is not None]
    if not parts:
        return text
    content: List[dict] = []
    if text:
        content.append({"type": "text", "text": text})
    content.extend(parts)
    return content


def has_binary_parts(messages: Sequence[dict]) -> bool:
    """Whether any message carries an image, file or audio part (for explaining a 400)."""
    for m in messages:
        content = m.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") != "text" for p in content):
            return True
    return False


# --------------------------------------------------------------------------------------------
# the conversation log keeps references, not bytes (issue 17)

KEPT_NOTE = "[attachment not kept in the conversation log: {name} ({type}, {size:,} bytes, sha256 {sha256})]"


def _inline_bytes(part: dict) -> Optional[Tuple[str, str, Optional[str]]]:
    """(media type, base64 data, file name) of a content part that carries bytes, else None."""
    kind = part.get("type")
    if kind == "image_url":
        url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
        if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
            head, data = url.split(",", 1)
            return head[5:].split(";", 1)[0], data, None
    elif kind == "file" and isinstance(part.get("file"), dict):
        data_url_ = part["file"].get("file_data")
        if isinstance(data_url_, str) and data_url_.startswith("data:") and ";base64," in data_url_:
            head, data = data_url_.split(",", 1)
            return head[5:].split(";", 1)[0], data, part["file"].get("filename")
    elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
        data = part["input_audio"].get("data")
        if isinstance(data, str):
            fmt = part["input_audio"].get("format")
            return ("audio/wav" if fmt == "wav" else "audio/mpeg"), data, None
    return None


def detach_parts(messages: Sequence[dict], records: Sequence[dict] = ()) -> Tuple[List[dict], List[dict]]:
    """(messages with every inline attachment replaced by a text note, a record of each one replaced).

    The note names the attachment (name, type, size, sha256) so that a conversation read back from the
    log (`-c`, `logs show --messages`) is still a valid request that tells the model an attachment was
    there; its bytes were never stored, so a continued conversation does not re-send them. `records`
    (Attachment.record()) give the names; a part that matches none is named by its file name or kind.
    """
    names = {r.get("sha256"): r.get("name") for r in records if isinstance(r, dict) and r.get("sha256")}
    out: List[dict] = []
    found: List[dict] = []
    for msg in messages:
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list) or not any(isinstance(p, dict) and _inline_bytes(p) for p in content):
            out.append(msg)
            continue
        parts = []
        for part in content:
            inline = _inline_bytes(part) if isinstance(part, dict) else None
            if inline is None:
                parts.append(part)
                continue
            media_type, data, filename = inline
            try:
                raw = base64.b64decode(data, validate=False)
            except ValueError:
                raw = data.encode("ascii", "replace")
            digest = hashlib.sha256(raw).hexdigest()
            record = {"name": names.get(digest) or filename or part.get("type"), "type": media_type,
                      "size": len(raw), "sha256": digest}
            found.append(record)
            parts.append({"type": "text", "text": KEPT_NOTE.format(**record)})
        out.append({**msg, "content": parts})
    return out, found
