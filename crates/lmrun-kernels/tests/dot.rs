//! Quantized dot products and matmul: each SIMD kernel equals its scalar reference (integer
//! sums are exact, so only float reassociation differs), quantized dots match the f32 dot of
//! the dequantized weights within the activation-quantization error, and matmul results do
//! not depend on the thread count.

#![allow(clippy::needless_range_loop)]

mod common;

use common::*;
use lmrun_kernels::quant::{act_kind, quantize_q8k, quantize_q8x32, ActKind, BlockQ8K, BlockQ8x32};
use lmrun_kernels::{
    dequantize_row, matmul_with_isa, vec_dot, ActRow, Isa, QType, Scratch, ThreadPool, WeightRef,
    QK32, QK_K,
};

fn cols_for(t: QType) -> usize {
    if t.block_size() == QK_K {
        1024
    } else {
        896
    }
}

struct Act {
    x: Vec<f32>,
    q32: Vec<BlockQ8x32>,
    qk: Vec<BlockQ8K>,
}

impl Act {
    fn new(x: Vec<f32>) -> Act {
        let mut q32 = vec![BlockQ8x32::default(); x.len() / 32];
        quantize_q8x32(&x, &mut q32);
        let mut qk = vec![BlockQ8K::default(); x.len() / 256];
        quantize_q8k(&x[..x.len() / 256 * 256], &mut qk);
        Act { x, q32, qk }
    }
    fn row(&self, t: QType) -> ActRow<'_> {
        match act_kind(t) {
            ActKind::F32 => ActRow::F32(&self.x),
            ActKind::Q8x32 => ActRow::Q8x32(&self.q32),
            ActKind::Q8K => ActRow::Q8K(&self.qk),
        }
    }
}

#[test]
fn quantized_dot_matches_dequantized_f32_dot() {
    let mut rng = Rng::new(7);
    for t in WEIGHT_TYPES {
        let cols = cols_for(t);
        for trial in 0..20 {
            let w = random_row(t, cols, &mut rng);
            let x: Vec<f32> = (0..cols).map(|_| rng.normalish()).collect();
            let act = Act::new(x.clone());
            let mut wf = vec![0f32; cols];
            dequantize_row(t, &w, &mut wf).unwrap();
            let exact: f64 = wf.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
            // bound: per activation block, sum |w| * d/2 (round to nearest)
            let bw = match act_kind(t) {
                ActKind::F32 => 0,
                ActKind::Q8x32 => QK32,
                ActKind::Q8K => QK_K,
            };
            let mut bound = 1e-5
                * wf.iter()
                    .zip(&x)
                    .map(|(a, b)| (a * b).abs() as f64)
                    .sum::<f64>();
            if bw > 0 {
                for (wb, xb) in wf.chunks(bw).zip(x.chunks(bw)) {
                    let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                    let sw: f64 = wb.iter().map(|v| v.abs() as f64).sum();
                    bound += sw * amax / 127.0 * 0.5 * 1.001;
                }
            }
            for isa in Isa::ALL {
                if !isa.is_available() {
                    continue;
                }
                let got = vec_dot(isa, t, cols, &w, act.row(t)).unwrap() as f64;
                assert!(
                    (got - exact).abs() <= bound + 1e-6,
                    "{t} {isa:?} trial {trial}: {got} vs {exact} (bound {bound})"
                );
            }
        }
    }
}

