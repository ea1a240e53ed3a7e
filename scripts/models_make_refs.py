#!/usr/bin/env python3
"""Reference logits from llama.cpp (llama-cpp-python) for the real-model tests of lmrun-models.

For each model and each of 4 prompts (one longer than 700 tokens, so Gemma 3's 512-token sliding
window matters), records:
  - the prompt's token ids (llama.cpp's tokenizer) and a free-running greedy continuation of 64
    tokens (prompt evaluated, then one token at a time), with the top-2 gap at each step;
  - teacher-forced logits: prompt + continuation evaluated in one pass with logits_all=True;
    per position the top-K token ids and logits, and the gap between the top two logits.

Output: crates/lmrun-models/tests/data/ref-<model>.json (small: top-K only).

Usage: python3 scripts/models_make_refs.py [--numpy] [MODELS_DIR]   (default $LMRUN_MODELS_DIR
or ~/.cache/lmrun/models). Needs `pip install llama-cpp-python numpy`.

--numpy: when llama-cpp-python is not available, the same records from an independent NumPy
float32 implementation of llama.cpp's graphs (weights dequantized with gguf-py, activations not
quantized, f32 KV cache), with prompts tokenized by `lmrun tokenize` (target/release/lmrun).
The JSON's "generator" field says which reference made it.
"""
import json
import os
import subprocess
import sys

import numpy as np

MODELS = ["qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "gemma-3-270m-q4_k_m.gguf"]
TOP_K = 10
N_GEN = 64
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "lmrun-models", "tests", "data")

LONG_TEXT = """\
The history of computing is a story of abstraction layered upon abstraction. The earliest
mechanical calculators, such as the Pascaline and Leibniz's stepped reckoner, could add and
multiply, but every step of a calculation had to be directed by a human operator. Charles
Babbage's Analytical Engine, designed in the 1830s, was the first machine conceived to be
programmable: it separated the store, where numbers were kept, from the mill, where they were
transformed, and it read its instructions from punched cards borrowed from the Jacquard loom.
Ada Lovelace, writing notes on a description of the engine, saw that such a machine could act on
symbols of any kind, not only numbers, and she published what is often called the first program,
a method for computing Bernoulli numbers.

A century later, Alan Turing gave the idea of computation a precise mathematical form. His
imaginary machine, a head moving along an endless tape and following a finite table of rules,
could compute anything that any mechanical procedure could compute. The same paper showed that
some questions, such as whether an arbitrary program will ever halt, cannot be answered by any
such machine. During the Second World War, electromechanical and then electronic machines were
built to break codes and to compute firing tables, and after the war John von Neumann described
the stored-program architecture in which instructions and data share the same memory. Nearly
every computer built since follows that design.

The transistor, invented at Bell Labs in 1947, replaced the fragile vacuum tube, and the
integrated circuit put many transistors on a single piece of silicon. Gordon Moore observed in
1965 that the number of components on a chip was doubling at a steady pace, and for half a
century the industry made his observation come true. Mainframes gave way to minicomputers,
minicomputers to personal computers, and personal computers to phones that fit in a pocket and
hold more memory than the machines that guided astronauts to the Moon.

Software grew alongside the hardware. Assembly languages gave names to machine instructions;
FORTRAN and COBOL let scientists and businesses write formulas and records instead of opcodes;
Lisp showed that programs could manipulate other programs as data. In the 1970s, the C language
and the Unix operating system, written at Bell Labs, demonstrated that an operating system could
be portable across machines, and their ideas of small tools, plain text and pipes still shape how
programmers work. Object-oriented languages, garbage collection, version control, the relational
database and the compiler optimizer each removed a class of tedious work from the programmer's
day.

Networking turned isolated machines into a single system. The ARPANET connected a handful of
universities in 1969; the TCP/IP protocols, adopted in 1983, let different networks speak to each
other; and Tim Berners-Lee's World Wide Web, proposed in 1989 at CERN, made the network usable by
anyone with a browser. Search engines, online shops, social networks and streaming services
followed, and with them came data centers holding hundreds of thousands of servers.

The most recent layer is machine learning. Instead of writing rules by hand, engineers collect
examples and let an optimization procedure adjust the parameters of a model until its outputs
match. Neural networks, an idea from the 1940s, became practical once graphics processors made
large matrix multiplications cheap and the internet supplied enormous amounts of text and images.
Language models trained to predict the next word in a sentence turned out to learn grammar,
facts and even some reasoning, and running them efficiently on ordinary processors is now an
engineering problem of its own: the weights must be compressed, the memory traffic minimized,
and every core kept busy. In the end, the question every generation of engineers has asked
remains the same:"""

PROMPTS = [
    ("capital", "The capital of France is"),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("story", "Once upon a time, in a small village by the sea, there lived an old fisherman who"),
    ("long", LONG_TEXT),
]


