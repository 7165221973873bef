"""web_search against real local HTTP servers standing in for Brave Search and SearXNG."""

import json
import socket
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from localserver import Reply

from llmcli.errors import ToolError
from llmcli.tools import BUILTIN_TOOLS, ToolSettings, get_tool
from llmcli.tools.search import NOT_CONFIGURED, SearchResult, format_results, search

KEY = "brv-secret-key-0123456789"
BRAVE_PATH = "/res/v1/web/search"

BRAVE_BODY = {
    "type": "search",
    "query": {"original": "sqlite btree"},
    "web": {
        "type": "search",
        "results": [
            {"title": "SQLite <strong>B-Tree</strong> Module", "url": "https://www.sqlite.org/btreemodule.html",
             "description": "The <strong>B-tree</strong> module &amp; its pages &#x27;explained&#x27;."},
            {"title": "Database File Format", "url": "https://www.sqlite.org/fileformat2.html",
             "description": "How <strong>SQLite</strong> stores data on disk."},
            {"title": "B-tree - Wikipedia", "url": "https://en.wikipedia.org/wiki/B-tree",
             "description": ""},
        ],
    },
}

SEARXNG_BODY = {
    "query": "sqlite btree",
    "number_of_results": 3,
    "results": [
        {"title": "SQLite B-Tree Module", "url": "https://www.sqlite.org/btreemodule.html",
         "content": "The B-tree module and its pages.", "engine": "duckduckgo"},
        {"title": "Database File Format", "url": "https://www.sqlite.org/fileformat2.html",
         "content": "How SQLite stores data on disk.", "engine": "bing"},
        {"title": "B-tree", "url": "https://en.wikipedia.org/wiki/B-tree", "content": "A tree."},
    ],
}


def json_reply(body, status=200, **kw):
    return Reply(status, [json.dumps(body).encode()], content_type="application/json", **kw)


def brave_settings(server, **kw):
    return ToolSettings(brave_api_key=KEY, brave_url=server.url + BRAVE_PATH, **kw)


def query_of(recorded):
    return {k: v[0] for k, v in parse_qs(urlsplit(recorded.path).query).items()}


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- Brave -----------------------------------------------------------------------------------------
def test_brave_sends_query_count_and_token_and_strips_strong_tags(server):
    server.route(BRAVE_PATH, json_reply(BRAVE_BODY), method="GET")

    results = search("sqlite btree", 3, brave_settings(server))

    (request,) = server.requests
    assert query_of(request) == {"q": "sqlite btree", "count": "3"}
    assert request.headers["X-Subscription-Token"] == KEY
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("llmcli/")
    assert results == [
        SearchResult("SQLite B-Tree Module", "https://www.sqlite.org/btreemodule.html",
                     "The B-tree module & its pages 'explained'."),
        SearchResult("Database File Format", "https://www.sqlite.org/fileformat2.html",
                     "How SQLite stores data on disk."),
        SearchResult("B-tree - Wikipedia", "https://en.wikipedia.org/wiki/B-tree", ""),
    ]


def test_run_formats_a_compact_numbered_list(server):
    server.route(BRAVE_PATH, json_reply(BRAVE_BODY), method="GET")

    text = get_tool("web_search").run({"query": "sqlite btree", "count": 2}, brave_settings(server))

    assert text == (
        "1. SQLite B-Tree Module\n"
        "   https://www.sqlite.org/btreemodule.html\n"
        "   The B-tree module & its pages 'explained'.\n"
        "2. Database File Format\n"
        "   https://www.sqlite.org/fileformat2.html\n"
        "   How SQLite stores data on disk."
    )


def test_run_defaults_to_five_results(server):
    server.route(BRAVE_PATH, json_reply(BRAVE_BODY), method="GET")

    get_tool("web_search").run({"query": "x"}, brave_settings(server))

    assert query_of(server.requests[0])["count"] == "5"


def test_no_results(server):
    server.route(BRAVE_PATH, json_reply({"type": "search", "query": {"original": "zzz"}}), method="GET")

    assert get_tool("web_search").run({"query": "zzz"}, brave_settings(server)) == "No results for 'zzz'."


def test_results_are_capped_at_count_even_if_the_backend_sends_more(server):
    server.route(BRAVE_PATH, json_reply(BRAVE_BODY), method="GET")

    assert len(search("q", 1, brave_settings(server))) == 1


