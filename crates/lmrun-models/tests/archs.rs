//! One tiny model per architecture, converted from a Hugging Face model by llama.cpp's own
//! `convert_hf_to_gguf.py` (written by `scripts/models_make_archs.py`): lmrun must decode the
//! same 32 greedy tokens as llama.cpp, and its logits at every position of prompt + generated
//! tokens must agree with llama.cpp's and with `transformers`' to within 1e-3 of the logit range
//! (f32 weights; what the runners reach among themselves is ~3e-4).

use std::path::PathBuf;

use lmrun_gguf::{GgufFile, LoadMode};
use lmrun_models::{Model, ModelOptions};

struct Case {
    name: String,
    gguf: String,
    n_ctx: usize,
    prompt: Vec<u32>,
    greedy: Vec<u32>,
    logits: Vec<Vec<f32>>,
    hf_logits: Vec<Vec<f32>>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/archs")
}

fn load(name: &str) -> Case {
    let path = dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect()
    };
    let rows = |k: &str| -> Vec<Vec<f32>> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect()
    };
    Case {
        name: name.to_string(),
        gguf: v["gguf"].as_str().unwrap().to_string(),
        n_ctx: v["n_ctx"].as_u64().unwrap() as usize,
        prompt: ids("prompt"),
        greedy: ids("greedy"),
        logits: rows("logits"),
        hf_logits: rows("hf_logits"),
    }
}

fn model(c: &Case, threads: usize) -> Model {
    let g = GgufFile::open(&dir().join(&c.gguf), LoadMode::Mmap).unwrap();
    let opts = ModelOptions {
        context_len: c.n_ctx,
        n_threads: threads,
        ..ModelOptions::default()
    };
    Model::from_gguf(&g, &opts).unwrap_or_else(|e| panic!("{}: {e}", c.name))
}

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// Largest |a - b| over all rows, divided by the reference's logit range.
fn max_rel(got: &[f32], want: &[Vec<f32>]) -> f32 {
    let (lo, hi) = want
        .iter()
        .flatten()
        .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    let n = want[0].len();
    let mut m = 0f32;
    for (r, row) in want.iter().enumerate() {
        for (a, b) in got[r * n..(r + 1) * n].iter().zip(row) {
            m = m.max((a - b).abs());
        }
    }
    m / (hi - lo)
}

fn check(name: &str, compare_hf: bool) {
    let c = load(name);
    for threads in [1, 2] {
        let mut m = model(&c, threads);
        // Greedy decoding, token by token after a batched prompt.
        let mut last = m.step(&c.prompt, 0, false).unwrap().to_vec();
        let mut got = Vec::new();
        for i in 0..c.greedy.len() {
            let t = argmax(&last);
            got.push(t);
            last = m.step(&[t], c.prompt.len() + i, false).unwrap().to_vec();
        }
        assert_eq!(got, c.greedy, "{name}: greedy ids differ from llama.cpp's");

        // Teacher-forced logits of every position.
        m.reset();
        let seq: Vec<u32> = c.prompt.iter().chain(&c.greedy).copied().collect();
        let all = m.step(&seq, 0, true).unwrap().to_vec();
        let d = max_rel(&all, &c.logits);
        eprintln!("{name} ({threads} threads): max |Δlogit| / range vs llama.cpp {d:.2e}");
        assert!(
            d <= 1e-3,
            "{name}: logits differ from llama.cpp's by {d:.2e} of the range"
        );
        if compare_hf {
            let d = max_rel(&all, &c.hf_logits);
            eprintln!("{name} ({threads} threads): vs transformers {d:.2e}");
            assert!(
                d <= 1e-3,
                "{name}: logits differ from transformers' by {d:.2e}"
            );
        }
    }
}

#[test]
fn qwen3_matches_llama_cpp() {
    check("qwen3", true);
}

#[test]
fn gemma2_matches_llama_cpp() {
    check("gemma2", true);
}

#[test]
fn phi3_matches_llama_cpp() {
    check("phi3", true);
}

#[test]
fn phi3_long_context_uses_the_long_rope_factors() {
    // transformers picks LongRoPE factors by sequence length, llama.cpp (and lmrun) by the
    // context size: only llama.cpp is a reference here.
    check("phi3-long", false);
}

#[test]
fn smollm3_matches_llama_cpp() {
    check("smollm3", true);
}

#[test]
fn granite_matches_llama_cpp() {
    check("granite", true);
}

#[test]
fn llama3_rope_scaling_matches_llama_cpp() {
    check("llama3", true);
}

#[test]
fn llama_yarn_matches_llama_cpp() {
    check("llama-yarn", true);
}

#[test]
fn mistral3_matches_llama_cpp() {
    check("mistral3", true);
}
