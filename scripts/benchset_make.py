#!/usr/bin/env python3
"""The benchmark set of issue 17: random-weight GGUFs with the real shapes of the models people
run, quantized by llama.cpp's own `llama-quantize` into the usual mixes.

Shapes (hyperparameters, tensor names and GGUF shapes as in the published models' GGUFs):
  qwen2.5-1.5b  qwen2  1536 wide, 28 layers, 12 heads / 2 KV heads (head 128), FFN 8960,
                       vocab 151936, Q/K/V bias, rope base 1e6, rms eps 1e-6
  llama3.2-1b   llama  2048 wide, 16 layers, 32 / 8 heads (head 64), FFN 8192, vocab 128256,
                       rope base 500000 with Llama 3's `rope_freqs` factors (factor 32, low 1,
                       high 4, original context 8192), rms eps 1e-5
  llama3.2-3b   llama  3072 wide, 28 layers, 24 / 8 heads (head 128), FFN 8192, otherwise as 1B
All three tie the output to token_embd (no output.weight), as the real ones do. Tokenizer
metadata (every tokenizer.* key) is copied from llama.cpp's `models/ggml-vocab-qwen2.gguf` /
`ggml-vocab-llama-bpe.gguf`.

Files made, each `<shape>-<type>.gguf`:
  every shape:   Q4_K_M Q5_K_M Q6_K Q8_0 Q4_0 IQ4_XS   (llama-quantize's usual mixes)
  qwen2.5-1.5b:  pure-Q4_K pure-Q6_K pure-Q5_K pure-Q4_0 pure-Q8_0 pure-IQ4_XS
                 (`llama-quantize --pure`: every matrix in the one type, so each kernel is
                 measured alone; norms and biases stay F32)
about 37 GB in all, plus one F16 intermediate at a time (3 / 2.5 / 6.4 GB), deleted after its
shape is quantized. On a 2-core machine the whole set takes about an hour.

Random weights do not change speed: every kernel does the same work per block whatever the
values are (no sparsity, no data-dependent branches), so tokens/s on these files is tokens/s on
the real models of the same shape and type mix. The weights are N(0, 0.02) in F16 (norm weights
1 + N(0, 0.01), biases N(0, 0.01)), from a fixed seed: re-running gives the same files.

Files go to ~/.cache/lmrun/benchset/ ($LMRUN_BENCHSET_DIR or --out; never into the repository).
A file that already exists is skipped unless it lacks a tensor the recipe writes (it is then
remade). Each file's size and tensor type counts go to manifest.json in the same folder and are
printed at the end. llama-quantize's output goes to <file>.log next to it.

    python3 scripts/benchset_make.py                       # the whole set
    python3 scripts/benchset_make.py --models qwen2.5-1.5b --types Q4_K_M --pure ''
    python3 scripts/benchset_make.py --list                # what is made, what is there
Run it under `nice -n 19` on a shared machine.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import gguf

LLAMA_CPP = os.environ.get("LLAMA_CPP_DIR",
                           "/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp")
OUT = os.environ.get("LMRUN_BENCHSET_DIR", os.path.expanduser("~/.cache/lmrun/benchset"))
SEED = 17
STD = 0.02

LLAMA3_ROPE = dict(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_ctx=8192)
SHAPES = {
    "qwen2.5-1.5b": dict(arch="qwen2", vocab_file="ggml-vocab-qwen2.gguf", n_embd=1536,
                         n_layer=28, n_head=12, n_kv=2, ffn=8960, vocab=151936, bias=True,
                         theta=1e6, eps=1e-6, ctx=32768, rope_freqs=None),
    "llama3.2-1b": dict(arch="llama", vocab_file="ggml-vocab-llama-bpe.gguf", n_embd=2048,
                        n_layer=16, n_head=32, n_kv=8, ffn=8192, vocab=128256, bias=False,
                        theta=5e5, eps=1e-5, ctx=131072, rope_freqs=LLAMA3_ROPE),
    "llama3.2-3b": dict(arch="llama", vocab_file="ggml-vocab-llama-bpe.gguf", n_embd=3072,
                        n_layer=28, n_head=24, n_kv=8, ffn=8192, vocab=128256, bias=False,
                        theta=5e5, eps=1e-5, ctx=131072, rope_freqs=LLAMA3_ROPE),
}
TYPES = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q4_0", "IQ4_XS"]
PURE = ["Q4_K", "Q6_K", "Q5_K", "Q4_0", "Q8_0", "IQ4_XS"]
PURE_MODELS = ["qwen2.5-1.5b"]


def file_name(shape, qtype, pure):
    return f"{shape}-{'pure-' if pure else ''}{qtype.lower()}.gguf"


def plan(models, types, pure, pure_models):
    """[(shape, type, pure, file name)] in making order."""
    out = []
    for m in models:
        out += [(m, t, False, file_name(m, t, False)) for t in types]
        if m in pure_models:
            out += [(m, t, True, file_name(m, t, True)) for t in pure]
    return out


def llama3_rope_factors(head_dim, theta, r):
    """llama.cpp's convert_hf_to_gguf (conversion/llama.py, generate_extra_tensors)."""
    freqs = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    low_wavelen = r["original_ctx"] / r["low_freq_factor"]
    high_wavelen = r["original_ctx"] / r["high_freq_factor"]
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(r["factor"])
        else:
            smooth = ((r["original_ctx"] / wavelen - r["low_freq_factor"])
                      / (r["high_freq_factor"] - r["low_freq_factor"]))
            out.append(1 / ((1 - smooth) / r["factor"] + smooth))
    return np.array(out, dtype=np.float32)


