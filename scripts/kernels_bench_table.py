#!/usr/bin/env python3
"""Print the lmrun-kernels criterion results as a Markdown table of median GB/s.

Reads target/criterion/*/*/new/{benchmark,estimates}.json left by
`cargo bench -p lmrun-kernels --bench matvec` (GB = 1e9 bytes of weight read per second).
Usage: python3 scripts/kernels_bench_table.py [group-prefix ...]
"""
import json
import os
import sys

root = os.path.join(os.path.dirname(__file__), "..", "target", "criterion")
prefixes = sys.argv[1:] or ["bandwidth", "matvec", "compute_l2", "matmul"]
rows = {}
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
        continue
    b = json.load(open(os.path.join(dirpath, "benchmark.json")))
    e = json.load(open(os.path.join(dirpath, "estimates.json")))
    if not any(b["group_id"].startswith(p) for p in prefixes):
        continue
    tp = b.get("throughput") or {}
    nbytes = tp.get("Bytes") or tp.get("BytesDecimal")
    med_ns = e["median"]["point_estimate"]
    fn = b.get("function_id") or ""
    param = b.get("value_str") or ""
    key = (b["group_id"], fn)
    gbps = nbytes / med_ns if nbytes else None  # bytes/ns == GB/s
    rows.setdefault(key, {})[param or "-"] = (gbps, med_ns)

params = sorted({p for v in rows.values() for p in v})
print("| group | bench | " + " | ".join(f"{p} GB/s (median time)" for p in params) + " |")
print("|---|---|" + "---|" * len(params))
for (g, fn), v in sorted(rows.items()):
    cells = []
    for p in params:
        if p in v:
            gbps, ns = v[p]
            t = f"{ns/1e6:.3f} ms" if ns >= 1e5 else f"{ns/1e3:.1f} µs"
            cells.append(f"{gbps:.2f} ({t})" if gbps else t)
        else:
            cells.append("")
    print(f"| {g} | {fn} | " + " | ".join(cells) + " |")
