"""llmcli batch throughput at -j 1, 4, 16, 64 against a local server with 200 ms latency, and peak RSS
for streaming a 100,000-line input (issue 21). Prints numbers; asserts nothing.

    PYTHONPATH=. python bench/bench_batch.py
"""

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from localserver import LocalServer, Reply, text_stream  # noqa: E402

PIECES = text_stream("hello", usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})


def run(args, env):
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "llmcli", "batch"] + args
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    secs = time.monotonic() - t0
    rss_kb = int(p.stderr.strip().splitlines()[-1]) if p.stderr.strip() else -1
    return secs, rss_kb, p


def main():
    env = dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    d = tempfile.mkdtemp()
    slow = LocalServer().start()
    slow.chat(lambda h, rec: (time.sleep(0.2), h.play(Reply(pieces=PIECES), rec)))
    fast = LocalServer().start()
    fast.chat(Reply(pieces=PIECES))
    try:
        base = None
        for jobs in (1, 4, 16, 64):
            n = max(20, jobs * 5)
            inp = os.path.join(d, f"in{jobs}.txt")
            with open(inp, "w") as f:
                f.writelines(f"prompt {i}\n" for i in range(n))
            secs, _, p = run([inp, "-o", os.path.join(d, f"out{jobs}.jsonl"), "--base-url", slow.base_url,
                              "-j", str(jobs)], env)
            rate = n / secs
            base = base or rate
            print(f"-j {jobs:>2}: {n} items in {secs:.2f} s = {rate:.1f} items/s ({rate / base:.1f}x -j 1)")
        for n in (10_000, 100_000):
            inp = os.path.join(d, f"big{n}.txt")
            with open(inp, "w") as f:
                f.writelines(f"prompt {i}\n" for i in range(n))
            secs, rss, p = run([inp, "-o", os.devnull, "--base-url", fast.base_url, "-j", "16"], env)
            print(f"{n:,} lines, -j 16, no latency: {secs:.1f} s ({n / secs:.0f} items/s, "
                  f"{secs / n * 1000:.2f} ms wall per item), peak RSS {rss / 1024:.1f} MB")
    finally:
        slow.stop()
        fast.stop()


if __name__ == "__main__":
    main()
