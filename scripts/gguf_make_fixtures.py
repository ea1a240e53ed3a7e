#!/usr/bin/env python3
"""Write the small GGUF fixtures of crates/lmrun-gguf/tests/data/ and their expected JSON.

    pip install gguf numpy
    python3 scripts/gguf_make_fixtures.py [OUT_DIR]   (default: crates/lmrun-gguf/tests/data)

The files are written with the `gguf` Python package (llama.cpp's own writer), so the Rust parser
is checked against an independent implementation. The expected JSON comes from what this script
asked the writer to write (metadata values with their GGUF types) plus the offsets that
gguf.GGUFReader reads back; the script checks that the reader agrees with the input.

Fixtures:
  all_types.gguf   every metadata value type (all integer widths, f32, f64, bool, string,
                   arrays of each, arrays of strings, arrays of arrays), tensors of many ggml
                   types (F32, F16, BF16, F64, I8, I16, I32, I64, Q4_0, Q8_0, Q4_K, Q6_K, TQ2_0,
                   MXFP4, IQ4_NL) and 1-4 dimensions
  aligned64.gguf   general.alignment = 64, tensors whose sizes need padding
  v2.gguf          aligned64.gguf with the version field set to 2 (same layout as 3)
  no_tensors.gguf  metadata only
  big_endian.gguf  written big-endian by the gguf writer (must be refused)
  v1_header.gguf   a hand-built version-1 header (must be refused)

Deterministic: re-running produces identical files.
"""

import json
import os
import struct
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "crates", "lmrun-gguf", "tests", "data")

TYPE_NAMES = {
    V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32",
    V.INT32: "i32", V.FLOAT32: "f32", V.BOOL: "bool", V.STRING: "string", V.ARRAY: "array",
    V.UINT64: "u64", V.INT64: "i64", V.FLOAT64: "f64",
}


def f32(x):
    """The value an f32 field really holds, as a Python float (exact in JSON)."""
    return float(np.float32(x))


def encode(value, vtype, sub_type=None):
    """Typed JSON encoding of a metadata value: {"t": type, "v": value}; arrays carry "et"."""
    if vtype == V.ARRAY:
        if sub_type is None:
            sub_type = V.get_type(value[0])
        return {"t": "array", "et": TYPE_NAMES[sub_type],
                "v": [encode(x, sub_type) for x in value]}
    if vtype == V.FLOAT32:
        return {"t": "f32", "v": f32(value)}
    if vtype == V.STRING:
        return {"t": "string", "v": value}
    return {"t": TYPE_NAMES[vtype], "v": value}


