import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# A suite started in the background by a non-interactive shell (`bash .ci/run &`, nohup) inherits
# SIGINT ignored, and so would every child it starts: the Ctrl-C tests would then test nothing but a
# timeout. A handled signal is reset to the default on exec, so handling it here gives children the
# disposition a terminal user has.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from localserver import LocalServer  # noqa: E402

# Real keys and settings from the developer's shell must never reach a test.
_CLEARED_PREFIXES = ("LLMCLI_",)
_CLEARED = {
    "OPENAI_API_KEY", "OPENROUTER_API_KEY", "GROQ_API_KEY", "DEEPSEEK_API_KEY", "MISTRAL_API_KEY",
    "TOGETHER_API_KEY", "FIREWORKS_API_KEY", "GEMINI_API_KEY", "BRAVE_API_KEY", "NO_COLOR",
    "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
}


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name in _CLEARED or name.startswith(_CLEARED_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "llmcli-home"
    monkeypatch.setenv("LLMCLI_HOME", str(home))
    monkeypatch.setenv("LLMCLI_CONFIG", str(tmp_path / "no-config.yaml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # web_search falls back to DuckDuckGo when nothing is configured: never let a test reach the web.
    monkeypatch.setenv("LLMCLI_DUCKDUCKGO_URL", "http://127.0.0.1:9/html/")
    # Fault tests use short, configurable back-off so the suite stays fast.
    monkeypatch.setenv("LLMCLI_RETRY_BASE_DELAY", "0.01")
    yield home


@pytest.fixture(params=["as_written", "one_write", "bytewise"])
def way(request):
    """Feed a stream as written, in one write, and one byte per write: the result must not change."""
    return request.param


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (certfile, keyfile)."""
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture
def tls_server(tls_cert):
    srv = LocalServer(tls=tls_cert).start()
    yield srv
    srv.stop()


@pytest.fixture
def server():
    srv = LocalServer().start()
    yield srv
    srv.stop()


class Result:
    def __init__(self, exit_code, stdout, stderr):
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self):
        return f"Result(exit_code={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


def log_db(home):
    """The conversation log's SQLite file under `home`, with every exchange in it: those that asks left
    waiting (logs.db.pending) are moved in first, as every llmcli command that reads the log does."""
    from llmcli.store import pending

    path = os.path.join(str(home), "logs.db")
    if pending.waiting(path):
        from llmcli.store.db import Store

        Store(path).close()
    return path


def invoke(*args, input=None, env=None):
    """Run the CLI in-process through the same entry point users get (exit-code mapping included)."""
    from click.testing import CliRunner

    from llmcli.cli.app import run_cli

    runner = CliRunner()
    with runner.isolation(input=input, env=env) as streams:
        code = run_cli([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = streams[0].getvalue(), streams[1].getvalue()
    return Result(int(code), out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


@pytest.fixture
def llmcli(server):
    """invoke() pointed at the local server."""

    def run(*args, **kwargs):
        return invoke("ask", "--base-url", server.base_url, *args, **kwargs) if args and args[0] != "--raw" \
            else invoke(*args[1:], **kwargs)

    return run
