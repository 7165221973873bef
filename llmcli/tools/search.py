"""web_search: ask a search API (Brave Search, or a SearXNG instance) for the top results; with
neither configured, DuckDuckGo's keyless HTML endpoint (labelled as such in the result).

Why not the `ddgs` package for the keyless backend: its engines report any non-200 answer as "no
results" (`BaseSearchEngine.request` returns None), so DuckDuckGo's rate-limit answers (HTTP 202
with a challenge page, 403, 429) could not become the clear tool error they must be; its endpoint is
a class attribute, not a setting, so tests could only reach a local stand-in by patching internals;
its default "auto" backend fans the query out to Bing, Google, Yandex and others, which is not what
a "DuckDuckGo" label promises; and it brings primp (a Rust HTTP client that impersonates browsers)
and lxml. The endpoint is one small HTML page: requests (already a dependency), the same timeouts
and size cap as the other backends, and the stdlib HTML parser do it.

The backend URL is one the user configured, so unlike web_fetch it is not put through the
private-address guard (a self-hosted SearXNG on localhost is a normal set-up). The API key never
appears in a message: every error text is built here from the status and the backend's name.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import List
from urllib.parse import urlsplit

from ..errors import ToolError, network_error
from ..status import ExitStatus
from .base import Tool, ToolSettings

MAX_COUNT = 10
NOT_CONFIGURED = ("web_search is not configured: set BRAVE_API_KEY or "
                  "tools.web_search.brave_api_key, or tools.web_search.searxng_url in the config file")
DUCKDUCKGO = "DuckDuckGo"
KEYLESS_LABEL = "Results from DuckDuckGo (keyless search: no Brave or SearXNG configured)"
BACKENDS = ("brave", "searxng", "duckduckgo", "off")


@dataclass
class SearchResult:
    title: str
    url: str
    snippet: str
    source: str = ""  # "duckduckgo" for the keyless backend, so every output can say where results came from


class WebSearchTool(Tool):
    name = "web_search"
    description = (
        "Search the web. Returns a numbered list of results, each with title, URL and a short "
        "snippet. Use web_fetch to read a result in full."
    )
    parameters = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to search for"},
            "count": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT, "default": 5,
                      "description": "How many results to return (1-10, default 5)"},
        },
        "required": ["query"],
    }

    def invoke(self, args: dict, settings: ToolSettings) -> str:
        results = search(args["query"], args["count"], settings)
        text = format_results(args["query"], results)
        if pick_backend(settings) == "duckduckgo":
            text = f"{KEYLESS_LABEL}:\n{text}"
        return text


def format_results(query: str, results: List[SearchResult]) -> str:
    """`1. Title\\n   URL\\n   snippet`, one entry per result."""
    if not results:
        return f"No results for {query!r}."
    entries = []
    for number, result in enumerate(results, 1):
        lines = [f"{number}. {result.title or result.url}", f"   {result.url}"]
        if result.snippet:
            lines.append(f"   {result.snippet}")
        entries.append("\n".join(lines))
    return "\n".join(entries)


def search(query: str, count: int, settings: ToolSettings) -> List[SearchResult]:
    """The top `count` results for `query` from the configured backend."""
    if not 1 <= count <= MAX_COUNT:
        raise ToolError(f"web_search: count must be an integer from 1 to {MAX_COUNT}, got {count}")
    backend = pick_backend(settings)
    try:
        if backend == "brave":
            return _brave(query, count, settings)
        if backend == "duckduckgo":
            return _duckduckgo(query, count, settings)
        return _searxng(query, count, settings)
    except ToolError as exc:
        # Belt and braces: no message may carry the key, whatever produced it.
        key = settings.brave_api_key
        if key and key in str(exc):
            raise ToolError(str(exc).replace(key, "***")) from None
        raise


def pick_backend(settings: ToolSettings) -> str:
    """"brave", "searxng" or "duckduckgo", from search_backend or from which one is configured
    (DuckDuckGo, which needs no key, when neither is; `backend: off` turns that off)."""
    backend = (settings.search_backend or "").strip().lower() or None
    if backend is None:
        if settings.brave_api_key:
            return "brave"
        if settings.searxng_url:
            return "searxng"
        return "duckduckgo"
    if backend == "brave":
        if not settings.brave_api_key:
            raise ToolError("web_search is set to use Brave Search but has no API key: set "
                            "BRAVE_API_KEY or tools.web_search.brave_api_key in the config file")
        return backend
    if backend == "searxng":
        if not settings.searxng_url:
            raise ToolError("web_search is set to use SearXNG but has no instance URL: set "
                            "tools.web_search.searxng_url in the config file")
        return backend
    if backend in ("duckduckgo", "ddg"):
        return "duckduckgo"
    if backend in ("off", "none"):
        raise ToolError(NOT_CONFIGURED + " (tools.web_search.backend is off)")
    raise ToolError(f"unknown web_search backend {settings.search_backend!r}: "
                    f"use {', '.join(BACKENDS)} (tools.web_search.backend)")


def _brave(query: str, count: int, settings: ToolSettings) -> List[SearchResult]:
    # https://api-dashboard.search.brave.com/app/documentation/web-search/get-started
    data = _get_json(
        "Brave Search", settings.brave_url, {"q": query, "count": count},
        {"Accept": "application/json", "X-Subscription-Token": settings.brave_api_key},
        settings,
    )
    web = data.get("web") if isinstance(data, dict) else None
    items = web.get("results") if isinstance(web, dict) else None
    return _results(items, "description", count)


def _searxng(query: str, count: int, settings: ToolSettings) -> List[SearchResult]:
    # https://docs.searxng.org/dev/search_api.html; the instance must enable the json format.
    url = settings.searxng_url.rstrip("/") + "/search"
    data = _get_json("SearXNG", url, {"q": query, "format": "json"},
                     {"Accept": "application/json"}, settings)
    items = data.get("results") if isinstance(data, dict) else None
    return _results(items, "content", count)


def _results(items, snippet_key: str, count: int) -> List[SearchResult]:
    results = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            continue
        results.append(SearchResult(
            title=clean_snippet(item.get("title")),
            url=item["url"].strip(),
            snippet=clean_snippet(item.get(snippet_key)),
        ))
        if len(results) == count:
            break
    return results


def clean_snippet(value) -> str:
    """Plain text from a result field: tags such as Brave's <strong> removed, entities decoded."""
    import html

    if not isinstance(value, str):
        return ""
    text = html.unescape(re.sub(r"<[^>]*>", "", value))
    return " ".join(text.split())


