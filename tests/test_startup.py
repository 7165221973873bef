"""Start-up stays lazy: `--help` (and every shell-completion TAB) must not import the heavy modules."""

import subprocess
import sys

import pytest

HEAVY = ("requests", "urllib3", "yaml", "prompt_toolkit", "llama_cpp", "trafilatura", "sseclient", "pypdf")


def imported_modules(*args, env=None):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "llmcli", *args],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=env)
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return proc, names


@pytest.mark.parametrize("args", [("--help",), ("ask", "--help"), ("chat", "--help"), ("config", "--help"),
                                  ("--version",)])
def test_help_imports_nothing_heavy(args):
    proc, names = imported_modules(*args)
    assert proc.returncode == 0
    assert "llmcli" in names  # the measurement works
    # answered from generated text (cli/fast.py): not even click is imported
    assert not names & set(HEAVY + ("click",)), sorted(names & set(HEAVY + ("click",)))


def test_help_click_renders_imports_nothing_heavy():
    # a width the generated text does not cover: click renders it, still without the heavy modules
    import os

    proc, names = imported_modules("ask", "--help", env=dict(os.environ, COLUMNS="64"))
    assert proc.returncode == 0 and "click" in names
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def test_completion_imports_nothing_heavy():
    import os

    env = dict(os.environ, _LLMCLI_COMPLETE="bash_complete", COMP_WORDS="llmcli as", COMP_CWORD="1")
    proc, names = imported_modules(env=env)
    assert "plain,ask" in proc.stdout
    assert not names & set(HEAVY + ("click",)), sorted(names & set(HEAVY + ("click",)))
    # a completion the fast path leaves to click (an option value)
    env.update(COMP_WORDS="llmcli ask -p ", COMP_CWORD="3")
    proc, names = imported_modules(env=env)
    assert "plain,openrouter" in proc.stdout and "click" in names
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def test_an_image_attachment_does_not_import_pypdf(tmp_path):
    """pypdf is imported for --pdf-text only; nor does ask import yaml without a YAML history."""
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    proc, names = imported_modules("ask", "--base-url", "http://127.0.0.1:9/v1", "--retries", "0",
                                   "-a", str(path), "hi")
    assert proc.returncode == 6, proc.stderr[-500:]
    assert "pypdf" not in names and "yaml" not in names
