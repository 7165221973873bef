"""The built-in tools the model can call, which llmcli runs locally: the registry.

`BUILTIN_TOOLS` maps each name to its `Tool`; `Tool.schema()` is the entry for the request's
`tools` list and `Tool.run(arguments, settings)` returns the text sent back to the model or
raises ToolError, whose message is sent back instead.

Importing this package stays cheap (stdlib only): requests, urllib3 and the HTML extractor are
imported inside the functions that use them. MCP servers, user tools and the approval policy belong
here too.

May import: wire, prompt, config, events, errors, status.
Must not import: run, output, cli, repl.
"""

from __future__ import annotations

from typing import Dict

from ..errors import ToolError
from .base import DEFAULT_USER_AGENT, Tool, ToolSettings
from .fetch import WebFetchTool
from .search import WebSearchTool

__all__ = ["BUILTIN_TOOLS", "DEFAULT_USER_AGENT", "Tool", "ToolSettings", "get_tool"]

BUILTIN_TOOLS: Dict[str, Tool] = {tool.name: tool for tool in (WebSearchTool(), WebFetchTool())}


def get_tool(name: str) -> Tool:
    """The built-in tool called `name`, or ToolError naming the ones that exist."""
    try:
        return BUILTIN_TOOLS[name]
    except (KeyError, TypeError):
        raise ToolError(f"unknown tool {name!r}; available: {', '.join(BUILTIN_TOOLS)}") from None
