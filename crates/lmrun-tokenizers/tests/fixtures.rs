//! Small hand-made fixtures of every standalone format (made by
//! `scripts/tokenizers_make_fixtures.py`, expected ids from the reference libraries:
//! `tokenizers`, `tiktoken`, `sentencepiece`), format detection, round trips, and bad files.

use std::path::{Path, PathBuf};

use lmrun_tokenizers::{
    load_tokenizer, EncodeOptions, HfTokenizer, Llama2cTokenizer, SentencePieceTokenizer,
    StreamDecoder, TiktokenTokenizer, Tokenizer, TokenizerError, TokenizerKind,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    text: String,
    parse_special: bool,
    ids: Vec<u32>,
}

fn data(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(p)
}

fn expected(name: &str) -> Vec<Case> {
    let s = std::fs::read_to_string(data("fixtures_expected.json")).unwrap();
    let mut all: std::collections::BTreeMap<String, Vec<Case>> = serde_json::from_str(&s).unwrap();
    all.remove(name)
        .unwrap_or_else(|| panic!("no expectations for {name}"))
}

fn check(tok: &dyn Tokenizer, name: &str) {
    let cases = expected(name);
    assert!(!cases.is_empty());
    for c in cases {
        let opts = EncodeOptions {
            num_bos: 0,
            num_eos: 0,
            parse_special: c.parse_special,
        };
        let got = tok.encode_with(&c.text, &opts).unwrap();
        assert_eq!(got, c.ids, "{name}: {:?}", c.text);
    }
}

fn round_trip(tok: &dyn Tokenizer, texts: &[&str]) {
    for t in texts {
        let ids = tok.encode(t, 1, 0).unwrap();
        assert_eq!(
            tok.decode(&ids).unwrap(),
            *t,
            "{}: decode(encode({t:?}))",
            tok.kind()
        );
        let mut d = StreamDecoder::for_tokenizer(tok);
        let mut s = String::new();
        for &id in &ids {
            s.push_str(&d.push(tok, id, false).unwrap());
            assert!(
                t.starts_with(&s),
                "{}: streamed {s:?} not a prefix of {t:?}",
                tok.kind()
            );
        }
        s.push_str(&d.finish());
        assert_eq!(s, *t);
    }
}

const LOSSLESS: &[&str] = &[
    "Hello world",
    "the harbour is happy today, isn't it?",
    "naïve café — “quotes”",
    "中文 😀 👨‍👩‍👧",
    "tabs\tand\nnewlines",
];

#[test]
fn tokenizer_json_fixture() {
    let t = HfTokenizer::from_path(&data("tok512/tokenizer.json")).unwrap();
    check(&t, "tok512");
    assert_eq!(t.bos_id(), Some(0));
    assert_eq!(t.eos_id(), Some(1));
    assert_eq!(t.special_token_id("<|eos|>"), Some(1));
    assert!(t.is_special(1));
    // special text is plain text with parsing off
    let off = t.encode_with("<|bos|>", &EncodeOptions::default()).unwrap();
    assert!(!off.contains(&0));
    assert_eq!(t.encode("hi", 2, 1).unwrap()[..2], [0, 0]);
    round_trip(
        &t,
        &["the harbour is happy today, isn't it?", "Hello world"],
    );
    // a directory holding tokenizer.json
    let d = load_tokenizer(data("tok512")).unwrap();
    assert_eq!(d.kind(), "tokenizer.json");
    check(d.as_ref(), "tok512");
}

#[test]
fn tiktoken_fixture() {
    let t = TiktokenTokenizer::from_path(&data("tiny.tiktoken")).unwrap();
    check(&t, "tiktoken");
    let base = t.vocab_size() - 256;
    assert_eq!(t.bos_id(), Some(base as u32));
    assert_eq!(t.eos_id(), Some(base as u32 + 1));
    assert_eq!(t.special_token_id("<|eot_id|>"), Some(base as u32 + 9));
    assert!(t.eog_ids().contains(&(base as u32 + 9)));
    round_trip(&t, LOSSLESS);
    let l = load_tokenizer(data("tiny.tiktoken")).unwrap();
    assert_eq!(l.kind(), "tiktoken");
}

#[test]
fn sentencepiece_bpe_fixture() {
    let t = SentencePieceTokenizer::from_path(&data("sp_bpe.model")).unwrap();
    check(&t, "sp_bpe");
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(t.eos_id(), Some(2));
    round_trip(&t, LOSSLESS);
    let l = load_tokenizer(data("sp_bpe.model")).unwrap();
    assert_eq!(l.kind(), "sentencepiece");
}

#[test]
fn sentencepiece_unigram_fixture() {
    let t = SentencePieceTokenizer::from_path(&data("sp_unigram.model")).unwrap();
    check(&t, "sp_unigram");
    assert_eq!(
        load_tokenizer(data("sp_unigram.model")).unwrap().kind(),
        "sentencepiece"
    );
}

