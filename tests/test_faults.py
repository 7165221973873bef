"""Fault injection: retries, timeouts, cut streams, signals, closed pipes (issue 4).

Every test asserts the exit code, the stderr message, what stdout holds, and that the elapsed time stays
within the configured bounds (short timeouts, never long sleeps).
"""

import email.utils
import json
import re
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import invoke
from localserver import Reply, chunk, sse, text_stream

OK = text_stream("All ", "good.")


def err_lines(r):
    return [line for line in r.stderr.splitlines() if line.startswith("llmcli: error:")]


# -- retries ------------------------------------------------------------------------------------

@pytest.mark.parametrize("header,value,min_delay", [
    ("retry-after-ms", "300", 0.3),
    ("retry-after", "1", 1.0),
    ("retry-after", "date", 0.0),  # an HTTP date about a second ahead (second granularity)
])
def test_429_then_200_honours_delay_headers(server, llmcli, header, value, min_delay):
    if value == "date":
        value = email.utils.formatdate(time.time() + 1.5, usegmt=True)
    server.chat([Reply(status=429, pieces=[b'{"error":{"message":"slow down"}}'], content_type="application/json",
                       chunked=False, headers={header: value}), Reply(pieces=OK)])
    t0 = time.monotonic()
    r = llmcli("q")
    elapsed = time.monotonic() - t0
    assert r.exit_code == 0, r
    assert r.stdout == "All good.\n"
    assert "llmcli: retrying in" in r.stderr and "HTTP 429" in r.stderr
    assert len(server.requests) == 2
    assert min_delay <= elapsed < min_delay + 2.0


def test_503_repeated_gives_up_after_retries(server, llmcli):
    server.chat(Reply(status=503, pieces=[b"busy"], content_type="text/plain", chunked=False))
    r = llmcli("--retries", "3", "q")
    assert r.exit_code == 4
    assert len(server.requests) == 4
    assert r.stderr.count("llmcli: retrying in") == 3
    assert len(err_lines(r)) == 1 and "HTTP 503" in err_lines(r)[0]


def test_400_with_x_should_retry_true_is_retried(server, llmcli):
    server.chat([Reply(status=400, pieces=[b'{"error":{"message":"flaky"}}'], content_type="application/json",
                       chunked=False, headers={"x-should-retry": "true"}), Reply(pieces=OK)])
    r = llmcli("q")
    assert r.exit_code == 0 and len(server.requests) == 2


def test_500_with_x_should_retry_false_is_final(server, llmcli):
    server.chat(Reply(status=500, pieces=[b'{"error":{"message":"no"}}'], content_type="application/json",
                      chunked=False, headers={"x-should-retry": "false"}))
    r = llmcli("q")
    assert r.exit_code == 4 and len(server.requests) == 1


def test_insufficient_quota_is_final(server, llmcli):
    body = b'{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}'
    server.chat(Reply(status=429, pieces=[body], content_type="application/json", chunked=False))
    r = llmcli("q")
    assert r.exit_code == 4
    assert len(server.requests) == 1
    assert "exceeded your current quota" in r.stderr and "retrying" not in r.stderr


def test_jsonl_reports_retries_as_events(server, llmcli):
    server.chat([Reply(status=502, pieces=[b"bad gateway"], content_type="text/plain", chunked=False), Reply(pieces=OK)])
    r = llmcli("--jsonl", "q")
    events = [json.loads(x) for x in r.stdout.splitlines()]
    assert events[0]["type"] == "retry" and events[0]["attempt"] == 1
    assert events[-1]["type"] == "done"


def test_never_retried_once_output_was_printed(server, llmcli):
    server.chat([Reply(pieces=sse(chunk("partial"), done=False), end="cut"), Reply(pieces=OK)])
    r = llmcli("q")
    assert r.exit_code == 5
    assert r.stdout == "partial\n"
    assert len(server.requests) == 1


# -- timeouts -----------------------------------------------------------------------------------

def test_server_that_accepts_and_never_answers(server, llmcli):
    server.chat(Reply(headers_delay=30, pieces=OK))
    t0 = time.monotonic()
    r = llmcli("--timeout", "0.4", "--retries", "1", "q")
    elapsed = time.monotonic() - t0
    assert r.exit_code == 6
    assert "sent no response within 0.4 s" in r.stderr
    assert len(server.requests) == 2  # the timeout before headers is retried once
    assert 0.8 <= elapsed < 3.0