def topk(row, k):
    idx = np.argpartition(-row, k)[:k]
    idx = idx[np.argsort(-row[idx])]
    return [int(i) for i in idx], [round(float(row[i]), 4) for i in idx]


class LlamaCppRef:
    """llama.cpp through llama-cpp-python."""

    def __init__(self, path):
        import llama_cpp
        self.generator = f"llama-cpp-python {llama_cpp.__version__}"
        self.kv_type = "f16"
        self.llm = llama_cpp.Llama(model_path=path, logits_all=True, n_ctx=1024, n_batch=512,
                                   n_threads=2, verbose=False)
        self.add_bos = self.llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"

    def tokenize(self, text):
        return self.llm.tokenize(text.encode(), add_bos=self.add_bos, special=False)

    def greedy(self, tokens, n):
        llm = self.llm
        llm.reset()
        llm.eval(tokens)
        gen, gaps = [], []
        for _ in range(n):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            ids, vals = topk(row, 2)
            gen.append(ids[0])
            gaps.append(round(vals[0] - vals[1], 4))
            llm.eval([ids[0]])
        return gen, gaps

    def teacher_forced_topk(self, seq, k):
        llm = self.llm
        llm.reset()
        llm.eval(seq)
        return [topk(np.array(row, dtype=np.float32), k) for row in llm.scores[:len(seq)]]


