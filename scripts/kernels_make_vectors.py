#!/usr/bin/env python3
"""Make dequantization test vectors for crates/lmrun-kernels.

For every block type: a few blocks of raw bytes (`<type>.bin`) and the f32 values the `gguf`
Python package's `gguf.quants.dequantize` gives for them (`<type>.f32`, little-endian).
Types `gguf.quants` can quantize get blocks quantized from random data plus blocks of random
bytes; the others get random bytes whose scale fields are overwritten with finite f16 values.
Q8_K and Q8_1 (activation types gguf cannot dequantize) use a numpy reference d * q; Q8_1 uses
ggml's 36-byte block (f16 d, f16 s, 32 int8).

Usage: pip install gguf numpy && python3 scripts/kernels_make_vectors.py
"""
import os
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize, dequantize

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "lmrun-kernels", "tests", "data")
rng = np.random.default_rng(20261126)

# byte offsets of f16 scale fields in each block (overwritten with finite values)
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q8_1": [0, 2],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0],
}
QUANTIZABLE = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"}


def finite_f16(n):
    mag = rng.uniform(-6, 1, size=n)
    sign = rng.choice([-1.0, 1.0], size=n)
    return (sign * 10.0 ** mag).astype(np.float16)


def random_blocks(name, n_blocks):
    qt = T[name]
    _, ts = gguf.GGML_QUANT_SIZES[qt]
    if name == "Q8_1":
        ts = 36  # ggml's block_q8_1 is f16 d, f16 s, 32 int8 (gguf-py's size table says 40)
    raw = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint8)
    if name == "Q8_K":
        raw[:, 0:4] = rng.uniform(-1, 1, size=n_blocks).astype(np.float32).view(np.uint8).reshape(n_blocks, 4)
    for off in F16_FIELDS.get(name, []):
        raw[:, off:off + 2] = finite_f16(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw


def reference(name, raw):
    if name == "Q8_K":
        d = raw[:, 0:4].copy().view(np.float32)
        q = raw[:, 4:260].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(-1)
    if name == "Q8_1":
        d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
        q = raw[:, 4:36].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(-1)
    return dequantize(raw, T[name]).astype(np.float32).reshape(-1)


def main():
    os.makedirs(OUT, exist_ok=True)
    total = 0
    for name in ["F32", "F16", "BF16"]:
        n = 96
        if name == "F32":
            raw = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(np.float32).view(np.uint8)
        else:
            bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
            # keep finite: clear exponent-all-ones patterns
            if name == "F16":
                bad = (bits & 0x7C00) == 0x7C00
                bits[bad] &= 0xBBFF
            else:
                bad = (bits & 0x7F80) == 0x7F80
                bits[bad] &= 0xBF7F
            raw = bits.view(np.uint8)
        raw = raw.reshape(1, -1)
        expect = dequantize(raw, T[name]).astype(np.float32).reshape(-1)
        total += write(name, raw, expect)
    for name in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                 "Q6_K", "Q8_K", "IQ4_NL", "IQ4_XS"]:
        qt = T[name]
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        if name == "Q8_1":
            ts = 36
        n_blocks = 6 if bs == 256 else 16
        raw = random_blocks(name, n_blocks)
        if name in QUANTIZABLE:
            x = (rng.standard_normal((n_blocks, bs)) * 0.05).astype(np.float32)
            x[0, :] = 0.0  # all-zero block
            q = quantize(x, qt).reshape(n_blocks, ts)
            raw = np.concatenate([q, raw], axis=0)
        expect = reference(name, raw)
        total += write(name, raw, expect)
    print(f"wrote {total} bytes to {os.path.normpath(OUT)}")


def write(name, raw, expect):
    assert np.all(np.isfinite(expect)), name
    b = raw.tobytes()
    e = expect.astype("<f4").tobytes()
    with open(os.path.join(OUT, f"{name}.bin"), "wb") as f:
        f.write(b)
    with open(os.path.join(OUT, f"{name}.f32"), "wb") as f:
        f.write(e)
    return len(b) + len(e)


if __name__ == "__main__":
    main()
