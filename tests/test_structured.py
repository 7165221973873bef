"""--schema end to end: the request ladder against three kinds of endpoint, local validation, the
repair request, exit 7, the per-endpoint memory; and -x/--extract."""

import json
import os

import pytest

from endpoints import Endpoint
from localserver import Reply, text_stream
from llmcli.run import structured
from llmcli.run.extract import extract_code

CITY = "city, country"


def write_functions(server):
    import tempfile

    d = tempfile.mkdtemp()
    path = os.path.join(d, "tools.yaml")
    with open(path, "w") as f:
        f.write("- name: lookup\n  description: look something up\n  command: [echo, found]\n  stdin: none\n")
    return path


def formats(endpoint):
    return [(b.get("response_format") or {}).get("type") for b in endpoint.bodies]


def system_of(body):
    return next((m["content"] for m in body["messages"] if m["role"] == "system"), "")


def test_endpoint_that_accepts_json_schema(server, llmcli):
    ep = Endpoint().route(server)
    r = llmcli("--schema", CITY, "capital of France?")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout) == {"city": "Paris", "country": "France"}
    assert r.stdout == '{"city": "Paris", "country": "France"}\n'  # compact in a pipe
    (body,) = ep.bodies
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "output" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["required"] == ["city", "country"]
    assert "JSON Schema" not in system_of(body)  # the server enforces it; no need to tell the model


def test_endpoint_that_rejects_json_schema_falls_back_to_json_object_and_remembers(server, llmcli, isolated_env):
    ep = Endpoint(json_schema="reject").route(server)
    r = llmcli("--json", "--schema", CITY, "capital of France?")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["data"] == {"city": "Paris", "country": "France"}
    assert doc["validation"] == {"mode": "json_object", "attempts": 1, "errors": [], "rejected_modes": ["json_schema"]}
    assert formats(ep) == ["json_schema", "json_object"]
    assert '"required": ["city", "country"]' in system_of(ep.bodies[1])  # the schema is in the system prompt
    assert "rejected response_format json_schema" in r.stderr
    memory = json.loads((isolated_env / structured.MEMORY_FILE).read_text())
    assert list(memory.values()) == ["json_object"]

    ep.bodies.clear()
    r = llmcli("--json", "--schema", CITY, "capital of France?")
    assert r.exit_code == 0, r
    assert formats(ep) == ["json_object"]  # the failing attempt is skipped on the second run
    assert json.loads(r.stdout)["validation"]["rejected_modes"] == []
    assert r.stderr == ""


def test_llama_cpp_500_validation_error_is_a_rejection_and_not_retried(server, llmcli):
    ep = Endpoint(json_schema="reject500").route(server)
    r = llmcli("--schema", CITY, "capital?")
    assert r.exit_code == 0, r
    assert formats(ep) == ["json_schema", "json_object"]  # no retries of the 500
    assert ep.bodies[1]["response_format"]["schema"]["required"] == ["city", "country"]
    assert "retrying" not in r.stderr


def test_endpoint_that_rejects_both_goes_prompt_only(server, llmcli):
    ep = Endpoint(json_schema="reject", json_object="reject", repairs=True, prose='{"city": "Paris", "country": "France"}')
    ep.route(server)
    r = llmcli("--json", "--schema", CITY, "capital?")
    assert r.exit_code == 0, r
    assert formats(ep) == ["json_schema", "json_object", None]
    assert "response_format" not in ep.bodies[2]
    assert json.loads(r.stdout)["validation"]["mode"] == "prompt"


def test_endpoint_that_ignores_response_format_gets_one_repair_request(server, llmcli):
    ep = Endpoint(json_schema="ignore").route(server)
    r = llmcli("--json", "--schema", CITY, "capital of France?")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["data"] == {"city": "Paris", "country": "France"}
    assert doc["validation"]["attempts"] == 2 and doc["validation"]["errors"] == []
    assert doc["content"] == '{"city": "Paris", "country": "France"}'
    assert len(ep.bodies) == 2
    repair = ep.bodies[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "The capital is Paris, in France."}
    assert repair[-1]["role"] == "user" and "the answer is not JSON" in repair[-1]["content"]
    assert '"required": ["city", "country"]' in repair[-1]["content"]  # the model may never have seen it
    assert "does not match the schema" in r.stderr

    # json_schema was accepted and ignored: the next run starts with json_object + the schema in the prompt
    ep.bodies.clear()
    r = llmcli("--json", "--schema", CITY, "capital of France?")
    assert formats(ep) == ["json_object"]
    assert '"required": ["city", "country"]' in system_of(ep.bodies[0])