#[test]
fn simd_equals_scalar() {
    let simd: Vec<Isa> = Isa::ALL[1..]
        .iter()
        .copied()
        .filter(|i| i.is_available())
        .collect();
    if simd.is_empty() {
        eprintln!("no SIMD level available on this CPU: nothing to compare");
        return;
    }
    for isa in [Isa::Avx2, Isa::Avx512Vnni] {
        if !isa.is_available() {
            eprintln!("{isa:?} not available on this CPU: its kernels are not compared here");
        }
    }
    let mut rng = Rng::new(11);
    for t in WEIGHT_TYPES {
        for &cols in &[256usize, 512, 2048] {
            for _ in 0..30 {
                let w = random_row(t, cols, &mut rng);
                let x: Vec<f32> = (0..cols).map(|_| rng.normalish() * 3.0).collect();
                let act = Act::new(x);
                let s = vec_dot(Isa::Scalar, t, cols, &w, act.row(t)).unwrap();
                for &isa in &simd {
                    let v = vec_dot(isa, t, cols, &w, act.row(t)).unwrap();
                    // same integer block sums; only the order of f32 additions differs.
                    let mag: f32 = {
                        let mut wf = vec![0f32; cols];
                        dequantize_row(t, &w, &mut wf).unwrap();
                        wf.iter().zip(&act.x).map(|(a, b)| (a * b).abs()).sum()
                    };
                    let tol = 1e-5 * mag + 1e-6;
                    assert!(
                        (s - v).abs() <= tol,
                        "{t} cols {cols}: scalar {s} {isa:?} {v} tol {tol}"
                    );
                }
            }
        }
    }
}

#[test]
fn vec_dot_rejects_mismatches() {
    let w = vec![0u8; QType::Q4_0.type_size() * 2];
    let x = vec![BlockQ8x32::default(); 1];
    assert!(vec_dot(Isa::Scalar, QType::Q4_0, 64, &w, ActRow::Q8x32(&x)).is_err());
    assert!(vec_dot(Isa::Scalar, QType::Q4_0, 64, &w[..20], ActRow::Q8x32(&x)).is_err());
    let xf = vec![0f32; 64];
    assert!(vec_dot(Isa::Scalar, QType::Q4_0, 64, &w, ActRow::F32(&xf)).is_err());
    assert!(vec_dot(
        Isa::Scalar,
        QType::Q8K,
        256,
        &vec![0u8; QType::Q8K.type_size()],
        ActRow::F32(&xf)
    )
    .is_err());
}

#[test]
fn matmul_independent_of_threads_and_isa() {
    let mut rng = Rng::new(3);
    let pools: Vec<ThreadPool> = [1, 2, 3]
        .iter()
        .map(|&n| ThreadPool::new(n).unwrap())
        .collect();
    for t in WEIGHT_TYPES {
        let cols = cols_for(t);
        let rows = 37;
        let data: Vec<u8> = (0..rows)
            .flat_map(|_| random_row(t, cols, &mut rng))
            .collect();
        let w = WeightRef::new(t, &data, rows, cols).unwrap();
        for n_tokens in [1usize, 5, 9, 37] {
            let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.normalish()).collect();
            let mut scratch = Scratch::new();
            let mut reference = vec![0f32; n_tokens * rows];
            matmul_with_isa(
                Isa::Scalar,
                &pools[0],
                &w,
                &x,
                n_tokens,
                &mut reference,
                &mut scratch,
            )
            .unwrap();
            // check against per-row vec_dot
            let act = Act::new(x[..cols].to_vec());
            for r in 0..rows {
                let d = vec_dot(Isa::Scalar, t, cols, w.row(r).unwrap(), act.row(t)).unwrap();
                assert_eq!(d, reference[r], "{t} row {r}");
            }
            for isa in Isa::ALL {
                if !isa.is_available() {
                    continue;
                }
                // each output is computed whole by one thread with the same kernel: the thread
                // count does not change a single bit
                let mut one_thread = vec![0f32; n_tokens * rows];
                matmul_with_isa(
                    isa,
                    &pools[0],
                    &w,
                    &x,
                    n_tokens,
                    &mut one_thread,
                    &mut scratch,
                )
                .unwrap();
                for pool in &pools[1..] {
                    let mut out = vec![f32::NAN; n_tokens * rows];
                    matmul_with_isa(isa, pool, &w, &x, n_tokens, &mut out, &mut scratch).unwrap();
                    assert_eq!(out, one_thread, "{t} {isa:?} {} threads", pool.n_threads());
                }
                for pool in &pools {
                    let mut out = vec![f32::NAN; n_tokens * rows];
                    matmul_with_isa(isa, pool, &w, &x, n_tokens, &mut out, &mut scratch).unwrap();
                    for (i, (a, b)) in out.iter().zip(&reference).enumerate() {
                        let tol = 1e-4 * b.abs().max(1.0);
                        assert!(
                            (a - b).abs() <= tol,
                            "{t} {isa:?} {} threads, n_tokens {n_tokens}, out {i}: {a} vs {b}",
                            pool.n_threads()
                        );
                    }
                }
            }
        }
        // shape errors
        let mut out = vec![0f32; rows];
        let mut scratch = Scratch::new();
        assert!(matmul_with_isa(
            Isa::Scalar,
            &pools[0],
            &w,
            &[0.0; 3],
            1,
            &mut out,
            &mut scratch
        )
        .is_err());
        assert!(WeightRef::new(t, &data[1..], rows, cols).is_err());
    }
}

