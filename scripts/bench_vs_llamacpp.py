#!/usr/bin/env python3
"""lmrun vs llama.cpp on the same GGUF, same thread counts, measured back to back.

For each model and thread count, R rounds, each one repetition of `lmrun bench --output json`
(ppN and tgN; the second of `-r 2`) and then one of llama.cpp through llama-cpp-python (`pip install
llama-cpp-python==0.3.36`, which builds llama.cpp from source; loaded once): ppN = one `eval` of
N pseudo-random tokens from an empty context, tgN = N single-token `eval` calls. The rounds
alternate the runners so that a noisy, shared machine slows both alike. Prints a markdown table:
the medians of each runner, their ratio lmrun / llama.cpp (> 1 means lmrun is faster), and the
median and range of the per-round ratios.

    python3 scripts/bench_vs_llamacpp.py [--models gemma,qwen] [-p 512] [-n 128] [-r 5] [--threads 1,2]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

MODELS = {
    "gemma": "gemma-3-270m-q4_k_m.gguf",
    "qwen": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
}


class LlamaCpp:
    """llama.cpp through llama-cpp-python, loaded once per model and thread count."""

    def __init__(self, path, threads, pp, tg):
        from llama_cpp import Llama

        self.llm = Llama(model_path=path, n_ctx=max(pp, tg) + 64, n_batch=max(pp, 32),
                         n_ubatch=max(pp, 32), n_threads=threads, n_threads_batch=threads,
                         verbose=False)
        rng = random.Random(1)
        vocab = self.llm.n_vocab()
        self.toks = [rng.randrange(100, vocab) for _ in range(pp)]
        self.gtoks = [rng.randrange(100, vocab) for _ in range(tg)]
        self.llm.reset()
        self.llm.eval(self.toks[:8])  # warm-up

    def one(self):
        """One repetition of ppN and tgN, tokens/s."""
        llm, out = self.llm, {}
        llm.reset()
        t = time.perf_counter()
        llm.eval(self.toks)
        out[f"pp{len(self.toks)}"] = len(self.toks) / (time.perf_counter() - t)
        llm.reset()
        t = time.perf_counter()
        for tok in self.gtoks:
            llm.eval([tok])
        out[f"tg{len(self.gtoks)}"] = len(self.gtoks) / (time.perf_counter() - t)
        return out


def lmrun(binary, path, threads, pp, tg):
    """One repetition of ppN and tgN from `lmrun bench`, tokens/s: the second of two, so that
    the first-use costs (scratch for the long prompt, KV pages) stay out, as they do for the
    llama.cpp instance that lives across rounds."""
    res = subprocess.run([binary, "bench", "-m", path, "-p", str(pp), "-n", str(tg), "-r", "2",
                          "--threads", str(threads), "--load-mode", "mmap", "--output", "json"],
                         capture_output=True, text=True, check=True)
    return {r["test"]: r["samples"][-1] for r in json.loads(res.stdout)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="gemma,qwen")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--bin", default="target/release/lmrun")
    a = ap.parse_args()
    cache = os.environ.get("LMRUN_MODELS_DIR", os.path.expanduser("~/.cache/lmrun/models"))
    print("| model | test | threads | lmrun t/s | llama.cpp t/s | ratio of medians "
          "| per-round ratios: median (min–max) |")
    print("|---|---|---|---|---|---|---|")
    for m in a.models.split(","):
        path = os.path.join(cache, MODELS[m])
        for t in [int(x) for x in a.threads.split(",")]:
            theirs_rt = LlamaCpp(path, t, a.p, a.n)
            tests = (f"pp{a.p}", f"tg{a.n}")
            ours = {k: [] for k in tests}
            theirs = {k: [] for k in tests}
            # Rounds alternate the two runners so that the machine's noise hits both alike.
            for _ in range(a.r):
                o = lmrun(a.bin, path, t, a.p, a.n)
                l = theirs_rt.one()
                for k in tests:
                    ours[k].append(o[k])
                    theirs[k].append(l[k])
            del theirs_rt
            for k in tests:
                om, lm = statistics.median(ours[k]), statistics.median(theirs[k])
                rr = [x / y for x, y in zip(ours[k], theirs[k])]
                print(f"| {m} | {k} | {t} | {om:.1f} | {lm:.1f} | {om / lm:.2f} "
                      f"| {statistics.median(rr):.2f} ({min(rr):.2f}–{max(rr):.2f}) |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