@pytest.mark.parametrize("status, expected", [
    (401, "Brave Search rejected the API key (HTTP 401): check BRAVE_API_KEY"),
    (403, "Brave Search rejected the API key (HTTP 403)"),
    (429, "Brave Search rate limit reached (HTTP 429); retry after 7 s"),
    (500, "Brave Search failed with a server error (HTTP 500)"),
    (503, "Brave Search failed with a server error (HTTP 503)"),
    (422, "Brave Search answered HTTP 422"),
])
def test_brave_http_errors_are_short_and_never_show_the_key(server, status, expected):
    # The error body echoes the key, as a careless proxy might: it must not reach the message.
    body = {"error": {"detail": f"bad token {KEY}"}}
    server.route(BRAVE_PATH, json_reply(body, status=status, headers={"Retry-After": "7"}), method="GET")

    with pytest.raises(ToolError) as caught:
        search("q", 3, brave_settings(server))

    assert expected in str(caught.value)
    assert KEY not in str(caught.value)


def test_timeout_is_reported_quickly(server):
    server.route(BRAVE_PATH, Reply(200, [b"{}"], content_type="application/json", headers_delay=3),
                 method="GET")
    started = time.monotonic()

    with pytest.raises(ToolError, match=r"Brave Search did not answer within 0.3 s"):
        search("q", 3, brave_settings(server, timeout=0.3))

    assert time.monotonic() - started < 2


def test_non_json_body(server):
    server.route(BRAVE_PATH, Reply(200, [b"<html>captcha</html>"], content_type="text/html"), method="GET")

    with pytest.raises(ToolError, match=r"Brave Search returned a response that is not JSON \(text/html\)"):
        search("q", 3, brave_settings(server))


def test_connection_refused_names_the_endpoint_not_the_key():
    port = closed_port()
    settings = ToolSettings(brave_api_key=KEY, brave_url=f"http://127.0.0.1:{port}{BRAVE_PATH}")

    with pytest.raises(ToolError) as caught:
        search("q", 3, settings)

    assert str(caught.value) == f"could not connect to Brave Search at http://127.0.0.1:{port}{BRAVE_PATH}"


# -- SearXNG -----------------------------------------------------------------------------------
def test_searxng_json_api(server):
    server.route("/search", json_reply(SEARXNG_BODY), method="GET")
    settings = ToolSettings(searxng_url=server.url + "/")

    results = search("sqlite btree", 2, settings)

    (request,) = server.requests
    assert urlsplit(request.path).path == "/search"
    assert query_of(request) == {"q": "sqlite btree", "format": "json"}
    assert "X-Subscription-Token" not in request.headers
    assert results == [
        SearchResult("SQLite B-Tree Module", "https://www.sqlite.org/btreemodule.html",
                     "The B-tree module and its pages."),
        SearchResult("Database File Format", "https://www.sqlite.org/fileformat2.html",
                     "How SQLite stores data on disk."),
    ]


def test_searxng_without_json_format_enabled(server):
    server.route("/search", Reply(403, [b"Forbidden"], content_type="text/html"), method="GET")

    with pytest.raises(ToolError, match=r"SearXNG refused the request \(HTTP 403\).*search.formats"):
        search("q", 3, ToolSettings(searxng_url=server.url))


def test_searxng_server_error(server):
    server.route("/search", Reply(502, [b"bad gateway"], content_type="text/plain"), method="GET")

    with pytest.raises(ToolError, match=r"SearXNG failed with a server error \(HTTP 502\)"):
        search("q", 3, ToolSettings(searxng_url=server.url))


# -- choosing a backend ------------------------------------------------------------------------
def test_backend_off_names_the_missing_settings():
    with pytest.raises(ToolError) as caught:
        get_tool("web_search").run({"query": "q"}, ToolSettings(search_backend="off"))

    assert str(caught.value).startswith(NOT_CONFIGURED)
    assert "BRAVE_API_KEY" in NOT_CONFIGURED and "tools.web_search.searxng_url" in NOT_CONFIGURED


def test_brave_key_wins_when_both_are_configured(server):
    server.route(BRAVE_PATH, json_reply(BRAVE_BODY), method="GET")
    server.route("/search", json_reply(SEARXNG_BODY), method="GET")

    search("q", 1, brave_settings(server, searxng_url=server.url))

    assert [urlsplit(r.path).path for r in server.requests] == [BRAVE_PATH]


def test_explicit_backend_overrides_the_guess(server):
    server.route("/search", json_reply(SEARXNG_BODY), method="GET")

    search("q", 1, brave_settings(server, searxng_url=server.url, search_backend="searxng"))

    assert [urlsplit(r.path).path for r in server.requests] == ["/search"]


@pytest.mark.parametrize("settings, message", [
    (ToolSettings(search_backend="brave"), "set to use Brave Search but has no API key"),
    (ToolSettings(search_backend="searxng"), "set to use SearXNG but has no instance URL"),
    (ToolSettings(search_backend="google", brave_api_key=KEY), "unknown web_search backend 'google'"),
])
def test_backend_misconfiguration(settings, message):
    with pytest.raises(ToolError, match=message):
        search("q", 3, settings)


