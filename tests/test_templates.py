"""Templates: -t NAME / -t FILE, variables, composition order, flag overrides, $input from stdin, the
built-ins, `llmcli templates …`, and bad templates."""

import json

import pytest

from conftest import invoke
from endpoints import Endpoint
from localserver import Reply, text_stream


@pytest.fixture
def tdir(tmp_path, monkeypatch):
    config = tmp_path / "conf" / "config.yaml"
    config.parent.mkdir()
    monkeypatch.setenv("LLMCLI_CONFIG", str(config))
    d = tmp_path / "conf" / "templates"
    d.mkdir()
    return d


def answer(server):
    server.chat(Reply(pieces=text_stream("ok")))


def sent(server, i=-1):
    return server.requests[i].json


def test_variables_and_stdin_as_input(server, llmcli, tdir):
    (tdir / "tr.yaml").write_text("system: You translate into $lang.\nprompt: 'Translate: $input'\n"
                                  "model: m-from-template\noptions: {temperature: 0.3, max_tokens: 9}\n")
    answer(server)
    r = llmcli("-t", "tr", "-v", "lang", "French", input="good morning\n")
    assert r.exit_code == 0, r
    body = sent(server)
    assert body["messages"] == [{"role": "system", "content": "You translate into French."},
                                {"role": "user", "content": "Translate: good morning"}]
    assert body["model"] == "m-from-template" and body["temperature"] == 0.3 and body["max_tokens"] == 9


def test_flags_override_the_template(server, llmcli, tdir):
    (tdir / "tr.yaml").write_text("system: S\nprompt: 'P $input'\nmodel: tm\noptions: {temperature: 0.3}\n")
    answer(server)
    r = llmcli("-t", "tr", "-m", "flag-model", "-s", "flag system", "-o", "temperature", "1", "words")
    assert r.exit_code == 0, r
    body = sent(server)
    assert body["model"] == "flag-model" and body["temperature"] == 1
    assert body["messages"][0] == {"role": "system", "content": "flag system"}
    assert body["messages"][1]["content"] == "P words"


def test_composition_left_to_right(server, llmcli, tdir):
    (tdir / "a.yaml").write_text("system: from a\nprompt: 'A: $input'\noptions: {temperature: 0.1, top_p: 0.5}\n")
    (tdir / "b.md").write_text("---\nsystem: from b\noptions: {temperature: 0.9}\n---\nB body $input\n")
    answer(server)
    assert llmcli("-t", "a", "-t", "b", "x").exit_code == 0
    body = sent(server)
    assert body["messages"][0]["content"] == "from b"
    assert body["messages"][1]["content"] == "B body x"  # b's body is its prompt
    assert body["temperature"] == 0.9 and body["top_p"] == 0.5
    assert llmcli("-t", "b", "-t", "a", "x").exit_code == 0
    body = sent(server)
    assert body["messages"][0]["content"] == "from a" and body["temperature"] == 0.1


def test_prompt_without_input_gets_it_appended_and_path_form(server, llmcli, tmp_path):
    path = tmp_path / "ask.yaml"
    path.write_text("prompt: Be brief.\n")
    answer(server)
    assert llmcli("-t", str(path), "what", "is", "DNS").exit_code == 0
    assert sent(server)["messages"][-1]["content"] == "Be brief.\n\nwhat is DNS"


def test_missing_variable_names_it(server, llmcli, tdir):
    (tdir / "v.yaml").write_text("prompt: 'Hello $who and $input'\n")
    r = llmcli("-t", "v", "x")
    assert r.exit_code == 2
    assert "variable $who is not set (use -v who VALUE)" in r.stderr
    r = llmcli("-t", "v", "-v", "who", "you", "--no-stdin")
    assert r.exit_code == 2 and "$input is not set" in r.stderr
    assert server.requests == []


