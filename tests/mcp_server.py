"""A small MCP server of our own (the SDK's MCPServer, FastMCP's successor) for the failure cases the
reference servers do not have: crash, hang, a 5 MB result, an invalid schema, text on stdout before
JSON-RPC, no answer to `initialize`, an exit at start-up.

    python tests/mcp_server.py [--garbage] [--no-init] [--exit] [--invalid-schema]
                               [--pidfile FILE] [--startlog FILE] [--ignore-term] [--http PORT]

--pidfile writes this process's pid and that of a child it starts (sleep), one per line, so a test
can check that the whole process tree is gone after llmcli stops.
"""

import os
import subprocess
import sys
import time


def main(argv):
    if "--exit" in argv:
        sys.stderr.write("mcp_server: cannot open the database (simulated)\n")
        sys.exit(3)
    if "--ignore-term" in argv:  # only SIGKILL ends it (and its child, which inherits the disposition)
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "--pidfile" in argv:
        path = argv[argv.index("--pidfile") + 1]
        child = subprocess.Popen(["sleep", "300"])
        with open(path + ".tmp", "w") as fh:
            fh.write(f"{os.getpid()}\n{child.pid}\n")
        os.replace(path + ".tmp", path)
    if "--startlog" in argv:  # one line per start: a chat session must start its servers once
        with open(argv[argv.index("--startlog") + 1], "a") as fh:
            fh.write(f"{os.getpid()}\n")
    if "--garbage" in argv:
        sys.stdout.write("Starting server... (this line is not JSON-RPC)\n")
        sys.stdout.flush()
    if "--invalid-schema" in argv:
        return raw_server()
    if "--no-init" in argv:
        for _ in sys.stdin:  # read everything, answer nothing
            pass
        time.sleep(300)
        return

    from mcp.server.mcpserver import MCPServer

    server = MCPServer("llmcli-test")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two integers."""
        return str(a + b)

    @server.tool()
    def big(size: int = 5_000_000) -> str:
        """Return `size` characters."""
        return "x" * size

    @server.tool()
    def crash() -> str:
        """Exit the server at once."""
        os._exit(1)

    @server.tool()
    def hang(seconds: float = 300) -> str:
        """Sleep, then answer."""
        time.sleep(seconds)
        return "woke up"

    @server.tool()
    def fail(message: str = "it went wrong") -> str:
        """Raise an error (the result has isError)."""
        from mcp.server.mcpserver.exceptions import ToolError

        raise ToolError(message)  # anticipated: its text reaches the client (others are withheld)

    @server.tool()
    def slow_echo(text: str, seconds: float = 0.3) -> str:
        """Echo after a pause."""
        time.sleep(seconds)
        return text

    if "--http" in argv:
        port = int(argv[argv.index("--http") + 1])
        server.run("streamable-http", host="127.0.0.1", port=port)
    else:
        server.run("stdio")


def raw_server():
    """JSON-RPC by hand: the SDK's own server refuses to send a tool whose schema is not an object,
    but other servers do. Offers `ok` (a valid schema) and `bad` (properties is a list)."""
    import json

    tools = [{"name": "ok", "description": "A valid tool.", "inputSchema": {"type": "object", "properties": {}}},
             {"name": "bad", "description": "An invalid schema.", "inputSchema": {"type": "object", "properties": ["x"]}}]
    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message:
            continue
        method = message.get("method")
        if method == "initialize":
            result = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "raw", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": tools}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": "ok called"}], "isError": False}
        else:
            result = {}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
