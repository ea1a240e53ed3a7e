#!/usr/bin/env python3
"""Tiny random-weight models of every architecture lmrun runs, made the way real GGUFs are made,
with references from llama.cpp and from Hugging Face `transformers` (issue 19).

For each case below: a Hugging Face config with tiny sizes but every special feature of the
architecture switched on (soft-caps, a sliding window shorter than the prompt, partial rotary,
NoPE layers, LongRoPE, YaRN, Granite's multipliers, a head size that is not n_embd/n_head...),
random weights from a fixed seed, `save_pretrained`, then llama.cpp's own
`convert_hf_to_gguf.py --outtype f32` (so tensor names, layouts, Q/K permutations, gemma's +1 in
norm weights and fused tensors are exactly what real files have). The converter's tokenizer step
is replaced by a 512-token SentencePiece-style vocabulary written into the GGUF (the models are
fed token ids, and a real tokenizer would make the files megabytes).

References, written next to each GGUF as JSON:
  - llama.cpp (its C library through the llama-cpp-python package of the same sdist): greedy
    decoding of 32 tokens after a fixed random prompt, then the logits of every position of
    prompt + generated tokens in one teacher-forced pass (context `n_ctx`);
  - transformers: the logits of the same sequence (float32, eager attention), and the largest
    difference to llama.cpp's, relative to the logit range.

Output: crates/lmrun-models/tests/data/archs/<case>.gguf and <case>.json, checked by
crates/lmrun-models/tests/archs.rs. Needs torch, transformers, numpy, and llama.cpp: the
llama-cpp-python 0.3.36 sdist (`pip download --no-deps --no-binary :all:
llama-cpp-python==0.3.36`), its vendor/llama.cpp built with cmake (libllama.so), pointed to by
LLAMA_CPP_DIR (the source tree; default /work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp) and
LLAMA_CPP_LIB_PATH (the folder holding libllama.so; default $LLAMA_CPP_DIR/build/bin). Not run in
CI (torch is large); the files it writes are committed.

    python3 scripts/models_make_archs.py            # every case
    python3 scripts/models_make_archs.py qwen3 phi3  # some
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

LLAMA_CPP = os.environ.get("LLAMA_CPP_DIR",
                           "/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp")
LIB = os.environ.get("LLAMA_CPP_LIB_PATH", os.path.join(LLAMA_CPP, "build", "bin"))
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "lmrun-models",
                   "tests", "data", "archs")
N_VOCAB = 512
N_PROMPT = 24
N_GEN = 32

COMMON = dict(vocab_size=N_VOCAB, hidden_size=128, intermediate_size=256, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)

# name -> (transformers config class, config kwargs, n_ctx for llama.cpp and lmrun, weight std)
CASES = {
    # per-head Q/K norms, head size 64 != 128/4, NeoX rope, tied output
    "qwen3": ("Qwen3Config", dict(num_hidden_layers=3, head_dim=64, tie_word_embeddings=True,
                                  rope_parameters=dict(rope_type="default", rope_theta=1e6)),
              128),
    # soft-caps, window 8 < prompt on every other layer, post-norms, GeGLU, scaled embeddings
    "gemma2": ("Gemma2Config", dict(num_hidden_layers=4, head_dim=32, query_pre_attn_scalar=32,
                                    sliding_window=8, attn_logit_softcapping=20.0,
                                    final_logit_softcapping=15.0,
                                    hidden_activation="gelu_pytorch_tanh"),
               128),
    # fused QKV and gate+up, partial rotary (24 of 32 dims), LongRoPE (short factors: context
    # 256 <= the original 256; llama.cpp pads contexts to multiples of 256, so a smaller
    # original context would always pick the long factors there), tied output as in Phi-4-mini
    "phi3": ("Phi3Config", dict(num_hidden_layers=2, tie_word_embeddings=True,
                                max_position_embeddings=1024,
                                original_max_position_embeddings=256,
                                rope_parameters=dict(rope_type="longrope", rope_theta=10000.0,
                                                     partial_rotary_factor=0.75,
                                                     short_factor=[1.0 + 0.1 * i for i in range(12)],
                                                     long_factor=[1.5 + 0.5 * i for i in range(12)],
                                                     original_max_position_embeddings=256)),
             256),
    # the same file run with a context past the original one: LongRoPE's long factors
    # (transformers picks them by sequence length, not context, so its logits here are of the
    # short factors and are not comparable)
    "phi3-long": None,
    # no rope on layer 3 (every fourth), GQA, llama layout
    "smollm3": ("SmolLM3Config", dict(num_hidden_layers=4, tie_word_embeddings=True,
                                      rope_parameters=dict(rope_type="default",
                                                           rope_theta=10000.0)),
                128),
    # embedding, residual, attention and logit multipliers
    "granite": ("GraniteConfig", dict(num_hidden_layers=3, embedding_multiplier=6.0,
                                      residual_multiplier=0.3, attention_multiplier=0.09,
                                      logits_scaling=4.0, tie_word_embeddings=True),
                128),
    # Llama 3.x rope scaling (llama3 type: rope_freqs factors)
    "llama3": ("LlamaConfig", dict(num_hidden_layers=2, tie_word_embeddings=False,
                                   rope_parameters=dict(rope_type="llama3", rope_theta=500000.0,
                                                        factor=8.0, low_freq_factor=1.0,
                                                        high_freq_factor=4.0,
                                                        original_max_position_embeddings=32)),
               128),
    # YaRN rope scaling on a llama-layout model
    "llama-yarn": ("LlamaConfig", dict(num_hidden_layers=2,
                                       rope_parameters=dict(rope_type="yarn", rope_theta=10000.0,
                                                            factor=4.0,
                                                            original_max_position_embeddings=32)),
                   128),
    # Ministral 3: YaRN with mscale_all_dim, attention temperature (llama 4 scaling)
    "mistral3": ("Ministral3Config", dict(num_hidden_layers=2, head_dim=32,
                                          rope_parameters=dict(rope_type="yarn",
                                                               rope_theta=1e6, factor=4.0,
                                                               original_max_position_embeddings=16,
                                                               beta_fast=32.0, beta_slow=1.0,
                                                               mscale=1.0, mscale_all_dim=1.0,
                                                               llama_4_scaling_beta=0.1)),
                 128),
}
LONG_CTX = 512


def tiny_vocab(self):
    """Replaces each converter class's set_vocab: a 512-token SentencePiece-style vocabulary."""
    import gguf
    toks, scores, types = [], [], []
    for t, ty in (("<unk>", gguf.TokenType.UNKNOWN), ("<s>", gguf.TokenType.CONTROL),
                  ("</s>", gguf.TokenType.CONTROL)):
        toks.append(t)
        scores.append(0.0)
        types.append(ty)
    for b in range(256):
        toks.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(gguf.TokenType.BYTE)
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(toks) < N_VOCAB:
        a, b = divmod(i, 26)
        piece = ("\u2581" if a % 2 == 0 else "") + letters[b] + (letters[a // 2] if a >= 2 else "")
        i += 1
        if piece in toks:
            continue
        toks.append(piece)
        scores.append(-float(len(toks)))
        types.append(gguf.TokenType.NORMAL)
    w = self.gguf_writer
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)


def convert(hf_dir, out):
    """Runs llama.cpp's converter in-process with the tiny vocabulary."""
    code = f"""
import sys
sys.argv = ["convert_hf_to_gguf.py", {hf_dir!r}, "--outfile", {out!r}, "--outtype", "f32"]
sys.path.insert(0, {LLAMA_CPP!r})
import convert_hf_to_gguf as conv
import conversion.base as base
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from models_make_archs import tiny_vocab
def patch(c):
    c.set_vocab = tiny_vocab
    for s in c.__subclasses__():
        patch(s)
_get = conv.get_model_class
def get_model_class(*a, **k):
    c = _get(*a, **k)   # imports the architecture's module: now its classes can be patched
    patch(base.ModelBase)
    return c
conv.get_model_class = get_model_class
conv.main()
"""
    r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"convert_hf_to_gguf.py failed on {hf_dir}:\n{r.stderr[-3000:]}")


