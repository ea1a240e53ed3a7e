//! The q8_0 KV cache against the default f16 one on both real models: teacher-forced over each
//! reference prompt plus llama.cpp's 64-token continuation (`tests/data/ref-*.json`), the q8_0
//! model's argmax must equal the f16 model's wherever f16's top-2 gap is not a near-tie, at
//! all but a small share of positions, and the logits of f16's top-10 tokens must stay close.
//! Measured (printed by the test): see the README's Models section.

use std::path::PathBuf;

use lmrun_gguf::{GgufFile, LoadMode};
use lmrun_models::{KvDtype, Model, ModelOptions};
use serde_json::Value;

fn models_dir() -> PathBuf {
    std::env::var_os("LMRUN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/lmrun/models")
        })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

fn top2_gap(l: &[f32]) -> (usize, f32) {
    let (mut a, mut b) = (f32::MIN, f32::MIN);
    let mut ai = 0;
    for (i, &x) in l.iter().enumerate() {
        if x > a {
            b = a;
            a = x;
            ai = i;
        } else if x > b {
            b = x;
        }
    }
    (ai, a - b)
}

fn check(file: &str, reference: &str, min_agree: f64, max_mean_abs: f32) {
    let path = models_dir().join(file);
    assert!(
        path.is_file(),
        "{} missing: run scripts/fetch_models.sh",
        path.display()
    );
    let g = GgufFile::open(&path, LoadMode::Mmap).unwrap();
    let refs: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(reference),
        )
        .unwrap(),
    )
    .unwrap();
    let model = |kv_dtype| {
        Model::from_gguf(
            &g,
            &ModelOptions {
                context_len: 1024,
                kv_dtype,
                n_threads: 2,
                ..ModelOptions::default()
            },
        )
        .unwrap()
    };
    let (mut f16, mut q8) = (model(KvDtype::F16), model(KvDtype::Q8_0));
    assert!(
        q8.kv_cache_bytes() * 100 <= f16.kv_cache_bytes() * 54,
        "q8_0 is ~53% of f16"
    );
    let (mut agree, mut counted, mut sum_abs, mut n_abs) = (0usize, 0usize, 0f64, 0usize);
    for p in refs["prompts"].as_array().unwrap() {
        let seq: Vec<u32> = ids(&p["prompt"])
            .into_iter()
            .chain(ids(&p["continuation"]))
            .collect();
        let seq = &seq[..seq.len().min(1000)];
        f16.reset();
        q8.reset();
        let a = f16.step(seq, 0, true).unwrap().to_vec();
        let b = q8.step(seq, 0, true).unwrap().to_vec();
        let nv = f16.config().n_vocab;
        for t in 0..seq.len() {
            let (ra, rb) = (&a[t * nv..(t + 1) * nv], &b[t * nv..(t + 1) * nv]);
            let (top, gap) = top2_gap(ra);
            if gap > 0.05 {
                counted += 1;
                agree += usize::from(top2_gap(rb).0 == top);
            }
            let mut idx: Vec<usize> = (0..nv).collect();
            idx.select_nth_unstable_by(9, |&i, &j| ra[j].total_cmp(&ra[i]));
            for &i in &idx[..10] {
                sum_abs += (ra[i] - rb[i]).abs() as f64;
                n_abs += 1;
            }
        }
    }
    let share = agree as f64 / counted as f64;
    let mean = (sum_abs / n_abs as f64) as f32;
    eprintln!(
        "{file}: q8_0 vs f16 KV: argmax agrees at {agree}/{counted} = {share:.3} of the \
         positions with a gap > 0.05; mean |Δlogit| of f16's top 10: {mean:.3}"
    );
    assert!(
        share >= min_agree,
        "{file}: argmax agreement {share:.3} < {min_agree}"
    );
    assert!(
        mean <= max_mean_abs,
        "{file}: mean |Δlogit| {mean:.3} > {max_mean_abs}"
    );
}

#[test]
fn gemma3_q8_0_cache_stays_near_f16() {
    check(
        "gemma-3-270m-q4_k_m.gguf",
        "ref-gemma-3-270m.json",
        0.9,
        0.5,
    );
}

#[test]
fn qwen2_q8_0_cache_stays_near_f16() {
    check(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "ref-qwen2.5-coder-0.5b-instruct.json",
        0.9,
        0.5,
    );
}
