#!/usr/bin/env python3
"""RssAnon and RssFile of `lmrun run` after load and after 512 tokens of context, per load mode
and model: the markdown table of README "Memory and start-up".

Why: the load mode decides where the weights live. In the mmap modes they are file-backed page
cache (RssFile), so the process's anonymous memory should be only the KV cache, scratch and the
runtime (target: <= KV cache + scratch + 2 % of the weight bytes, each as the run's stats
report them: `kv_cache_bytes`, `scratch_bytes`, `weight_bytes`; `mem_common` estimates them
from the hyperparameters as a cross-check, in the JSON rows); in `file` mode they are
anonymous heap memory. "After load" comes from the runner's stats (`rss_after_load_*_bytes`,
read right after the model is built), "after N tokens" from the stats at the end of the run.

Usage: python3 scripts/mem_table.py [--models gemma qwen] [--ctx-size 640] [--tokens 512]
(after `cargo build --release -p lmrun-cli`; models from scripts/fetch_models.sh).
"""

import argparse
import json
import sys

import mem_common as mc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["gemma", "qwen"])
    ap.add_argument("--modes", nargs="+", default=mc.MODES)
    ap.add_argument("--ctx-size", type=int, default=640)
    ap.add_argument("--tokens", type=int, default=512, help="context length to reach")
    ap.add_argument("--prompt-tokens", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the raw rows to this file")
    args = ap.parse_args()
    if args.ctx_size < args.tokens + 8:
        sys.exit("--ctx-size must exceed --tokens")
    mc.need_binary()

    rows = []
    for name in args.models:
        model = mc.model_path(name)
        kv, weights = mc.kv_cache_bytes(model, args.ctx_size)
        prompt, n_prompt = mc.prompt_of(model, args.prompt_tokens)
        scratch = mc.scratch_bytes(model, n_prompt, args.ctx_size, args.threads)
        n_new = args.tokens - n_prompt
        for mode in args.modes:
            out = mc.run_json(
                [
                    "-m", str(model), "-p", prompt, "-n", str(n_new),
                    "--temperature", "0", "--ignore-eos", "--no-echo",
                    "--ctx-size", str(args.ctx_size), "--threads", str(args.threads),
                    "--load-mode", mode,
                ]
            )
            s = out["stats"]
            ctx = s["prompt_tokens"] + s["decode_steps"] + 1
            row = {
                "model": model.name,
                "mode": mode,
                "weights": s["weight_bytes"],
                "kv": s["kv_cache_bytes"],
                "scratch": s["scratch_bytes"],
                "estimated": {"weights": weights, "kv": kv, "scratch": scratch},
                "context": ctx,
                "load_anon": s["rss_after_load_anon_bytes"],
                "load_file": s["rss_after_load_file_bytes"],
                "end_anon": s["rss_anon_bytes"],
                "end_file": s["rss_file_bytes"],
                "peak": s["peak_rss_bytes"],
                "mlock": s["load"]["mlock"],
                "locked": s["load"]["bytes_locked"],
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)

    print(
        f"| model | mode | after load: RssAnon | RssFile | after {args.tokens} tokens: RssAnon "
        f"| RssFile | anon budget (KV {args.ctx_size} + scratch + 2 % weights) | within? |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        budget = r["kv"] + r["scratch"] + 0.02 * r["weights"]
        mmap = r["mode"] != "file"
        verdict = (
            ("yes" if r["end_anon"] <= budget else f"no (+{mc.mib(r['end_anon'] - budget)})")
            if mmap
            else "n/a: weights are anonymous"
        )
        print(
            f"| {r['model'].split('-q4')[0]} | {r['mode']} | {mc.mib(r['load_anon'])} | "
            f"{mc.mib(r['load_file'])} | {mc.mib(r['end_anon'])} | {mc.mib(r['end_file'])} | "
            f"{mc.mib(budget)} (KV {mc.mib(r['kv'])}, scratch {mc.mib(r['scratch'])}) | {verdict} |"
        )
    print(
        f"\nMiB. Weights (tensor bytes): "
        + ", ".join(f"{r['model'].split('-q4')[0]} {mc.mib(r['weights'])}" for r in rows[:: len(args.modes)])
        + f"; context reached: {sorted({r['context'] for r in rows})}."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
