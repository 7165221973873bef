"""Generated artifacts (STYLE.md rule 9): man pages and completion scripts are produced from the click
definition by scripts/generate_docs.py, committed, and these tests fail when they are stale. They also
check what the artifacts are for: every command documented, pages that groff renders without warnings,
and completion that works in a real interactive bash.
"""

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import click
import pytest

from conftest import invoke
from llmcli.cli.app import cli
from llmcli.cli.widget import WIDGET_FILES
from llmcli.config.settings import PRESETS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "generate_docs.py")
REGENERATE = "run `python scripts/generate_docs.py` and commit the result"
COMPLETION_FILES = {"bash": "completions/llmcli.bash", "zsh": "completions/_llmcli", "fish": "completions/llmcli.fish"}
LLMCLI = os.path.join(os.path.dirname(sys.executable), "llmcli")


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def committed(rel):
    return read(os.path.join(REPO, rel))


def command_tree():
    """(path words, command) for the group and every command and subcommand, walked independently of
    the generator so that a page it forgets is noticed."""
    out = []

    def walk(command, words):
        out.append((words, command))
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name="llmcli")
            # list_commands/get_command, not .commands: the group loads most commands lazily
            for name in sorted(command.list_commands(ctx)):
                sub = command.get_command(ctx, name)
                if not sub.hidden:
                    walk(sub, words + [name])

    walk(cli, [])
    return out


COMMANDS = command_tree()
COMMAND_IDS = [" ".join(["llmcli"] + words) for words, _ in COMMANDS]


def page_for(words):
    return os.path.join(REPO, "man", "-".join(["llmcli"] + words) + ".1")


def render(page, *extra):
    """groff's text rendering of a page, with bold/underline overstrikes and SGR escapes removed."""
    proc = subprocess.run(["groff", "-ww", "-man", "-Tutf8", *extra, page], capture_output=True, text=True,
                          env=dict(os.environ, LC_ALL="C.UTF-8"))
    text = re.sub(r".\x08", "", proc.stdout)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return proc, text


needs_groff = pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")


# --------------------------------------------------------------------------------------------
# (a) staleness and determinism


def test_committed_files_match_a_fresh_generation(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, "--root", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    fresh = {os.path.relpath(p, tmp_path) for p in glob.glob(str(tmp_path / "**" / "*"), recursive=True)
             if os.path.isfile(p)}
    assert "llmcli/cli/_static.py" in fresh  # the fast path's text (cli/fast.py) is generated too
    assert fresh, "the generator wrote nothing"
    stale = [rel for rel in sorted(fresh)
             if not os.path.exists(os.path.join(REPO, rel)) or committed(rel) != read(tmp_path / rel)]
    extra = sorted({os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "man", "*.1"))} - fresh)
    assert not stale and not extra, f"stale generated files {stale}, pages of removed commands {extra}: {REGENERATE}"


