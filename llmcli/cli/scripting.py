"""`ask`'s options for output a script can trust (issue 16): --schema/--schema-multi, -x/--extract,
and the template options -t/-v/--save-template (`template_options`, `apply_templates`).

`scripting_options` adds the options to `ask` with one decorator; `plan_from_params` turns them into a
`ScriptPlan`, which `run_ask` asks for a renderer and lets wrap the run. The logic lives below:
llmcli/run/structured.py (the request ladder and validation) and llmcli/run/extract.py.
"""

import json
import os
import re
import sys

import click


def scripting_options(f):
    options = [
        click.option("--schema", "schema", metavar="SCHEMA",
                     help="Answer with JSON valid against SCHEMA: inline JSON Schema, a .json file, a name "
                          "stored as schemas/NAME.json beside the config, or the DSL "
                          "'name, age int, tags list[str], bio: a summary, address {street, city}'. "
                          "Validated locally; one repair request; exit 7 if still invalid."),
        click.option("--schema-multi", "schema_multi", metavar="SCHEMA",
                     help="Like --schema, for a list of such objects: the answer is {\"items\": [...]}."),
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
        import jsonschema  # noqa: F401 (the schema extra; imported here only when --schema is used)
    except ImportError:
        raise ConfigError("--schema validates answers with jsonschema: pip install 'llmcli[schema]'") from None
    from ..run.structured import check_schema

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
    multi_value = params.pop("schema_multi", None)
    extract, last, lang = params.pop("extract", False), params.pop("extract_last", False), params.pop("extract_lang", None)
    if schema_value is not None and multi_value is not None:
        raise UsageError("--schema and --schema-multi cannot be used together")
    multi = multi_value is not None
    if multi:
        schema_value = multi_value
    if schema_value is not None and (extract or last or lang):
        raise UsageError("--schema/--schema-multi and -x/--extract cannot be used together")
    schema = load_checked_schema(schema_value, multi) if schema_value is not None else None
    return ScriptPlan(schema, extract, last, lang)


def template_options(f):
    options = [
        click.option("-t", "--template", "templates", multiple=True, metavar="NAME|FILE",
                     help="Use a template (a name from 'llmcli templates list', or a .yaml/.md file). Repeatable: "
                          "later templates override earlier ones; flags override all."),
        click.option("-v", "--var", "variables", type=(str, str), multiple=True, metavar="NAME VALUE",
                     help="Fill $NAME in the template. Repeatable."),
        click.option("--save-template", "save_template", metavar="NAME",
                     help="Save the current flags (and prompt words) as template NAME, then exit."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def templates_directory(config_flag=None) -> str:
    from ..config.settings import config_path
    from ..prompt.templates import templates_dir

    return templates_dir(config_path(os.environ, config_flag))


def _warn(message: str) -> None:
    click.echo(f"llmcli: warning: {message}", err=True)


def _read_input(prompt_words, files, no_stdin) -> str:
    """$input: piped stdin (unless -f - takes it, or --no-stdin), then the prompt words."""
    from ..prompt.history import decode_input
    from ..run.runner import isatty

    parts = []
    stdin = sys.stdin
    if "-" not in files and not no_stdin and stdin is not None and not isatty(stdin):
        buf = getattr(stdin, "buffer", None)
        data = buf.read() if buf is not None else stdin.read().encode("utf-8")
        warnings = []
        text = decode_input(data, "stdin", warnings)
        for w in warnings:
            _warn(w)
        if text.strip():
            parts.append(text.rstrip("\n"))
    if prompt_words:
        parts.append(" ".join(prompt_words))
    return "\n\n".join(parts) if parts else None


def apply_templates(params: dict, prompt_words, files, no_stdin):
    """Fold -t templates into ask's params (flags win) and return (prompt words, no_stdin).

    With --save-template, write the template and exit instead.
    """
    names = params.pop("templates", ()) or ()
    variables = dict(params.pop("variables", ()) or ())
    save_name = params.pop("save_template", None)
    if not names and not save_name:
        return prompt_words, no_stdin  # nothing to fold in: the template machinery is not even imported
    from ..prompt.templates import compose, load_template, render

    directory = templates_directory(params.get("config"))
    loaded = [load_template(name, directory) for name in names]
    for t in loaded:
        for w in t.warnings:
            _warn(w)
    composed = compose(loaded)
    if save_name:
        _save(save_name, composed, params, prompt_words, directory)
        raise click.exceptions.Exit(0)
    if not loaded:
        return prompt_words, no_stdin
    for key in ("model", "provider"):
        if params.get(key) is None and composed.get(key):
            params[key] = str(composed[key])
    options = tuple((str(k), json.dumps(v)) for k, v in (composed.get("options") or {}).items())
    params["options"] = options + tuple(params.get("options") or ())  # later pairs (the flags) win
    if composed.get("tools") and not params.get("no_tools"):
        params["tools"] = tuple(dict.fromkeys(list(composed["tools"]) + list(params.get("tools") or ())))
    flag_schema = params.get("schema") is not None or params.get("schema_multi") is not None
    flag_extract = bool(params.get("extract") or params.get("extract_last") or params.get("extract_lang"))
    if not flag_schema and not flag_extract and composed.get("schema") is not None:  # a -x flag wins too
        params["schema_multi" if composed.get("schema_multi") else "schema"] = composed["schema"]
    extract = composed.get("extract")
    has_schema = params.get("schema") is not None or params.get("schema_multi") is not None
    if extract and not has_schema and not (params.get("extract") or params.get("extract_last")):
        if extract == "last":
            params["extract_last"] = True
        else:
            params["extract"] = True
            if isinstance(extract, str) and extract not in ("first", "true"):
                params["extract_lang"] = params.get("extract_lang") or extract
    what = "template " + " + ".join(t.name for t in loaded)
    user_input = _read_input(prompt_words, files, no_stdin) if composed.get("prompt") is not None else None
    system, prompt = render(composed, variables, user_input, what)
    if params.get("system") is None and system is not None:
        params["system"] = system
    if prompt is None:
        return prompt_words, no_stdin
    return (prompt,), True


def _save(name, composed, params, prompt_words, directory):
    from ..config.settings import parse_option_value
    from ..errors import UsageError
    from ..prompt.templates import dump_template, looks_like_path

    if looks_like_path(name) or not name.strip() or name.startswith("."):
        raise UsageError(f"--save-template takes a name, not a path: {name!r}")
    data = dict(composed)
    for key in ("system", "model", "provider"):
        if params.get(key) is not None:
            data[key] = params[key]
    if params.get("options"):
        data["options"] = {**(data.get("options") or {}),
                           **{k: parse_option_value(v) for k, v in params["options"]}}
    if params.get("tools"):
        data["tools"] = list(dict.fromkeys(list(data.get("tools") or []) + list(params["tools"])))
    if params.get("schema") is not None or params.get("schema_multi") is not None:
        multi = params.get("schema_multi") is not None
        data["schema"] = params["schema_multi"] if multi else params["schema"]
        data["schema_multi"] = multi
    if params.get("extract_last"):
        data["extract"] = "last"
    elif params.get("extract_lang"):
        data["extract"] = params["extract_lang"]
    elif params.get("extract"):
        data["extract"] = True
    if prompt_words:
        data["prompt"] = " ".join(prompt_words)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name + ".yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(dump_template(data))
    click.echo(path)
