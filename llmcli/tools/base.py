"""What every built-in tool shares: the settings they run with and the `Tool` base class.

Stdlib only: `import llmcli.tools` sits on the start-up path (completion re-imports the CLI on
every TAB), so anything heavy is imported inside the function that needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from .. import __version__
from ..errors import ToolError

BRAVE_SEARCH_URL = "https://api.search.brave.com/res/v1/web/search"
DUCKDUCKGO_HTML_URL = "https://html.duckduckgo.com/html/"  # the keyless backend (tools/search.py)
DEFAULT_USER_AGENT = f"llmcli/{__version__} (+https://github.com/llmcli)"

# host, port -> IP address strings. The default is socket.getaddrinfo.
Resolver = Callable[[str, int], List[str]]
# (ipaddress.IPv4Address | IPv6Address, allow_private) -> why the address is refused, or None.
AddressPolicy = Callable[[Any, bool], Optional[str]]


@dataclass(frozen=True)
class ToolSettings:
    """Everything the built-in tools need from the configuration, frozen."""

    search_backend: Optional[str] = None  # brave | searxng | duckduckgo | off | None: pick from what is configured
    brave_api_key: Optional[str] = None
    brave_url: str = BRAVE_SEARCH_URL
    searxng_url: Optional[str] = None  # instance root; the JSON API is {root}/search?format=json
    duckduckgo_url: str = DUCKDUCKGO_HTML_URL  # overridable: tests point it at a local stand-in
    allow_private: bool = False  # let web_fetch reach loopback, private and link-local addresses
    timeout: float = 15.0  # seconds, for connecting and for each read
    max_bytes: int = 5_000_000  # stop reading a response body here
    max_chars: int = 20_000  # default cap on the text web_fetch returns
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    # Injectable so tests can make a public-looking name resolve to 127.0.0.1 without real DNS.
    resolver: Optional[Resolver] = None
    # Which addresses web_fetch may connect to; None means `addresses.blocked_reason`. A deployment
    # (or a test) can wrap the default to permit one more address; see tests/test_tools_ssrf.py.
    address_policy: Optional[AddressPolicy] = None


_JSON_TYPES = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true or false"}


class Tool:
    """A function the model can call: a name, a JSON Schema for its arguments, and `run`."""

    name: str = ""
    description: str = ""
    parameters: Dict[str, Any] = {"type": "object", "properties": {}}

    def schema(self) -> dict:
        """The entry for the `tools` list of a chat-completions request."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, arguments: Any) -> dict:
        """Check `arguments` against `parameters`; return them with defaults filled in.

        Messages are written for the model, which reads them as the tool result and retries.
        Coercion is deliberately lenient where the intent is unambiguous (models often send
        `"5"` or `5.0` for an integer); anything else is an error that names the argument.
        """
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ToolError(f"{self.name}: arguments must be a JSON object, got {_kind(arguments)}")
        properties = self.parameters.get("properties", {})
        unknown = sorted(set(arguments) - set(properties))
        if unknown:
            raise ToolError(f"{self.name}: unexpected argument {quote(', '.join(map(repr, unknown)))}; "
                            f"it takes: {', '.join(properties)}")
        normalised = {}
        for key, spec in properties.items():
            value = arguments.get(key)
            if value is None:
                if key in self.parameters.get("required", ()):
                    raise ToolError(f"{self.name}: missing required argument {key!r} "
                                    f"({spec.get('description', _JSON_TYPES.get(spec.get('type'), ''))})")
                normalised[key] = spec.get("default")
                continue
            normalised[key] = _check_value(self.name, key, spec, value)
        return normalised

    def run(self, arguments: Any, settings: ToolSettings) -> str:
        """Validate `arguments`, run the tool, and return the text result for the model."""
        return self.invoke(self.validate(arguments), settings)

    def invoke(self, args: dict, settings: ToolSettings) -> str:
        """Run with already-validated arguments. Subclasses implement this."""
        raise NotImplementedError


QUOTE_LIMIT = 200  # a tool error the model reads quotes at most this much of what it sent


def quote(value, limit: int = QUOTE_LIMIT) -> str:
    """repr() of an argument for an error message, cut to `limit` characters."""
    text = value if isinstance(value, str) and value.startswith("'") else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_value(tool, key, spec, value):
    kind = spec.get("type")
    wanted = _describe(spec)
    if kind == "string":
        if not isinstance(value, str):
            raise ToolError(f"{tool}: {key} must be {wanted}, got {_kind(value)}")
        value = value.strip()
        if not value:
            raise ToolError(f"{tool}: {key} must not be empty")
        return value
    if kind == "integer":
        number = _as_integer(value)
        if number is None:
            raise ToolError(f"{tool}: {key} must be {wanted}, got {quote(value)}")
        _check_range(tool, key, spec, number, wanted)
        return number
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ToolError(f"{tool}: {key} must be {wanted}, got {quote(value)}")
        _check_range(tool, key, spec, value, wanted)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ToolError(f"{tool}: {key} must be true or false, got {quote(value)}")
        return value
    return value


def _as_integer(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    return None


def _check_range(tool, key, spec, number, wanted):
    low, high = spec.get("minimum"), spec.get("maximum")
    if (low is not None and number < low) or (high is not None and number > high):
        raise ToolError(f"{tool}: {key} must be {wanted}, got {number}")


def _describe(spec):
    """'an integer from 1 to 10', 'an integer of at least 1', 'a string'."""
    text = _JSON_TYPES.get(spec.get("type"), "a value")
    low, high = spec.get("minimum"), spec.get("maximum")
    if low is not None and high is not None:
        return f"{text} from {low} to {high}"
    if low is not None:
        return f"{text} of at least {low}"
    if high is not None:
        return f"{text} of at most {high}"
    return text


def _kind(value):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