def llama_reference(path, prompt, n_ctx):
    """Greedy ids after `prompt` and the logits of every position of prompt + those ids."""
    os.environ["LLAMA_CPP_LIB_PATH"] = LIB
    sys.path.insert(0, os.path.join(LLAMA_CPP, "..", ".."))
    import llama_cpp
    llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True,
                          verbose=False, n_threads=2)
    llm.eval(prompt)
    gen = []
    for _ in range(N_GEN):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        gen.append(t)
        llm.eval([t])
    llm.reset()
    seq = prompt + gen
    llm.eval(seq)
    logits = np.array(llm.scores[:len(seq)], dtype=np.float32)
    del llm
    return gen, logits


def main():
    import torch
    import transformers
    names = sys.argv[1:] or list(CASES)
    os.makedirs(OUT, exist_ok=True)
    for name in names:
        base_name = "phi3" if name == "phi3-long" else name
        cls_name, kw, n_ctx = CASES[base_name]
        if name == "phi3-long":
            n_ctx = LONG_CTX
        cfg = getattr(transformers, cls_name)(**{**COMMON, **kw})
        torch.manual_seed(19)
        model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
        model = model.float().eval()
        with torch.no_grad():
            # Larger weights than the 0.02 init: peaked distributions, so greedy ids are not
            # decided by rounding.
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, 0.08)
        gguf_path = os.path.join(OUT, f"{base_name}.gguf")
        if name != "phi3-long":
            with tempfile.TemporaryDirectory() as d:
                # The converter names the model after the folder (not after the architecture:
                # llama.cpp patches vocabularies of models named like "phi3").
                d = os.path.join(d, "tiny-random")
                model.save_pretrained(d)
                convert(d, gguf_path)
        rng = np.random.default_rng(1900 + len(name))
        prompt = [int(t) for t in rng.integers(3, N_VOCAB, size=N_PROMPT)]
        gen, logits = llama_reference(gguf_path, prompt, n_ctx)
        seq = prompt + gen
        with torch.no_grad():
            hf = model(torch.tensor([seq])).logits[0].float().numpy()
        rng_l = float(logits.max() - logits.min())
        hf_diff = float(np.abs(hf - logits).max()) / rng_l
        hf_greedy = [int(t) for t in hf[N_PROMPT - 1:-1].argmax(-1)]
        ref = dict(
            case=name, gguf=f"{base_name}.gguf", n_vocab=N_VOCAB, n_ctx=n_ctx,
            prompt=prompt, greedy=gen,
            hf_teacher_forced_argmax_equal=hf_greedy == gen,
            hf_max_diff_rel_to_range=hf_diff,
            logits=[[float(f"{x:.6g}") for x in row] for row in logits],
            hf_logits=[[float(f"{x:.6g}") for x in row] for row in hf],
        )
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(ref, f, separators=(",", ":"))
        size = os.path.getsize(gguf_path)
        print(f"{name:12s} {size/1e6:6.2f} MB  HF vs llama.cpp max |d|/range {hf_diff:.2e}  "
              f"HF argmax == llama.cpp greedy: {hf_greedy == gen}")


if __name__ == "__main__":
    main()
