#!/usr/bin/env python3
"""Writes tiny random-weight GGUF models (llama, qwen2, gemma3) and their expected logits.

Every code path of lmrun-models runs on these in CI in well under a second: grouped-query
attention, interleaved and NeoX rope, rope frequency factors and linear rope scaling (llama),
Q/K/V biases and tied embeddings (qwen2), scaled embeddings, Q/K norms, post-norms, GELU,
sliding-window and global layers with their own rope bases, key_length != n_embd/n_head and
logit soft-capping (gemma3). Weights use several storage types (F32, F16, Q8_0, Q4_0, Q5_0, and
Q4_K/Q6_K built from random blocks), and the reference forward pass below (NumPy, float64) runs
on the dequantized weights exactly as stored.

Output: crates/lmrun-models/tests/data/tiny-<arch>.gguf and tiny-<arch>.json
(tokens and the logits of every position).

Usage: python3 scripts/models_make_tiny.py
"""
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "lmrun-models", "tests", "data")


def rand_kquant(rng, rows, cols, qtype):
    """Random but valid Q4_K / Q6_K blocks (the gguf package cannot quantize k-quants)."""
    nb = rows * cols // 256
    if qtype == T.Q4_K:
        b = rng.integers(0, 256, size=(nb, 144), dtype=np.uint8)
        d = np.full(nb, 2e-4, dtype=np.float16).view(np.uint8).reshape(nb, 2)
        dmin = np.full(nb, 1e-4, dtype=np.float16).view(np.uint8).reshape(nb, 2)
        b[:, 0:2] = d
        b[:, 2:4] = dmin
    elif qtype == T.Q6_K:
        b = rng.integers(0, 256, size=(nb, 210), dtype=np.uint8)
        b[:, 208:210] = np.full(nb, 4e-5, dtype=np.float16).view(np.uint8).reshape(nb, 2)
    else:
        raise ValueError(qtype)
    raw = b.reshape(rows, -1)
    return raw, dequantize(raw, qtype).reshape(rows, cols).astype(np.float64)


class Builder:
    def __init__(self, arch, seed):
        self.arch = arch
        self.rng = np.random.default_rng(seed)
        self.tensors = []  # (name, stored array, raw_dtype or None)
        self.w = {}  # name -> float64 values as stored

    def matrix(self, name, rows, cols, qtype, scale=None):
        scale = scale if scale is not None else 1.0 / np.sqrt(cols)
        if qtype in (T.Q4_K, T.Q6_K):
            raw, deq = rand_kquant(self.rng, rows, cols, qtype)
            self.tensors.append((name, raw, qtype))
            self.w[name] = deq
            return
        x = (self.rng.standard_normal((rows, cols)) * scale).astype(np.float32)
        if qtype == T.F32:
            self.tensors.append((name, x, None))
            self.w[name] = x.astype(np.float64)
        elif qtype == T.F16:
            h = x.astype(np.float16)
            self.tensors.append((name, h, None))
            self.w[name] = h.astype(np.float64)
        else:
            q = quantize(x, qtype)
            self.tensors.append((name, q, qtype))
            self.w[name] = dequantize(q, qtype).reshape(rows, cols).astype(np.float64)

    def vector(self, name, n, mean=1.0, std=0.1):
        x = (mean + std * self.rng.standard_normal(n)).astype(np.float32)
        self.tensors.append((name, x, None))
        self.w[name] = x.astype(np.float64)

    def write(self, path, meta):
        wr = gguf.GGUFWriter(path, self.arch)
        for fn, *args in meta:
            getattr(wr, fn)(*args)
        for name, arr, raw in self.tensors:
            if raw is None:
                wr.add_tensor(name, arr)
            else:
                wr.add_tensor(name, arr, raw_dtype=raw)
        wr.write_header_to_file()
        wr.write_kv_data_to_file()
        wr.write_tensors_to_file()
        wr.close()


# ---------------------------------------------------------------- reference forward pass (f64)

