"""web_fetch against a real local HTTP server (allow_private=True so 127.0.0.1 may be fetched)."""

import gzip
import json
import socket
import sys
import time

import pytest
from localserver import Reply

from llmcli.errors import ToolError
from llmcli.tools import ToolSettings, get_tool
from llmcli.tools.fetch import FetchResult, fetch
from llmcli.tools.htmltext import simple_markdown

LOCAL = ToolSettings(allow_private=True, timeout=2.0)

ARTICLE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Why SQLite Uses B-Trees | The Storage Blog</title>
<script>var trackingSecret = "SCRIPT-TEXT-MUST-NOT-APPEAR";</script>
<style>.nav { color: red } /* STYLE-TEXT-MUST-NOT-APPEAR */</style>
</head>
<body>
<header class="site-header"><a href="/" class="logo">HEADER-TEXT-MUST-NOT-APPEAR</a>
<nav class="main-nav"><ul><li><a href="/">Home</a></li>
<li><a href="/archive">NAV-TEXT-MUST-NOT-APPEAR</a></li>
<li><a href="/about">About us</a></li></ul></nav></header>
<div class="wrapper"><main>
<article class="post">
<h1>Why SQLite Uses B-Trees</h1>
<p>SQLite stores every table and every index in its own <a href="/glossary/b-tree">B-tree</a>. This
choice, made in the earliest versions, explains much of its performance profile on ordinary disks
and on flash storage.</p>
<p>A B-tree keeps keys sorted in pages of fixed size, so a lookup touches only a handful of pages
even for tables with millions of rows. The <a href="https://www.sqlite.org/fileformat2.html">file
format documentation</a> describes the page layout in detail.</p>
<h2>Pages and cells</h2>
<p>Each page holds a number of cells. Interior pages hold keys and child pointers; leaf pages hold
the records themselves. When a page overflows, SQLite splits it and pushes a key up to the parent.
See also <a href="../2023/wal-mode.html">our earlier post on WAL mode</a>.</p>
</article>
<form action="/subscribe"><input name="email"><button>FORM-TEXT-MUST-NOT-APPEAR</button></form>
</main>
<aside class="sidebar"><h3>Newsletter</h3><p>ASIDE-TEXT-MUST-NOT-APPEAR every week.</p></aside></div>
<footer class="site-footer"><p>FOOTER-TEXT-MUST-NOT-APPEAR. All rights reserved.</p></footer>
<script src="/analytics.js"></script><script>console.log("SCRIPT-TEXT-MUST-NOT-APPEAR")</script>
</body></html>
"""

BOILERPLATE = ["SCRIPT-TEXT", "STYLE-TEXT", "HEADER-TEXT", "NAV-TEXT", "FORM-TEXT", "ASIDE-TEXT",
               "FOOTER-TEXT"]


def page(body, content_type="text/html; charset=utf-8", status=200, **kw):
    return Reply(status, [body] if isinstance(body, bytes) else body, content_type=content_type,
                 chunked=False, **kw)


def redirect(status, location):
    return Reply(status, [], content_type="text/html", headers={"Location": location}, chunked=False)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- HTML ------------------------------------------------------------------------------------------
def test_article_page_keeps_main_text_and_markdown_links_and_drops_boilerplate(server):
    server.route("/blog/2024/btrees.html", page(ARTICLE), method="GET")
    url = server.url + "/blog/2024/btrees.html"

    result = fetch(url, LOCAL)

    assert result.status == 200
    assert result.url == url
    assert result.content_type == "text/html"
    assert result.title == "Why SQLite Uses B-Trees | The Storage Blog"
    assert "SQLite stores every table and every index in its own" in result.text
    assert "Pages and cells" in result.text
    assert f"[B-tree]({server.url}/glossary/b-tree)" in result.text
    assert "(https://www.sqlite.org/fileformat2.html)" in result.text
    assert f"({server.url}/blog/2023/wal-mode.html)" in result.text  # ../ resolved
    for marker in BOILERPLATE:
        assert marker not in result.text
    assert not result.truncated and result.redirects == []


def test_run_puts_url_and_title_before_the_text(server):
    server.route("/a.html", page(ARTICLE), method="GET")

    text = get_tool("web_fetch").run({"url": server.url + "/a.html"}, LOCAL)

    assert text.startswith(f"URL: {server.url}/a.html\n"
                           "Title: Why SQLite Uses B-Trees | The Storage Blog\n\n")
    assert "SQLite stores every table" in text


def test_request_headers(server):
    server.route("/", page(b"<html><body><p>hello</p></body></html>"), method="GET")
    settings = ToolSettings(allow_private=True, user_agent="llmcli-test/9")

    fetch(server.url + "/?q=a b&x=\xe9", settings)

    (request,) = server.requests
    assert request.headers["Host"] == f"127.0.0.1:{server.port}"
    assert request.headers["User-Agent"] == "llmcli-test/9"
    assert "text/html" in request.headers["Accept"]
    assert request.path == "/?q=a%20b&x=%C3%A9"


def test_tiny_page_falls_back_to_the_whole_page(server):
    server.route("/tiny", page(b'<html><head><title>Tiny</title></head><body><p>Hi <a href="/x">there'
                               b'</a></p></body></html>'), method="GET")

    result = fetch(server.url + "/tiny", LOCAL)

    assert result.title == "Tiny"
    assert result.text == f"Hi [there]({server.url}/x)"


def test_page_without_title_or_text(server):
    server.route("/empty", page(b"<html><body><script>x()</script></body></html>"), method="GET")

    result = fetch(server.url + "/empty", LOCAL)

    assert (result.title, result.text) == ("", "")
    assert get_tool("web_fetch").run({"url": server.url + "/empty"}, LOCAL).endswith("(empty page)")


def test_without_trafilatura_the_stdlib_renderer_still_extracts(server, monkeypatch):
    monkeypatch.setitem(sys.modules, "trafilatura", None)  # makes `import trafilatura` fail
    server.route("/a.html", page(ARTICLE), method="GET")

    result = fetch(server.url + "/a.html", LOCAL)

    assert result.title == "Why SQLite Uses B-Trees | The Storage Blog"
    assert "# Why SQLite Uses B-Trees" in result.text
    assert f"[B-tree]({server.url}/glossary/b-tree)" in result.text
    for marker in BOILERPLATE:
        assert marker not in result.text


def test_simple_markdown_renders_structure():
    html = """<html><head><title> A  page </title><base href="https://example.org/docs/"></head><body>
    <nav><a href="/">skip me</a></nav><div role="navigation">skip me too</div>
    <h2>Steps</h2><ol><li>one</li><li>two <code>x = 1</code></li></ol>
    <ul><li><a href="a.html">A</a></li><li><a href="javascript:void(0)">JS</a></li></ul>
    <pre>  keep
    spacing</pre><p hidden>hidden text</p><p>Caf&eacute; &amp; more</p>
    <table><tr><th>k</th><th>v</th></tr><tr><td>1</td><td>2</td></tr></table></body></html>"""

    title, text = simple_markdown(html, "https://example.org/start")

    assert title == "A page"
    assert text == (
        "## Steps\n\n1. one\n2. two `x = 1`\n\n- [A](https://example.org/docs/a.html)\n- JS\n\n"
        "```\n  keep\n    spacing\n```\n\nCafé & more\n\nk | v\n1 | 2"
    )


def test_control_characters_never_reach_the_model(server):
    server.route("/t", page(b"red \x1b[31mtext\x1b[0m\x07 ok\r\nline2", content_type="text/plain"),
                 method="GET")

    assert fetch(server.url + "/t", LOCAL).text == "red [31mtext[0m ok\nline2"


# -- redirects -------------------------------------------------------------------------------------
def test_redirect_chain_relative_and_absolute(server):
    server.route("/start", redirect(302, "next/step"), method="GET")  # relative to /start
    server.route("/next/step", redirect(301, server.url + "/moved"), method="GET")  # absolute
    server.route("/moved", redirect(308, "/final?x=1"), method="GET")  # root-relative
    server.route("/final", page(b"<html><head><title>Final</title></head><body><p>arrived</p></body></html>"),
                 method="GET")

    result = fetch(server.url + "/start", LOCAL)

    assert result.url == server.url + "/final?x=1"
    assert result.redirects == [server.url + "/start", server.url + "/next/step", server.url + "/moved"]
    assert result.title == "Final" and result.text == "arrived"
    assert [r.path for r in server.requests] == ["/start", "/next/step", "/moved", "/final?x=1"]
    rendered = result.render()
    assert rendered.startswith(f"URL: {server.url}/final?x=1\nTitle: Final\n"
                               f"Redirected from: {server.url}/start\n\n")


@pytest.mark.parametrize("status", [303, 307])
def test_other_redirect_statuses(server, status):
    server.route("/a", redirect(status, "/b"), method="GET")
    server.route("/b", page(b"done", content_type="text/plain"), method="GET")

    assert fetch(server.url + "/a", LOCAL).text == "done"


def test_too_many_redirects(server):
    server.route("/loop", redirect(302, "/loop"), method="GET")
    settings = ToolSettings(allow_private=True, max_redirects=3)

    with pytest.raises(ToolError, match=r"too many redirects \(more than 3\) starting at http://"):
        fetch(server.url + "/loop", settings)

    assert len(server.requests) == 4  # the first request and three redirects


def test_redirect_without_location(server):
    server.route("/r", Reply(302, [], content_type="text/html", chunked=False), method="GET")

    with pytest.raises(ToolError, match="answered HTTP 302 without a Location"):
        fetch(server.url + "/r", LOCAL)


def test_redirect_to_another_scheme_is_refused(server):
    server.route("/r", redirect(302, "file:///etc/passwd"), method="GET")

    with pytest.raises(ToolError, match=r"only fetches http and https URLs, not file URLs.*redirect from"):
        fetch(server.url + "/r", LOCAL)


# -- size limits -----------------------------------------------------------------------------------
def test_huge_page_stops_at_max_bytes(server):
    line = b"0123456789abcdef" * 4 + b"\n"  # 65 bytes
    server.route("/huge", Reply(200, [line * 1000] * 300, content_type="text/plain"), method="GET")  # 19.5 MB
    settings = ToolSettings(allow_private=True, max_bytes=100_000, max_chars=1_000_000)
    started = time.monotonic()

    result = fetch(server.url + "/huge", settings)

    assert time.monotonic() - started < 3
    assert result.truncated
    body, marker = result.text.rsplit("\n\n", 1)
    assert len(body) <= 100_000
    assert marker == ("[truncated: the page is larger than 100000 bytes; only the first 100000 bytes "
                      "were read]")


def test_max_chars_cuts_the_text_with_a_visible_marker(server):
    server.route("/long", page(b"x" * 5000, content_type="text/plain"), method="GET")

    text = get_tool("web_fetch").run({"url": server.url + "/long", "max_chars": 1000}, LOCAL)

    assert text.endswith("x" * 1000 + "\n\n[truncated: showing 1000 of 5000 characters]")
    assert "x" * 1001 not in text


def test_settings_max_chars_is_the_default(server):
    server.route("/long", page(b"y" * 300, content_type="text/plain"), method="GET")

    result = fetch(server.url + "/long", ToolSettings(allow_private=True, max_chars=100))

    assert result.truncated
    assert result.text == "y" * 100 + "\n\n[truncated: showing 100 of 300 characters]"


def test_gzip_body_is_decoded(server):
    body = gzip.compress(b"<html><body><p>compressed hello</p></body></html>")
    server.route("/gz", page(body, headers={"Content-Encoding": "gzip"}), method="GET")

    assert fetch(server.url + "/gz", LOCAL).text == "compressed hello"


# -- content types ---------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type, body", [
    ("application/pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
    ("application/octet-stream", bytes(range(256)) * 16),
    ("image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
    ("application/zip", b"PK\x03\x04" + b"\x00" * 64),
])
def test_binary_content_types_are_unsupported(server, content_type, body):
    server.route("/file", page(body, content_type=content_type), method="GET")

    with pytest.raises(ToolError, match=f"unsupported content type: {content_type}"):
        get_tool("web_fetch").run({"url": server.url + "/file"}, LOCAL)


def test_missing_content_type_is_sniffed(server):
    def binary(handler, recorded):
        body = b"\x00\x01\x02binary"
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server.route("/bin", binary, method="GET")

    with pytest.raises(ToolError, match="unsupported content type: application/octet-stream"):
        fetch(server.url + "/bin", LOCAL)


@pytest.mark.parametrize("content_type", ["text/plain", "text/markdown; charset=utf-8", "text/csv"])
def test_text_is_passed_through(server, content_type):
    body = "# Notes\n\n* one — two\n  indented   spacing\n\n<b>not html</b>\n"
    server.route("/t", page(body.encode(), content_type=content_type), method="GET")

    result = fetch(server.url + "/t", LOCAL)

    assert result.text == body.rstrip()
    assert result.title == ""
    assert result.content_type == content_type.split(";")[0]


@pytest.mark.parametrize("content_type", ["application/json", "application/vnd.api+json"])
def test_json_is_passed_through(server, content_type):
    body = json.dumps({"name": "llmcli", "tags": ["a", "b"], "nested": {"x": 1}}, indent=2)
    server.route("/j", page(body.encode(), content_type=content_type), method="GET")

    text = get_tool("web_fetch").run({"url": server.url + "/j"}, LOCAL)

    assert text == f"URL: {server.url}/j\n\n{body}"


def test_latin1_page_is_decoded_with_its_charset(server):
    html = ("<html><head><title>Caf\xe9</title></head>"
            "<body><p>D\xe9j\xe0 vu \u2014 na\xefve \u20ac5</p></body></html>")
    # latin-1 labels mean windows-1252 on the web (WHATWG Encoding), which has the dash and euro
    server.route("/l", page(html.encode("cp1252"), content_type="text/html; charset=latin-1"), method="GET")

    result = fetch(server.url + "/l", LOCAL)

    assert result.title == "Caf\xe9"
    assert result.text == "D\xe9j\xe0 vu \u2014 na\xefve \u20ac5"


def test_meta_charset_is_used_when_the_header_has_none(server):
    html = ('<html><head><meta charset="iso-8859-1"><title>\xdcber</title></head>'
            "<body><p>Gr\xfc\xdfe</p></body></html>")
    server.route("/m", page(html.encode("latin-1"), content_type="text/html"), method="GET")

    result = fetch(server.url + "/m", LOCAL)

    assert (result.title, result.text) == ("\xdcber", "Gr\xfc\xdfe")


def test_text_charset_and_utf8_fallback(server):
    latin1 = "\xa1Hola se\xf1or!".encode("latin-1")
    server.route("/p", page(latin1, content_type="text/plain; charset=ISO-8859-1"), method="GET")
    server.route("/u", page(b"ok \xff\xfe broken", content_type="text/plain"), method="GET")
    server.route("/x", page("?".encode(), content_type="text/plain; charset=no-such-charset"), method="GET")

    assert fetch(server.url + "/p", LOCAL).text == "\xa1Hola se\xf1or!"
    assert fetch(server.url + "/u", LOCAL).text == "ok \ufffd\ufffd broken"
    assert fetch(server.url + "/x", LOCAL).text == "?"


# -- failures --------------------------------------------------------------------------------------
def test_404_page(server):
    server.route("/missing", page(b"<html><body><h1>Not here</h1></body></html>", status=404), method="GET")

    with pytest.raises(ToolError, match=r"http://127\.0\.0\.1:\d+/missing answered HTTP 404 Not Found"):
        fetch(server.url + "/missing", LOCAL)


def test_server_error(server):
    server.route("/boom", page(b"oops", content_type="text/plain", status=503), method="GET")

    with pytest.raises(ToolError, match="answered HTTP 503 Service Unavailable"):
        fetch(server.url + "/boom", LOCAL)


def test_slow_headers_hit_the_read_timeout_quickly(server):
    server.route("/slow", page(b"late", content_type="text/plain", headers_delay=5), method="GET")
    settings = ToolSettings(allow_private=True, timeout=0.3)
    started = time.monotonic()

    expected = r"timed out waiting for http://127\.0\.0\.1:\d+/slow \(no data for 0\.3 s\)"
    with pytest.raises(ToolError, match=expected):
        fetch(server.url + "/slow", settings)

    assert time.monotonic() - started < 1.5


def test_slow_drip_hits_the_whole_fetch_deadline(server):
    # Each piece arrives within the 0.3 s read timeout, but the page would take 6 s in all.
    server.route("/drip", Reply(200, [b"drip "] * 30, content_type="text/plain", delay=0.2), method="GET")
    settings = ToolSettings(allow_private=True, timeout=0.3)
    started = time.monotonic()

    expected = r"timed out reading .*/drip: the whole fetch may take at most 0\.9 s"
    with pytest.raises(ToolError, match=expected):
        fetch(server.url + "/drip", settings)

    assert time.monotonic() - started < 2


def test_connection_refused():
    port = closed_port()

    with pytest.raises(ToolError, match=f"could not connect to http://127.0.0.1:{port}/: connection refused"):
        fetch(f"http://127.0.0.1:{port}/", LOCAL)


def test_connection_reset_mid_body(server):
    server.route("/cut", Reply(200, [b"partial"], content_type="text/plain", end="reset", chunked=True),
                 method="GET")

    with pytest.raises(ToolError, match=r"connection to http://127\.0\.0\.1:\d+/cut broke"):
        fetch(server.url + "/cut", LOCAL)


@pytest.mark.parametrize("arguments, message", [
    ({}, "missing required argument 'url'"),
    ({"url": ""}, "url must not be empty"),
    ({"url": "https://example.org", "max_chars": 0}, "max_chars must be an integer of at least 1, got 0"),
    ({"url": "https://example.org", "max_chars": "lots"}, "max_chars must be an integer of at least 1"),
])
def test_argument_validation(arguments, message):
    with pytest.raises(ToolError, match=message):
        get_tool("web_fetch").validate(arguments)


@pytest.mark.parametrize("url, message", [
    ("example.org/page", r"needs an absolute http\(s\) URL, got 'example.org/page' \(did you mean https://example.org/page\?\)"),
    ("http://user:pw@example.org/", r"does not send credentials in URLs: http://\*\*\*@example.org/"),
    ("http://example.org:99999/", "invalid URL"),
    ("http://1.2.3.999/", "invalid IPv4 address: 1.2.3.999"),
    ("http:///path", "no host"),
])
def test_bad_urls(url, message):
    with pytest.raises(ToolError, match=message):
        fetch(url, LOCAL)


def test_fetch_result_render_without_title():
    result = FetchResult(url="https://a.example/x.json", status=200, content_type="application/json",
                         title="", text="{}")

    assert result.render() == "URL: https://a.example/x.json\n\n{}"


# -- HTTPS: connect to the checked address, verify the certificate against the URL's host ----------
class _TLSServer:
    """A one-route HTTPS server on 127.0.0.1 that records the SNI name and Host header it got."""

    def __init__(self, cert, key):
        import ssl
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.seen = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.seen.append(("host", self.headers["Host"]))
                body = b"<html><head><title>Secure</title></head><body><p>over tls</p></body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda sock, name, ctx: outer.seen.append(("sni", name))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tls_server(tmp_path):
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=public.example.test", "-addext", "subjectAltName=DNS:public.example.test"],
        check=True, capture_output=True,
    )
    srv = _TLSServer(str(cert), str(key))
    srv.cert = str(cert)
    yield srv
    srv.stop()


def _tls_settings(name):
    return ToolSettings(allow_private=True, timeout=2.0,
                        resolver=lambda host, port: ["127.0.0.1"] if host == name else [])


def test_https_connects_to_the_checked_address_with_sni_and_host_of_the_url(tls_server, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_server.cert)
    url = f"https://public.example.test:{tls_server.port}/"

    result = fetch(url, _tls_settings("public.example.test"))

    assert (result.title, result.text) == ("Secure", "over tls")
    assert ("sni", "public.example.test") in tls_server.seen
    assert ("host", f"public.example.test:{tls_server.port}") in tls_server.seen


def test_https_certificate_must_match_the_url_host(tls_server, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_server.cert)

    expected = r"TLS error fetching https://other\.example\.test:\d+/: .*other\.example\.test"
    with pytest.raises(ToolError, match=expected):
        fetch(f"https://other.example.test:{tls_server.port}/", _tls_settings("other.example.test"))


def test_https_untrusted_certificate(tls_server):
    with pytest.raises(ToolError, match=r"TLS error fetching .*certificate verify failed"):
        fetch(f"https://public.example.test:{tls_server.port}/", _tls_settings("public.example.test"))


def test_a_body_of_exactly_max_bytes_is_not_truncated(server):
    server.route("/exact", Reply(200, [b"z" * 500] * 2, content_type="text/plain"), method="GET")

    result = fetch(server.url + "/exact", ToolSettings(allow_private=True, max_bytes=1000))

    assert (result.truncated, result.text) == (False, "z" * 1000)


def test_only_the_first_part_of_an_enormous_html_page_is_converted(server, monkeypatch):
    import llmcli.tools.fetch as fetch_module

    monkeypatch.setattr(fetch_module, "HTML_EXTRACT_LIMIT", 2000)
    paragraphs = b"".join(b"<p>paragraph %d of a very long page.</p>" % i for i in range(500))
    server.route("/big", page(b"<html><body>" + paragraphs + b"</body></html>"), method="GET")

    result = fetch(server.url + "/big", LOCAL)

    assert result.truncated
    assert "paragraph 3 of" in result.text and "paragraph 400 of" not in result.text
    total = len(paragraphs) + len(b"<html><body></body></html>")
    assert result.text.endswith("long page.\n\n[truncated: only the first 2000 of "
                                f"{total} characters of HTML were converted]")
