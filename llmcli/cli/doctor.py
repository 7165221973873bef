"""`llmcli doctor`: probe an endpoint and print what it supports; `--save` writes the findings into the
provider's config so that --schema (and later tools) pick the right mode at once. The probes are in
llmcli/wire/probe.py."""

import json
import os

import click

from .app import CONTEXT_SETTINGS, connection_options, echo_outside, settings_from_params


@click.command("doctor", context_settings=CONTEXT_SETTINGS)
@connection_options
@click.option("--json", "json_output", is_flag=True, help="Print the findings as one JSON document.")
@click.option("--save", is_flag=True,
              help="Write the findings into the provider's config (providers.NAME.capabilities); needs -p.")
@click.option("--timeout", "probe_timeout", type=click.FloatRange(min=0.1), default=20.0, show_default=True,
              metavar="SECS", help="Limit for each probe.")
def doctor_command(json_output, save, probe_timeout, **params):
    """Probe an OpenAI-compatible endpoint with a few small requests and print what it supports.

    \b
    Checks: reachable, auth, /models (count, context length if listed), a plain answer and its
    round-trip latency, the refusal field, streaming, stream_options.include_usage, usage reported,
    native tool calls (streamed, parallel), the reasoning field's name, and response_format
    json_schema / json_object. Each probe is bounded by --timeout; one failing never stops the others.

    \b
    Examples:
      llmcli doctor -p openrouter -m openai/gpt-4o-mini
      llmcli doctor --base-url http://127.0.0.1:8080/v1 --json | jq .capabilities
      llmcli doctor -p local-vllm --save
    """
    from ..errors import ConfigError, HTTPError, NetworkError, UsageError

    settings = settings_from_params(params)
    if settings.is_local:
        raise UsageError("doctor probes HTTP endpoints; the embedded local model needs no probe")
    if not settings.base_url:
        raise ConfigError("no base URL: pass --base-url, set LLMCLI_BASE_URL, or choose a provider with -p")
    if save and not settings.provider:
        raise UsageError("--save writes into a provider's config: name it with -p PROVIDER")
    from ..wire.probe import Prober, capabilities

    prober = Prober(settings, timeout=probe_timeout)
    findings = prober.run()
    caps = capabilities(findings)
    if json_output:
        click.echo(json.dumps({"base_url": settings.base_url, "provider": settings.provider, "model": prober.model,
                               "findings": [f.to_dict() for f in findings], "capabilities": caps},
                              ensure_ascii=False, indent=2))
    else:
        width = max(len(f.name) for f in findings)
        click.echo(f"{settings.base_url}" + (f"  model {prober.model}" if prober.model else ""))
        for f in findings:
            mark = {True: "ok ", False: "no ", None: " - "}[f.ok]
            echo_outside(f"  {f.name.ljust(width)}  {mark} {f.detail}")
    if save:
        path = save_capabilities(settings, caps)
        click.echo(f"llmcli: saved the capabilities of {settings.provider} to {path}", err=True)
    by = {f.name: f for f in findings}
    if by.get("reachable") and by["reachable"].ok is False:
        raise NetworkError(f"{settings.base_url} is not reachable: {by['reachable'].detail}")
    if by.get("auth") and by["auth"].ok is False:
        raise HTTPError(f"the server refused the key: {by['auth'].detail}", status=401)


def save_capabilities(settings, caps: dict) -> str:
    """providers.NAME.capabilities in the config file (created if needed; the old file kept as .bak)."""
    import shutil

    import yaml

    from ..config.settings import config_path, load_config_file

    path = settings.config_path or config_path(os.environ)
    data = {}
    if os.path.exists(path):
        data, _ = load_config_file(path)
        shutil.copyfile(path, path + ".bak")
    providers = data.setdefault("providers", {}) or {}
    data["providers"] = providers
    entry = providers.get(settings.provider) or {}
    entry["capabilities"] = caps
    providers[settings.provider] = entry
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False, allow_unicode=True)
    return path
