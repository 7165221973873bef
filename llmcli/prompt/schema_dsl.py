"""The concise schema DSL for `--schema`, parsed into a JSON Schema object.

    'name, age int, tags list[str], bio: a one-line summary, address {street, city}'

Fields are separated by commas (or newlines); each is `NAME [TYPE][: description]`. TYPE is one of
str (default), int, float, bool, any, list[TYPE], or a nested object `{...}`. Every field is required.
A syntax error is a UsageError naming the position (exit 2).
"""

import json
import os
import re

from ..errors import UsageError

_SCALARS = {"str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
            "number": "number", "bool": "boolean", "boolean": "boolean"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Parser:
    def __init__(self, text):
        self.text = text
        self.pos = 0

    def fail(self, what):
        raise UsageError(f"schema DSL: {what} at position {self.pos + 1} of {self.text!r}")

    def skip(self):
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self):
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def name(self):
        self.skip()
        m = _NAME.match(self.text, self.pos)
        if not m:
            self.fail("expected a field name")
        self.pos = m.end()
        return m.group(0)

    def type_(self):
        if self.peek() == "{":
            self.pos += 1
            obj = self.fields(closing="}")
            if self.peek() != "}":
                self.fail("expected '}'")
            self.pos += 1
            return obj
        self.skip()
        start = self.pos
        word = self.name()
        if word == "list":
            if self.peek() != "[":
                self.fail("expected '[' after list")
            self.pos += 1
            items = self.type_()
            if self.peek() != "]":
                self.fail("expected ']'")
            self.pos += 1
            return {"type": "array", "items": items}
        if word == "any":
            return {}
        if word not in _SCALARS:
            self.pos = start  # point at the word, not past it
            self.fail(f"unknown type {word!r} (str, int, float, bool, any, list[T], {{...}})")
        return {"type": _SCALARS[word]}

    def fields(self, closing=""):
        props = {}
        while True:
            if self.peek() in ("", closing) and props:
                break
            field = self.name()
            nxt = self.peek()
            schema = {"type": "string"}
            if nxt not in (",", "\n", ":", "", closing):
                schema = self.type_()
                nxt = self.peek()
            if nxt == ":":
                self.pos += 1
                end = self.pos
                while end < len(self.text) and self.text[end] not in ",\n" + closing:
                    end += 1
                desc = self.text[self.pos:end].strip()
                if desc:
                    schema = dict(schema, description=desc)
                self.pos = end
                nxt = self.peek()
            if field in props:
                self.fail(f"duplicate field {field!r}")
            props[field] = schema
            if nxt in (",", "\n"):
                self.pos += 1
                continue
            if nxt in ("", closing):
                break
            self.fail(f"unexpected {nxt!r}")
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def parse_dsl(text: str) -> dict:
    """The JSON Schema for a DSL string, or UsageError with the position of the first error."""
    p = _Parser(text.strip())
    if not p.text:
        raise UsageError("schema DSL: empty schema")
    schema = p.fields()
    if p.pos < len(p.text):
        p.fail(f"unexpected {p.text[p.pos]!r}")
    return schema


def load_schema(value: str, multi: bool = False) -> dict:
    """--schema's value: inline JSON, a JSON file path, or the DSL; --schema-multi wraps it in {items: [...]}."""
    text = value.strip()
    if text.startswith("{"):
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"invalid JSON schema: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    elif os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            raw = f.read()
        try:
            schema = json.loads(raw)
        except ValueError as exc:
            raise UsageError(f"{value}:{exc.lineno}:{exc.colno}: invalid JSON schema: {exc.msg}") from None
    else:
        schema = parse_dsl(text)
    if not isinstance(schema, dict):
        raise UsageError("invalid JSON schema: not an object")
    if multi:
        schema = {"type": "object", "properties": {"items": {"type": "array", "items": schema}},
                  "required": ["items"], "additionalProperties": False}
    return schema
