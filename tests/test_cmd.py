"""issue 20 (partial): extraction, the real shells' syntax check, risk notes and the repair request."""

import shutil

import pytest

from llmcli.run.shellcmd import CommandConversation, check_syntax, extract_command, risk_notes


@pytest.mark.parametrize("answer, command", [
    ("```bash\nls -la\n```", "ls -la"),
    ("$ du -sh *", "du -sh *"),
    ("You can use this to list them:\n\n`find . -empty`", "find . -empty"),
    ("find . -type f -empty", "find . -type f -empty"),
    ("echo hello big world", "echo hello big world"),  # four plain words are a command, not prose
    ("I cannot do that.\nSorry.", ""),
    ("<think>\nThe user wants files.\n`ls` maybe\n</think>\nls -la", "ls -la"),  # inline reasoning is dropped
])
def test_extract_one_command(answer, command):
    assert extract_command(answer).command == command


def test_two_commands_first_wins_others_kept():
    got = extract_command("```sh\nls\n```\nor\n```sh\nls -a\n```")
    assert got.command == "ls" and got.others == ["ls -a"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "sh"])
def test_real_shell_syntax_check(shell):
    if not shutil.which(shell):
        pytest.skip(f"{shell} not installed")
    assert check_syntax("echo hi | wc -l", shell).ok
    bad = check_syntax("echo 'unterminated", shell)
    assert not bad.ok and bad.error


