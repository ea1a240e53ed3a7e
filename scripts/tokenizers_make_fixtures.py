#!/usr/bin/env python3
"""Make the small tokenizer fixtures of lmrun-tokenizers and their known encodings.

Writes into crates/lmrun-tokenizers/tests/data/:
  tok512/tokenizer.json, tok512/tokenizer_config.json  (copied from shared/fixtures/pte/tok512)
  tiny.tiktoken       byte-level ranks built from tok512's merges; expected ids from `tiktoken`
  sp_bpe.model        SentencePiece BPE (byte fallback) trained by `sentencepiece`
  sp_unigram.model    SentencePiece unigram trained by `sentencepiece`
  tokenizer.bin       llama2c layout (ExecuTorch header) converted from sp_bpe.model
  fixtures_expected.json   {fixture: [{text, parse_special, ids}]} from the reference libraries
                           (`tokenizers`, `tiktoken`, `sentencepiece`)

Needs: pip install tokenizers tiktoken sentencepiece
"""
import base64
import json
import os
import shutil
import struct
import sys

import sentencepiece as spm
import tiktoken
import tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
DATA = os.path.join(ROOT, "crates", "lmrun-tokenizers", "tests", "data")
SHARED = os.environ.get("LMRUN_SHARED", os.path.normpath(os.path.join(ROOT, "..", "shared")))

TEXTS = [
    "",
    "Hello world",
    " Hello  world ",
    "the harbour is happy today, isn't it?",
    "The quick brown fox jumps over the lazy dog.",
    "12345 + 678 = 13023",
    "tabs\tand\nnewlines\n\n",
    "naïve café — “quotes”",
    "Привет мир",
    "中文 😀 👨‍👩‍👧",
    "def f(x):\n    return x ** 2\n",
]

LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def llama3_specials():
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
             "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
             "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    k = 2
    while len(names) < 256:
        names.append(f"<|reserved_special_token_{k}|>")
        k += 1
    return names


def bytelevel_decoder():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def main():
    os.makedirs(os.path.join(DATA, "tok512"), exist_ok=True)
    expected = {}

    # 1. tokenizer.json
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(SHARED, "fixtures", "pte", "tok512", f), os.path.join(DATA, "tok512", f))
    hf = tokenizers.Tokenizer.from_file(os.path.join(DATA, "tok512", "tokenizer.json"))
    cases = []
    for t in TEXTS + ["<|bos|>hi<|eos|>"]:
        cases.append({"text": t, "parse_special": True, "ids": hf.encode(t, add_special_tokens=False).ids})
    expected["tok512"] = cases

    # 2. tiktoken: 256 bytes, then tok512's merges in order.
    dec = bytelevel_decoder()
    j = json.load(open(os.path.join(DATA, "tok512", "tokenizer.json")))
    ranks = {bytes([b]): b for b in range(256)}
    for m in j["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        tok = bytes(dec[c] for c in a + b)
        if tok not in ranks:
            ranks[tok] = len(ranks)
    with open(os.path.join(DATA, "tiny.tiktoken"), "w") as f:
        for tok, r in sorted(ranks.items(), key=lambda x: x[1]):
            f.write(f"{base64.b64encode(tok).decode()} {r}\n")
    specials = {s: len(ranks) + i for i, s in enumerate(llama3_specials())}
    enc = tiktoken.Encoding(name="tiny", pat_str=LLAMA3_PAT, mergeable_ranks=ranks, special_tokens=specials)
    cases = []
    for t in TEXTS:
        cases.append({"text": t, "parse_special": False, "ids": enc.encode_ordinary(t)})
    t = "<|begin_of_text|>the harbour<|eot_id|>"
    cases.append({"text": t, "parse_special": True, "ids": enc.encode(t, allowed_special="all")})
    expected["tiktoken"] = cases

    # 3. SentencePiece BPE and unigram, trained on a small generated corpus.
    corpus = os.path.join(DATA, "..", "..", "target_sp_corpus.txt")
    syll = ["ka", "to", "ri", "mo", "sen", "har", "bour", "hap", "py", "the", "qu", "ick", "fox", "la", "zy",
            "dog", "sea", "ing", "er", "ly", "tion", "al", "pre", "un", "re"]
    seed = 12345
    with open(corpus, "w") as f:
        for i in range(3000):
            line = []
            for _ in range(10):
                seed = (seed * 1103515245 + 12345) % (1 << 31)
                n = 1 + seed % 3
                w = ""
                for k in range(n):
                    seed = (seed * 1103515245 + 12345) % (1 << 31)
                    w += syll[seed % len(syll)]
                line.append(w)
            f.write(" ".join(line) + f" {i % 97} Hello world! The quick brown fox.\n")
    for kind, vocab in [("bpe", 400), ("unigram", 250)]:
        prefix = os.path.join(DATA, f"sp_{kind}")
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=prefix, vocab_size=vocab, model_type=kind,
            byte_fallback=(kind == "bpe"), normalization_rule_name="identity",
            character_coverage=1.0, minloglevel=2)
        os.remove(prefix + ".vocab")
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        expected[f"sp_{kind}"] = [{"text": t, "parse_special": False, "ids": sp.encode(t)} for t in TEXTS]
    os.remove(corpus)

    # 4. llama2c tokenizer.bin from the BPE model (pytorch_tokenizers' llama2c converter layout
    #    with ExecuTorch's 4-int header).
    sp = spm.SentencePieceProcessor(model_file=os.path.join(DATA, "sp_bpe.model"))
    toks, scores = [], []
    for i in range(sp.vocab_size()):
        t = sp.id_to_piece(i)
        if i == sp.bos_id():
            t = "\n<s>\n"
        elif i == sp.eos_id():
            t = "\n</s>\n"
        toks.append(t.replace("▁", " ").encode("utf-8"))
        scores.append(sp.get_score(i))
    max_len = max(len(t) for t in toks)
    with open(os.path.join(DATA, "tokenizer.bin"), "wb") as f:
        f.write(struct.pack("<iiii", len(toks), sp.bos_id(), sp.eos_id(), max_len))
        for t, s in zip(toks, scores):
            f.write(struct.pack("<fi", s, len(t)))
            f.write(t)
    # llama2c encodes like SentencePiece BPE on text without runs of spaces.
    expected["llama2c"] = [{"text": t, "parse_special": False, "ids": sp.encode(t)}
                           for t in TEXTS if "  " not in t and not t.startswith(" ")]

    with open(os.path.join(DATA, "fixtures_expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("fixtures written to", DATA, file=sys.stderr)


if __name__ == "__main__":
    main()
