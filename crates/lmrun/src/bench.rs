//! Throughput measurement in the manner of llama-bench: prompt processing (`ppN`: one batched
//! prefill of N tokens from an empty context) and text generation (`tgN`: N single-token decode
//! steps), repeated, reported as median and min–max tokens/s, plus load time, time to first
//! token and peak RSS. Token ids are pseudo-random (fixed seed) so no tokenizer is involved.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::backend;
use crate::decoder::keys;
use crate::{LoadMode, RunnerError, RunnerOptions};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Prompt lengths for the pp tests.
    pub prompt_lens: Vec<usize>,
    /// Tokens for the tg test (0 = no tg test).
    pub gen_len: usize,
    /// Repetitions of each test.
    pub repetitions: usize,
    /// Thread counts to test.
    pub threads: Vec<usize>,
    /// Load mode.
    pub load_mode: LoadMode,
}

/// One line of results.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// `pp128`, `tg128`, …
    pub test: String,
    /// Threads used.
    pub threads: usize,
    /// Load mode.
    pub load_mode: String,
    /// Median tokens/s over the repetitions.
    pub tokens_per_s: f64,
    /// Slowest repetition.
    pub min_tokens_per_s: f64,
    /// Fastest repetition.
    pub max_tokens_per_s: f64,
    /// Repetitions run.
    pub repetitions: usize,
    /// Time to load the model for this thread count, ms.
    pub load_ms: f64,
    /// Median time until the first token's logits (pp: the whole prefill), ms.
    pub time_to_first_token_ms: f64,
    /// Peak RSS of the process after the test, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Model file size in bytes.
    pub model_bytes: u64,
    /// Every repetition's tokens/s.
    pub samples: Vec<f64>,
    /// Kernel instruction-set level used (`scalar`, `avx2`, `avx512-vnni`).
    pub isa: String,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Deterministic token ids in `[lo, vocab)`.
fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let lo = 100.min(vocab / 2);
    let span = (vocab - lo).max(1) as u64;
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (lo as u64 + x % span) as u32
        })
        .collect()
}

/// Run the benchmark on the model at `path`.
pub fn run(path: &Path, opts: &BenchOptions) -> Result<Vec<BenchResult>, RunnerError> {
    if opts.repetitions == 0 {
        return Err(RunnerError::InvalidArgument(
            "repetitions must be at least 1".into(),
        ));
    }
    if opts.threads.contains(&0) {
        return Err(RunnerError::InvalidArgument(
            "thread counts must be at least 1".into(),
        ));
    }
    let model_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let longest = opts.prompt_lens.iter().copied().max().unwrap_or(0);
    let mut out = Vec::new();
    for &threads in &opts.threads {
        let ropts = RunnerOptions {
            load_mode: opts.load_mode,
            threads,
            // Exactly the positions the tests use: a test beyond the model's training context
            // is refused (ContextTooLong) instead of running for minutes on a context the model
            // was never trained for.
            context_len: Some(longest.max(opts.gen_len).max(8)),
            ..Default::default()
        };
        let t0 = Instant::now();
        let opened = backend::open(path, &ropts)?;
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut dec = opened.decoder;
        dec.load_method("forward")?;
        let vocab = dec
            .get_metadata(keys::VOCAB_SIZE)?
            .first()
            .copied()
            .unwrap_or(32000)
            .max(2) as usize;
        // Warm-up: fault the weights in and let the pool spin up.
        dec.step(&tokens(8, vocab, 7), 0)?;

        for &n in &opts.prompt_lens {
            if n == 0 {
                continue;
            }
            let toks = tokens(n, vocab, n as u64);
            let mut samples = Vec::new();
            let mut ttft = Vec::new();
            for _ in 0..opts.repetitions {
                let t = Instant::now();
                dec.step(&toks, 0)?;
                let s = t.elapsed().as_secs_f64();
                samples.push(n as f64 / s);
                ttft.push(s * 1e3);
            }
            out.push(result(
                format!("pp{n}"),
                threads,
                opts,
                load_ms,
                &samples,
                &ttft,
                model_bytes,
            ));
        }
        if opts.gen_len > 0 {
            let toks = tokens(opts.gen_len, vocab, 99);
            let mut samples = Vec::new();
            let mut ttft = Vec::new();
            for _ in 0..opts.repetitions {
                let t = Instant::now();
                for (i, &tok) in toks.iter().enumerate() {
                    dec.step(&[tok], i)?;
                    if i == 0 {
                        ttft.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
                samples.push(opts.gen_len as f64 / t.elapsed().as_secs_f64());
            }
            out.push(result(
                format!("tg{}", opts.gen_len),
                threads,
                opts,
                load_ms,
                &samples,
                &ttft,
                model_bytes,
            ));
        }
    }
    Ok(out)
}

fn result(
    test: String,
    threads: usize,
    opts: &BenchOptions,
    load_ms: f64,
    samples: &[f64],
    ttft: &[f64],
    model_bytes: u64,
) -> BenchResult {
    BenchResult {
        test,
        threads,
        load_mode: opts.load_mode.cli_name().to_string(),
        tokens_per_s: median(samples),
        min_tokens_per_s: samples.iter().copied().fold(f64::INFINITY, f64::min),
        max_tokens_per_s: samples.iter().copied().fold(0.0, f64::max),
        repetitions: samples.len(),
        load_ms,
        time_to_first_token_ms: median(ttft),
        peak_rss_bytes: lmrun_loader::peak_rss_bytes(),
        model_bytes,
        samples: samples.to_vec(),
        isa: lmrun_kernels::Isa::best().name().to_string(),
    }
}

/// A markdown table of results (llama-bench style).
pub fn markdown(model: &Path, results: &[BenchResult]) -> String {
    let isa = results.first().map_or("", |r| r.isa.as_str());
    let mut s = format!(
        "model: {} (kernels: {isa})\n\n| test | threads | load mode | t/s (median) | min–max | load ms | TTFT ms | peak RSS MiB |\n|---|---|---|---|---|---|---|---|\n",
        model.display()
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2}–{:.2} | {:.1} | {:.1} | {} |\n",
            r.test,
            r.threads,
            r.load_mode,
            r.tokens_per_s,
            r.min_tokens_per_s,
            r.max_tokens_per_s,
            r.load_ms,
            r.time_to_first_token_ms,
            r.peak_rss_bytes
                .map_or("n/a".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_tokens() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let t = tokens(1000, 500, 1);
        assert!(t.iter().all(|&x| (100..500).contains(&x)));
        assert_eq!(t, tokens(1000, 500, 1));
    }
}
