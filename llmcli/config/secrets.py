"""The one rule for what is secret, used by everything that prints, logs or records a request.

A header is secret when its name is one of the known credential headers or contains one of the words
below (so X-Api-Key, X-Subscription-Token, Private-Token, X-Auth-Token, Api-Token, Cookie and
Set-Cookie are all caught, and a new provider's header most likely too). A URL's password
(`https://user:pass@host/…`) is secret. A key a server echoes back in an error message is scrubbed
from the text before it is shown, recorded or replayed.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Optional

REDACTED = "<redacted>"
SECRET_HEADER_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
SECRET_WORDS = ("key", "token", "secret", "auth", "password", "passwd", "session", "cookie", "credential")
# Shorter values are not scrubbed from text: "abc" would blank out ordinary words.
MIN_SCRUB_LENGTH = 8

_USERINFO = re.compile(r"(?<=//)[^/@\s]*@")


def is_secret_header(name: str) -> bool:
    lowered = str(name).lower()
    return lowered in SECRET_HEADER_NAMES or any(word in lowered for word in SECRET_WORDS)


def redact_headers(headers: Mapping) -> dict:
    return {k: (REDACTED if is_secret_header(k) else v) for k, v in dict(headers).items()}


def redact_url(url: Optional[str]) -> Optional[str]:
    """A URL as it may be shown: any `user:password@` becomes `***@`."""
    if not url:
        return url
    return _USERINFO.sub("***@", str(url))


def secret_values(api_key: Optional[str] = None, headers: Iterable = ()) -> list:
    """The strings to scrub from anything shown: the key and the values of secret headers."""
    values = [str(api_key)] if api_key else []
    for name, value in (headers.items() if isinstance(headers, Mapping) else headers):
        if is_secret_header(name) and value:
            value = str(value)
            values.append(value)
            if " " in value:  # "Bearer sk-…": the credential alone may be echoed too
                values.append(value.split(" ", 1)[1])
    return [v for v in dict.fromkeys(values) if len(v) >= MIN_SCRUB_LENGTH]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by <redacted>, and URL passwords hidden."""
    if not text:
        return text
    for value in sorted(secrets, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return redact_url(text)


def scrub_bytes(data: bytes, secrets: Iterable[str]) -> bytes:
    for value in sorted(secrets, key=len, reverse=True):
        raw = value.encode("utf-8")
        if raw in data:
            data = data.replace(raw, REDACTED.encode("ascii"))
    return data
