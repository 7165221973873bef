"""web_fetch's guard against server-side request forgery, with the default allow_private=False.

Every refused URL must be refused *before* any connection: the local server records no request,
and a guard on socket.connect (below) fails the test if web_fetch even tries to reach an address
outside 127.0.0.1, so a regression can never send a packet to a private or public address.

To test a redirect from an allowed page to a forbidden one, a page must be allowed while being
served from 127.0.0.1. The seam is `ToolSettings.address_policy`, the same function web_fetch
uses for every decision: `loopback_v4_is_public` below is the default policy except that it
treats 127.0.0.1 as public. An injected resolver maps `public.example.test` to 127.0.0.1, and
the redirect targets ([::1], 10.0.0.1, a name resolving to ::1) stay refused by the default rules.
"""

import ipaddress
import socket

import pytest
from localserver import LocalServer, Reply

from llmcli.errors import ToolError
from llmcli.tools import ToolSettings, get_tool
from llmcli.tools.addresses import blocked_reason, embedded_ipv4, is_blocked_address, parse_host_literal
from llmcli.tools.fetch import fetch

LOOPBACK_V4 = ipaddress.ip_address("127.0.0.1")


def loopback_v4_is_public(ip, allow_private):
    """The default policy, except that 127.0.0.1 stands in for a public server."""
    return None if ip == LOOPBACK_V4 else blocked_reason(ip, allow_private)


def resolver_for(table):
    def resolve(host, port):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])
    return resolve


@pytest.fixture(scope="module")
def _shared_server():
    srv = LocalServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def server(_shared_server):
    """One server for the module (most tests here must never reach it), cleared per test."""
    _shared_server.routes.clear()
    _shared_server.requests.clear()
    return _shared_server


