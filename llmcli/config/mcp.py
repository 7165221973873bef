"""MCP server definitions: the `mcp:` section of config.yaml, `--mcp-config FILE` (the Claude-desktop /
Cursor `{"mcpServers": {…}}` JSON) and one-off `--mcp 'CMD ARGS'` / `--mcp URL`, checked at start-up
into frozen `ServerSpec`s. Nothing here starts a server (that is llmcli.tools.mcp), and nothing here
imports the `mcp` SDK: a bad definition is a ConfigError (exit 3) naming the key, before any request.

    mcp:
      timeout: 60              # seconds for one tool call (per server too)
      startup_timeout: 20      # seconds for the server to start and answer `initialize`
      max_output: 100000       # characters of a result sent to the model; more is cut and marked
      servers:
        time: {command: mcp-server-time, args: [--local-timezone, UTC]}
        everything: {url: "http://127.0.0.1:3001/mcp", headers: {Authorization: "Bearer ${TOKEN}"}}
        old: {url: "http://127.0.0.1:3002/sse", transport: sse}
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Any, Iterable, Optional, Tuple

from ..errors import ConfigError
from .record import Record

DEFAULT_CALL_TIMEOUT = 60.0
DEFAULT_STARTUP_TIMEOUT = 20.0
DEFAULT_MAX_OUTPUT = 100_000
TRANSPORTS = ("stdio", "http", "sse")
KNOWN_MCP_KEYS = {"servers", "timeout", "startup_timeout", "max_output"}
KNOWN_SERVER_KEYS = {"command", "args", "env", "cwd", "url", "headers", "transport", "type", "timeout",
                     "startup_timeout", "disabled"}
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class ServerSpec(Record):
    """One MCP server: how to reach it and how long to wait for it."""

    name: str
    transport: str  # stdio | http (Streamable HTTP) | sse (the older HTTP+SSE transport)
    command: Optional[str] = None
    args: Tuple[str, ...] = ()
    env: Tuple[Tuple[str, str], ...] = ()
    cwd: Optional[str] = None
    url: Optional[str] = None
    headers: Tuple[Tuple[str, str], ...] = ()
    timeout: float = DEFAULT_CALL_TIMEOUT
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    max_output: int = DEFAULT_MAX_OUTPUT
    where: str = ""  # the key or flag that defined it, for messages

    def target(self) -> str:
        """What `mcp list` shows: the command line or the URL (header values never)."""
        if self.transport == "stdio":
            return " ".join(shlex.quote(a) for a in (self.command or "",) + self.args)
        return str(self.url)


def _seconds(value, where):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number of seconds, got {value!r}") from None
    if not number > 0:
        raise ConfigError(f"{where}: must be greater than 0, got {value!r}")
    return number


def _strings(value, where, kind):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {kind} must be a mapping of names to strings")
    out = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise ConfigError(f"{where}.{key}: expected a string, got {type(item).__name__}")
        # $VAR / ${VAR} come from llmcli's environment, so a token need not be written into the file
        out[str(key)] = os.path.expandvars(str(item))
    return out


def parse_server(name: Any, raw: Any, where: str, defaults: dict, warnings: list) -> Optional[ServerSpec]:
    """One entry of `servers` / `mcpServers`; None when it says `disabled: true`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: server name {name!r} must be 1-32 letters, digits, _ or -")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with 'command' or 'url'")
    for key in raw:
        if key not in KNOWN_SERVER_KEYS:
            warnings.append(f"{where}: unknown key '{key}' (ignored)")
    if raw.get("disabled") is True:
        return None
    has_command, has_url = raw.get("command") is not None, raw.get("url") is not None
    if has_command == has_url:
        raise ConfigError(f"{where}: give either 'command' (a stdio server) or 'url' (an HTTP server)")
    timeout = _seconds(raw.get("timeout", defaults["timeout"]), f"{where}.timeout")
    startup = _seconds(raw.get("startup_timeout", defaults["startup_timeout"]), f"{where}.startup_timeout")
    common = dict(name=name, timeout=timeout, startup_timeout=startup, max_output=defaults["max_output"],
                  where=where)
    if has_command:
        command, args = raw["command"], raw.get("args") or []
        if isinstance(command, list):  # a whole argv in `command` is common in hand-written files
            command, args = (command[0] if command else ""), list(command[1:]) + list(args)
        if not isinstance(command, str) or not command.strip():
            raise ConfigError(f"{where}.command: expected the program to run, got {command!r}")
        if isinstance(args, str) or not isinstance(args, list):
            raise ConfigError(f"{where}.args: expected a list of strings")
        if not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in args):
            raise ConfigError(f"{where}.args: expected a list of strings")
        cwd = raw.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise ConfigError(f"{where}.cwd: expected a directory path")
        return ServerSpec(transport="stdio", command=command, args=tuple(str(a) for a in args),
                          env=tuple(_strings(raw.get("env"), f"{where}.env", "env").items()),
                          cwd=os.path.expanduser(cwd) if cwd else None, **common)
    url = raw["url"]
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"{where}.url: expected an http:// or https:// URL, got {url!r}")
    transport = str(raw.get("transport") or raw.get("type") or "").strip().lower()
    transport = {"": "", "streamable-http": "http", "streamable_http": "http", "streamablehttp": "http",
                 "http": "http", "sse": "sse"}.get(transport, transport)
    if not transport:
        # The old transport's endpoint is conventionally /sse; everything else speaks Streamable HTTP.
        transport = "sse" if url.rstrip("/").endswith("/sse") else "http"
    if transport not in ("http", "sse"):
        raise ConfigError(f"{where}.transport: expected http or sse, got {raw.get('transport') or raw.get('type')!r}")
    return ServerSpec(transport=transport, url=url,
                      headers=tuple(_strings(raw.get("headers"), f"{where}.headers", "headers").items()), **common)


