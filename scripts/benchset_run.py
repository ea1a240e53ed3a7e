#!/usr/bin/env python3
"""lmrun vs llama.cpp's llama-bench on every file of the benchmark set (scripts/benchset_make.py),
same prompt/generation lengths, threads and repetitions, the two runners alternating.

For each file and thread count, --rounds times: `lmrun bench -m F -p P -n N -r R+1 --threads T
--load-mode mmap --output json` (its first repetition of each test is dropped: it stands for
llama-bench's warm-up run, which llama-bench does not count), then `llama-bench -m F -p P -n N
-t T -r R -o json`. The rounds alternate the runners (lmrun, llama.cpp, lmrun, llama.cpp, …) so
that the machine's noise hits both alike; each runner's figure is the median of all its samples
(R × rounds), the ratio is lmrun ÷ llama.cpp (> 1: lmrun is faster).

Besides tokens/s it records, per measurement: the 1-minute load average before and after, how
much CPU other processes used just before the start (1 s of /proc/stat) and during the run (the
machine's busy CPU time minus the runner's own), the runner's peak RSS (wait4) and the peak of
its anonymous memory (RssAnon, sampled from /proc every 0.1 s), and lmrun's own peak RSS report.
A row is marked "busy" when other processes used more than half a core before or during any of
its measurements. (The load average alone cannot tell: a 2-thread run leaves it near 2 for a
minute after it ends.) Measure quiet; busy ratios flatter lmrun (llama.cpp's spinning pool slows
down much more than lmrun's when a core is taken).

Prints a Markdown table (rows as they finish) and writes every raw number, the machine (CPU
model, cores, flags) and both runners' versions to --out (JSON, rewritten after each row).

    python3 scripts/benchset_run.py                                  # the whole set, 1 and 2 threads
    python3 scripts/benchset_run.py --models qwen2.5-1.5b --types Q4_K_M,pure-Q4_K --threads 1
    python3 scripts/benchset_run.py --files my.gguf -p 64 -n 16 -r 1 --rounds 1
Run it on a quiet machine (nothing else running); the whole set takes hours on 2 cores.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchset_make as bs  # noqa: E402  (the set: shapes, types, file names, folder)
from mem_common import BIN as LMRUN_BIN  # noqa: E402  (target/release/lmrun or $LMRUN_BIN)

LLAMA_BENCH = os.path.join(bs.LLAMA_CPP, "build", "bin", "llama-bench")
MIB = 1 << 20
BUSY_CORES = 0.5


# ---------------------------------------------------------------- the machine

def machine():
    info = {"cpu": None, "logical_cpus": os.cpu_count(), "kernel": platform.release()}
    cores, flags = set(), set()
    phys = core = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            k, v = k.strip(), v.strip()
            if k == "model name" and info["cpu"] is None:
                info["cpu"] = v
            elif k == "physical id":
                phys = v
            elif k == "core id":
                core = v
            elif k == "flags" and not flags:
                flags = set(v.split())
            elif not k and core is not None:
                cores.add((phys, core))
                phys = core = None
    if core is not None:
        cores.add((phys, core))
    info["physical_cores"] = len(cores) or os.cpu_count()
    info["simd"] = [x for x in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                                "avx512_bf16", "avx_vnni", "amx_int8") if x in flags]
    with open("/proc/meminfo") as f:
        info["mem_total_kib"] = int(f.readline().split()[1])
    return info


def git_version():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        return subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"],
                              capture_output=True, text=True).stdout.strip() or None
    except OSError:
        return None


# ---------------------------------------------------------------- one measured process

def cpu_busy_jiffies():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    total = sum(v[:8])  # guest time is already in user
    return total - idle, total


def others_cores(seconds=1.0):
    """Cores' worth of CPU that other processes use now (this script sleeps meanwhile)."""
    b0, t0 = cpu_busy_jiffies()
    time.sleep(seconds)
    b1, t1 = cpu_busy_jiffies()
    return (b1 - b0) / max(1, t1 - t0) * os.cpu_count()


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def measure(cmd, settle):
    """Runs cmd (waiting up to `settle` s for a quiet machine first); returns its stdout and what
    the run cost and met."""
    t_end = time.time() + settle
    while True:
        before = others_cores()
        if before <= BUSY_CORES or time.time() >= t_end:
            break
    rec = {"cmd": cmd, "loadavg_before": round(os.getloadavg()[0], 2),
           "others_cores_before": round(before, 2)}
    hz = os.sysconf("SC_CLK_TCK")
    b0, _ = cpu_busy_jiffies()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample():
        while not done.wait(0.1):
            for k, v in proc_status(p.pid).items():
                peak[k] = max(peak[k], v)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    # communicate() drains the pipes; wait4 afterwards reaps the child with its rusage.
    out, err = [], []
    t_out = threading.Thread(target=lambda: out.append(p.stdout.read()))
    t_err = threading.Thread(target=lambda: err.append(p.stderr.read()))
    t_out.start()
    t_err.start()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    t_out.join()
    t_err.join()
    b1, _ = cpu_busy_jiffies()
    own = ru.ru_utime + ru.ru_stime
    rec.update(
        rc=p.returncode, wall_s=round(wall, 3), cpu_s=round(own, 3),
        others_cores_during=round(max(0.0, ((b1 - b0) / hz - own) / wall), 2),
        loadavg_after=round(os.getloadavg()[0], 2),
        peak_rss_bytes=ru.ru_maxrss * 1024, sampled_peak_rss_bytes=peak["VmRSS"],
        sampled_peak_anon_bytes=peak["RssAnon"], sampled_peak_file_bytes=peak["RssFile"])
    rec["busy"] = max(rec["others_cores_before"], rec["others_cores_during"]) > BUSY_CORES
    if p.returncode != 0:
        rec["stderr_tail"] = err[0][-2000:]
    return out[0], rec


