"""Streaming Markdown rendering: styled on a terminal, untouched in a pipe."""

import io
import os
import sys

import pexpect

from conftest import invoke
from llmcli.output.markdown import BOLD, CYAN, GREEN, MarkdownStream, MarkdownStyler, style_inline
from localserver import Reply, text_stream

ANSWER = ["# Ti", "tle\nSome **bo", "ld** and `co", "de`.\n- item\n```py", "thon\nx = 1\n```\n", "tail"]


def render(deltas, columns=80):
    out = io.StringIO()
    md = MarkdownStream(out, columns)
    for d in deltas:
        md.write(d)
    md.finish()
    return out.getvalue()


def test_inline_styles():
    assert style_inline("a **b** c") == f"a {BOLD}b\x1b[0m c"
    assert style_inline("use `x*y*z` here") == f"use {CYAN}x*y*z\x1b[0m here"
    assert style_inline("2 * 3 * 4") == "2 * 3 * 4"


def test_code_fence_state():
    st = MarkdownStyler()
    st.style("```python")
    assert st.style("# not a heading") == f"{GREEN}# not a heading\x1b[0m"
    st.style("```")
    assert st.style("# heading").startswith(BOLD)


def test_stream_writes_raw_then_restyles_each_line():
    out = render(ANSWER)
    # every raw delta was written as it arrived (streaming), then lines were rewritten in place
    assert out.startswith("# Ti" + "tle" + "\r\x1b[J" + BOLD)
    assert f"{BOLD}bo" not in out.split("\n")[0]
    assert f"{BOLD}bold\x1b[0m" in out and f"{CYAN}code\x1b[0m" in out
    assert "\x1b[35m•\x1b[0m item" in out
    assert f"{GREEN}x = 1\x1b[0m" in out
    assert out.endswith("tail")  # a plain last line is left as written


def test_wrapped_line_moves_up_over_its_rows():
    line = "**" + "w" * 30 + "**"  # 34 columns on a 10-column terminal → 4 rows
    out = render([line + "\n"], columns=10)
    assert "\r\x1b[3A\x1b[J" in out


def test_render_is_ignored_in_a_pipe(server):
    server.chat(Reply(pieces=text_stream(*ANSWER)))
    r = invoke("ask", "--base-url", server.base_url, "--render", "q")
    assert r.exit_code == 0
    assert r.stdout == "".join(ANSWER) + "\n"
    assert "\x1b" not in r.stdout


def test_render_on_a_real_terminal(server):
    server.chat(Reply(pieces=text_stream(*ANSWER)))
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "ask", "--base-url", server.base_url, "--render", "q"],
                          env=dict(os.environ, TERM="xterm"), dimensions=(24, 80), encoding="utf-8", timeout=10)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert f"{BOLD}bold\x1b[0m" in child.before
