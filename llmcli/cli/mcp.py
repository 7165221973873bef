"""MCP on the command line: `--mcp` / `--mcp-config` for ask and chat, `llmcli mcp list` and
`llmcli mcp call SERVER TOOL ARGS`. The servers themselves are llmcli.tools.mcp (imported lazily)."""

import json
import sys

import click

from .paramtypes import FILE

# app.py applies mcp_options while it is being imported: take nothing from it at module level.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def settings_from_params(params, need_provider=True):
    from .app import settings_from_params as resolve

    return resolve(params, need_provider=need_provider)


def echo_outside(text):
    from .app import echo_outside as echo

    echo(text)


def mcp_options(f):
    """--mcp and --mcp-config, for ask, chat, tools and the mcp commands."""
    f = click.option("--mcp-config", "mcp_config", multiple=True, metavar="FILE",
                     type=FILE,
                     help='MCP servers from a JSON FILE in the {"mcpServers": {NAME: {command, args, env} | '
                          '{url, headers}}} shape (Claude desktop, Cursor). Repeatable.')(f)
    f = click.option("--mcp", "mcp", multiple=True, metavar="CMD|URL",
                     help="Use one more MCP server for this run: a command line run over stdio ('npx -y "
                          "@modelcontextprotocol/server-everything') or a Streamable HTTP URL "
                          "(http://127.0.0.1:3001/mcp); NAME=… names it. Its tools need approval "
                          "(--allow-tool NAME__*, --yes). Repeatable.")(f)
    return f


def _config_option(f):
    return click.option("--config", "config", metavar="FILE", type=FILE,
                        help="YAML config file.  [env: LLMCLI_CONFIG]")(f)


def _hub(params):
    from ..errors import ConfigError
    from ..output.render import Diagnostics, color_enabled
    from ..tools.mcp import McpHub

    settings = settings_from_params(params, need_provider=False)
    diag = Diagnostics(sys.stderr, color_enabled(sys.stderr))
    for warning in settings.warnings:
        diag.warning(warning)
    if not settings.mcp_servers:
        raise ConfigError("no MCP servers configured: add mcp.servers to the config file, or pass "
                          "--mcp CMD|URL or --mcp-config FILE")
    return McpHub(settings.mcp_servers, warn=diag.warning), diag


@click.group("mcp", context_settings=CONTEXT_SETTINGS)
def mcp_group():
    """List the configured MCP servers and their tools, or call one tool by hand.

    \b
    Servers come from mcp.servers in the config file, --mcp-config FILE and --mcp CMD|URL:
      llmcli mcp list --mcp mcp-server-time
      llmcli mcp call time get_current_time '{"timezone": "Europe/Paris"}' --mcp mcp-server-time
    """


@mcp_group.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--json", "json_output", is_flag=True,
              help="Print [{name, transport, target, status, error, tools: [{name, qualified_name, "
                   "description, input_schema}]}].")
@mcp_options
@_config_option
def mcp_list(json_output, **params):
    """Start each server, list its tools with their input schemas, and stop it again.

    Every server is shown, also the ones that failed (status "failed" and why); the exit code is then
    6, so a script can check that its servers work.
    """
    hub, _ = _hub(params)
    try:
        tools = hub.tools()
        rows = []
        for server in hub.servers.values():
            rows.append({
                "name": server.spec.name, "transport": server.spec.transport, "target": server.spec.target(),
                "status": server.status, "error": server.error,
                "tools": [{"name": t.name, "qualified_name": t.qualified_name, "description": t.description,
                           "input_schema": t.parameters} for t in tools if t.server is server],
            })
    finally:
        hub.close()
    if json_output:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        _print_rows(rows)
    failed = [row["name"] for row in rows if row["status"] == "failed"]
    if failed:
        from ..tools.mcp import McpUnavailable

        raise McpUnavailable(f"{len(failed)} of {len(rows)} MCP servers failed: {', '.join(failed)}")


@mcp_group.command("call", context_settings=CONTEXT_SETTINGS)
@click.argument("server")
@click.argument("tool")
@click.argument("arguments", required=False, default="{}", metavar="['{JSON}']")
@click.option("--json", "json_output", is_flag=True,
              help="Print {server, tool, is_error, text, content} with the raw content blocks.")
@mcp_options
@_config_option
def mcp_call(server, tool, arguments, json_output, **params):
    """Call TOOL of SERVER with a JSON object of arguments and print the result's text.

    No approval is asked: you are the one calling. A result with isError exits 1 after printing its
    text on stderr; a server that cannot be started or does not answer exits 6.
    """
    from ..errors import LLMCliError, ToolError, UsageError
    from ..tools.mcp import result_text

    try:
        args = json.loads(arguments)
    except ValueError as exc:
        raise UsageError(f"ARGUMENTS must be a JSON object: {exc}") from None
    if not isinstance(args, dict):
        raise UsageError("ARGUMENTS must be a JSON object, e.g. '{\"timezone\": \"UTC\"}'")
    hub, _ = _hub(params)
    try:
        target = hub.servers.get(server)
        if target is None:
            raise ToolError(f"no MCP server called {server!r}; configured: {', '.join(hub.servers)}")
        names = [t.name for t in target.tools()]
        if tool not in names:
            raise ToolError(f"MCP server {server!r} has no tool {tool!r}; it has: {', '.join(names) or 'none'}")
        result = target.call(tool, args)
    finally:
        hub.close()
    max_output = target.spec.max_output
    try:
        text, is_error = result_text(result, max_output, tool), False
    except ToolError as exc:
        text, is_error = str(exc), True
    if json_output:
        content = [block.model_dump(mode="json", by_alias=True, exclude_none=True) if hasattr(block, "model_dump")
                   else str(block) for block in (result.content or ())]
        click.echo(json.dumps({"server": server, "tool": tool, "is_error": is_error, "text": text,
                               "content": content}, ensure_ascii=False, indent=2))
    elif not is_error:
        echo_outside(text)
    if is_error:
        if not json_output:
            click.echo(text, err=True) if not sys.stderr.isatty() else echo_err_outside(text)
        raise LLMCliError(f"{tool} returned an error (isError)")


def _print_rows(rows):
    for row in rows:
        status = row["status"] + (f": {row['error']}" if row["error"] else "")
        echo_outside(f"{row['name']}  {row['transport']}  {row['target']}  [{status}]")
        for tool in row["tools"]:
            shown = tool["name"] if tool["name"] == tool["qualified_name"] else \
                f"{tool['name']} (-T {tool['qualified_name']})"
            echo_outside(f"  {shown}: {tool['description'].splitlines()[0] if tool['description'] else ''}")
            echo_outside("    parameters: " + json.dumps(tool["input_schema"], ensure_ascii=False))
        click.echo("")


def echo_err_outside(text):
    from ..output.sanitize import sanitize

    click.echo(sanitize(text, bidi=True), err=True)


def mcp_tool_rows(params):
    """For `llmcli tools`: the MCP tools of the configured servers (none configured: no rows, no SDK)."""
    settings = settings_from_params(params, need_provider=False)
    if not settings.mcp_servers:
        return []
    from ..output.render import Diagnostics, color_enabled
    from ..tools.mcp import McpHub

    hub = McpHub(settings.mcp_servers, warn=Diagnostics(sys.stderr, color_enabled(sys.stderr)).warning)
    try:
        return hub.tools()
    finally:
        hub.close()
