"""The benchmark: llmcli side by side with the 20-line reference client and `curl -N`, in one run.

Whole processes are timed over interleaved repetitions (llmcli, reference, curl, llmcli, …) and the
medians reported; CPU (user + system) and peak RSS come from wait4(2) for the child itself. The server
(bench/fastserver.py) writes prebuilt bodies, hundreds of thousands of chunks per second. Prints a
table and writes the numbers as JSON; never fails on time (the targets are printed beside the ratios).

    python bench/run.py                 # the full run (a few minutes on 2 cores)
    python bench/run.py --smoke         # small sizes, 1 repetition: what CI runs
    python bench/run.py --only c,f      # some cases
    python bench/run.py --out FILE      # JSON results (default: bench/results.json)

Cases: (a) start-up: --help, --version, a TAB completion vs `python -c pass`; (b) a 5-chunk ask;
(c) 20,000- and 200,000-chunk answers to a pipe: marginal CPU µs per chunk, peak RSS; (d) time to the
first answer byte on a pty; (e) a tool round with 1 MB of arguments in 1-byte fragments; (f) --json and
--jsonl on the 200k stream; (g) an ask with the conversation log on vs --no-log; (h) the embedded model's
tokens/s vs llama-cpp-python's own generation loop; (i) size sweeps (history, arguments, answer): the
ratio of CPU at 4x the size to 1x, ~4 when linear; (j) building the request from a 10 MB history
(OpenAI JSONL with tool calls, and a speaker transcript), detection, parsing, hygiene and the token
estimate included: 2.5 MB → 10 MB, ~4 when linear.
"""

import argparse
import json
import os
import pty
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fastserver import FastServer, text_answer  # noqa: E402


class Sample:
    __slots__ = ("wall", "cpu", "rss_mb", "out", "first_byte", "status")

    def __init__(self, wall, cpu, rss_mb, out, first_byte, status):
        self.wall, self.cpu, self.rss_mb, self.out, self.first_byte, self.status = wall, cpu, rss_mb, out, first_byte, status


_LAUNCHER = []


def launcher(tmp):
    """bench/spawn.c compiled once (None without a C compiler: RSS then includes the benchmark's own)."""
    if not _LAUNCHER:
        exe = os.path.join(tmp, "spawn")
        cc = shutil.which("cc") or shutil.which("gcc")
        ok = cc and subprocess.run([cc, "-O2", "-o", exe, os.path.join(HERE, "spawn.c")]).returncode == 0
        _LAUNCHER.append(exe if ok else None)
    return _LAUNCHER[0]


