//! Fuzz the SentencePieceTokenizer reader on a SentencePiece `tokenizer.model` (protobuf): any bytes must give a tokenizer or a
//! `TokenizerError`, never a panic. A loaded tokenizer then encodes (with and without
//! special-token parsing), decodes and stream-decodes a piece of the input (`tok_common.rs`).
//!
//!     cargo +nightly fuzz run sentencepiece_model
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrun_tokenizers::SentencePieceTokenizer;

#[path = "tok_common.rs"]
mod tok_common;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("<fuzz>");
    if let Ok(tok) = SentencePieceTokenizer::from_bytes(data, path) {
        tok_common::exercise(&tok, data);
    }
});
