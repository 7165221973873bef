"""`llmcli templates list|show|edit|path`. `ask -t/-v/--save-template` are in cli/scripting.py; the
format and the rules live in llmcli/prompt/templates.py."""

import json
import os

import click

from .app import CONTEXT_SETTINGS
from .paramtypes import FILE
from .scripting import templates_directory as _templates_directory


# --------------------------------------------------------------------------------------------
# llmcli templates …


@click.group("templates", context_settings=CONTEXT_SETTINGS)
def templates_group():
    """List, show and edit prompt templates (used with ask -t NAME).

    \b
    A template is YAML (or Markdown with YAML front matter; the body is the prompt):
      system: You are terse.
      prompt: "Translate into $lang: $input"
      model: gpt-4o-mini
      options: {temperature: 0}
    """


def _config_option(f):
    return click.option("--config", "config", metavar="FILE", type=FILE,
                        help="YAML config file (templates live in templates/ beside it).")(f)


@templates_group.command("list")
@_config_option
@click.option("--json", "json_output", is_flag=True, help="Print as JSON.")
def templates_list(config, json_output):
    """List the templates: the user's (in the templates dir), then the built-ins not overridden."""
    from ..prompt.templates import BUILTIN, list_user_templates, load_template

    directory = _templates_directory(config)
    user = list_user_templates(directory)
    rows = []
    for name in sorted(set(user) | set(BUILTIN)):
        try:
            t = load_template(name, directory)
            desc = t.data.get("description") or (t.data.get("prompt") or t.data.get("system") or "").strip()
        except Exception as exc:  # one broken file must not hide the others
            desc = f"(broken: {exc})"
        rows.append({"name": name, "source": user.get(name, "built-in"), "description": desc.splitlines()[0] if desc else ""})
    if json_output:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        origin = "" if r["source"] == "built-in" else "  (user)"
        click.echo(f"{r['name'].ljust(width)}  {r['description']}{origin}")


@templates_group.command("show")
@click.argument("name")
@_config_option
def templates_show(name, config):
    """Print a template's text."""
    from ..prompt.templates import BUILTIN, load_template, looks_like_path, user_template_path

    directory = _templates_directory(config)
    load_template(name, directory)  # errors (unknown name, bad YAML) as for -t
    path = name if looks_like_path(name) else user_template_path(name, directory)
    if path is None:
        click.echo(BUILTIN[name], nl=False)
        return
    with open(path, encoding="utf-8") as f:
        click.echo(f.read(), nl=False)


@templates_group.command("edit")
@click.argument("name")
@_config_option
def templates_edit(name, config):
    """Open template NAME in $EDITOR (a built-in is copied first, so the copy overrides it)."""
    from ..prompt.templates import BUILTIN, load_template, user_template_path

    directory = _templates_directory(config)
    path = user_template_path(name, directory)
    if path is None:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name + ".yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(BUILTIN.get(name, "system: \nprompt: |\n  $input\n"))
    click.edit(filename=path)
    load_template(name, directory)  # say now if the edit broke the YAML


@templates_group.command("path")
@_config_option
def templates_path(config):
    """Print the templates directory."""
    click.echo(_templates_directory(config))
