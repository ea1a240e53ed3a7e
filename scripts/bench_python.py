#!/usr/bin/env python3
"""What the Python layer costs per generated token: decode speed through the `lmrun` package
with no callback, with a token callback (a list append), and with the `stream()` iterator,
alternating the three in each round (so a change in machine load hits all of them alike).
Prints medians and the per-token overhead against no callback, as a Markdown table.

    python3 scripts/bench_python.py [--model PATH ...] [--rounds 7] [-n 128] [--threads N]

Needs the package installed (`pip install ./python`). Run it on a quiet machine."""

import argparse
import os
import statistics
import time
from pathlib import Path

import lmrun

REPO = Path(__file__).resolve().parents[1]
TINY_PTE = REPO / "crates" / "lmrun-pte" / "tests" / "data" / "tiny_portable_sdpa.pte"
TOK512 = REPO / "crates" / "lmrun-cli" / "tests" / "data" / "tok512.json"
MODELS = Path(os.environ.get("LMRUN_MODELS_DIR", Path.home() / ".cache" / "lmrun" / "models"))
PROMPT = "Once upon a time, in a small village by the sea,"


def decode_rate(runner, how, n):
    """Decode tokens/s of one generation (the runner's own decode timer, ms resolution) and
    the wall seconds of the whole call (prompt included, the same for every way)."""
    runner.reset()
    cfg = lmrun.GenerationConfig(max_new_tokens=n, temperature=0, ignore_eos=True, echo=False)
    t = time.perf_counter()
    if how == "none":
        runner.generate(PROMPT, cfg)
    elif how == "callback":
        pieces = []
        runner.generate(PROMPT, cfg, token_callback=pieces.append)
    else:
        for _ in runner.stream(PROMPT, cfg):
            pass
    wall = time.perf_counter() - t
    s = runner.stats
    assert s.num_generated_tokens == n, s.num_generated_tokens
    return s.decode_tokens_per_s, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", type=Path)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    # The tiny ExecuTorch program decodes thousands of tokens/s: there the per-token cost of the
    # Python layer is not lost in the noise of a real model's step.
    models = a.model or [TINY_PTE, MODELS / "gemma-3-270m-q4_k_m.gguf",
                         MODELS / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"]
    hows = ["none", "callback", "stream"]
    print(f"lmrun {lmrun.__version__}, isa {lmrun.isa()}, {a.rounds} rounds, {a.n} tokens, "
          f"threads {a.threads or 'default'}")
    print()
    print("| model | how | decode t/s (median, runner's timer) | wall µs/token (median) | "
          "overhead µs/token vs none |")
    print("|---|---|---|---|---|")
    for m in models:
        tok = TOK512 if m.suffix == ".pte" else None
        r = lmrun.TextLLMRunner(m, tok, threads=a.threads)
        n = min(a.n, r.max_context_len - len(r.tokenize(PROMPT)) - 1)
        r.warmup(PROMPT, 16)
        rates = {h: [] for h in hows}
        walls = {h: [] for h in hows}
        for i in range(a.rounds):
            order = hows if i % 2 == 0 else list(reversed(hows))
            for h in order:
                rate, wall = decode_rate(r, h, n)
                rates[h].append(rate)
                walls[h].append(wall * 1e6 / n)
        base = statistics.median(walls["none"])
        for h in hows:
            med = statistics.median(rates[h])
            us = statistics.median(walls[h])
            print(f"| {m.name} ({n} tokens) | {h} | {med:.1f} | {us:.1f} | {us - base:+.1f} |")


if __name__ == "__main__":
    main()
