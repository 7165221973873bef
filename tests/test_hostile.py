"""Issue 13: a hostile server must not drive the terminal; pipes keep exact bytes; JSON escapes C1."""

import json
import os
import re
import subprocess
import sys

import pexpect
import pytest

from conftest import invoke
from localserver import Reply, chunk, sse

from llmcli.output.sanitize import StreamSanitizer, sanitize

# Each sequence a hostile server might send: OSC 52 (clipboard), OSC 0 (title), OSC 8 (link), CSI clear
# screen + cursor home, a one-character C1 CSI, BEL, backspaces, a bare CR overwrite, a bidi override.
HOSTILE = [
    "\x1b]52;c;ZWNobyBwd25lZA==\x07",
    "\x1b]0;owned\x1b\\",
    "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "\x1b[2J\x1b[H",
    "\x9b2J",
    "\x07",
    "abc\x08\x08\x08",
    "safe\rEVIL",
    "\x90qDCS\x9c",
]
PARTS = ["start "] + [h + " " for h in HOSTILE] + [" end\n"]
ANSWER = "".join(PARTS)
# What the terminal may see from llmcli itself: SGR styling only (dim, colours, reset).
OWN_STYLE = re.compile(r"\x1b\[[0-9;]*m")


def _outside_controls(data: str) -> list:
    """Controls in `data` other than llmcli's own SGR styling, \\n, \\r\\n and \\t."""
    data = OWN_STYLE.sub("", data)
    data = data.replace("\r\n", "\n")
    return [c for c in data if (ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f]


def test_sanitize_shows_controls_and_keeps_text():
    assert sanitize("a\tb\nc") == "a\tb\nc"
    assert sanitize("\x1b[31mred") == "^[[31mred"
    assert sanitize("x\x07\x08\x7f") == "x^G^H^?"
    assert sanitize("a\rb\r\nc") == "a^Mb\r\nc"
    assert sanitize("\x9b2J") == "<U+009B>2J"
    assert sanitize("日本 wörld ✓") == "日本 wörld ✓"
    assert sanitize("\u202eevil", bidi=True) == "<U+202E>evil"
    assert sanitize("\u202eevil") == "\u202eevil"
    for seq in HOSTILE:
        assert not _outside_controls(sanitize(seq))


@pytest.mark.parametrize("text", HOSTILE + ["line\r", "\r\n"])
def test_a_sequence_split_across_deltas_is_caught(text):
    for cut in range(len(text) + 1):
        s = StreamSanitizer()
        shown = s.feed(text[:cut]) + s.feed(text[cut:]) + s.finish()
        assert not _outside_controls(shown), (cut, shown)
        whole = StreamSanitizer()
        assert shown == whole.feed(text) + whole.finish()


def _hostile_server(server, split=True):
    pieces = []
    for part in PARTS:
        if split and len(part) > 2:  # split every sequence across two deltas
            pieces += sse(chunk(part[:2]), done=False) + sse(chunk(part[2:]), done=False)
        else:
            pieces += sse(chunk(part), done=False)
    pieces += sse(chunk(reasoning_content="think \x1b]52;c;AAAA\x07 \x9b31m"), done=False)
    pieces += sse(chunk(refusal="no \x1b[2J\x1b]0;t\x07"), done=False)
    pieces += sse(chunk(finish="stop"))
    server.chat(Reply(pieces=pieces))


def _spawn(args, timeout=10):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), TERM="xterm")
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(sys.executable, ["-m", "llmcli"] + args, env=env, dimensions=(40, 120),
                          encoding="utf-8", codec_errors="replace", timeout=timeout)
    child.expect(pexpect.EOF)
    child.close()
    return child.before, child.exitstatus


@pytest.mark.parametrize("extra", [[], ["--render"], ["--reasoning", "-u"]])
def test_no_escape_from_outside_reaches_the_pty(server, extra):
    _hostile_server(server)
    data, code = _spawn(["ask", "--base-url", server.base_url] + extra + ["hi"])
    assert code == 0, data
    assert not _outside_controls(data), repr(data)
    assert "start" in data and "end" in data
    assert "^[]52;c;" in data  # shown, not silently dropped


def test_raw_prints_the_bytes_on_a_terminal(server):
    _hostile_server(server, split=False)
    data, code = _spawn(["ask", "--raw", "--base-url", server.base_url, "hi"])
    assert code == 0
    assert "\x1b]52;c;" in data


def test_error_messages_quoting_a_server_are_sanitized_on_a_pty(server):
    server.chat(Reply(status=400, content_type="application/json", chunked=False,
                      pieces=[json.dumps({"error": {"message": "bad \x1b]52;c;QUFB\x07 \x9b2J"}}).encode()]))
    data, code = _spawn(["ask", "--base-url", server.base_url, "hi"])
    assert code == 4
    assert not _outside_controls(data), repr(data)
    assert "bad ^[]52;c;QUFB^G <U+009B>2J" in data


def test_model_names_are_sanitized_on_a_pty(server):
    server.route("/v1/models", Reply(content_type="application/json", chunked=False, pieces=[json.dumps(
        {"data": [{"id": "gpt\x1b]0;owned\x07-4"}, {"id": "m\x9b2J"}]}).encode()]), method="GET")
    data, code = _spawn(["models", "--base-url", server.base_url])
    assert code == 0, data
    assert not _outside_controls(data), repr(data)
    assert "gpt^[]0;owned^G-4" in data


def test_a_pipe_gets_the_exact_bytes(server):
    _hostile_server(server)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-m", "llmcli", "ask", "--base-url", server.base_url, "hi"],
                          capture_output=True, env=env, timeout=20, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc
    assert proc.stdout.decode("utf-8") == ANSWER


@pytest.mark.parametrize("flag", ["--json", "--jsonl"])
def test_json_escapes_c1(server, flag):
    _hostile_server(server)
    r = invoke("ask", "--base-url", server.base_url, flag, "hi")
    assert r.exit_code == 0, r
    assert not _outside_controls(r.stdout)
    assert "\\u009b" in r.stdout and "\x9b" not in r.stdout
    if flag == "--json":
        assert json.loads(r.stdout)["content"] == ANSWER


@pytest.mark.parametrize("spelling,expected", [("no", False), ("off", False), ("false", False), ("0", False),
                                               ("yes", True), ("on", True), ("true", True), ("1", True)])
def test_allow_private_is_parsed_strictly(spelling, expected):
    from llmcli.config.settings import strict_bool

    assert strict_bool(spelling, "k") is expected


def test_a_bad_boolean_is_a_config_error_naming_the_key():
    from llmcli.config.settings import strict_bool
    from llmcli.errors import ConfigError

    with pytest.raises(ConfigError, match="tools.web_fetch.allow_private"):
        strict_bool("nope", "tools.web_fetch.allow_private")


@pytest.mark.parametrize("address", ["169.254.169.254", "169.254.170.2", "169.254.170.23", "169.254.0.23",
                                     "fd00:ec2::254", "fd00:ec2::23", "168.63.129.16"])
def test_metadata_addresses_are_listed(address):
    import ipaddress

    from llmcli.tools.addresses import METADATA_ADDRESSES

    assert ipaddress.ip_address(address) in METADATA_ADDRESSES
