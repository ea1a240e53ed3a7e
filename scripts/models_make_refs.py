#!/usr/bin/env python3
"""Reference logits from llama.cpp (llama-cpp-python) for the real-model tests of lmrun-models.

For each model and each of 4 prompts (one longer than 700 tokens, so Gemma 3's 512-token sliding
window matters), records:
  - the prompt's token ids (llama.cpp's tokenizer) and a free-running greedy continuation of 64
    tokens (prompt evaluated, then one token at a time), with the top-2 gap at each step;
  - teacher-forced logits: prompt + continuation evaluated in one pass with logits_all=True;
    per position the top-K token ids and logits, and the gap between the top two logits.

Output: crates/lmrun-models/tests/data/ref-<model>.json (small: top-K only).

Usage: python3 scripts/models_make_refs.py [MODELS_DIR]   (default $LMRUN_MODELS_DIR or
~/.cache/lmrun/models). Needs `pip install llama-cpp-python numpy`.
"""
import json
import os
import sys

import numpy as np
import llama_cpp

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


def main():
    models_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "LMRUN_MODELS_DIR", os.path.expanduser("~/.cache/lmrun/models"))
    for name in MODELS:
        path = os.path.join(models_dir, name)
        llm = llama_cpp.Llama(model_path=path, logits_all=True, n_ctx=1024, n_batch=512,
                              n_threads=2, verbose=False)
        add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
        out = {"model": name, "generator": f"llama-cpp-python {llama_cpp.__version__}",
               "top_k": TOP_K, "kv_type": "f16", "prompts": []}
        for pname, text in PROMPTS:
            tokens = llm.tokenize(text.encode(), add_bos=add_bos, special=False)
            # free-running greedy continuation
            llm.reset()
            llm.eval(tokens)
            gen, gen_gaps = [], []
            for _ in range(N_GEN):
                row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
                ids, vals = topk(row, 2)
                gen.append(ids[0])
                gen_gaps.append(round(vals[0] - vals[1], 4))
                llm.eval([ids[0]])
            # teacher-forced: prompt + continuation in one pass
            seq = tokens + gen
            llm.reset()
            llm.eval(seq)
            scores = np.array(llm.scores[:len(seq)], dtype=np.float32)
            top_ids, top_logits, gaps = [], [], []
            for row in scores:
                ids, vals = topk(row, TOP_K)
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
        del llm


if __name__ == "__main__":
    main()
