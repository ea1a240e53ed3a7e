#!/usr/bin/env python3
"""Decode speed with a JSON-schema grammar against unconstrained decoding (issue 21's target:
constrained >= 80 % of unconstrained), on the real models, alternating the two runs.

    python3 scripts/bench_grammar.py [--rounds 5] [--threads 2] [--lmrun target/release/lmrun]

Each run: `lmrun run --chat` with a prompt asking for JSON, greedy, 96 new tokens at most; the
constrained run adds `--json-schema` (an object with a string, an integer, an array of strings
and a nested object). Decode tokens/s come from the stats of `--output json`. Prints the median
of each and the ratio per model.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        "address": {"type": "object",
                    "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                    "required": ["city"]},
    },
    "required": ["name", "age", "languages", "address"],
}
MODELS = ["gemma-3-270m-q4_k_m.gguf", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"]
PROMPT = "Describe a fictional software engineer as a JSON object with name, age, languages " \
         "and address."


def run(lmrun, model, threads, schema_path):
    cmd = [lmrun, "run", "-m", model, "--chat", "-p", PROMPT, "--temperature", "0", "-n", "96",
           "--threads", str(threads), "--output", "json"]
    if schema_path:
        cmd += ["--json-schema", schema_path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    v = json.loads(out.stdout)
    return v["stats"]["decode_tokens_per_s"], len(v["generated_token_ids"]), v["text"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lmrun", default="target/release/lmrun")
    ap.add_argument("--models-dir", default=os.environ.get(
        "LMRUN_MODELS_DIR", os.path.expanduser("~/.cache/lmrun/models")))
    a = ap.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(SCHEMA, f)
        schema = f.name
    print("| model | unconstrained decode t/s (median) | JSON schema t/s (median) | ratio | "
          "tokens free / JSON |")
    print("|---|---|---|---|---|")
    for m in MODELS:
        path = os.path.join(a.models_dir, m)
        free, guided = [], []
        nf = ng = 0
        for _ in range(a.rounds):
            s, nf, _ = run(a.lmrun, path, a.threads, None)
            free.append(s)
            s, ng, text = run(a.lmrun, path, a.threads, schema)
            guided.append(s)
            json.loads(text)  # the constrained output parses
        f_med, g_med = statistics.median(free), statistics.median(guided)
        print(f"| {m} | {f_med:.1f} | {g_med:.1f} | {g_med / f_med:.2f} | {nf} / {ng} |")
    os.unlink(schema)


if __name__ == "__main__":
    main()
