"""Bounded memory and CPU whatever the server or the input sends: the SSE event cap (decompressed bytes
count against it, so a gzip bomb ends quickly), the input cap, and the numbers that cannot be absurd.

Peak memory is measured in a fresh wrapper process whose only child is llmcli
(`resource.getrusage(RUSAGE_CHILDREN)` there sees llmcli alone, not the rest of the suite).
"""

import os
import subprocess
import sys
import zlib

import pytest

from localserver import Reply, chunk, sse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEAK_RSS_LIMIT_KB = 100 * 1024
WRAPPER = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], stdin=sys.stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)\n"
    "sys.stderr.write(r.stderr.decode('utf-8', 'replace'))\n"
    "sys.stderr.write('\\nPEAK_KB=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(r.returncode)\n"
)


def run_measured(args, stdin=None, env_extra=None, shell_input=None):
    env = dict(os.environ, PYTHONPATH=ROOT, **(env_extra or {}))
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "llmcli", *args]
    if shell_input is not None:  # e.g. `yes | llmcli ask`: a producer that never ends
        producer = subprocess.Popen(shell_input, stdout=subprocess.PIPE)
        try:
            proc = subprocess.run(cmd, stdin=producer.stdout, capture_output=True, env=env, timeout=90)
        finally:
            producer.kill()
            producer.wait(timeout=10)
    else:
        proc = subprocess.run(cmd, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                              capture_output=True, env=env, timeout=90)
    err = proc.stderr.decode("utf-8", "replace")
    peak = int(err.rsplit("PEAK_KB=", 1)[1].split()[0])
    return proc.returncode, err.rsplit("\nPEAK_KB=", 1)[0], peak


