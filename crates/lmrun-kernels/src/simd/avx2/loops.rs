//! The AVX2 block loops, written once: `block_loop!` defines a kernel `unsafe fn` from a
//! format (its bytes per block come from [`crate::formats::QuantFormat`]) and a per-block body,
//! so that a format's AVX2 code is only what differs between formats (how its codes are
//! unpacked and summed) and each kernel is one line. Each arm keeps the accumulation order its
//! kernels always had (one or two accumulators, a separate scalar term for mins), so results
//! are bit-identical to the hand-written loops they replace.

/// Defines one AVX2 kernel `unsafe fn $name` (features `avx2,fma,f16c`). The arms:
///
/// - `dot acc2, $name, $F, |b, y| body`: one token, `body` gives the block's scale (`__m256`)
///   and exact i32 sums (`__m256i`); two accumulators alternate by block parity.
/// - `dot acc1, …`: the same with one accumulator.
/// - `dot acc1 OP, …`: `body` also gives an f32 term summed aside; the result is
///   `hsum(acc) OP terms` (`+` for the 32-wide mins, `-` for the k-quant mins).
/// - `dot4 q32, $name, $F, codes, tok`: four tokens of a 32-wide type; per block the weight
///   scale and `codes(b)` once, per token `tok(codes, y)` gives the i32 sums.
/// - `dot4 k, $name, $F, |b, a, i| body`: four tokens of a k-quant; `body` gives the
///   super-block scale (f32) and four tokens' i32 sums.
/// - `dot4 k OP, …`: `body` also gives four f32 terms summed aside, as for `dot acc1 OP`.
/// - `float dot` / `float dot4, $name, $F, load, one`: float weights, `load(w, i)` gives
///   weights `i..i + 8` as f32 and `one(w, j)` weight `j` (the tail).
macro_rules! block_loop {
    (dot acc2, $name:ident, $F:ident, |$b:ident, $y:ident| $body:expr) => {
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C; every access is bounded by the slices.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $name(w: &[u8], a: &[<$F as QuantFormat>::Act]) -> f32 {
            const BYTES: usize = <$F as QuantFormat>::BYTES;
            let nb = a.len().min(w.len() / BYTES);
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            for i in 0..nb {
                let $b = &w[BYTES * i..BYTES * i + BYTES];
                let $y = &a[i];
                // SAFETY: the body's loads are bounds-checked; register arithmetic.
                unsafe {
                    let (d, p) = $body;
                    // two accumulators: consecutive blocks do not wait on each other's FMA
                    if i % 2 == 0 {
                        acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0);
                    } else {
                        acc1 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc1);
                    }
                }
            }
            // SAFETY: register arithmetic.
            unsafe { hsum_ps(_mm256_add_ps(acc0, acc1)) }
        }
    };
    (dot acc1, $name:ident, $F:ident, |$b:ident, $y:ident| $body:expr) => {
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C; every access is bounded by the slices.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $name(w: &[u8], a: &[<$F as QuantFormat>::Act]) -> f32 {
            const BYTES: usize = <$F as QuantFormat>::BYTES;
            let nb = a.len().min(w.len() / BYTES);
            let mut acc = _mm256_setzero_ps();
            for i in 0..nb {
                let $b = &w[BYTES * i..BYTES * i + BYTES];
                let $y = &a[i];
                // SAFETY: the body's loads are bounds-checked; register arithmetic.
                unsafe {
                    let (d, p) = $body;
                    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
                }
            }
            // SAFETY: register arithmetic.
            unsafe { hsum_ps(acc) }
        }
    };
    (dot acc1 $op:tt, $name:ident, $F:ident, |$b:ident, $y:ident| $body:expr) => {
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C; every access is bounded by the slices.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $name(w: &[u8], a: &[<$F as QuantFormat>::Act]) -> f32 {
            const BYTES: usize = <$F as QuantFormat>::BYTES;
            let nb = a.len().min(w.len() / BYTES);
            let mut acc = _mm256_setzero_ps();
            let mut summ = 0f32;
            for i in 0..nb {
                let $b = &w[BYTES * i..BYTES * i + BYTES];
                let $y = &a[i];
                // SAFETY: the body's loads are bounds-checked; register arithmetic.
                unsafe {
                    let (d, p, m) = $body;
                    summ += m;
                    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
                }
            }
            // SAFETY: register arithmetic.
            unsafe { hsum_ps(acc) $op summ }
        }
    };
    (dot4 q32, $name:ident, $F:ident, $codes:ident, $tok:expr) => {
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C; every access is bounded by the slices.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $name(w: &[u8], a: [&[BlockQ8x32]; 4]) -> [f32; 4] {
            const BYTES: usize = <$F as QuantFormat>::BYTES;
            let nb = nb4(w.len(), BYTES, &a);
            let mut acc = [_mm256_setzero_ps(); 4];
            for i in 0..nb {
                let b = &w[BYTES * i..BYTES * i + BYTES];
                // SAFETY: bounds-checked loads, register arithmetic.
                unsafe {
                    let dw = f16x8(b, 0);
                    let q = $codes(b);
                    for n in 0..4 {
                        let y = &a[n][i];
                        let p = $tok(q, y);
                        acc[n] = _mm256_fmadd_ps(
                            _mm256_mul_ps(dw, _mm256_set1_ps(y.d)),
                            _mm256_cvtepi32_ps(p),
                            acc[n],
                        );
                    }
                }
            }
            // SAFETY: register arithmetic.
            unsafe { hsum4(&acc) }
        }
    };
    (dot4 k, $name:ident, $F:ident, |$b:ident, $a:ident, $i:ident| $body:expr) => {
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C; every access is bounded by the slices.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $name(w: &[u8], $a: [&[BlockQ8K]; 4]) -> [f32; 4] {
            const BYTES: usize = <$F as QuantFormat>::BYTES;
            let nb = nb4(w.len(), BYTES, &$a);
            let mut acc = [_mm256_setzero_ps(); 4];
            for $i in 0..nb {
                let $b = &w[BYTES * $i..BYTES * $i + BYTES];
                // SAFETY: the body's loads are bounds-checked; register arithmetic.
                unsafe {
                    let (d, sumi) = $body;
                    for n in 0..4 {
                        let dd = _mm256_set1_ps($a[n][$i].d * d);
                        acc[n] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi[n]), acc[n]);
                    }
                }
            }
            // SAFETY: register arithmetic.
            unsafe { hsum4(&acc) }
        }
    };
    (dot4 k $op:tt, $name:ident, $F:ident, |$b:ident, $a:ident, $i:ident| $body:expr) => {
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C; every access is bounded by the slices.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $name(w: &[u8], $a: [&[BlockQ8K]; 4]) -> [f32; 4] {
            const BYTES: usize = <$F as QuantFormat>::BYTES;
            let nb = nb4(w.len(), BYTES, &$a);
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut summ = [0f32; 4];
            for $i in 0..nb {
                let $b = &w[BYTES * $i..BYTES * $i + BYTES];
                // SAFETY: the body's loads are bounds-checked; register arithmetic.
                unsafe {
                    let (d, sumi, m) = $body;
                    for n in 0..4 {
                        summ[n] += m[n];
                        let dd = _mm256_set1_ps($a[n][$i].d * d);
                        acc[n] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi[n]), acc[n]);
                    }
                }
            }
            // SAFETY: register arithmetic.
            let h = unsafe { hsum4(&acc) };
            [
                h[0] $op summ[0],
                h[1] $op summ[1],
                h[2] $op summ[2],
                h[3] $op summ[3],
            ]
        }
    };
    (float dot, $name:ident, $F:ident, $load:ident, $one:ident) => {
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C; every access is bounded by the slices.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $name(w: &[u8], x: &[f32]) -> f32 {
            let n = x.len().min(w.len() / <$F as QuantFormat>::BYTES);
            let n8 = n / 8 * 8;
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut i = 0;
            while i < n8 {
                // SAFETY: `$load` reads weights i..i + 8 <= n <= the weight count; the
                // activation load reads x[i..i + 8] with i + 8 <= n <= x.len().
                unsafe {
                    let wv = $load(w, i);
                    let xv = _mm256_loadu_ps(x.as_ptr().add(i));
                    if i % 16 == 0 {
                        acc0 = _mm256_fmadd_ps(wv, xv, acc0);
                    } else {
                        acc1 = _mm256_fmadd_ps(wv, xv, acc1);
                    }
                }
                i += 8;
            }
            // SAFETY: register arithmetic.
            let mut s = unsafe { hsum_ps(_mm256_add_ps(acc0, acc1)) };
            for j in n8..n {
                s += $one(w, j) * x[j];
            }
            s
        }
    };
    (float dot4, $name:ident, $F:ident, $load:ident, $one:ident) => {
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C; every access is bounded by the slices.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $name(w: &[u8], x: [&[f32]; 4]) -> [f32; 4] {
            let n = x
                .iter()
                .fold(w.len() / <$F as QuantFormat>::BYTES, |m, v| m.min(v.len()));
            let n8 = n / 8 * 8;
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut acc2 = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 16 <= n8 {
                // SAFETY: `$load` reads weights i..i + 16 <= n (bounds-checked); the activation
                // loads read x[t][i..i + 16] with i + 16 <= n <= x[t].len().
                unsafe {
                    let wv = $load(w, i);
                    let wv2 = $load(w, i + 8);
                    for t in 0..4 {
                        let xv = _mm256_loadu_ps(x[t].as_ptr().add(i));
                        let xv2 = _mm256_loadu_ps(x[t].as_ptr().add(i + 8));
                        acc[t] = _mm256_fmadd_ps(wv, xv, acc[t]);
                        acc2[t] = _mm256_fmadd_ps(wv2, xv2, acc2[t]);
                    }
                }
                i += 16;
            }
            while i < n8 {
                // SAFETY: as above, for i..i + 8.
                unsafe {
                    let wv = $load(w, i);
                    for t in 0..4 {
                        let xv = _mm256_loadu_ps(x[t].as_ptr().add(i));
                        acc[t] = _mm256_fmadd_ps(wv, xv, acc[t]);
                    }
                }
                i += 8;
            }
            // SAFETY: register arithmetic.
            let mut r = unsafe {
                hsum4(&[
                    _mm256_add_ps(acc[0], acc2[0]),
                    _mm256_add_ps(acc[1], acc2[1]),
                    _mm256_add_ps(acc[2], acc2[2]),
                    _mm256_add_ps(acc[3], acc2[3]),
                ])
            };
            for j in n8..n {
                let wj = $one(w, j);
                for t in 0..4 {
                    r[t] += wj * x[t][j];
                }
            }
            r
        }
    };
}