def test_builtin_and_user_override(server, llmcli, tdir):
    answer(server)
    assert llmcli("-t", "summarize", input="long text").exit_code == 0
    body = sent(server)
    assert "at most 5 bullet points" in body["messages"][1]["content"]
    assert body["messages"][1]["content"].rstrip().endswith("long text")
    assert llmcli("-t", "summarize", "-v", "points", "2", input="t").exit_code == 0
    assert "at most 2 bullet" in sent(server)["messages"][1]["content"]
    (tdir / "summarize.yaml").write_text("prompt: 'mine: $input'\n")
    assert llmcli("-t", "summarize", input="t").exit_code == 0
    assert sent(server)["messages"][-1]["content"] == "mine: t"


def test_unknown_key_warns_invalid_yaml_exit_3(server, llmcli, tdir):
    (tdir / "odd.yaml").write_text("prompt: hi\ntemprature: 1\n")
    answer(server)
    r = llmcli("-t", "odd", "--no-stdin")
    assert r.exit_code == 0
    assert "unknown template key 'temprature'" in r.stderr
    (tdir / "bad.yaml").write_text("system: ok\nprompt: [unclosed\nmodel: x\n")
    r = llmcli("-t", "bad", "x")
    assert r.exit_code == 3
    assert f"{tdir / 'bad.yaml'}:" in r.stderr and "invalid YAML" in r.stderr
    (tdir / "badmd.md").write_text("---\nsystem: ok\n  bad: indent\n---\nbody\n")
    r = llmcli("-t", "badmd", "x")
    assert r.exit_code == 3 and f"{tdir / 'badmd.md'}:3" in r.stderr
    r = llmcli("-t", "nosuch", "x")
    assert r.exit_code == 3 and "no template named 'nosuch'" in r.stderr


def test_template_schema_and_extract(server, llmcli, tdir):
    (tdir / "place.yaml").write_text("schema: 'city, country'\nprompt: 'Where? $input'\n")
    ep = Endpoint().route(server)
    r = llmcli("-t", "place", "Eiffel tower")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout) == {"city": "Paris", "country": "France"}
    assert ep.bodies[0]["response_format"]["type"] == "json_schema"
    (tdir / "code.yaml").write_text("extract: py\nprompt: $input\n")
    server.chat(Reply(pieces=text_stream("```sh\nls\n```\n```python\nx = 1\n```\n")))
    r = llmcli("-t", "code", "x")
    assert r.stdout == "x = 1\n"


def test_save_template_then_use(server, llmcli, tdir):
    r = llmcli("--save-template", "mine", "-s", "You are terse.", "-m", "mm", "-o", "temperature", "0",
               "--schema", "name, age int")
    assert r.exit_code == 0, r
    assert r.stdout.strip() == str(tdir / "mine.yaml")
    assert server.requests == []
    Endpoint(good='{"name": "Ada", "age": 36}').route(server)
    r = llmcli("-t", "mine", "Ada Lovelace")
    assert r.exit_code == 0, r
    body = sent(server)
    assert body["model"] == "mm" and body["temperature"] == 0
    assert body["messages"][0]["content"] == "You are terse."
    assert json.loads(r.stdout) == {"name": "Ada", "age": 36}


def test_templates_commands(tdir):
    (tdir / "mine.yaml").write_text("description: My own\nprompt: $input\n")
    r = invoke("templates", "list")
    assert r.exit_code == 0
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert names == ["commit-message", "explain", "mine", "summarize"]
    assert "My own  (user)" in r.stdout
    r = invoke("templates", "show", "explain")
    assert r.exit_code == 0 and "step by step" in r.stdout
    r = invoke("templates", "show", "mine")
    assert r.stdout == "description: My own\nprompt: $input\n"
    assert invoke("templates", "path").stdout.strip() == str(tdir)
    assert invoke("templates", "show", "nosuch").exit_code == 3
    data = json.loads(invoke("templates", "list", "--json").stdout)
    assert {"name": "mine", "source": str(tdir / "mine.yaml"), "description": "My own"} in data


def test_templates_edit_copies_the_builtin(tdir, monkeypatch, tmp_path):
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\necho '# edited' >> \"$1\"\n")
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(editor))
    r = invoke("templates", "edit", "explain")
    assert r.exit_code == 0, r
    text = (tdir / "explain.yaml").read_text()
    assert "step by step" in text and text.endswith("# edited\n")