def test_check_mode_passes_on_the_repo_and_lists_stale_files(tmp_path):
    ok = subprocess.run([sys.executable, SCRIPT, "--check"], capture_output=True, text=True)
    assert ok.returncode == 0, f"{ok.stderr}\n{REGENERATE}"

    root = tmp_path / "copy"
    for directory in ("man", "completions"):
        shutil.copytree(os.path.join(REPO, directory), root / directory)
    (root / "llmcli" / "cli").mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "llmcli", "cli", "_static.py"), root / "llmcli" / "cli" / "_static.py")
    (root / "man" / "llmcli-ask.1").write_text("stale\n")
    (root / "completions" / "_llmcli").unlink()
    (root / "man" / "llmcli-gone.1").write_text(".TH GONE 1\n")  # a page for a command that no longer exists
    bad = subprocess.run([sys.executable, SCRIPT, "--check", "--root", str(root)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "python scripts/generate_docs.py" in bad.stderr
    listed = set(re.findall(r"^\s+(\S+)$", bad.stderr, re.M))
    assert listed == {"man/llmcli-ask.1", "completions/_llmcli", "man/llmcli-gone.1"}
    assert (root / "man" / "README.md").exists()  # hand-written files are not the generator's

    # Writing repairs exactly those, and then --check is happy.
    fix = subprocess.run([sys.executable, SCRIPT, "--root", str(root)], capture_output=True, text=True)
    assert fix.returncode == 0, fix.stderr
    assert not (root / "man" / "llmcli-gone.1").exists()
    again = subprocess.run([sys.executable, SCRIPT, "--check", "--root", str(root)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr


def test_setup_cfg_installs_every_generated_file():
    """Once setup.cfg has [options.data_files], it must name every page and script (a new command's page
    would otherwise be generated and committed but never installed)."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"), encoding="utf-8")
    if not parser.has_section("options.data_files"):
        pytest.skip("setup.cfg has no [options.data_files] yet")
    installed = {}
    for target, files in parser.items("options.data_files"):
        for rel in files.split():
            installed[rel] = target
    pages = glob.glob(os.path.join(REPO, "man", "*.1"))
    expected = {os.path.relpath(page, REPO): "share/man/man1" for page in pages}
    expected.update({COMPLETION_FILES["bash"]: "share/bash-completion/completions",
                     COMPLETION_FILES["zsh"]: "share/zsh/site-functions",
                     COMPLETION_FILES["fish"]: "share/fish/vendor_completions.d"})
    expected.update({f"completions/{name}": "share/llmcli/widgets" for name in WIDGET_FILES.values()})
    assert installed == expected


def test_generation_is_deterministic_and_has_no_paths_or_dates(tmp_path, monkeypatch):
    generator = load_generator()
    first = generator.generated_files()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    monkeypatch.setenv("COLUMNS", "37")
    monkeypatch.chdir(tmp_path)
    assert generator.generated_files() == first
    for rel, text in first.items():
        assert REPO not in text and os.path.expanduser("~") + "/" not in text, rel
        assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), f"{rel} carries a date"


# --------------------------------------------------------------------------------------------
# (b) every command has --help, every option has help text


@pytest.mark.parametrize("words,command", COMMANDS, ids=COMMAND_IDS)
def test_help_exits_0_and_everything_is_described(words, command):
    r = invoke(*words, "--help")
    assert r.exit_code == 0, r
    assert r.stdout.startswith("Usage: " + " ".join(["llmcli"] + words)), r.stdout
    assert command.help or command.short_help, "the command has no help text"
    undocumented = [p.opts for p in command.params if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert not undocumented, f"options without help text: {undocumented}"
    assert r.exit_code == invoke(*words, "-h").exit_code == 0


# --------------------------------------------------------------------------------------------
# (c) the man pages


@needs_groff
@pytest.mark.parametrize("words,command", COMMANDS, ids=COMMAND_IDS)
def test_man_page_renders_without_warnings_and_documents_every_option(words, command):
    page = page_for(words)
    assert os.path.exists(page), f"no man page for {' '.join(['llmcli'] + words)}: {REGENERATE}"
    proc, text = render(page)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SEE ALSO"):
        assert re.search(rf"^{section}$", text, re.M), f"{page}: no {section} section"
    ctx = click.Context(command, info_name="llmcli")
    for param in command.get_params(ctx):
        if isinstance(param, click.Option) and not param.hidden:
            for opt in param.opts + param.secondary_opts:
                assert re.search(rf"(^|[\s,]){re.escape(opt)}([\s,]|$)", text), f"{page}: {opt} is not documented"
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            assert f"llmcli-{'-'.join(words + [name])}(1)" in text
    # Option names must survive copy and paste: rendered as ASCII hyphen-minus, not U+2010 or U+2212.
    assert "\u2010" not in text and "\u2212" not in text


@needs_groff
def test_main_page_has_environment_files_and_exit_status():
    proc, text = render(page_for([]))
    assert proc.stderr == ""
    for section in ("ENVIRONMENT", "FILES", "EXIT STATUS", "COMMANDS"):
        assert re.search(rf"^{section}$", text, re.M), f"llmcli.1: no {section} section"
    environment = text.split("\nENVIRONMENT\n", 1)[1].split("\nFILES\n", 1)[0]
    for var in ("LLMCLI_BASE_URL", "LLMCLI_API_KEY", "LLMCLI_MODEL", "LLMCLI_CONFIG", "LLMCLI_HOME",
                "LLMCLI_DEBUG", "NO_COLOR"):
        assert var in environment, var
    for name, preset in PRESETS.items():
        if preset.key_env:
            assert preset.key_env in environment and preset.base_url in environment, name
    exit_status = text.split("\nEXIT STATUS\n", 1)[1]
    for code in (0, 1, 2, 3, 4, 5, 6, 130, 143):
        assert re.search(rf"^\s+{code}\s+\S", exit_status, re.M), f"exit code {code} missing"
    assert "config.yaml" in text.split("\nFILES\n", 1)[1]


def test_every_environment_variable_the_package_reads_is_documented():
    sources = glob.glob(os.path.join(REPO, "llmcli", "**", "*.py"), recursive=True)
    used = set()
    for path in sources:
        used |= set(re.findall(r"\bLLMCLI_[A-Z][A-Z_]*\b", read(path)))
    used -= {"LLMCLI_NO_RERAISE"}  # a switch for the test suite, not for users
    page = committed("man/llmcli.1")
    missing = sorted(v for v in used if v not in page)
    assert not missing, f"add {missing} to ENVIRONMENT in scripts/generate_docs.py, then {REGENERATE}"


# --------------------------------------------------------------------------------------------
# (e) `llmcli completions SHELL` is what is committed


@pytest.mark.parametrize("shell", sorted(COMPLETION_FILES))
def test_completions_command_prints_the_committed_script(shell):
    r = invoke("completions", shell)
    assert r.exit_code == 0, r
    assert r.stdout == committed(COMPLETION_FILES[shell]), REGENERATE
    assert "_LLMCLI_COMPLETE=" in r.stdout


@pytest.mark.parametrize("shell,check", [("bash", ["bash", "-n"]), ("zsh", ["zsh", "-n"]), ("fish", ["fish", "-n"])])
def test_completion_scripts_parse(shell, check):
    if shutil.which(check[0]) is None:
        pytest.skip(f"{check[0]} is not installed")
    proc = subprocess.run(check + [os.path.join(REPO, COMPLETION_FILES[shell])], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------------------
# (d) completion, as bash asks for it and in a real interactive bash

needs_console_script = pytest.mark.skipif(not os.path.exists(LLMCLI), reason=f"{LLMCLI} is not installed")

CONFIG_FOR_COMPLETION = """\
providers:
  mine:
    base_url: http://127.0.0.1:9/v1
    model: mine-model
aliases:
  fast: groq/llama-3.1-8b-instant
"""


@pytest.fixture
def completion_config():
    with open(os.environ["LLMCLI_CONFIG"], "w", encoding="utf-8") as fh:
        fh.write(CONFIG_FOR_COMPLETION)


def bash_protocol(line):
    """What the bash script's `_LLMCLI_COMPLETE=bash_complete llmcli` call answers for `line`."""
    words = line.split(" ")
    env = dict(os.environ, COMP_WORDS=line, COMP_CWORD=str(len(words) - 1), _LLMCLI_COMPLETE="bash_complete")
    proc = subprocess.run([LLMCLI], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [tuple(item.split(",", 1)) for item in proc.stdout.splitlines()]


@needs_console_script
@pytest.mark.parametrize("line,expected", [
    ("llmcli as", [("plain", "ask")]),
    ("llmcli ask --mo", [("plain", "--model")]),
    ("llmcli config sh", [("plain", "show")]),
    ("llmcli ask -p gr", [("plain", "groq")]),
    ("llmcli ask -m fa", [("plain", "fast")]),
    ("llmcli completions z", [("plain", "zsh")]),
    ("llmcli ask --history ", [("file", "")]),
])
def test_bash_completion_protocol(completion_config, line, expected):
    assert bash_protocol(line) == expected


@needs_console_script
def test_bash_completion_protocol_lists_config_providers_then_presets(completion_config):
    names = [value for kind, value in bash_protocol("llmcli ask -p ")]
    assert names[0] == "mine"
    assert set(PRESETS) | {"local"} <= set(names)


class InteractiveBash:
    """bash --norc --noprofile -i on a pseudo-terminal, driven keystroke by keystroke."""

    def __init__(self, pexpect, cwd, env):
        self.pexpect = pexpect
        self.child = pexpect.spawn("bash", ["--norc", "--noprofile", "-i"], cwd=cwd, env=env, encoding="utf-8",
                                   dimensions=(40, 250), timeout=60)
        self.serial = 0
        self.run("true")

    def run(self, command):
        """Run a command line and return its output, synchronised on a marker the shell computes
        (so the echo of the typed line never matches it)."""
        self.serial += 1
        self.child.send(f"{command}; echo MARK-$(({self.serial}+1000))\r")
        self.child.expect(rf"\r\nMARK-{self.serial + 1000}\r\n")
        return self.child.before

    def line_after(self, keys):
        """Type keys (TABs included), then wrap the edited line in `echo "[…]"` to see what readline made
        of it. Readline handles keys in order, so the wrapping happens after the completion has run."""
        self.serial += 1
        self.child.send(keys)
        self.child.send(f'\x01echo "{self.serial}[\x05]"\r')
        self.child.expect(rf"\r\n{self.serial}\[([^\]\r\n]*)\]\r\n")
        return self.child.match.group(1)

    def listing_after(self, keys):
        """Type keys (TAB TAB lists candidates), then discard the line; returns what was displayed."""
        self.child.send(keys)
        return self.run("\x15true")

    def close(self):
        self.child.sendline("exit")
        self.child.expect(self.pexpect.EOF)
        self.child.close()


@pytest.fixture
def interactive_bash(tmp_path, completion_config):
    pexpect = pytest.importorskip("pexpect")
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    if not os.path.exists(LLMCLI):
        pytest.skip(f"{LLMCLI} is not installed")
    inputrc = tmp_path / "inputrc"
    inputrc.write_text("set bell-style none\nset page-completions off\nset completion-query-items 0\n"
                       "set enable-bracketed-paste off\nset horizontal-scroll-mode off\n")
    env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"]),
               INPUTRC=str(inputrc), TERM="dumb", PS1="bash$ ", PROMPT_COMMAND="", HISTFILE=os.devnull)
    env.pop("BASH_ENV", None)
    shell = InteractiveBash(pexpect, str(tmp_path), env)
    yield shell
    shell.close()


def test_bash_completion_in_an_interactive_shell(interactive_bash):
    sh = interactive_bash
    script = os.path.join(REPO, COMPLETION_FILES["bash"])
    assert "-F _llmcli_completion llmcli" in sh.run(f"source '{script}' && complete -p llmcli")

    assert sh.line_after("llmcli as\t") == "llmcli ask "
    assert sh.line_after("llmcli ask --mo\t") == "llmcli ask --model "
    assert sh.line_after("llmcli config sh\t") == "llmcli config show "
    assert sh.line_after("llmcli ask -p gr\t") == "llmcli ask -p groq "
    assert sh.line_after("llmcli ask -m fa\t") == "llmcli ask -m fast "  # an alias from the config file

    shown = sh.listing_after("llmcli ask -p \t\t")
    for name in ("openrouter", "groq", "ollama", "local", "mine"):
        assert re.search(rf"(^|\s){name}(\s|$)", shown), (name, shown)
    shown = sh.listing_after("llmcli completions \t\t")
    assert {"bash", "zsh", "fish"} <= set(shown.split())
