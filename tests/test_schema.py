"""The --schema DSL and schema loading (issue 16). The request ladder is not wired yet."""

import json

import pytest

from llmcli.errors import UsageError
from llmcli.prompt.schema_dsl import load_schema, parse_dsl


def test_dsl_types_descriptions_lists_and_nesting():
    s = parse_dsl("name, age int, tags list[str], bio: a one-line summary, addr {street, zip int}")
    props = s["properties"]
    assert s["required"] == ["name", "age", "tags", "bio", "addr"]
    assert props["name"] == {"type": "string"}
    assert props["age"] == {"type": "integer"}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["bio"] == {"type": "string", "description": "a one-line summary"}
    assert props["addr"]["properties"]["zip"] == {"type": "integer"}


@pytest.mark.parametrize("bad", ["name, age integr", "name,, x", "a {b", "list[", "a list[int"])
def test_dsl_syntax_error_names_the_position(bad):
    with pytest.raises(UsageError, match="position"):
        parse_dsl(bad)


def test_inline_json_file_and_multi(tmp_path):
    assert load_schema('{"type": "object"}') == {"type": "object"}
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"type": "object", "properties": {"x": {"type": "number"}}}))
    assert load_schema(str(p))["properties"]["x"] == {"type": "number"}
    multi = load_schema("vendor, total float", multi=True)
    assert multi["properties"]["items"]["items"]["properties"]["total"] == {"type": "number"}
    with pytest.raises(UsageError, match="line 1"):
        load_schema("{nope")
