"""MCP servers' tools, run through the same loop, approval and reporting as the built-ins.

The official `mcp` SDK is asynchronous; the tool loop is not. `McpHub` runs one asyncio event loop in
a background thread for a run (or a whole chat session). Each server lives in one task there, which
holds the SDK's transport and `ClientSession` context managers open until the hub closes (anyio's
cancel scopes must be left by the task that entered them). The synchronous methods (`tools`,
`call`) submit coroutines to that loop and wait with a bound, so a server that hangs costs at most
its timeout and a Ctrl-C in the main thread is never swallowed.

The SDK is imported only here, and only when a server is configured and its tools are needed:
`--help` and an `ask` without MCP never import `mcp` or anyio (tests/test_startup.py).

What can go wrong with a server, and what the user and the model see:
  - it cannot be started, exits, or never answers `initialize` (startup_timeout): one warning line,
    its tools are not offered; `llmcli mcp list` shows the reason;
  - it prints other things on stdout before (or between) JSON-RPC messages: one warning line, the
    lines are ignored (the SDK reports each as a parse error; we keep its logger quiet);
  - a call hangs (timeout), the server crashes mid-call, or the result says `isError`: a tool error
    the model reads; a result longer than max_output characters is cut and marked.
Servers are stopped when the hub closes: stdin closed, then the SDK signals the server's process
group (it is started in its own session); whatever still lives after that is killed by us (SIGKILL
to the group), so no server or child of one outlives llmcli, also after Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import json
import os
import re
import signal
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import ToolError
from .base import Tool

# How long close() waits for the servers to go: the SDK's own escalation takes up to 2 s (stdin
# closed) + 2 s (SIGTERM to the group) + 2 s (SIGKILL); we then kill what is left ourselves.
SHUTDOWN_WAIT = 7.0
_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")


class McpUnavailable(ToolError):
    """An MCP server could not be started or reached (exit 6 when run directly: `llmcli mcp call`)."""

    def __init__(self, message):
        from ..status import ExitStatus

        super().__init__(message, exit_status=ExitStatus.NETWORK)


def _quiet_sdk_logging():
    """The SDK logs a traceback for every non-JSON stdout line; our warnings say it in one line."""
    import logging

    for name in ("mcp", "httpx", "httpx2", "httpcore", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
        logger.propagate = False


def _children() -> set:
    """Our direct child processes (Linux /proc; empty elsewhere): how we learn a stdio server's pid,
    which the SDK keeps to itself, so that close() can make sure its process group is gone."""
    pids = set()
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as fh:
                pids.update(int(p) for p in fh.read().split())
    except OSError:
        pass
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _last_line(errlog) -> str:
    """The last non-empty line the server wrote on stderr (why it failed, usually)."""
    if errlog is None:
        return ""
    try:
        errlog.flush()
        errlog.seek(0, os.SEEK_END)
        size = errlog.tell()
        errlog.seek(max(0, size - 4096))
        text = errlog.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _describe_exception(exc: BaseException) -> str:
    """One line for an SDK or OS failure (exception groups unwrapped to their first leaf)."""
    while hasattr(exc, "exceptions") and getattr(exc, "exceptions"):
        exc = exc.exceptions[0]
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    errors = getattr(exc, "errors", None)
    if callable(errors) and getattr(exc, "title", None):  # pydantic: what the server sent was invalid
        try:
            first = errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            return f"the server sent an invalid {exc.title} ({where}: {first.get('msg')})"
        except (IndexError, TypeError, AttributeError):
            pass
    message = str(exc).strip() or type(exc).__name__
    error = getattr(exc, "error", None)
    if error is not None and getattr(error, "message", None):
        message = error.message
    return message.splitlines()[0][:300]


class McpServer:
    """One configured server in a hub: started on first use, its tool listing kept."""

    def __init__(self, spec, hub: "McpHub"):
        self.spec = spec
        self.hub = hub
        self.status = "not started"  # → running | failed
        self.error: Optional[str] = None
        self.listing: Optional[list] = None  # the SDK's Tool objects
        self.pids: set = set()
        self.errlog = None
        self._session = None
        self._stop = None  # asyncio.Event, made in the loop
        self._task_done: Optional[concurrent.futures.Future] = None
        self._garbage_warned = False

    # -- in the loop thread ------------------------------------------------------------------
    async def _serve(self, ready: concurrent.futures.Future):
        import asyncio
        from contextlib import AsyncExitStack

        import anyio
        from mcp import ClientSession

        self._stop = asyncio.Event()
        spec = self.spec
        try:
            async with AsyncExitStack() as stack:
                try:
                    if spec.transport == "stdio":
                        import tempfile

                        from mcp import StdioServerParameters, stdio_client

                        # Closed by the hub, not here: start() reads its last line while this task tears down.
                        self.errlog = tempfile.TemporaryFile()
                        params = StdioServerParameters(command=spec.command, args=list(spec.args),
                                                       env=dict(spec.env) or None, cwd=spec.cwd,
                                                       encoding_error_handler="replace")
                        before = _children()
                        streams = await stack.enter_async_context(stdio_client(params, errlog=self.errlog))
                        self.pids = _children() - before
                    else:
                        streams = await stack.enter_async_context(self._http_transport())
                    read, write = streams[0], streams[1]
                    session = await stack.enter_async_context(
                        ClientSession(read, write, message_handler=self._on_message))
                    with anyio.fail_after(spec.startup_timeout):
                        await session.initialize()
                except BaseException as exc:  # noqa: B902 - told to the waiting thread before teardown
                    # A cancellation here is usually the transport's task group giving up (a refused
                    # HTTP connection): the cause comes out of the teardown below, so wait for it.
                    if not ready.done() and not isinstance(exc, asyncio.CancelledError):
                        ready.set_exception(exc)
                    raise
                self._session = session
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:  # noqa: B902 - reported to start(), or seen by the calls that failed
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._session = None

    def _http_transport(self):
        from mcp.shared._httpx_utils import create_mcp_http_client

        headers = dict(self.spec.headers) or None
        if self.spec.transport == "sse":
            from mcp.client.sse import sse_client

            return sse_client(self.spec.url, headers=headers, timeout=self.spec.startup_timeout)
        try:  # mcp >= 2 takes a configured client; 1.x named it streamablehttp_client(url, headers=…)
            from mcp.client.streamable_http import streamable_http_client
        except ImportError:
            from mcp.client.streamable_http import streamablehttp_client

            return streamablehttp_client(self.spec.url, headers=headers)
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def transport():
            async with create_mcp_http_client(headers=headers) as client:
                async with streamable_http_client(self.spec.url, http_client=client) as streams:
                    yield streams

        return transport()

    async def _on_message(self, message):
        """Exceptions from the transport arrive here: for stdio, a stdout line that is not JSON-RPC."""
        if isinstance(message, Exception) and not self._garbage_warned:
            self._garbage_warned = True
            if self.spec.transport == "stdio":
                what = "wrote lines on stdout that are not JSON-RPC (ignored; stdout is for the protocol)"
            else:
                what = f"sent something that is not JSON-RPC (ignored): {_describe_exception(message)[:160]}"
            self.hub.warn(f"MCP server {self.spec.name!r} {what}")

    async def _call(self, name, arguments, timeout):
        import anyio

        with anyio.fail_after(timeout):
            return await self._session.call_tool(name, arguments)

    async def _list(self):
        """Every page of tools/list. The SDK validates the whole listing: one tool whose schema is not
        an object fails it all, and the server is reported with that tool's path (tools.N.inputSchema)."""
        import anyio

        tools, cursor = [], None
        with anyio.fail_after(self.spec.timeout):
            while True:
                if cursor is None:
                    result = await self._session.list_tools()
                else:
                    from mcp import types

                    result = await self._session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
                tools.extend(result.tools)
                cursor = getattr(result, "next_cursor", None) or getattr(result, "nextCursor", None)
                if not cursor:
                    return tools

    # -- in the caller's thread --------------------------------------------------------------
    def start(self) -> bool:
        """Start the server (once); False, with `error` set, when it cannot be used."""
        if self.status == "running":
            return True
        if self.status == "failed":
            return False
        loop = self.hub.loop()
        ready: concurrent.futures.Future = concurrent.futures.Future()
        import asyncio

        self._task_done = asyncio.run_coroutine_threadsafe(self._serve(ready), loop)
        try:
            ready.result(self.spec.startup_timeout + 5)  # the task bounds itself; this is a backstop
        except concurrent.futures.CancelledError:
            self._fail("start-up was cancelled")
            return False
        except Exception as exc:  # concurrent.futures.TimeoutError is TimeoutError since 3.11
            reason = _describe_exception(exc)
            if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)):
                reason = (f"did not answer initialize within {self.spec.startup_timeout:g}s "
                          "(mcp.startup_timeout)")
            elif self.spec.transport == "stdio" and self.pids and self._exited(1.0 if "closed" in reason.lower() else 0):
                reason = "exited during start-up"
            stderr = _last_line(self.errlog)
            self._fail(reason + (f" (its stderr: {stderr})" if stderr else ""))
            return False
        self.status = "running"
        return True

    def _exited(self, wait: float) -> bool:
        """Whether the server's process is gone, waiting up to `wait` s: it closes stdout a moment
        before it exits, so "connection closed" alone does not say which happened."""
        deadline = time.monotonic() + wait
        while any(_alive(p) for p in self.pids):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _fail(self, reason):
        self.status, self.error = "failed", reason
        self.stop(wait=1.0)

    def tools(self) -> list:
        """The server's tools (listed once)."""
        if self.listing is None:
            if not self.start():
                raise McpUnavailable(f"MCP server {self.spec.name!r}: {self.error}")
            try:
                self.listing = self._wait(self._list(), self.spec.timeout, "listing its tools")
            except McpUnavailable as exc:
                reason = str(exc).split(": ", 1)[-1]
                self.status, self.error = "failed", reason if "listing" in reason else f"listing its tools: {reason}"
                raise McpUnavailable(f"MCP server {self.spec.name!r}: {self.error}") from None
        return self.listing

    def call(self, name: str, arguments: dict):
        """The SDK's CallToolResult; McpUnavailable when the server cannot answer."""
        if not self.start():
            raise McpUnavailable(f"MCP server {self.spec.name!r}: {self.error}")
        return self._wait(self._call(name, arguments, self.spec.timeout), self.spec.timeout, f"calling {name}")

    def _wait(self, coro, timeout, what):
        import asyncio

        future = asyncio.run_coroutine_threadsafe(coro, self.hub.loop())
        try:
            return future.result(timeout + 2)
        except (concurrent.futures.TimeoutError, TimeoutError):
            future.cancel()
            raise McpUnavailable(f"MCP server {self.spec.name!r}: no answer within {timeout:g}s while {what} "
                                 "(timeout in mcp.servers.NAME.timeout)") from None
        except KeyboardInterrupt:
            future.cancel()
            raise
        except Exception as exc:
            reason = _describe_exception(exc)
            if self.spec.transport == "stdio" and self.pids and self._exited(1.0 if "closed" in reason.lower() else 0):
                self.status, self.error = "failed", "the server exited"
                stderr = _last_line(self.errlog)
                reason = "the server exited" + (f" (its stderr: {stderr})" if stderr else "")
            raise McpUnavailable(f"MCP server {self.spec.name!r}: {reason}") from None

    def stop(self, wait: float = SHUTDOWN_WAIT):
        loop = self.hub._loop
        if loop is not None and self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)
        if self._task_done is not None:
            try:
                self._task_done.result(wait)
            except BaseException:  # noqa: B902 - whatever it was, it is over or abandoned
                pass
        self._reap()

    def _reap(self):
        """The process group of a stdio server must be gone: SIGKILL whatever the SDK left."""
        for pid in self.pids:
            if _group_alive(pid):  # started with start_new_session: its pgid is its pid
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break  # reaped (by asyncio's watcher or by us)
                if done:
                    break
                time.sleep(0.02)