def test_stall_mid_stream_read_timeout(server, llmcli):
    server.chat(Reply(pieces=sse(chunk("Hello"), done=False), end="stall"))
    t0 = time.monotonic()
    r = llmcli("--timeout", "0.5", "q")
    elapsed = time.monotonic() - t0
    assert r.exit_code == 6
    assert r.stdout == "Hello\n"
    assert "read timeout" in err_lines(r)[0] and "after" in err_lines(r)[0]
    assert 0.5 <= elapsed < 2.5
    assert len(server.requests) == 1


def test_keepalives_forever_idle_timeout(server, llmcli):
    pieces = sse(chunk("Hi"), done=False) + [b": keep-alive\n\n"] * 200
    server.chat(Reply(pieces=pieces, delay=0.05))
    t0 = time.monotonic()
    r = llmcli("--idle-timeout", "0.6", "--timeout", "5", "q")
    elapsed = time.monotonic() - t0
    assert r.exit_code == 6
    assert r.stdout == "Hi\n"
    assert "idle timeout" in err_lines(r)[0]
    assert 0.6 <= elapsed < 2.5
    assert server.wait_for_close(2)


def test_max_time_bounds_the_whole_run(server, llmcli):
    server.chat(Reply(pieces=[p for t in range(100) for p in sse(chunk(f"{t} "), done=False)], delay=0.05))
    t0 = time.monotonic()
    r = llmcli("--max-time", "0.7", "--json", "q")
    elapsed = time.monotonic() - t0
    assert r.exit_code == 6
    doc = json.loads(r.stdout)
    assert doc["content"].startswith("0 1 ") and doc["error"]["type"] == "timeout"
    assert "--max-time" in doc["error"]["message"]
    assert elapsed < 2.5


# -- broken streams -----------------------------------------------------------------------------

def test_cut_chunked_body(server, llmcli):
    server.chat(Reply(pieces=sse(chunk("Hel"), chunk("lo"), done=False) + [b'data: {"choi'], end="cut"))
    r = llmcli("--json", "q")
    assert r.exit_code == 5
    doc = json.loads(r.stdout)
    assert doc["content"] == "Hello" and doc["error"]["type"] == "stream"
    assert "cut off" in doc["error"]["message"]


def test_connection_reset(server, llmcli):
    server.chat(Reply(pieces=sse(chunk("Hel"), done=False), end="reset"))
    r = llmcli("q")
    assert r.exit_code == 6
    assert r.stdout == "Hel\n"
    assert "reset" in err_lines(r)[0]


def test_server_closes_early_without_done(server, llmcli):
    server.chat(Reply(pieces=sse(chunk("Hel"), done=False), chunked=False, end="cut"))
    r = llmcli("q")
    assert r.exit_code == 5 and r.stdout == "Hel\n"


def test_200_html_error_page(server, llmcli):
    page = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    server.chat(Reply(pieces=[page], content_type="text/html", chunked=False))
    r = llmcli("q")
    assert r.exit_code == 5
    assert "502 Bad Gateway" in err_lines(r)[0]
    assert "Traceback" not in r.stderr


def test_html_spliced_into_the_stream(server, llmcli):
    server.chat(Reply(pieces=sse(chunk("ok "), "<html><body>Bad gateway</body></html>")))
    r = llmcli("q")
    assert r.exit_code == 5 and r.stdout == "ok \n"
    assert "Bad gateway" in err_lines(r)[0]


# -- input --------------------------------------------------------------------------------------

