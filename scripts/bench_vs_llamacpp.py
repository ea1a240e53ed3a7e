#!/usr/bin/env python3
"""lmrun vs llama.cpp on the same GGUF, same thread counts, measured back to back.

For each model and thread count: `lmrun bench --output json` (ppN and tgN, median of R), then
llama.cpp through llama-cpp-python (`pip install llama-cpp-python==0.3.36`, which builds
llama.cpp from source): ppN = one `eval` of N pseudo-random tokens from an empty context,
tgN = N single-token `eval` calls, median of R. Prints a markdown table with the ratios
lmrun / llama.cpp (> 1 means lmrun is faster).

    python3 scripts/bench_vs_llamacpp.py [--models gemma,qwen] [-p 512] [-n 128] [-r 3] [--threads 1,2]
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


def llamacpp(path, threads, pp, tg, reps):
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=max(pp, tg) + 64, n_batch=max(pp, 32), n_ubatch=max(pp, 32),
                n_threads=threads, n_threads_batch=threads, verbose=False)
    vocab = llm.n_vocab()
    rng = random.Random(1)
    out = {}
    toks = [rng.randrange(100, vocab) for _ in range(pp)]
    llm.reset()
    llm.eval(toks[:8])  # warm-up
    samples = []
    for _ in range(reps):
        llm.reset()
        t = time.perf_counter()
        llm.eval(toks)
        samples.append(pp / (time.perf_counter() - t))
    out[f"pp{pp}"] = samples
    gtoks = [rng.randrange(100, vocab) for _ in range(tg)]
    samples = []
    for _ in range(reps):
        llm.reset()
        t = time.perf_counter()
        for tok in gtoks:
            llm.eval([tok])
        samples.append(tg / (time.perf_counter() - t))
    out[f"tg{tg}"] = samples
    del llm
    return out


def lmrun(binary, path, threads, pp, tg, reps):
    res = subprocess.run([binary, "bench", "-m", path, "-p", str(pp), "-n", str(tg), "-r", str(reps),
                          "--threads", str(threads), "--load-mode", "mmap", "--output", "json"],
                         capture_output=True, text=True, check=True)
    return {r["test"]: r["samples"] for r in json.loads(res.stdout)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="gemma,qwen")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--bin", default="target/release/lmrun")
    a = ap.parse_args()
    cache = os.environ.get("LMRUN_MODELS_DIR", os.path.expanduser("~/.cache/lmrun/models"))
    print("| model | test | threads | lmrun t/s | llama.cpp t/s | ratio |")
    print("|---|---|---|---|---|---|")
    for m in a.models.split(","):
        path = os.path.join(cache, MODELS[m])
        for t in [int(x) for x in a.threads.split(",")]:
            ours = lmrun(a.bin, path, t, a.p, a.n, a.r)
            theirs = llamacpp(path, t, a.p, a.n, a.r)
            for test in (f"pp{a.p}", f"tg{a.n}"):
                o, l = statistics.median(ours[test]), statistics.median(theirs[test])
                print(f"| {m} | {test} | {t} | {o:.1f} | {l:.1f} | {o / l:.2f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
