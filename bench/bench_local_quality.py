"""How good is the embedded model's first answer? Prompts × seeds × sampling settings, scored.

    python bench/bench_local_quality.py [SEEDS] [MODEL.gguf ...]

For each model file (default: the one `llmcli pull` fetched) and each sampling setting below, every
factual prompt is answered with SEEDS different seeds through llmcli's own local transport (the chat
template and defaults users get). An answer is *correct* when it names the expected fact, *fluent*
when it also ends within the token budget without repeating itself. Prints a table: correct %, fluent
%, median seconds per answer (including the one-off load), tokens/s, load time. Asserts nothing.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

PROMPTS = [
    ("What is the capital of France?", ("paris",)),
    ("What is the capital of Japan?", ("tokyo",)),
    ("How many days are there in a week?", ("seven", "7")),
    ("What is the largest planet in the solar system?", ("jupiter",)),
    ("What colour is the sky on a clear day?", ("blue",)),
    ("Who wrote Romeo and Juliet?", ("shakespeare",)),
    ("What is the boiling point of water in degrees Celsius?", ("100",)),
    ("What is 2 + 2?", ("4", "four")),
    ("What gas do plants absorb from the air?", ("carbon dioxide", "co2")),
    ("On which continent is Egypt?", ("africa",)),
]
SETTINGS = {
    "llmcli default (greedy, repeat 1.1, system prompt)": {},
    "greedy, repeat 1.1, the template's own system prompt": {"_system": None},
    "llama.cpp default (T 0.8, repeat 1.1)": {"temperature": 0.8},
    "T 0.2, repeat 1.1": {"temperature": 0.2},
    "T 0.7, top_p 0.9, repeat 1.1": {"temperature": 0.7, "top_p": 0.9},
}
MAX_TOKENS = 48
# SmolLM2's chat template adds this when a request has no system message; llmcli now sends its own.
TEMPLATE_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def repeats(text):
    words = text.lower().split()
    grams = [" ".join(words[i:i + 3]) for i in range(max(0, len(words) - 2))]
    return len(grams) != len(set(grams))


def run(model_path, seeds):
    from llmcli.config.settings import resolve_settings
    from llmcli.events import FinishReason, TextDelta
    from llmcli.wire import local
    from llmcli.wire.local import LocalTransport

    settings = resolve_settings({"provider": "local", "model": model_path})
    transport = LocalTransport(settings)
    started = time.monotonic()
    transport.load()
    load = time.monotonic() - started
    rows = []
    for label, options in SETTINGS.items():
        correct = fluent = 0
        seconds, rates = [], []
        for prompt, expected in PROMPTS:
            for seed in range(1, seeds + 1):
                request = dict(options)
                messages = [{"role": "user", "content": prompt}]
                if "_system" in request:  # None: the chat template's own system prompt, as llmcli sent before
                    if request.pop("_system") is None:
                        messages.insert(0, {"role": "system", "content": TEMPLATE_SYSTEM})
                body = dict(request, messages=messages, max_tokens=MAX_TOKENS, seed=seed)
                # A fresh context for every answer, as every `llmcli ask` has: llama.cpp reuses a shared
                # prompt prefix otherwise, and greedy answers then depend on what was asked before.
                for loaded in local._models.values():
                    loaded.llama.reset()
                t0 = time.monotonic()
                (exchange,) = list(transport.open(body))
                text, finish = [], None
                for ev in exchange.events():
                    if isinstance(ev, TextDelta):
                        text.append(ev.text)
                    elif isinstance(ev, FinishReason):
                        finish = ev.reason
                exchange.close()
                elapsed = time.monotonic() - t0
                answer = "".join(text)
                stats = exchange.loaded.llama.last_generation
                seconds.append(elapsed)
                if stats and stats.completion_tokens and elapsed:
                    rates.append(stats.completion_tokens / elapsed)
                ok = any(e in answer.lower() for e in expected)
                correct += ok
                fluent += ok and finish == "stop" and not repeats(answer)
        n = len(PROMPTS) * seeds
        rows.append((label, 100 * correct / n, 100 * fluent / n, statistics.median(seconds),
                     statistics.median(rates) if rates else 0.0))
    return load, rows


def main():
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    models = sys.argv[2:]
    if not models:
        from llmcli.wire.local import default_model_file

        models = [default_model_file()]
    for model in models:
        load, rows = run(model, seeds)
        print(f"\n{os.path.basename(model)}: load {load:.2f} s, {len(PROMPTS)} prompts x {seeds} seeds, "
              f"max_tokens {MAX_TOKENS}")
        print(f"{'setting':38} {'correct':>8} {'fluent':>8} {'s/answer':>9} {'tok/s':>7}")
        for label, correct, fluent, secs, rate in rows:
            print(f"{label:38} {correct:7.0f}% {fluent:7.0f}% {secs:9.2f} {rate:7.1f}")


if __name__ == "__main__":
    main()
