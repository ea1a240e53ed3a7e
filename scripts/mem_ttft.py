#!/usr/bin/env python3
"""Start-up: time from "load the model" to the first generated token, with a warm page cache and
a cold one, per load mode and prefetch choice, beside llama.cpp (llama-cpp-python) when it is
installed.

Why: the load mode and the opt-in `--prefetch` (MADV_WILLNEED / MADV_POPULATE_READ) matter most
when the file is not in the page cache: a lazily faulted mapping reads a cold file one fault at
a time during the first forward pass, while `populate` (or mlock, which faults everything in)
reads it in large sequential requests up front.

Cold = the file evicted with posix_fadvise(POSIX_FADV_DONTNEED) right before the run (the
"cached" column says how much of the file was still in the page cache, from `fincore`; eviction
cannot drop pages another process has mapped). Each cell is the median of --reps runs; every
configuration of one model is run in the same minute, interleaved, so they share the machine's
noise. Columns: load = model_load_end − model_load_start; first token = model_load_start →
first_token (load + prompt prefill), from lmrun's stats.

Usage: python3 scripts/mem_ttft.py [--models gemma qwen] [--reps 3] [--no-llama-cpp]

Both run on a private copy of each model (see mem_common.private_copy), so that no other
process has the file mapped and eviction really makes it cold.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import mem_common as mc

LLAMA_CPP = r"""
import json, sys, time
import llama_cpp
path, mmap, mlock = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
t0 = time.perf_counter()
llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=2, use_mmap=mmap, use_mlock=mlock,
                      verbose=False)
t1 = time.perf_counter()
llm("Hello", max_tokens=1, temperature=0.0)
t2 = time.perf_counter()
print(json.dumps({"load_ms": (t1 - t0) * 1e3, "first_ms": (t2 - t0) * 1e3}))
"""

CONFIGS = [
    ("file", "none"),
    ("mmap", "none"),
    ("mmap", "willneed"),
    ("mmap", "populate"),
    ("mmap-mlock", "none"),
    ("mmap-mlock-ignore-errors", "none"),
    ("mmap-mlock-ignore-errors", "willneed"),
    ("mmap-mlock-ignore-errors", "populate"),
]
LLAMA_CONFIGS = [("llama.cpp no-mmap", False, False), ("llama.cpp mmap", True, False),
                 ("llama.cpp mmap+mlock", True, True)]


def cached_bytes(path):
    try:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
            capture_output=True, text=True, check=True,
        ).stdout
        return int(out.split()[0])
    except Exception:
        return None


def warm(path):
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def run_lmrun(model, mode, prefetch):
    out = mc.run_json(
        ["-m", str(model), "-p", "Hello", "-n", "1", "--temperature", "0", "--ctx-size", "256",
         "--threads", "2", "--load-mode", mode, "--prefetch", prefetch]
    )
    s = out["stats"]
    return {
        "load_ms": s["model_load_end_ms"] - s["model_load_start_ms"],
        "first_ms": s["first_token_ms"] - s["model_load_start_ms"],
        "prefetch_ms": s["load"].get("prefetch", {}).get("elapsed_ms", 0.0),
    }


def run_llama(model, mmap, mlock):
    out = subprocess.run(
        [sys.executable, "-c", LLAMA_CPP, str(model), "1" if mmap else "0", "1" if mlock else "0"],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["gemma", "qwen"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-llama-cpp", action="store_true")
    args = ap.parse_args()
    mc.need_binary()
    have_llama = False
    if not args.no_llama_cpp:
        have_llama = subprocess.run([sys.executable, "-c", "import llama_cpp"],
                                    capture_output=True).returncode == 0
        if not have_llama:
            print("llama.cpp: `import llama_cpp` fails here; its rows are skipped\n")

    for name in args.models:
        model = mc.private_copy(mc.model_path(name))
        size = model.stat().st_size
        configs = [("lmrun", m, p) for m, p in CONFIGS]
        if have_llama:
            configs += [("llama", label, (mm, ml)) for label, mm, ml in LLAMA_CONFIGS]
        results = {(c[1], str(c[2]), cache): [] for c in configs for cache in ("warm", "cold")}
        cached = {(c[1], str(c[2])): [] for c in configs}
        t_start = time.time()
        for rep in range(args.reps):
            for cache in ("warm", "cold"):
                for kind, a, b in configs:
                    if cache == "cold":
                        mc.evict(model)
                        cached[(a, str(b))].append(cached_bytes(model))
                    else:
                        warm(model)
                    r = run_lmrun(model, a, b) if kind == "lmrun" else run_llama(model, *b)
                    results[(a, str(b), cache)].append(r)
        minutes = (time.time() - t_start) / 60
        print(f"### {model.name} ({size / mc.MIB:.0f} MiB), median of {args.reps}, "
              f"{minutes:.1f} min\n")
        print("| runner / mode | prefetch | warm: load ms | warm: first token ms | "
              "cold: load ms | cold: first token ms | cold: cached before |")
        print("|---|---|---|---|---|---|---|")
        for kind, a, b in configs:
            w = results[(a, str(b), "warm")]
            c = results[(a, str(b), "cold")]
            cb = [x for x in cached[(a, str(b))] if x is not None]
            pf = b if kind == "lmrun" else "-"
            med = lambda rs, k: f"{mc.median([r[k] for r in rs]):.0f}"
            cached_s = f"{mc.median(cb) / mc.MIB:.0f} MiB" if cb else "n/a"
            print(f"| {a} | {pf} | {med(w, 'load_ms')} | {med(w, 'first_ms')} | "
                  f"{med(c, 'load_ms')} | {med(c, 'first_ms')} | {cached_s} |", flush=True)
        print()


if __name__ == "__main__":
    main()