def tensors(s):
    """[(name, numpy shape (rows, cols) or (n,), kind)] in file order; kind: 'mat' (F16,
    N(0, STD)), 'norm' (F32, 1 + N(0, 0.01)), 'bias' (F32, N(0, 0.01)), 'rope' (F32 factors).
    A GGUF tensor of ne = [cols, rows] is a numpy (rows, cols) array."""
    e, hd = s["n_embd"], s["n_embd"] // s["n_head"]
    kv, ffn = s["n_kv"] * hd, s["ffn"]
    t = [("token_embd.weight", (s["vocab"], e), "mat"), ("output_norm.weight", (e,), "norm")]
    if s["rope_freqs"]:
        t.append(("rope_freqs.weight", (hd // 2,), "rope"))
    for i in range(s["n_layer"]):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", (e,), "norm"), (p + "attn_q.weight", (e, e), "mat"),
              (p + "attn_k.weight", (kv, e), "mat"), (p + "attn_v.weight", (kv, e), "mat")]
        if s["bias"]:
            t += [(p + "attn_q.bias", (e,), "bias"), (p + "attn_k.bias", (kv,), "bias"),
                  (p + "attn_v.bias", (kv,), "bias")]
        t += [(p + "attn_output.weight", (e, e), "mat"), (p + "ffn_norm.weight", (e,), "norm"),
              (p + "ffn_gate.weight", (ffn, e), "mat"), (p + "ffn_up.weight", (ffn, e), "mat"),
              (p + "ffn_down.weight", (e, ffn), "mat")]
    return t


def copy_tokenizer(w, vocab_path, n_vocab):
    """Copies every tokenizer.* key of llama.cpp's vocab file; checks the vocabulary size."""
    r = gguf.GGUFReader(vocab_path)
    for name, field in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        t = field.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            et = field.types[1]
            if et == gguf.GGUFValueType.STRING:
                vals = [bytes(field.parts[i]).decode("utf-8", "surrogateescape")
                        for i in field.data]
            else:
                vals = [field.parts[i][0].item() for i in field.data]
            if name == "tokenizer.ggml.tokens" and len(vals) != n_vocab:
                # the vocab file may hold fewer tokens than the model's padded embedding
                vals += [f"[PAD{i}]" for i in range(len(vals), n_vocab)]
            elif name in ("tokenizer.ggml.token_type", "tokenizer.ggml.scores") and len(vals) < n_vocab:
                pad = gguf.TokenType.UNUSED if name.endswith("token_type") else 0.0
                vals += [pad] * (n_vocab - len(vals))
            w.add_key_value(name, vals, t, sub_type=et)
        elif t == gguf.GGUFValueType.STRING:
            w.add_key_value(name, bytes(field.parts[-1]).decode("utf-8"), t)
        else:
            w.add_key_value(name, field.parts[-1][0].item(), t)


def make_f16(shape, s, path, vocab_dir):
    """Writes the F16 model one tensor at a time (at most one tensor in memory: the 3B's
    token_embd, 0.8 GB)."""
    rng = np.random.default_rng(SEED)
    w = gguf.GGUFWriter(path, s["arch"])
    w.add_name(f"{shape}-random")
    w.add_context_length(s["ctx"])
    w.add_embedding_length(s["n_embd"])
    w.add_block_count(s["n_layer"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["n_head"])
    w.add_head_count_kv(s["n_kv"])
    w.add_rope_freq_base(s["theta"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    if s["arch"] == "llama":
        w.add_vocab_size(s["vocab"])
        w.add_rope_dimension_count(s["n_embd"] // s["n_head"])
    copy_tokenizer(w, os.path.join(vocab_dir, s["vocab_file"]), s["vocab"])
    plan_ = tensors(s)
    for name, shp, kind in plan_:
        dt = np.float16 if kind == "mat" else np.float32
        w.add_tensor_info(name, shp, np.dtype(dt), int(np.prod(shp)) * np.dtype(dt).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shp, kind in plan_:
        if kind == "mat":
            rows, cols = shp
            arr = np.empty(shp, dtype=np.float16)
            buf = np.empty((max(1, (1 << 24) // cols), cols), dtype=np.float32)
            for r0 in range(0, rows, buf.shape[0]):
                b = buf[:min(buf.shape[0], rows - r0)]
                rng.standard_normal(dtype=np.float32, out=b)
                b *= np.float32(STD)
                arr[r0:r0 + b.shape[0]] = b
        elif kind == "rope":
            hd = s["n_embd"] // s["n_head"]
            arr = llama3_rope_factors(hd, s["theta"], s["rope_freqs"])
        else:
            mean = 1.0 if kind == "norm" else 0.0
            arr = (mean + 0.01 * rng.standard_normal(shp, dtype=np.float32)).astype(np.float32)
        w.write_tensor_data(arr)
        del arr
    w.close()


def type_counts(path):
    """{ggml type name: tensor count} of a GGUF file."""
    r = gguf.GGUFReader(path)
    return dict(sorted(Counter(t.tensor_type.name for t in r.tensors).items(),
                       key=lambda kv: -kv[1])), {t.name for t in r.tensors}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(SHAPES),
                    help="shapes to make, comma separated (default: %(default)s)")
    ap.add_argument("--types", default=",".join(TYPES),
                    help="llama-quantize mixes for every shape (default: %(default)s)")
    ap.add_argument("--pure", default=",".join(PURE),
                    help="--pure single-type files (default: %(default)s); '' for none")
    ap.add_argument("--pure-models", default=",".join(PURE_MODELS),
                    help="shapes that get the --pure files (default: %(default)s)")
    ap.add_argument("--quantize", default=os.path.join(LLAMA_CPP, "build", "bin", "llama-quantize"),
                    help="the llama-quantize binary (default: %(default)s)")
    ap.add_argument("--vocab-dir", default=os.path.join(LLAMA_CPP, "models"),
                    help="where ggml-vocab-*.gguf are (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="llama-quantize threads (default: %(default)s)")
    ap.add_argument("--out", default=OUT, help="output folder (default: %(default)s)")
    ap.add_argument("--keep-f16", action="store_true", help="keep the F16 intermediates")
    ap.add_argument("--list", action="store_true", help="print the plan and what exists; make nothing")
    a = ap.parse_args()

    split = lambda v: [x for x in v.split(",") if x]
    models = split(a.models)
    for m in models:
        if m not in SHAPES:
            sys.exit(f"--models: unknown shape {m!r} (known: {', '.join(SHAPES)})")
    jobs = plan(models, split(a.types), split(a.pure), split(a.pure_models))
    os.makedirs(a.out, exist_ok=True)
    man_path = os.path.join(a.out, "manifest.json")
    manifest = json.load(open(man_path)) if os.path.exists(man_path) else {}

    def save():
        with open(man_path + ".tmp", "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        os.replace(man_path + ".tmp", man_path)

    def record(shape, qtype, pure, fname, secs=None):
        path = os.path.join(a.out, fname)
        counts, _ = type_counts(path)
        e = manifest.get(fname, {})
        e.update(shape=shape, type=qtype, pure=pure, bytes=os.path.getsize(path), tensor_types=counts)
        if secs is not None:
            e["quantize_s"] = round(secs, 1)
        manifest[fname] = e
        save()

    def needs_making(shape, fname):
        path = os.path.join(a.out, fname)
        if not os.path.exists(path):
            return True
        _, names = type_counts(path)
        missing = {n for n, _, _ in tensors(SHAPES[shape])} - names
        if missing:
            print(f"{fname}: remaking, it lacks {sorted(missing)[:3]}", flush=True)
            return True
        return False

    if a.list:
        for shape, qtype, pure, fname in jobs:
            path = os.path.join(a.out, fname)
            there = f"{os.path.getsize(path) / 1e9:.2f} GB" if os.path.exists(path) else "missing"
            print(f"{fname:36} {there}")
        return 0

    if not os.path.exists(a.quantize):
        sys.exit(f"{a.quantize}: not found (build llama.cpp's llama-quantize or pass --quantize)")
    t_all = time.time()
    for shape in models:
        s = SHAPES[shape]
        todo = [j for j in jobs if j[0] == shape and needs_making(shape, j[3])]
        for shape_, qtype, pure, fname in jobs:
            if shape_ == shape and (shape_, qtype, pure, fname) not in todo and fname not in manifest:
                record(shape, qtype, pure, fname)
        if not todo:
            continue
        f16 = os.path.join(a.out, f"{shape}-f16.gguf")
        if not os.path.exists(f16):  # (a complete one: it is renamed into place when done)
            print(f"making {f16}", flush=True)
            t = time.time()
            make_f16(shape, s, f16 + ".tmp", a.vocab_dir)
            os.replace(f16 + ".tmp", f16)
            print(f"  {os.path.getsize(f16) / 1e9:.2f} GB in {time.time() - t:.0f} s", flush=True)
        for _, qtype, pure, fname in todo:
            dst = os.path.join(a.out, fname)
            print(f"quantizing {dst}", flush=True)
            t = time.time()
            cmd = [a.quantize] + (["--pure"] if pure else []) + [f16, dst + ".tmp", qtype,
                                                                 str(a.threads)]
            with open(dst + ".log", "w") as log:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                sys.exit(f"{' '.join(cmd)} failed ({rc}); see {dst}.log")
            os.replace(dst + ".tmp", dst)
            secs = time.time() - t
            record(shape, qtype, pure, fname, secs)
            print(f"  {os.path.getsize(dst) / 1e9:.2f} GB in {secs:.0f} s: "
                  f"{manifest[fname]['tensor_types']}", flush=True)
        if not a.keep_f16:
            os.remove(f16)
    print(f"\ndone in {time.time() - t_all:.0f} s\n")
    print("| file | size | tensor types |\n|---|---|---|")
    for _, _, _, fname in jobs:
        e = manifest.get(fname)
        if e:
            types = ", ".join(f"{k} {v}" for k, v in e["tensor_types"].items())
            print(f"| {fname} | {e['bytes'] / 1e6:.0f} MB | {types} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
