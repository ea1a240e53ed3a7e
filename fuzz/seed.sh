#!/bin/sh
# Fill fuzz/corpus/<target>/ with the seed inputs of every target: the repository's own test
# fixtures plus the small hand-made inputs under fuzz/seeds/. Run from the repository root or
# from fuzz/. The corpus directories grow while fuzzing and are not committed.
set -e
cd "$(dirname "$0")"
root=..
mk() { mkdir -p "corpus/$1"; }
mk gguf_parse; cp $root/crates/lmrun-gguf/tests/data/*.gguf corpus/gguf_parse/
mk pte_parse; cp $root/crates/lmrun-pte/tests/data/tiny_xnnpack_fp32_ptd.pte \
    $root/crates/lmrun-pte/tests/data/tiny_xnnpack_8da4w_ptd.pte corpus/pte_parse/
mk tokenizer_json
cp seeds/tokenizer_json/* corpus/tokenizer_json/
# the 512-token byte-level BPE fixture, whitespace squeezed out (50 KiB -> 28 KiB)
python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1])), open(sys.argv[2], "w"), separators=(",", ":"), ensure_ascii=False)' \
    $root/crates/lmrun-tokenizers/tests/data/tok512/tokenizer.json corpus/tokenizer_json/tok512.json
mk tiktoken; cp $root/crates/lmrun-tokenizers/tests/data/tiny.tiktoken corpus/tiktoken/
mk sentencepiece_model; cp $root/crates/lmrun-tokenizers/tests/data/sp_*.model corpus/sentencepiece_model/
mk llama2c_tokenizer; cp $root/crates/lmrun-tokenizers/tests/data/tokenizer.bin corpus/llama2c_tokenizer/
mk chat_template; cp seeds/chat_template/* corpus/chat_template/
# XNNPACK delegate blobs: byte 0 picks the delegate of the host program (the tiny 8da4w export,
# weights in its .ptd) that the rest replaces; every blob of the two self-contained tiny XNNPACK
# programs (their constants are named data, so each blob is a few KiB of graph).
mk xnnpack_graph
python3 - "$root/crates/lmrun-pte/tests/data" corpus/xnnpack_graph <<'PY'
import struct, sys, hashlib
src, dst = sys.argv[1], sys.argv[2]
for name in ("tiny_xnnpack_8da4w.pte", "tiny_xnnpack_fp32.pte"):
    b = open(f"{src}/{name}", "rb").read()
    i, k = b.find(b"XH00"), 0
    while i >= 4:
        p = i - 4
        fo, fs, co = struct.unpack_from("<III", b, p + 10)
        (cs,) = struct.unpack_from("<Q", b, p + 22)
        blob = bytes([k]) + b[p : p + max(fo + fs, co + cs)]
        open(f"{dst}/{name[:-4]}-{k:02d}-{hashlib.sha1(blob).hexdigest()[:8]}", "wb").write(blob)
        i, k = b.find(b"XH00", i + 1), k + 1
PY
# .ptd files cut after their flatbuffer: the target pads the segments back with zeros.
mk ptd_parse
python3 - "$root/crates/lmrun-pte/tests/data" corpus/ptd_parse <<'PY'
import struct, sys
src, dst = sys.argv[1], sys.argv[2]
for name in ("tiny_xnnpack_fp32_ptd.ptd", "tiny_xnnpack_8da4w_ptd.ptd"):
    b = open(f"{src}/{name}", "rb").read()
    (seg_base,) = struct.unpack_from("<Q", b, 8 + 4 + 4 + 16)
    open(f"{dst}/{name}-head", "wb").write(b[:seg_base])
PY
