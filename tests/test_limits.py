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
