"""Start-up time: `llmcli --help` and a 5-chunk `ask` against a local server (wall time, median of N).

Prints numbers; asserts nothing. Run: python bench/bench_startup.py [N]
"""

import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from localserver import LocalServer, Reply, text_stream  # noqa: E402


def timed(cmd, env):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed: {proc.stderr.decode()}")
    return elapsed


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    env = dict(os.environ, NO_PROXY="127.0.0.1", LLMCLI_CONFIG=os.devnull + ".none")
    server = LocalServer().start()
    server.chat(Reply(pieces=text_stream("one ", "two ", "three ", "four ", "five")))
    llmcli = [sys.executable, "-m", "llmcli"]
    try:
        for label, args in (("llmcli --help", ["--help"]),
                            ("llmcli ask (5 chunks, local server)", ["ask", "--base-url", server.base_url, "hi"])):
            samples = [timed(llmcli + args, env) for _ in range(n)]
            print(f"{label:40s} median {statistics.median(samples) * 1000:7.1f} ms   "
                  f"min {min(samples) * 1000:7.1f} ms   max {max(samples) * 1000:7.1f} ms   (n={n})")
        baseline = [timed([sys.executable, "-c", "pass"], env) for _ in range(n)]
        print(f"{'python -c pass (interpreter baseline)':40s} median {statistics.median(baseline) * 1000:7.1f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
