"""Wiring shared by `ask` and `chat`: settings → transport, tools, confirmation → a ChatRun, driven
into a renderer. Sits below cli.py and repl.py (which both use it) and above chat/client/tools.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, Tuple

from .loop import ChatRun, make_tool_settings
from ..errors import ConfigError, LLMCliError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that streams close and partial output is kept."""


def make_transport(settings, recorder=None, run_deadline=None, on_fetch=None):
    """The transport for these settings; `on_fetch(line)` is told when the local model is fetched first."""
    if settings.is_local:
        from ..wire.local import LocalTransport

        return LocalTransport(settings, run_deadline=run_deadline, on_fetch=on_fetch)
    if not settings.base_url:
        raise ConfigError("no base URL: pass --base-url, set LLMCLI_BASE_URL, or choose a provider with -p")
    missing_key(settings)
    from ..wire.client import HTTPTransport

    return HTTPTransport(settings, recorder=recorder, run_deadline=run_deadline)


def missing_key(settings) -> None:
    """A preset that needs a key, used at its own URL with none found: say so before any request (a 401
    from the provider would only come after a round trip, and reads less clearly)."""
    from ..config.settings import PRESETS

    preset = PRESETS.get(settings.provider or "")
    if settings.api_key or preset is None or not preset.needs_key:
        return
    if (settings.base_url or "").rstrip("/") != preset.base_url.rstrip("/"):
        return  # another URL (a proxy of one's own) may need no key
    raise ConfigError(f"no API key for {settings.provider}: set {preset.key_env}, pass --api-key, or store one with "
                      f"'llmcli keys set {settings.provider}'")


def announce_local_model(settings, transport, diag):
    """With no provider configured, say once which model answers, and how to use another (issue 6)."""
    describe = getattr(transport, "describe", None)
    if describe is not None and settings.is_local and settings.source_of("provider").startswith("default"):
        diag.note(f"llmcli: no provider configured; answering with the local model {describe()} "
                  "(to use another, configure a provider: llmcli config init)")


def enabled_tools(settings):
    """The built-ins named by -T/--tools, then the user tools (tools.user, --functions), which are
    offered whenever they are defined (unless --no-tools)."""
    cfg = dict(settings.tool_config)
    tools = []
    if settings.tools:
        from ..tools import get_tool

        tools = [get_tool(name) for name in settings.tools]
    if cfg.get("no_tools") or not (cfg.get("user") or cfg.get("functions")):
        return tools
    from ..tools.user import load_functions_file, load_user_tools

    user = load_user_tools(cfg.get("user"))
    for path in cfg.get("functions") or ():
        user.extend(load_functions_file(path))
    names = {t.name for t in tools}
    for tool in user:
        if tool.name in names:
            raise ConfigError(f"two tools are called {tool.name!r}; rename one")
        names.add(tool.name)
        tools.append(tool)
    return tools


def make_budget(settings):
    """--max-cost / --max-tokens-total / budget: in the config, or None (nothing is imported then)."""
    if settings.max_cost is None and settings.max_tokens_total is None and not settings.spend_caps:
        return None
    from .budget import Budget

    return Budget(settings)


def run_tools(settings, mcp=None):
    """enabled_tools, then the MCP servers' tools from `mcp` (a tools.mcp.McpHub), filtered by the -T
    names that are not built-ins (server__tool, server__*, server)."""
    if not settings.mcp_servers:
        return enabled_tools(settings)
    from ..tools import BUILTIN_TOOLS

    builtin = tuple(name for name in settings.tools if name in BUILTIN_TOOLS)
    filters = [name for name in settings.tools if name not in BUILTIN_TOOLS]
    tools = enabled_tools(settings.with_changes(tools=builtin))
    if mcp is None or dict(settings.tool_config).get("no_tools"):
        return tools
    from ..tools.mcp import matches

    offered = mcp.tools(taken=[t.name for t in tools], filters=filters)
    for pattern in filters:
        if not any(matches(t, [pattern]) for t in offered):
            mcp.warn(f"-T {pattern}: no built-in or MCP tool has that name (llmcli mcp list shows them)")
    return tools + offered


def open_mcp(settings, warn):
    """The MCP servers of a run or chat session (started on first use), or None without any."""
    if not settings.mcp_servers or dict(settings.tool_config).get("no_tools"):
        return None
    import atexit

    from ..tools.mcp import McpHub

    hub = McpHub(settings.mcp_servers, warn=warn)
    atexit.register(hub.close)  # a backstop: every owner closes it itself
    return hub


def make_approval(settings):
    from ..tools.approval import ApprovalPolicy

    cfg = dict(settings.tool_config)
    return ApprovalPolicy(cfg.get("approval"), allow=cfg.get("allow_tool") or (),
                          deny=cfg.get("deny_tool") or (), yes=bool(cfg.get("yes")),
                          ask_all=settings.confirm_tools)


