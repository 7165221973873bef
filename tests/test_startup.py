"""Start-up stays lazy: `--help` (and every shell-completion TAB) must not import the heavy modules."""

import os
import subprocess
import sys

import pytest

HEAVY = ("requests", "urllib3", "yaml", "prompt_toolkit", "llama_cpp", "trafilatura", "sseclient", "jsonschema", "mcp",
         "anyio", "pypdf")
# What the MCP client brings; only a run with an MCP server configured may import it.
MCP_SDK = {"mcp", "mcp_types", "anyio", "httpx", "httpx2", "pydantic", "pydantic_core"}


def imported_modules(*args, env=None):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "llmcli", *args],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=env)
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return proc, names


@pytest.mark.parametrize("args", [("--help",), ("ask", "--help"), ("chat", "--help"), ("config", "--help"),
                                  ("--version",), ("doctor", "--help"), ("templates", "--help"),
                                  ("templates", "list", "--help"), ("cmd", "--help"), ("widget", "--help"),
                                  ("complete", "--help"), ("logs", "--help"), ("logs", "list", "--help"),
                                  ("batch", "--help"), ("batch", "wait", "--help"), ("batch", "fetch", "--help")])


def test_help_imports_nothing_heavy(args):
    proc, names = imported_modules(*args)
    assert proc.returncode == 0
    assert "llmcli" in names  # the measurement works
    # answered from generated text (cli/fast.py): not even click is imported
    assert not names & set(HEAVY + ("click", "sqlite3")), sorted(names & set(HEAVY + ("click", "sqlite3")))


def test_help_click_renders_imports_nothing_heavy():
    # a width the generated text does not cover: click renders it, still without the heavy modules
    import os

    proc, names = imported_modules("ask", "--help", env=dict(os.environ, COLUMNS="64"))
    assert proc.returncode == 0 and "click" in names
    assert not names & set(HEAVY + ("sqlite3",)), sorted(names & set(HEAVY + ("sqlite3",)))


def test_completion_imports_nothing_heavy():
    import os

    env = dict(os.environ, _LLMCLI_COMPLETE="bash_complete", COMP_WORDS="llmcli as", COMP_CWORD="1")
    proc, names = imported_modules(env=env)
    assert "plain,ask" in proc.stdout
    assert not names & set(HEAVY + ("click",)), sorted(names & set(HEAVY + ("click",)))
    # a completion the fast path leaves to click (an option value)
    env.update(COMP_WORDS="llmcli ask -p ", COMP_CWORD="3")
    proc, names = imported_modules(env=env)
    assert "plain,openrouter" in proc.stdout and "click" in names
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def test_plain_ask_imports_neither_the_price_table_nor_the_keyring(server):
    """genai-prices costs ~150 ms and keyring may talk to D-Bus: only the runs that need them load them."""
    import os

    from localserver import Reply, text_stream

    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    server.chat(Reply(pieces=text_stream("hi", usage=usage)))
    env = dict(os.environ)
    proc, names = imported_modules("ask", "--base-url", server.base_url, "-m", "gpt-4o-mini", "q", env=env)
    assert proc.returncode == 0 and proc.stdout == "hi\n", proc.stderr[-500:]
    assert "requests" in names  # the measurement works
    assert not names & {"genai_prices", "keyring", "pydantic"}, sorted(names & {"genai_prices", "keyring"})
    # asked for a cost, it is loaded (so the check above can fail)
    proc, names = imported_modules("ask", "--base-url", server.base_url, "-m", "gpt-4o-mini", "-u", "q", env=env)
    assert proc.returncode == 0 and "genai_prices" in names
    assert "keyring" not in names


