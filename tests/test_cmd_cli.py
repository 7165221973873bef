"""`llmcli cmd` on a real terminal (pexpect) and the shell widgets in a real bash, zsh and fish (issue 20).

The child is a real `python -m llmcli cmd` on a 40x120 pty, talking to the real local server; `Repl.expect`
(from test_repl) answers prompt-toolkit's cursor-position queries like a terminal does. What a command
would do is a file in tmp_path: its existence says whether it ran.
"""

import json
import os
import shutil
import sys

import pexpect
import pytest

from localserver import Reply, text_stream
from test_repl import WAIT, Repl, plain

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MENU = r"\[A\]bort\S* "  # the menu's last entry (then llmcli's reset code and a space)


def answers(server, *texts):
    server.chat([Reply(pieces=text_stream(t)) for t in texts])


@pytest.fixture
def spawn(tmp_path):
    children = []

    def start(program, args, env_extra=None, cwd=None):
        env = dict(os.environ, TERM="xterm", PYTHONPATH=REPO, **(env_extra or {}))
        env.pop("BASH_ENV", None)
        child = pexpect.spawn(program, list(args), env=env, cwd=str(cwd or tmp_path), dimensions=(40, 120),
                              encoding="utf-8", timeout=WAIT)
        child.delaybeforesend = 0.01
        child.delayafterclose = 0.02
        children.append(child)
        return Repl(child)

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)


@pytest.fixture
def cmd(server, spawn):
    """`llmcli cmd --base-url … --shell bash ARGS` on a pty."""

    def start(*args, shell="bash"):
        return spawn(sys.executable, ["-m", "llmcli", "cmd", "--base-url", server.base_url, "--shell", shell, *args])

    return start


def finish(repl):
    seen = repl.expect(pexpect.EOF)
    repl.child.close()
    return repl.child.exitstatus, seen


def test_execute_runs_in_the_shell_and_passes_the_exit_status(server, cmd, tmp_path):
    answers(server, "```bash\ntouch made && exit 3\n```")
    repl = cmd("make", "a", "file")
    shown = repl.expect(MENU)
    assert "touch made && exit 3" in shown and "[E]xecute" in shown
    assert not (tmp_path / "made").exists()  # shown, not run
    repl.child.send("e")
    code, _ = finish(repl)
    assert code == 3 and (tmp_path / "made").exists()


def test_abort_runs_nothing(server, cmd, tmp_path):
    answers(server, "touch made")
    repl = cmd("make", "a", "file")
    repl.expect(MENU)
    repl.child.send("a")
    code, seen = finish(repl)
    assert code == 0 and "nothing was run" in seen
    assert not (tmp_path / "made").exists()


def test_ctrl_c_at_the_menu_is_exit_130_and_runs_nothing(server, cmd, tmp_path):
    answers(server, "touch made")
    repl = cmd("make", "a", "file")
    repl.expect(MENU)
    repl.child.sendcontrol("c")
    code, seen = finish(repl)
    assert code == 130 and "llmcli: interrupted" in seen
    assert not (tmp_path / "made").exists()


def test_modify_edits_the_line_then_checks_and_runs_the_edit(server, cmd, tmp_path):
    answers(server, "touch made")
    repl = cmd("make", "a", "file")
    repl.expect(MENU)
    repl.child.send("m")
    repl.expect("edit> ")
    repl.child.send("\x15touch edited; exit 4\r")  # Ctrl-U clears the line, then the user's own command
    shown = repl.expect(MENU)
    assert "touch edited; exit 4" in shown
    repl.child.send("e")
    code, _ = finish(repl)
    assert code == 4 and (tmp_path / "edited").exists() and not (tmp_path / "made").exists()
    assert len(server.requests) == 1  # an edit asks nobody


