"""web_search: ask a search API (Brave Search, or a SearXNG instance) for the top results.

The backend URL is one the user configured, so unlike web_fetch it is not put through the
private-address guard (a self-hosted SearXNG on localhost is a normal set-up). The API key never
appears in a message: every error text is built here from the status and the backend's name.
"""

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


@dataclass
class SearchResult:
    title: str
    url: str
    snippet: str


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
        return format_results(args["query"], results)


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
        return _searxng(query, count, settings)
    except ToolError as exc:
        # Belt and braces: no message may carry the key, whatever produced it.
        key = settings.brave_api_key
        if key and key in str(exc):
            raise ToolError(str(exc).replace(key, "***")) from None
        raise


def pick_backend(settings: ToolSettings) -> str:
    """"brave" or "searxng", from search_backend or from which one is configured."""
    backend = (settings.search_backend or "").strip().lower() or None
    if backend is None:
        if settings.brave_api_key:
            return "brave"
        if settings.searxng_url:
            return "searxng"
        raise ToolError(NOT_CONFIGURED)
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
    raise ToolError(f"unknown web_search backend {settings.search_backend!r}: "
                    "use brave or searxng (tools.web_search.backend)")


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


def _get_json(service: str, url: str, params: dict, headers: dict, settings: ToolSettings):
    import requests

    where = _display(url)
    headers = {"User-Agent": settings.user_agent, **headers}
    deadline = time.monotonic() + settings.timeout * 2
    try:
        with requests.get(url, params=params, headers=headers, stream=True,
                          timeout=(settings.timeout, settings.timeout)) as response:
            status = response.status_code
            if status != 200:
                _drain(response)
                raise ToolError(_status_message(service, status, response.headers), exit_status=ExitStatus.HTTP)
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
    try:
        return _json_loads(body)
    except ValueError:
        kind = content_type.split(";")[0].strip() or "no content type"
        raise ToolError(f"{service} returned a response that is not JSON ({kind})") from None


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
