//! `lmrun inspect` and `lmrun tokenize` through the binary on the real models.

use std::path::PathBuf;
use std::process::Command;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_lmrun");

fn model(name: &str) -> PathBuf {
    let dir = std::env::var_os("LMRUN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/lmrun/models")
        });
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch_models.sh",
        p.display()
    );
    p
}

fn stdout_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN).args(args).output().unwrap();
    common::success_json(&out, &format!("{args:?}"))
}

#[test]
fn inspect_reports_architecture_tensors_and_load() {
    for (name, arch, tensors, vocab, template) in [
        ("gemma-3-270m-q4_k_m.gguf", "gemma3", 236, 262144, false),
        (
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "qwen2",
            291,
            151936,
            true,
        ),
    ] {
        let m = model(name);
        let v = stdout_json(&[
            "inspect",
            "--json",
            "--load-mode",
            "mmap",
            m.to_str().unwrap(),
        ]);
        assert_eq!(v["architecture"], arch);
        assert_eq!(v["tensor_count"], tensors);
        assert_eq!(v["tensors"].as_array().unwrap().len(), tensors);
        assert_eq!(v["tokenizer"]["vocab_size"], vocab);
        assert_eq!(v["tokenizer"]["has_chat_template"], template);
        assert_eq!(v["load"]["mode"], "mmap");
        assert_eq!(v["file_size"], std::fs::metadata(&m).unwrap().len());
        assert_eq!(v["runs"]["ok"], true, "{v:?}");
        let text = Command::new(BIN)
            .args(["inspect", m.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&text.stdout).contains(arch));
    }
    // Files lmrun cannot run say why, and still get inspected (exit 0).
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lmrun-models/tests/data");
    for (file, why) in [
        (
            "broken-arch.gguf",
            "unknown architecture 'mamba' (supported: llama, qwen2",
        ),
        (
            "broken-missing.gguf",
            "missing tensor 'blk.1.ffn_up.weight'",
        ),
        (
            "broken-shape.gguf",
            "'blk.0.attn_k.weight' has shape [64, 15], expected [64, 16]",
        ),
    ] {
        let p = data.join(file);
        let out = Command::new(BIN)
            .args(["inspect", p.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{file}");
        assert!(text.contains("runs          no: "), "{file}: {text}");
        assert!(text.contains(why), "{file}: {text}");
        let v = stdout_json(&["inspect", "--json", p.to_str().unwrap()]);
        assert_eq!(v["runs"]["ok"], false);
        assert!(v["runs"]["error"].as_str().unwrap().contains(why));
    }
    let out = Command::new(BIN)
        .args(["inspect", "Cargo.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a model"));
}

#[test]
fn tokenize_follows_special_and_bos_flags() {
    let q = model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    let q = q.to_str().unwrap();
    let on = stdout_json(&[
        "tokenize",
        "-m",
        q,
        "--special",
        "--output",
        "json",
        "<|im_start|>hi",
    ]);
    assert_eq!(on["ids"][0], 151644);
    let off = stdout_json(&["tokenize", "-m", q, "--output", "json", "<|im_start|>hi"]);
    assert_ne!(
        off["ids"][0], 151644,
        "without --special the marker is plain text"
    );
    assert!(off["ids"].as_array().unwrap().len() > 2);

    let g = model("gemma-3-270m-q4_k_m.gguf");
    let g = g.to_str().unwrap();
    let with_bos = stdout_json(&["tokenize", "-m", g, "--output", "json", "Hello"]);
    assert_eq!(with_bos["ids"][0], 2);
    assert_eq!(with_bos["pieces"][0], "<bos>");
    let no_bos = stdout_json(&["tokenize", "-m", g, "--no-bos", "--output", "json", "Hello"]);
    assert_eq!(no_bos["ids"].as_array().unwrap().len(), 1);

    let tok = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tok512.json");
    let v = stdout_json(&[
        "tokenize",
        "-t",
        tok,
        "--output",
        "json",
        "Once upon a time",
    ]);
    assert_eq!(v["ids"], serde_json::json!([325, 259, 66, 337]));
}
