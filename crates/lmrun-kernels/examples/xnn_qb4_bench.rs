//! Speed of the 8da4w FullyConnected kernel (`xnn_qb4::rows`) on one thread, for the shapes of
//! Qwen2.5-0.5B's linears (q/o 896×896, k/v 128×896, gate/up 4864×896, down 896×4864) with
//! group-32 bf16 scales, at a prefill of `NTOK` tokens (default 128) and at one token:
//! `cargo run --release -p lmrun-kernels --example xnn_qb4_bench -- [NTOK] [ROUNDS]`.
//! Prints per shape the best and median of `ROUNDS` (default 7) calls, as GMAC/s (multiply-
//! accumulates of int8 × int4 per second). The weights are small enough to stay in L2/L3 for
//! the prefill case, so it measures the kernel's compute, not DRAM.

use std::time::Instant;

use lmrun_kernels::xnn_qb4::{rows, zero_point_sums, Act, Scales};

fn rnd(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ntok: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(7);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let shapes = [
        ("q/o 896x896", 896usize, 896usize),
        ("k/v 128x896", 128, 896),
        ("gate/up 4864x896", 4864, 896),
        ("down 896x4864", 896, 4864),
    ];
    println!("ntok {ntok}, isa {:?}", lmrun_kernels::Isa::best());
    for (name, nrows, cols) in shapes {
        let block = 32;
        let nblocks = cols / block;
        let w: Vec<u8> = (0..nrows * cols / 2)
            .map(|_| rnd(&mut seed) as u8)
            .collect();
        let sb: Vec<u8> = (0..nrows * nblocks)
            .flat_map(|_| {
                half::bf16::from_f32(0.01 + (rnd(&mut seed) % 100) as f32 * 1e-4).to_le_bytes()
            })
            .collect();
        let scales = Scales::Blockwise {
            bytes: &sb,
            block,
            nblocks,
        };
        let csum = zero_point_sums(&w, cols, nrows, scales);
        for n in [ntok, 1] {
            let acts: Vec<Act> = (0..n)
                .map(|_| {
                    let q: Vec<i8> = (0..cols).map(|_| rnd(&mut seed) as i8).collect();
                    Act::new(&q, (rnd(&mut seed) % 256) as i32 - 128)
                })
                .collect();
            let mut dst = vec![0f32; nrows * n];
            let reps = (200_000_000 / (nrows * cols * n)).max(1);
            let mut times = Vec::new();
            for _ in 0..rounds {
                let t = Instant::now();
                for _ in 0..reps {
                    rows(&w, cols, 0..nrows, scales, &csum, &acts, &mut dst);
                }
                times.push(t.elapsed().as_secs_f64() / reps as f64);
            }
            times.sort_by(f64::total_cmp);
            let macs = (nrows * cols * n) as f64;
            println!(
                "{name:>18} ntok {n:>4}: best {:7.2} GMAC/s  median {:7.2} GMAC/s  ({:.1} us/call)",
                macs / times[0] / 1e9,
                macs / times[rounds / 2] / 1e9,
                times[rounds / 2] * 1e6
            );
            std::hint::black_box(&dst);
        }
    }
}