@pytest.fixture(autouse=True)
def connections(monkeypatch):
    """Record every connect() and refuse any destination but 127.0.0.1."""
    attempts = []
    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        attempts.append(address)
        if address[0] != "127.0.0.1":
            raise AssertionError(f"web_fetch tried to connect to {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    return attempts


# -- refused before any request --------------------------------------------------------------------
@pytest.mark.parametrize("template, reason", [
    ("http://127.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
    ("http://localhost:{port}/", "localhost resolves to"),
    ("http://[::1]:{port}/", "::1 is a loopback address"),
    ("http://0.0.0.0:{port}/", "0.0.0.0 is an unspecified"),
    ("http://[::]:{port}/", ":: is an unspecified address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is a cloud metadata address"),
    ("http://10.0.0.1/", "10.0.0.1 is a private address"),
    ("http://172.16.5.4/", "172.16.5.4 is a private address"),
    ("http://192.168.1.1/", "192.168.1.1 is a private address"),
    ("http://[::ffff:127.0.0.1]:{port}/", "is a loopback address (127.0.0.1, in IPv4-mapped form)"),
    ("http://[::ffff:a00:1]/", "is a private address (10.0.0.1, in IPv4-mapped form)"),
    ("http://[64:ff9b::7f00:1]:{port}/", "(127.0.0.1, in NAT64 form)"),
    ("http://[2002:a00:1::]/", "(10.0.0.1, in 6to4 form)"),
    ("http://2130706433:{port}/", "127.0.0.1 is a loopback address"),
    ("http://0x7f.1:{port}/", "127.0.0.1 is a loopback address"),
    ("http://0177.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
    ("http://127.1:{port}/", "127.0.0.1 is a loopback address"),
    ("http://127.0.0.1.:{port}/", "127.0.0.1 is a loopback address"),
    ("http://100.64.0.1/", "100.64.0.1 is a shared (carrier-grade NAT"),
    ("http://[fe80::1]/", "fe80::1 is a link-local address"),
    ("http://[fe80::1%25eth0]/", "fe80::1 is a link-local address"),
    ("http://[fc00::1]/", "a unique-local (private) address"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://255.255.255.255/", "a reserved address"),
])
def test_private_and_special_addresses_are_refused(server, connections, template, reason):
    url = template.format(port=server.port)

    with pytest.raises(ToolError) as caught:
        get_tool("web_fetch").run({"url": url}, ToolSettings())

    message = str(caught.value)
    assert message.startswith(f"web_fetch refused {url}: ")
    assert reason in message
    if "metadata" in reason:
        assert "never fetches cloud metadata" in message
    else:
        assert "tools.web_fetch.allow_private: true" in message and "--allow-private-urls" in message
    assert server.requests == [] and connections == []


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1:{port}/file", "only fetches http and https URLs, not ftp URLs"),
    ("file:///etc/passwd", "only fetches http and https URLs, not file URLs: file:///etc/passwd"),
    ("gopher://127.0.0.1:{port}/", "not gopher URLs"),
    ("javascript:alert(1)", "not javascript URLs"),
    ("127.0.0.1:{port}/", r"needs an absolute http\(s\) URL"),
])
def test_other_schemes_are_refused(server, connections, url, message):
    with pytest.raises(ToolError, match=message):
        fetch(url.format(port=server.port), ToolSettings())

    assert server.requests == [] and connections == []


def test_public_looking_name_resolving_to_loopback_is_refused(server, connections):
    settings = ToolSettings(resolver=resolver_for({"public.example.test": ["127.0.0.1"]}))
    url = f"http://public.example.test:{server.port}/"

    expected = r"public\.example\.test resolves to 127\.0\.0\.1, a loopback address"
    with pytest.raises(ToolError, match=expected):
        fetch(url, settings)

    assert server.requests == [] and connections == []


def test_a_name_with_one_private_address_among_public_ones_is_refused(server, connections):
    # The private address comes second: checking only the first answer would let it through.
    settings = ToolSettings(resolver=resolver_for({"mixed.example.test": ["93.184.215.14", "10.1.2.3"]}))

    with pytest.raises(ToolError, match=r"mixed\.example\.test resolves to 10\.1\.2\.3, a private address"):
        fetch("http://mixed.example.test/", settings)

    assert connections == []


def test_a_name_with_one_private_address_among_allowed_ones_reaches_no_server(server, connections):
    settings = ToolSettings(address_policy=loopback_v4_is_public,
                            resolver=resolver_for({"mixed.example.test": ["127.0.0.1", "::1"]}))

    with pytest.raises(ToolError, match=r"resolves to ::1, a loopback address"):
        fetch(f"http://mixed.example.test:{server.port}/", settings)

    assert server.requests == [] and connections == []


def test_allowed_host_is_fetched_from_the_checked_address_with_its_own_host_header(server, connections):
    server.route("/page", Reply(200, [b"hello"], content_type="text/plain"), method="GET")
    settings = ToolSettings(address_policy=loopback_v4_is_public,
                            resolver=resolver_for({"public.example.test": ["127.0.0.1"]}))

    result = fetch(f"http://public.example.test:{server.port}/page", settings)

    assert result.text == "hello"
    assert server.requests[0].headers["Host"] == f"public.example.test:{server.port}"
    assert connections == [("127.0.0.1", server.port)]


@pytest.mark.parametrize("location, reason", [
    ("http://[::1]:{port}/secret", "::1 is a loopback address"),
    ("http://10.0.0.1/admin", "10.0.0.1 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
    ("http://internal.example.test:{port}/", "internal.example.test resolves to ::1, a loopback address"),
    ("http://0x7f000001:{port}/", None),  # 127.0.0.1 is allowed by this policy: followed
])
def test_redirect_to_a_private_address_is_refused_at_that_hop(server, connections, location, reason):
    location = location.format(port=server.port)
    server.route("/start", Reply(302, [], content_type="text/html", chunked=False,
                                 headers={"Location": location}), method="GET")
    server.route("/", Reply(200, [b"followed"], content_type="text/plain"), method="GET")
    settings = ToolSettings(address_policy=loopback_v4_is_public, resolver=resolver_for({
        "public.example.test": ["127.0.0.1"], "internal.example.test": ["::1"]}))
    start = f"http://public.example.test:{server.port}/start"

    if reason is None:
        assert fetch(start, settings).text == "followed"
        return
    with pytest.raises(ToolError) as caught:
        fetch(start, settings)

    message = str(caught.value)
    assert message.startswith(f"web_fetch refused the redirect from {start} to {location}: {reason}")
    assert [r.path for r in server.requests] == ["/start"]
    assert connections == [("127.0.0.1", server.port)]


def test_allow_private_lets_loopback_through_but_never_metadata(server, connections):
    server.route("/", Reply(200, [b"local"], content_type="text/plain"), method="GET")

    assert fetch(f"http://127.0.0.1:{server.port}/", ToolSettings(allow_private=True)).text == "local"
    with pytest.raises(ToolError, match="169.254.169.254 is a cloud metadata address"):
        fetch("http://169.254.169.254/", ToolSettings(allow_private=True))
    with pytest.raises(ToolError, match="cloud metadata address"):
        fetch("http://[::ffff:169.254.169.254]/", ToolSettings(allow_private=True))


def test_unresolvable_name():
    settings = ToolSettings(resolver=resolver_for({}))

    expected = "could not resolve host nowhere.example.test: Name or service not known"
    with pytest.raises(ToolError, match=expected):
        fetch("http://nowhere.example.test/", settings)


def test_resolver_returning_nothing_or_garbage():
    with pytest.raises(ToolError, match="no addresses"):
        fetch("http://a.example.test/", ToolSettings(resolver=resolver_for({"a.example.test": []})))
    with pytest.raises(ToolError, match="invalid address"):
        fetch("http://a.example.test/", ToolSettings(resolver=resolver_for({"a.example.test": ["nope"]})))


# -- the classifier, pure ----------------------------------------------------------------------
@pytest.mark.parametrize("address, reason", [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.255.255.255", "private"),
    ("100.64.0.0", "shared"),
    ("100.127.255.255", "shared"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("169.254.0.1", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("172.31.255.255", "private"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "documentation"),
    ("192.168.0.1", "private"),
    ("198.18.0.1", "benchmarking"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback address (127.0.0.1, in IPv4-mapped form)"),
    ("::ffff:10.0.0.1", "private address (10.0.0.1, in IPv4-mapped form)"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("::ffff:0:7f00:1", "loopback address (127.0.0.1, in IPv4-translated form)"),
    ("::127.0.0.1", "loopback address (127.0.0.1, in IPv4-compatible form)"),
    ("::10.0.0.1", "private address (10.0.0.1, in IPv4-compatible form)"),
    ("64:ff9b::127.0.0.1", "loopback address (127.0.0.1, in NAT64 form)"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:a00:1::1", "private address (10.0.0.1, in 6to4 form)"),
    ("2002:7f00:1::", "loopback address (127.0.0.1, in 6to4 form)"),
    ("2002:c0a8:101::", "private address (192.168.1.1, in 6to4 form)"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:db8::1", "documentation"),
    ("100::1", "discard-only"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fd00:ec2::254", "cloud metadata"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("4000::1", "reserved"),  # outside 2000::/3, the only global unicast space
])
def test_blocked_addresses(address, reason):
    found = blocked_reason(address)

    assert found is not None and reason in found
    assert is_blocked_address(address)


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.0", "172.15.255.255",
    "172.32.0.0", "192.169.0.1", "223.255.255.255", "2606:4700:4700::1111", "2a00:1450:4001::200e",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "::8.8.8.8",
])
def test_public_addresses_are_allowed(address):
    assert blocked_reason(address) is None
    assert not is_blocked_address(address)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "::1", "fe80::1", "100.64.0.1",
                                     "::ffff:192.168.0.1"])
def test_allow_private_allows_private_addresses(address):
    assert blocked_reason(address, allow_private=True) is None


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254",
                                     "64:ff9b::a9fe:a9fe"])
def test_allow_private_never_allows_metadata(address):
    assert blocked_reason(address, allow_private=True) == "a cloud metadata address"


@pytest.mark.parametrize("host, address", [
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0177.0.0.01", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0x7F.0x0.0x0.0x1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("10.1", "10.0.0.1"),
    ("0", "0.0.0.0"),
    ("3232235777", "192.168.1.1"),
    ("::1", "::1"),
    ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ("fe80::1%25eth0", "fe80::1"),
])
def test_host_literals_are_read_like_inet_aton(host, address):
    assert parse_host_literal(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "localhost", "1.2.3.example", "0x7f.example",
                                  "xn--bcher-kva.example"])
def test_names_are_not_literals(host):
    assert parse_host_literal(host) is None


@pytest.mark.parametrize("host", ["1.2.3.999", "256.0.0.1", "1.2.3.4.5", "4294967296", "1.2.65536",
                                  "09.1.1.1"])
def test_invalid_numeric_hosts(host):
    with pytest.raises(ValueError):
        parse_host_literal(host)


def test_embedded_ipv4_forms():
    ip = ipaddress.ip_address
    assert embedded_ipv4(ip("::ffff:1.2.3.4")) == (ip("1.2.3.4"), "IPv4-mapped")
    assert embedded_ipv4(ip("2002:102:304::")) == (ip("1.2.3.4"), "6to4")
    assert embedded_ipv4(ip("::1")) is None
    assert embedded_ipv4(ip("2606:4700::1")) is None
