"""`llmcli keys`: store API keys in the OS keyring (or a 0600 file), never in the config (issue 19).

The storage is llmcli/config/keys.py; a stored key is used for the provider of the same name when no
flag, environment variable or api_key_cmd gives one (see `llmcli config show` for where a key came from).
"""

import json
import os
import sys

import click

from .app import CONTEXT_SETTINGS


def _home():
    from ..config.settings import home_dir

    return home_dir(os.environ)


def _warn(text):
    click.echo(f"llmcli: warning: {text}", err=True)


@click.group("keys", context_settings=CONTEXT_SETTINGS)
def keys_group():
    """Store API keys in the OS keyring instead of the config file.

    \b
    A key stored under a provider's name is used for that provider when neither --api-key, an
    environment variable (LLMCLI_API_KEY, the provider's api_key_env or preset variable) nor
    api_key_cmd gives one; a key in the config file comes last. Without a usable keyring backend
    (headless Linux without a Secret Service) keys go to a file in the data dir, mode 0600, with a
    warning. Values are never printed unless asked for with `keys get NAME --show`.

    \b
    Examples:
      llmcli keys set openrouter            # prompts without echo
      pass show openrouter | llmcli keys set openrouter
      llmcli keys list
    """


@keys_group.command("set")
@click.argument("name")
def keys_set(name):
    """Store the key for NAME (a provider's name): prompted without echo, or read from stdin."""
    from ..config.keys import check_name, set_key
    from ..errors import UsageError
    from ..run.runner import isatty

    check_name(name)
    if isatty(sys.stdin):
        value = click.prompt(f"API key for {name}", hide_input=True, err=True, default="", show_default=False)
    else:
        value = sys.stdin.read()
    value = value.strip()
    if not value:
        raise UsageError("no key given (type it at the prompt, or pipe it on stdin)")
    if any(ch.isspace() for ch in value):
        raise UsageError("the key contains whitespace; give one key, on one line")
    where, warning = set_key(name, value, _home())
    if warning:
        _warn(warning)
    click.echo(f"llmcli: stored the key for {name} in the " + ("keyring" if where == "keyring" else "key file"),
               err=True)


@keys_group.command("get")
@click.argument("name")
@click.option("--show", is_flag=True, help="Print the key itself on stdout (otherwise only whether it is set).")
def keys_get(name, show):
    """Say whether a key is stored for NAME and where; with --show, print it."""
    from ..config.keys import check_name, stored_key
    from ..config.settings import redact_key
    from ..errors import ConfigError

    check_name(name)
    found = stored_key(name, _home())
    if found is None:
        raise ConfigError(f"no key is stored for {name} (llmcli keys set {name})")
    value, where = found
    if show:
        click.echo(value)
    else:
        click.echo(f"{name}: set ({redact_key(value)}) in {where}")


@keys_group.command("list")
@click.option("--json", "json_output", is_flag=True, help="Print as JSON.")
def keys_list(json_output):
    """List the stored keys' names and where each lives (never the values)."""
    from ..config.keys import list_keys

    rows = list_keys(_home())
    if json_output:
        click.echo(json.dumps([{"name": n, "where": w} for n, w in rows], indent=2))
        return
    if not rows:
        click.echo("llmcli: no keys stored (llmcli keys set NAME)", err=True)
    width = max((len(n) for n, _ in rows), default=0)
    for name, where in rows:
        click.echo(f"{name.ljust(width)}  {where}")


@keys_group.command("rm")
@click.argument("name")
def keys_rm(name):
    """Delete the key stored for NAME (from the keyring and the key file)."""
    from ..config.keys import delete_key
    from ..errors import ConfigError

    if not delete_key(name, _home()):
        raise ConfigError(f"no key is stored for {name}")
    click.echo(f"llmcli: deleted the key for {name}", err=True)


@keys_group.command("path")
def keys_path():
    """Print the key file's path (used when no keyring backend is usable) and the keyring in use."""
    from ..config.keys import fallback_path, keyring_backend

    click.echo(fallback_path(_home()))
    backend, why = keyring_backend()
    click.echo(f"llmcli: {why if backend is None else 'keys go to the ' + why}", err=True)