#[test]
fn simd_activation_quantization_is_bit_exact() {
    use lmrun_kernels::quant::{quantize_q8k_scalar, quantize_q8x32_scalar};
    let mut rng = Rng::new(5);
    for scale in [1e-3f32, 1.0, 300.0] {
        let mut x: Vec<f32> = (0..2048).map(|_| rng.normalish() * scale).collect();
        x[5] = 0.5 * scale; // exact ties appear in practice: keep some simple values
        x[300..332].fill(0.0); // an all-zero block
        let mut a = vec![BlockQ8x32::default(); 64];
        let mut b = a.clone();
        quantize_q8x32(&x, &mut a);
        quantize_q8x32_scalar(&x, &mut b);
        assert_eq!(a, b);
        let mut a = vec![BlockQ8K::default(); 8];
        let mut b = a.clone();
        quantize_q8k(&x, &mut a);
        quantize_q8k_scalar(&x, &mut b);
        assert_eq!(a, b);
        for blk in &b {
            for k in 0..16 {
                let s: i32 = blk.qs[16 * k..16 * k + 16].iter().map(|&q| q as i32).sum();
                assert_eq!(s, blk.bsums[k] as i32);
            }
        }
    }
}

#[test]
fn four_token_kernels_match_single_token_kernels() {
    use lmrun_kernels::{dot4_fn, dot_fn, Dot4Fn, DotFn};
    let mut rng = Rng::new(17);
    let levels = Isa::ALL.into_iter().filter(|i| i.is_available());
    for (isa, t) in levels.flat_map(|i| WEIGHT_TYPES.map(move |t| (i, t))) {
        let Some(f4) = dot4_fn(t, isa) else {
            continue;
        };
        let f1 = dot_fn(t, isa).unwrap();
        let cols = 2048;
        for _ in 0..10 {
            let w = random_row(t, cols, &mut rng);
            let acts: Vec<Act> = (0..4)
                .map(|_| Act::new((0..cols).map(|_| rng.normalish()).collect()))
                .collect();
            let (four, one): ([f32; 4], Vec<f32>) = match (f4, f1) {
                (Dot4Fn::F32(f4), DotFn::F32(f1)) => (
                    f4(&w, [&acts[0].x, &acts[1].x, &acts[2].x, &acts[3].x]),
                    acts.iter().map(|a| f1(&w, &a.x)).collect(),
                ),
                (Dot4Fn::Q8x32(f4), DotFn::Q8x32(f1)) => (
                    f4(&w, [&acts[0].q32, &acts[1].q32, &acts[2].q32, &acts[3].q32]),
                    acts.iter().map(|a| f1(&w, &a.q32)).collect(),
                ),
                (Dot4Fn::Q8K(f4), DotFn::Q8K(f1)) => (
                    f4(&w, [&acts[0].qk, &acts[1].qk, &acts[2].qk, &acts[3].qk]),
                    acts.iter().map(|a| f1(&w, &a.qk)).collect(),
                ),
                _ => panic!("{t}: 4-token and 1-token kernels take different activations"),
            };
            let mut wf = vec![0f32; cols];
            dequantize_row(t, &w, &mut wf).unwrap();
            for n in 0..4 {
                // same integer block sums; f32 summation order differs (float types: fully)
                let mag: f32 = wf.iter().zip(&acts[n].x).map(|(a, b)| (a * b).abs()).sum();
                let tol = 1e-5 * mag + 1e-6;
                assert!(
                    (four[n] - one[n]).abs() <= tol,
                    "{t} {isa:?} token {n}: {} vs {}",
                    four[n],
                    one[n]
                );
            }
        }
    }
}

