//! How the cost of one weight pass grows with the number of token rows (the decode batch of a
//! server): `cargo run --release -p lmrun-kernels --example batch_scaling -- TYPE ROWS COLS
//! [THREADS]`. Prints the median ms per `matmul` call for 1 to 8 tokens and the cost relative
//! to one token (1.00 = the extra tokens are free, as on a purely bandwidth-bound pass), and
//! the fastest of the 41 calls (a steadier signal than the median on a shared machine).

use std::time::Instant;

use lmrun_kernels::{matmul, QType, Scratch, ThreadPool, WeightRef};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: batch_scaling TYPE ROWS COLS [THREADS]";
    let name = args.get(1).expect(usage);
    let t = (0..64)
        .filter_map(QType::from_ggml_id)
        .find(|q| q.name().eq_ignore_ascii_case(name))
        .expect("a weight type name such as Q8_0");
    let rows: usize = args.get(2).expect(usage).parse().expect("rows");
    let cols: usize = args.get(3).expect(usage).parse().expect("cols");
    let threads: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2);
    let rb = t.row_bytes(cols).expect("cols fit the block size");
    let mut data = vec![0u8; rb * rows];
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for b in data.iter_mut() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *b = s as u8;
    }
    let ts = t.type_size();
    for b in data.chunks_exact_mut(ts) {
        for &o in t.f16_scale_offsets() {
            b[o..o + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
    }
    let w = WeightRef::new(t, &data, rows, cols).expect("weight");
    let pool = ThreadPool::new(threads).expect("thread pool");
    let mut scratch = Scratch::new();
    let mut base = 0.0;
    for n in 1..=8usize {
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i % 17) as f32 - 8.0) * 0.1)
            .collect();
        let mut out = vec![0f32; n * rows];
        let mut times = Vec::new();
        for _ in 0..41 {
            let t0 = Instant::now();
            matmul(&pool, &w, &x, n, &mut out, &mut scratch).expect("matmul");
            times.push(t0.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2] * 1e3;
        let min = times[0] * 1e3;
        if n == 1 {
            base = med;
        }
        println!(
            "{t} {rows}x{cols} tokens {n}: median {med:.2} ms ({:.2}x one token), min {min:.2} ms",
            med / base
        );
    }
}
