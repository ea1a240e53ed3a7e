//! Transformer decoders (llama, qwen2, gemma3) assembled from GGUF metadata, computing with
//! `lmrun-kernels` on weights that stay where the loader put them. (Placeholder: issue 6.)
#![forbid(unsafe_code)]
