#!/usr/bin/env python3
"""Two `lmrun run` processes on the same model: do they share one copy of the weights?

Why: the point of the mmap modes is that the weights are page-cache pages, so a second process
on the same model costs no second copy. Proportional set size (Pss) splits each shared page
between the processes that map it, so in `mmap` mode the sum of both processes' `Pss_File`
(from /proc/PID/smaps_rollup) should be about the weight bytes, not twice; in `file` mode each
process reads its own heap copy and the sum of `Pss_Anon` is twice the weights.

The script starts two generations long enough to be sampled mid-run (one thread each), waits
until both have touched their weights, reads both smaps_rollup, prints a markdown table, and
stops the two processes it started.

Usage: python3 scripts/mem_share.py [--model qwen] [--modes mmap file]
"""

import argparse
import subprocess
import sys
import time

import mem_common as mc


def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    # RssAnon / RssFile live in /proc/PID/status, not in smaps_rollup.
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in ("RssAnon:", "RssFile:"):
                out["Rss_" + parts[0][3:-1]] = int(parts[1]) * 1024
    return out


def measure(model, mode, weights, timeout):
    prompt, _ = mc.prompt_of(model, 32)
    cmd = [
        str(mc.BIN), "run", "-m", str(model), "-p", prompt, "-n", "100000", "--ignore-eos",
        "--temperature", "0", "--ctx-size", "4096", "--threads", "1", "--load-mode", mode,
        "--output", "json",
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        # Mid-run: each process has faulted in (mmap) or read (file) the weights it uses (an
        # embedding table is only touched row by row, so "all of the file" never happens):
        # wait until that figure is over half the weights, then a few seconds more.
        key = "Rss_Anon" if mode == "file" else "Rss_File"
        deadline = time.time() + timeout
        while True:
            rs = [rollup(p.pid) for p in procs]
            if all(r.get(key, 0) >= 0.5 * weights for r in rs):
                break
            if any(p.poll() is not None for p in procs):
                sys.exit(f"{mode}: an lmrun process ended early (exit {[p.poll() for p in procs]})")
            if time.time() > deadline:
                sys.exit(f"{mode}: weights not resident after {timeout} s: {rs}")
            time.sleep(0.5)
        time.sleep(3.0)
        time.sleep(2.0)  # well into decoding
        rs = [rollup(p.pid) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    return rs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen")
    ap.add_argument("--modes", nargs="+", default=["mmap", "file"])
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    mc.need_binary()
    model = mc.model_path(args.model)
    _, weights = mc.kv_cache_bytes(model, 1)
    print(f"{model.name}: weights (tensor bytes) {mc.mib(weights)} MiB\n")
    print(
        "| mode | Pss_File A + B | Rss_File of one process | Pss_Anon A + B | Rss_Anon A, B "
        "| file pages shared? |"
    )
    print("|---|---|---|---|---|---|")
    for mode in args.modes:
        a, b = measure(model, mode, weights, args.timeout)
        pf = a["Pss_File"] + b["Pss_File"]
        pa = a["Pss_Anon"] + b["Pss_Anon"]
        ratio = pf / max(a["Rss_File"], 1)
        print(
            f"| {mode} | {mc.mib(a['Pss_File'])} + {mc.mib(b['Pss_File'])} = **{mc.mib(pf)}** | "
            f"{mc.mib(a['Rss_File'])} | "
            f"{mc.mib(a['Pss_Anon'])} + {mc.mib(b['Pss_Anon'])} = **{mc.mib(pa)}** | "
            f"{mc.mib(a['Rss_Anon'])}, {mc.mib(b['Rss_Anon'])} | "
            f"sum Pss_File = {ratio:.2f} x one Rss_File |",
            flush=True,
        )
    print(
        "\nMiB, read from /proc/PID/smaps_rollup mid-generation. Pss splits a shared page between "
        "the processes mapping it: 1.00 x means the two processes hold one copy of the file's "
        "resident pages; 2.00 x would be two. Anonymous memory is never shared, so in `file` mode "
        "the weights count twice in Pss_Anon."
    )

if __name__ == "__main__":
    main()
