#!/usr/bin/env python3
"""Serving throughput: aggregate generated tokens/s and p50/p95 time to first token with 1, 4
and 8 concurrent streaming clients (fixed prompts, fixed max_tokens, greedy), against a running
OpenAI-compatible server — `lmrun serve` or llama-server started with the same model,
--parallel and threads. Run the two servers one after the other on a quiet machine.

    lmrun serve -m MODEL --parallel 4 --threads 2 --port 8080 &
    python3 scripts/bench_serve.py --url http://127.0.0.1:8080 --label lmrun
    llama-server -m MODEL --parallel 4 -t 2 --port 8081 &
    python3 scripts/bench_serve.py --url http://127.0.0.1:8081 --label llama-server

Only the standard library is used (threads and http.client)."""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse

PROMPTS = [
    "Write a Python function that checks whether a number is prime.",
    "Explain what a hash map is in two sentences.",
    "List three uses of the Rust programming language.",
    "What is the capital of France? Answer in one sentence.",
    "Write a haiku about the sea.",
    "Describe how a CPU cache works.",
    "Give me a short recipe for pancakes.",
    "Why is the sky blue?",
]


def one(url, i, max_tokens, out):
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({"messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}, "ignore_eos": True})
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, (r.status, r.read())
    ttft, tokens = None, 0
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        d = json.loads(line[6:])
        if d.get("usage"):
            tokens = d["usage"]["completion_tokens"]
        for ch in d.get("choices", []):
            if ch.get("delta", {}).get("content") and ttft is None:
                ttft = time.perf_counter() - t0
    out.append((ttft or 0.0, tokens, time.perf_counter() - t0))


def level(url, n, max_tokens):
    out, ts = [], []
    t0 = time.perf_counter()
    for i in range(n):
        t = threading.Thread(target=one, args=(url, i, max_tokens, out))
        t.start()
        ts.append(t)
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    toks = sum(o[1] for o in out)
    ttfts = sorted(o[0] for o in out)
    p95 = ttfts[min(len(ttfts) - 1, int(round(0.95 * (len(ttfts) - 1))))]
    return toks / wall, statistics.median(ttfts), p95, toks


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--label", default="server")
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    level(a.url, 1, 8)  # warm-up
    print("| server | clients | aggregate tokens/s (median) | TTFT p50 ms | TTFT p95 ms |")
    print("|---|---|---|---|---|")
    for n in [int(x) for x in a.clients.split(",")]:
        runs = [level(a.url, n, a.max_tokens) for _ in range(a.rounds)]
        runs.sort(key=lambda r: r[0])
        tps, p50, p95, _ = runs[len(runs) // 2]
        print(f"| {a.label} | {n} | {tps:.1f} | {p50 * 1000:.0f} | {p95 * 1000:.0f} |", flush=True)


if __name__ == "__main__":
    main()
