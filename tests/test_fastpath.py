"""cli/fast.py answers `--help`, `--version` and common TABs from generated text: byte for byte click's own."""

import os
import subprocess
import sys

import pytest

from llmcli.cli import _static

CLICK = [sys.executable, "-c", "from llmcli.cli.app import main; main()"]  # click itself, no fast path
FAST = [sys.executable, "-m", "llmcli"]


def run(argv, env):
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout


PATHS = sorted({path for path, _ in _static.HELP})


@pytest.mark.parametrize("columns", ["80", "100", "132", "64"])
def test_help_is_clicks_own_at_every_width(columns):
    env = dict(os.environ, COLUMNS=columns)
    assert len(PATHS) > 10
    for path in PATHS:
        for flag in ("--help", "-h"):
            args = path.split() + [flag]
            fast, slow = run(FAST + args, env), run(CLICK + args, env)
            assert fast == slow, (columns, args)
            assert fast[0] == 0 and b"Usage: llmcli" in fast[1]


def test_version_is_clicks_own_and_the_package_version():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(os.path.dirname(os.path.dirname(__file__)), "setup.cfg"))
    fast = run(FAST + ["--version"], dict(os.environ))
    assert fast == (0, f"llmcli {cfg['metadata']['version']}\n".encode())


CASES = [
    ("llmcli ", 1), ("llmcli a", 1), ("llmcli c", 1), ("llmcli config ", 2), ("llmcli config s", 2),
    ("llmcli ask --", 2), ("llmcli ask --m", 2), ("llmcli chat -", 2), ("llmcli --", 1), ("llmcli x", 1),
    # left to click: option values, words after options, quotes
    ("llmcli ask -p ", 3), ("llmcli ask -m x --", 4), ("llmcli ask 'a b' --r", 3), ("llmcli ask --model=", 2),
]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_is_clicks_own(shell):
    for words, cword in CASES:
        env = dict(os.environ, _LLMCLI_COMPLETE=f"{shell}_complete")
        if shell == "fish":
            parts = words.split(" ")
            env.update(COMP_WORDS=words, COMP_CWORD=parts[-1])
        else:
            env.update(COMP_WORDS=words, COMP_CWORD=str(cword))
        fast, slow = run(FAST, env), run(CLICK, env)
        assert fast == slow, (shell, words)
    env = dict(os.environ, _LLMCLI_COMPLETE=f"{shell}_complete", COMP_WORDS="llmcli as", COMP_CWORD="1" if shell != "fish" else "as")
    assert b"ask" in run(FAST, env)[1]  # the comparison compares something
