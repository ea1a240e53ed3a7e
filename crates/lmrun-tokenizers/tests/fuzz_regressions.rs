//! Every input in `tests/fuzz_regressions/` once made a tokenizer fuzz target
//! (`fuzz/fuzz_targets/{tokenizer_json,tiktoken,sentencepiece_model,llama2c_tokenizer}.rs`)
//! fail. A file is named `<target>-<what>`; each is replayed here exactly as its target drives
//! it (the reader, then `tok_common::exercise`: encode with and without special tokens, decode,
//! stream-decode, lookups), and must give a tokenizer or an error without a panic.

use std::path::Path;

use lmrun_tokenizers::{
    HfTokenizer, Llama2cTokenizer, SentencePieceTokenizer, TiktokenTokenizer, Tokenizer,
};

#[path = "../../../fuzz/fuzz_targets/tok_common.rs"]
mod tok_common;

/// Drive `data` as fuzz target `target` does; returns whether the reader accepted it.
fn drive(target: &str, data: &[u8]) -> bool {
    let path = Path::new("<fuzz>");
    fn run<T: Tokenizer>(r: lmrun_tokenizers::Result<T>, data: &[u8]) -> bool {
        match r {
            Ok(tok) => {
                tok_common::exercise(&tok, data);
                true
            }
            Err(_) => false,
        }
    }
    match target {
        "tokenizer_json" => {
            let config = serde_json::from_slice::<serde_json::Value>(data).ok();
            let plain = run(HfTokenizer::from_bytes(data, None, path), data);
            if config.is_some() {
                run(HfTokenizer::from_bytes(data, config.as_ref(), path), data);
            }
            plain
        }
        "tiktoken" => run(TiktokenTokenizer::from_bytes(data, path), data),
        "sentencepiece_model" => run(SentencePieceTokenizer::from_bytes(data, path), data),
        "llama2c_tokenizer" => run(Llama2cTokenizer::from_bytes(data, path), data),
        other => panic!("unknown fuzz target {other:?}"),
    }
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (target, _) = name.split_once('-').expect("named <target>-<what>");
        drive(target, &std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 1, "no inputs in {}", dir.display());
}

/// A vocabulary that skips ids (`[UNK]` is 5 of five entries): `vocab_size` was the number of
/// entries, so `encode` gave an id at `vocab_size` and `decode` refused the tokenizer's own ids.
#[test]
fn vocab_with_an_id_gap_counts_to_its_highest_id() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let data = std::fs::read(dir.join("tokenizer_json-vocab-id-gap")).unwrap();
    let tok = HfTokenizer::from_bytes(&data, None, Path::new("gap.json")).unwrap();
    assert_eq!(tok.vocab_size(), 6);
    let ids = tok.encode("hello zzz", 0, 0).unwrap();
    assert_eq!(ids, [1, 5]);
    assert_eq!(tok.decode(&ids).unwrap(), "hello [UNK]");
}

/// A `Strip` decoder that cuts from the end (`"stop": 2`): tokenizers 0.22 panics (subtract with
/// overflow in `Strip::decode_chain`) decoding any token shorter than `stop`. Refused at load,
/// whether written with its `"type"` (as found) or untagged (as minimised).
#[test]
fn strip_decoder_cutting_from_the_end_is_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let untagged = std::fs::read(dir.join("tokenizer_json-strip-decoder-stop")).unwrap();
    let tagged = br#"{"model":{"type":"WordLevel","vocab":{"a":0,"[UNK]":1},"unk_token":"[UNK]"},
        "decoder":{"type":"Sequence","decoders":[{"type":"Strip","content":" ","start":1,"stop":2}]}}"#;
    for data in [&untagged[..], &tagged[..]] {
        let e = HfTokenizer::from_bytes(data, None, Path::new("strip.json")).unwrap_err();
        assert!(e.to_string().contains("\"Strip\" decoder"), "{e}");
    }
    // The usual SentencePiece-style Strip (one space from the start) still loads.
    let ok = br#"{"model":{"type":"WordLevel","vocab":{"a":0,"[UNK]":1},"unk_token":"[UNK]"},
        "decoder":{"type":"Sequence","decoders":[{"type":"Strip","content":" ","start":1,"stop":0}]}}"#;
    let tok = HfTokenizer::from_bytes(ok, None, Path::new("ok.json")).unwrap();
    assert_eq!(tok.decode(&[0, 0]).unwrap(), "aa");
}
