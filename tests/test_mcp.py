"""MCP servers' tools through the real SDK against real servers: mcp-server-time (PyPI) and the
reference @modelcontextprotocol/server-everything (npm; stdio, Streamable HTTP and HTTP+SSE), and our
own tests/mcp_server.py for the failure cases (crash, hang, 5 MB result, invalid schema, text on
stdout, no answer to initialize, exit at start-up). The chat side is the local scripted server."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import invoke
from localserver import Reply, text_stream
from test_tool_loop import tool_call_stream

HERE = os.path.dirname(os.path.abspath(__file__))
OUR_SERVER = f"{sys.executable} {os.path.join(HERE, 'mcp_server.py')}"
BIN = os.path.dirname(sys.executable)
NPM_DIR = os.environ.get("LLMCLI_TEST_NPM") or os.path.expanduser("~/.cache/llmcli-test/npm")
EVERYTHING = os.path.join(NPM_DIR, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")


def ours(*flags, name="t"):
    return f"{name}={OUR_SERVER}" + "".join(f" {f}" for f in flags)


def write_config(tmp_path, timeout=3, startup=8, servers=None, extra=""):
    import yaml

    data = {"mcp": {"timeout": timeout, "startup_timeout": startup}}
    if servers:
        data["mcp"]["servers"] = servers
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data) + extra)
    return str(path)


def needs_node():
    if not shutil.which("node"):
        pytest.skip("node is not installed")
    if not os.path.exists(EVERYTHING):
        pytest.skip(f"@modelcontextprotocol/server-everything is not installed in {NPM_DIR} (.ci/run installs it)")


def ask(server, config, *args):
    return invoke("ask", "--base-url", server.base_url, "--config", config, *args)


def chat_requests(server):
    return [q for q in server.requests if q.path == "/v1/chat/completions"]


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("body, key", [
    ("mcp: {servers: {t: {args: [x]}}}", "mcp.servers.t"),
    ("mcp: {servers: {t: {command: x, args: x}}}", "mcp.servers.t.args"),
    ("mcp: {servers: {t: {url: 'ftp://x'}}}", "mcp.servers.t.url"),
    ("mcp: {timeout: soon, servers: {}}", "mcp.timeout"),
    ("mcp: {servers: {'bad name': {command: x}}}", "mcp.servers"),
    ("mcp: {servers: [x]}", "mcp.servers"),
    ("mcp: {servers: {t: {command: x, env: {A: [1]}}}}", "mcp.servers.t.env.A"),
])
def test_bad_config_is_exit_3_naming_the_key(tmp_path, body, key):
    path = tmp_path / "config.yaml"
    path.write_text(body + "\n")
    for args in (["mcp", "list"], ["ask", "--base-url", "http://127.0.0.1:9/v1", "hi"]):
        r = invoke(*args, "--config", str(path))
        assert r.exit_code == 3, r
        assert r.stderr.startswith("llmcli: error: ") and key in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_mcp_config_file_in_claude_desktop_shape(tmp_path):
    path = tmp_path / "servers.json"
    path.write_text(json.dumps({"mcpServers": {"clock": {"command": os.path.join(BIN, "mcp-server-time"),
                                                          "args": ["--local-timezone", "UTC"]}}}))
    r = invoke("mcp", "list", "--json", "--mcp-config", str(path), "--config", write_config(tmp_path))
    assert r.exit_code == 0, r
    (row,) = json.loads(r.stdout)
    assert row["name"] == "clock" and row["status"] == "running" and row["transport"] == "stdio"
    names = {t["name"] for t in row["tools"]}
    assert {"get_current_time", "convert_time"} <= names
    schema = next(t for t in row["tools"] if t["name"] == "get_current_time")["input_schema"]
    assert schema["type"] == "object" and "timezone" in schema["properties"]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = invoke("mcp", "list", "--mcp-config", str(bad))
    assert r.exit_code == 3 and "bad.json" in r.stderr and "not valid JSON" in r.stderr


def test_env_and_headers_expand_variables(monkeypatch):
    from llmcli.config.mcp import resolve_mcp_servers

    monkeypatch.setenv("MCP_TEST_TOKEN", "tok123")
    specs, warnings = resolve_mcp_servers({"servers": {
        "a": {"command": "x", "env": {"KEY": "${MCP_TEST_TOKEN}", "N": 1}},
        "b": {"url": "http://h/mcp", "headers": {"Authorization": "Bearer $MCP_TEST_TOKEN"}, "colour": 1},
        "c": {"url": "http://h/sse"}, "d": {"command": "y", "disabled": True}}})
    a, b, c = specs
    assert dict(a.env) == {"KEY": "tok123", "N": "1"} and a.transport == "stdio"
    assert dict(b.headers) == {"Authorization": "Bearer tok123"} and b.transport == "http"
    assert c.transport == "sse"
    assert warnings == ["mcp.servers.b: unknown key 'colour' (ignored)"]
    assert "tok123" not in b.target()


def test_no_servers_configured(tmp_path):
    r = invoke("mcp", "list")
    assert r.exit_code == 3 and "no MCP servers configured" in r.stderr


# -- mcp list / call against mcp-server-time --------------------------------------------------


def test_mcp_call_time_server(tmp_path):
    cfg = write_config(tmp_path, servers={"time": {"command": os.path.join(BIN, "mcp-server-time")}})
    r = invoke("mcp", "call", "time", "get_current_time", '{"timezone": "Europe/Paris"}', "--config", cfg)
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["timezone"] == "Europe/Paris"
    r = invoke("mcp", "call", "time", "get_current_time", '{"timezone": "Nowhere/Atlantis"}', "--config", cfg)
    assert r.exit_code == 1, r
    assert "Nowhere/Atlantis" in r.stderr and "llmcli: error: get_current_time returned an error" in r.stderr
    r = invoke("mcp", "call", "time", "nope", "--config", cfg)
    assert r.exit_code == 3 and "has no tool 'nope'" in r.stderr and "get_current_time" in r.stderr
    r = invoke("mcp", "call", "clock", "x", "--config", cfg)
    assert r.exit_code == 3 and "no MCP server called 'clock'" in r.stderr
    r = invoke("mcp", "call", "time", "get_current_time", "[1]", "--config", cfg)
    assert r.exit_code == 2 and "JSON object" in r.stderr


def test_tools_command_lists_mcp_tools(tmp_path):
    r = invoke("tools", "--json", "--mcp", os.path.join(BIN, "mcp-server-time"), "--config", write_config(tmp_path))
    assert r.exit_code == 0, r
    names = [t["function"]["name"] for t in json.loads(r.stdout)]
    assert names[:2] == ["web_search", "web_fetch"] and "get_current_time" in names


def test_ask_uses_the_time_server(server, tmp_path):
    cfg = write_config(tmp_path)
    calls = [("c1", "get_current_time", '{"timezone": "Asia/Tokyo"}')]
    server.chat([Reply(pieces=tool_call_stream(calls, split=1)), Reply(pieces=text_stream("It is late."))])
    r = ask(server, cfg, "--mcp", os.path.join(BIN, "mcp-server-time"), "--allow-tool", "time__*", "--json", "time?")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    (call,) = doc["tool_calls"]
    assert call["error"] is None and json.loads(call["output"])["timezone"] == "Asia/Tokyo"
    offered = [t["function"]["name"] for t in chat_requests(server)[0].json["tools"]]
    assert offered == ["get_current_time", "convert_time"]


# -- the tool loop with our server --------------------------------------------------------------


def test_parallel_calls_bytewise_json(server, tmp_path):
    cfg = write_config(tmp_path)
    calls = [("c1", "echo", '{"text": "héllo"}'), ("c2", "add", '{"a": 2, "b": 40}'),
             ("c3", "fail", '{"message": "disk full"}'), ("c4", "big", "{}")]
    server.chat([Reply(pieces=tool_call_stream(calls, split=1)), Reply(pieces=text_stream("done"))])
    r = ask(server, cfg, "--mcp", ours(), "--yes", "--json", "go")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    by_id = {c["id"]: c for c in doc["tool_calls"]}
    assert by_id["c1"]["output"] == "héllo" and by_id["c1"]["arguments"] == {"text": "héllo"}
    assert by_id["c2"]["output"] == "42"
    assert by_id["c3"]["output"] is None and "disk full" in by_id["c3"]["error"]
    big = by_id["c4"]["output"]
    assert big.startswith("x" * 1000) and len(big) < 101_000
    assert big.endswith("[truncated: the result was 5,000,000 characters; the first 100,000 are shown]")
    follow_up = chat_requests(server)[1].json["messages"]
    tool_msgs = [m for m in follow_up if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["c1", "c2", "c3", "c4"]
    assert "disk full" in tool_msgs[2]["content"]
    assert "Traceback" not in r.stderr


def test_names_clash_and_filters(server, tmp_path):
    cfg = write_config(tmp_path)
    server.chat([Reply(pieces=tool_call_stream([("c1", "a__echo", '{"text": "from a"}')])),
                 Reply(pieces=text_stream("ok"))])
    r = ask(server, cfg, "--mcp", ours(name="a"), "--mcp", ours(name="b"), "-T", "a__*", "-T", "b__add",
            "--allow-tool", "a__echo", "--json", "go")
    assert r.exit_code == 0, r
    offered = [t["function"]["name"] for t in chat_requests(server)[0].json["tools"]]
    assert sorted(offered) == ["a__add", "a__big", "a__crash", "a__echo", "a__fail", "a__hang",
                               "a__slow_echo", "b__add"]
    assert json.loads(r.stdout)["tool_calls"][0]["output"] == "from a"


def test_jsonl_events(server, tmp_path):
    cfg = write_config(tmp_path)
    server.chat([Reply(pieces=tool_call_stream([("c1", "echo", '{"text": "x"}')], split=1)),
                 Reply(pieces=text_stream("ok"))])
    r = ask(server, cfg, "--mcp", ours(), "--allow-tool", "echo", "--jsonl", "go")
    assert r.exit_code == 0, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("done")
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["name"] == "echo" and result["output"] == "x" and result["error"] is None


def test_ask_without_a_terminal_is_refused_naming_the_flag(server, tmp_path):
    cfg = write_config(tmp_path)
    server.chat([Reply(pieces=tool_call_stream([("c1", "echo", '{"text": "x"}')])),
                 Reply(pieces=text_stream("ok"))])
    r = ask(server, cfg, "--mcp", ours(), "--json", "go")
    assert r.exit_code == 0, r
    (call,) = json.loads(r.stdout)["tool_calls"]
    assert call["output"] is None and call["error"] == "refused by user"
    assert "--allow-tool echo" in r.stderr and "--yes" in r.stderr
    # the qualified name allows it too
    server.chat([Reply(pieces=tool_call_stream([("c1", "echo", '{"text": "x"}')])),
                 Reply(pieces=text_stream("ok"))])
    r = ask(server, cfg, "--mcp", ours(), "--allow-tool", "t__echo", "--json", "go")
    assert json.loads(r.stdout)["tool_calls"][0]["output"] == "x"


@pytest.mark.parametrize("tool, expected", [
    ("crash", "the server exited"),
    ("hang", "no answer within 2s while calling hang"),
])
def test_crash_and_hang_are_tool_errors(server, tmp_path, tool, expected):
    cfg = write_config(tmp_path, timeout=2)
    calls = [("c1", tool, "{}"), ("c2", "echo", '{"text": "after"}')]
    server.chat([Reply(pieces=tool_call_stream(calls)), Reply(pieces=text_stream("ok"))])
    r = ask(server, cfg, "--mcp", ours(), "--yes", "--json", "go")
    assert r.exit_code == 0, r
    first, second = json.loads(r.stdout)["tool_calls"]
    assert first["output"] is None and expected in first["error"], first
    if tool == "crash":  # the server is gone: the next call fails fast, in one line
        assert "MCP server 't'" in second["error"]
    else:  # a hung call does not take the server with it
        assert second["output"] == "after", second
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("flag, warning", [
    ("--exit", "exited during start-up (its stderr: mcp_server: cannot open the database (simulated))"),
    ("--no-init", "did not answer initialize within 2s"),
    ("--invalid-schema", "the server sent an invalid ListToolsResult (tools.1.inputSchema.properties"),
])
def test_a_server_that_cannot_start_is_one_line(server, tmp_path, flag, warning):
    cfg = write_config(tmp_path, startup=2)
    server.chat([Reply(pieces=tool_call_stream([("c1", "echo", '{"text": "x"}')])),
                 Reply(pieces=text_stream("ok"))])
    # the good server still works beside the broken one
    r = ask(server, cfg, "--mcp", ours(flag, name="broken"), "--mcp", ours(), "--yes", "--json", "go")
    assert r.exit_code == 0, r
    lines = [line for line in r.stderr.splitlines() if "broken" in line]
    assert len(lines) == 1 and lines[0].startswith("llmcli: warning: MCP server 'broken': ") and warning in lines[0]
    assert "Traceback" not in r.stderr
    assert json.loads(r.stdout)["tool_calls"][0]["output"] == "x"
    r = invoke("mcp", "list", "--json", "--config", cfg, "--mcp", ours(flag, name="broken"), "--mcp", ours())
    assert r.exit_code == 6 and "llmcli: error: 1 of 2 MCP servers failed: broken" in r.stderr
    row, good = json.loads(r.stdout)
    assert good["status"] == "running" and good["tools"]
    assert row["status"] == "failed" and warning in row["error"] and row["tools"] == []


def test_text_on_stdout_before_json_rpc(server, tmp_path):
    cfg = write_config(tmp_path)
    server.chat([Reply(pieces=tool_call_stream([("c1", "echo", '{"text": "x"}')])),
                 Reply(pieces=text_stream("ok"))])
    r = ask(server, cfg, "--mcp", ours("--garbage"), "--yes", "--json", "go")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["tool_calls"][0]["output"] == "x"
    lines = [line for line in r.stderr.splitlines() if "not JSON-RPC" in line]
    assert len(lines) == 1 and "Traceback" not in r.stderr


def test_a_command_that_does_not_exist(server, tmp_path):
    server.chat([Reply(pieces=text_stream("fine"))])
    r = ask(server, write_config(tmp_path), "--mcp", "nosuch=/nonexistent/mcp-server", "go")
    assert r.exit_code == 0 and r.stdout == "fine\n", r
    assert "llmcli: warning: MCP server 'nosuch': command not found: /nonexistent/mcp-server" in r.stderr


def test_no_tools_starts_no_server(server, tmp_path):
    pidfile = tmp_path / "pids"
    server.chat([Reply(pieces=text_stream("fine"))])
    r = ask(server, write_config(tmp_path), "--mcp", ours("--pidfile", str(pidfile)), "--no-tools", "go")
    assert r.exit_code == 0 and not pidfile.exists()
    assert "tools" not in chat_requests(server)[0].json


# -- the reference server (npm) ----------------------------------------------------------------


def test_everything_over_stdio(server, tmp_path):
    needs_node()
    cfg = write_config(tmp_path, timeout=20, startup=20,
                       servers={"everything": {"command": "node", "args": [EVERYTHING, "stdio"]}})
    calls = [("c1", "echo", '{"message": "hi there"}'), ("c2", "get-sum", '{"a": 2, "b": 3}'),
             ("c3", "get-tiny-image", "{}")]
    server.chat([Reply(pieces=tool_call_stream(calls, split=1)), Reply(pieces=text_stream("ok"))])
    r = ask(server, cfg, "--allow-tool", "everything__*", "--json", "go")
    assert r.exit_code == 0, r
    out = {c["id"]: c for c in json.loads(r.stdout)["tool_calls"]}
    assert "hi there" in out["c1"]["output"]
    assert "5" in out["c2"]["output"]
    assert "[image: image/png" in out["c3"]["output"] and "not shown" in out["c3"]["output"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["streamableHttp", "sse"])
def everything_http(request):
    needs_node()
    port = free_port()
    proc = subprocess.Popen(["node", EVERYTHING, request.param], env=dict(os.environ, PORT=str(port)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    path = "/mcp" if request.param == "streamableHttp" else "/sse"
    yield f"http://127.0.0.1:{port}{path}", request.param
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_everything_over_http(server, tmp_path, everything_http):
    url, kind = everything_http
    cfg = write_config(tmp_path, timeout=20, startup=20)
    r = invoke("mcp", "list", "--json", "--config", cfg, "--mcp", f"ev={url}")
    assert r.exit_code == 0, r
    (row,) = json.loads(r.stdout)
    assert row["status"] == "running", row
    assert row["transport"] == ("http" if kind == "streamableHttp" else "sse")
    assert {"echo", "get-sum"} <= {t["name"] for t in row["tools"]}
    server.chat([Reply(pieces=tool_call_stream([("c1", "echo", '{"message": "over http"}')], split=1)),
                 Reply(pieces=text_stream("ok"))])
    r = ask(server, cfg, "--mcp", f"ev={url}", "--allow-tool", "ev__echo", "--json", "go")
    assert r.exit_code == 0, r
    assert "over http" in json.loads(r.stdout)["tool_calls"][0]["output"]


# -- Ctrl-C and SIGTERM: no process of a server survives ------------------------------------------


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signum, code, flags", [(signal.SIGINT, 130, ()), (signal.SIGTERM, 143, ()),
                                                 (signal.SIGINT, 130, ("--ignore-term",))])
def test_signal_during_a_call_leaves_no_process(server, tmp_path, signum, code, flags):
    """Also a server (and its child) that ignores SIGTERM: the process group is killed."""
    pidfile = tmp_path / "pids"
    cfg = write_config(tmp_path, timeout=60)
    server.chat([Reply(pieces=tool_call_stream([("c1", "hang", "{}")])), Reply(pieces=text_stream("never"))])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "llmcli", "ask", "--base-url", server.base_url, "--config", cfg,
                             "--mcp", ours("--pidfile", str(pidfile), *flags), "--yes", "go"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (pidfile.exists() and len(chat_requests(server)) >= 1):
            time.sleep(0.05)
        assert pidfile.exists(), "the server did not start"
        pids = [int(p) for p in pidfile.read_text().split()]
        assert all(alive(p) for p in pids)
        time.sleep(1.0)  # let the call reach the server
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == code, err
    assert "Traceback" not in err.decode()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), [p for p in pids if alive(p)]


# -- on a terminal: the approval prompt, a chat session ---------------------------------------------


def test_approval_prompt_on_a_terminal(server, tmp_path):
    import pexpect

    cfg = write_config(tmp_path)
    calls = [("c1", "echo", '{"text": "one"}'), ("c2", "add", '{"a": 1, "b": 2}')]
    server.chat([Reply(pieces=tool_call_stream(calls)), Reply(pieces=text_stream("fin"))])
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "ask", "--base-url", server.base_url, "--config", cfg,
                                           "--mcp", ours(), "go"], env=dict(os.environ), encoding="utf-8", timeout=20)
    try:
        child.expect_exact("llmcli: run echo(")
        child.expect_exact("[y]es/[n]o/[a]lways: ")
        child.sendline("y")
        child.expect_exact("llmcli: run add(")
        child.expect_exact("[y]es/[n]o/[a]lways: ")
        child.sendline("n")
        child.expect_exact("fin")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    follow = chat_requests(server)[1].json
    assert [m["content"] for m in follow["messages"] if m["role"] == "tool"] == ["one", "error: refused by user"]


def test_chat_session_starts_servers_once_and_uses_several(server, tmp_path):
    from test_repl import Repl, WAIT

    import pexpect

    startlog = tmp_path / "starts"
    cfg = write_config(tmp_path, servers={
        "t": {"command": sys.executable, "args": [os.path.join(HERE, "mcp_server.py"), "--startlog", str(startlog)]},
        "time": {"command": os.path.join(BIN, "mcp-server-time")}})
    server.chat([Reply(pieces=tool_call_stream([("c1", "echo", '{"text": "first"}'),
                                                ("c2", "get_current_time", '{"timezone": "UTC"}')])),
                 Reply(pieces=text_stream("one done")),
                 Reply(pieces=tool_call_stream([("c3", "add", '{"a": 20, "b": 22}')])),
                 Reply(pieces=text_stream("two done"))])
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "chat", "--base-url", server.base_url, "--config", cfg,
                                           "--yes"], env=dict(os.environ, TERM="xterm"), dimensions=(40, 120),
                          encoding="utf-8", timeout=WAIT)
    child.delaybeforesend = 0.01
    repl = Repl(child)
    try:
        repl.prompt()
        assert "one done" in repl.say("first question")
        assert "two done" in repl.say("second question")
        shown = repl.say("/tools")
        assert "MCP tools: echo, add, big" in shown and "get_current_time, convert_time" in shown
        assert repl.exit() == 0
    finally:
        if child.isalive():
            child.terminate(force=True)
    assert len(startlog.read_text().split()) == 1  # once for the session, not once per answer
    pid = int(startlog.read_text().split()[0])
    assert not alive(pid)
    tool_msgs = [m["content"] for m in chat_requests(server)[3].json["messages"] if m["role"] == "tool"]
    assert tool_msgs[0] == "first" and '"timezone": "UTC"' in tool_msgs[1] and tool_msgs[2] == "42"


def test_http_server_headers_and_refusals(server, tmp_path):
    server.route("/mcp", Reply(status=401, pieces=[b'{"error": "unauthorized"}'], content_type="application/json",
                               chunked=False))
    cfg = write_config(tmp_path, servers={"remote": {"url": server.url + "/mcp",
                                                     "headers": {"Authorization": "Bearer sekrit-token"}}})
    r = invoke("mcp", "list", "--config", cfg)
    assert r.exit_code == 6, r
    assert "remote  http  " + server.url + "/mcp  [failed: " in r.stdout
    assert "sekrit" not in r.stdout + r.stderr and "Traceback" not in r.stderr
    sent = [q for q in server.requests if q.path == "/mcp"]
    assert sent and sent[0].headers.get("Authorization") == "Bearer sekrit-token"
    assert sent[0].json["method"] == "initialize"
    port = free_port()  # nothing listens there
    for url in (f"http://127.0.0.1:{port}/mcp", f"http://127.0.0.1:{port}/sse"):
        r = invoke("mcp", "list", "--json", "--config", write_config(tmp_path), "--mcp", f"gone={url}")
        assert r.exit_code == 6 and "Traceback" not in r.stderr, r
        assert json.loads(r.stdout)[0]["status"] == "failed"


def test_ctrl_c_while_a_server_starts_leaves_no_process(server, tmp_path):
    pidfile = tmp_path / "pids"
    cfg = write_config(tmp_path, startup=60)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "llmcli", "ask", "--base-url", server.base_url, "--config", cfg,
                             "--mcp", ours("--pidfile", str(pidfile), "--no-init"), "go"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not pidfile.exists():
            time.sleep(0.05)
        pids = [int(p) for p in pidfile.read_text().split()]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 130 and "Traceback" not in err.decode(), err
    assert not chat_requests(server)  # stopped before any request
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


def test_max_tool_rounds_with_mcp_tools(server, tmp_path):
    call = tool_call_stream([("c1", "echo", '{"text": "again"}')], split=1)
    server.chat([Reply(pieces=call), Reply(pieces=call), Reply(pieces=call)])
    r = ask(server, write_config(tmp_path), "--mcp", ours(), "--yes", "--max-tool-rounds", "2", "--json", "go")
    assert r.exit_code == 5, r
    doc = json.loads(r.stdout)
    assert [c["output"] for c in doc["tool_calls"]] == ["again", "again", None]
    assert doc["tool_calls"][2]["error"] == "not executed"


def test_without_the_sdk_it_is_one_config_error(server, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mcp", None)  # what `import mcp` does when it is not installed
    r = ask(server, write_config(tmp_path), "--mcp", ours(), "go")
    assert r.exit_code == 3, r
    assert r.stderr.strip() == ("llmcli: error: MCP servers are configured, but the MCP SDK is not installed: "
                                "pip install 'llmcli[mcp]' (or pip install mcp)")
    assert not chat_requests(server)