class NumpyRef:
    """llama.cpp's qwen2/gemma3/llama graphs in NumPy float32, with a KV cache."""

    def __init__(self, path):
        import gguf
        from gguf.quants import dequantize
        self.generator = "numpy-f32 (llama.cpp graph semantics; gguf-py dequantization)"
        self.kv_type = "f32"
        self.path = path
        r = gguf.GGUFReader(path)
        arch = r.fields["general.architecture"].contents()
        self.arch = arch
        get = lambda k, d=None: (r.fields[f"{arch}.{k}"].contents()
                                 if f"{arch}.{k}" in r.fields else d)
        self.w = {}
        for t in r.tensors:
            shape = [int(x) for x in t.shape][::-1]
            self.w[t.name] = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        self.E = get("embedding_length")
        self.nh = get("attention.head_count")
        self.nkv = get("attention.head_count_kv", self.nh)
        self.hd = get("attention.key_length", self.E // self.nh)
        self.L = get("block_count")
        self.eps = get("attention.layer_norm_rms_epsilon", 1e-5)
        self.base = get("rope.freq_base", 10000.0)
        self.neox = arch in ("qwen2", "gemma3")
        self.gemma = arch == "gemma3"
        self.window = get("attention.sliding_window") if self.gemma else None
        self.softcap = get("final_logit_softcapping") if self.gemma else None
        self.out_w = self.w.get("output.weight", self.w["token_embd.weight"])
        self.add_bos = bool(r.fields["tokenizer.ggml.add_bos_token"].contents()) \
            if "tokenizer.ggml.add_bos_token" in r.fields else False
        self.reset()

    def reset(self):
        self.K = [np.zeros((1024, self.nkv, self.hd), np.float32) for _ in range(self.L)]
        self.V = [np.zeros((1024, self.nkv, self.hd), np.float32) for _ in range(self.L)]

    def tokenize(self, text):
        lmrun = os.path.join(os.path.dirname(__file__), "..", "target", "release", "lmrun")
        args = [lmrun, "tokenize", "-m", self.path, "--output", "json", text]
        if not self.add_bos:
            args.insert(2, "--no-bos")
        return json.loads(subprocess.check_output(args))["ids"]

    @staticmethod
    def norm(x, w, eps):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def rope(self, x, pos, base):
        """x: [n, heads, hd]; pos: [n]."""
        half = self.hd // 2
        inv = base ** (-2.0 * np.arange(half) / self.hd)
        th = pos[:, None].astype(np.float64) * inv[None, :]
        c = np.cos(th)[:, None, :].astype(np.float32)
        s = np.sin(th)[:, None, :].astype(np.float32)
        x = x.copy()
        if self.neox:
            a, b = x[..., :half].copy(), x[..., half:].copy()
            x[..., :half], x[..., half:] = a * c - b * s, a * s + b * c
        else:
            a, b = x[..., 0::2].copy(), x[..., 1::2].copy()
            x[..., 0::2], x[..., 1::2] = a * c - b * s, a * s + b * c
        return x

    def forward(self, tokens, p0):
        """Hidden states (after the final norm) of `tokens` at positions p0.."""
        w, E, nh, nkv, hd, eps = self.w, self.E, self.nh, self.nkv, self.hd, self.eps
        n = len(tokens)
        pos = np.arange(p0, p0 + n)
        x = w["token_embd.weight"][tokens].astype(np.float32)
        if self.gemma:
            x = x * np.float32(np.sqrt(E))
        g = nh // nkv
        for il in range(self.L):
            p = f"blk.{il}."
            swa = self.gemma and il % 6 < 5
            base = 10000.0 if swa else self.base
            xn = self.norm(x, w[p + "attn_norm.weight"], eps)
            q = xn @ w[p + "attn_q.weight"].T
            k = xn @ w[p + "attn_k.weight"].T
            v = xn @ w[p + "attn_v.weight"].T
            if p + "attn_q.bias" in w:
                q += w[p + "attn_q.bias"]
                k += w[p + "attn_k.bias"]
                v += w[p + "attn_v.bias"]
            q, k, v = q.reshape(n, nh, hd), k.reshape(n, nkv, hd), v.reshape(n, nkv, hd)
            if self.gemma:
                q = self.norm(q, w[p + "attn_q_norm.weight"], eps)
                k = self.norm(k, w[p + "attn_k_norm.weight"], eps)
            q, k = self.rope(q, pos, base), self.rope(k, pos, base)
            self.K[il][p0:p0 + n] = k
            self.V[il][p0:p0 + n] = v
            T = p0 + n
            kpos = np.arange(T)
            mask = kpos[None, :] > pos[:, None]
            if swa:
                mask |= (pos[:, None] - kpos[None, :]) >= self.window
            out = np.empty((n, nh, hd), np.float32)
            for h in range(nh):
                s = q[:, h] @ self.K[il][:T, h // g].T / np.float32(np.sqrt(hd))
                s[mask] = -np.inf
                s = np.exp(s - s.max(axis=1, keepdims=True))
                s /= s.sum(axis=1, keepdims=True)
                out[:, h] = s @ self.V[il][:T, h // g]
            o = out.reshape(n, nh * hd) @ w[p + "attn_output.weight"].T
            if self.gemma:
                o = self.norm(o, w[p + "post_attention_norm.weight"], eps)
            x = x + o
            xn = self.norm(x, w[p + "ffn_norm.weight"], eps)
            gt = xn @ w[p + "ffn_gate.weight"].T
            up = xn @ w[p + "ffn_up.weight"].T
            if self.gemma:
                act = 0.5 * gt * (1 + np.tanh(np.float32(np.sqrt(2 / np.pi)) * (gt + 0.044715 * gt ** 3)))
            else:
                act = gt / (1 + np.exp(-gt))
            o = (act * up) @ w[p + "ffn_down.weight"].T
            if self.gemma:
                o = self.norm(o, w[p + "post_ffw_norm.weight"], eps)
            x = x + o
        return self.norm(x, w["output_norm.weight"], eps)

    def logits(self, h):
        l = h @ self.out_w.T
        if self.softcap:
            l = self.softcap * np.tanh(l / self.softcap)
        return l

    def greedy(self, tokens, n):
        self.reset()
        h = self.forward(tokens, 0)[-1:]
        gen, gaps = [], []
        for i in range(n):
            ids, vals = topk(self.logits(h)[0], 2)
            gen.append(ids[0])
            gaps.append(round(vals[0] - vals[1], 4))
            h = self.forward([ids[0]], len(tokens) + i)
        return gen, gaps

    def teacher_forced_topk(self, seq, k):
        self.reset()
        out = []
        for s in range(0, len(seq), 256):
            h = self.forward(seq[s:s + 256], s)
            out += [topk(row, k) for row in self.logits(h)]
        return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    use_numpy = "--numpy" in sys.argv
    models_dir = args[0] if args else os.environ.get(
        "LMRUN_MODELS_DIR", os.path.expanduser("~/.cache/lmrun/models"))
    for name in MODELS:
        path = os.path.join(models_dir, name)
        ref = NumpyRef(path) if use_numpy else LlamaCppRef(path)
        out = {"model": name, "generator": ref.generator,
               "top_k": TOP_K, "kv_type": ref.kv_type, "prompts": []}
        add_bos = ref.add_bos
        for pname, text in PROMPTS:
            tokens = ref.tokenize(text)
            # free-running greedy continuation
            gen, gen_gaps = ref.greedy(tokens, N_GEN)
            # teacher-forced: prompt + continuation in one pass
            seq = tokens + gen
            top_ids, top_logits, gaps = [], [], []
            for ids, vals in ref.teacher_forced_topk(seq, TOP_K):
                top_ids.append(ids)
                top_logits.append(vals)
                gaps.append(round(vals[0] - vals[1], 4))
            out["prompts"].append({
                "name": pname, "text": text, "add_bos": add_bos, "prompt": tokens,
                "continuation": gen, "continuation_gaps": gen_gaps,
                "top_ids": top_ids, "top_logits": top_logits, "gaps": gaps,
            })
            print(f"{name} {pname}: {len(tokens)} prompt tokens, "
                  f"{sum(g <= 0.05 for g in gaps)} near-ties", file=sys.stderr)
        stem = name.split("-q4")[0]
        with open(os.path.join(OUT, f"ref-{stem}.json"), "w") as f:
            json.dump(out, f, separators=(",", ":"))
        del ref


if __name__ == "__main__":
    main()