def _duckduckgo(query: str, count: int, settings: ToolSettings) -> List[SearchResult]:
    # The HTML endpoint (no JavaScript): a form POST of q, as its own search box sends it.
    body, content_type = _get_body(DUCKDUCKGO, settings.duckduckgo_url, {}, {"Accept": "text/html"}, settings,
                                   data={"q": query, "b": ""}, status_message=_duckduckgo_status)
    text = body.decode("utf-8", "replace")
    if "anomaly-modal" in text or "challenge-form" in text:
        raise ToolError(f"{DUCKDUCKGO} (keyless) answered with a bot challenge instead of results: it is "
                        "rate-limiting this address; try again later, or configure Brave Search "
                        "(BRAVE_API_KEY) or SearXNG (tools.web_search.searxng_url)", exit_status=ExitStatus.HTTP)
    results = []
    for item in parse_duckduckgo_html(text):
        item.source = "duckduckgo"
        results.append(item)
        if len(results) == count:
            break
    return results


def _duckduckgo_status(service: str, status: int, headers) -> str:
    if status in (202, 403, 418, 429):
        # 202 with a challenge page is how DuckDuckGo's HTML endpoint says "slow down"; 403 is a block.
        return (f"{service} (keyless) refused the search (HTTP {status}): it is rate-limiting or blocking "
                "automated searches from this address; "
                "try again later, or configure Brave Search (BRAVE_API_KEY) or SearXNG "
                "(tools.web_search.searxng_url)")
    return _status_message(service, status, headers)