def test_a_command_that_failed_twice_cannot_be_executed(server, cmd, tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    answers(server, "touch made; echo 'one", "touch made; echo 'two")
    repl = cmd("make", "a", "file")
    shown = repl.expect(MENU)
    assert "bash rejected it" in shown and "[E]xecute" not in shown and "no Execute" in shown
    repl.child.send("e")  # ignored: the menu comes back
    assert "[E]xecute" not in repl.expect(MENU)
    repl.child.send("m")  # but it can be fixed by hand, and then run
    repl.expect("edit> ")
    repl.child.send("\x15touch fixed\r")
    shown = repl.expect(MENU)
    assert "[E]xecute" in shown
    repl.child.send("e")
    code, _ = finish(repl)
    assert code == 0 and (tmp_path / "fixed").exists() and not (tmp_path / "made").exists()


def test_revise_continues_the_conversation(server, cmd, tmp_path):
    answers(server, "ls -1", "ls -1a")
    repl = cmd("list", "files")
    repl.expect(MENU)
    repl.child.send("r")
    repl.expect(r"what should change\?")
    repl.child.send("include hidden ones\r")
    shown = repl.expect(MENU)
    assert "ls -1a" in shown
    messages = server.requests[1].json["messages"]
    assert {"role": "assistant", "content": "ls -1"} in messages
    assert "include hidden ones" in messages[-1]["content"]
    repl.child.send("a")
    assert finish(repl)[0] == 0


def test_describe_shows_the_explanation_sanitized(server, cmd):
    answers(server, "du -sh .", "du: disk usage\n-s: summary \x1b]0;pwned\x07only\n")
    repl = cmd("how", "big")
    repl.expect(MENU)
    repl.child.send("d")
    shown = repl.expect(MENU)
    raw = repl.child.before
    assert "du: disk usage" in shown and "^[]0;pwned^G" in shown and "\x1b]0;" not in raw
    assert "Explain" in server.requests[1].json["messages"][1]["content"]
    repl.child.send("q")
    assert finish(repl)[0] == 0


def test_copy_without_a_clipboard_tool_says_so(server, cmd):
    answers(server, "ls")
    repl = cmd("list")
    repl.expect(MENU)
    repl.child.send("c")
    shown = repl.expect(MENU)
    if not any(shutil.which(t) for t in ("wl-copy", "xclip", "xsel", "pbcopy")):
        assert "no clipboard tool found" in shown
    repl.child.send("a")
    assert finish(repl)[0] == 0


def test_the_command_shown_is_sanitized_and_flagged(server, cmd, tmp_path):
    answers(server, "echo \x1b[2Jhidden")
    repl = cmd("say")
    shown = repl.expect(MENU)
    assert "echo ^[[2Jhidden" in shown and "control or bidi" in shown
    assert "\x1b[2J" not in repl.child.before
    repl.child.send("a")
    finish(repl)


def test_piped_stdin_is_context_and_the_menu_uses_the_terminal(server, spawn, tmp_path):
    answers(server, "touch from-menu")
    line = f"printf 'a.txt\\n' | {sys.executable} -m llmcli cmd --base-url {server.base_url} --shell bash --json make it"
    repl = spawn("bash", ["--norc", "--noprofile", "-c", line])
    repl.expect(MENU)
    repl.child.send("e")
    code, seen = finish(repl)
    assert code == 0 and (tmp_path / "from-menu").exists()
    assert "a.txt" in server.requests[0].json["messages"][1]["content"]
    doc = json.loads(seen[seen.index("{"):])
    assert doc["executed"] is True and doc["exit_status"] == 0 and doc["command"] == "touch from-menu"


def test_in_a_pipe_nothing_executes_even_with_a_terminal_around(server, spawn, tmp_path):
    answers(server, "touch made")
    line = f"{sys.executable} -m llmcli cmd --base-url {server.base_url} --shell bash make a file | cat"
    repl = spawn("bash", ["--norc", "--noprofile", "-c", line])
    repl.child.send("e\r")  # keys that would run it, were there a menu
    code, seen = finish(repl)
    assert code == 0 and "touch made" in seen and "[E]xecute" not in seen
    assert not (tmp_path / "made").exists()


def test_execute_flag_runs_a_clean_command_at_once_but_not_a_risky_one(server, cmd, tmp_path):
    answers(server, "touch quick")
    code, _ = finish(cmd("--execute", "make a file"))
    assert code == 0 and (tmp_path / "quick").exists()
    (tmp_path / "keep").mkdir()
    answers(server, "rm -rf keep")
    repl = cmd("--execute", "remove it")
    shown = repl.expect(MENU)
    assert "risk: rm -rf" in shown
    repl.child.send("a")
    finish(repl)
    assert (tmp_path / "keep").exists()


# ------------------------------------------------------------------------------------------------
# the widgets, in real interactive shells

PROMPT = r"XX\$ "
SHELL_ARGS = {
    "bash": ["--norc", "--noprofile", "-i"],
    "zsh": ["-f", "-i"],
    "fish": ["--no-config", "-i", "-C", "function fish_prompt; echo -n 'XX$ '; end"],
}


@pytest.fixture
def llmcli_on_path(tmp_path):
    """A `llmcli` on PATH that is this checkout (what a user's install would be)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "llmcli"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m llmcli "$@"\n')
    wrapper.chmod(0o755)
    return str(bindir)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_widget_replaces_the_line_and_runs_nothing(server, spawn, tmp_path, llmcli_on_path, shell):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (CI installs it)")
    answers(server, "```sh\ntouch made\n```")
    work = tmp_path / "work"
    work.mkdir()
    env = {"LLMCLI_BASE_URL": server.base_url, "PATH": os.pathsep.join([llmcli_on_path, "/usr/bin", "/bin"]),
           "HISTFILE": os.devnull, "PS1": "XX$ ", "PROMPT_COMMAND": ""}
    repl = spawn(shell, SHELL_ARGS[shell], env_extra=env, cwd=work)
    child = repl.child
    if shell == "zsh":
        child.sendline("PS1='XX$ '")
        child.expect(PROMPT)
    child.expect(PROMPT)
    child.sendline(f"source {REPO}/completions/llmcli-widget.{shell}")
    child.expect(PROMPT)
    child.send("make a file named made")
    child.send("\x1bl")  # Alt-L
    child.expect("touch made")
    assert not (work / "made").exists()  # on the line, not run
    body = server.requests[0].json
    assert "make a file named made" in body["messages"][1]["content"]
    assert f"Shell: {shell}" in body["messages"][0]["content"]
    # The line really is the command: Enter (the user's own) runs it.
    child.send("\r")
    child.sendline("printf 'x%sy\\n' z")  # its output, xzy, is not in what was typed: the line before has run
    child.expect("xzy")
    assert (work / "made").exists()
    child.sendline("exit")
    child.expect(pexpect.EOF)


def test_widget_leaves_the_line_alone_when_llmcli_fails(spawn, tmp_path, llmcli_on_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    env = {"LLMCLI_BASE_URL": "http://127.0.0.1:9/v1", "LLMCLI_RETRIES": "0",
           "PATH": os.pathsep.join([llmcli_on_path, "/usr/bin", "/bin"]), "HISTFILE": os.devnull,
           "PS1": "XX$ ", "PROMPT_COMMAND": ""}
    repl = spawn("bash", SHELL_ARGS["bash"], env_extra=env)
    child = repl.child
    child.expect(PROMPT)
    child.sendline(f"source {REPO}/completions/llmcli-widget.bash")
    child.expect(PROMPT)
    child.send("echo kept words")
    child.send("\x1bl")
    child.expect("llmcli: error: ")
    child.send("\r")
    child.expect("kept words")
    child.expect(PROMPT)
    child.sendline("exit")
    child.expect(pexpect.EOF)


def test_widget_command_prints_the_committed_scripts():
    from conftest import invoke

    for shell in ("bash", "zsh", "fish"):
        r = invoke("widget", shell)
        with open(os.path.join(REPO, "completions", f"llmcli-widget.{shell}"), encoding="utf-8") as fh:
            assert r.stdout == fh.read()
        assert "cmd --print --shell " + shell in r.stdout
    assert plain(invoke("widget", "tcsh").stderr).startswith("llmcli: error:")


def test_execute_with_the_shell_missing_is_127_with_one_line(server, spawn, tmp_path):
    answers(server, "Write-Output hi")
    bindir = tmp_path / "empty-bin"
    bindir.mkdir()
    repl = spawn(sys.executable, ["-m", "llmcli", "cmd", "--base-url", server.base_url, "--shell", "pwsh", "greet"],
                 env_extra={"PATH": str(bindir), "SHELL": "/nonexistent/pwsh"})
    shown = repl.expect(MENU)
    assert "pwsh is not installed; the syntax was not checked" in shown
    repl.child.send("e")
    code, seen = finish(repl)
    assert code == 127 and "cannot run pwsh" in seen and "Traceback" not in seen


@pytest.mark.parametrize("shell, key, keys", [("bash", r"\C-g", "\x07"), ("zsh", "^G", "\x07"),
                                              ("fish", r"\cg", "\x07")])
def test_widget_key_is_chosen_by_LLMCLI_WIDGET_KEY(server, spawn, tmp_path, llmcli_on_path, shell, key, keys):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (CI installs it)")
    answers(server, "echo from-the-widget")
    env = {"LLMCLI_BASE_URL": server.base_url, "PATH": os.pathsep.join([llmcli_on_path, "/usr/bin", "/bin"]),
           "HISTFILE": os.devnull, "PS1": "XX$ ", "PROMPT_COMMAND": "", "LLMCLI_WIDGET_KEY": key}
    child = spawn(shell, SHELL_ARGS[shell], env_extra=env).child
    if shell == "zsh":
        child.sendline("PS1='XX$ '")
        child.expect(PROMPT)
    child.expect(PROMPT)
    child.sendline(f"source {REPO}/completions/llmcli-widget.{shell}")
    child.expect(PROMPT)
    child.send("say something")
    child.send(keys)
    child.expect("echo from-the-widget")
    child.send("\r")
    child.expect(r"[\r\n]from-the-widget\r?\n")  # the output line, not the command line
    child.sendline("exit")
    child.expect(pexpect.EOF)
