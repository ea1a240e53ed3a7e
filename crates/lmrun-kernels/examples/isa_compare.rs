//! Side-by-side speed of the instruction-set levels on the same weights, interleaved in one
//! process so that a noisy, shared machine hits every level alike: for each weight type, a
//! 64-token matmul (prefill) and a one-token matvec on an L2-resident weight (the kernels'
//! compute-bound speed), one thread unless asked, median of the repetitions and the ratio to AVX2.
//!
//! `cargo run --release -p lmrun-kernels --example isa_compare [-- REPS [THREADS]]`; the weight
//! has 2^20 values, `ISA_COLS` columns per row (default 1024).

use std::time::Instant;

use lmrun_kernels::{matmul_with_isa, Isa, QType, Scratch, ThreadPool, WeightRef};

fn rand_bytes(n: usize, seed: &mut u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
        .collect()
}

/// Random blocks with the f16 scale fields set to small finite values.
fn weight(t: QType, rows: usize, cols: usize, seed: &mut u64) -> Vec<u8> {
    let mut v = rand_bytes(t.row_bytes(cols).unwrap() * rows, seed);
    let fields = t.f16_scale_offsets();
    for b in v.chunks_exact_mut(t.type_size()) {
        for &o in fields {
            b[o..o + 2].copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
        }
    }
    v
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let levels: Vec<Isa> = Isa::ALL
        .into_iter()
        .skip(1)
        .filter(|i| i.is_available())
        .collect();
    let threads: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let pool = ThreadPool::new(threads).expect("pool");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    println!(
        "| type | test | {} |",
        levels
            .iter()
            .map(|l| format!("{l:?} GB/s"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for t in [
        QType::Q4_0,
        QType::Q5_0,
        QType::Q8_0,
        QType::Q4K,
        QType::Q6K,
    ] {
        let cols: usize = std::env::var("ISA_COLS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1024);
        let rows = (1 << 20) / cols;
        let data = weight(t, rows, cols, &mut seed);
        let w = WeightRef::new(t, &data, rows, cols).unwrap();
        for n_tokens in [1usize, 64] {
            let x: Vec<f32> = rand_bytes(n_tokens * cols, &mut seed)
                .into_iter()
                .map(|b| b as f32 / 128.0 - 1.0)
                .collect();
            let mut out = vec![0f32; n_tokens * rows];
            let mut scratch = Scratch::new();
            let inner = if n_tokens == 1 { 200 } else { 4 };
            let mut samples = vec![Vec::new(); levels.len()];
            for _ in 0..reps {
                for (k, &isa) in levels.iter().enumerate() {
                    let t0 = Instant::now();
                    for _ in 0..inner {
                        matmul_with_isa(isa, &pool, &w, &x, n_tokens, &mut out, &mut scratch)
                            .unwrap();
                    }
                    let s = t0.elapsed().as_secs_f64() / inner as f64;
                    samples[k].push(data.len() as f64 * n_tokens as f64 / s / 1e9);
                }
            }
            let meds: Vec<f64> = samples.into_iter().map(median).collect();
            let cells: Vec<String> = meds
                .iter()
                .map(|m| format!("{m:.1} ({:.2}x)", m / meds[0]))
                .collect();
            let test = if n_tokens == 1 {
                "matvec L2"
            } else {
                "matmul 64 tok"
            };
            println!("| {t} | {test} | {} |", cells.join(" | "));
        }
    }
}