# ---------------------------------------------------------------- the two runners

def run_lmrun(a, path, threads):
    """{test: [tokens/s, …]} from R+1 repetitions, the first dropped (warm-up)."""
    cmd = [a.lmrun, "bench", "-m", path, "-p", str(a.p), "-n", str(a.n), "-r", str(a.r + 1),
           "--threads", str(threads), "--load-mode", a.load_mode, "--output", "json"]
    out, rec = measure(cmd, a.settle)
    res = {}
    if rec["rc"] == 0:
        rows = json.loads(out)
        rec["report"] = rows
        res = {r["test"]: r["samples"][1:] for r in rows}
        rec["isa"] = rows[0].get("isa") if rows else None
        rec["self_peak_rss_bytes"] = max((r.get("peak_rss_bytes") or 0) for r in rows) or None
    return res, rec


def run_llama(a, path, threads):
    cmd = [a.llama_bench, "-m", path, "-p", str(a.p), "-n", str(a.n), "-t", str(threads),
           "-r", str(a.r), "-o", "json"] + a.llama_args
    out, rec = measure(cmd, a.settle)
    res = {}
    if rec["rc"] == 0:
        rows = json.loads(out)
        rec["report"] = rows
        for r in rows:
            test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
            res[test] = list(r["samples_ts"])
        if rows:
            rec["build"] = f"{rows[0].get('build_commit')} ({rows[0].get('build_number')})"
            rec["cpu_info"] = rows[0].get("cpu_info")
    return res, rec


# ---------------------------------------------------------------- the set

def selected_files(a):
    if a.files:  # paths, or names in --dir with or without .gguf
        out = []
        for f in (f for f in a.files.split(",") if f):
            if not os.path.exists(f):
                f = os.path.join(a.dir, f if f.endswith(".gguf") else f + ".gguf")
            out.append((os.path.basename(f), f))
        return out
    want_types = [t.lower() for t in a.types.split(",") if t] if a.types else None
    out = []
    for m in a.models.split(","):
        for shape, qtype, pure, fname in bs.plan([m], bs.TYPES, bs.PURE, bs.PURE_MODELS):
            label = ("pure-" if pure else "") + qtype.lower()
            if want_types is None or label in want_types:
                out.append((fname, os.path.join(a.dir, fname)))
    return out


