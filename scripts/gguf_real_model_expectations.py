#!/usr/bin/env python3
"""Record what gguf.GGUFReader (llama.cpp's Python reader) sees in the two real test models, for
crates/lmrun-gguf/tests/real_models.rs to compare against.

    pip install gguf numpy
    scripts/fetch_models.sh
    python3 scripts/gguf_real_model_expectations.py  > crates/lmrun-gguf/tests/data/real_models.json

The models live in $LMRUN_MODELS_DIR (default ~/.cache/lmrun/models). For each model the JSON
holds: file size, version, alignment, data offset, tensor count, architecture, every scalar
metadata key (hyperparameters and tokenizer ids), the lengths of the array keys, and every
tensor's name, type, shape, file offset and byte size.
"""

import json
import os
import sys

import gguf

MODELS = ["gemma-3-270m-q4_k_m.gguf", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"]


def scalar(field):
    v = field.contents()
    if isinstance(v, float):
        return v
    return v


def main():
    cache = os.environ.get("LMRUN_MODELS_DIR") or os.path.expanduser("~/.cache/lmrun/models")
    out = {}
    for name in MODELS:
        path = os.path.join(cache, name)
        r = gguf.GGUFReader(path)
        scalars, arrays = {}, {}
        for key, f in r.fields.items():
            if key.startswith("GGUF."):
                continue
            if f.types[0] == gguf.GGUFValueType.ARRAY:
                arrays[key] = {"element_type": f.types[1].name, "len": len(f.data)}
            elif f.types[0] == gguf.GGUFValueType.STRING and len(f.contents()) > 200:
                arrays[key] = {"element_type": "STRING_VALUE", "len": len(f.contents())}
            else:
                scalars[key] = {"type": f.types[0].name, "value": scalar(f)}
        out[name] = {
            "file_size": os.path.getsize(path),
            "version": int(r.fields["GGUF.version"].contents()),
            "alignment": int(r.alignment),
            "data_offset": int(r.data_offset),
            "tensor_count": len(r.tensors),
            "metadata_count": len(r.fields) - 3,
            "architecture": r.fields["general.architecture"].contents(),
            "scalars": scalars,
            "arrays": arrays,
            "parameter_count": int(sum(int(t.n_elements) for t in r.tensors)),
            "tensors": [
                [t.name, t.tensor_type.name, [int(x) for x in t.shape], int(t.data_offset),
                 int(t.n_bytes)]
                for t in r.tensors
            ],
        }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
