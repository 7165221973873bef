"""The README's examples are real commands: every `llmcli …` line parses against the click definitions,
and the two set-up commands at the top are what .ci/run and the tests rely on."""

import os
import re
import shlex

import click
import pytest

from llmcli.cli.app import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        return fh.read()


def example_commands():
    """argv lists for every llmcli invocation in the README's ```sh blocks."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", readme(), re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if "llmcli " not in line:
                continue
            for segment in re.split(r"\|\||&&|\|", line):
                words = shlex.split(segment)
                while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
                    words.pop(0)
                if words and words[0] == "llmcli":
                    if ">" in words:
                        words = words[: words.index(">")]
                    out.append(words[1:])
    return out


def parse(args):
    """Parse like click would, down to the leaf command, without running anything."""
    import warnings

    def remaining(ctx):
        with warnings.catch_warnings():  # click 8.2+ deprecates protected_args (merged into args in 9.0)
            warnings.simplefilter("ignore", DeprecationWarning)
            return list(getattr(ctx, "protected_args", [])) + list(ctx.args)

    ctx = cli.make_context("llmcli", list(args))
    command = cli
    while isinstance(command, click.Group) and remaining(ctx):
        name, command, rest = command.resolve_command(ctx, remaining(ctx))
        ctx = command.make_context(name, rest, parent=ctx)
    return command


@pytest.mark.parametrize("args", example_commands(), ids=lambda a: " ".join(a)[:60])
def test_readme_example_parses(args):
    assert parse(args) is not None


def test_there_are_examples_for_every_command():
    used = {args[0] for args in example_commands() if args}
    assert {"ask", "chat", "tools", "search", "fetch", "completions"} <= used


def test_readme_starts_with_the_two_setup_commands():
    blocks = re.findall(r"```sh\n(.*?)```", readme(), re.S)
    first, second = blocks[0].strip(), blocks[1].strip()
    assert "pip install '.[local]'" in first and 'llmcli ask "What is the capital of France?"' in first
    assert "pip install -e '.[test,local]'" in second and "pytest" in second
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as fh:
        ci = fh.read()
    assert "pip install -q -e '.[test,local]'" in ci and "python -m pytest" in ci
