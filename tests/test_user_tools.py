"""Python tools (`--functions FILE.py`, `tools.user: [{python: FILE}]`): schema from the signature and
docstring, run in-process through the real tool loop, listed by `llmcli tools` (issue 15)."""

import json
import textwrap

import pytest
from conftest import invoke
from localserver import Reply, text_stream
from test_tool_loop import tool_call_stream

from llmcli.errors import ConfigError, ToolError
from llmcli.tools.pyfunc import load_python_tools, parse_docstring, type_schema

TOOLS_PY = '''
import os
from os.path import join  # imported: not a tool
from typing import List, Literal, Optional


def word_count(text: str, unique: bool = False) -> int:
    """Count the words in a text.

    Args:
        text: the text to count
        unique: count each distinct
            word only once
    """
    words = text.split()
    return len(set(words)) if unique else len(words)


def scale(values: List[float], factor: float = 2.0, unit: Optional[str] = None,
          mode: Literal["up", "down"] = "up"):
    "Scale numbers."
    return {"values": [v * factor for v in values], "unit": unit, "mode": mode}


def boom(reason: str):
    """Always fails."""
    raise ValueError("no such thing: " + reason)


def chatty(x: int):
    print("working on", x)
    return x + 1


def _private():
    return 1
'''


@pytest.fixture
def tools_py(tmp_path):
    path = tmp_path / "tools.py"
    path.write_text(TOOLS_PY)
    return str(path)


def by_name(path):
    return {t.name: t for t in load_python_tools(path)}


def test_schema_from_signature_and_docstring(tools_py):
    tools = by_name(tools_py)
    assert sorted(tools) == ["boom", "chatty", "scale", "word_count"]  # not join, not _private
    wc = tools["word_count"].schema()["function"]
    assert wc["description"] == "Count the words in a text."
    assert wc["parameters"] == {
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "the text to count"},
            "unique": {"type": "boolean", "default": False, "description": "count each distinct word only once"},
        },
        "required": ["text"],
    }
    scale = tools["scale"].parameters
    assert scale["required"] == ["values"]
    assert scale["properties"]["values"] == {"type": "array", "items": {"type": "number"}}
    assert scale["properties"]["unit"] == {"type": "string", "default": None}
    assert scale["properties"]["mode"] == {"enum": ["up", "down"], "type": "string", "default": "up"}
    assert tools["chatty"].description == "The Python function chatty()"
    assert tools["word_count"].origin == "user"


def test_type_schema_cases():
    from typing import Any, Dict, Union

    assert type_schema(int) == {"type": "integer"}
    assert type_schema(dict) == {"type": "object"}
    assert type_schema(Dict[str, int]) == {"type": "object"}
    assert type_schema(list) == {"type": "array"}
    assert type_schema(Any) == {}
    assert type_schema(Union[int, str]) == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert type_schema(int | None) == {"type": "integer"}


def test_docstring_without_args_section():
    assert parse_docstring("Line one.\n\nMore text.") == ("Line one.\n\nMore text.", {})
    desc, args = parse_docstring("Do it.\n\nArgs:\n    a (int): first\n    b: second\n\nReturns:\n    x")
    assert desc == "Do it." and args == {"a": "first", "b": "second"}


def test_validate_and_invoke(tools_py):
    tools = by_name(tools_py)
    wc = tools["word_count"]
    assert wc.run({"text": "a b a"}, None) == "3"
    assert wc.run({"text": "a b a", "unique": True}, None) == "2"
    assert wc.run({"text": ""}, None) == "0"  # "" is data, not a missing value
    with pytest.raises(ToolError, match="missing required argument 'text'"):
        wc.run({}, None)
    with pytest.raises(ToolError, match="unique must be boolean, got a string"):
        wc.run({"text": "x", "unique": "yes"}, None)
    with pytest.raises(ToolError, match="unexpected argument 'other'"):
        wc.run({"text": "x", "other": 1}, None)
    assert json.loads(tools["scale"].run({"values": [1, 2.5]}, None)) == {"values": [2.0, 5.0], "unit": None,
                                                                          "mode": "up"}
    with pytest.raises(ToolError, match="mode must be one of"):
        tools["scale"].run({"values": [1], "mode": "sideways"}, None)
    with pytest.raises(ToolError, match="boom raised ValueError: no such thing: x"):
        tools["boom"].run({"reason": "x"}, None)
    assert tools["chatty"].run({"x": "4"}, None) == "working on 4\n5"  # "4" coerced to an integer


@pytest.mark.parametrize("source, message", [
    ("def f(:\n    pass\n", r"bad\.py:1: syntax error"),
    ("x = 1\n\nraise RuntimeError('nope')\n", r"bad\.py:3: loading it failed: RuntimeError: nope"),
    ("import os\n", "defines no public functions"),
])
def test_bad_files_are_config_errors(tmp_path, source, message):
    path = tmp_path / "bad.py"
    path.write_text(source)
    with pytest.raises(ConfigError, match=message):
        load_python_tools(str(path))