#[test]
fn llama2c_fixture() {
    let t = Llama2cTokenizer::from_path(&data("tokenizer.bin")).unwrap();
    check(&t, "llama2c");
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(t.eos_id(), Some(2));
    let ids = t.encode("Hello world", 1, 1).unwrap();
    assert_eq!((ids[0], *ids.last().unwrap()), (1, 2));
    round_trip(&t, LOSSLESS);
    assert_eq!(
        load_tokenizer(data("tokenizer.bin")).unwrap().kind(),
        "llama2c"
    );
}

fn assert_names_file(e: &TokenizerError, p: &Path) {
    let msg = e.to_string();
    assert!(
        msg.contains(&p.display().to_string()),
        "error does not name {}: {msg}",
        p.display()
    );
}

#[test]
fn garbage_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: &[(&str, &[u8])] = &[
        ("empty", b""),
        ("text", b"this is not a tokenizer\n"),
        (
            "binary",
            &[
                0xff, 0x00, 0x13, 0x37, 0x80, 0x81, 0x82, 0x01, 0x02, 0x03, 0xfe,
            ],
        ),
        ("json", b"{\"model\": 3}"),
        ("zeros", &[0u8; 64]),
        ("gguf", b"GGUF\x03\x00\x00\x00"),
    ];
    for (name, bytes) in garbage {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = load_tokenizer(&p)
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"));
        assert_names_file(&e, &p);
        if let TokenizerError::NoLoader { attempts, .. } = &e {
            assert!(attempts.len() >= 4, "{e}");
        } else {
            panic!("expected NoLoader, got {e}");
        }
        for kind in TokenizerKind::ALL {
            let e = kind
                .load(&p)
                .err()
                .unwrap_or_else(|| panic!("{} accepted {name}", kind.name()));
            assert_names_file(&e, &p);
        }
    }
    let missing = dir.path().join("missing.model");
    assert!(matches!(
        load_tokenizer(&missing),
        Err(TokenizerError::Io { .. })
    ));
}

#[test]
fn truncated_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for (name, kind) in [
        ("tok512/tokenizer.json", TokenizerKind::HuggingFace),
        ("tiny.tiktoken", TokenizerKind::Tiktoken),
        ("sp_bpe.model", TokenizerKind::SentencePiece),
        ("sp_unigram.model", TokenizerKind::SentencePiece),
        ("tokenizer.bin", TokenizerKind::Llama2c),
    ] {
        let full = std::fs::read(data(name)).unwrap();
        let mut cuts: Vec<usize> = (1..40).map(|i| full.len() * i / 40).collect();
        cuts.extend([1, 2, 3, 5, 15, 16, 17, 20, full.len() - 1]);
        for cut in cuts {
            let p = dir.path().join(format!("cut{cut}"));
            std::fs::write(&p, &full[..cut]).unwrap();
            match kind.load(&p) {
                Err(e) => assert_names_file(&e, &p),
                Ok(t) => {
                    // A cut at a record boundary can leave a smaller valid file; it must still work.
                    let _ = t.encode("Hello world", 1, 1).unwrap();
                }
            }
            if let Err(e) = load_tokenizer(&p) {
                assert_names_file(&e, &p);
            }
        }
        // Flipped bytes
        let mut bad = full.clone();
        for i in (0..bad.len()).step_by(7) {
            bad[i] ^= 0x5a;
        }
        let p = dir.path().join("flipped");
        std::fs::write(&p, &bad).unwrap();
        if let Err(e) = load_tokenizer(&p) {
            assert_names_file(&e, &p);
        }
    }
}

/// Long and odd inputs: every tokenizer finishes quickly, never panics, and stays lossless
/// where the format is.
#[test]
fn long_and_odd_inputs() {
    let long_word = "abcdefghij".repeat(20_000);
    let mut odd = String::new();
    for i in 0..5000u32 {
        if let Some(c) = char::from_u32((i * 7919) % 0x2FFFF) {
            odd.push(c);
        }
    }
    let toks: Vec<Box<dyn Tokenizer>> = vec![
        load_tokenizer(data("tok512")).unwrap(),
        load_tokenizer(data("tiny.tiktoken")).unwrap(),
        load_tokenizer(data("sp_bpe.model")).unwrap(),
        load_tokenizer(data("sp_unigram.model")).unwrap(),
        load_tokenizer(data("tokenizer.bin")).unwrap(),
    ];
    for t in &toks {
        let start = std::time::Instant::now();
        for text in [
            long_word.as_str(),
            odd.as_str(),
            "\u{0}\u{7f}\u{feff}",
            "<|bos|><|begin_of_text|><s>",
        ] {
            for parse_special in [false, true] {
                let ids = t
                    .encode_with(
                        text,
                        &EncodeOptions {
                            num_bos: 1,
                            num_eos: 1,
                            parse_special,
                        },
                    )
                    .unwrap();
                let _ = t.decode(&ids).unwrap();
            }
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "{} is too slow on long input",
            t.kind()
        );
    }
    // byte-level and byte-fallback formats are lossless on anything
    for t in [&toks[1], &toks[2]] {
        let ids = t.encode(&odd, 0, 0).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), odd, "{}", t.kind());
    }
    assert!(toks[0].decode(&[u32::MAX]).is_err());
}
