#!/usr/bin/env python3
"""Make the llama.cpp reference tokenizations lmrun-tokenizers is tested against.

Runs llama.cpp (through the `llama_cpp` Python package, vocab only) over a list of hard strings
for each real GGUF model and writes crates/lmrun-tokenizers/tests/data/llamacpp_refs.json.
CI does not run this; it only reads the committed JSON.

Usage: python3 scripts/tokenizers_make_refs.py [MODELS_DIR]
(MODELS_DIR defaults to $LMRUN_MODELS_DIR or ~/.cache/lmrun/models)
"""
import json
import os
import sys

import tempfile

import gguf
import llama_cpp

MODELS = ["gemma-3-270m-q4_k_m.gguf", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"]

PROSE = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
    "of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season "
    "of Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair."
)

# Plain-text cases: encoded with add_special=True (the model's BOS/EOS policy) and
# parse_special=False.
TEXTS = [
    "",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n\n",
    " \n \n",
    "\t\t\tindent",
    "Hello world",
    " Hello world",
    "Hello world ",
    "  leading and trailing  ",
    "Hello, world! How are you doing today?",
    "The quick brown fox jumps over the lazy dog.",
    "Привет, как дела? Это тест.",
    "中文分词测试：今天天气很好。",
    "日本語のテキスト、カタカナとひらがな。",
    "한국어 텍스트 테스트입니다.",
    "مرحبا بالعالم، هذا اختبار.",
    "नमस्ते दुनिया, यह एक परीक्षण है।",
    "Ελληνικά γράμματα αβγ.",
    "עברית זה טקסט.",
    "ภาษาไทยไม่มีช่องว่าง",
    "Emoji: 😀😃😄 👍🏽 🇺🇸",
    "Family: 👨‍👩‍👧‍👦 and 🏳️‍🌈 ZWJ",
    "12345678901234567890",
    "3.14159265358979 and 1,000,000 and 0x1F",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n\tlet x: Vec<u8> = vec![1, 2, 3];\n\tprintln!(\"{:?}\", x);\n}\n",
    "#include <stdio.h>\nint main(void){printf(\"hi\\n\");return 0;}",
    "https://example.com/path/to/page?query=1&lang=en#section",
    "email: someone@example.org, path C:\\Users\\me\\file.txt",
    "Pneumonoultramicroscopicsilicovolcanoconiosis" * 20,
    "don't can't I'll we've they're she'd IT'S",
    "MiXeD CaSe WoRdS and ALLCAPS",
    "naïve café résumé coöperate",
    "e\u0301 a\u0308 combining marks",
    "tabs\tand\tspaces  mixed \t \n end",
    "a\r\nb\r\n\r\nc",
    "\u00a0non-breaking\u00a0space and\u3000ideographic",
    "math: ∑ x² ≤ ∞, ½ + ¼ = ¾",
    "quotes “smart” ‘single’ «guillemets» — dash…",
    "~~~ ``` --- *** ### !!!",
    "    four spaces then text",
    "trailing newline\n",
    "control chars \u0001\u0002\u001f here",
    "Mixed 中文 and English 混合 text 123 数字",
    PROSE,
]

# Cases with control tokens written in the text: encoded with parse_special on and off.
SPECIAL_TEXTS = [
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<bos>text<eos> <s> </s> <unk> <pad>",
    "<|endoftext|>after",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "a<start_of_turn>b<|im_end|>c",
]


# Pre-tokenizers checked by running llama.cpp on a copy of the Qwen GGUF's metadata with
# tokenizer.ggml.pre replaced (same vocabulary and merges, another split).
OTHER_PRES = ["default", "gpt-2", "llama-bpe", "smollm", "deepseek-llm", "deepseek-v3"]


def copy_metadata_with_pre(src, dst, pre=None, add_space_prefix=None):
    """Write a tensor-less GGUF holding src's metadata, with tokenizer.ggml.pre and/or
    tokenizer.ggml.add_space_prefix replaced."""
    r = gguf.GGUFReader(src)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    w = gguf.GGUFWriter(dst, arch)
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        t = f.types[0]
        if k == "tokenizer.ggml.pre" and pre is not None:
            w.add_string(k, pre)
        elif k == "tokenizer.ggml.add_space_prefix" and add_space_prefix is not None:
            w.add_bool(k, add_space_prefix)
        elif t == gguf.GGUFValueType.ARRAY:
            st = f.types[1]
            if st == gguf.GGUFValueType.STRING:
                w.add_array(k, [bytes(f.parts[i]) for i in f.data])
            else:
                w.add_key_value(k, [f.parts[i].tolist()[0] for i in f.data], t, sub_type=st)
        elif t == gguf.GGUFValueType.STRING:
            w.add_string(k, bytes(f.parts[-1]).decode())
        else:
            w.add_key_value(k, f.parts[-1].tolist()[0], t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    models_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "LMRUN_MODELS_DIR", os.path.expanduser("~/.cache/lmrun/models"))
    out = {
        "generator": f"llama-cpp-python {llama_cpp.__version__} (llama.cpp vocab_only tokenize)",
        "models": {},
    }
    for name in MODELS:
        llm = llama_cpp.Llama(model_path=os.path.join(models_dir, name), vocab_only=True, verbose=False)
        cases = []

        def add(text, add_special, parse_special):
            ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
            cases.append({"text": text, "add_special": add_special, "parse_special": parse_special,
                          "ids": [int(i) for i in ids]})

        for t in TEXTS:
            add(t, True, False)
        for t in TEXTS[:12]:
            add(t, False, False)
        for t in SPECIAL_TEXTS:
            add(t, True, True)
            add(t, True, False)
        out["models"][name] = cases
        print(f"{name}: {len(cases)} cases", file=sys.stderr)

    qwen = os.path.join(models_dir, MODELS[1])
    with tempfile.TemporaryDirectory() as tmp:
        for pre in OTHER_PRES:
            path = os.path.join(tmp, f"pre-{pre}.gguf")
            copy_metadata_with_pre(qwen, path, pre=pre)
            llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
            cases = []
            for t in TEXTS:
                ids = llm.tokenize(t.encode("utf-8"), add_bos=True, special=False)
                cases.append({"text": t, "add_special": True, "parse_special": False, "ids": [int(i) for i in ids]})
            out["models"][f"{MODELS[1]}#pre={pre}"] = cases
            print(f"{MODELS[1]} with pre {pre}: {len(cases)} cases", file=sys.stderr)

        # SPM with add_space_prefix = true (Llama 2 style), on the Gemma vocabulary.
        path = os.path.join(tmp, "gemma-space-prefix.gguf")
        copy_metadata_with_pre(os.path.join(models_dir, MODELS[0]), path, add_space_prefix=True)
        llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        cases = []
        for t, add_special, parse_special in ([(t, True, False) for t in TEXTS] + [(t, False, False) for t in TEXTS[:12]]
                                              + [(t, True, p) for t in SPECIAL_TEXTS for p in (True, False)]):
            ids = llm.tokenize(t.encode("utf-8"), add_bos=add_special, special=parse_special)
            cases.append({"text": t, "add_special": add_special, "parse_special": parse_special,
                          "ids": [int(i) for i in ids]})
        out["models"][f"{MODELS[0]}#add_space_prefix=true"] = cases
        print(f"{MODELS[0]} with add_space_prefix: {len(cases)} cases", file=sys.stderr)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "lmrun-tokenizers",
                        "tests", "data", "llamacpp_refs.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {os.path.normpath(path)}", file=sys.stderr)


if __name__ == "__main__":
    main()