def make_confirm(err, clean=None):
    """--confirm-tools: ask on the terminal; with no terminal, refuse every call.

    `clean` (the output layer's sanitizer, passed in: run/ does not import output/) makes the tool's name
    and arguments, which the model chose, safe to show: no escape sequences, no bidi overrides (issue 13).
    """
    if clean is None:
        def clean(text):
            return text

    def confirm(call):
        from .loop import describe_arguments

        if not isatty(err):
            return "no-terminal"
        try:
            # stdin may be the piped prompt: ask the terminal itself. Two handles, because a text-mode
            # "r+" open of a tty fails ("not seekable").
            tty_in, tty_out = open("/dev/tty"), open("/dev/tty", "w")
        except OSError:
            return "no-terminal"
        with tty_in, tty_out:
            while True:
                shown = clean(f"{call.name}({describe_arguments(call, 200)})")
                tty_out.write(f"llmcli: run {shown}? [y]es/[n]o/[a]lways: ")
                tty_out.flush()
                line = tty_in.readline()
                if not line:  # end of input on the terminal: refuse
                    return "no"
                answer = line.strip().lower()
                if answer in ("y", "yes"):
                    return "yes"
                if answer in ("a", "always"):
                    return "always"
                if answer in ("n", "no", ""):
                    return "no"

    return confirm


def _tty_cleaner(diag):
    """The confirm prompt goes to /dev/tty, always a terminal: sanitize whatever stderr is."""
    return getattr(diag, "clean_for_terminal", None)


def isatty(stream) -> bool:
    try:
        return bool(stream) and stream.isatty()
    except (AttributeError, ValueError):
        return False


def drive_events(events, renderer) -> Tuple[Optional[LLMCliError], Optional[KeyboardInterrupt]]:
    """Feed a run's event generator to a renderer; returns (error, interrupt), and always closes it:
    closing runs the run's finally blocks, which close the HTTP response now, so the server sees the
    connection go away at once, not when the socket is garbage-collected."""
    error = stopped = None
    try:
        for ev in events:
            renderer.handle(ev)
    except LLMCliError as exc:
        error = exc
    except KeyboardInterrupt as exc:
        stopped = exc
    finally:
        events.close()
    return error, stopped


class RunWiring:
    """Everything one ChatRun needs, built from settings; keeps the debug recorder for afterwards."""

    def __init__(self, settings, messages, diag, err=None, stream=True, transport=None, budget=None, mcp=None):
        """`budget`: a chat session's (shared by its runs); by default one for this run from the settings."""
        self.settings = settings
        # The MCP servers: a chat session passes its own (they live as long as it does); otherwise
        # this run owns them and drive() stops them when the run ends, however it ends.
        self.owned_mcp = open_mcp(settings, diag.warning) if mcp is None else None
        try:
            self._build(settings, messages, diag, err, stream, transport, mcp or self.owned_mcp, budget)
        except BaseException:  # noqa: B902 - Ctrl-C while a server starts must not leave it running
            self.close()
            raise

    def close(self):
        if self.owned_mcp is not None:
            self.owned_mcp.close()

    def _build(self, settings, messages, diag, err, stream, transport, mcp, budget=None):
        self.diag = diag
        self.recorder = None
        if settings.debug:
            from ..config.secrets import redact_url
            from ..wire.record import Recorder

            self.recorder = Recorder()
            diag.note(f"llmcli: debug: provider={settings.provider} base_url={redact_url(settings.base_url)} "
                      f"model={settings.model} key={'set' if settings.api_key else 'none'}")
        deadline = time.monotonic() + settings.max_time if settings.max_time else None
        tools = run_tools(settings, mcp)
        confirm = make_confirm(err or sys.stderr, _tty_cleaner(diag))
        if transport is None:
            transport = make_transport(settings, self.recorder, deadline, on_fetch=diag.note)
        self.run = ChatRun(transport, settings, messages, tools=tools,
                           tool_settings=make_tool_settings(settings) if tools else None,
                           confirm=confirm, stream=stream,
                           approval=make_approval(settings) if tools else None,
                           budget=budget if budget is not None else make_budget(settings))

    def drive(self, renderer) -> Tuple[Optional[LLMCliError], Optional[KeyboardInterrupt]]:
        """Stream the run into the renderer; returns (error, interrupt). The stream is always closed."""
        try:
            return drive_events(self.run.events(), renderer)
        finally:
            self.close()

    def after(self, error):
        if self.recorder is not None:
            for line in self.recorder.summary_lines():
                self.diag.note(f"llmcli: debug: {line}")
        if self.settings.debug:
            self.diag.note(f"llmcli: debug: {self.run.timing()} finish_reason={self.run.finish_reason} "
                           f"chars={len(self.run.content)}")
        if error is not None and self.recorder is not None and self.settings.home:
            try:
                path = self.recorder.save(self.settings.home, str(error))
                self.diag.note(f"llmcli: debug: saved a replayable record to {path} (llmcli replay {path})")
            except OSError as exc:
                self.diag.warning(f"could not save the debug record: {exc}")