def fmt(x, spec=".1f"):
    return "—" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(bs.SHAPES),
                    help="shapes, comma separated (default: %(default)s)")
    ap.add_argument("--types", default=None,
                    help="types, e.g. Q4_K_M,Q8_0,pure-Q4_K (default: every file of the set)")
    ap.add_argument("--files", default=None,
                    help="GGUF paths or names in --dir instead of the set, comma separated")
    ap.add_argument("--dir", default=bs.OUT, help="the set's folder (default: %(default)s)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default: %(default)s)")
    ap.add_argument("-p", type=int, default=512, help="prompt tokens (default: %(default)s)")
    ap.add_argument("-n", type=int, default=128, help="generated tokens (default: %(default)s)")
    ap.add_argument("-r", type=int, default=3, help="repetitions per round (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternating rounds per file and thread count (default: %(default)s)")
    ap.add_argument("--lmrun", "--bin", default=str(LMRUN_BIN),
                    help="lmrun binary (default: %(default)s)")
    ap.add_argument("--load-mode", default="mmap", help="lmrun's load mode (default: %(default)s)")
    ap.add_argument("--llama-bench", default=LLAMA_BENCH,
                    help="llama-bench binary (default: %(default)s)")
    ap.add_argument("--llama-args", default="",
                    help="extra llama-bench arguments, space separated (e.g. '--repack 0')")
    ap.add_argument("--settle", type=float, default=20.0,
                    help="seconds to wait at most for other processes to go quiet before each "
                         "measurement (default: %(default)s)")
    ap.add_argument("--out", default=None,
                    help="raw results JSON (default: <dir>/results-<UTC time>.json)")
    a = ap.parse_args()
    a.llama_args = a.llama_args.split()
    for b in (a.lmrun, a.llama_bench):
        if not os.path.exists(b):
            sys.exit(f"{b}: not found")
    if a.out is None:
        os.makedirs(a.dir, exist_ok=True)
        a.out = os.path.join(a.dir, datetime.datetime.now(datetime.timezone.utc)
                             .strftime("results-%Y%m%dT%H%M%SZ.json"))
    threads = [int(t) for t in a.threads.split(",") if t]
    pp, tg = f"pp{a.p}", f"tg{a.n}"
    doc = {"machine": machine(), "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "lmrun": {"binary": a.lmrun, "git": git_version(), "load_mode": a.load_mode},
           "llama_bench": {"binary": a.llama_bench, "args": a.llama_args},
           "params": {"p": a.p, "n": a.n, "r": a.r, "rounds": a.rounds, "threads": threads},
           "rows": []}
    m = doc["machine"]
    print(f"{m['cpu']}, {m['physical_cores']} cores / {m['logical_cpus']} threads; "
          f"lmrun {doc['lmrun']['git']} ({a.load_mode}); raw numbers: {a.out}\n")
    print(f"| file | threads | llama.cpp {pp} t/s | lmrun {pp} | ratio | llama.cpp {tg} t/s "
          f"| lmrun {tg} | ratio | peak RSS MiB llama.cpp / lmrun | peak anon MiB llama.cpp / "
          f"lmrun | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)

    for fname, path in selected_files(a):
        if not os.path.exists(path):
            print(f"| {fname} | | | | | | | | | | missing (scripts/benchset_make.py) |", flush=True)
            continue
        for t in threads:
            row = {"file": fname, "path": path, "bytes": os.path.getsize(path), "threads": t,
                   "lmrun": [], "llama": []}
            samples = {"lmrun": {pp: [], tg: []}, "llama": {pp: [], tg: []}}
            for _ in range(a.rounds):
                for who, fn in (("lmrun", run_lmrun), ("llama", run_llama)):
                    res, rec = fn(a, path, t)
                    rec["samples"] = res
                    row[who].append(rec)
                    for k in (pp, tg):
                        samples[who][k] += res.get(k, [])
            med = {w: {k: statistics.median(v) if v else None for k, v in s.items()}
                   for w, s in samples.items()}
            ratio = {k: (med["lmrun"][k] / med["llama"][k]
                         if med["lmrun"][k] and med["llama"][k] else None) for k in (pp, tg)}
            row.update(median=med, ratio=ratio)
            doc["rows"].append(row)
            with open(a.out + ".tmp", "w") as f:
                json.dump(doc, f, indent=1)
            os.replace(a.out + ".tmp", a.out)

            def mem(who, key):
                v = [r.get(key) for r in row[who] if r.get(key)]
                return f"{max(v) / MIB:.0f}" if v else "—"

            notes = []
            for who, name in (("lmrun", "lmrun"), ("llama", "llama.cpp")):
                bad = [r for r in row[who] if r["rc"] != 0]
                if bad:
                    msg = (bad[0].get("stderr_tail") or "").strip().splitlines()
                    notes.append(f"{name} failed (exit {bad[0]['rc']}): "
                                 f"{msg[-1][:120] if msg else ''}")
            recs = row["lmrun"] + row["llama"]
            if any(r["busy"] for r in recs):
                notes.append("busy (others used up to %.1f cores; loadavg %.1f at start)" % (
                    max(max(r["others_cores_before"], r["others_cores_during"]) for r in recs),
                    max(r["loadavg_before"] for r in recs)))
            print(f"| {fname} | {t} | {fmt(med['llama'][pp])} | {fmt(med['lmrun'][pp])} "
                  f"| {fmt(ratio[pp], '.2f')} | {fmt(med['llama'][tg])} | {fmt(med['lmrun'][tg])} "
                  f"| {fmt(ratio[tg], '.2f')} | {mem('llama', 'peak_rss_bytes')} / "
                  f"{mem('lmrun', 'peak_rss_bytes')} | {mem('llama', 'sampled_peak_anon_bytes')} / "
                  f"{mem('lmrun', 'sampled_peak_anon_bytes')} | {'; '.join(notes)} |", flush=True)
    doc["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    with open(a.out + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(a.out + ".tmp", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