class McpTool(Tool):
    """One tool of one server, as the loop sees it."""

    origin = "mcp"

    def __init__(self, server: McpServer, remote, name: str):
        self.server = server
        self.remote_name = remote.name
        self.qualified_name = _TOOL_NAME.sub("_", f"{server.spec.name}__{remote.name}")[:64]
        self.name = name
        self.description = (remote.description or getattr(remote, "title", None) or remote.name or "")[:4000]
        self.parameters = input_schema(remote)

    @property
    def aliases(self):
        return (self.qualified_name,)

    def validate(self, arguments):
        # The server validates against its own schema (draft, formats, $refs we do not resolve);
        # we only make sure there is an object and its required keys, so the model hears early.
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ToolError(f"{self.name}: arguments must be a JSON object")
        missing = [k for k in self.parameters.get("required") or () if k not in arguments]
        if missing:
            raise ToolError(f"{self.name}: missing required argument {', '.join(map(repr, missing))}")
        return arguments

    def invoke(self, args, settings=None) -> str:
        try:
            result = self.server.call(self.remote_name, args)
        except McpUnavailable as exc:
            raise ToolError(str(exc)) from None
        return result_text(result, self.server.spec.max_output, self.name)


def input_schema(remote) -> dict:
    schema = getattr(remote, "input_schema", None)
    if schema is None:
        schema = getattr(remote, "inputSchema", None)
    if schema is None:
        return {"type": "object", "properties": {}}
    if not isinstance(schema, dict) or schema.get("type", "object") != "object" \
            or not isinstance(schema.get("properties", {}), dict):
        raise ValueError("its input schema is not a JSON Schema object")
    try:
        json.dumps(schema)
    except (TypeError, ValueError):
        raise ValueError("its input schema is not JSON") from None
    schema = dict(schema)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def result_text(result, max_output: int, name: str = "tool") -> str:
    """The text the model reads: text blocks as they are, other content as a short placeholder;
    `isError` becomes a ToolError carrying the same text."""
    parts = []
    for block in getattr(result, "content", None) or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            mime = getattr(block, "mime_type", None) or getattr(block, "mimeType", None) or kind
            size = len(getattr(block, "data", "") or "") * 3 // 4
            parts.append(f"[{kind}: {mime}, {size:,} bytes, not shown]")
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if text is not None else f"[resource: {resource.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource: {getattr(block, 'uri', '')}]")
        else:
            parts.append(f"[{kind or 'unknown'} content, not shown]")
    structured = getattr(result, "structured_content", None) or getattr(result, "structuredContent", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    text = "\n".join(parts)
    if len(text) > max_output:
        text = (text[:max_output] + f"\n[truncated: the result was {len(text):,} characters; "
                f"the first {max_output:,} are shown]")
    is_error = getattr(result, "is_error", None)
    if is_error is None:
        is_error = getattr(result, "isError", False)
    if is_error:
        raise ToolError(f"{name} failed: {text or 'the server reported an error'}")
    return text


class McpHub:
    """The servers of one run or chat session, and the event loop they live in."""

    def __init__(self, specs: Sequence, warn: Optional[Callable[[str], None]] = None):
        self.servers: Dict[str, McpServer] = {spec.name: McpServer(spec, self) for spec in specs}
        self._warn = warn
        self._loop = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._tools: Optional[List[McpTool]] = None
        self.closed = False

    def warn(self, message: str):
        if self._warn is not None:
            self._warn(message)

    def loop(self):
        with self._lock:
            if self.closed:
                raise McpUnavailable("the MCP servers were shut down")
            if self._loop is None:
                import asyncio

                try:
                    import mcp  # noqa: F401
                except ImportError:
                    from ..errors import ConfigError

                    raise ConfigError("MCP servers are configured, but the MCP SDK is not installed: "
                                      "pip install 'llmcli[mcp]' (or pip install mcp)") from None
                _quiet_sdk_logging()
                self._loop = asyncio.new_event_loop()
                # A task still pending when close() gives up must not print a report at exit.
                self._loop.set_exception_handler(lambda loop, context: None)
                self._thread = threading.Thread(target=self._loop.run_forever, name="llmcli-mcp", daemon=True)
                self._thread.start()
            return self._loop

    def tools(self, taken: Sequence[str] = (), filters: Sequence[str] = ()) -> List[McpTool]:
        """Every server's tools (servers started on this first use), named `tool` or, where two
        servers (or a built-in) share a name, `server__tool`; `filters` (-T patterns) keep matches."""
        if self._tools is None:
            listed = []
            for server in self.servers.values():
                try:
                    remote_tools = server.tools()
                except McpUnavailable as exc:
                    self.warn(f"{exc}; its tools are not offered")
                    continue
                for remote in remote_tools:
                    try:
                        input_schema(remote)
                    except ValueError as exc:
                        self.warn(f"MCP server {server.spec.name!r}: tool {remote.name!r} skipped: {exc}")
                        continue
                    listed.append((server, remote))
            counts: Dict[str, int] = {}
            for name in list(taken) + [_TOOL_NAME.sub("_", r.name)[:64] for _, r in listed]:
                counts[name] = counts.get(name, 0) + 1
            self._tools = []
            for server, remote in listed:
                plain = _TOOL_NAME.sub("_", remote.name)[:64]
                tool = McpTool(server, remote, plain)
                if counts[plain] > 1:
                    tool.name = tool.qualified_name
                self._tools.append(tool)
        if not filters:
            return list(self._tools)
        return [t for t in self._tools if matches(t, filters)]

    def listed_names(self) -> Optional[List[str]]:
        """The names of the tools listed so far (None before the first listing), for chat's /tools."""
        return None if self._tools is None else [t.name for t in self._tools]

    def close(self):
        """Stop every server (bounded), then the loop; safe to call twice."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        started = [s for s in self.servers.values() if s._task_done is not None]
        loop = self._loop
        if loop is not None:
            for server in started:
                if server.status != "running":
                    server._task_done.cancel()  # still starting (Ctrl-C then): cancel the start
                elif server._stop is not None:
                    loop.call_soon_threadsafe(server._stop.set)
        deadline = time.monotonic() + SHUTDOWN_WAIT
        for server in started:
            try:
                server._task_done.result(max(0.1, deadline - time.monotonic()))
            except BaseException:  # noqa: B902
                pass
        for server in started:
            server._reap()
            if server.errlog is not None:
                server.errlog.close()
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=2.0)
            if not loop.is_running():
                try:
                    loop.close()
                except Exception:  # a task still pending after the bound: the process is ending anyway
                    pass


def matches(tool: McpTool, patterns: Sequence[str]) -> bool:
    """-T server__tool, -T server__*, -T server (all of its tools), or the name the model sees."""
    for pattern in patterns:
        if pattern == tool.server.spec.name:
            return True
        if fnmatch.fnmatchcase(tool.qualified_name, pattern) or fnmatch.fnmatchcase(tool.name, pattern):
            return True
    return False