def test_binary_stdin_is_refused(server, llmcli):
    r = llmcli("q", input=b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    assert r.exit_code == 3 and "binary" in r.stderr and server.requests == []


def test_invalid_utf8_is_replaced_with_a_warning(server, llmcli):
    server.chat(Reply(pieces=OK))
    r = llmcli("q", input=b"caf\xe9 au lait\n")
    assert r.exit_code == 0
    assert "not valid UTF-8" in r.stderr
    assert server.requests[-1].json["messages"][-1]["content"].startswith("caf\ufffd au lait")


def test_directory_as_file(server, llmcli, tmp_path):
    r = llmcli("-f", str(tmp_path), "q")
    assert r.exit_code == 3 and "is a directory" in r.stderr


def test_unreadable_file(server, llmcli, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    f = tmp_path / "secret.txt"
    f.write_text("x")
    f.chmod(0)
    r = llmcli("-f", str(f), "q")
    assert r.exit_code == 3 and "permission denied" in r.stderr


def test_empty_prompt(server, llmcli):
    r = llmcli("   ")
    assert r.exit_code == 2 and "nothing to send" in r.stderr


def test_huge_input_is_refused_before_any_request(server, llmcli, monkeypatch):
    server.chat(Reply(pieces=OK))
    monkeypatch.setenv("LLMCLI_MAX_INPUT_BYTES", "1000")
    r = llmcli("q", input="x" * 5000)
    assert r.exit_code == 3 and "larger than max_input_bytes (1,000 bytes)" in r.stderr
    assert "--max-input-bytes" in r.stderr and server.requests == []
    r = llmcli("q", "--max-input-bytes", "6000", input="x" * 5000)
    assert r.exit_code == 0 and len(server.requests) == 1


def test_unknown_config_key_warns(server, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"providers:\n  mine:\n    base_url: {server.base_url}\n    modle: x\ndefault_provider: mine\n")
    server.chat(Reply(pieces=OK))
    r = invoke("ask", "--config", str(cfg), "q")
    assert r.exit_code == 0
    assert "unknown config key 'providers.mine.modle'" in r.stderr


def test_dns_failure(llmcli):
    r = invoke("ask", "--base-url", "http://no-such-host.invalid/v1", "--retries", "0", "q")
    assert r.exit_code == 6 and "cannot resolve host" in r.stderr


def test_tls_to_plain_http_server(server):
    r = invoke("ask", "--base-url", f"https://127.0.0.1:{server.port}/v1", "--retries", "0", "q")
    assert r.exit_code == 6 and "TLS error" in r.stderr


def test_403_and_404_carry_the_servers_message(server, llmcli):
    server.chat([Reply(status=403, pieces=[b'{"error":{"message":"region not allowed"}}'],
                       content_type="application/json", chunked=False),
                 Reply(status=404, pieces=[b'{"error":{"message":"no such model: x"}}'],
                       content_type="application/json", chunked=False)])
    r1, r2 = llmcli("q"), llmcli("q")
    assert r1.exit_code == 4 and "region not allowed" in r1.stderr
    assert r2.exit_code == 4 and "no such model: x" in r2.stderr


# -- debug record and secrets -------------------------------------------------------------------

def test_debug_record_is_saved_and_replays(server, llmcli, isolated_env):
    key = "sk-live-SUPERSECRET-123456"
    server.chat(Reply(pieces=sse(chunk("Hel"), chunk("lo"), done=False)))
    r = llmcli("--debug", "--api-key", key, "q")
    assert r.exit_code == 5
    assert key not in r.stderr and key not in r.stdout
    records = list((isolated_env / "debug").glob("failure-*.json"))
    assert len(records) == 1
    text = records[0].read_text()
    assert key not in text
    assert "<redacted>" in text
    replayed = invoke("replay", str(records[0]), "--json")
    assert replayed.exit_code == 5
    doc = json.loads(replayed.stdout)
    assert doc["content"] == "Hello" and doc["error"]["type"] == "stream"


def test_replay_raw_capture(tmp_path):
    cap = tmp_path / "cap.sse"
    cap.write_bytes(b"".join(text_stream("re", "play")))
    r = invoke("replay", str(cap))
    assert r.exit_code == 0 and r.stdout == "replay\n"


# -- signals and pipes (a real child process) ---------------------------------------------------

def _spawn(server, *args, **kw):
    env = dict(os.environ)
    return subprocess.Popen([sys.executable, "-m", "llmcli", "ask", "--base-url", server.base_url, *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **kw)


def _slow_stream():
    return Reply(pieces=[p for i in range(200) for p in sse(chunk(f"w{i} "), done=False)], delay=0.05)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_stream(server, sig, code):
    server.chat(_slow_stream())
    proc = _spawn(server, "q")
    first = proc.stdout.read(6)  # the answer has started streaming
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=5)
    elapsed = time.monotonic() - t0
    assert proc.returncode == code
    text = (first + out).decode()
    assert text.startswith("w0 w1 ") and text.endswith("\n")
    assert "Traceback" not in err.decode()
    assert elapsed < 1.5
    assert server.wait_for_close(2)


def test_closed_stdout_ends_quietly(server):
    server.chat(_slow_stream())
    env = dict(os.environ)
    cmd = f"'{sys.executable}' -m llmcli ask --base-url {server.base_url} q | head -c 10"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, env=env, timeout=20)
    assert proc.stdout == b"w0 w1 w2 w"
    assert proc.stderr == b""
    assert proc.returncode == 0


# -- TLS and proxies ----------------------------------------------------------------------------

def test_tls_untrusted_certificate_exit_6_with_hint(tls_server):
    tls_server.chat(Reply(pieces=OK))
    r = invoke("ask", "--base-url", tls_server.base_url, "--retries", "0", "q")
    assert r.exit_code == 6
    assert "certificate verify failed" in r.stderr and "--ca-bundle" in r.stderr


def test_tls_with_ca_bundle_flag(tls_server, tls_cert):
    tls_server.chat(Reply(pieces=OK))
    r = invoke("ask", "--base-url", tls_server.base_url, "--ca-bundle", tls_cert[0], "q")
    assert r.exit_code == 0, r
    assert r.stdout == "All good.\n"


def test_tls_with_requests_ca_bundle_env(tls_server, tls_cert, monkeypatch):
    tls_server.chat(Reply(pieces=OK))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_cert[0])
    r = invoke("ask", "--base-url", tls_server.base_url, "q")
    assert r.exit_code == 0, r