def compile_llmcli():
    """Byte-compile the llmcli that will run, as `pip install` does: from a checkout under
    PYTHONDONTWRITEBYTECODE=1 each run would otherwise recompile its ~30 modules (~50 ms of (b))."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("llmcli")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            compileall.compile_dir(location, quiet=1)


def run_process(argv, env, on_pty=False, stdin_data=None):
    """Run argv to completion; wall, CPU and peak RSS of the child itself (wait4), its stdout."""
    spawn = _LAUNCHER[0] if _LAUNCHER else None
    if spawn:
        fd, usage_file = tempfile.mkstemp(prefix="rusage-")
        os.close(fd)
        argv = [spawn, usage_file] + list(argv)
    master = slave = None
    if on_pty:
        master, slave = pty.openpty()
        stdout = slave
    else:
        stdout = subprocess.PIPE
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.DEVNULL,
                            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL)
    chunks, first = [], [None]

    def drain_pipe():
        while True:
            data = proc.stdout.read1(1 << 16) if hasattr(proc.stdout, "read1") else proc.stdout.read(1 << 16)
            if not data:
                return
            if first[0] is None:
                first[0] = time.perf_counter() - t0
            chunks.append(data)

    def drain_pty():
        while True:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None or proc.returncode is not None:
                    return
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            if first[0] is None:
                first[0] = time.perf_counter() - t0
            chunks.append(data)

    if on_pty:
        os.close(slave)
    reader = threading.Thread(target=drain_pty if on_pty else drain_pipe, daemon=True)
    reader.start()
    if stdin_data is not None:
        proc.stdin.write(stdin_data)
        proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(10)
    if on_pty:
        os.close(master)
    cpu, rss_kb = usage.ru_utime + usage.ru_stime, usage.ru_maxrss
    if spawn:
        with open(usage_file) as f:
            utime, stime, rss_kb, code = f.read().split()
        os.unlink(usage_file)
        cpu, rss_kb, proc.returncode = float(utime) + float(stime), int(rss_kb), int(code)
    return Sample(wall, cpu, rss_kb / 1024, b"".join(chunks), first[0], proc.returncode)


def _sweep_row(label, small, big, floor):
    """A size sweep's row: (CPU at 4× − floor) / (CPU at 1× − floor), ~4 when linear. Below 5 ms above
    the floor the difference is noise (smoke sizes): reported, not judged."""
    if small - floor < 0.005:
        return {"label": label, "cpu_ms": big * 1000, "ratio": None,
                "target": "≈ 4 (linear): too small to tell at this size", "met": None}
    ratio = (big - floor) / (small - floor)
    return {"label": label, "cpu_ms": big * 1000, "ratio": ratio, "target": "≈ 4 (linear)", "met": ratio < 6}


def interleaved(variants, reps, check=None):
    """variants: {label: (argv, env, kwargs)}; run each once per repetition, in turn. {label: [Sample]}"""
    samples = {label: [] for label in variants}
    for _ in range(reps):
        for label, (argv, env, kwargs) in variants.items():
            s = run_process(argv, env, **kwargs)
            if s.status != 0:
                raise SystemExit(f"bench: {label} exited {s.status}: {' '.join(argv)}")
            if check is not None and not check(label, s):
                raise SystemExit(f"bench: {label} gave a wrong answer ({len(s.out)} bytes): a benchmark of a "
                                 "wrong answer is worthless")
            samples[label].append(s)
    return samples


def med(samples, attr):
    values = [getattr(s, attr) for s in samples if getattr(s, attr) is not None]
    return statistics.median(values) if values else None


class Bench:
    def __init__(self, args):
        self.args = args
        self.reps = args.reps
        self.results = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "reps": self.reps, "cases": {}}
        self.tmp = tempfile.mkdtemp(prefix="llmcli-bench-")
        self.spawn = launcher(self.tmp)
        self.server = FastServer().start()
        self.env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
                        LLMCLI_CONFIG=os.path.join(self.tmp, "no-config.yaml"),
                        LLMCLI_HOME=os.path.join(self.tmp, "home"), PYTHONDONTWRITEBYTECODE="1")
        for name in ("LLMCLI_DEBUG", "LLMCLI_MODEL", "LLMCLI_PROVIDER", "LLMCLI_BASE_URL", "NO_COLOR"):
            self.env.pop(name, None)
        script = shutil.which("llmcli", path=os.path.dirname(sys.executable))
        self.llmcli = [script] if script else [sys.executable, "-m", "llmcli"]
        compile_llmcli()
        self.py = sys.executable
        self.curl = shutil.which("curl")
        self.sink = os.path.join(self.tmp, "sink.yaml")
        with open(self.sink, "w") as f:
            f.write("- name: sink\n  description: Accepts text\n"
                    "  parameters: {type: object, properties: {text: {type: string}}}\n"
                    "  command: ['true']\n  stdin: none\n")

    def close(self):
        self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------
    def ask(self, scenario, *extra):
        return self.llmcli + ["ask", "--base-url", self.server.base_url(scenario), "-m", "bench-model", *extra, "hi"]

    def ref(self, scenario):
        return [self.py, os.path.join(HERE, "refclient.py"), self.server.base_url(scenario)]

    def curl_argv(self, scenario):
        body = '{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"hi"}]}'
        return [self.curl, "-sN", "-H", "Content-Type: application/json", "-d", body,
                self.server.base_url(scenario) + "/chat/completions"]

    def record(self, case, rows, notes=()):
        self.results["cases"][case] = {"rows": rows, "notes": list(notes)}
        print(f"\n({case})")
        for row in rows:
            parts = [f"  {row['label']:44s}"]
            for key, unit, fmt in (("wall_ms", "ms", "%8.1f"), ("cpu_ms", "ms cpu", "%8.1f"),
                                   ("us_per_chunk", "µs/chunk", "%7.2f"), ("rss_mb", "MB", "%6.1f"),
                                   ("first_byte_ms", "ms to 1st byte", "%7.1f"), ("tokens_per_s", "tok/s", "%7.1f"),
                                   ("ratio", "×", "%6.2f")):
                if row.get(key) is not None:
                    parts.append((fmt % row[key]) + " " + unit)
            if row.get("target") and row.get("met") is None:
                parts.append(f"[target {row['target']}]")
            elif row.get("target"):
                parts.append(f"[target {row['target']}: {'met' if row.get('met') else 'NOT met'}]")
            print("  ".join(parts))
        for note in notes:
            print("  note: " + note)
        sys.stdout.flush()

    @staticmethod
    def row(label, samples, **extra):
        r = {"label": label, "wall_ms": med(samples, "wall") * 1000, "cpu_ms": med(samples, "cpu") * 1000,
             "rss_mb": med(samples, "rss_mb")}
        fb = med(samples, "first_byte")
        if fb is not None and extra.pop("first_byte", False):
            r["first_byte_ms"] = fb * 1000
        r.update(extra)
        return r

    @staticmethod
    def target(row, ratio, limit, text):
        row["ratio"], row["target"], row["met"] = ratio, text, ratio <= limit
        return row

    # -- the cases ---------------------------------------------------------------------------
    def case_a(self):
        comp_env = dict(self.env, _LLMCLI_COMPLETE="bash_complete", COMP_WORDS="llmcli as", COMP_CWORD="1")
        variants = {
            "python -c pass": ([self.py, "-c", "pass"], self.env, {}),
            "llmcli --help": (self.llmcli + ["--help"], self.env, {}),
            "llmcli --version": (self.llmcli + ["--version"], self.env, {}),
            "llmcli TAB completion (llmcli as<TAB>)": (self.llmcli, comp_env, {}),
        }
        s = interleaved(variants, self.reps * 2)
        base = med(s["python -c pass"], "wall")
        rows = [self.row("python -c pass", s["python -c pass"])]
        for label in list(variants)[1:]:
            r = self.row(label, s[label])
            rows.append(self.target(r, med(s[label], "wall") / base, 1.6, "≤ 1.6× python -c pass"))
        self.record("a", rows)

    def case_b(self):
        expected = text_answer(5)[1].encode()
        variants = {"reference client": (self.ref("text-5"), self.env, {}),
                    "llmcli ask": (self.ask("text-5"), self.env, {})}
        if self.curl:
            variants["curl -N (floor)"] = (self.curl_argv("text-5"), self.env, {})
        s = interleaved(variants, self.reps * 2, check=lambda label, x: label.startswith("curl") or expected in x.out)
        ref = med(s["reference client"], "wall")
        rows = [self.row(k, v) for k, v in s.items()]
        self.target(rows[1], med(s["llmcli ask"], "wall") / ref, 1.1, "≤ 1.1× reference wall time")
        self.record("b", rows)

    def _per_chunk(self, sizes, variants_for, extra_label=""):
        """Marginal CPU per chunk: (CPU at N chunks − CPU at 5 chunks) / N, and peak RSS, per client."""
        small = {label: argv for label, argv in variants_for("text-5").items()}
        out = {}
        for n in sizes:
            expected = text_answer(n)[1].encode()
            variants = {}
            for label, argv in variants_for(f"text-{n}").items():
                variants[f"{label} @{n}"] = (argv, self.env, {})
            for label, argv in small.items():
                variants[f"{label} @5"] = (argv, self.env, {})
            s = interleaved(variants, self.reps,
                            check=lambda label, x: "@5" in label or "json" in label or expected in x.out)
            for label in variants_for("text-5"):
                big, little = s[f"{label} @{n}"], s[f"{label} @5"]
                out[(label, n)] = {
                    "us_per_chunk": (med(big, "cpu") - med(little, "cpu")) / n * 1e6,
                    "rss_mb": med(big, "rss_mb"), "rss_small_mb": med(little, "rss_mb"),
                    "cpu_ms": med(big, "cpu") * 1000, "wall_ms": med(big, "wall") * 1000}
        return out

    def case_c(self):
        sizes = self.args.sizes
        res = self._per_chunk(sizes, lambda sc: {"reference client": self.ref(sc), "llmcli ask": self.ask(sc)})
        rows = []
        for n in sizes:
            ref, ours = res[("reference client", n)], res[("llmcli ask", n)]
            rows.append(dict(label=f"reference client, {n:,} chunks → pipe", **ref))
            r = dict(label=f"llmcli ask, {n:,} chunks → pipe", **ours)
            self.target(r, ours["us_per_chunk"] / ref["us_per_chunk"], 1.1, "CPU/chunk ≤ 1.1× reference")
            rows.append(r)
        n = sizes[-1]
        growth = res[("llmcli ask", n)]["rss_mb"] - res[("llmcli ask", n)]["rss_small_mb"]
        rows.append({"label": f"llmcli peak RSS growth, 5 → {n:,} chunks", "rss_mb": growth,
                     "ratio": growth / 5.0, "target": "≤ 5 MB", "met": growth <= 5.0})
        self.record("c", rows)

    def case_d(self):
        variants = {"reference client on a pty": (self.ref("ttfb"), self.env, {"on_pty": True}),
                    "llmcli ask on a pty": (self.ask("ttfb"), self.env, {"on_pty": True})}
        s = interleaved(variants, self.reps * 2)
        ref, ours = med(s["reference client on a pty"], "first_byte"), med(s["llmcli ask on a pty"], "first_byte")
        rows = [self.row(k, v, first_byte=True) for k, v in s.items()]
        rows[1]["target"], rows[1]["met"] = "≤ reference + 20 ms", ours <= ref + 0.020
        self.record("d", rows, [f"llmcli − reference: {(ours - ref) * 1000:+.1f} ms"])

    def case_e(self):
        nbytes = self.args.tool_bytes
        variants = {"reference client (parse only)": (self.ref(f"tool-{nbytes}"), self.env, {}),
                    "llmcli ask (call + follow-up)": (
                        self.ask(f"tool-{nbytes}", "--functions", self.sink, "--yes"), self.env, {})}
        s = interleaved(variants, self.reps)
        ref = med(s["reference client (parse only)"], "cpu")
        rows = [self.row(k, v) for k, v in s.items()]
        rows[1]["ratio"] = med(s["llmcli ask (call + follow-up)"], "cpu") / ref
        self.record("e", rows, [f"{nbytes:,} bytes of arguments, one byte per SSE event; ratio is CPU vs reference"])

    def case_f(self):
        n = self.args.sizes[-1]
        res = self._per_chunk([n], lambda sc: {"reference client": self.ref(sc), "llmcli ask": self.ask(sc),
                                               "llmcli ask --json": self.ask(sc, "--json"),
                                               "llmcli ask --jsonl": self.ask(sc, "--jsonl")})
        rows = []
        ref = res[("reference client", n)]["us_per_chunk"]
        for label in ("reference client", "llmcli ask", "llmcli ask --json", "llmcli ask --jsonl"):
            r = dict(label=f"{label}, {n:,} chunks", **res[(label, n)])
            if label != "reference client":
                r["ratio"] = r["us_per_chunk"] / ref
            rows.append(r)
        self.record("f", rows, ["ratio is CPU per chunk vs the reference client"])

    def case_g(self):
        help_text = subprocess.run(self.llmcli + ["ask", "--help"], env=self.env, capture_output=True, text=True).stdout
        if "--no-log" not in help_text:
            self.record("g", [], ["skipped: this llmcli has no conversation log (--no-log unknown)"])
            return
        variants = {"llmcli ask --no-log": (self.ask("text-5", "--no-log"), self.env, {}),
                    "llmcli ask (log on)": (self.ask("text-5"), self.env, {})}
        # A difference of two ~100 ms medians, judged against 5 ms: more samples than the other cases, or
        # the machine's jitter (±2 ms a run here) decides it.
        s = interleaved(variants, max(20, self.reps * 4))
        off, on = med(s["llmcli ask --no-log"], "wall"), med(s["llmcli ask (log on)"], "wall")
        rows = [self.row(k, v) for k, v in s.items()]
        rows[1]["target"], rows[1]["met"] = "log adds ≤ 5 ms", (on - off) <= 0.005
        cpu_off, cpu_on = med(s["llmcli ask --no-log"], "cpu"), med(s["llmcli ask (log on)"], "cpu")
        notes = [f"the log adds {(on - off) * 1000:+.1f} ms wall, {(cpu_on - cpu_off) * 1000:+.1f} ms cpu (medians)"]
        notes += self.log_write_parts()
        self.record("g", rows, notes)

    def log_write_parts(self):
        """Where the log's time goes, measured in a child: what an ask does (import llmcli.store.pending,
        append one exchange: no sqlite3), and what the next reader of the log (-c, `logs`, chat) pays to
        move waiting exchanges into SQLite (open + move + close, for 0, 1 and 20 waiting)."""
        code = (
            "import time, tempfile\n"
            "import llmcli.errors, llmcli.run.logrecord, llmcli.wire.client, requests  # every ask has these\n"
            "t0 = time.perf_counter()\n"
            "from llmcli.store import pending\n"
            "t1 = time.perf_counter()\n"
            "from llmcli.store.ids import new_id\n"
            "path = tempfile.mkdtemp() + '/logs.db'\n"
            "def rec():\n"
            "    return {'id': new_id(), 'conversation_id': new_id(), 'prompt': 'hi', 'answer': 'yo',\n"
            "            'request_messages': [{'role': 'user', 'content': 'hi'}],\n"
            "            'response_messages': [{'role': 'assistant', 'content': 'yo'}]}\n"
            "appends = []\n"
            "for i in range(%d):\n"
            "    r = rec(); t = time.perf_counter(); pending.append(path, r); appends.append(time.perf_counter() - t)\n"
            "appends.sort()\n"
            "from llmcli.store.db import Store\n"
            "Store(path).close()\n"
            "def reader(k):\n"
            "    for _ in range(k):\n"
            "        pending.append(path, rec())\n"
            "    t = time.perf_counter(); Store(path).close(); return time.perf_counter() - t\n"
            "opens = [sorted(reader(k) for _ in range(7))[3] * 1000 for k in (0, 1, 20)]\n"
            "print((t1 - t0) * 1000, appends[len(appends) // 2] * 1000, *opens)\n"
        ) % max(5, self.reps * 2)
        env = dict(self.env)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed llmcli has its .pyc files
        subprocess.run([self.py, "-c", "import llmcli.store.db"], env=env, capture_output=True)
        proc = subprocess.run([self.py, "-c", code], env=env, capture_output=True, text=True)
        try:
            imp, append, open0, open1, open20 = (float(x) for x in proc.stdout.split())
        except ValueError:
            return ["could not measure the parts: " + proc.stderr.strip()[-200:]]
        notes = [f"parts (in-process, median): an ask imports llmcli.store.pending {imp:.2f} ms and appends its "
                 f"exchange {append:.2f} ms; the next reader of the log opens it (open + move + close) in "
                 f"{open0:.1f} ms with none waiting, {open1:.1f} ms with 1, {open20:.1f} ms with 20"]
        return notes + self.log_cost_parts(env)

    def log_cost_parts(self, env):
        """Why the log prices an exchange later (run/cost.py cost_for_log): in a fresh child, what the
        cost of one exchange takes now — the price table's import and lookup, for a model it does not
        know — against keeping its usage to price when the log is read."""
        code = (
            "import time, types\n"
            "import llmcli.run.logrecord, llmcli.config.settings as cs\n"
            "from llmcli.run.cost import cost_for_log, turn_cost\n"
            "usage = {'prompt_tokens': 9, 'completion_tokens': 5, 'total_tokens': 14}\n"
            "run = types.SimpleNamespace(usages=[usage], usage_models=['bench-model'], requests_sent=1,\n"
            "                            settings=cs.Settings(model='bench-model'))\n"
            "t = time.perf_counter(); kept = cost_for_log(run); t1 = time.perf_counter()\n"
            "cost = turn_cost(usage, 'bench-model'); t2 = time.perf_counter()\n"
            "assert kept[0] is None and cost.source == 'unknown'\n"
            "print((t1 - t) * 1000, (t2 - t1) * 1000)\n"
        )
        proc = subprocess.run([self.py, "-c", code], env=env, capture_output=True, text=True)
        try:
            later, now = (float(x) for x in proc.stdout.split())
        except ValueError:
            return ["could not measure the cost parts: " + proc.stderr.strip()[-200:]]
        return [f"cost in the log: keeping the usage to price later {later:.2f} ms; pricing now (genai-prices "
                f"import + lookup of an unknown model) {now:.1f} ms"]

    def case_h(self):
        try:
            import llama_cpp  # noqa: F401
            from llmcli.wire.local import default_model_file
            model = default_model_file()
        except Exception as exc:  # noqa: BLE001 - any reason means: not measurable here
            self.record("h", [], [f"skipped: the embedded model is not available ({exc})"])
            return
        if not model or not os.path.exists(str(model)):
            self.record("h", [], ["skipped: the model file is not downloaded (llmcli pull)"])
            return
        tokens = self.args.gen_tokens
        prompt = "Write a long story about a lighthouse keeper."
        own = [sys.executable, "-c", _LLAMA_OWN, str(model), prompt, str(tokens)]
        ours = self.llmcli + ["ask", "--json", "-m", str(model), "-o", "max_tokens", str(tokens),
                              "-o", "repeat_penalty", "0.5", prompt]
        rates = {"llama-cpp-python's own loop": [], "llmcli ask (embedded)": []}
        for _ in range(max(1, self.reps // 2)):
            s = run_process(own, self.env)
            rates["llama-cpp-python's own loop"].append(json.loads(s.out)["tokens_per_second"])
            s = run_process(ours, self.env)
            doc = json.loads(s.out)
            rates["llmcli ask (embedded)"].append(doc["timing"].get("tokens_per_second") or 0)
        own_rate = statistics.median(rates["llama-cpp-python's own loop"])
        our_rate = statistics.median(rates["llmcli ask (embedded)"])
        rows = [{"label": "llama-cpp-python's own loop", "tokens_per_s": own_rate},
                {"label": "llmcli ask (embedded)", "tokens_per_s": our_rate,
                 "ratio": our_rate / own_rate, "target": "≥ 95% of llama-cpp-python", "met": our_rate >= 0.95 * own_rate}]
        self.record("h", rows, [f"{tokens} tokens, same model ({os.path.basename(str(model))}) and prompt; "
                                "tokens/s after the first token"])

    def case_i(self):
        rows = []
        # history: N prior messages of ~1 kB each
        base = self.args.history_msgs
        for n in (base, base * 4):
            path = os.path.join(self.tmp, f"history-{n}.jsonl")
            with open(path, "w") as f:
                for i in range(n):
                    f.write(json.dumps({"role": "user" if i % 2 == 0 else "assistant", "content": "w " * 500}) + "\n")
        s = interleaved({n: (self.ask("text-5", "--history", os.path.join(self.tmp, f"history-{n}.jsonl")), self.env, {})
                         for n in (base, base * 4)}, self.reps)
        small, big = med(s[base], "cpu"), med(s[base * 4], "cpu")
        floor = med(interleaved({"x": (self.ask("text-5"), self.env, {})}, self.reps)["x"], "cpu")
        rows.append(_sweep_row(f"--history {base:,} → {base * 4:,} messages (1 kB each)", small, big, floor))
        # arguments: B and 4B bytes in 1-byte fragments
        b = self.args.tool_bytes // 4
        for kind, what in (("tool", "1 byte/event"), ("toolnoidx", "1 byte/event, no index")):
            s = interleaved({n: (self.ask(f"{kind}-{n}", "--functions", self.sink, "--yes"), self.env, {})
                             for n in (b, b * 4)}, self.reps)
            rows.append(_sweep_row(f"tool arguments {b:,} → {b * 4:,} bytes, {what}", med(s[b], "cpu"),
                                   med(s[b * 4], "cpu"), floor))
        self.record("i", rows, ["ratio: (CPU at 4× − CPU of a 5-chunk ask) / (CPU at 1× − the same); ~4 when linear"])

    def case_j(self):
        top = self.args.history_bytes
        sizes = (top // 4, top)

        def write(kind, nbytes):
            path = os.path.join(self.tmp, f"history-{kind}-{nbytes}")
            written, i = 0, 0
            with open(path, "w") as f:
                while written < nbytes:
                    if kind == "jsonl":
                        lines = [json.dumps({"role": "user", "content": f"question {i} " + "w " * 400}),
                                 json.dumps({"role": "assistant", "content": "", "tool_calls": [
                                     {"id": f"c{i}", "type": "function",
                                      "function": {"name": "f", "arguments": "{}"}}]}),
                                 # every other call unanswered: hygiene has work to do
                                 *([json.dumps({"role": "tool", "tool_call_id": f"c{i}", "content": "r"})] if i % 2 else []),
                                 json.dumps({"role": "assistant", "content": "answer " + "x " * 400})]
                    else:
                        lines = [f"[alice]: question {i} " + "w " * 400, "a second line of the turn",
                                 f"bob: answer {i} " + "x " * 400]
                    text = "\n".join(lines) + "\n"
                    f.write(text)
                    written += len(text)
                    i += 1
            return path

        rows = []
        floor = med(interleaved({"x": (self.ask("text-5"), self.env, {})}, self.reps)["x"], "cpu")
        for kind, label in (("jsonl", "OpenAI JSONL with tool calls"), ("txt", "speaker transcript")):
            paths = {n: write(kind, n) for n in sizes}
            s = interleaved({n: (self.ask("text-5", "--history", paths[n], "--max-input-tokens", "1000000000"),
                                 self.env, {}) for n in sizes}, self.reps)
            small, big = med(s[sizes[0]], "cpu"), med(s[sizes[1]], "cpu")
            ratio = (big - floor) / max(small - floor, 1e-9)
            rows.append({"label": f"{label} {sizes[0] / 1e6:g} → {sizes[1] / 1e6:g} MB", "cpu_ms": big * 1000,
                         "rss_mb": med(s[sizes[1]], "rss_mb"), "ratio": ratio, "target": "≈ 4 (linear)",
                         "met": ratio < 6})
        self.record("j", rows, ["the whole ask: read, detect, parse, clean, estimate, send; ratio as in (i)"])


_LLAMA_OWN = r"""
import json, sys, time
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=2048, verbose=False, seed=1)
first = None; n = 0
for part in llm.create_chat_completion(messages=[{"role": "user", "content": sys.argv[2]}], max_tokens=int(sys.argv[3]),
                                       temperature=0, repeat_penalty=0.5, stream=True):
    if part["choices"][0]["delta"].get("content"):
        n += 1
        if first is None:
            first = time.perf_counter()
