#!/usr/bin/env python3
"""lmrun vs ExecuTorch's own runtime on the same `.pte` (issue 18): prefill and decode tokens/s,
load time, peak RSS and peak anonymous memory, the two alternating, same threads.

ExecuTorch side: a child Python process with `executorch.runtime` (the pybindings, XNNPACK
registered) loads the program, sets XNNPACK's thread pool to T threads
(`_unsafe_reset_threadpool`), runs one warm-up step, then per repetition a prefill of P random
tokens at position 0 (tokens/s = P / time) and N single-token decode steps after it
(tokens/s = N / time). lmrun side: `lmrun bench -m F -p P -n N -r R --threads T --output json`
in the given load mode, the same measurements (its own warm-up step first). Each child's peak
RSS comes from wait4, its peak RssAnon from /proc sampling every 20 ms.

    python3 scripts/bench_pte_vs_executorch.py --pte ~/.cache/lmrun/pte/qwen2.5-coder-0.5b-xnnpack_8da4w-g32.pte \\
        --python /work/etvenv/bin/python --threads 1,2 -p 128 -n 32 -r 3 --rounds 2

Measure on a quiet machine; prints a Markdown table and writes the raw numbers as JSON (--out).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ET_CHILD = r"""
import json, sys, time, random
import torch
from executorch.extension.llm.custom_ops import custom_ops  # registers llama::update_cache, custom_sdpa
from executorch.runtime import Runtime
from executorch.extension.pybindings import portable_lib
path, threads, P, N, R = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
portable_lib._unsafe_reset_threadpool(threads)
t0 = time.perf_counter()
prog = Runtime.get().load_program(path)
m = prog.load_method("forward")
load_ms = (time.perf_counter() - t0) * 1e3
vocab = 1000
rng = random.Random(P)
def step(toks, pos):
    return m.execute([torch.tensor([toks], dtype=torch.long), torch.tensor([pos], dtype=torch.long)])
step([rng.randrange(vocab) for _ in range(8)], 0)
pp, tg = [], []
for _ in range(R):
    toks = [rng.randrange(vocab) for _ in range(P)]
    t = time.perf_counter(); step(toks, 0); pp.append(P / (time.perf_counter() - t))
    t = time.perf_counter()
    for i in range(N):
        step([rng.randrange(vocab)], P + i)
    tg.append(N / (time.perf_counter() - t))
print(json.dumps({"load_ms": load_ms, "pp": pp, "tg": tg}))
"""


def peak_rss_of(cmd):
    """Run cmd; return (stdout, peak RSS MiB from wait4, peak RssAnon MiB from /proc sampling)."""
    # stderr to a file: a child that logs a lot would fill a pipe nobody reads yet.
    errf = tempfile.TemporaryFile(mode="w+")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True)
    peak_anon = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                for line in open(f"/proc/{p.pid}/status"):
                    if line.startswith("RssAnon:"):
                        peak_anon[0] = max(peak_anon[0], int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    errf.seek(0)
    err = errf.read()
    stop.set()
    th.join()
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed ({status}): {err[-2000:]}")
    return out, ru.ru_maxrss / 1024, peak_anon[0] / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pte", required=True)
    ap.add_argument("--python", default=sys.executable, help="a Python with executorch")
    ap.add_argument("--lmrun", default="target/release/lmrun")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("-r", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--load-mode", default="mmap-mlock-ignore-errors")
    ap.add_argument("--out", default="bench_pte.json")
    a = ap.parse_args()
    raw = []
    print("| threads | ExecuTorch pp | lmrun pp | ratio | ExecuTorch tg | lmrun tg | ratio | "
          "load ms ET / lmrun | peak RSS MiB ET / lmrun | peak anon MiB ET / lmrun |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in [int(x) for x in a.threads.split(",")]:
        et = {"pp": [], "tg": [], "load": [], "rss": [], "anon": []}
        lm = {"pp": [], "tg": [], "load": [], "rss": [], "anon": []}
        for _ in range(a.rounds):
            out, rss, anon = peak_rss_of([a.python, "-c", ET_CHILD, a.pte, str(t), str(a.p),
                                          str(a.n), str(a.r)])
            d = json.loads(out.strip().splitlines()[-1])
            et["pp"] += d["pp"]
            et["tg"] += d["tg"]
            et["load"].append(d["load_ms"])
            et["rss"].append(rss)
            et["anon"].append(anon)
            out, rss, anon = peak_rss_of([a.lmrun, "bench", "-m", a.pte, "-p", str(a.p), "-n",
                                          str(a.n), "-r", str(a.r), "--threads", str(t),
                                          "--load-mode", a.load_mode, "--output", "json"])
            for row in json.loads(out):
                key = "pp" if row["test"].startswith("pp") else "tg"
                lm[key] += row["samples"]
                lm["load"].append(row.get("load_ms", 0))
            lm["rss"].append(rss)
            lm["anon"].append(anon)
        med = statistics.median
        r = {"threads": t, "executorch": et, "lmrun": lm}
        raw.append(r)
        print(f"| {t} | {med(et['pp']):.1f} | {med(lm['pp']):.1f} | "
              f"**{med(lm['pp']) / med(et['pp']):.2f}** | {med(et['tg']):.1f} | "
              f"{med(lm['tg']):.1f} | **{med(lm['tg']) / med(et['tg']):.2f}** | "
              f"{med(et['load']):.0f} / {med(lm['load']):.0f} | {max(et['rss']):.0f} / "
              f"{max(lm['rss']):.0f} | {max(et['anon']):.0f} / {max(lm['anon']):.0f} |",
              flush=True)
        json.dump(raw, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