def test_http_proxy_from_the_environment_is_used(server, monkeypatch):
    # The local server plays the proxy: a proxied request names the absolute upstream URL.
    server.route("http://upstream.example.test/v1/chat/completions", Reply(pieces=OK))
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("http_proxy", server.url)
    r = invoke("ask", "--base-url", "http://upstream.example.test/v1", "--api-key", "sk-proxy-test-123456", "q")
    assert r.exit_code == 0, r
    assert r.stdout == "All good.\n"
    assert server.requests[-1].path == "http://upstream.example.test/v1/chat/completions"


@pytest.mark.parametrize("ctype", ["application/json", "text/plain", ""])
def test_sse_mislabelled_as_something_else_still_streams(server, llmcli, ctype, way):
    from localserver import rechunk

    server.chat(Reply(pieces=rechunk(OK, way), content_type=ctype))
    r = llmcli("q")
    assert r.exit_code == 0, r
    assert r.stdout == "All good.\n"


def test_json_answer_mislabelled_as_event_stream(server, llmcli):
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Plain."}, "finish_reason": "stop"}]}
    server.chat(Reply(pieces=[b"\n", json.dumps(body).encode()]))
    r = llmcli("q")
    assert r.exit_code == 0, r
    assert r.stdout == "Plain.\n"


def test_json_error_mislabelled_as_event_stream_keeps_the_message(server, llmcli):
    server.chat(Reply(pieces=[b'{"error": {"message": "context length exceeded", "code": 400}}']))
    r = llmcli("q")
    assert r.exit_code == 4
    assert "context length exceeded" in r.stderr


def test_html_page_labelled_event_stream_is_quoted(server, llmcli):
    server.chat(Reply(pieces=[b"<html><title>Cloudflare: 524 timeout</title></html>"]))
    r = llmcli("q")
    assert r.exit_code == 5
    assert "524 timeout" in r.stderr


def test_debug_diagnostics_on_success(server, llmcli):
    server.chat(Reply(pieces=[b": keep-alive\n\n"] + OK))
    r = llmcli("--debug", "--api-key", "sk-debug-secret-123456", "q")
    assert r.exit_code == 0
    assert r.stdout == "All good.\n"
    size = len(server.requests[-1].body)
    assert re.search(re.escape(f"POST {server.base_url}/chat/completions ({size} bytes sent) → HTTP 200; ")
                     + r"headers after \d+ ms;", r.stderr), r.stderr  # payload size, time to headers
    assert "sse events 5" in r.stderr and "comments 1" in r.stderr
    assert '"Authorization": "<redacted>"' in r.stderr
    assert "sk-debug-secret-123456" not in r.stderr


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_stream_is_decoded_incrementally(server, llmcli, encoding):
    import zlib

    comp = zlib.compressobj(wbits=31 if encoding == "gzip" else 15)
    # Sync-flush after every event so each compressed piece decodes on its own, as a proxy would send it.
    pieces = [comp.compress(p) + comp.flush(zlib.Z_SYNC_FLUSH) for p in OK] + [comp.flush()]
    server.chat(Reply(pieces=pieces, headers={"Content-Encoding": encoding}))
    r = llmcli("q")
    assert r.exit_code == 0, r
    assert r.stdout == "All good.\n"