# -- arguments and registry --------------------------------------------------------------------
@pytest.mark.parametrize("arguments, message", [
    ({}, "missing required argument 'query'"),
    ({"query": "   "}, "query must not be empty"),
    ({"query": 42}, "query must be a string, got a number"),
    ({"query": "q", "count": 0}, "count must be an integer from 1 to 10, got 0"),
    ({"query": "q", "count": 11}, "count must be an integer from 1 to 10, got 11"),
    ({"query": "q", "count": "many"}, "count must be an integer from 1 to 10, got 'many'"),
    ({"query": "q", "count": True}, "count must be an integer from 1 to 10, got True"),
    ({"query": "q", "count": 2.5}, "count must be an integer from 1 to 10, got 2.5"),
    ({"query": "q", "limit": 3}, "unexpected argument 'limit'; it takes: query, count"),
    (["q"], "arguments must be a JSON object, got an array"),
])
def test_argument_validation(arguments, message):
    with pytest.raises(ToolError, match=message):
        get_tool("web_search").validate(arguments)


def test_validation_normalises_and_fills_defaults():
    tool = get_tool("web_search")

    assert tool.validate({"query": " q "}) == {"query": "q", "count": 5}
    assert tool.validate({"query": "q", "count": "3"}) == {"query": "q", "count": 3}
    assert tool.validate({"query": "q", "count": 4.0, }) == {"query": "q", "count": 4}
    assert tool.validate({"query": "q", "count": None}) == {"query": "q", "count": 5}


def test_search_checks_count_itself():
    with pytest.raises(ToolError, match="count must be an integer from 1 to 10"):
        search("q", 50, ToolSettings(brave_api_key=KEY))


def test_registry_order_schema_and_unknown_tool():
    assert list(BUILTIN_TOOLS) == ["web_search", "web_fetch"]
    schema = get_tool("web_search").schema()
    assert schema["type"] == "function"
    assert schema["function"]["name"] == "web_search"
    assert schema["function"]["parameters"]["required"] == ["query"]
    assert schema["function"]["parameters"]["properties"]["count"]["maximum"] == 10
    json.dumps([tool.schema() for tool in BUILTIN_TOOLS.values()])  # serialisable as sent
    with pytest.raises(ToolError, match=r"unknown tool 'shell'; available: web_search, web_fetch"):
        get_tool("shell")


def test_format_results_falls_back_to_the_url_for_a_missing_title():
    assert format_results("q", [SearchResult("", "https://a.example/", "")]) == (
        "1. https://a.example/\n   https://a.example/"
    )


