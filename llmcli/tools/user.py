"""User-defined command tools (`tools.user:` in the config, `--functions FILE`): an argv template
run without a shell, with `{param}` substitution and/or the arguments as JSON on stdin. A `.py`
file (`--functions tools.py`, or `- python: tools.py` in `tools.user`) offers its functions instead
(llmcli.tools.pyfunc).

    - name: word_count
      description: Count words in a text
      parameters: {type: object, properties: {text: {type: string}}, required: [text]}
      command: [wc, -w]          # argv, never a shell
      stdin: json                # or "none" (default when the argv uses {param}), or a param name
      timeout: 10
      max_output: 20000
      cwd: /tmp
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any, List

from ..errors import ConfigError, ToolError
from .base import Tool

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_OUTPUT = 20_000
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class CommandTool(Tool):
    origin = "user"

    def __init__(self, spec: dict, where: str = "tools.user"):
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: each tool must be a mapping")
        name = spec.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}: tool name {name!r} must be 1-64 letters, digits, _ or -")
        where = f"{where}.{name}"
        command = spec.get("command")
        if isinstance(command, str):
            import shlex

            command = shlex.split(command)
        if not command or not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise ConfigError(f"{where}: command must be a non-empty argv list (it is run without a shell)")
        params = spec.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise ConfigError(f"{where}: parameters must be a JSON Schema object")
        params = dict(params)
        params.setdefault("type", "object")
        params.setdefault("properties", {})
        used = {m for a in command for m in _PLACEHOLDER.findall(a)}
        unknown = used - set(params["properties"])
        if unknown:
            raise ConfigError(f"{where}: the command uses {', '.join(sorted(unknown))}, "
                              "which are not among its parameters")
        stdin = spec.get("stdin", "none" if used else "json")
        if stdin not in ("json", "none") and stdin not in params["properties"]:
            raise ConfigError(f"{where}: stdin must be json, none or a parameter name")
        self.name = name
        self.description = str(spec.get("description") or f"Runs {command[0]}")
        self.parameters = params
        self.command = command
        self.stdin = stdin
        try:
            self.timeout = float(spec.get("timeout", DEFAULT_TIMEOUT))
            self.max_output = int(spec.get("max_output", DEFAULT_MAX_OUTPUT))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: timeout and max_output must be numbers") from None
        cwd = spec.get("cwd")
        self.cwd = os.path.expanduser(str(cwd)) if cwd else None

    def argv(self, args: dict) -> List[str]:
        def sub(match):
            value = args.get(match.group(1))
            if value is None:
                return ""
            return value if isinstance(value, str) else json.dumps(value)

        return [_PLACEHOLDER.sub(sub, a) for a in self.command]

    def invoke(self, args: dict, settings: Any) -> str:
        argv = self.argv(args)
        if self.stdin == "json":
            data = json.dumps({k: v for k, v in args.items() if v is not None})
        elif self.stdin == "none":
            data = ""
        else:
            value = args.get(self.stdin)
            data = value if isinstance(value, str) else json.dumps(value)
        try:
            proc = subprocess.run(argv, input=data.encode(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, cwd=self.cwd, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise ToolError(f"{self.name}: timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise ToolError(f"{self.name}: could not run {argv[0]}: {exc.strerror or exc}") from None
        out = proc.stdout.decode("utf-8", "replace")
        if len(out) > self.max_output:
            out = out[:self.max_output] + f"\n[truncated: output was {len(out)} characters]"
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
            raise ToolError(f"{self.name}: exited with status {proc.returncode}"
                            + (f": {err}" if err else "") + (f"\n{out}" if out.strip() else ""))
        return out


def load_user_tools(specs: Any, where: str = "tools.user") -> List[Tool]:
    if not specs:
        return []
    if isinstance(specs, dict) and set(specs) == {"python"}:  # `user: {python: FILE or [FILES]}`
        files = specs["python"] if isinstance(specs["python"], list) else [specs["python"]]
        specs = [{"python": f} for f in files]
    if isinstance(specs, dict):  # {name: spec} is accepted too
        specs = [dict(v or {}, name=k) for k, v in specs.items()]
    if not isinstance(specs, list):
        raise ConfigError(f"{where}: expected a list of tools")
    tools: List[Tool] = []
    for spec in specs:
        if isinstance(spec, dict) and "python" in spec:
            from .pyfunc import load_python_tools

            if not isinstance(spec["python"], str) or not spec["python"].strip():
                raise ConfigError(f"{where}: python: expects the path of a .py file")
            tools.extend(load_python_tools(os.path.expanduser(spec["python"])))
        else:
            tools.append(CommandTool(spec, where))
    return tools


def load_functions_file(path: str) -> List[Tool]:
    """--functions FILE: a YAML (or JSON) list of command tools, or a .py file of Python functions."""
    if path.endswith(".py"):
        from .pyfunc import load_python_tools

        return load_python_tools(path, where=f"--functions {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"--functions {path}: {exc.strerror or exc}") from None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--functions {path}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and "tools" in data:
        data = data["tools"]
    return load_user_tools(data, where=path)


def configured_user_tools(tool_config: dict) -> List[Tool]:
    """The user tools the settings define: `tools.user` from the config, then each --functions FILE."""
    tools = load_user_tools(tool_config.get("user"))
    for path in tool_config.get("functions") or ():
        tools.extend(load_functions_file(path))
    return tools
