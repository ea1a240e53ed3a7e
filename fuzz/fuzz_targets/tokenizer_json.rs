//! Fuzz the Hugging Face `tokenizer.json` reader (`HfTokenizer::from_bytes`): any bytes must
//! give a tokenizer or a `TokenizerError`, never a panic. The input is also offered as
//! `tokenizer_config.json` when it parses as JSON (so `bos_token`/`eos_token` lookups run). A
//! loaded tokenizer then encodes (with and without special-token parsing), decodes and
//! stream-decodes a piece of the input (`tok_common.rs`).
//!
//!     cargo +nightly fuzz run tokenizer_json
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrun_tokenizers::HfTokenizer;

#[path = "tok_common.rs"]
mod tok_common;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("<fuzz>/tokenizer.json");
    let config = serde_json::from_slice::<serde_json::Value>(data).ok();
    for cfg in [None, config.as_ref()] {
        if let Ok(tok) = HfTokenizer::from_bytes(data, cfg, path) {
            tok_common::exercise(&tok, data);
        }
        if config.is_none() {
            break;
        }
    }
});