#[test]
fn tile_kernels_match_four_token_kernels() {
    use lmrun_kernels::{dot4_fn, tile_fn, Dot4Fn, TileFn, TILE_ROWS};
    let mut rng = Rng::new(23);
    let mut checked = 0;
    let levels = Isa::ALL.into_iter().filter(|i| i.is_available());
    for (isa, t) in levels.flat_map(|i| WEIGHT_TYPES.map(move |t| (i, t))) {
        let Some(ft) = tile_fn(t, isa) else {
            continue;
        };
        let f4 = dot4_fn(t, isa).expect("a level with a tile kernel has a 4-token kernel");
        let cols = 2048;
        for _ in 0..10 {
            let w: Vec<Vec<u8>> = (0..TILE_ROWS)
                .map(|_| random_row(t, cols, &mut rng))
                .collect();
            let wr: [&[u8]; TILE_ROWS] = std::array::from_fn(|r| &w[r][..]);
            let acts: Vec<Act> = (0..4)
                .map(|_| Act::new((0..cols).map(|_| rng.normalish()).collect()))
                .collect();
            let (tile, rows): (_, Vec<[f32; 4]>) = match (ft, f4) {
                (TileFn::Q8x32(ft), Dot4Fn::Q8x32(f4)) => {
                    let a = [&acts[0].q32[..], &acts[1].q32, &acts[2].q32, &acts[3].q32];
                    (ft(wr, a), wr.iter().map(|w| f4(w, a)).collect())
                }
                (TileFn::Q8K(ft), Dot4Fn::Q8K(f4)) => {
                    let a = [&acts[0].qk[..], &acts[1].qk, &acts[2].qk, &acts[3].qk];
                    (ft(wr, a), wr.iter().map(|w| f4(w, a)).collect())
                }
                _ => panic!("{t}: tile kernels take different activations"),
            };
            for r in 0..TILE_ROWS {
                let mut wf = vec![0f32; cols];
                dequantize_row(t, &w[r], &mut wf).unwrap();
                for n in 0..4 {
                    // same integer block sums; the k-quant tiles sum in f32 per super-block
                    // (rows in lanes) where the 4-token kernels sum per lane, so allow rounding
                    // relative to the size of the terms
                    let mag: f32 = wf.iter().zip(&acts[n].x).map(|(a, b)| (a * b).abs()).sum();
                    let (a, b) = (tile[r][n], rows[r][n]);
                    assert!(
                        (a - b).abs() <= 1e-5 * mag + 1e-6,
                        "{t} {isa:?} row {r} token {n}: {a} vs {b}"
                    );
                }
            }
            checked += 1;
        }
    }
    if checked == 0 {
        eprintln!("no level with tile kernels on this CPU: nothing compared");
    }
}

