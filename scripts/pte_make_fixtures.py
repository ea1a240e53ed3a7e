#!/usr/bin/env python3
"""Make the tiny ExecuTorch export-option fixtures of issue 18 and ExecuTorch's references.

One tiny random Llama (the parameters of `crates/lmrun-pte/tests/data/tiny_params.json`: dim 128,
2 layers, 4 heads, 2 KV heads, FFN 352, vocab 512; weights drawn once with a fixed seed and saved
as a Meta-format checkpoint) is exported by ExecuTorch 1.5.1's own `export_llama(LlmConfig)` (the
function behind `python -m executorch.extension.llm.export.export_llm`) once per export option
combination below. For each program that exports, the references are made by ExecuTorch itself:

* `run_<variant>.json`: a greedy loop over `executorch.runtime` (`forward(tokens, input_pos)`,
  prompt ids [325, 259, 66, 337] prefilled at once, then 31 single-token steps: 32 ids), the
  program's methods and metadata, and ExecuTorch's C++ `TextLLMRunner` (Python binding) run on
  the same prompt text with temperature 0; `runner_matches_loop` says whether the runner's text
  equals the loop's ids decoded by the same tokenizer.
* `logits_<variant>.npy`: the loop's logits at every step (32 x 512 f32; step 0 = prefill).

A variant that fails to export, or that ExecuTorch cannot run, is recorded with its error in
`export_matrix.json` (the repository's list of supported and unsupported options is built from
it). Run with a Python that has `executorch==1.5.1` (and its `torch`):

    /work/etvenv/bin/python scripts/pte_make_fixtures.py [--only NAME,...] [--out DIR]

Writes into `crates/lmrun-pte/tests/data/` by default. Slow (tens of seconds per variant on two
cores): run it by hand, not in CI; the outputs are committed.
"""
import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "crates/lmrun-pte/tests/data"
TOKENIZER = ROOT / "crates/lmrun-tokenizers/tests/data/tok512/tokenizer.json"
PROMPT_TEXT = "Once upon a time"
PROMPT = [325, 259, 66, 337]
N = 32

# name -> options. xnnpack: lower to the XNNPACK delegate; qmode/group: linear quantization
# (group 0 = one scale per output channel);
# emb: embedding quantization "<bits>,<group>" (0 = per row); qkv: quantize_kv_cache; ptd: the
# delegate's weights in a .ptd (foundation_weights_file); sdpa: use_sdpa_with_kv_cache.
VARIANTS = {
    "xnnpack_8da4w_g128": dict(xnnpack=True, qmode="8da4w", group=128),
    "xnnpack_8da4w_g128_ptd": dict(xnnpack=True, qmode="8da4w", group=128, ptd=True),
    "xnnpack_8da8w": dict(xnnpack=True, qmode="8da8w", group=0),
    "xnnpack_8da4w_pc": dict(xnnpack=True, qmode="8da4w", group=0),
    "xnnpack_8da4w_emb8": dict(xnnpack=True, qmode="8da4w", group=32, emb="8,0"),
    "xnnpack_8da4w_emb4": dict(xnnpack=True, qmode="8da4w", group=32, emb="4,32"),
    "xnnpack_8da4w_qkv": dict(xnnpack=True, qmode="8da4w", group=32, qkv=True),
    "portable_int8": dict(qmode="int8"),
    "portable_4w": dict(qmode="4w", group=32),
    "portable_emb8": dict(emb="8,0"),
    "portable_emb4": dict(emb="4,32"),
    "portable_qkv": dict(qkv=True),
}


