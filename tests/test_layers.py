"""The layout's import rules, held against the code (an ast walk over llmcli/).

Each subpackage's `__init__` docstring states its rule in a line `May import: a, b, c.`; this test
reads that line, so the documented rule and the checked rule are one text. Imports point down only:
cli/repl → batch → run/output → tools/prompt/wire/store → config → events/errors/status.
"""

import ast
import os
import re
import shutil

import pytest

import llmcli

PACKAGE_DIR = os.path.dirname(llmcli.__file__)

# Top-level modules have no package docstring of their own; their rules live here.
MODULE_RULES = {
    "status": set(),
    "errors": {"status"},
    "events": set(),
    "__main__": {"cli"},
}
FACE = {"cli", "repl"}  # the only layers that may import click or prompt_toolkit
TERMINAL_LIBRARIES = {"click", "prompt_toolkit"}
PLANNED = set()  # rooms named by the layout before their code lands (none left)


def subpackages():
    return sorted(d for d in os.listdir(PACKAGE_DIR) if os.path.isfile(os.path.join(PACKAGE_DIR, d, "__init__.py")))


def declared_rule(package, package_dir=PACKAGE_DIR):
    """The set named on the `May import:` line of the package's docstring."""
    with open(os.path.join(package_dir, package, "__init__.py"), encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    m = re.search(r"^May import: (.*?)\.?$", doc, re.M)
    assert m, f"llmcli/{package}/__init__.py must say what it may import ('May import: …')"
    return {name.strip() for name in m.group(1).split(",") if name.strip()}


def rules(package_dir=PACKAGE_DIR):
    table = dict(MODULE_RULES)
    for package in subpackages():
        table[package] = declared_rule(package, package_dir)
    return table


def imports_of(path, module):
    """("internal", layer, line) for each llmcli import in the file; ("external", top name, line) for the rest."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    parts = module.split(".")
    is_package = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = (node.module or "").split(".")
            if target[0] == "llmcli":
                for name in ([target[1]] if len(target) > 1 else [a.name for a in node.names]):
                    yield "internal", name, node.lineno
            else:
                yield "external", target[0], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")
                if top[0] == "llmcli" and len(top) > 1:
                    yield "internal", top[1], node.lineno
                elif top[0] != "llmcli":
                    yield "external", top[0], node.lineno


def violations(package_dir=PACKAGE_DIR):
    table = rules(package_dir)
    found = []
    for dirpath, dirnames, files in os.walk(package_dir):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, package_dir)[:-3].split(os.sep)
            layer = rel[0]
            if layer == "__init__":
                continue  # the root package holds only __version__
            module = ".".join(["llmcli"] + rel)
            if module.endswith(".__init__"):
                module = module[: -len(".__init__")]
            allowed = table.get(layer)
            for kind, target, line in imports_of(path, module):
                where = f"llmcli/{'/'.join(rel)}.py:{line}"
                if kind == "external":
                    if target in TERMINAL_LIBRARIES and layer not in FACE:
                        found.append(f"{where} imports {target} below the command line")
                elif target in (layer, "__version__"):
                    continue
                elif allowed is None:
                    found.append(f"{where}: layer {layer!r} has no rule")
                elif target not in allowed:
                    found.append(f"{where}: {layer} may not import {target}")
    return found


def test_every_import_points_down():
    assert violations() == []


def test_every_subpackage_names_only_known_layers():
    known = set(subpackages()) | set(MODULE_RULES) | PLANNED
    for package in subpackages():
        assert declared_rule(package) <= known, package


def test_an_upward_import_is_caught(tmp_path):
    """The rule bites: in a copy of the tree where the decoder imports the loop, and config imports click."""
    copy = tmp_path / "llmcli"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "wire" / "stream.py", "a", encoding="utf-8") as f:
        f.write("\nfrom ..run.loop import ChatRun  # an upward import\n")
    with open(copy / "config" / "settings.py", "a", encoding="utf-8") as f:
        f.write("\nimport click\n")
    found = violations(str(copy))
    assert "llmcli/wire/stream.py" in " ".join(found) and any("wire may not import run" in v for v in found), found
    assert any("config/settings.py" in v and "imports click below the command line" in v for v in found), found


@pytest.mark.parametrize("package", ["wire", "run", "output", "tools", "config", "prompt", "store"])
def test_lower_layers_never_import_the_face(package):
    assert FACE.isdisjoint(declared_rule(package))


def test_renderers_import_events_not_the_loop_or_transport():
    assert {"run", "wire", "tools"}.isdisjoint(declared_rule("output"))


def test_store_sits_below_the_loop_and_the_wire():
    """The log stores plain records: it never reaches up to the loop, the transport or the screen."""
    assert declared_rule("store") <= {"config", "events", "errors", "status"}
