"""issue 20 (partial): extraction, the real shells' syntax check, risk notes and the repair request."""

import shutil

import pytest

from llmcli.run.shellcmd import CommandConversation, check_syntax, extract_command, risk_notes


@pytest.mark.parametrize("answer, command", [
    ("```bash\nls -la\n```", "ls -la"),
    ("$ du -sh *", "du -sh *"),
    ("You can use this to list them:\n\n`find . -empty`", "find . -empty"),
    ("find . -type f -empty", "find . -type f -empty"),
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
