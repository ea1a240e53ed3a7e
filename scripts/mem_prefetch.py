#!/usr/bin/env python3
"""What `--prefetch` does to a cold mapping, without the rest of start-up in the way: map the
whole file (`lmrun load --load-mode mmap`), prefetch it, then read one byte of every page, after
evicting the file from the page cache (posix_fadvise DONTNEED), and also warm for reference.

Why: `lmrun run` start-up also parses the header and builds the tokenizer, which hides the
read pattern; this isolates it. "ready" = prefetch time + time to touch every page = how long
until every weight byte can be read without waiting on the disk. For `willneed` the touch
overlaps with the read-ahead the advice started.

Usage: python3 scripts/mem_prefetch.py [--models gemma qwen] [--reps 5]

Both run on a private copy of each model (see mem_common.private_copy), so that no other
process has the file mapped and eviction really makes it cold.
"""

import argparse
import json
import subprocess

import mem_common as mc


def load(model, prefetch, mode="mmap"):
    out = subprocess.run(
        [str(mc.BIN), "load", str(model), "--load-mode", mode, "--prefetch", prefetch, "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    v = json.loads(out)
    pf = v["prefetch"]
    return {
        "prefetch_ms": pf["elapsed_ms"],
        "touch_ms": v["touch_ms"],
        "ready_ms": pf["elapsed_ms"] + v["touch_ms"] + v["elapsed_ms"],
        "before": pf["resident_before_bytes"],
        "after": pf["resident_after_bytes"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["gemma", "qwen"])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    mc.need_binary()
    print("| model | prefetch | cold: prefetch ms | cold: touch ms | cold: ready ms | "
          "warm: ready ms | resident before → after the advice (cold) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        model = mc.private_copy(mc.model_path(name))
        res = {(p, c): [] for p in ("none", "willneed", "populate") for c in ("cold", "warm")}
        for _ in range(args.reps):
            for p in ("none", "willneed", "populate"):
                mc.evict(model)
                res[(p, "cold")].append(load(model, p))
                res[(p, "warm")].append(load(model, p))
        for p in ("none", "willneed", "populate"):
            c, w = res[(p, "cold")], res[(p, "warm")]
            med = lambda rs, k: mc.median([r[k] for r in rs])
            ba = "-"
            if p != "none":
                ba = f"{mc.mib(med(c, 'before'))} → {mc.mib(med(c, 'after'))} MiB"
            print(f"| {model.name.split('-q4')[0]} | {p} | {med(c, 'prefetch_ms'):.1f} | "
                  f"{med(c, 'touch_ms'):.1f} | **{med(c, 'ready_ms'):.1f}** | "
                  f"{med(w, 'ready_ms'):.1f} | {ba} |", flush=True)
    print(f"\nms, median of {args.reps}; runs interleaved.")


if __name__ == "__main__":
    main()
