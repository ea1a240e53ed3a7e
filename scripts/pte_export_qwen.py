#!/usr/bin/env python3
"""Export the real Qwen2.5-Coder-0.5B-Instruct as ExecuTorch programs, for issue 18's
side-by-side measurements (not a CI fixture: the files are hundreds of MB and the export takes
minutes).

The weights come from the project's GGUF (`scripts/fetch_models.sh`), dequantized by
`transformers` (it reads GGUF), renamed to ExecuTorch's llama_transformer ("Meta") keys and
saved as a checkpoint; then ExecuTorch's own `export_llama(LlmConfig)` (the function behind
`python -m executorch.extension.llm.export.export_llm`) exports it with
`model_class=qwen2_5_0_5b`, KV cache and custom SDPA, as the ExecuTorch Qwen2.5 example does.

    python3 scripts/pte_export_qwen.py --variant xnnpack_8da4w            # group 32
    python3 scripts/pte_export_qwen.py --variant xnnpack_8da4w --group-size 128
    python3 scripts/pte_export_qwen.py --variant xnnpack_fp32

Needs `executorch` (1.5.1), `torch`, `transformers` and `gguf` importable (one way: a venv with
`pip install executorch==1.5.1 transformers gguf` plus a `.pth` pointing at a site-packages
that has torch). Writes `~/.cache/lmrun/pte/qwen2.5-coder-0.5b-<variant>[-g<N>].pte` and the
tokenizer next to it.
"""
import argparse
import json
import os
import sys
from pathlib import Path

# The HF Qwen2 name of each Meta key (ExecuTorch's qwen2_5 convert_weights mapping, inverted).
META_FROM_HF = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
    "self_attn.q_proj.weight": "attention.wq.weight",
    "self_attn.q_proj.bias": "attention.wq.bias",
    "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.k_proj.bias": "attention.wk.bias",
    "self_attn.v_proj.weight": "attention.wv.weight",
    "self_attn.v_proj.bias": "attention.wv.bias",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight",
}


def meta_key(k):
    if k in META_FROM_HF:
        return META_FROM_HF[k]
    parts = k.split(".")
    if parts[:2] == ["model", "layers"]:
        rest = ".".join(parts[3:])
        if rest in META_FROM_HF:
            return f"layers.{parts[2]}.{META_FROM_HF[rest]}"
    raise KeyError(f"no Meta name for {k}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=os.path.expanduser(
        "~/.cache/lmrun/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"))
    ap.add_argument("--variant", default="xnnpack_8da4w",
                    choices=["xnnpack_8da4w", "xnnpack_fp32", "portable_fp32"])
    ap.add_argument("--group-size", type=int, default=32)
    ap.add_argument("--max-seq-len", type=int, default=1024)
    ap.add_argument("--out-dir", default=os.path.expanduser("~/.cache/lmrun/pte"))
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "qwen2.5-coder-0.5b-meta.pth"
    params = out / "qwen2.5-coder-0.5b-params.json"
    gguf = Path(args.gguf)
    if not ckpt.exists():
        print(f"dequantizing {gguf} through transformers ...", flush=True)
        m = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 torch_dtype=torch.float32)
        sd = {meta_key(k): v.contiguous() for k, v in m.state_dict().items()}
        if "output.weight" not in sd:
            sd["output.weight"] = sd["tok_embeddings.weight"]
        torch.save(sd, ckpt)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tok.save_pretrained(str(out / "qwen-tokenizer"))
        c = m.config
        json.dump({
            "dim": c.hidden_size, "hidden_dim": c.intermediate_size,
            "n_heads": c.num_attention_heads, "n_kv_heads": c.num_key_value_heads,
            "n_layers": c.num_hidden_layers, "norm_eps": float(f"{c.rms_norm_eps:.6g}"),
            "rope_theta": c.rope_theta if hasattr(c, "rope_theta") else
            c.rope_parameters["rope_theta"],
            "vocab_size": c.vocab_size, "use_scaled_rope": False, "use_hf_rope": True,
            "attention_qkv_bias": True, "ffn_dim_multiplier": 1,
        }, open(params, "w"))
        del m, sd

    from executorch.examples.models.llama.export_llama_lib import export_llama
    from executorch.extension.llm.export.config.llm_config import (DtypeOverride, LlmConfig,
                                                                   ModelType)

    cfg = LlmConfig()
    cfg.base.model_class = ModelType("qwen2_5_0_5b")
    cfg.base.checkpoint = str(ckpt)
    cfg.base.params = str(params)
    cfg.base.metadata = '{"get_bos_id": 151643, "get_eos_ids": [151645, 151643]}'
    cfg.model.use_kv_cache = True
    cfg.model.use_sdpa_with_kv_cache = True
    cfg.model.dtype_override = DtypeOverride("fp32")
    cfg.export.max_seq_length = args.max_seq_len
    cfg.export.max_context_length = args.max_seq_len
    cfg.export.output_dir = str(out)
    name = f"qwen2.5-coder-0.5b-{args.variant}"
    if args.variant == "xnnpack_8da4w":
        cfg.quantization.qmode = "8da4w"
        cfg.quantization.group_size = args.group_size
        name += f"-g{args.group_size}"
    if args.variant.startswith("xnnpack"):
        cfg.backend.xnnpack.enabled = True
        cfg.backend.xnnpack.extended_ops = True
    cfg.export.output_name = name + ".pte"
    print(f"exporting {name} ...", flush=True)
    path = Path(export_llama(cfg))
    # export_llama writes the file under the current directory whatever output_dir says.
    if path.resolve().parent != out.resolve():
        path = path.rename(out / path.name)
    print(path)


if __name__ == "__main__":
    sys.exit(main())
