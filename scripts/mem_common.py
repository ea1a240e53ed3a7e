"""Shared helpers of the scripts/mem_*.py measurements: where the binary and the models are,
a long deterministic prompt of a chosen token count, KV-cache size from the GGUF metadata, and
page-cache eviction with posix_fadvise(DONTNEED).

These scripts exist to measure what the load modes cost in memory and start-up time (issue 8);
they only drive the real `lmrun` binary and read /proc, so what they print is what a user sees.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("LMRUN_BIN", ROOT / "target" / "release" / "lmrun"))
MODELS_DIR = Path(os.environ.get("LMRUN_MODELS_DIR", Path.home() / ".cache" / "lmrun" / "models"))
MODELS = {
    "gemma": MODELS_DIR / "gemma-3-270m-q4_k_m.gguf",
    "qwen": MODELS_DIR / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
}
MODES = ["file", "mmap", "mmap-mlock", "mmap-mlock-ignore-errors"]
MIB = 1024 * 1024

SENTENCE = (
    "The lighthouse keeper wrote the weather in his log every morning, and the ships that "
    "passed the cape read the same sky from the water. "
)


def need_binary():
    if not BIN.exists():
        sys.exit(f"{BIN} not found: run `cargo build --release -p lmrun-cli` first")


def model_path(name_or_path):
    p = MODELS.get(name_or_path, Path(name_or_path))
    if not p.exists():
        sys.exit(f"{p}: no such model (scripts/fetch_models.sh fetches them)")
    return p


def private_copy(path):
    """A copy of the model that no other process maps (cached under the models dir, made once).

    Cold-cache measurements need it: posix_fadvise(DONTNEED) cannot drop pages that another
    process (a test, another engineer's run) has mapped, so the shared file is never really cold
    on a busy machine."""
    d = MODELS_DIR.parent / "mem-private"
    d.mkdir(parents=True, exist_ok=True)
    dst = d / path.name
    if not dst.exists() or dst.stat().st_size != path.stat().st_size:
        tmp = dst.with_suffix(".part")
        with open(path, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(16 << 20):
                out.write(chunk)
        tmp.rename(dst)
    return dst


def token_count(model, text):
    out = subprocess.run(
        [str(BIN), "tokenize", "-m", str(model), "--output", "json", text],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return len(json.loads(out)["ids"])


def prompt_of(model, tokens):
    """A prompt of about `tokens` tokens (never more), by repeating one sentence."""
    per = max(1, token_count(model, SENTENCE) - 1)
    reps = max(1, tokens // per)
    while reps > 1 and token_count(model, SENTENCE * reps) > tokens:
        reps -= 1
    text = SENTENCE * reps
    return text, token_count(model, text)


def inspect(model):
    out = subprocess.run(
        [str(BIN), "inspect", "--json", str(model)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def kv_cache_bytes(model, ctx, elem=2):
    """K and V, f16 (lmrun's default), for `ctx` positions, from the GGUF hyperparameters."""
    info = inspect(model)
    hp = info["hyperparameters"]
    arch = info["architecture"]
    n_layer = hp[f"{arch}.block_count"]
    n_head = hp[f"{arch}.attention.head_count"]
    n_kv = hp.get(f"{arch}.attention.head_count_kv", n_head)
    n_embd = hp[f"{arch}.embedding_length"]
    meta = info.get("metadata", {})
    k_len = hp.get(f"{arch}.attention.key_length") or _meta(meta, f"{arch}.attention.key_length")
    v_len = hp.get(f"{arch}.attention.value_length") or _meta(
        meta, f"{arch}.attention.value_length"
    )
    k_len = int(k_len or n_embd // n_head)
    v_len = int(v_len or n_embd // n_head)
    return n_layer * ctx * n_kv * (k_len + v_len) * elem, info["tensor_bytes"]


def scratch_bytes(model, tokens, ctx, threads):
    """The model's scratch after a prompt chunk of `tokens` tokens (at most 512, lmrun-models'
    UBATCH), as `Model::scratch_bytes` counts it (f32 activation buffers per token, attention
    scores per thread, one row of logits) plus the matmuls' Q8 activation scratch (~1.14 bytes
    per input value of the widest matmul, the FFN down projection), from the GGUF
    hyperparameters."""
    info = inspect(model)
    hp = info["hyperparameters"]
    arch = info["architecture"]
    n_head = hp[f"{arch}.attention.head_count"]
    n_kv = hp.get(f"{arch}.attention.head_count_kv", n_head)
    n_embd = hp[f"{arch}.embedding_length"]
    n_ff = hp[f"{arch}.feed_forward_length"]
    k_len = hp.get(f"{arch}.attention.key_length") or n_embd // n_head
    v_len = hp.get(f"{arch}.attention.value_length") or n_embd // n_head
    n_vocab = info["tokenizer"]["vocab_size"]
    n = min(tokens, 512)
    # x, xn, o; q; k; v; att_hm, att; g, u
    per_token = 3 * n_embd + n_head * k_len + n_kv * (k_len + v_len) + 2 * n_head * v_len + 2 * n_ff
    f32 = 4 * (n * per_token + threads * 4 * ctx + n_vocab)
    q8 = int(n * max(n_ff, n_embd, n_head * v_len) * 292 / 256)
    return f32 + q8


def _meta(meta, key):
    if isinstance(meta, dict):
        v = meta.get(key)
        return v.get("value") if isinstance(v, dict) else v
    if isinstance(meta, list):
        for m in meta:
            if isinstance(m, dict) and m.get("key") == key:
                return m.get("value")
    return None


def evict(path):
    """Drop the file's clean pages from the page cache (a cold start on the next open)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_json(args, env=None):
    """Run `lmrun run ... --output json`; return the parsed object."""
    out = subprocess.run(
        [str(BIN), "run", *args, "--output", "json"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return json.loads(out)


def mib(b):
    return "n/a" if b is None else f"{b / MIB:.1f}"


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return float("nan")
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
