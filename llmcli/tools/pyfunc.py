"""Python tools: the functions in a `.py` file, offered to the model (`--functions tools.py`, or
`tools.user: [{python: tools.py}]` in the config), as simonw/llm's `--functions` does.

Each public function defined in the file (not imported into it, not starting with `_`) is one tool:
its name is the function's name, its description the docstring, and its parameters come from the
signature — type hints become JSON Schema types, parameters with a default are optional (and the
function's own default applies when the model leaves them out). A Google-style `Args:` section in
the docstring describes the parameters.

    def word_count(text: str, unique: bool = False) -> int:
        '''Count the words in a text.

        Args:
            text: the text to count
            unique: count each distinct word once
        '''

The file is run in-process when it is loaded (it is the user's own code, trusted like a config
file), and each call runs in-process too: an exception becomes the tool's error, which the model
reads; `print()` inside a function is captured and added to the result, so it never reaches
stdout, which carries only the answer. Stdlib only at import time.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import threading
import typing
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError, ToolError
from .base import Tool, _as_integer, _kind

DEFAULT_MAX_OUTPUT = 20_000
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


# path -> ((mtime_ns, size), tools): a chat session builds a run per message; the file is run once
# (its module-level state lasts the session) and again only when it changes.
_LOADED: Dict[str, Tuple[Tuple[int, int], List[Tool]]] = {}


def load_python_tools(path: str, where: Optional[str] = None) -> List[Tool]:
    """The tools defined in the Python file at `path`. Errors name the file and line (exit 3)."""
    where = where or path
    try:
        info = os.stat(path)
        stamp = (info.st_mtime_ns, info.st_size)
    except OSError:
        stamp = None
    key = os.path.abspath(path)
    cached = _LOADED.get(key)
    if cached is not None and stamp is not None and cached[0] == stamp:
        return list(cached[1])
    tools = _load(path, where)
    if stamp is not None:
        _LOADED[key] = (stamp, tools)
    return list(tools)


def _load(path: str, where: str) -> List[Tool]:
    try:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text ({exc.reason})") from None
    try:
        code = compile(source, path, "exec")
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno or 0}: syntax error: {exc.msg}") from None
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    namespace: Dict[str, Any] = {"__name__": f"llmcli_functions_{stem}", "__file__": path}
    try:
        exec(code, namespace)  # noqa: S102 - the user's own tool file, like a config file
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure while loading is a config error
        raise ConfigError(f"{path}:{_failing_line(exc, path)}: loading it failed: "
                          f"{type(exc).__name__}: {exc}") from None
    tools: List[Tool] = []
    for name, value in namespace.items():
        if name.startswith("_") or not inspect.isfunction(value):
            continue
        if getattr(value.__code__, "co_filename", None) != path:
            continue  # imported into the file (`from os.path import join`), not defined there
        tools.append(PythonTool(value, where))
    if not tools:
        raise ConfigError(f"{where}: defines no public functions to offer as tools")
    return tools


def _failing_line(exc: BaseException, path: str) -> int:
    tb, line = exc.__traceback__, 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class PythonTool(Tool):
    """One Python function as a tool."""

    origin = "user"

    def __init__(self, function, where: str = "--functions"):
        name = function.__name__
        if not _NAME.match(name):
            raise ConfigError(f"{where}: function name {name!r} must be 1-64 letters, digits, _ or -")
        self.function = function
        self.name = name
        self.where = where
        description, arg_docs = parse_docstring(inspect.getdoc(function) or "")
        self.description = description or f"The Python function {name}()"
        self.parameters, self.accepts_any = signature_schema(function, arg_docs, f"{where}: {name}")
        self.max_output = DEFAULT_MAX_OUTPUT

    def validate(self, arguments: Any) -> dict:
        """Type-check against the schema without rewriting values (a function's strings are its data:
        they are not stripped, and "" is a valid str). Missing optional arguments stay missing, so the
        function's own defaults apply."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ToolError(f"{self.name}: arguments must be a JSON object, got {_kind(arguments)}")
        properties = self.parameters["properties"]
        unknown = sorted(set(arguments) - set(properties))
        if unknown and not self.accepts_any:
            raise ToolError(f"{self.name}: unexpected argument {', '.join(map(repr, unknown))}; "
                            f"it takes: {', '.join(properties) or 'no arguments'}")
        for key in self.parameters.get("required", ()):
            if arguments.get(key) is None:
                raise ToolError(f"{self.name}: missing required argument {key!r}")
        out = {}
        for key, value in arguments.items():
            spec = properties.get(key, {})
            out[key] = value if value is None else _check(self.name, key, spec, value)
        return out

    def invoke(self, args: dict, settings: Any) -> str:
        import io

        captured = io.StringIO()
        try:
            # print() in a tool must not reach stdout (only the answer goes there): keep it for the model.
            with _captured_stdout(captured):
                result = self.function(**args)
                if inspect.isawaitable(result):
                    import asyncio

                    result = asyncio.run(_awaited(result))
        except KeyboardInterrupt:
            raise
        except ToolError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the model reads what went wrong and may retry
            raise ToolError(f"{self.name} raised {type(exc).__name__}: {exc}") from None
        text = captured.getvalue() + _as_text(result)
        if len(text) > self.max_output:
            text = text[:self.max_output] + f"\n[truncated: output was {len(text)} characters]"
        return text