def test_syntax_error_exits_3_with_file_and_line(server, tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("def ok():\n    return 1\n\ndef broken(:\n")
    r = invoke("ask", "--base-url", server.base_url, "--functions", str(path), "hi")
    assert r.exit_code == 3, r
    assert f"{path}:4: syntax error" in r.stderr
    assert "Traceback" not in r.stderr
    assert not server.requests  # nothing was sent


def _ask_with_calls(server, calls, *flags):
    server.chat([Reply(pieces=tool_call_stream(calls, split=1)), Reply(pieces=text_stream("done"))])
    r = invoke("ask", "--base-url", server.base_url, "--json", *flags, "go")
    return r, json.loads(r.stdout)


def test_python_tools_in_the_loop(server, tools_py):
    calls = [("c1", "word_count", json.dumps({"text": "one two three"})),
             ("c2", "boom", json.dumps({"reason": "why"})),
             ("c3", "chatty", json.dumps({"x": 1}))]
    r, doc = _ask_with_calls(server, calls, "--functions", tools_py, "--allow-tool", "*")
    assert r.exit_code == 0, r
    assert doc["content"] == "done"
    results = {c["name"]: c for c in doc["tool_calls"]}
    assert results["word_count"]["output"] == "3"
    assert results["boom"]["output"] is None
    assert results["boom"]["error"] == "boom raised ValueError: no such thing: why"
    assert results["chatty"]["output"] == "working on 1\n2"
    sent = server.requests[0].json["tools"]
    assert [t["function"]["name"] for t in sent] == ["word_count", "scale", "boom", "chatty"]
    follow_up = server.requests[1].json["messages"]
    assert [m["content"] for m in follow_up if m["role"] == "tool"] == [
        "3", "error: boom raised ValueError: no such thing: why", "working on 1\n2"]


def test_python_tools_ask_by_default(server, tools_py):
    r, doc = _ask_with_calls(server, [("c1", "word_count", '{"text": "a"}')], "--functions", tools_py)
    assert r.exit_code == 0, r
    assert doc["tool_calls"][0]["error"] == "refused by user"
    assert "--allow-tool word_count" in r.stderr


def test_python_tools_from_config(server, tmp_path, tools_py):
    config = tmp_path / "config.yaml"
    config.write_text(f"tools:\n  user:\n    - python: {tools_py}\n  approval: {{word_count: allow}}\n")
    r, doc = _ask_with_calls(server, [("c1", "word_count", '{"text": "a b"}')], "--config", str(config))
    assert r.exit_code == 0, r
    assert doc["tool_calls"][0]["output"] == "2"


def test_listed_by_llmcli_tools(tools_py, tmp_path):
    r = invoke("tools", "--functions", tools_py)
    assert r.exit_code == 0, r
    assert "web_search:" in r.stdout
    assert "word_count: Count the words in a text.  [user]" in r.stdout
    r = invoke("tools", "--json", "--functions", tools_py)
    names = [t["function"]["name"] for t in json.loads(r.stdout)]
    assert names == ["web_search", "web_fetch", "word_count", "scale", "boom", "chatty"]
    yaml_tools = tmp_path / "cmd.yaml"
    yaml_tools.write_text("- name: shout\n  command: [echo, '{text}']\n"
                          "  parameters: {type: object, properties: {text: {type: string}}}\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"tools:\n  user:\n    - python: {tools_py}\n")
    r = invoke("tools", "--json", "--config", str(config), "--functions", str(yaml_tools))
    names = [t["function"]["name"] for t in json.loads(r.stdout)]
    assert names[-1] == "shout" and "word_count" in names


def test_readme_style_example(tmp_path, server):
    path = tmp_path / "mytools.py"
    path.write_text(textwrap.dedent('''
        def add(a: int, b: int = 1) -> int:
            """Add two integers."""
            return a + b
    '''))
    r, doc = _ask_with_calls(server, [("c1", "add", '{"a": 2}')], "--functions", str(path), "--yes")
    assert doc["tool_calls"][0]["output"] == "3"


def test_print_from_other_threads_is_not_captured(tmp_path, capsys):
    import threading

    path = tmp_path / "slow.py"
    path.write_text("import threading\nstarted = threading.Event()\ngo = threading.Event()\n"
                    "def slow() -> str:\n    print('inside')\n    started.set()\n    go.wait(10)\n    return 'ok'\n")
    (tool,) = load_python_tools(str(path))
    ns = tool.function.__globals__
    out = {}
    worker = threading.Thread(target=lambda: out.update(result=tool.run({}, None)))
    worker.start()
    assert ns["started"].wait(10)
    print("from the main thread")  # while the tool runs: must reach stdout, not the tool's result
    ns["go"].set()
    worker.join(10)
    assert out["result"] == "inside\nok"
    assert "from the main thread" in capsys.readouterr().out
    import sys
    assert type(sys.stdout).__name__ != "_StdoutRouter"  # restored


def test_config_python_path_is_relative_to_the_config_file(tmp_path, monkeypatch):
    confdir = tmp_path / "conf"
    confdir.mkdir()
    (confdir / "mine.py").write_text('def hello() -> str:\n    """Say hello."""\n    return "hello"\n')
    (confdir / "config.yaml").write_text("tools:\n  user:\n    python: [mine.py]\n")
    monkeypatch.chdir(tmp_path)  # not the config's directory
    r = invoke("tools", "--json", "--config", str(confdir / "config.yaml"))
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)[-1]["function"]["name"] == "hello"


def test_file_runs_once_per_process_until_it_changes(tmp_path):
    import os

    path = tmp_path / "counter.py"
    path.write_text("calls = []\ndef count() -> int:\n    calls.append(1)\n    return len(calls)\n")
    (first,) = load_python_tools(str(path))
    assert first.run({}, None) == "1"
    (again,) = load_python_tools(str(path))  # a chat session's next message: state is kept
    assert again.run({}, None) == "2"
    path.write_text("calls = [1, 1, 1]\ndef count() -> int:\n    calls.append(1)\n    return len(calls) * 10\n")
    os.utime(path, ns=(1, 10**18))  # a different mtime even on coarse clocks
    (changed,) = load_python_tools(str(path))
    assert changed.run({}, None) == "40"