def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, n_rot, base, neox, freq_scale=1.0, factors=None):
    """x: [heads, hd]; rotates the first n_rot dims of each head."""
    x = x.copy()
    half = n_rot // 2
    i = np.arange(half)
    theta = pos * freq_scale * base ** (-2.0 * i / n_rot)
    if factors is not None:
        theta = theta / factors
    c, s = np.cos(theta), np.sin(theta)
    if neox:
        a, b = x[:, i].copy(), x[:, i + half].copy()
        x[:, i], x[:, i + half] = a * c - b * s, a * s + b * c
    else:
        a, b = x[:, 2 * i].copy(), x[:, 2 * i + 1].copy()
        x[:, 2 * i], x[:, 2 * i + 1] = a * c - b * s, a * s + b * c
    return x


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1 + np.exp(-x))


def forward(w, h, tokens):
    """Logits of every position. h: hyperparameters dict."""
    E, nh, nkv, hd, L = h["n_embd"], h["n_head"], h["n_head_kv"], h["head_dim"], h["n_layer"]
    eps = h["eps"]
    n = len(tokens)
    x = w["token_embd.weight"][tokens].copy()
    if h.get("embd_scale"):
        x *= np.sqrt(E)
    kcache = [np.zeros((n, nkv, hd)) for _ in range(L)]
    vcache = [np.zeros((n, nkv, hd)) for _ in range(L)]
    scale = 1.0 / np.sqrt(hd)
    for il in range(L):
        p = f"blk.{il}."
        swa = h.get("swa_period") and (il % h["swa_period"] < h["swa_period"] - 1)
        base = h["rope_base_swa"] if swa else h["rope_base"]
        fscale = 1.0 if swa else h.get("freq_scale", 1.0)
        xn = rms_norm(x, w[p + "attn_norm.weight"], eps)
        q = xn @ w[p + "attn_q.weight"].T
        k = xn @ w[p + "attn_k.weight"].T
        v = xn @ w[p + "attn_v.weight"].T
        if p + "attn_q.bias" in w:
            q += w[p + "attn_q.bias"]
            k += w[p + "attn_k.bias"]
            v += w[p + "attn_v.bias"]
        q = q.reshape(n, nh, hd)
        k = k.reshape(n, nkv, hd)
        v = v.reshape(n, nkv, hd)
        if p + "attn_q_norm.weight" in w:
            q = rms_norm(q, w[p + "attn_q_norm.weight"], eps)
            k = rms_norm(k, w[p + "attn_k_norm.weight"], eps)
        for t in range(n):
            q[t] = rope(q[t], t, h["n_rot"], base, h["neox"], fscale, w.get("rope_freqs.weight"))
            k[t] = rope(k[t], t, h["n_rot"], base, h["neox"], fscale, w.get("rope_freqs.weight"))
        kcache[il][:] = k
        vcache[il][:] = v
        out = np.zeros((n, nh, hd))
        g = nh // nkv
        for t in range(n):
            lo = max(0, t + 1 - h["window"]) if swa else 0
            for hh in range(nh):
                kk = kcache[il][lo:t + 1, hh // g]
                s = kk @ q[t, hh] * scale
                s = np.exp(s - s.max())
                s /= s.sum()
                out[t, hh] = s @ vcache[il][lo:t + 1, hh // g]
        o = out.reshape(n, nh * hd) @ w[p + "attn_output.weight"].T
        if p + "post_attention_norm.weight" in w:
            o = rms_norm(o, w[p + "post_attention_norm.weight"], eps)
        x = x + o
        xn = rms_norm(x, w[p + "ffn_norm.weight"], eps)
        gt = xn @ w[p + "ffn_gate.weight"].T
        up = xn @ w[p + "ffn_up.weight"].T
        act = gelu_tanh(gt) if h["act"] == "gelu" else silu(gt)
        o = (act * up) @ w[p + "ffn_down.weight"].T
        if p + "post_ffw_norm.weight" in w:
            o = rms_norm(o, w[p + "post_ffw_norm.weight"], eps)
        x = x + o
    xn = rms_norm(x, w["output_norm.weight"], eps)
    out_w = w.get("output.weight", w["token_embd.weight"])
    logits = xn @ out_w.T
    if h.get("softcap"):
        c = h["softcap"]
        logits = c * np.tanh(logits / c)
    return logits


# ---------------------------------------------------------------- the three models

def make_llama():
    b = Builder("llama", 1)
    E, nh, nkv, hd, F, V, L = 64, 4, 2, 16, 128, 128, 2
    b.matrix("token_embd.weight", V, E, T.Q4_0, scale=1.0)
    b.vector("output_norm.weight", E)
    b.matrix("output.weight", V, E, T.Q8_0, scale=0.5)
    b.vector("rope_freqs.weight", hd // 2, mean=2.0, std=0.5)
    for il in range(L):
        p = f"blk.{il}."
        b.vector(p + "attn_norm.weight", E)
        b.matrix(p + "attn_q.weight", nh * hd, E, T.F16)
        b.matrix(p + "attn_k.weight", nkv * hd, E, T.Q8_0)
        b.matrix(p + "attn_v.weight", nkv * hd, E, T.F32)
        b.matrix(p + "attn_output.weight", E, nh * hd, T.Q5_0)
        b.vector(p + "ffn_norm.weight", E)
        b.matrix(p + "ffn_gate.weight", F, E, T.Q8_0)
        b.matrix(p + "ffn_up.weight", F, E, T.F16)
        b.matrix(p + "ffn_down.weight", E, F, T.Q4_0)
    meta = [
        ("add_context_length", 256), ("add_embedding_length", E), ("add_block_count", L),
        ("add_feed_forward_length", F), ("add_head_count", nh), ("add_head_count_kv", nkv),
        ("add_layer_norm_rms_eps", 1e-5), ("add_rope_freq_base", 10000.0),
        ("add_rope_dimension_count", hd),
        ("add_rope_scaling_type", gguf.RopeScalingType.LINEAR), ("add_rope_scaling_factor", 2.0),
    ]
    h = dict(n_embd=E, n_head=nh, n_head_kv=nkv, head_dim=hd, n_layer=L, eps=1e-5, n_rot=hd,
             rope_base=10000.0, freq_scale=0.5, neox=False, act="silu")
    return b, meta, h


def make_qwen2():
    b = Builder("qwen2", 2)
    E, nh, nkv, hd, F, V, L = 64, 4, 1, 16, 96, 100, 2
    b.matrix("token_embd.weight", V, E, T.F16, scale=1.0)
    b.vector("output_norm.weight", E)
    for il in range(L):
        p = f"blk.{il}."
        b.vector(p + "attn_norm.weight", E)
        b.matrix(p + "attn_q.weight", nh * hd, E, T.Q8_0)
        b.vector(p + "attn_q.bias", nh * hd, mean=0.0, std=0.5)
        b.matrix(p + "attn_k.weight", nkv * hd, E, T.Q5_0)
        b.vector(p + "attn_k.bias", nkv * hd, mean=0.0, std=0.5)
        b.matrix(p + "attn_v.weight", nkv * hd, E, T.Q8_0)
        b.vector(p + "attn_v.bias", nkv * hd, mean=0.0, std=0.5)
        b.matrix(p + "attn_output.weight", E, nh * hd, T.F16)
        b.vector(p + "ffn_norm.weight", E)
        b.matrix(p + "ffn_gate.weight", F, E, T.Q4_0)
        b.matrix(p + "ffn_up.weight", F, E, T.Q8_0)
        b.matrix(p + "ffn_down.weight", E, F, T.Q8_0)
    meta = [
        ("add_context_length", 256), ("add_embedding_length", E), ("add_block_count", L),
        ("add_feed_forward_length", F), ("add_head_count", nh), ("add_head_count_kv", nkv),
        ("add_layer_norm_rms_eps", 1e-6), ("add_rope_freq_base", 1000000.0),
    ]
    h = dict(n_embd=E, n_head=nh, n_head_kv=nkv, head_dim=hd, n_layer=L, eps=1e-6, n_rot=hd,
             rope_base=1000000.0, neox=True, act="silu")
    return b, meta, h


def make_gemma3():
    b = Builder("gemma3", 3)
    E, nh, nkv, hd, F, V, L = 64, 2, 1, 32, 256, 160, 6
    b.matrix("token_embd.weight", V, E, T.Q8_0, scale=0.3)
    b.vector("output_norm.weight", E)
    for il in range(L):
        p = f"blk.{il}."
        b.vector(p + "attn_norm.weight", E)
        b.matrix(p + "attn_q.weight", nh * hd, E, T.F16)
        b.matrix(p + "attn_k.weight", nkv * hd, E, T.F16 if il % 2 else T.Q5_0)
        b.matrix(p + "attn_v.weight", nkv * hd, E, T.F16)
        b.vector(p + "attn_q_norm.weight", hd)
        b.vector(p + "attn_k_norm.weight", hd)
        b.matrix(p + "attn_output.weight", E, nh * hd, T.Q8_0)
        b.vector(p + "post_attention_norm.weight", E)
        b.vector(p + "ffn_norm.weight", E)
        b.matrix(p + "ffn_gate.weight", F, E, T.Q8_0)
        b.matrix(p + "ffn_up.weight", F, E, T.F32)
        b.matrix(p + "ffn_down.weight", E, F, T.Q6_K if il % 2 == 0 else T.Q4_K)
        b.vector(p + "post_ffw_norm.weight", E)
    meta = [
        ("add_context_length", 256), ("add_embedding_length", E), ("add_block_count", L),
        ("add_feed_forward_length", F), ("add_head_count", nh), ("add_head_count_kv", nkv),
        ("add_key_length", hd), ("add_value_length", hd),
        ("add_layer_norm_rms_eps", 1e-6), ("add_rope_freq_base", 1000000.0),
        ("add_sliding_window", 4), ("add_final_logit_softcapping", 8.0),
    ]
    h = dict(n_embd=E, n_head=nh, n_head_kv=nkv, head_dim=hd, n_layer=L, eps=1e-6, n_rot=hd,
             rope_base=1000000.0, rope_base_swa=10000.0, neox=True, act="gelu",
             embd_scale=True, swa_period=6, window=4, softcap=8.0)
    return b, meta, h


def make_broken():
    """Small broken variants of the qwen2 model, one per error the loader must name."""
    def variant(fname, arch=None, drop=None, reshape=None, retype=None):
        b, meta, _ = make_qwen2()
        if arch:
            b.arch = arch
        tensors = []
        for name, arr, raw in b.tensors:
            if name == drop:
                continue
            if name == reshape:
                arr = arr[:-1]  # one row short
            if name == retype:
                # MXFP4 blocks (17 bytes per 32 values): a type the kernels do not compute
                arr = np.zeros((arr.shape[0], b.w[name].shape[1] // 32 * 17), dtype=np.uint8)
                raw = T.MXFP4
            tensors.append((name, arr, raw))
        b.tensors = tensors
        b.write(os.path.join(OUT, fname), meta)
    variant("broken-arch.gguf", arch="mamba")
    variant("broken-missing.gguf", drop="blk.1.ffn_up.weight")
    variant("broken-shape.gguf", reshape="blk.0.attn_k.weight")
    variant("broken-type.gguf", retype="blk.0.ffn_gate.weight")


def main():
    os.makedirs(OUT, exist_ok=True)
    make_broken()
    for make in (make_llama, make_qwen2, make_gemma3):
        b, meta, h = make()
        path = os.path.join(OUT, f"tiny-{b.arch}.gguf")
        b.write(path, meta)
        n_vocab = b.w["token_embd.weight"].shape[0]
        tokens = [int(t) for t in np.random.default_rng(42).integers(0, n_vocab, size=40)]
        logits = forward(b.w, h, tokens)
        ref = {
            "arch": b.arch,
            "n_vocab": n_vocab,
            "tokens": tokens,
            "logits": [[float(f"{v:.6g}") for v in row] for row in logits],
        }
        with open(os.path.join(OUT, f"tiny-{b.arch}.json"), "w") as f:
            json.dump(ref, f, separators=(",", ":"))
        print(f"{path}: {os.path.getsize(path)} bytes; logits range "
              f"[{logits.min():.3f}, {logits.max():.3f}]")


if __name__ == "__main__":
    main()