def gzip_bomb(decompressed_mb: int) -> bytes:
    """A gzip body of many identical members (valid gzip): each member inflates 1 MiB of 'a'."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = comp.compress(b"data: " + b"a" * (1024 * 1024 - 6)) + comp.flush()
    return member * decompressed_mb


def test_gzip_bomb_ends_quickly_with_bounded_memory(server):
    body = gzip_bomb(1024)  # 1 GiB once inflated, about 1 MB on the wire
    assert len(body) < 4 * 1024 * 1024
    server.chat(Reply(pieces=[body], headers={"Content-Encoding": "gzip"}))
    code, err, peak = run_measured(["ask", "--base-url", server.base_url, "--retries", "0", "hi"])
    assert code == 5, err
    assert "larger than 16,777,216 bytes (max_event_bytes)" in err and "Traceback" not in err
    print(f"gzip bomb: peak RSS {peak / 1024:.1f} MB")
    assert peak < PEAK_RSS_LIMIT_KB


def test_event_cap_is_configurable_and_counts_one_event(server, llmcli, monkeypatch):
    big = "x" * 5000
    server.chat(Reply(pieces=sse(chunk(big), chunk(big), chunk(finish="stop"))))
    monkeypatch.setenv("LLMCLI_MAX_EVENT_BYTES", "4096")
    r = llmcli("hi")
    assert r.exit_code == 5 and "larger than 4,096 bytes (max_event_bytes)" in r.stderr
    # Many events, each under the cap, are fine however large the whole answer is.
    server.chat(Reply(pieces=sse(*[chunk("y" * 1000) for _ in range(50)], chunk(finish="stop"))))
    r = llmcli("hi")
    assert r.exit_code == 0 and r.stdout.count("y") == 50_000


def test_a_non_streamed_answer_is_capped_too(server, llmcli, monkeypatch):
    body = ('{"choices": [{"message": {"role": "assistant", "content": "' + "z" * 10_000 + '"}}]}').encode()
    server.chat(Reply(pieces=[body[:3000], body[3000:]], content_type="application/json"))
    monkeypatch.setenv("LLMCLI_MAX_EVENT_BYTES", "4096")
    r = llmcli("hi")
    assert r.exit_code == 5 and "larger than 4,096 bytes" in r.stderr


def test_body_mislabelled_as_gzip_is_a_stream_error(server, llmcli):
    server.chat(Reply(pieces=sse(chunk("hello"), chunk(finish="stop")), headers={"Content-Encoding": "gzip"}))
    r = llmcli("--retries", "0", "hi")
    assert r.exit_code == 5, r
    assert "Content-Encoding" in r.stderr and "gzip" in r.stderr and "Traceback" not in r.stderr


def test_dev_zero_as_a_file_ends_at_once(server):
    server.chat(Reply(pieces=sse(chunk("never"), chunk(finish="stop"))))
    code, err, peak = run_measured(["ask", "--base-url", server.base_url, "-f", "/dev/zero", "hi"])
    assert code == 3 and "/dev/zero makes the input larger than max_input_bytes (8,000,000 bytes)" in err
    assert server.requests == []
    print(f"-f /dev/zero: peak RSS {peak / 1024:.1f} MB")
    assert peak < PEAK_RSS_LIMIT_KB


def test_endless_stdin_ends_at_once(server):
    server.chat(Reply(pieces=sse(chunk("never"), chunk(finish="stop"))))
    code, err, peak = run_measured(["ask", "--base-url", server.base_url, "--max-input-bytes", "1000000", "hi"],
                                   shell_input=["yes"])
    assert code == 3 and "stdin makes the input larger than max_input_bytes (1,000,000 bytes)" in err
    assert server.requests == []
    assert peak < PEAK_RSS_LIMIT_KB


def test_files_and_stdin_share_one_budget(server, llmcli, tmp_path):
    server.chat(Reply(pieces=sse(chunk("ok"), chunk(finish="stop"))))
    a = tmp_path / "a.txt"
    a.write_text("a" * 600)
    r = llmcli("--max-input-bytes", "1000", "-f", str(a), "q", input="b" * 600)
    assert r.exit_code == 3 and "stdin makes the input larger than max_input_bytes (1,000 bytes)" in r.stderr
    r = llmcli("--max-input-bytes", "1300", "-f", str(a), "q", input="b" * 600)
    assert r.exit_code == 0 and r.stdout == "ok\n"


@pytest.mark.parametrize("text, key", [
    ("timeouts:\n  read: 1e308\n", "timeouts.read"),
    ("timeouts:\n  idle: .nan\n", "timeouts.idle"),
    ("timeouts:\n  connect: yes\n", "timeouts.connect"),
    ("retries: 1000000\n", "retries"),
    ("retries: 2.5\n", "retries"),
    ("chat:\n  vi_mode: maybe\n", "chat.vi_mode"),
    ("debug: sometimes\n", "debug"),
    ("tools:\n  confirm: 'nope'\n", "tools.confirm"),
    ("tools:\n  max_rounds: 0\n", "tools.max_rounds"),
    ("tools:\n  enabled: web_search\n", "tools.enabled"),
    ("local:\n  n_ctx: -5\n", "local.n_ctx"),
    ("providers:\n  mine:\n    base_url: http://127.0.0.1:1/v1\n    n_threads: many\n", "providers.mine.n_threads"),
    ("max_event_bytes: 10\n", "max_event_bytes"),
    ("tools:\n  web_fetch:\n    max_chars: lots\n", "tools.web_fetch.max_chars"),
    ("tools:\n  web_fetch:\n    timeout: -1\n", "tools.web_fetch.timeout"),
    ("tools:\n  web_fetch:\n    max_redirects: -1\n", "tools.web_fetch.max_redirects"),
    ("tools:\n  max_calls: 0\n", "tools.max_calls"),
])
def test_absurd_or_mistyped_values_fail_at_start_up(server, tmp_path, text, key):
    from conftest import invoke

    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    r = invoke("ask", "--config", str(cfg), "--base-url", server.base_url, "hi")
    assert r.exit_code == 3, r
    assert key in r.stderr and "Traceback" not in r.stderr and "unexpected" not in r.stderr
    assert server.requests == []


@pytest.mark.parametrize("spelling, expected", [
    ("true", True), ("yes", True), ("on", True), ("1", True), ("'yes'", True), ("'ON'", True),
    ("false", False), ("no", False), ("off", False), ("0", False), ("'no'", False), ("'off'", False),
])
def test_boolean_spellings_in_chat_section(tmp_path, spelling, expected):
    from llmcli.config.settings import resolve_settings

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"chat:\n  vi_mode: {spelling}\n  render: {spelling}\n")
    s = resolve_settings({"config": str(cfg), "base_url": "http://127.0.0.1:9/v1"}, env={}, need_provider=False)
    assert dict(s.chat)["vi_mode"] is expected and dict(s.chat)["render"] is expected


# -- tool calls per turn, Retry-After, interim responses, --save ---------------------------------

def test_at_most_n_tool_calls_per_turn_run(server, llmcli, monkeypatch):
    import json

    calls = [{"index": i, "id": f"c{i}", "type": "function",
              "function": {"name": "web_fetch", "arguments": json.dumps({"url": "http://127.0.0.1:9/x"})}}
             for i in range(5)]
    server.chat([Reply(pieces=sse(chunk(tool_calls=calls), chunk(finish="tool_calls"))),
                 Reply(pieces=sse(chunk("done"), chunk(finish="stop")))])
    monkeypatch.setenv("LLMCLI_MAX_TOOL_CALLS", "2")
    r = llmcli("-T", "web_fetch", "--json", "q")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    errors = [c.get("error") or "" for c in doc["tool_calls"]]
    assert len(errors) == 5 and all("more than 2 tool calls in one turn" in e for e in errors[2:])
    assert not any("more than 2" in e for e in errors[:2])
    tool_msgs = [m for m in server.requests[1].json["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == [f"c{i}" for i in range(5)]


def test_tool_error_quotes_a_bounded_piece_of_the_arguments():
    from llmcli.errors import ToolError
    from llmcli.tools.base import Tool

    tool = Tool()
    tool.name = "t"
    tool.parameters = {"type": "object", "properties": {"n": {"type": "integer"}}}
    with pytest.raises(ToolError) as info:
        tool.validate({"n": "9" * 100_000 + "x"})
    assert len(str(info.value)) < 400
    with pytest.raises(ToolError) as info:
        tool.validate({"k" * 100_000: 1})
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("value", ["-5", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_unusable_retry_after_falls_back_to_backoff(value):
    from llmcli.wire.client import parse_retry_after

    assert parse_retry_after({"retry-after": value}) is None
    assert parse_retry_after({"retry-after-ms": "-100"}) is None
    assert parse_retry_after({"retry-after": "2"}) == 2.0


def test_103_early_hints_is_skipped_not_taken_as_the_answer(tmp_path):
    import socket
    import threading

    from conftest import invoke

    body = b"".join(sse(chunk("real answer"), chunk(finish="stop")))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0])
        while len(rest) < length:
            rest += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                     b"HTTP/1.1 102 Processing\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        r = invoke("ask", "--base-url", f"http://127.0.0.1:{port}/v1", "--retries", "0", "q")
    finally:
        thread.join(timeout=5)
        listener.close()
    assert r.exit_code == 0 and r.stdout == "real answer\n", r


def test_parallel_saves_to_one_file_each_leave_a_whole_conversation(server, tmp_path):
    import json

    server.chat(Reply(pieces=sse(chunk("answer " + "z" * 20_000), chunk(finish="stop"))))
    target = tmp_path / "conv.json"
    planted = tmp_path / "conv.json.tmp"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    planted.symlink_to(victim)
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-m", "llmcli", "ask", "--base-url", server.base_url,
                               "--save", str(target), f"question {i}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(16)]
    codes = [p.wait(timeout=60) for p in procs]
    assert codes == [0] * 16, [p.stderr.read() for p in procs]
    saved = json.loads(target.read_text())
    assert saved[0]["role"] == "user" and saved[0]["content"].startswith("question ")
    assert saved[1]["content"].startswith("answer ")
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "llmcli-home") == ["conv.json", "conv.json.tmp", "victim.txt"]


def test_save_keeps_a_partial_answer_marked_partial(server, llmcli, tmp_path):
    import json

    server.chat(Reply(pieces=sse(chunk("half an ans"), done=False), end="cut"))
    target = tmp_path / "c.json"
    r = llmcli("--retries", "0", "--save", str(target), "q")
    assert r.exit_code == 5
    assert json.loads(target.read_text())[-1] == {"role": "assistant", "content": "half an ans",
                                                   "partial": "incomplete"}