#[test]
fn matvec_many_equals_one_matmul_per_weight() {
    use lmrun_kernels::{matmul, matvec_many};
    let mut rng = Rng::new(31);
    let pools = [ThreadPool::new(1).unwrap(), ThreadPool::new(3).unwrap()];
    let cols = 1024;
    // three weights of different types and row counts over one input (Q/K/V-like)
    let types = [QType::Q5_0, QType::Q8_0, QType::Q6K];
    let rows = [37usize, 8, 21];
    let data: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            (0..rows[i])
                .flat_map(|_| random_row(types[i], cols, &mut rng))
                .collect()
        })
        .collect();
    let ws: Vec<WeightRef> = (0..3)
        .map(|i| WeightRef::new(types[i], &data[i], rows[i], cols).unwrap())
        .collect();
    let x: Vec<f32> = (0..cols).map(|_| rng.normalish()).collect();
    for pool in &pools {
        let mut scratch = Scratch::new();
        let mut want: Vec<Vec<f32>> = rows.iter().map(|&r| vec![0f32; r]).collect();
        for i in 0..3 {
            matmul(pool, &ws[i], &x, 1, &mut want[i], &mut scratch).unwrap();
        }
        let (mut a, mut b, mut c) = (vec![f32::NAN; 37], vec![f32::NAN; 8], vec![f32::NAN; 21]);
        matvec_many(
            pool,
            [&ws[0], &ws[1], &ws[2]],
            &x,
            [&mut a, &mut b, &mut c],
            &mut scratch,
        )
        .unwrap();
        assert_eq!([a, b, c].to_vec(), want, "{} threads", pool.n_threads());
        // a wrong output length is an error, not a panic
        let mut short = vec![0f32; 36];
        let mut b2 = vec![0f32; 8];
        assert!(matvec_many(
            pool,
            [&ws[0], &ws[1]],
            &x,
            [&mut short, &mut b2],
            &mut scratch
        )
        .is_err());
    }
}

/// A sequence decoded in a batch gets the logits it would get alone: for the types with
/// batch-invariant kernels at a level, token `k`'s outputs do not change by a bit whatever the
/// number of tokens in the call (1 to 20: the 8-row kernels for up to 15, the GEMM from 16 on)
/// and whatever the other tokens are.
#[test]
fn outputs_do_not_depend_on_the_batch() {
    let mut rng = Rng::new(41);
    let pool = ThreadPool::new(2).unwrap();
    let mut cases = vec![(Isa::Scalar, WEIGHT_TYPES.to_vec())];
    if Isa::Avx512Vnni.is_available() {
        cases.push((
            Isa::Avx512Vnni,
            vec![
                QType::Q4_0,
                QType::Q5_0,
                QType::Q8_0,
                QType::Q4K,
                QType::Q6K,
            ],
        ));
    }
    for (isa, types) in cases {
        for t in types {
            // an odd number of blocks (kernels that take two blocks per step have a tail)
            let cols = cols_for(t) + t.block_size();
            let rows = 45; // five groups of eight and a remainder
            let data: Vec<u8> = (0..rows)
                .flat_map(|_| random_row(t, cols, &mut rng))
                .collect();
            let w = WeightRef::new(t, &data, rows, cols).unwrap();
            let n_max = 20;
            let x: Vec<f32> = (0..n_max * cols).map(|_| rng.normalish()).collect();
            let mut scratch = Scratch::new();
            let mut alone = vec![0f32; n_max * rows];
            for k in 0..n_max {
                matmul_with_isa(
                    isa,
                    &pool,
                    &w,
                    &x[k * cols..(k + 1) * cols],
                    1,
                    &mut alone[k * rows..(k + 1) * rows],
                    &mut scratch,
                )
                .unwrap();
            }
            for n in 2..=n_max {
                // the last n tokens, so each token sits at another place in each batch
                let first = n_max - n;
                let mut out = vec![f32::NAN; n * rows];
                matmul_with_isa(
                    isa,
                    &pool,
                    &w,
                    &x[first * cols..],
                    n,
                    &mut out,
                    &mut scratch,
                )
                .unwrap();
                for j in 0..n {
                    let k = first + j;
                    assert_eq!(
                        out[j * rows..(j + 1) * rows],
                        alone[k * rows..(k + 1) * rows],
                        "{t} {isa:?}: token {k} in a batch of {n}"
                    );
                }
            }
        }
    }
}
