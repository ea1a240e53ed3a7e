//! Shared helpers of the integration tests: where the real models are, and how to read a GGUF
//! file's `tokenizer.ggml.*` metadata into a `GgufVocab` (what the runner does).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use lmrun_gguf::{GgufFile, LeArray, LoadMode, StrArray};
use lmrun_tokenizers::{GgufTokenizer, GgufVocab};

pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// `$LMRUN_MODELS_DIR`, else `~/.cache/lmrun/models`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LMRUN_MODELS_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/lmrun/models")
}

/// The path of a real model; panics (fails the test) when it is missing.
pub fn model_path(name: &str) -> PathBuf {
    let p = models_dir().join(name);
    assert!(
        p.is_file(),
        "real model {} is missing: run scripts/fetch_models.sh (tests never skip it)",
        p.display()
    );
    p
}

/// Read the tokenizer metadata of a real model's GGUF file.
pub fn gguf_vocab(name: &str) -> GgufVocab {
    gguf_vocab_at(&model_path(name))
}

/// Read the tokenizer metadata of the GGUF file at `path`, as the runner does.
pub fn gguf_vocab_at(path: &Path) -> GgufVocab {
    let f = GgufFile::open(path, LoadMode::Mmap)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let md = f.metadata();
    let s = |k: &str| md.get_opt::<&str>(k).unwrap().map(str::to_string);
    let u = |k: &str| md.get_opt::<u32>(k).unwrap();
    let b = |k: &str| md.get_opt::<bool>(k).unwrap();
    GgufVocab {
        model: s("tokenizer.ggml.model").expect("tokenizer.ggml.model"),
        pre: s("tokenizer.ggml.pre"),
        // As the runner reads them: in place in the loaded file, not copied.
        tokens: md.get_str_array("tokenizer.ggml.tokens").unwrap().clone(),
        scores: md
            .get_opt::<&LeArray<f32>>("tokenizer.ggml.scores")
            .unwrap()
            .cloned(),
        token_types: md
            .get_opt::<&LeArray<i32>>("tokenizer.ggml.token_type")
            .unwrap()
            .cloned(),
        merges: md
            .get_opt::<&StrArray>("tokenizer.ggml.merges")
            .unwrap()
            .cloned(),
        bos_id: u("tokenizer.ggml.bos_token_id"),
        eos_id: u("tokenizer.ggml.eos_token_id"),
        unk_id: u("tokenizer.ggml.unknown_token_id"),
        pad_id: u("tokenizer.ggml.padding_token_id"),
        eot_id: u("tokenizer.ggml.eot_token_id"),
        eom_id: u("tokenizer.ggml.eom_token_id"),
        add_bos: b("tokenizer.ggml.add_bos_token"),
        add_eos: b("tokenizer.ggml.add_eos_token"),
        add_space_prefix: b("tokenizer.ggml.add_space_prefix"),
    }
}

/// The GGUF tokenizer of a real model.
pub fn gguf_tokenizer(name: &str) -> GgufTokenizer {
    GgufTokenizer::from_vocab(gguf_vocab(name)).expect("build tokenizer")
}