def test_importing_the_registry_stays_cheap():
    import subprocess
    import sys

    heavy = ["requests", "urllib3", "trafilatura", "lxml", "ssl", "http.client"]
    code = ("import sys, llmcli.tools; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"


# -- DuckDuckGo, keyless (a local stand-in for html.duckduckgo.com/html/) ----------------------------
DDG_PATH = "/html/"
DDG_PAGE = """<!DOCTYPE html><html><body><div id="links" class="results">
<div class="result results_links results_links_deep result--ad ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title"><a rel="nofollow" class="result__a"
      href="https://duckduckgo.com/y.js?ad_domain=spam.example&amp;u3=x">Buy <b>now</b></a></h2>
    <a class="result__snippet" href="https://duckduckgo.com/y.js?x">An advert</a>
  </div>
</div>
<div class="result results_links results_links_deep web-result ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title"><a rel="nofollow" class="result__a"
      href="//duckduckgo.com/l/?uddg=https%3A%2F%2Fwww.sqlite.org%2Fwal.html&amp;rut=abc">Write-Ahead <b>Logging</b></a></h2>
    <div class="result__extras"><a class="result__url" href="x">www.sqlite.org/wal.html</a></div>
    <a class="result__snippet" href="//duckduckgo.com/l/?uddg=x">The <b>WAL</b> journal mode &amp; its
      checkpoints.</a>
  </div>
</div>
<div class="result results_links results_links_deep web-result ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title"><a rel="nofollow" class="result__a" href="https://en.wikipedia.org/wiki/WAL">WAL - Wikipedia</a></h2>
  </div>
</div>
<div class="result results_links results_links_deep web-result ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title"><a class="result__a" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Fthird.example%2F">Third</a></h2>
    <a class="result__snippet">s3</a>
  </div>
</div>
</div></body></html>"""


def ddg_settings(server, **kw):
    return ToolSettings(duckduckgo_url=server.url + DDG_PATH, **kw)


def html_reply(body, status=200):
    return Reply(status, [body.encode()], content_type="text/html; charset=UTF-8")


def test_keyless_duckduckgo_when_nothing_is_configured(server):
    server.route(DDG_PATH, html_reply(DDG_PAGE))

    results = search("sqlite wal", 5, ddg_settings(server))

    assert results == [
        SearchResult("Write-Ahead Logging", "https://www.sqlite.org/wal.html",
                     "The WAL journal mode & its checkpoints.", "duckduckgo"),
        SearchResult("WAL - Wikipedia", "https://en.wikipedia.org/wiki/WAL", "", "duckduckgo"),
        SearchResult("Third", "https://third.example/", "s3", "duckduckgo"),
    ]  # the advert is left out, redirect links are unwrapped
    (request,) = server.requests
    assert request.method == "POST" and parse_qs(request.body.decode())["q"] == ["sqlite wal"]
    assert request.headers["User-Agent"].startswith("llmcli/")


def test_keyless_result_is_labelled_and_capped(server):
    server.route(DDG_PATH, html_reply(DDG_PAGE))

    text = get_tool("web_search").run({"query": "sqlite wal", "count": 2}, ddg_settings(server))

    assert text == ("Results from DuckDuckGo (keyless search: no Brave or SearXNG configured):\n"
                    "1. Write-Ahead Logging\n   https://www.sqlite.org/wal.html\n"
                    "   The WAL journal mode & its checkpoints.\n"
                    "2. WAL - Wikipedia\n   https://en.wikipedia.org/wiki/WAL")


def test_configured_backends_win_over_the_keyless_one(server):
    server.route("/search", json_reply(SEARXNG_BODY), method="GET")
    server.route(DDG_PATH, html_reply(DDG_PAGE))

    text = get_tool("web_search").run({"query": "q"}, ddg_settings(server, searxng_url=server.url))

    assert [urlsplit(r.path).path for r in server.requests] == ["/search"]
    assert "DuckDuckGo" not in text
    search("q", 1, ddg_settings(server, searxng_url=server.url, search_backend="duckduckgo"))
    assert urlsplit(server.requests[-1].path).path == DDG_PATH


@pytest.mark.parametrize("status", [202, 403, 429])
def test_keyless_rate_limit_is_a_tool_error(server, status):
    server.route(DDG_PATH, html_reply("<html>slow down</html>", status=status))

    with pytest.raises(ToolError, match=rf"DuckDuckGo \(keyless\) refused the search \(HTTP {status}\): "
                                        "it is rate-limiting or blocking") as caught:
        search("q", 3, ddg_settings(server))
    assert "BRAVE_API_KEY" in str(caught.value)


def test_keyless_challenge_page_is_a_tool_error(server):
    server.route(DDG_PATH, html_reply('<html><form id="challenge-form" class="anomaly-modal"></form></html>'))

    with pytest.raises(ToolError, match="bot challenge"):
        search("q", 3, ddg_settings(server))


def test_keyless_errors_reach_the_model_in_the_loop(server):
    from conftest import invoke
    from localserver import text_stream
    from test_tool_loop import tool_call_stream

    server.route(DDG_PATH, html_reply("busy", status=202))
    server.chat([Reply(pieces=tool_call_stream([("c1", "web_search", '{"query": "q"}')])),
                 Reply(pieces=text_stream("sorry"))])
    r = invoke("ask", "--base-url", server.base_url, "-T", "web_search", "--json", "go",
               env={"LLMCLI_DUCKDUCKGO_URL": server.url + DDG_PATH})
    assert r.exit_code == 0, r
    (call,) = json.loads(r.stdout)["tool_calls"]
    assert call["output"] is None and "rate-limiting" in call["error"]


def test_search_command_labels_keyless_results(server):
    from conftest import invoke

    server.route(DDG_PATH, html_reply(DDG_PAGE))
    r = invoke("search", "-n", "1", "sqlite", env={"LLMCLI_DUCKDUCKGO_URL": server.url + DDG_PATH})
    assert r.exit_code == 0, r
    assert r.stdout.startswith("1. Write-Ahead Logging\n")
    assert "llmcli: Results from DuckDuckGo (keyless" in r.stderr
    r = invoke("search", "--json", "sqlite", env={"LLMCLI_DUCKDUCKGO_URL": server.url + DDG_PATH})
    assert {x["source"] for x in json.loads(r.stdout)} == {"duckduckgo"}


def test_keyless_url_from_config(server, tmp_path):
    from conftest import invoke

    server.route(DDG_PATH, html_reply(DDG_PAGE))
    config = tmp_path / "config.yaml"
    config.write_text(f"tools:\n  web_search:\n    duckduckgo_url: {server.url}{DDG_PATH}\n")
    r = invoke("search", "--config", str(config), "--json", "sqlite", env={"LLMCLI_DUCKDUCKGO_URL": ""})
    assert r.exit_code == 0, r
    assert len(json.loads(r.stdout)) == 3


def test_keyless_backend_imports_nothing_new_at_start():
    import subprocess
    import sys

    code = "import llmcli.tools.search, sys; print(sorted(m for m in ('requests', 'ddgs', 'primp', 'lxml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30).stdout
    assert out.strip() == "[]"