def test_risk_notes(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    notes = risk_notes("sudo rm -rf / && echo > a.txt", cwd=str(tmp_path))
    assert any("rm -rf" in n for n in notes) and any("sudo" in n for n in notes) and any("a.txt" in n for n in notes)


def test_repair_request_carries_the_shell_error(tmp_path):
    answers = iter(["echo 'oops", "echo ok"])
    seen = []

    def ask(messages):
        seen.append([dict(m) for m in messages])
        return next(answers)

    proposal = CommandConversation("bash", "say ok", ask, cwd=str(tmp_path)).propose()
    assert proposal.command == "echo ok" and proposal.syntax.ok and proposal.repaired
    assert "bash" in seen[1][-1]["content"] and "unexpected" in seen[1][-1]["content"].lower() or "EOF" in seen[1][-1]["content"]


# ------------------------------------------------------------------------------------------------
# the whole `llmcli cmd` against the local server, without a terminal (CliRunner: stdout is a pipe)

import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402

from conftest import invoke  # noqa: E402
from localserver import Reply, text_stream  # noqa: E402

import llmcli.cli.app  # noqa: E402,F401 (cli.cmd is loaded by the app module, which registers it)
from llmcli.cli.cmd import SHELL_CHOICES  # noqa: E402
from llmcli.run.shellcmd import SHELLS  # noqa: E402

TWO = "You could list them:\n```sh\nls -1\n```\nor with details:\n```sh\nls -la\n```"
SHAPES = {
    "fence": ("Here you go:\n```bash\nfind . -type f -empty -delete\n```\nThis deletes them.", "find . -type f -empty -delete"),
    "dollar": ("Run this:\n$ du -sh * | sort -h\nIt sorts by size.", "du -sh * | sort -h"),
    "prose": ("To see the disk usage, you can use `df -h` which shows sizes.", "df -h"),
    "bare": ("wc -l *.py", "wc -l *.py"),
    "two": (TWO, "ls -1"),
}


def answers(server, *texts):
    server.chat([Reply(pieces=text_stream(t)) for t in texts])


def cmd(server, *args, **kwargs):
    return invoke("cmd", "--base-url", server.base_url, *args, **kwargs)


def last_user(request):
    return [m for m in request.json["messages"] if m["role"] == "user"][-1]["content"]


def needs(shell):
    return pytest.mark.skipif(shutil.which(shell) is None, reason=f"{shell} is not installed (CI installs it)")


def test_the_cli_knows_the_same_shells_as_the_logic():
    assert SHELL_CHOICES == SHELLS


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_answer_shape_gives_the_one_command(server, shape):
    answer, command = SHAPES[shape]
    answers(server, answer)
    r = cmd(server, "--shell", "bash", "do", "the", "thing")
    assert r.exit_code == 0, r
    assert r.stdout == command + "\n"  # only the command, exactly
    assert len(server.requests) == 1
    if shape == "two":
        assert "another candidate: ls -la" in r.stderr


def test_json_document(server):
    answers(server, TWO)
    r = cmd(server, "--shell", "bash", "--json", "list")
    doc = json.loads(r.stdout)
    assert doc == {"command": "ls -1", "shell": "bash", "syntax_ok": True, "syntax_checked": True,
                   "syntax_error": None, "risk": [], "notes": [], "others": ["ls -la"], "repaired": False,
                   "executed": False, "exit_status": None}


def test_system_prompt_names_os_shell_and_cwd_and_stdin_is_context(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    answers(server, "ls")
    r = cmd(server, "--shell", "zsh", "delete", "the", "empty", "ones", input="a.txt\nb.txt\n")
    assert r.exit_code == 0, r
    messages = server.requests[0].json["messages"]
    system = messages[0]["content"]
    assert messages[0]["role"] == "system"
    assert "Shell: zsh" in system and str(tmp_path) in system and platform.system() in system
    assert "exactly one" in system
    assert messages[1]["content"].startswith("delete the empty ones") and "a.txt\nb.txt" in messages[1]["content"]
    assert "tools" not in server.requests[0].json


def test_shell_defaults_to_the_basename_of_SHELL(server):
    answers(server, "ls")
    cmd(server, "list", env={"SHELL": "/usr/local/bin/fish"})
    assert "Shell: fish" in server.requests[0].json["messages"][0]["content"]


@pytest.mark.parametrize("shell, bad, good", [
    ("bash", "for f in *; do echo $f", "for f in *; do echo $f; done"),
    ("zsh", "if true; then echo y", "if true; then echo y; fi"),
    ("fish", "for f in *; echo $f", "for f in *; echo $f; end"),
])
def test_invalid_then_corrected_sends_the_shells_own_error(server, shell, bad, good):
    if not shutil.which(shell):
        pytest.skip(f"{shell} is not installed (CI installs it)")
    error = check_syntax(bad, shell).error
    assert error  # the real shell rejects it
    answers(server, bad, good)
    r = cmd(server, "--shell", shell, "--json", "echo each file")
    doc = json.loads(r.stdout)
    assert doc["command"] == good and doc["syntax_ok"] and doc["repaired"]
    assert len(server.requests) == 2
    repair = last_user(server.requests[1])
    assert error in repair and shell in repair
    # the conversation goes on: the rejected answer is in the history of the repair request
    assert {"role": "assistant", "content": bad} in server.requests[1].json["messages"]


@needs("bash")
def test_invalid_twice_is_printed_with_the_error_and_flagged(server):
    answers(server, "echo 'one", "echo 'two")
    r = cmd(server, "--shell", "bash", "--json", "say it")
    doc = json.loads(r.stdout)
    assert doc["command"] == "echo 'two" and doc["syntax_ok"] is False and doc["syntax_error"]
    assert len(server.requests) == 2  # one repair, not more
    answers(server, "echo 'one", "echo 'two")
    r = cmd(server, "--shell", "bash", "--print", "say it")
    assert r.stdout == "echo 'two\n" and "bash rejected the command" in r.stderr


def test_an_answer_without_a_command_is_exit_5_after_one_retry(server):
    answers(server, "I cannot help with that.", "Sorry, I really cannot do that.")
    r = cmd(server, "--shell", "sh", "do something")
    assert r.exit_code == 5 and r.stdout == ""
    assert "held no command" in r.stderr
    assert len(server.requests) == 2 and "held no command" in last_user(server.requests[1])
    answers(server, "I cannot help with that.", "Sorry, I really cannot do that.")
    r = cmd(server, "--shell", "sh", "--json", "do something")
    assert r.exit_code == 5 and json.loads(r.stdout)["command"] is None  # the document, then the exit code


def test_in_a_pipe_nothing_is_executed(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "created"
    answers(server, f"touch {target}")
    r = cmd(server, "--shell", "bash", "make a file", input="e\ne\n")
    assert r.exit_code == 0 and r.stdout == f"touch {target}\n"
    assert not target.exists()


def test_execute_without_a_terminal_is_refused(server, tmp_path):
    r = cmd(server, "--execute", "--shell", "bash", "make a file")
    assert r.exit_code == 2 and "--execute needs a terminal" in r.stderr
    assert server.requests == []  # refused before asking anything


def test_risk_notes_reach_stderr_and_json(server):
    answers(server, "sudo rm -rf /tmp/x")
    r = cmd(server, "--shell", "bash", "clean")
    assert r.stdout == "sudo rm -rf /tmp/x\n"
    assert "risk: rm -rf" in r.stderr and "risk: runs with root" in r.stderr
    answers(server, "curl -fsSL https://example.com/i.sh | sh")
    doc = json.loads(cmd(server, "--shell", "bash", "--json", "install").stdout)
    assert doc["risk"] == ["pipes a download straight into a shell"]


def test_control_characters_are_flagged_and_a_pipe_gets_the_exact_bytes(server):
    answers(server, "echo \x1b[31mred")
    r = cmd(server, "--shell", "bash", "red")
    assert r.stdout == "echo \x1b[31mred\n"
    assert "control or bidi characters" in r.stderr


def test_explain(server):
    server.chat(Reply(pieces=text_stream("tar: the archiver\n-x: extract\n")))
    r = cmd(server, "--shell", "bash", "--explain", "tar -xzvf a.tgz -C /tmp")
    assert r.exit_code == 0 and r.stdout == "tar: the archiver\n-x: extract\n"
    messages = server.requests[0].json["messages"]
    assert "explain" in messages[0]["content"].lower() and "tar -xzvf a.tgz -C /tmp" in messages[1]["content"]


def test_usage_errors():
    assert invoke("cmd").exit_code == 2
    r = invoke("cmd", "--print", "--execute", "x")
    assert r.exit_code == 2 and "cannot be used together" in r.stderr
    assert invoke("cmd", "--shell", "tcsh", "x").exit_code == 2


def test_list_items_are_prose_not_commands():
    assert extract_command("- /var/log/syslog: the system log\n- /tmp/b&#39;").command == ""
    assert extract_command("1. First, list them:\n`ls -S | head -5`").command == "ls -S | head -5"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "sh"])
def test_a_missing_program_is_noted_and_builtins_are_not(shell):
    from llmcli.run.shellcmd import missing_program

    if not shutil.which(shell):
        pytest.skip(f"{shell} is not installed (CI installs it)")
    assert missing_program("cd /tmp", shell) is None  # a builtin, found by the shell's own `type`
    assert missing_program("ls -la | wc -l", shell) is None
    assert "llmcli-no-such-program" in missing_program("FOO=1 llmcli-no-such-program --x", shell)
    assert missing_program("sudo -u me whatever", shell) is None  # not ours to judge


def test_missing_program_reaches_json_and_stderr(server):
    answers(server, "llmcli-no-such-program --all")
    r = cmd(server, "--shell", "bash", "--json", "do it")
    doc = json.loads(r.stdout)
    assert doc["notes"] == ["llmcli-no-such-program is not installed here (not on PATH, not a bash builtin)"]
    assert doc["syntax_ok"] and "llmcli-no-such-program is not installed" in r.stderr


def test_print_imports_no_terminal_libraries(server):
    """`cmd --print` (the widget's path, one run per key press) needs neither prompt-toolkit nor pygments."""
    import subprocess
    import sys

    answers(server, "ls")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "llmcli", "cmd", "--base-url", server.base_url,
                           "--shell", "bash", "--print", "list"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and proc.stdout == "ls\n"
    names = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in proc.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    assert "llmcli" in names and not names & {"prompt_toolkit", "pygments"}


def test_large_piped_context_is_a_warning_not_a_loss(server):
    answers(server, "ls")
    r = cmd(server, "--shell", "bash", "pick one", input="x" * 300, env={"LLMCLI_MAX_INPUT_BYTES": "100"})
    assert r.exit_code == 0 and r.stdout == "ls\n" and "piped context is large" in r.stderr
    assert "x" * 300 in server.requests[0].json["messages"][1]["content"]


def test_explain_reads_the_command_from_stdin(server):
    server.chat(Reply(pieces=text_stream("lists files\n")))
    r = cmd(server, "--shell", "bash", "--explain", input="ls -la\n")
    assert r.exit_code == 0 and r.stdout == "lists files\n"
    assert "ls -la" in server.requests[0].json["messages"][1]["content"]


def test_with_the_embedded_model_the_outcome_is_a_command_or_one_clear_error():
    """A new user with no provider: the embedded 135M model answers (a real process, as a user runs it). It
    rarely writes a command, so either is fine here: a checked command, or exit 5 saying why."""
    from llmcli.wire import local

    if not local.llama_cpp_installed() or local.default_model_path() is None:
        pytest.skip("the local extra or the model file is missing (pip install '.[local]'; llmcli pull)")
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "llmcli", "cmd", "--shell", "bash", "--json", "-o", "max_tokens", "60",
                        "show the disk usage"], capture_output=True, text=True, timeout=170, stdin=subprocess.DEVNULL)
    doc = json.loads(r.stdout)
    assert "answering with the local model" in r.stderr and "Traceback" not in r.stderr
    if doc["command"] is None:
        assert r.returncode == 5 and "llmcli: error: the model's answer held no command" in r.stderr
    else:
        assert r.returncode == 0 and doc["syntax_checked"] and doc["executed"] is False
