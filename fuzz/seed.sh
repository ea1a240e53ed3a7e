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