def _defaults(section: dict, where: str) -> dict:
    out = {"timeout": DEFAULT_CALL_TIMEOUT, "startup_timeout": DEFAULT_STARTUP_TIMEOUT,
           "max_output": DEFAULT_MAX_OUTPUT}
    for key in ("timeout", "startup_timeout"):
        if section.get(key) is not None:
            out[key] = _seconds(section[key], f"{where}.{key}")
    if section.get("max_output") is not None:
        value = section["max_output"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}.max_output: expected a whole number of characters, got {value!r}")
        out["max_output"] = value
    return out


def one_off_server(value: str, index: int, defaults: dict) -> ServerSpec:
    """`--mcp 'CMD ARGS'`, `--mcp URL` or either as NAME=…; the name is made from the command or host."""
    text = str(value).strip()
    name = None
    match = re.match(r"^([A-Za-z0-9_-]{1,32})=(.+)$", text)
    if match and not re.match(r"^https?://", text):
        name, text = match.group(1), match.group(2).strip()
    where = f"--mcp {value!r}"
    if re.match(r"^https?://", text):
        if name is None:
            host = re.sub(r"^https?://", "", text).split("/")[0].split(":")[0]
            name = re.sub(r"[^A-Za-z0-9_-]", "_", host)[:32] or f"mcp{index}"
        return parse_server(name, {"url": text}, where, defaults, [])
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not argv:
        raise ConfigError(f"{where}: empty command")
    if name is None:
        # npx -y @scope/server-x, uvx mcp-server-time, python server.py: the first word that is not a
        # launcher or an option, without its scope, directory or extension.
        words = [a for a in argv if not a.startswith("-")]
        launchers = {"npx", "uvx", "pipx", "node", "python", "python3", "deno", "bunx", "bun", "run"}
        word = next((w for w in words if os.path.basename(w) not in launchers), words[0] if words else "mcp")
        if os.path.splitext(os.path.basename(word))[0] in ("index", "main", "server", "cli", "__main__"):
            # node …/server-everything/dist/index.js: the package's directory says what it is
            parts = [p for p in word.replace("\\", "/").split("/")[:-1] if p not in ("dist", "build", "lib", "src", "bin")]
            word = parts[-1] if parts else word
        word = os.path.splitext(os.path.basename(word.split("@")[-1] if word.startswith("@") else word))[0]
        word = re.sub(r"^(mcp[-_]server[-_]|server[-_])", "", word) or word
        name = re.sub(r"[^A-Za-z0-9_-]", "_", word)[:32] or f"mcp{index}"
    return parse_server(name, {"command": argv[0], "args": argv[1:]}, where, defaults, [])


def load_mcp_config_file(path: str, defaults: dict, warnings: list) -> list:
    """--mcp-config FILE: `{"mcpServers": {…}}` (Claude desktop, Cursor) or our own `{servers: …}`."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"--mcp-config {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--mcp-config {path}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("mcp"), dict):
        data = data["mcp"]
    servers = data.get("mcpServers", data.get("servers")) if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(f"--mcp-config {path}: expected an object with \"mcpServers\": {{NAME: {{…}}}}")
    out = []
    for name, raw in servers.items():
        spec = parse_server(name, raw, f"{path}: mcpServers.{name}", defaults, warnings)
        if spec is not None:
            out.append(spec)
    return out


def resolve_mcp_servers(section: Any, config_files: Iterable[str] = (), one_offs: Iterable[str] = (),
                        where: str = "mcp") -> Tuple[Tuple[ServerSpec, ...], list]:
    """Every configured server, checked: (specs, warnings). Later definitions of a name replace earlier
    ones (config.yaml < --mcp-config < --mcp), so a flag can override the file for one run."""
    warnings: list = []
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: must be a mapping (with 'servers')")
    for key in section:
        if key not in KNOWN_MCP_KEYS:
            warnings.append(f"unknown config key '{where}.{key}' (ignored)")
    defaults = _defaults(section, where)
    servers = section.get("servers") or {}
    if not isinstance(servers, dict):
        raise ConfigError(f"{where}.servers: must be a mapping of server names to definitions")
    specs = {}
    for name, raw in servers.items():
        spec = parse_server(name, raw, f"{where}.servers.{name}", defaults, warnings)
        if spec is not None:
            specs[name] = spec
    for path in config_files:
        for spec in load_mcp_config_file(path, defaults, warnings):
            specs[spec.name] = spec
    for index, value in enumerate(one_offs, 1):
        spec = one_off_server(value, index, defaults)
        name, n = spec.name, 2
        while name in specs and specs[name].where.startswith("--mcp "):
            name, n = f"{spec.name}{n}", n + 1
        specs[name] = spec.replace(name=name)
    return tuple(specs.values()), warnings