def write(path, arch, kvs, tensors, alignment=None, endian=gguf.GGUFEndian.LITTLE):
    """kvs: list of (key, value, vtype, sub_type); tensors: list of (name, array, raw_dtype)."""
    w = gguf.GGUFWriter(path, arch, endianess=endian)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value, vtype, sub_type in kvs:
        w.add_key_value(key, value, vtype, sub_type=sub_type)
    for name, arr, raw_dtype in tensors:
        w.add_tensor(name, arr, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def expected(path, arch, kvs, alignment=None):
    """Expected JSON for a little-endian fixture, checked against gguf.GGUFReader."""
    r = gguf.GGUFReader(path)
    meta = {"general.architecture": encode(arch, V.STRING)}
    if alignment is not None:
        meta["general.alignment"] = encode(alignment, V.UINT32)
    for key, value, vtype, sub_type in kvs:
        meta[key] = encode(value, vtype, sub_type)
    keys = [k for k in r.fields if not k.startswith("GGUF.")]
    assert sorted(keys) == sorted(meta), (keys, list(meta))
    # The reader must read back what was written (it cannot decode arrays of arrays).
    for key, value, vtype, sub_type in kvs:
        if sub_type == V.ARRAY:
            continue
        got = r.fields[key].contents()
        want = value
        if vtype == V.FLOAT32:
            want = f32(value)
        elif sub_type == V.FLOAT32:
            want = [f32(x) for x in value]
        assert got == want, (key, got, want)
    with open(path, "rb") as f:
        blob = f.read()
    tensors = []
    for t in r.tensors:
        start = int(t.data_offset)
        n = int(t.n_bytes)
        tensors.append({
            "name": t.name,
            "ggml_type": t.tensor_type.name,
            "shape": [int(x) for x in t.shape],
            "offset": start - int(r.data_offset),
            "file_offset": start,
            "n_bytes": n,
            "n_elements": int(t.n_elements),
            "data_hex": blob[start:start + n].hex(),
        })
    return {
        "version": int(r.fields["GGUF.version"].parts[-1][0]),
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "file_size": len(blob),
        "metadata": [{"key": k, "value": meta[k]} for k in keys],
        "tensors": tensors,
    }


def rng_bytes(rng, rows, qtype):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return rng.integers(0, 256, size=(rows, size), dtype=np.uint8)


def all_types(rng):
    long_list = list(range(-50, 50))
    kvs = [
        ("general.name", "All Types Fixture", V.STRING, None),
        ("testarch.block_count", 3, V.UINT32, None),
        ("testarch.context_length", 4096, V.UINT64, None),
        ("testarch.embedding_length", 64, V.UINT32, None),
        ("testarch.attention.head_count", 4, V.UINT32, None),
        ("testarch.attention.layer_norm_rms_epsilon", 1e-6, V.FLOAT32, None),
        ("testarch.rope.freq_base", 10000.0, V.FLOAT32, None),
        ("testarch.use_parallel_residual", True, V.BOOL, None),
        ("test.u8", 200, V.UINT8, None),
        ("test.i8", -100, V.INT8, None),
        ("test.u16", 60000, V.UINT16, None),
        ("test.i16", -30000, V.INT16, None),
        ("test.u32", 4000000000, V.UINT32, None),
        ("test.i32", -2000000000, V.INT32, None),
        ("test.u64", 2**63 + 5, V.UINT64, None),
        ("test.i64", -(2**62) - 3, V.INT64, None),
        ("test.f32", -1.25, V.FLOAT32, None),
        ("test.f64", -1.5e300, V.FLOAT64, None),
        ("test.bool_true", True, V.BOOL, None),
        ("test.bool_false", False, V.BOOL, None),
        ("test.string", "h\u00e9llo \u2713 \U0001F600", V.STRING, None),
        ("test.empty_string", "", V.STRING, None),
        ("test.arr_u8", [0, 1, 255], V.ARRAY, V.UINT8),
        ("test.arr_i8", [-128, 0, 127], V.ARRAY, V.INT8),
        ("test.arr_u16", [0, 65535], V.ARRAY, V.UINT16),
        ("test.arr_i16", [-32768, 32767], V.ARRAY, V.INT16),
        ("test.arr_u32", [0, 4294967295], V.ARRAY, V.UINT32),
        ("test.arr_i32", [-2147483648, 2147483647], V.ARRAY, V.INT32),
        ("test.arr_u64", [0, 2**64 - 1], V.ARRAY, V.UINT64),
        ("test.arr_i64", [-(2**63), 2**63 - 1], V.ARRAY, V.INT64),
        ("test.arr_f32", [0.5, -2.0, 3.25], V.ARRAY, V.FLOAT32),
        ("test.arr_f64", [1e-300, -0.125], V.ARRAY, V.FLOAT64),
        ("test.arr_bool", [True, False, True], V.ARRAY, V.BOOL),
        ("test.arr_str", ["a", "", "\u00fc\u00f1\u00ee", "with space"], V.ARRAY, V.STRING),
        ("test.arr_nested", [[1, 2], [3], ["x", "y"], [[4], [5, 6]]], V.ARRAY, V.ARRAY),
        ("test.arr_long", long_list, V.ARRAY, V.INT32),
        ("tokenizer.ggml.model", "gpt2", V.STRING, None),
        ("tokenizer.ggml.pre", "qwen2", V.STRING, None),
        ("tokenizer.ggml.tokens", [f"tok{i}" for i in range(20)], V.ARRAY, V.STRING),
        ("tokenizer.ggml.token_type", [1] * 20, V.ARRAY, V.INT32),
        ("tokenizer.ggml.merges", ["t o", "to k"], V.ARRAY, V.STRING),
        ("tokenizer.ggml.bos_token_id", 1, V.UINT32, None),
        ("tokenizer.ggml.eos_token_id", 2, V.UINT32, None),
        ("tokenizer.ggml.padding_token_id", 0, V.UINT32, None),
        ("tokenizer.ggml.add_bos_token", False, V.BOOL, None),
        ("tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}", V.STRING, None),
    ]
    f = rng.standard_normal
    tensors = [
        ("token_embd.weight", f((20, 64)).astype(np.float32), None),
        ("f16.weight", f((2, 8)).astype(np.float16), None),
        ("bf16.weight", gguf.quants.quantize(f((3, 32)).astype(np.float32), Q.BF16), Q.BF16),
        ("f64.scalarish", np.array([3.5], dtype=np.float64), None),
        ("i8.vec", np.arange(-3, 4, dtype=np.int8), None),
        ("i16.vec", np.arange(5, dtype=np.int16), None),
        ("i32.mat", np.arange(6, dtype=np.int32).reshape(2, 3), None),
        ("i64.vec", np.array([-1, 2**40], dtype=np.int64), None),
        ("q4_0.weight", gguf.quants.quantize(f((2, 64)).astype(np.float32), Q.Q4_0), Q.Q4_0),
        ("q8_0.weight", gguf.quants.quantize(f((3, 32)).astype(np.float32), Q.Q8_0), Q.Q8_0),
        ("q4_k.weight", rng_bytes(rng, 2, Q.Q4_K), Q.Q4_K),
        ("q6_k.weight", rng_bytes(rng, 1, Q.Q6_K), Q.Q6_K),
        ("tq2_0.weight", rng_bytes(rng, 1, Q.TQ2_0), Q.TQ2_0),
        ("mxfp4.weight", rng_bytes(rng, 2, Q.MXFP4), Q.MXFP4),
        ("iq4_nl.weight", rng_bytes(rng, 1, Q.IQ4_NL), Q.IQ4_NL),
        ("three_d", f((2, 3, 4)).astype(np.float32), None),
        ("four_d", f((1, 2, 3, 4)).astype(np.float32), None),
    ]
    return kvs, tensors


def aligned(rng):
    kvs = [
        ("general.name", "Aligned Fixture", V.STRING, None),
        ("aligned.block_count", 1, V.UINT32, None),
    ]
    tensors = [
        ("a", np.arange(3, dtype=np.float32), None),          # 12 bytes -> padded to 64
        ("b", np.arange(5, dtype=np.int8), None),             # 5 bytes
        ("c", np.arange(7, dtype=np.float16), None),          # 14 bytes
    ]
    return kvs, tensors


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(1234)

    def out(name):
        return os.path.join(OUT, name)

    kvs, tensors = all_types(rng)
    write(out("all_types.gguf"), "testarch", kvs, tensors)
    exp = expected(out("all_types.gguf"), "testarch", kvs)
    assert exp["version"] == 3 and exp["alignment"] == 32

    kvs_a, tensors_a = aligned(rng)
    write(out("aligned64.gguf"), "aligned", kvs_a, tensors_a, alignment=64)
    exp_a = expected(out("aligned64.gguf"), "aligned", kvs_a, alignment=64)
    assert exp_a["alignment"] == 64 and exp_a["data_offset"] % 64 == 0

    # Version 2: the same bytes with the version field rewritten (v2 and v3 share the layout).
    with open(out("aligned64.gguf"), "rb") as f:
        blob = bytearray(f.read())
    blob[4:8] = struct.pack("<I", 2)
    with open(out("v2.gguf"), "wb") as f:
        f.write(blob)
    exp_v2 = dict(exp_a, version=2)

    kvs_n = [("general.name", "No Tensors", V.STRING, None)]
    write(out("no_tensors.gguf"), "none", kvs_n, [])
    exp_n = expected(out("no_tensors.gguf"), "none", kvs_n)

    # The writer byte-swaps the (native little-endian) tensors itself.
    write(out("big_endian.gguf"), "aligned", kvs_a, tensors_a, endian=gguf.GGUFEndian.BIG)

    # Version 1: u32 counts, "GGUF", version, n_tensors, n_kv.
    with open(out("v1_header.gguf"), "wb") as f:
        f.write(b"GGUF" + struct.pack("<III", 1, 0, 0))

    for name, e in [("all_types", exp), ("aligned64", exp_a), ("v2", exp_v2),
                    ("no_tensors", exp_n)]:
        with open(out(name + ".json"), "w") as f:
            json.dump(e, f, indent=1, ensure_ascii=False)
            f.write("\n")
    for name in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(out(name)):>8}  {name}")


if __name__ == "__main__":
    main()
