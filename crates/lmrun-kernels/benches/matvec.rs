//! Matvec (decode) throughput over the real models' shapes, per weight type, on 1 and 2
//! threads, reported as bytes of weight read per second; beside it the machine's read
//! bandwidth (sum over a buffer far larger than the caches) measured in the same run.
//!
//! Small weights are replicated into enough copies (≥ 256 MiB in total) that each iteration
//! reads a copy that is not in cache, as in a real decode step. Filter like any criterion
//! bench: `cargo bench -p lmrun-kernels -- 'matvec/Q4_K'`.
//! `LMRUN_BENCH_QUICK=1` restricts the run to Q4_K, Q5_0, Q6_K and Q8_0.
//! `LMRUN_BENCH_COMPUTE=1` instead runs every type on an L2-resident weight on one thread
//! (the kernels' compute-bound speed; `LMRUN_BENCH_TYPE=Q4_K` picks one type).
//! `LMRUN_BENCH_PREFILL=1` runs only the 32-token matmul group.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lmrun_kernels::{matmul, QType, Scratch, ThreadPool, WeightRef};

const COPIES_BYTES: usize = 256 << 20;

fn rand_bytes(n: usize, seed: &mut u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// A random weight with finite, small f16 scales (speed does not depend on values, but keep
/// them sane).
fn weight(t: QType, rows: usize, cols: usize, seed: &mut u64) -> Vec<u8> {
    let rb = t.row_bytes(cols).unwrap();
    let mut v = rand_bytes(rb * rows, seed);
    match t {
        QType::F16 | QType::BF16 => {
            for c in v.chunks_exact_mut(2) {
                c[1] = 0x3c;
            }
        }
        QType::F32 => {
            for c in v.chunks_exact_mut(4) {
                c.copy_from_slice(&0.01f32.to_le_bytes());
            }
        }
        _ => {}
    }
    let fields = t.f16_scale_offsets();
    let ts = t.type_size();
    for b in v.chunks_exact_mut(ts) {
        for &o in fields {
            b[o..o + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
    }
    v
}

fn sum_f32(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for c in x.chunks_exact(16) {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum()
}

fn bandwidth(c: &mut Criterion, pools: &[ThreadPool], group: &str) {
    let n = (512usize << 20) / 4;
    let buf: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes((n * 4) as u64));
    for pool in pools {
        let nth = pool.n_threads();
        g.bench_function(
            BenchmarkId::new("read_sum_512MiB", format!("{nth}t")),
            |b| {
                b.iter(|| {
                    let parts = std::sync::Mutex::new(0f32);
                    pool.run(|ith, nth| {
                        let per = n.div_ceil(nth);
                        let s = sum_f32(&buf[(ith * per).min(n)..((ith + 1) * per).min(n)]);
                        *parts.lock().unwrap() += s;
                    });
                    black_box(parts.into_inner().unwrap())
                })
            },
        );
    }
    g.finish();
}

fn matvec(c: &mut Criterion, pools: &[ThreadPool]) {
    let quick = std::env::var_os("LMRUN_BENCH_QUICK").is_some();
    let types: Vec<QType> = if quick {
        vec![QType::Q4K, QType::Q5_0, QType::Q6K, QType::Q8_0]
    } else {
        vec![
            QType::Q4_0,
            QType::Q4_1,
            QType::Q5_0,
            QType::Q5_1,
            QType::Q8_0,
            QType::Q2K,
            QType::Q3K,
            QType::Q4K,
            QType::Q5K,
            QType::Q6K,
            QType::IQ4NL,
            QType::IQ4XS,
            QType::F16,
            QType::BF16,
            QType::F32,
        ]
    };
    // (rows, cols): Qwen2.5-0.5B FFN down/up, Gemma-3-270M FFN down/up, tied outputs.
    let shapes = [
        (896usize, 4864usize),
        (4864, 896),
        (640, 2048),
        (2048, 640),
        (151936, 896),
        (262144, 640),
    ];
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut g = c.benchmark_group("matvec");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for &t in &types {
        for &(rows, cols) in &shapes {
            let Some(rb) = t.row_bytes(cols) else {
                continue; // e.g. k-quants need cols % 256 == 0
            };
            let bytes = rb * rows;
            let big = rows > 100_000;
            if big && !matches!(t, QType::Q8_0 | QType::Q4_0 | QType::Q5_0 | QType::Q6K) {
                continue; // keep memory and run time modest
            }
            let copies = COPIES_BYTES.div_ceil(bytes).max(1);
            let data: Vec<Vec<u8>> = (0..copies)
                .map(|_| weight(t, rows, cols, &mut seed))
                .collect();
            let ws: Vec<WeightRef> = data
                .iter()
                .map(|d| WeightRef::new(t, d, rows, cols).unwrap())
                .collect();
            let x: Vec<f32> = (0..cols)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
                .collect();
            let mut out = vec![0f32; rows];
            let mut scratch = Scratch::new();
            g.throughput(Throughput::Bytes(bytes as u64));
            for pool in pools {
                let id = BenchmarkId::new(
                    format!("{}/{}x{}", t.name(), rows, cols),
                    format!("{}t", pool.n_threads()),
                );
                let mut k = 0usize;
                g.bench_function(id, |b| {
                    b.iter(|| {
                        k = (k + 1) % copies;
                        matmul(pool, &ws[k], &x, 1, &mut out, &mut scratch).unwrap();
                        black_box(out[0])
                    })
                });
            }
        }
    }
    g.finish();
}

/// Kernel speed with the weight in L2 (1 thread, 512x2048): the compute-bound ceiling.
fn compute(c: &mut Criterion) {
    let pool = ThreadPool::new(1).unwrap();
    let (rows, cols) = (512usize, 2048usize);
    let mut seed = 99u64;
    let mut g = c.benchmark_group("compute_l2");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500));
    for t in QType::ALL.into_iter().filter(|t| t.is_weight_type()) {
        if let Ok(f) = std::env::var("LMRUN_BENCH_TYPE") {
            if f != t.name() {
                continue;
            }
        }
        let data = weight(t, rows, cols, &mut seed);
        let w = WeightRef::new(t, &data, rows, cols).unwrap();
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
            .collect();
        let mut out = vec![0f32; rows];
        let mut scratch = Scratch::new();
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(t.name(), |b| {
            b.iter(|| {
                matmul(&pool, &w, &x, 1, &mut out, &mut scratch).unwrap();
                black_box(out[0])
            })
        });
    }
    g.finish();
}

/// Prefill: 32 tokens through one weight (uses the 4-token kernels where they exist).
/// Throughput is in tokens (elements) per second for this one matrix.
fn prefill(c: &mut Criterion, pools: &[ThreadPool]) {
    let n_tokens = 32usize;
    let cases = [
        (QType::Q4K, 896usize, 4864usize),
        (QType::Q6K, 896, 4864),
        (QType::Q8_0, 896, 4864),
        (QType::Q5_0, 4864, 896),
        (QType::Q4_0, 4864, 896),
        (QType::Q5K, 896, 4864),
    ];
    let mut seed = 7u64;
    let mut g = c.benchmark_group("matmul32");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(n_tokens as u64));
    for (t, rows, cols) in cases {
        let data = weight(t, rows, cols, &mut seed);
        let w = WeightRef::new(t, &data, rows, cols).unwrap();
        let x: Vec<f32> = (0..cols * n_tokens)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
            .collect();
        let mut out = vec![0f32; rows * n_tokens];
        let mut scratch = Scratch::new();
        for pool in pools {
            let id = BenchmarkId::new(
                format!("{}/{}x{}", t.name(), rows, cols),
                format!("{}t", pool.n_threads()),
            );
            g.bench_function(id, |b| {
                b.iter(|| {
                    matmul(pool, &w, &x, n_tokens, &mut out, &mut scratch).unwrap();
                    black_box(out[0])
                })
            });
        }
    }
    g.finish();
}

fn all(c: &mut Criterion) {
    if std::env::var_os("LMRUN_BENCH_COMPUTE").is_some() {
        compute(c);
        return;
    }
    let pools: Vec<ThreadPool> = [1usize, 2]
        .iter()
        .map(|&n| ThreadPool::new(n).unwrap())
        .collect();
    if std::env::var_os("LMRUN_BENCH_PREFILL").is_some() {
        prefill(c, &pools);
        return;
    }
    bandwidth(c, &pools, "bandwidth_before");
    matvec(c, &pools);
    prefill(c, &pools);
    bandwidth(c, &pools, "bandwidth_after");
}

criterion_group!(benches, all);
criterion_main!(benches);
