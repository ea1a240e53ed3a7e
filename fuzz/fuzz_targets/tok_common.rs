//! Shared by the tokenizer fuzz targets (included with `#[path]`): once a reader has accepted
//! the input, drive the tokenizer's runtime the way the runner does. The text to encode is a
//! piece of the input itself (so it contains the vocabulary's own pieces and special tokens)
//! plus a fixed multilingual line with ChatML/Llama/Gemma control tokens.

use lmrun_tokenizers::{EncodeOptions, StreamDecoder, Tokenizer};

const FIXED: &str = "Hello, world! <|im_start|>user\n<s> </s> <start_of_turn>  x\t\r\n\
                     é 日本語 🦀 \u{0} \u{feff}<|begin_of_text|><|eot_id|> <unk> 123 4567";

/// A window of up to 256 bytes of `data` (a third of the way in), as text.
pub fn text_from(data: &[u8]) -> String {
    let start = data.len() / 3;
    let end = (start + 256).min(data.len());
    String::from_utf8_lossy(&data[start..end]).into_owned()
}

pub fn exercise<T: Tokenizer + ?Sized>(tok: &T, data: &[u8]) {
    let vocab = tok.vocab_size();
    let _ = (tok.bos_id(), tok.eos_id(), tok.eog_ids(), tok.kind());
    let _ = tok.default_options(true);
    let window = text_from(data);
    for text in [window.as_str(), FIXED, ""] {
        for parse_special in [false, true] {
            let opts = EncodeOptions {
                num_bos: 1,
                num_eos: 1,
                parse_special,
            };
            let Ok(ids) = tok.encode_with(text, &opts) else {
                continue;
            };
            for &id in &ids {
                assert!(
                    (id as usize) < vocab,
                    "encode gave id {id} for a vocabulary of {vocab}"
                );
            }
            let _ = tok.decode(&ids);
            let mut dec = StreamDecoder::for_tokenizer(tok);
            for &id in &ids {
                let _ = dec.push(tok, id, parse_special);
            }
            let _ = dec.finish();
        }
    }
    let _ = tok.encode(&window, 0, 0);
    // Lookups on ids in and just past the vocabulary.
    for id in [0u32, 1, 2, 3, 255, 256] {
        for id in [
            id,
            (vocab as u32).wrapping_sub(1).wrapping_sub(id),
            (vocab as u32).wrapping_add(id),
        ] {
            let _ = tok.piece(id);
            let _ = tok.is_special(id);
            let _ = tok.token_bytes(id, true);
            let _ = tok.token_bytes(id, false);
        }
    }
    for s in [
        "<|im_start|>",
        "<s>",
        "</s>",
        "<|eot_id|>",
        "<start_of_turn>",
    ] {
        let _ = tok.special_token_id(s);
    }
    let _ = tok.decode(&[0, 1, 2, vocab as u32, u32::MAX]);
}
