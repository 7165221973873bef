"""Prompt templates (`-t NAME`, `-t path.yaml`): YAML, or Markdown whose YAML front matter holds the
keys and whose body is the prompt.

Keys: system, prompt, model, provider, options (a mapping), tools (a list), schema (DSL string or a
JSON Schema mapping), schema_multi, extract (true, "last", or a language), defaults (values for
variables), description. `$input` in prompt or system is the piped stdin and the prompt words; any
other `$name` is filled by `-v name VALUE` (or `defaults`); `$$` is a literal dollar.

Several templates compose left to right: a later one's scalar keys replace an earlier one's, options
and defaults are merged key by key, tools are added up. Flags override them all (cli/templates.py).
User files in the templates dir override the built-ins of the same name.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from ..errors import ConfigError, UsageError

KNOWN_KEYS = ("description", "system", "prompt", "model", "provider", "options", "tools", "schema",
              "schema_multi", "extract", "defaults")
SUFFIXES = (".yaml", ".yml", ".md")

BUILTIN = {
    "summarize": """\
description: Summarize the input in a few bullet points
system: You summarize text accurately and briefly. Keep names, numbers and dates exact.
prompt: |
  Summarize the following in at most $points bullet points:

  $input
defaults:
  points: "5"
""",
    "commit-message": """\
description: A git commit message for a diff (git diff --staged | llmcli ask -t commit-message)
system: |
  You write git commit messages: a subject line of at most 72 characters in the imperative mood,
  a blank line, then a short body saying what changed and why. Output only the message.
prompt: |
  Write the commit message for this diff:

  $input
""",
    "explain": """\
description: Explain code or a command, step by step
system: You explain code and shell commands clearly to a competent engineer. Be concrete and brief.
prompt: |
  Explain what this does, step by step, and point out anything surprising or risky:

  $input
""",
}


@dataclass
class Template:
    name: str
    source: str  # a path, or "built-in"
    data: Dict = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)


def templates_dir(config_file: str) -> str:
    """Beside the config file: ~/.config/llmcli/templates."""
    return os.path.join(os.path.dirname(os.path.abspath(config_file)), "templates")


def parse_template(text: str, source: str, name: str) -> Template:
    """A template from its text; invalid YAML is ConfigError (exit 3) with file:line."""
    import yaml

    body = None
    if text.startswith("---"):
        m = re.match(r"---[ \t]*\r?\n(.*?)(?:^|\n)---[ \t]*(?:\r?\n|$)(.*)", text, re.S)
        if m:
            front, body = m.group(1), m.group(2)
        else:
            front = text[3:]
        offset = 1
    else:
        front, offset = text, 0
    try:
        data = yaml.safe_load(front) if front.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1 + offset}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{line}: invalid YAML in template: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a template must be a mapping of keys (system, prompt, model, …)")
    if body is not None and body.strip() and "prompt" not in data:
        data["prompt"] = body.strip("\n") + "\n"
    t = Template(name, source, data)
    for key in data:
        if key not in KNOWN_KEYS:
            t.warnings.append(f"{source}: unknown template key {key!r} (known: {', '.join(KNOWN_KEYS)})")
    for key, kind in (("options", dict), ("defaults", dict), ("tools", list)):
        if key in data and data[key] is not None and not isinstance(data[key], kind):
            raise ConfigError(f"{source}: template key {key!r} must be a {'mapping' if kind is dict else 'list'}")
    for key in ("system", "prompt", "model", "provider", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            data[key] = str(data[key])
    return t


def user_template_path(name: str, directory: str) -> Optional[str]:
    for suffix in SUFFIXES:
        path = os.path.join(directory, name + suffix)
        if os.path.isfile(path):
            return path
    return None


def looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.endswith(SUFFIXES)


def load_template(value: str, directory: str) -> Template:
    """-t's value: a path, a user template's name, or a built-in's name (the user file wins)."""
    if looks_like_path(value):
        if not os.path.isfile(value):
            raise ConfigError(f"template file not found: {value}")
        return _read(value, os.path.splitext(os.path.basename(value))[0])
    path = user_template_path(value, directory)
    if path is not None:
        return _read(path, value)
    if value in BUILTIN:
        return parse_template(BUILTIN[value], f"built-in template {value}", value)
    known = sorted(set(BUILTIN) | set(list_user_templates(directory)))
    raise ConfigError(f"no template named {value!r} (templates: {', '.join(known)}; dir: {directory})")


def _read(path: str, name: str) -> Template:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read template {path}: {exc}") from None
    return parse_template(text, path, name)


def list_user_templates(directory: str) -> Dict[str, str]:
    out = {}
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return out
    for entry in entries:
        stem, suffix = os.path.splitext(entry)
        if suffix in SUFFIXES and stem not in out:
            out[stem] = os.path.join(directory, entry)
    return out


def compose(templates: List[Template]) -> Dict:
    """Left to right: scalars replaced, options/defaults merged, tools added up."""
    out: Dict = {}
    for t in templates:
        for key, value in t.data.items():
            if key in ("options", "defaults"):
                out[key] = {**(out.get(key) or {}), **(value or {})}
            elif key == "tools":
                out[key] = list(dict.fromkeys(list(out.get(key) or []) + [str(v) for v in value or []]))
            else:
                out[key] = value
    return out


def fill(text: str, variables: Mapping[str, str], what: str) -> str:
    """`$name` and `${name}` filled; a variable left unfilled is a UsageError naming it."""
    try:
        return string.Template(text).substitute(variables)
    except KeyError as exc:
        name = exc.args[0]
        hint = "pipe text or give prompt words" if name == "input" else f"use -v {name} VALUE"
        raise UsageError(f"{what}: variable ${name} is not set ({hint})") from None
    except ValueError as exc:
        raise UsageError(f"{what}: {exc} (write $$ for a literal dollar)") from None


def uses_variable(text: Optional[str], name: str) -> bool:
    if not text:
        return False
    return any(m.group("named") == name or m.group("braced") == name
               for m in string.Template.pattern.finditer(text))


def render(composed: Dict, variables: Mapping[str, str], user_input: Optional[str], what: str) -> Tuple[Optional[str], Optional[str]]:
    """(system, prompt) with variables filled; without $input in the prompt, the input follows it."""
    values = {**{k: str(v) for k, v in (composed.get("defaults") or {}).items()}, **variables}
    if user_input is not None:
        values["input"] = user_input
    system = composed.get("system")
    prompt = composed.get("prompt")
    if system is not None:
        system = fill(system, values, what).rstrip("\n")
    if prompt is not None:
        takes_input = uses_variable(prompt, "input")
        prompt = fill(prompt, values, what).rstrip("\n")  # a YAML `|` block ends in a newline
        if not takes_input and user_input:
            prompt = prompt.rstrip("\n") + "\n\n" + user_input
    return system, prompt


def dump_template(data: Dict) -> str:
    import yaml

    ordered = {k: data[k] for k in KNOWN_KEYS if data.get(k) not in (None, {}, [], False)}
    return yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, default_flow_style=False)
