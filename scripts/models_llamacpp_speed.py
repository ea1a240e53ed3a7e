#!/usr/bin/env python3
"""llama.cpp's prefill and decode speed on the same workload as
`cargo run --release -p lmrun-models --example models_bench -- MODEL --prompt N --decode M`
(same synthetic prompt ids), for side-by-side numbers. Usage:
python3 scripts/models_llamacpp_speed.py MODEL.gguf [threads] [n_prompt] [n_decode]
"""
import sys
import time

import numpy as np
import llama_cpp

path = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
n_prompt = int(sys.argv[3]) if len(sys.argv) > 3 else 512
n_decode = int(sys.argv[4]) if len(sys.argv) > 4 else 32
llm = llama_cpp.Llama(model_path=path, n_ctx=n_prompt + n_decode + 8, n_batch=512,
                      n_threads=threads, n_threads_batch=threads, verbose=False)
n_vocab = llm.n_vocab()
bos = llm.token_bos()
prompt = [bos] + [(i * 7919 + 1000) % min(n_vocab, 30000) for i in range(1, n_prompt)]
t = time.time()
llm.eval(prompt)
dt = time.time() - t
print(f"llama.cpp {threads}t prefill {n_prompt} tokens: {dt:.2f} s, {n_prompt / dt:.1f} tok/s")


def last_logits():
    return np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(n_vocab,))


tok = int(np.argmax(last_logits()))
t = time.time()
for _ in range(n_decode):
    llm.eval([tok])
    tok = int(np.argmax(last_logits()))
dt = time.time() - t
print(f"llama.cpp {threads}t decode {n_decode} tokens: {dt:.2f} s, {n_decode / dt:.1f} tok/s")