def test_with_tools_the_last_turn_is_the_answer(server, llmcli):
    ep = Endpoint(json_schema="honour", parallel=False).route(server)
    r = llmcli("--json", "--schema", CITY, "--functions", write_functions(server), "--yes", "x")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["data"] == {"city": "Paris", "country": "France"}
    assert len(doc["tool_calls"]) == 1
    assert all(b["response_format"]["type"] == "json_schema" for b in ep.bodies) and len(ep.bodies) == 2


def test_never_valid_exits_7_with_the_errors(server, llmcli):
    Endpoint(json_schema="ignore", repairs=False).route(server)
    r = llmcli("--schema", CITY, "capital?")
    assert r.exit_code == 7, r
    assert "llmcli: error: the answer does not match the schema, also after a repair request" in r.stderr
    assert "not JSON" in r.stderr
    assert r.stdout == "The capital is Paris, in France.\n"  # what arrived is not lost


def test_invalid_against_schema_lists_paths_and_exit_7_json(server, llmcli):
    Endpoint(json_schema="ignore", prose='{"city": 3}', repairs=False).route(server)
    r = llmcli("--json", "--schema", "city, country", "x")
    assert r.exit_code == 7
    doc = json.loads(r.stdout)
    assert doc["error"]["type"] == "validation"
    assert doc["data"] is None
    assert doc["validation"]["attempts"] == 2
    assert "$.city: 3 is not of type 'string'" in doc["validation"]["errors"]
    assert any("'country' is a required property" in e for e in doc["validation"]["errors"])


def test_schema_multi_wraps_items(server, llmcli):
    good = '{"items": [{"vendor": "ACME", "total": 12.5}, {"vendor": "Initech", "total": 3}]}'
    ep = Endpoint(good=good).route(server)
    r = llmcli("--schema-multi", "vendor, total float", "invoices")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["items"][1]["vendor"] == "Initech"
    schema = ep.bodies[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["items"]["items"]["properties"]["total"] == {"type": "number"}


def test_inline_json_schema_not_strict_when_open(server, llmcli):
    ep = Endpoint(good='{"n": 1}').route(server)
    r = llmcli("--schema", '{"type": "object", "properties": {"n": {"type": "integer"}}}', "x")
    assert r.exit_code == 0, r
    assert ep.bodies[0]["response_format"]["json_schema"]["strict"] is False


@pytest.mark.parametrize("bad, where", [
    ("name, age integr", "position 11"),
    ('{"type": "object", "properties": {"a": {"type": "strin"}}}', "$.properties.a.type"),
    ("{nope", "line 1 column 2"),
])
def test_invalid_schema_is_exit_2_with_position(server, llmcli, bad, where):
    r = llmcli("--schema", bad, "x")
    assert r.exit_code == 2, r
    assert where in r.stderr and r.stderr.startswith("llmcli: error:")
    assert server.requests == []


def test_stored_schema_by_name(server, llmcli, tmp_path, monkeypatch):
    config = tmp_path / "conf" / "config.yaml"
    (tmp_path / "conf" / "schemas").mkdir(parents=True)
    (tmp_path / "conf" / "schemas" / "place.json").write_text(json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}))
    monkeypatch.setenv("LLMCLI_CONFIG", str(config))
    ep = Endpoint(good='{"city": "Paris"}').route(server)
    r = llmcli("--schema", "place", "x")
    assert r.exit_code == 0, r
    assert ep.bodies[0]["response_format"]["json_schema"]["schema"]["required"] == ["city"]


def test_usage_errors(server, llmcli):
    assert llmcli("--schema-multi", "a", "--schema", "b", "x").exit_code == 2
    assert llmcli("--schema", "a", "-x", "x").exit_code == 2
    assert llmcli("--schema-multi", "a", "--extract-last", "x").exit_code == 2


def test_parse_answer_tolerates_fences_and_prose():
    assert structured.parse_answer('```json\n{"a": 1}\n```') == ({"a": 1}, None)
    assert structured.parse_answer('Here you go: {"a": [1]} hope it helps') == ({"a": [1]}, None)
    assert structured.parse_answer("nothing")[1].startswith("the answer is not JSON")


def test_rejection_detection():
    from llmcli.errors import HTTPError

    assert structured.rejects_response_format(HTTPError("HTTP 400", status=400, body=b'{"param":"response_format"}'))
    assert not structured.rejects_response_format(HTTPError("HTTP 400: bad model", status=400, body=b"{}"))
    assert not structured.rejects_response_format(HTTPError("response_format", status=500))
    # llama-cpp-python's server answers a pydantic validation error with 500
    llama = (b'{"error":{"message":"1 validation error: {\'type\': \'literal_error\', \'loc\': (\'body\', '
             b'\'response_format\', \'type\'), \'msg\': \"Input should be \'text\' or \'json_object\'\"}"}}')
    assert structured.rejects_response_format(HTTPError("HTTP 500", status=500, body=llama))


