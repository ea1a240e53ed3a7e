#!/usr/bin/env python3
"""Decode speed of two lmrun builds and llama.cpp on the same files, alternated round by round.

For each file and thread count, --rounds times: `OLD bench -m F -p 0 -n N -r 3 --threads T
--load-mode mmap --output json` (its first sample dropped as a warm-up), the same with NEW, then
`llama-bench -m F -p 0 -n N -t T -r 2 -o json`; prints the medians of all samples and the ratios.
Alternating the three makes a busy machine's noise hit them alike (see docs/performance.md:
busy ratios against llama.cpp still flatter lmrun).

    python3 scripts/decode_ab.py --old /tmp/lmrun_base --new target/release/lmrun \\
        --files ~/.cache/lmrun/benchset/qwen2.5-1.5b-q4_k_m.gguf --threads 1,2
"""
import argparse
import json
import statistics
import subprocess

LB = "/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-bench"


def lmrun(binary, f, th, n):
    out = subprocess.run([binary, "bench", "-m", f, "-p", "0", "-n", str(n), "-r", "3",
                          "--threads", str(th), "--load-mode", "mmap", "--output", "json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["samples"][1:]


def llama(lb, f, th, n):
    out = subprocess.run([lb, "-m", f, "-p", "0", "-n", str(n), "-t", str(th), "-r", "2",
                          "-o", "json"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["samples_ts"]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="lmrun binary A")
    ap.add_argument("--new", required=True, help="lmrun binary B")
    ap.add_argument("--files", required=True, help="GGUF files, comma separated")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-n", type=int, default=32, help="generated tokens per sample")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--llama-bench", default=LB)
    a = ap.parse_args()
    for f in a.files.split(","):
        for th in [int(t) for t in a.threads.split(",")]:
            res = {"old": [], "new": [], "llama": []}
            for _ in range(a.rounds):
                res["old"] += lmrun(a.old, f, th, a.n)
                res["new"] += lmrun(a.new, f, th, a.n)
                res["llama"] += llama(a.llama_bench, f, th, a.n)
            m = {k: statistics.median(v) for k, v in res.items()}
            print(f"{f} threads {th}: old {m['old']:.2f} new {m['new']:.2f} "
                  f"llama.cpp {m['llama']:.2f} t/s | new/old {m['new'] / m['old']:.2f} "
                  f"old/llama {m['old'] / m['llama']:.2f} new/llama {m['new'] / m['llama']:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