def make_checkpoint(out: Path):
    import torch

    p = json.load(open(DATA / "tiny_params.json"))
    dim, L, H, KV, V = p["dim"], p["n_layers"], p["n_heads"], p["n_kv_heads"], p["vocab_size"]
    hd = dim // H
    hidden = int(2 * (4 * dim) / 3)
    hidden = p["multiple_of"] * ((hidden + p["multiple_of"] - 1) // p["multiple_of"])
    g = torch.Generator().manual_seed(1806)

    def lin(o, i):
        return (torch.rand(o, i, generator=g) * 2 - 1) / (i ** 0.5) * 1.7

    def norm(n):
        return 1 + 0.1 * torch.randn(n, generator=g)

    sd = {"tok_embeddings.weight": torch.randn(V, dim, generator=g), "norm.weight": norm(dim)}
    for l in range(L):
        pre = f"layers.{l}."
        sd[pre + "attention.wq.weight"] = lin(H * hd, dim)
        sd[pre + "attention.wk.weight"] = lin(KV * hd, dim)
        sd[pre + "attention.wv.weight"] = lin(KV * hd, dim)
        sd[pre + "attention.wo.weight"] = lin(dim, H * hd)
        sd[pre + "feed_forward.w1.weight"] = lin(hidden, dim)
        sd[pre + "feed_forward.w3.weight"] = lin(hidden, dim)
        sd[pre + "feed_forward.w2.weight"] = lin(dim, hidden)
        sd[pre + "attention_norm.weight"] = norm(dim)
        sd[pre + "ffn_norm.weight"] = norm(dim)
    sd["output.weight"] = lin(V, dim) * 4
    torch.save(sd, out)


def export(name, opt, ckpt, work: Path):
    from executorch.examples.models.llama.export_llama_lib import export_llama
    from executorch.extension.llm.export.config.llm_config import (DtypeOverride, LlmConfig,
                                                                   ModelType)

    cfg = LlmConfig()
    cfg.base.model_class = ModelType("llama3")
    cfg.base.checkpoint = str(ckpt)
    cfg.base.params = str(DATA / "tiny_params.json")
    cfg.base.metadata = '{"get_bos_id": 0, "get_eos_ids": [1]}'
    cfg.model.use_kv_cache = True
    cfg.model.use_sdpa_with_kv_cache = opt.get("sdpa", True)
    cfg.model.quantize_kv_cache = opt.get("qkv", False)
    cfg.model.dtype_override = DtypeOverride("fp32")
    cfg.export.max_seq_length = 128
    cfg.export.max_context_length = 128
    cfg.export.output_dir = str(work)
    if opt.get("qmode"):
        cfg.quantization.qmode = opt["qmode"]
        if "group" in opt:
            cfg.quantization.group_size = opt["group"]
    if opt.get("emb"):
        cfg.quantization.embedding_quantize = opt["emb"]
    if opt.get("xnnpack"):
        cfg.backend.xnnpack.enabled = True
        cfg.backend.xnnpack.extended_ops = True
    if opt.get("ptd"):
        cfg.export.foundation_weights_file = f"tiny_{name}.ptd"
    cfg.export.output_name = f"tiny_{name}.pte"
    cwd = os.getcwd()
    os.chdir(work)
    try:
        path = Path(export_llama(cfg))
    finally:
        os.chdir(cwd)
    if not path.is_absolute():
        path = work / path
    ptd = None
    if opt.get("ptd"):
        cands = list(work.glob("*.ptd"))
        if not cands:
            raise RuntimeError("export wrote no .ptd")
        ptd = cands[0]
    return path, ptd


def reference(pte: Path, ptd):
    import numpy as np
    import torch
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  (llama:: ops)
    try:
        from executorch.kernels import quantized  # noqa: F401  (quantized_decomposed ops)
    except Exception:
        pass
    from executorch.runtime import Runtime

    rt = Runtime.get()
    prog = rt.load_program(str(pte), data_path=str(ptd)) if ptd else rt.load_program(str(pte))
    methods = sorted(prog.method_names)
    meta = {}
    for mname in methods:
        if mname == "forward":
            continue
        try:
            v = prog.load_method(mname).execute([])
            meta[mname] = [x.tolist() if hasattr(x, "tolist") else x for x in v]
        except Exception as e:  # noqa: BLE001
            meta[mname] = f"error: {e}"
    m = prog.load_method("forward")

    def step(toks, pos):
        out = m.execute([torch.tensor([toks], dtype=torch.long),
                         torch.tensor([pos], dtype=torch.long)])
        return out[0].reshape(-1, out[0].shape[-1])[-1].float().numpy().copy()

    logits = [step(PROMPT, 0)]
    ids = [int(np.argmax(logits[0]))]
    for i in range(N - 1):
        logits.append(step([ids[-1]], len(PROMPT) + i))
        ids.append(int(np.argmax(logits[-1])))
    return ids, np.stack(logits).astype(np.float32), methods, meta


def runner_text(pte: Path, ptd):
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner

    r = TextLLMRunner(str(pte), str(TOKENIZER), str(ptd) if ptd else None)
    pieces = []
    cfg = GenerationConfig(echo=False, max_new_tokens=N, temperature=0.0, num_bos=0, num_eos=0)
    r.generate(PROMPT_TEXT, cfg, token_callback=pieces.append)
    return pieces


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=str(DATA))
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/lmrun/pte-fixtures"))
    a = ap.parse_args()
    import numpy as np
    from tokenizers import Tokenizer

    out = Path(a.out)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "tiny_fixture_ckpt.pth"
    if not ckpt.exists():
        make_checkpoint(ckpt)
    tok = Tokenizer.from_file(str(TOKENIZER))
    matrix_path = out / "export_matrix.json"
    matrix = json.load(open(matrix_path)) if matrix_path.exists() else {}
    names = [n for n in VARIANTS if not a.only or n in a.only.split(",")]
    for name in names:
        opt = VARIANTS[name]
        vw = work / name
        if vw.exists():
            for f in vw.iterdir():
                f.unlink()
        vw.mkdir(exist_ok=True)
        rec = {"options": opt}
        t0 = time.time()
        try:
            pte, ptd = export(name, opt, ckpt, vw)
            rec["export"] = "ok"
            rec["export_s"] = round(time.time() - t0, 1)
        except Exception as e:  # noqa: BLE001
            rec["export"] = f"error: {type(e).__name__}: {str(e)[:400]}"
            traceback.print_exc()
            matrix[name] = rec
            print(f"{name}: export failed: {e}", flush=True)
            continue
        try:
            ids, logits, methods, meta = reference(pte, ptd)
            rec["executorch"] = "ok"
        except Exception as e:  # noqa: BLE001
            rec["executorch"] = f"error: {type(e).__name__}: {str(e)[:400]}"
            traceback.print_exc()
            ids = None
        try:
            pieces = runner_text(pte, ptd) if ids is not None else None
        except Exception as e:  # noqa: BLE001
            pieces = None
            rec["runner"] = f"error: {type(e).__name__}: {str(e)[:400]}"
        dst = out / pte.name
        dst.write_bytes(pte.read_bytes())
        rec["pte"] = pte.name
        rec["pte_size"] = pte.stat().st_size
        if ptd:
            (out / f"tiny_{name}.ptd").write_bytes(ptd.read_bytes())
            rec["ptd"] = f"tiny_{name}.ptd"
            rec["ptd_size"] = ptd.stat().st_size
        if ids is not None:
            np.save(out / f"logits_{name}.npy", logits)
            text = tok.decode(ids, skip_special_tokens=False)
            run = {"pte": pte.name, "data": rec.get("ptd"), "prompt": PROMPT_TEXT,
                   "prompt_ids": PROMPT, "n": N, "methods": methods, "metadata": meta,
                   "loop": {"ids": ids, "text": text},
                   "runner": {"pieces": pieces, "text": "".join(pieces) if pieces else None},
                   "runner_matches_loop": pieces is not None and "".join(pieces) == text}
            json.dump(run, open(out / f"run_{name}.json", "w"), indent=1)
            rec["runner_matches_loop"] = run["runner_matches_loop"]
        matrix[name] = rec
        print(f"{name}: {rec}", flush=True)
        json.dump(matrix, open(matrix_path, "w"), indent=1, sort_keys=True)
    json.dump(matrix, open(matrix_path, "w"), indent=1, sort_keys=True)


if __name__ == "__main__":
    sys.exit(main())