def test_memory_file_broken_is_ignored(tmp_path):
    (tmp_path / structured.MEMORY_FILE).write_text("{not json")
    mem = structured.ModeMemory(str(tmp_path))
    assert mem.get("x") is None
    mem.remember("x", "prompt")
    assert mem.get("x") == "prompt"


# --- -x / --extract ----------------------------------------------------------------------------

ANSWER = "Here:\n\n```sh\nls -la\n```\n\nand in Python:\n\n```python\nprint('hi')\n```\nDone."


def test_extract_first_last_and_lang():
    assert extract_code(ANSWER) == "ls -la\n"
    assert extract_code(ANSWER, last=True) == "print('hi')\n"
    assert extract_code(ANSWER, lang="py") == "print('hi')\n"
    assert extract_code(ANSWER, lang="bash") == "ls -la\n"
    assert extract_code("no code") is None
    assert extract_code("```\nunclosed\nstill") == "unclosed\nstill\n"
    assert extract_code("````md\n```py\nx\n```\n````") == "```py\nx\n```\n"


def test_extract_prints_only_the_block(server, llmcli):
    server.chat(Reply(pieces=text_stream(ANSWER[:20], ANSWER[20:])))
    r = llmcli("-x", "list files")
    assert r.exit_code == 0, r
    assert r.stdout == "ls -la\n"
    assert r.stderr == ""  # stderr is not a terminal: the full answer is not streamed there
    r = llmcli("--extract-last", "x")
    assert r.stdout == "print('hi')\n"
    r = llmcli("-x", "--lang", "py", "x")
    assert r.stdout == "print('hi')\n"


def test_extract_without_block_warns_and_prints_all(server, llmcli):
    server.chat(Reply(pieces=text_stream("just prose")))
    r = llmcli("-x", "x")
    assert r.exit_code == 0
    assert r.stdout == "just prose\n"
    assert "no fenced code block" in r.stderr


def test_extract_with_json_adds_extracted(server, llmcli):
    server.chat(Reply(pieces=text_stream(ANSWER)))
    r = llmcli("--json", "-x", "x")
    doc = json.loads(r.stdout)
    assert doc["content"] == ANSWER and doc["extracted"] == "ls -la\n"


def test_schema_on_a_terminal_streams_to_stderr_and_prints_pretty(server, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    import sys

    Endpoint().route(server)
    env = dict(os.environ, PYTHONPATH=os.getcwd(), NO_COLOR="1")
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "ask", "--base-url", server.base_url, "--schema", CITY,
                                           "capital?"], env=env, encoding="utf-8", timeout=30)
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    out = child.before.replace("\r\n", "\n")
    assert child.exitstatus == 0, out
    # the raw answer streamed (stderr, same terminal), then the document, pretty
    assert '{"city": "Paris", "country": "France"}\n{\n  "city": "Paris",\n  "country": "France"\n}\n' in out


def test_local_transport_gets_the_schema_in_the_form_llama_cpp_python_enforces():
    from llmcli.wire.local import request_arguments

    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = {"messages": [], "response_format": structured.response_format(schema, "json_schema")}
    assert request_arguments(body)["response_format"] == {"type": "json_object", "schema": schema}
    body = {"messages": [], "response_format": {"type": "json_object"}}
    assert request_arguments(body)["response_format"] == {"type": "json_object"}


def test_jsonl_done_event_carries_data_and_validation(server, llmcli):
    Endpoint().route(server)
    r = llmcli("--jsonl", "--schema", CITY, "x")
    assert r.exit_code == 0, r
    done = json.loads(r.stdout.splitlines()[-1])
    assert done["type"] == "done" and done["data"] == {"city": "Paris", "country": "France"}
    assert done["validation"]["mode"] == "json_schema"


def test_extract_on_a_terminal_streams_the_answer_then_prints_the_block(server):
    pexpect = pytest.importorskip("pexpect")
    import sys

    server.chat(Reply(pieces=text_stream("Try:\n", "```sh\nls -la\n```\n", "Bye.")))
    env = dict(os.environ, PYTHONPATH=os.getcwd(), NO_COLOR="1")
    child = pexpect.spawn(sys.executable, ["-m", "llmcli", "ask", "--base-url", server.base_url, "-x", "files?"],
                          env=env, encoding="utf-8", timeout=30)
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    out = child.before.replace("\r\n", "\n")
    assert child.exitstatus == 0, out
    assert out.endswith("Try:\n```sh\nls -la\n```\nBye.\nls -la\n"), out