def test_keyring_is_imported_only_for_a_key_the_index_puts_there(server, tmp_path):
    import json
    import os

    from localserver import Reply, text_stream

    server.chat(Reply(pieces=text_stream("hi")))
    home = tmp_path / "llmcli-home"
    home.mkdir(exist_ok=True)
    args = ("ask", "-p", "openrouter", "--base-url", server.base_url, "q")
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"), OPENROUTER_API_KEY="sk-env-0123456789")
    proc, names = imported_modules(*args, env=env)  # the key from the environment: nothing looked up
    assert proc.returncode == 0 and "keyring" not in names, proc.stderr[-300:]
    del env["OPENROUTER_API_KEY"]
    (home / "keys-index.json").write_text(json.dumps({"openrouter": "file"}))
    (home / "keys.json").write_text(json.dumps({"openrouter": "sk-file-0123456789"}))
    proc, names = imported_modules(*args, env=env)
    assert proc.returncode == 0 and "keyring" not in names, proc.stderr[-300:]
    (home / "keys-index.json").write_text(json.dumps({"openrouter": "keyring"}))
    env["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
    proc, names = imported_modules(*args, env=env)
    assert "keyring" in names  # the check above can fail


@pytest.mark.parametrize("args", [("doctor", "--help"), ("templates", "show", "--help")])


def test_new_commands_rendered_by_click_import_nothing_heavy(args):
    import os

    proc, names = imported_modules(*args, env=dict(os.environ, COLUMNS="64"))
    assert proc.returncode == 0 and "click" in names
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def test_schema_run_imports_jsonschema_only_when_asked(tmp_path):
    """A plain ask with -x (no --schema) never imports jsonschema; an invalid --schema is refused
    (exit 2) after importing it, before any request."""
    import os

    env = dict(os.environ, LLMCLI_HOME=str(tmp_path), LLMCLI_CONFIG=str(tmp_path / "none.yaml"))
    proc, names = imported_modules("ask", "--base-url", "http://127.0.0.1:9/v1", "--retries", "0", "-x", "hi",
                                   env=env)
    assert proc.returncode == 6 and "jsonschema" not in names
    proc, names = imported_modules("ask", "--base-url", "http://127.0.0.1:9/v1", "--schema", "a integr", "hi",
                                   env=env)
    assert proc.returncode == 2 and "jsonschema" not in names  # the DSL fails before jsonschema is needed


def test_plain_ask_imports_no_tool_machinery(server):
    """An ask without tools loads none of the user-tool, Python-tool or text-tool-call modules."""
    from localserver import Reply, text_stream

    server.chat(Reply(pieces=text_stream("hi")))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "llmcli", "ask", "--base-url", server.base_url,
                           "hello"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    assert "llmcli.run.loop" in modules  # the measurement works
    unwanted = {"llmcli.wire.textcalls", "llmcli.tools.pyfunc", "llmcli.tools.user", "ddgs", "primp"}
    assert not modules & unwanted, sorted(modules & unwanted)


def test_ask_without_mcp_imports_no_mcp_sdk(server):
    from localserver import Reply, text_stream

    server.chat([Reply(pieces=text_stream("fine"))])
    proc, names = imported_modules("ask", "--base-url", server.base_url, "hi")
    assert proc.returncode == 0 and proc.stdout == "fine\n" and "requests" in names  # the measurement works
    assert not names & MCP_SDK, sorted(names & MCP_SDK)


def test_complete_help_rendered_by_click_imports_nothing_heavy():
    import os

    proc, names = imported_modules("complete", "--help", env=dict(os.environ, COLUMNS="64"))
    assert proc.returncode == 0 and "click" in names and "token-ids" in proc.stdout
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def test_an_image_attachment_does_not_import_pypdf(tmp_path):
    """pypdf is imported for --pdf-text only; nor does ask import yaml without a YAML history."""
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    proc, names = imported_modules("ask", "--base-url", "http://127.0.0.1:9/v1", "--retries", "0",
                                   "-a", str(path), "hi")
    assert proc.returncode == 6, proc.stderr[-500:]
    assert "pypdf" not in names and "yaml" not in names



# What a plain ask must not import (issue 22): each is needed only by an option the ask did not use.
PLAIN_ASK_LAZY = {"llmcli.prompt.transcripts",  # --history FILE (its format names live in prompt.history)
                  "llmcli.prompt.attach", "llmcli.prompt.templates", "llmcli.run.structured",  # -a, -t, --schema
                  "llmcli.output.markdown", "llmcli.run.cost", "llmcli.tools.mcp",  # --render, -u, MCP
                  "llmcli.store.db", "sqlite3",  # the log, under --no-log
                  "llmcli.cli.doctor", "llmcli.cli.batch", "llmcli.repl.session",  # other commands
                  "llmcli.config.mcp",  # only with an MCP server configured
                  # start-up costs found by profiling (issue 22): generated dataclasses (5.7 ms in 11 classes),
                  # click's "did you mean" for `-m` (difflib, 2 ms), the ids' `secrets`
                  "dataclasses", "difflib", "secrets"}


def imported_module_names(*args):
    """Full dotted names (imported_modules keeps top-level packages only)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "llmcli", *args], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    return proc, {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                  if line.startswith("import time:") and "|" in line}


def test_plain_ask_imports_none_of_the_lazy_modules(server):
    from localserver import Reply, text_stream

    server.chat(Reply(pieces=text_stream("hi")))
    proc, modules = imported_module_names("ask", "--base-url", server.base_url, "-m", "m", "--no-log", "hello")
    assert proc.returncode == 0 and proc.stdout == "hi\n", proc.stderr[-2000:]
    assert "llmcli.prompt.history" in modules and "llmcli.run.loop" in modules  # the measurement works
    assert not modules & PLAIN_ASK_LAZY, sorted(modules & PLAIN_ASK_LAZY)
    assert not modules & (set(HEAVY) - {"requests", "urllib3", "sseclient"}), sorted(modules & set(HEAVY))


def test_a_logged_ask_appends_without_sqlite_and_the_next_reader_moves_it_in(server, tmp_path):
    """The log costs an ask one appended line (store/pending.py): sqlite3 is for the readers of the log."""
    import os

    from localserver import Reply, text_stream

    server.chat([Reply(pieces=text_stream("hi")), Reply(pieces=text_stream("again"))])
    env = dict(os.environ, LLMCLI_HOME=str(tmp_path))
    proc, names = imported_modules("ask", "--base-url", server.base_url, "-m", "m", "hello", env=env)
    assert proc.returncode == 0 and proc.stdout == "hi\n", proc.stderr[-500:]
    assert "sqlite3" not in names and "_sqlite3" not in names
    assert os.path.getsize(tmp_path / "logs.db.pending") > 0 and not os.path.exists(tmp_path / "logs.db")
    proc, names = imported_modules("ask", "--base-url", server.base_url, "-m", "m", "-c", "more", env=env)
    assert proc.returncode == 0 and proc.stdout == "again\n", proc.stderr[-500:]
    assert "sqlite3" in names  # -c reads the log: the first exchange moved in, so it could continue it
    assert server.requests[-1].json["messages"][-2] == {"role": "assistant", "content": "hi"}


def test_a_history_file_still_loads_the_transcript_parsers(server, tmp_path):
    """The other side of the check above (so it can fail): --history imports the parsers and uses them."""
    import json

    from localserver import Reply, text_stream

    server.chat(Reply(pieces=text_stream("hi")))
    history = tmp_path / "h.json"
    history.write_text(json.dumps([{"role": "user", "content": "before"}, {"role": "assistant", "content": "ok"}]))
    proc, modules = imported_module_names("ask", "--base-url", server.base_url, "--no-log", "--history",
                                          str(history), "q")
    assert proc.returncode == 0 and proc.stdout == "hi\n", proc.stderr[-500:]
    assert "llmcli.prompt.transcripts" in modules
    assert server.requests[-1].json["messages"][0]["content"] == "before"


def test_per_chunk_values_are_not_generated_dataclasses():
    """Each @dataclass costs ~0.25 ms of exec() at the import every run pays; the values made per chunk
    are plain __slots__ classes with the same ==, hash, repr and frozenness (llmcli.events.Value)."""
    import dataclasses

    from llmcli import events
    from llmcli.wire.sse import SSEEvent

    for value in (events.TextDelta("x"), events.ReasoningDelta("x"), events.UsageUpdate({}),
                  events.FinishReason("stop"), events.ToolCallDelta(0, None, None, ""), SSEEvent()):
        assert not dataclasses.is_dataclass(value) and not hasattr(value, "__dict__"), value
    assert events.TextDelta("a") == events.TextDelta("a") != events.TextDelta("b")
    assert events.TextDelta("a") != events.ReasoningDelta("a")
    assert hash(events.TextDelta("a")) == hash(events.TextDelta("a"))
    assert repr(SSEEvent(data="d")) == "SSEEvent(event='message', data='d', id=None)"
    with pytest.raises(AttributeError):
        events.TextDelta("a").text = "b"
    retry = events.Retrying(1, 0.5, "HTTP 503")
    retry.delay = 1.0  # the non-frozen ones stay assignable, as plain dataclasses were
    assert retry == events.Retrying(1, 1.0, "HTTP 503")


def test_settings_records_behave_as_frozen_dataclasses():
    """config/record.py Record: what @dataclass(frozen=True) gave Settings, Preset, Field and ServerSpec."""
    from llmcli.config.mcp import ServerSpec
    from llmcli.config.record import Record
    from llmcli.config.settings import PRESETS, Preset, Settings

    s = Settings(base_url="http://x", retries=0)
    assert s.base_url == "http://x" and s.retries == 0 and s.model is None and s.tools == ()  # defaults
    assert s == Settings(base_url="http://x", retries=0) != Settings(base_url="http://y", retries=0)
    assert hash(s) == hash(Settings(base_url="http://x", retries=0))
    changed = s.with_changes(model="m")
    assert changed.model == "m" and s.model is None and changed.base_url == "http://x"
    with pytest.raises(AttributeError):
        s.model = "other"
    with pytest.raises(TypeError):
        Settings(no_such_field=1)
    with pytest.raises(TypeError):
        s.with_changes(no_such_field=1)
    assert Settings._FIELDS[:3] == ("provider", "base_url", "api_key") and len(Settings._FIELDS) > 40
    assert repr(Settings(api_key=None)).startswith("Settings(provider=None, base_url=None, api_key=None")
    # positional, in field order, as the presets are written
    assert PRESETS["openai"] == Preset("https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini")
    assert PRESETS["ollama"].needs_key is False and PRESETS["openai"].send_reasoning == "never"
    with pytest.raises(TypeError):
        Preset()  # base_url has no default
    with pytest.raises(TypeError):
        Preset("u", base_url="v")
    spec = ServerSpec("time", "stdio", command="uvx")
    assert spec.replace(name="t2") == ServerSpec("t2", "stdio", command="uvx") and spec.name == "time"

    class Point(Record):
        x: int
        y: int = 0
        _cache = None  # private names are not fields

    assert Point(1) == Point(1, 0) and Point._FIELDS == ("x", "y") and repr(Point(2, 3)) == "Point(x=2, y=3)"
    from llmcli.config.settings import Field, text

    assert Field("system").kind is text  # a function default stays the function, not a bound method


@pytest.mark.parametrize("command", ["ask", "config"])
def test_the_collector_is_off_for_start_up_only(server, command):
    """Start-up runs without the cyclic GC (no collection at all in a plain ask, issue 22); every
    command gets it back, ask once its transport is built, before the stream."""
    from localserver import Reply, text_stream

    server.chat(Reply(pieces=text_stream("hi")))
    code = ("import atexit, gc, sys\n"
            "count = [0]\n"
            "gc.callbacks.append(lambda phase, info: count.__setitem__(0, count[0] + (phase == 'start')))\n"
            "import llmcli.run.runner as runner\n"
            "drive = runner.RunWiring.drive\n"
            "def traced(self, *a, **k):\n"
            "    print('collections before the run:', count[0], 'enabled during it:', gc.isenabled(),"
            " file=sys.stderr)\n"
            "    return drive(self, *a, **k)\n"
            "runner.RunWiring.drive = traced\n"
            "atexit.register(lambda: print('collections:', count[0], 'enabled at exit:', gc.isenabled(),"
            " file=sys.stderr))\n"
            "sys.argv = ['llmcli'] + sys.argv[1:]\n"
            "from llmcli.__main__ import main\n"
            "count[0] = 0\n"
            "main()\n")
    args = (["ask", "--base-url", server.base_url, "--no-log", "q"] if command == "ask" else ["config", "show"])
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert "enabled at exit: True" in proc.stderr
    if command == "ask":
        assert proc.stdout == "hi\n", proc.stderr[-300:]
        assert "collections before the run: 0 enabled during it: True" in proc.stderr, proc.stderr[-300:]


TEARDOWN_PROBE = ("import atexit, os, sys\n"
                  "exit_now = os._exit\n"
                  "def traced(code):\n"
                  "    os.write(2, b'ended at once\\n')\n"
                  "    exit_now(code)\n"
                  "os._exit = traced  # the one way to end without the interpreter's teardown\n"
                  "atexit.register(lambda: sys.stderr.write('atexit ran\\n'))\n"
                  "sys.argv = ['llmcli'] + sys.argv[1:]\n"
                  "from llmcli.__main__ import main\n"
                  "main()\n")


@pytest.mark.parametrize("status", [200, 401])
def test_an_ask_ends_its_process_at_once_and_loses_nothing(server, status):
    """The console script's ask skips the interpreter's teardown (cli/app.py Ending, ~5 ms, bench case b)
    after flushing a long answer to the pipe and running the atexit callbacks; the exit code stays."""
    from localserver import Reply, text_stream

    words = [f"w{i} " for i in range(5000)]
    if status == 200:
        server.chat(Reply(pieces=text_stream(*words)))
    else:
        server.chat(Reply(status=401, pieces=[b'{"error": {"message": "bad key"}}'], content_type="application/json",
                          chunked=False))
    proc = subprocess.run([sys.executable, "-c", TEARDOWN_PROBE, "ask", "--base-url", server.base_url, "--retries", "0",
                           "q"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert "atexit ran\nended at once\n" in proc.stderr, proc.stderr[-500:]
    if status == 200:
        assert proc.returncode == 0 and proc.stdout == "".join(words) + "\n"
    else:
        assert proc.returncode == 4 and proc.stdout == "" and "llmcli: error:" in proc.stderr


def test_other_commands_end_as_python_does(tmp_path):
    env = dict(os.environ, LLMCLI_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", TEARDOWN_PROBE, "logs", "status"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, env=env)
    assert proc.returncode == 0 and "logging: on" in proc.stdout
    assert "atexit ran" in proc.stderr and "ended at once" not in proc.stderr