end = time.perf_counter()
print(json.dumps({"tokens_per_second": (n - 1) / (end - first) if n > 1 else 0}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="small sizes, 1 repetition (CI)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default="abcdefghij", help="cases to run, e.g. c,f")
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    args = ap.parse_args()
    args.sizes = [20_000, 200_000]
    args.tool_bytes = 1_000_000
    args.history_msgs = 1000
    args.gen_tokens = 200
    args.history_bytes = 10_000_000
    if args.smoke:
        args.reps, args.sizes, args.tool_bytes, args.history_msgs, args.gen_tokens = 1, [2_000, 20_000], 40_000, 100, 20
        args.history_bytes = 2_000_000
    bench = Bench(args)
    if not bench.spawn:
        print("note: no C compiler: peak RSS includes the benchmark process's own (Linux keeps it across exec)")
    print(f"llmcli benchmark: Python {bench.results['python']}, {bench.results['cpus']} CPUs, "
          f"{args.reps} repetitions (medians){' — SMOKE RUN, small sizes' if args.smoke else ''}")
    t0 = time.monotonic()
    try:
        for case in args.only.replace(",", ""):
            getattr(bench, "case_" + case)()
    finally:
        bench.close()
    bench.results["seconds"] = round(time.monotonic() - t0, 1)
    with open(args.out, "w") as f:
        json.dump(bench.results, f, indent=1)
    print(f"\n{bench.results['seconds']} s; results written to {args.out}")


if __name__ == "__main__":
    main()
