//! llama.cpp's own tokenizer test suite run against lmrun: every `ggml-vocab-*.gguf` that comes
//! with `.inp`/`.out` case files (fetched by `scripts/fetch_vocabs.sh` into
//! `$LMRUN_VOCABS_DIR`, default `~/.cache/lmrun/llama-vocabs`) is loaded the way the runner
//! loads a GGUF tokenizer, and each case is encoded as llama.cpp's `tests/test-tokenizer-0.cpp`
//! does it (no BOS/EOS, special tokens as plain text); the ids must be exactly those of the
//! `.out` file. The test prints how many cases pass per vocabulary and fails (never skips) when
//! the folder is missing.

mod common;

use std::path::{Path, PathBuf};

use common::gguf_vocab_at;
use lmrun_tokenizers::GgufTokenizer;

/// The separator between cases in an `.inp` file.
const SEP: &str = "\n__ggml_vocab_test__\n";

/// `$LMRUN_VOCABS_DIR`, else `~/.cache/lmrun/llama-vocabs`.
fn vocabs_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LMRUN_VOCABS_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/lmrun/llama-vocabs")
}

/// The cases of one vocabulary: text and expected ids, read as test-tokenizer-0 reads them
/// (texts split on the separator line; one `.out` line of space-separated ids per text).
fn read_cases(gguf: &Path) -> Vec<(String, Vec<u32>)> {
    let with_ext = |ext: &str| {
        let mut p = gguf.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let read = |p: &Path| {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    };
    let inp = read(&with_ext(".inp"));
    let out = read(&with_ext(".out"));
    let mut texts = Vec::new();
    let mut rest = inp.as_str();
    while !rest.is_empty() {
        match rest.find(SEP) {
            Some(i) => {
                texts.push(rest[..i].to_string());
                rest = &rest[i + SEP.len()..];
            }
            None => {
                texts.push(rest.to_string());
                rest = "";
            }
        }
    }
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        texts.len(),
        lines.len(),
        "{}: .inp has {} cases but .out has {} lines",
        gguf.display(),
        texts.len(),
        lines.len()
    );
    texts
        .into_iter()
        .zip(lines)
        .map(|(t, l)| {
            let ids = l
                .split_whitespace()
                .map(|s| s.parse().expect("token id in .out"))
                .collect();
            (t, ids)
        })
        .collect()
}

/// Every `ggml-vocab-*.gguf` in `dir` with both case files, sorted by name.
fn vocabs_with_cases(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("ggml-vocab-")
                && name.ends_with(".gguf")
                && p.with_extension("gguf.inp").is_file()
                && p.with_extension("gguf.out").is_file()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn llama_cpp_vocab_cases() {
    let dir = vocabs_dir();
    assert!(
        dir.is_dir(),
        "llama.cpp test vocabularies are missing at {}: run scripts/fetch_vocabs.sh (this test \
         never skips)",
        dir.display()
    );
    let vocabs = vocabs_with_cases(&dir);
    assert!(
        !vocabs.is_empty(),
        "no ggml-vocab-*.gguf with .inp/.out in {}: run scripts/fetch_vocabs.sh",
        dir.display()
    );

    let mut report = Vec::new();
    let mut failures = Vec::new();
    let (mut total, mut passed) = (0usize, 0usize);
    for path in &vocabs {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let cases = read_cases(path);
        total += cases.len();
        let tok = match GgufTokenizer::from_vocab(gguf_vocab_at(path)) {
            Ok(t) => t,
            Err(e) => {
                report.push(format!("{name:36} 0/{} (refused: {e})", cases.len()));
                failures.push(format!("{name}: refused: {e}"));
                continue;
            }
        };
        let mut ok = 0;
        let mut shown = 0;
        for (text, want) in &cases {
            let got = tok.encode_llama(text, false, false);
            if &got == want {
                ok += 1;
            } else if shown < 3 {
                shown += 1;
                failures.push(format!(
                    "{name}: text {text:?}\n  llama.cpp {want:?}\n  lmrun     {got:?}"
                ));
            }
        }
        passed += ok;
        report.push(format!("{name:36} {ok}/{}", cases.len()));
    }
    let summary = format!(
        "llama.cpp vocab cases in {}:\n  {}\n  all: {passed}/{total} cases in {} vocabularies",
        dir.display(),
        report.join("\n  "),
        vocabs.len()
    );
    assert!(
        failures.is_empty(),
        "{summary}\nfirst failures:\n{}",
        failures.join("\n")
    );
    println!("{summary}");
}

/// A `tokenizer.ggml.pre` lmrun does not know is refused with its name in the message (the
/// runner adds the file's path).
#[test]
fn unknown_pre_is_refused_by_name() {
    let path = vocabs_dir().join("ggml-vocab-falcon.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch_vocabs.sh",
        path.display()
    );
    let mut v = gguf_vocab_at(&path);
    v.pre = Some("no-such-pre".into());
    let e = GgufTokenizer::from_vocab(v).expect_err("unknown pre-tokenizer accepted");
    assert!(e.to_string().contains("\"no-such-pre\""), "{e}");
}
