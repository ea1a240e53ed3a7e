//! Real-model tests: the GGUF tokenizers of Gemma 3 (SPM) and Qwen2.5-Coder (byte-level BPE,
//! pre `qwen2`) against llama.cpp's tokenization (committed references made by
//! `scripts/tokenizers_make_refs.py`), plus round trips and streaming decode. The models are
//! read from `$LMRUN_MODELS_DIR` or `~/.cache/lmrun/models`; a missing model fails the test.

mod common;

use std::path::PathBuf;

use common::{gguf_tokenizer, gguf_vocab, GEMMA, QWEN};
use lmrun_tokenizers::{EncodeOptions, GgufTokenizer, StreamDecoder, Tokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Refs {
    generator: String,
    models: std::collections::BTreeMap<String, Vec<Case>>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    add_special: bool,
    parse_special: bool,
    ids: Vec<u32>,
}

fn refs() -> Refs {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/llamacpp_refs.json");
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).expect("parse refs")
}

fn check_against_llamacpp(model: &str) {
    check_cases(model, &gguf_tokenizer(model));
}

/// Compare with the references stored under `model` (a model file name, or
/// `"<model>#pre=<name>"` for the Qwen vocabulary run through another pre-tokenizer).
fn check_cases(model: &str, tok: &GgufTokenizer) {
    let refs = refs();
    let cases = refs
        .models
        .get(model)
        .unwrap_or_else(|| panic!("no references for {model}"));
    assert!(cases.len() >= 40, "need at least 40 reference cases");
    let mut failures = Vec::new();
    for c in cases {
        let got = tok.encode_llama(&c.text, c.add_special, c.parse_special);
        if got != c.ids {
            failures.push(format!(
                "text {:?} (add_special {}, parse_special {}):\n  llama.cpp {:?}\n  lmrun     {:?}",
                c.text, c.add_special, c.parse_special, c.ids, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{model}: {} of {} cases differ from {}:\n{}",
        failures.len(),
        cases.len(),
        refs.generator,
        failures.join("\n")
    );
}

#[test]
fn gemma3_matches_llamacpp() {
    check_against_llamacpp(GEMMA);
}

#[test]
fn qwen25_matches_llamacpp() {
    check_against_llamacpp(QWEN);
}

/// SPM with `add_space_prefix = true` (Llama 2 style), on the Gemma vocabulary; llama.cpp ran
/// on a metadata copy of the Gemma GGUF with the flag flipped.
#[test]
fn spm_add_space_prefix_matches_llamacpp() {
    let mut v = gguf_vocab(GEMMA);
    v.add_space_prefix = Some(true);
    let tok = GgufTokenizer::from_vocab(v).unwrap();
    check_cases(&format!("{GEMMA}#add_space_prefix=true"), &tok);
    // decoding drops the dummy prefix again
    let ids = tok.encode_llama("Hello world", true, false);
    assert_eq!(tok.decode(&ids).unwrap(), "Hello world");
}

/// The other pre-tokenizers, checked on the Qwen vocabulary with `tokenizer.ggml.pre` replaced
/// (llama.cpp ran on a metadata copy of the GGUF with the same replacement).
#[test]
fn other_pre_tokenizers_match_llamacpp() {
    let keys: Vec<String> = refs()
        .models
        .keys()
        .filter(|k| k.contains("#pre="))
        .cloned()
        .collect();
    assert!(
        keys.len() >= 6,
        "references for the other pre-tokenizers are missing"
    );
    let base = gguf_vocab(QWEN);
    let mut failed = Vec::new();
    for key in keys {
        let pre = key.split("#pre=").nth(1).unwrap().to_string();
        let mut v = base.clone();
        v.pre = Some(pre.clone());
        let tok = GgufTokenizer::from_vocab(v).unwrap();
        if let Err(e) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_cases(&key, &tok)))
        {
            failed.push(format!(
                "{pre}: {}",
                e.downcast_ref::<String>().cloned().unwrap_or_default()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

fn all_texts() -> Vec<String> {
    let mut v: Vec<String> = refs()
        .models
        .values()
        .flatten()
        .map(|c| c.text.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn check_round_trip_and_streaming(tok: &GgufTokenizer) {
    for text in all_texts() {
        let ids = tok
            .encode_with(
                &text,
                &EncodeOptions {
                    num_bos: 1,
                    num_eos: 0,
                    parse_special: false,
                },
            )
            .unwrap();
        let back = tok.decode(&ids).unwrap();
        assert_eq!(
            back,
            text,
            "{}: round trip of {text:?} via {ids:?}",
            tok.kind()
        );
        // Streaming: every chunk is whole UTF-8 and the text so far is always a prefix.
        let mut dec = StreamDecoder::for_tokenizer(tok);
        let mut so_far = String::new();
        for &id in &ids {
            let chunk = dec.push(tok, id, false).unwrap();
            so_far.push_str(&chunk);
            assert!(
                text.starts_with(&so_far),
                "{}: streamed {so_far:?} is not a prefix of {text:?}",
                tok.kind()
            );
        }
        so_far.push_str(&dec.finish());
        assert_eq!(so_far, text);
    }
}

#[test]
fn gemma3_round_trip_and_streaming() {
    check_round_trip_and_streaming(&gguf_tokenizer(GEMMA));
}

#[test]
fn qwen25_round_trip_and_streaming() {
    check_round_trip_and_streaming(&gguf_tokenizer(QWEN));
}

#[test]
fn metadata_and_special_tokens() {
    let g = gguf_tokenizer(GEMMA);
    assert_eq!(g.vocab_size(), 262144);
    assert_eq!(g.bos_id(), Some(2));
    assert_eq!(g.eos_id(), Some(1));
    assert!(g.add_bos());
    let sot = g
        .special_token_id("<start_of_turn>")
        .expect("<start_of_turn>");
    let eot = g.special_token_id("<end_of_turn>").expect("<end_of_turn>");
    assert!(g.eog_ids().contains(&eot));
    let on = g.encode_llama("<start_of_turn>user", false, true);
    assert_eq!(on[0], sot);
    let off = g.encode_llama("<start_of_turn>user", false, false);
    assert!(!off.contains(&sot));

    let q = gguf_tokenizer(QWEN);
    assert_eq!(q.vocab_size(), 151936);
    assert!(!q.add_bos());
    let ims = q.special_token_id("<|im_start|>").expect("<|im_start|>");
    let ime = q.special_token_id("<|im_end|>").expect("<|im_end|>");
    assert!(q.eog_ids().contains(&ime));
    assert_eq!(q.encode_llama("<|im_start|>", false, true), [ims]);
    assert!(!q.encode_llama("<|im_start|>", false, false).contains(&ims));
    assert_eq!(q.piece(ims).as_deref(), Some("<|im_start|>"));
}

/// The Qwen2.5 `tokenizer.json` (rebuilt from the GGUF's vocabulary by transformers; committed
/// gzipped, 2 MB) is a second, independent oracle for the byte-level BPE path.
#[test]
fn qwen25_gguf_agrees_with_hf_tokenizer_json() {
    use std::io::Read;
    let gz = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/qwen2.5-coder-tokenizer.json.gz");
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap())
        .read_to_end(&mut json)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    std::fs::write(&p, json).unwrap();
    let hf = lmrun_tokenizers::HfTokenizer::from_path(&p).unwrap();
    let q = gguf_tokenizer(QWEN);
    for text in all_texts() {
        let a = q.encode_with(&text, &EncodeOptions::default()).unwrap();
        let b = hf.encode_with(&text, &EncodeOptions::default()).unwrap();
        assert_eq!(a, b, "GGUF vs tokenizer.json on {text:?}");
    }
}

/// Long runs and arbitrary code points: no panic, lossless, bounded time.
#[test]
fn long_and_odd_inputs_round_trip() {
    let mut odd = String::new();
    for i in 0..20_000u32 {
        if let Some(c) = char::from_u32((i * 7919) % 0x2FFFF) {
            odd.push(c);
        }
    }
    let texts = [
        "a".repeat(100_000),
        "ab ".repeat(30_000),
        " ".repeat(10_000),
        "\n".repeat(5_000),
        "9".repeat(50_000),
        odd,
    ];
    for tok in [gguf_tokenizer(GEMMA), gguf_tokenizer(QWEN)] {
        for t in &texts {
            let start = std::time::Instant::now();
            for special in [false, true] {
                let ids = tok.encode_llama(t, false, special);
                assert_eq!(
                    &tok.decode(&ids).unwrap(),
                    t,
                    "{}: round trip of a {}-byte text",
                    tok.kind(),
                    t.len()
                );
            }
            assert!(
                start.elapsed().as_secs() < 30,
                "{} too slow on a {}-byte text",
                tok.kind(),
                t.len()
            );
        }
        assert!(tok.decode(&[u32::MAX]).is_err());
    }
}
