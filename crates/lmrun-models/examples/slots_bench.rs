//! Decode cost of one multi-sequence pass by number of sequences: `cargo run --release -p
//! lmrun-models --example slots_bench -- MODEL.gguf [threads] [counts]`. Prints ms per pass
//! and aggregate tokens/s for 1, 2, 4 and 8 sequences decoding together (each at position
//! ~64), or for the comma-separated `counts` (e.g. `4` alone, to profile one batch size).

use std::time::Instant;

use lmrun_gguf::{GgufFile, LoadMode};
use lmrun_models::{Model, ModelOptions, SeqChunk};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: slots_bench MODEL.gguf [threads]");
    let threads = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let g = GgufFile::open(std::path::Path::new(path), LoadMode::Mmap).expect("open");
    let opts = ModelOptions {
        context_len: 512,
        n_threads: threads,
        ..Default::default()
    };
    let mut m = Model::from_gguf(&g, &opts).expect("model");
    m.set_slots(8).expect("slots");
    let prompt: Vec<u32> = (0..64).map(|i| 100 + i).collect();
    for s in 0..8 {
        m.step_multi(&[SeqChunk {
            slot: s,
            tokens: &prompt,
            start_pos: 0,
        }])
        .expect("prefill");
    }
    let counts: Vec<usize> = args
        .get(3)
        .map(|s| s.split(',').filter_map(|c| c.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8]);
    let reps = if args.get(3).is_some() { 200 } else { 20 };
    for n in counts.into_iter().filter(|&n| (1..=8).contains(&n)) {
        let toks = [7u32];
        let mut times = Vec::new();
        for r in 0..reps {
            let chunks: Vec<SeqChunk> = (0..n)
                .map(|s| SeqChunk {
                    slot: s,
                    tokens: &toks,
                    start_pos: 64 + r,
                })
                .collect();
            let t = Instant::now();
            m.step_multi(&chunks).expect("step");
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        println!(
            "{n} sequences: {:.2} ms/pass, {:.1} tokens/s",
            med * 1e3,
            n as f64 / med
        );
    }
}
