//! `lmrun run` end to end against llama.cpp: for the reference prompts of the models issue
//! (made by `scripts/models_make_refs.py` with llama-cpp-python on the same GGUFs), the prompt
//! tokenizes to llama.cpp's ids and the greedy continuation equals llama.cpp's up to its first
//! near-tie (top-2 logits within `tie` — 0.05 for Qwen; 0.4 for Gemma, whose quantized logits
//! differ between correct implementations by more than that: see the tolerance notes in
//! `crates/lmrun-models/tests/real_models.rs`, where the same thresholds were measured).

use std::path::Path;
use std::process::Command;

mod common;
use common::models_dir;

const BIN: &str = env!("CARGO_BIN_EXE_lmrun");

fn check(reference: &str, tie: f64, min_compared: usize) {
    let refs = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lmrun-models/tests/data")
        .join(reference);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&refs).unwrap()).unwrap();
    let model = models_dir().join(r["model"].as_str().unwrap());
    assert!(
        model.is_file(),
        "{} missing: run scripts/fetch_models.sh",
        model.display()
    );
    let mut compared = 0;
    for p in r["prompts"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let out = Command::new(BIN)
            .args(["run", "-m"])
            .arg(&model)
            .args([
                "-p",
                p["text"].as_str().unwrap(),
                "-n",
                "64",
                "--temperature",
                "0",
            ])
            .args(["--ignore-eos", "--ctx-size", "1024", "--output", "json"])
            .output()
            .unwrap();
        let v = common::success_json(&out, name);
        assert_eq!(
            v["prompt_token_ids"], p["prompt"],
            "{name}: prompt tokens differ from llama.cpp"
        );
        let gaps = p["continuation_gaps"].as_array().unwrap();
        let first_tie = gaps
            .iter()
            .position(|g| g.as_f64().unwrap() <= tie)
            .unwrap_or(gaps.len());
        let want = &p["continuation"].as_array().unwrap()[..first_tie];
        let got = &v["generated_token_ids"].as_array().unwrap()[..first_tie];
        assert_eq!(
            got, want,
            "{name}: greedy continuation differs before the first near-tie at {first_tie}"
        );
        compared += first_tie;
    }
    assert!(
        compared >= min_compared,
        "too few tokens compared ({compared})"
    );
    eprintln!("{reference}: {compared} greedy tokens equal to llama.cpp's");
}

#[test]
fn qwen_matches_llamacpp() {
    check("ref-qwen2.5-coder-0.5b-instruct.json", 0.05, 64);
}

#[test]
fn gemma_matches_llamacpp() {
    // Known gap: with Gemma only the first 12 greedy tokens (over 4 prompts) come before a
    // position where llama.cpp's top-2 gap is under 0.4. Raise this when the models close it.
    check("ref-gemma-3-270m.json", 0.4, 12);
}