def test_retry_after_beyond_the_cap_fails_at_once(server, llmcli):
    server.chat(Reply(status=429, pieces=[b'{"error":{"message":"rate limited"}}'], content_type="application/json",
                      chunked=False, headers={"retry-after": "3600"}))
    t0 = time.monotonic()
    r = llmcli("q")
    assert r.exit_code == 4
    assert time.monotonic() - t0 < 2
    assert len(server.requests) == 1
    assert "retry after 3600 s" in r.stderr and "rate limited" in r.stderr


def test_redirected_base_url_is_reported_not_followed(server, llmcli):
    server.chat(Reply(status=301, pieces=[b""], chunked=False, content_type="text/html",
                      headers={"Location": "https://api.example.test/v1/chat/completions"}))
    r = llmcli("--retries", "0", "q")
    assert r.exit_code == 4
    assert "redirects to https://api.example.test/v1/chat/completions" in r.stderr
    assert [q.method for q in server.requests] == ["POST"]


def test_server_that_rejects_stream_options_gets_the_request_again_without_it(server, llmcli):
    server.chat([Reply(status=422, pieces=[b'{"detail":[{"type":"extra_forbidden","loc":["body","stream_options"],'
                                           b'"msg":"Extra inputs are not permitted"}]}'],
                       content_type="application/json", chunked=False),
                 Reply(pieces=OK)])
    r = llmcli("--retries", "0", "q")
    assert r.exit_code == 0, r
    assert r.stdout == "All good.\n"
    first, second = server.requests[0].json, server.requests[1].json
    assert "stream_options" in first and "stream_options" not in second
    assert first["messages"] == second["messages"]


def test_stream_options_set_by_the_user_is_not_dropped(server, llmcli):
    server.chat(Reply(status=400, pieces=[b'{"error":{"message":"bad stream_options"}}'],
                      content_type="application/json", chunked=False))
    r = llmcli("-o", "stream_options", '{"include_usage": false}', "q")
    assert r.exit_code == 4
    assert len(server.requests) == 1  # the user's own option is not stripped, and a 400 is final
    assert "bad stream_options" in r.stderr


# -- diagnostics for a bug report (issue 18) -------------------------------------------------------

def test_a_failed_stream_says_how_much_arrived_and_the_last_bytes(server, llmcli):
    pieces = [b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n',
              b'data: {"choices":[{"index":0,"delta":{"content":"lo"}}]}\n\n',
              b'data: {"choices":[{"index":0,"delta":{"cont\x1b\xff']
    server.chat(Reply(pieces=pieces, end="cut"))
    r = llmcli("q")
    assert r.exit_code == 5, r
    assert r.stdout == "Hello\n"
    line = [x for x in r.stderr.splitlines() if x.startswith("llmcli: error:")][0]
    assert "2 chunks in 2 SSE events received" in line
    assert 'the last bytes were "' in line and '{\\"cont\\u001b\\\\xff"' in line  # escaped
    assert "\x1b" not in r.stderr and len(line) < 400


def test_a_plain_text_error_body_is_quoted_up_to_1000_characters(server, llmcli):
    text = ("upstream said: " + "x" * 20 + " ") * 40  # about 1,440 characters
    server.chat(Reply(status=502, pieces=[text.encode()], content_type="text/plain", chunked=False))
    r = llmcli("--retries", "0", "q")
    assert r.exit_code == 4, r
    line = r.stderr.strip().splitlines()[-1]
    quoted = line.split(": ", 3)[-1]
    assert 990 <= len(quoted) <= 1000 and quoted.endswith("…")
    assert quoted.startswith("upstream said: xxxx")


def test_a_multi_line_json_error_message_stays_on_one_line(server, llmcli):
    body = json.dumps({"error": {"message": "line one\n  line two\n\n  line three"}}).encode()
    server.chat(Reply(status=400, pieces=[body], content_type="application/json", chunked=False))
    r = llmcli("q")
    assert r.exit_code == 4, r
    assert r.stderr.count("\n") == 1 and "line one line two line three" in r.stderr