def parse_duckduckgo_html(text: str) -> List[SearchResult]:
    """The organic results of a DuckDuckGo HTML results page (ads left out)."""
    from html.parser import HTMLParser
    from urllib.parse import parse_qs

    class Parser(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.results: List[SearchResult] = []
            self.field = None  # "title" | "snippet" while inside one
            self.depth = 0
            self.parts: List[str] = []
            self.ad_depth = None
            self.stack_depth = 0

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            classes = (attrs.get("class") or "").split()
            if tag in ("div", "article", "li"):
                self.stack_depth += 1
                if "result--ad" in classes and self.ad_depth is None:
                    self.ad_depth = self.stack_depth
            if self.ad_depth is not None:
                return
            if self.field is not None:
                self.depth += 1
                return
            if tag == "a" and "result__a" in classes:
                href = attrs.get("href") or ""
                if href.startswith("//"):
                    href = "https:" + href
                target = parse_qs(urlsplit(href).query).get("uddg") if "duckduckgo.com/l/" in href else None
                url = target[0] if target else href
                if url.startswith(("http://", "https://")) and "duckduckgo.com/y.js" not in url:
                    self.results.append(SearchResult(title="", url=url.strip(), snippet=""))
                    self.field, self.depth, self.parts = "title", 0, []
            elif "result__snippet" in classes and self.results and not self.results[-1].snippet:
                self.field, self.depth, self.parts = "snippet", 0, []

        def handle_endtag(self, tag):
            if tag in ("div", "article", "li"):
                if self.ad_depth is not None and self.stack_depth == self.ad_depth:
                    self.ad_depth = None
                self.stack_depth -= 1
            if self.field is None:
                return
            if self.depth:
                self.depth -= 1
                return
            value = " ".join("".join(self.parts).split())
            setattr(self.results[-1], self.field, value)
            self.field = None

        def handle_data(self, data):
            if self.field is not None:
                self.parts.append(data)

    parser = Parser()
    parser.feed(text)
    parser.close()
    return [r for r in parser.results if r.url]


def _get_json(service: str, url: str, params: dict, headers: dict, settings: ToolSettings):
    body, content_type = _get_body(service, url, params, headers, settings)
    try:
        return _json_loads(body)
    except ValueError:
        kind = content_type.split(";")[0].strip() or "no content type"
        raise ToolError(f"{service} returned a response that is not JSON ({kind})") from None


def _get_body(service: str, url: str, params: dict, headers: dict, settings: ToolSettings,
              data=None, status_message=None):
    """GET (or, with `data`, POST a form) and return (body bytes, content type), within the timeouts and size cap."""
    import requests

    where = _display(url)
    headers = {"User-Agent": settings.user_agent, **headers}
    deadline = time.monotonic() + settings.timeout * 2
    try:
        with requests.request("POST" if data is not None else "GET", url, params=params, data=data,
                              headers=headers, stream=True,
                              timeout=(settings.timeout, settings.timeout)) as response:
            status = response.status_code
            if status != 200:
                _drain(response)
                raise ToolError((status_message or _status_message)(service, status, response.headers),
                                exit_status=ExitStatus.HTTP)
            chunks, size = [], 0
            for chunk in response.iter_content(64 * 1024):
                chunks.append(chunk)
                size += len(chunk)
                if size > settings.max_bytes:
                    raise ToolError(f"{service} answered with more than {settings.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise requests.Timeout()
            body = b"".join(chunks)
            content_type = response.headers.get("Content-Type", "")
    except requests.Timeout:
        raise network_error(f"{service} did not answer within {settings.timeout:g} s ({where})") from None
    except requests.ConnectionError:
        raise network_error(f"could not connect to {service} at {where}") from None
    except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidURL):
        raise ToolError(f"the {service} URL is not a valid http(s) URL: {where}") from None
    except requests.RequestException as exc:
        raise network_error(f"{service} request failed: {type(exc).__name__}") from None
    return body, content_type


def _drain(response, limit: int = 64 * 1024) -> None:
    """Read a small error body so the connection closes cleanly (unread data makes a reset)."""
    size = 0
    for chunk in response.iter_content(8192):
        size += len(chunk)
        if size >= limit:
            break


def _json_loads(body: bytes):
    import json

    return json.loads(body.decode("utf-8-sig"))


def _status_message(service: str, status: int, headers) -> str:
    if status in (401, 403):
        if service == "SearXNG":
            return (f"SearXNG refused the request (HTTP {status}); the instance must allow the "
                    "JSON API (add json to search.formats in its settings.yml)")
        return (f"{service} rejected the API key (HTTP {status}): check BRAVE_API_KEY or "
                "tools.web_search.brave_api_key")
    if status == 429:
        wait = headers.get("Retry-After")
        hint = f"; retry after {wait} s" if wait and wait.strip().isdigit() else ""
        return f"{service} rate limit reached (HTTP 429){hint}"
    if status >= 500:
        return f"{service} failed with a server error (HTTP {status}); try again later"
    return f"{service} answered HTTP {status}"


def _display(url: str) -> str:
    """scheme://host[:port]/path of a URL, without credentials or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"
