"""Approval policy and user command tools through the real tool loop (issue 15)."""

import json
import sys

from conftest import invoke
from localserver import Reply, text_stream
from test_tool_loop import tool_call_stream

from llmcli.tools.approval import ApprovalPolicy


def test_policy_defaults_and_flags():
    p = ApprovalPolicy({"web_*": "deny"}, allow=["echo"])
    assert p.decide("echo", "user") == "allow"
    assert p.decide("other", "user") == "ask"
    assert p.decide("web_fetch") == "deny"
    assert ApprovalPolicy().decide("web_fetch") == "allow"
    assert ApprovalPolicy(yes=True, deny=["x"]).decide("x", "mcp") == "deny"
    q = ApprovalPolicy()
    q.remember("t")
    assert q.decide("t", "mcp") == "allow"


def _functions(tmp_path):
    f = tmp_path / "fn.yaml"
    f.write_text(
        "- name: shout\n  description: upper-case a text\n"
        "  parameters: {type: object, properties: {text: {type: string}}, required: [text]}\n"
        f"  command: [{sys.executable!r}, -c, 'import sys; print(sys.argv[1].upper())', '{{text}}']\n")
    return str(f)


def _run(server, tmp_path, *flags):
    calls = [("c1", "shout", json.dumps({"text": "hi there"}))]
    server.chat([Reply(pieces=tool_call_stream(calls)), Reply(pieces=text_stream("done"))])
    r = invoke("ask", "--base-url", server.base_url, "--functions", _functions(tmp_path), "--json", *flags, "go")
    assert r.exit_code == 0, r
    return r, json.loads(r.stdout)["tool_calls"][0]


def test_user_tool_allowed(server, tmp_path):
    r, call = _run(server, tmp_path, "--allow-tool", "shout")
    assert call["output"].strip() == "HI THERE"


def test_user_tool_ask_without_terminal_refuses(server, tmp_path):
    r, call = _run(server, tmp_path)
    assert call["output"] is None and call["error"] == "refused by user"
    assert "--allow-tool shout" in r.stderr


def test_user_tool_denied(server, tmp_path):
    r, call = _run(server, tmp_path, "--yes", "--deny-tool", "shout")
    assert "denies" in call["error"]
