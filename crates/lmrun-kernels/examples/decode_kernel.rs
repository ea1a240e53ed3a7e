//! One-token matmul (decode's matrix × vector) speed per weight type and shape, from DRAM (the
//! weight replicated into ≥ 256 MiB of copies, a different copy each call, as in a real decode
//! step) and from L2 (one small weight, the kernel's compute-bound speed):
//! `cargo run --release -p lmrun-kernels --example decode_kernel -- TYPES [THREADS] [SHAPES]`,
//! e.g. `Q4_K,Q6_K,Q4_0 1 8960x1536,1536x8960`. `ROUNDS` (default 5) rounds of 64 DRAM calls
//! and 100 L2 calls; prints the median over rounds of the DRAM medians (µs per call and weight
//! GB/s) and the L2 best and median (ns per 256 values). On a shared machine compare builds by
//! alternating them and reading the L2 best. `LMRUN_ISA` caps the level as usual.

use std::time::Instant;

use lmrun_kernels::{matmul, QType, Scratch, ThreadPool, WeightRef};

fn weight(t: QType, bytes: usize, seed: &mut u64) -> Vec<u8> {
    let mut data = vec![0u8; bytes];
    for b in data.iter_mut() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *b = *seed as u8;
    }
    let ts = t.type_size();
    for b in data.chunks_exact_mut(ts) {
        for &o in t.f16_scale_offsets() {
            b[o..o + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
    }
    data
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let types: Vec<QType> = args
        .get(1)
        .map(|s| s.as_str())
        .unwrap_or("Q4_K,Q6_K,Q4_0")
        .split(',')
        .map(|name| {
            (0..64)
                .filter_map(QType::from_ggml_id)
                .find(|q| q.name().eq_ignore_ascii_case(name))
                .expect("a weight type name such as Q4_K")
        })
        .collect();
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let shapes: Vec<(usize, usize)> = args
        .get(3)
        .map(|s| s.as_str())
        .unwrap_or("8960x1536,1536x8960")
        .split(',')
        .map(|s| {
            let (r, c) = s.split_once('x').expect("ROWSxCOLS");
            (r.parse().expect("rows"), c.parse().expect("cols"))
        })
        .collect();
    let pool = ThreadPool::new(threads).expect("thread pool");
    let mut scratch = Scratch::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    for &t in &types {
        for &(rows, cols) in &shapes {
            let rb = t.row_bytes(cols).expect("cols fit the block size");
            let wb = rb * rows;
            let x: Vec<f32> = (0..cols).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
            let mut out = vec![0f32; rows];
            let copies = (256usize << 20).div_ceil(wb).max(2);
            let big = weight(t, wb * copies, &mut seed);
            let l2_rows = ((512usize << 10) / rb).clamp(8, rows) / 8 * 8;
            let small = weight(t, rb * l2_rows, &mut seed);
            let mut o2 = vec![0f32; l2_rows];
            let sb = l2_rows * cols / 256;
            // per round: the DRAM median, the L2 minimum and median
            let (mut d, mut l, mut lm) = (Vec::new(), Vec::new(), Vec::new());
            let mut c = 0;
            for _ in 0..rounds {
                {
                    let mut times = Vec::new();
                    for _ in 0..64 {
                        c = (c + 1) % copies;
                        let w =
                            WeightRef::new(t, &big[c * wb..(c + 1) * wb], rows, cols).expect("w");
                        let t0 = Instant::now();
                        matmul(&pool, &w, &x, 1, &mut out, &mut scratch).expect("matmul");
                        times.push(t0.elapsed().as_secs_f64());
                    }
                    times.sort_by(f64::total_cmp);
                    d.push(times[times.len() / 2]);
                    let w = WeightRef::new(t, &small, l2_rows, cols).expect("w");
                    let mut times = Vec::new();
                    for _ in 0..100 {
                        let t0 = Instant::now();
                        matmul(&pool, &w, &x, 1, &mut o2, &mut scratch).expect("matmul");
                        times.push(t0.elapsed().as_secs_f64());
                    }
                    times.sort_by(f64::total_cmp);
                    l.push(times[0]);
                    lm.push(times[times.len() / 2]);
                }
            }
            {
                d.sort_by(f64::total_cmp);
                l.sort_by(f64::total_cmp);
                lm.sort_by(f64::total_cmp);
                let dram = d[d.len() / 2];
                println!(
                    "{:5} {rows}x{cols} thr {threads}: DRAM median {:7.1} us {:5.1} GB/s | \
                     L2 best {:5.2} median {:5.2} ns/256 values",
                    t.name(),
                    dram * 1e6,
                    wb as f64 / dram / 1e9,
                    l[0] * 1e9 / sb as f64,
                    lm[lm.len() / 2] * 1e9 / sb as f64,
                );
            }
        }
    }
}