class _StdoutRouter:
    """sys.stdout while Python tools run: writes from a thread that is running a tool go to that
    tool's buffer, all others to the real stdout (contextlib.redirect_stdout would also swallow what
    other threads write meanwhile, e.g. in `llmcli batch`)."""

    def __init__(self, real):
        self.real = real
        self.local = threading.local()

    def write(self, text):
        buffer = getattr(self.local, "buffer", None)
        return (buffer if buffer is not None else self.real).write(text)

    def flush(self):
        buffer = getattr(self.local, "buffer", None)
        return (buffer if buffer is not None else self.real).flush()

    def __getattr__(self, name):
        return getattr(self.real, name)


_router_lock = threading.Lock()
_router_users = 0


class _captured_stdout:
    def __init__(self, buffer):
        self.buffer = buffer

    def __enter__(self):
        global _router_users
        with _router_lock:
            if _router_users == 0 or not isinstance(sys.stdout, _StdoutRouter):
                sys.stdout = _StdoutRouter(sys.stdout)
            _router_users += 1
            self.router = sys.stdout
        self.router.local.buffer = self.buffer

    def __exit__(self, *exc):
        global _router_users
        self.router.local.buffer = None
        with _router_lock:
            _router_users -= 1
            if _router_users == 0 and sys.stdout is self.router:
                sys.stdout = self.router.real
        return False


async def _awaited(awaitable):
    return await awaitable


def _as_text(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(result)


def _check(tool: str, key: str, spec: dict, value: Any) -> Any:
    kinds = spec.get("type")
    if kinds is None and "anyOf" in spec:
        kinds = [s.get("type") for s in spec["anyOf"] if s.get("type")]
    if kinds is None:
        return value
    if isinstance(kinds, str):
        kinds = [kinds]
    for kind in kinds:
        if kind == "string" and isinstance(value, str):
            break
        if kind == "integer" and _as_integer(value) is not None:
            value = _as_integer(value)
            break
        if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            break
        if kind == "boolean" and isinstance(value, bool):
            break
        if kind == "array" and isinstance(value, list):
            break
        if kind == "object" and isinstance(value, dict):
            break
        if kind == "null" and value is None:
            break
    else:
        raise ToolError(f"{tool}: {key} must be {' or '.join(kinds)}, got {_kind(value)}")
    if "enum" in spec and value not in spec["enum"]:
        raise ToolError(f"{tool}: {key} must be one of {', '.join(map(json.dumps, spec['enum']))}, got {value!r}")
    return value


def signature_schema(function, arg_docs: Dict[str, str], where: str) -> Tuple[dict, bool]:
    """The JSON Schema of a function's parameters, and whether it takes **kwargs."""
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - an unresolvable forward reference: fall back to raw annotations
        hints = dict(getattr(function, "__annotations__", {}))
    properties: Dict[str, dict] = {}
    required: List[str] = []
    accepts_any = False
    for param in inspect.signature(function).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            accepts_any = True
            continue
        if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
            if param.kind is param.POSITIONAL_ONLY and param.default is param.empty:
                raise ConfigError(f"{where}: positional-only parameter {param.name!r} cannot be passed by name")
            continue
        spec = type_schema(hints.get(param.name, param.empty))
        if param.name in arg_docs:
            spec["description"] = arg_docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        elif _jsonable(param.default):
            spec["default"] = param.default
        properties[param.name] = spec
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema, accepts_any


def type_schema(hint: Any) -> dict:
    """JSON Schema for one type hint: str, int, float, bool, list[X], dict, Optional[X], Literal[...]."""
    if hint is inspect.Parameter.empty or hint is Any or hint is None:
        return {}
    if hint is type(None):
        return {"type": "null"}
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        values = list(args)
        kinds = {_SCALARS.get(type(v)) for v in values}
        out: dict = {"enum": values}
        if len(kinds) == 1 and None not in kinds:
            out["type"] = kinds.pop()
        return out
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return type_schema(members[0])  # Optional[X]: X, and the default (None) makes it optional
        return {"anyOf": [type_schema(m) for m in members]}
    if hint in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset):
        out = {"type": "array"}
        if args and origin is not tuple and type_schema(args[0]):
            out["items"] = type_schema(args[0])
        return out
    if hint is dict or origin is dict:
        return {"type": "object"}
    return {}


def parse_docstring(doc: str) -> Tuple[str, Dict[str, str]]:
    """(description, {param: description}) from a docstring with an optional Google-style Args: section."""
    lines = doc.splitlines()
    description: List[str] = []
    args: Dict[str, str] = {}
    section = None
    current = None
    for line in lines:
        stripped = line.strip()
        header = stripped.rstrip(":").lower()
        if stripped.endswith(":") and header in ("args", "arguments", "parameters", "params"):
            section, current = "args", None
            continue
        if stripped.endswith(":") and header in ("returns", "return", "raises", "yields", "examples", "example"):
            section = "other"
            continue
        if section == "args":
            match = re.match(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", stripped)
            if match and line[:len(line) - len(line.lstrip())] != "" and not (current and _deeper(line, lines)):
                current = match.group(1).lstrip("*")
                args[current] = match.group(2)
            elif stripped and current:
                args[current] = (args[current] + " " + stripped).strip()
            elif not stripped:
                current = None
            continue
        if section is None:
            description.append(line)
    return "\n".join(description).strip(), {k: v for k, v in args.items() if v}


def _deeper(line: str, lines: List[str]) -> bool:
    """A continuation line is indented further than the parameter lines of its section."""
    indent = len(line) - len(line.lstrip())
    first = next((len(x) - len(x.lstrip()) for x in lines
                  if re.match(r"^\s+\*{0,2}\w+\s*(?:\([^)]*\))?\s*:", x)), indent)
    return indent > first


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
