"""`ask`'s options for output a script can trust (issue 16): --schema/--schema-multi, -x/--extract.

`scripting_options` adds the options to `ask` with one decorator; `plan_from_params` turns them into a
`ScriptPlan`, which `run_ask` asks for a renderer and lets wrap the run. The logic lives below:
llmcli/run/structured.py (the request ladder and validation) and llmcli/run/extract.py.
"""

import os
import re

import click


def scripting_options(f):
    options = [
        click.option("--schema", "schema", metavar="SCHEMA",
                     help="Answer with JSON valid against SCHEMA: inline JSON Schema, a .json file, a name "
                          "stored as schemas/NAME.json beside the config, or the DSL "
                          "'name, age int, tags list[str], bio: a summary, address {street, city}'. "
                          "Validated locally; one repair request; exit 7 if still invalid."),
        click.option("--schema-multi", "schema_multi", is_flag=True,
                     help="Wrap --schema as {\"items\": [...]} to get a list of such objects."),
        click.option("-x", "--extract", "extract", is_flag=True,
                     help="Print only the first fenced code block of the answer (the whole answer, with a "
                          "warning, when there is none); on a terminal the answer streams to stderr."),
        click.option("--extract-last", "extract_last", is_flag=True, help="Like -x, but the last code block."),
        click.option("--lang", "extract_lang", metavar="LANG",
                     help="With -x/--extract-last: only blocks in LANG (py, sh, js… and their long names)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def resolve_schema_value(value: str, env=os.environ) -> str:
    """A bare NAME is a stored schema when <config dir>/schemas/NAME.json exists (else it is the DSL)."""
    from ..config.settings import config_path

    if re.fullmatch(r"[A-Za-z0-9_.-]+", value) and not value.endswith(".json"):
        stored = os.path.join(os.path.dirname(config_path(env)), "schemas", value + ".json")
        if os.path.isfile(stored):
            return stored
    return value


def load_checked_schema(value, multi: bool = False) -> dict:
    """--schema's value as a checked JSON Schema; a value that is not one is exit 2 with the position."""
    from ..errors import ConfigError
    from ..prompt.schema_dsl import load_schema

    if isinstance(value, dict):  # from a template
        schema = value
        if multi:
            schema = load_schema("{}", multi=True)
            schema["properties"]["items"]["items"] = value
    else:
        schema = load_schema(resolve_schema_value(str(value)), multi=multi)
    try:
        from ..run.structured import check_schema
    except ImportError:  # pragma: no cover - jsonschema is a dependency of the schema extra
        raise ConfigError("--schema needs jsonschema: pip install 'llmcli[schema]'") from None
    check_schema(schema)
    return schema


class ScriptPlan:
    """What --schema and -x change about one ask run: the renderer, and a wrapper around the ChatRun."""

    def __init__(self, schema=None, extract=None, extract_last=False, lang=None):
        self.schema = schema
        self.extract = bool(extract or extract_last or lang)
        self.extract_last = extract_last
        self.lang = lang

    @property
    def active(self) -> bool:
        return self.schema is not None or self.extract

    def wrap(self, run):
        if self.schema is None:
            return run
        from ..run.structured import ModeMemory, StructuredRun

        return StructuredRun(run, self.schema, ModeMemory(run.settings.home))

    def _extracted(self, run, diag=None):
        from ..run.extract import extract_code

        code = extract_code(run.content, last=self.extract_last, lang=self.lang)
        if code is None and diag is not None:
            which = f"{self.lang} code block" if self.lang else "fenced code block"
            diag.warning(f"the answer has no {which}; printing the whole answer")
        return code

    def renderer(self, renderer, mode, out, err, out_tty, err_tty, color, **text_kwargs):
        """The renderer for this plan (`renderer` itself when nothing changes)."""
        from ..output.render import FinalTextRenderer, json_text

        if mode != "text":
            if self.extract:
                renderer.extras = lambda run: {"extracted": self._extracted(run)}
            return renderer
        if self.schema is not None:
            def final(run, diag):
                return json_text(run.data, indent=2 if out_tty else None)
        else:
            def final(run, diag):
                code = self._extracted(run, diag)
                return run.content if code is None else code
        text_kwargs.pop("render_markdown", None)
        return FinalTextRenderer(out, err, out_tty, err_tty, color, final, **text_kwargs)


def plan_from_params(params: dict) -> ScriptPlan:
    """Pop this module's options from `ask`'s params (so they reach nothing else) into a plan."""
    from ..errors import UsageError

    schema_value = params.pop("schema", None)
    multi = params.pop("schema_multi", False)
    extract, last, lang = params.pop("extract", False), params.pop("extract_last", False), params.pop("extract_lang", None)
    if multi and schema_value is None:
        raise UsageError("--schema-multi needs --schema")
    if schema_value is not None and (extract or last or lang):
        raise UsageError("--schema and -x/--extract cannot be used together")
    schema = load_checked_schema(schema_value, multi) if schema_value is not None else None
    return ScriptPlan(schema, extract, last, lang)
