#!/usr/bin/env python3
"""lmrun vs llama.cpp's `llama-bench` on the benchmark set (scripts/benchset_make.py), same
file, same threads, the runners alternating: for each file and thread count, `--rounds` rounds
of (lmrun bench, llama-bench), each `-r REPS`, medians over rounds. Prints a Markdown table
(t/s and ratio lmrun / llama.cpp, > 1 = lmrun faster) and writes the raw numbers as JSON.
The 1-minute load average is recorded before each file; a row measured with load > 0.5 is
marked "busy" (llama.cpp's spinning pool slows several-fold when a core is taken, lmrun's
barely: such ratios flatter lmrun).

    python3 scripts/benchset_run.py [--files 'qwen2.5-1.5b-q4_k_m,...'] [--threads 1,2]
        [-p 512] [-n 128] [-r 2] [--rounds 2] [--bin target/release/lmrun]
        [--llama-bench PATH] [--out benchset.json]
"""
import argparse
import glob
import json
import os
import statistics
import subprocess

LLAMA_BENCH = "/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-bench"


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_lmrun(binary, path, t, pp, tg, reps, mode):
    out = subprocess.run([binary, "bench", "-m", path, "-p", str(pp), "-n", str(tg), "-r",
                          str(reps), "--threads", str(t), "--load-mode", mode, "--output", "json"],
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for r in json.loads(out):
        key = "pp" if r["test"].startswith("pp") else "tg"
        res[key] = r["tokens_per_s"]
        res["peak_rss_bytes"] = r.get("peak_rss_bytes")
    return res


def run_llama(binary, path, t, pp, tg, reps):
    out = subprocess.run([binary, "-m", path, "-p", str(pp), "-n", str(tg), "-r", str(reps),
                          "-t", str(t), "-o", "json"], check=True, capture_output=True,
                         text=True).stdout
    res = {}
    for r in json.loads(out):
        if r["n_prompt"] > 0 and r["n_gen"] == 0:
            res["pp"] = r["avg_ts"]
        elif r["n_gen"] > 0:
            res["tg"] = r["avg_ts"]
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=os.path.expanduser("~/.cache/lmrun/benchset"))
    ap.add_argument("--files", default="", help="comma-separated name stems; default: all")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bin", default="target/release/lmrun")
    ap.add_argument("--load-mode", default="mmap")
    ap.add_argument("--llama-bench", default=LLAMA_BENCH)
    ap.add_argument("--out", default="benchset.json")
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.dir, "*.gguf")))
    if a.files:
        want = a.files.split(",")
        files = [f for f in files if os.path.basename(f)[:-5] in want]
    raw = []
    print(f"| file | threads | llama.cpp pp{a.p} | lmrun pp{a.p} | ratio | llama.cpp tg{a.n} "
          f"| lmrun tg{a.n} | ratio | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in files:
        for t in [int(x) for x in a.threads.split(",")]:
            la = loadavg()
            got = {"lmrun": [], "llama.cpp": []}
            for _ in range(a.rounds):
                got["lmrun"].append(run_lmrun(a.bin, path, t, a.p, a.n, a.r, a.load_mode))
                got["llama.cpp"].append(run_llama(a.llama_bench, path, t, a.p, a.n, a.r))
            med = {k: {m: statistics.median(r[m] for r in v) for m in ("pp", "tg")}
                   for k, v in got.items()}
            name = os.path.basename(path)[:-5]
            busy = "busy" if la > 0.5 else f"{la:.2f}"
            L, M = med["llama.cpp"], med["lmrun"]
            print(f"| {name} | {t} | {L['pp']:.1f} | {M['pp']:.1f} | {M['pp'] / L['pp']:.2f} "
                  f"| {L['tg']:.1f} | {M['tg']:.1f} | {M['tg'] / L['tg']:.2f} | {busy} |",
                  flush=True)
            raw.append({"file": name, "threads": t, "loadavg": la, "rounds": got,
                        "median": med})
    with open(a.out, "w") as f:
        json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
