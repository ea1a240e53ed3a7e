#!/usr/bin/env python3
"""Benchmark the four load modes on one large file (default: a generated 1 GiB file).

For each mode it runs `lmrun load --json` several times with a warm page cache and once with a
cold one (the file evicted with posix_fadvise(DONTNEED) first) and prints a markdown table of
load time and load + touch-every-page time (medians), peak RSS, RssAnon and RssFile after every page was touched.

    python3 scripts/bench_load_modes.py [--file PATH] [--size-mib 1024] [--reps 5] [--bin PATH]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

MODES = ["file", "mmap", "mmap-mlock", "mmap-mlock-ignore-errors"]


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run(binary, path, mode):
    out = subprocess.run([binary, "load", "--json", "--load-mode", mode, path],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--bin", default="target/release/lmrun")
    a = ap.parse_args()
    path = a.file
    if path is None:
        path = os.path.expanduser(f"~/.cache/lmrun/bench-{a.size_mib}MiB.bin")
        if not os.path.exists(path) or os.path.getsize(path) != a.size_mib << 20:
            chunk = os.urandom(1 << 20)
            with open(path, "wb") as f:
                for _ in range(a.size_mib):
                    f.write(chunk)
    size = os.path.getsize(path)
    mib = lambda b: "n/a" if b is None else f"{b / 1048576:.1f}"
    print(f"file: {path} ({size} bytes); binary: {a.bin}\n")
    print("| mode | load ms warm | load+touch ms warm | load+touch ms cold | peak RSS MiB | RssAnon MiB | RssFile MiB | locked MiB | mlock |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        warm = [run(a.bin, path, mode) for _ in range(a.reps)]
        if "error" in warm[0]:
            print(f"| {mode} | error: {warm[0]['error']} | | | | | | | |")
            continue
        evict(path)
        cold = run(a.bin, path, mode)
        last = warm[-1]
        lt = lambda r: r['elapsed_ms'] + r['touch_ms']
        print(f"| {mode} | {statistics.median(r['elapsed_ms'] for r in warm):.2f} "
              f"| {statistics.median(lt(r) for r in warm):.2f} | {lt(cold):.2f} | {mib(last['peak_rss_bytes'])} | {mib(last['rss_anon_bytes'])} "
              f"| {mib(last['rss_file_bytes'])} | {mib(last.get('locked_bytes'))} | {last['mlock']} |")


if __name__ == "__main__":
    sys.exit(main())
