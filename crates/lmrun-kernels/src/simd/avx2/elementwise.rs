//! Element-wise AVX2 kernels beside the dot products: activation quantization (bit-identical
//! to `quant::quantize_*_scalar`), the f32 dot and axpy of attention, and the exponential-based
//! ops (softmax, sigmoid gates). Each safe entry point is called only after `Isa::best()`
//! reported AVX2+FMA+F16C.

use std::arch::x86_64::*;

use super::{hsum_epi32, hsum_ps};
use crate::formats::{QK32, QK_K};
use crate::partner::{BlockQ8K, BlockQ8x32};

// ---------------------------------------------------------------------------------------------
// activation quantization (bit-identical to quant::quantize_*_scalar)

/// AVX2 `quantize_q8x32`. Caller guarantees AVX2+FMA+F16C (`Isa::best()`).
pub(crate) fn quantize_q8x32(x: &[f32], y: &mut [BlockQ8x32]) {
    // SAFETY: features detected by the caller; accesses bounded by both lengths.
    unsafe { quantize_q8x32_impl(x, y) }
}

/// AVX2 `quantize_q8k`. Caller guarantees AVX2+FMA+F16C (`Isa::best()`).
pub(crate) fn quantize_q8k(x: &[f32], y: &mut [BlockQ8K]) {
    // SAFETY: features detected by the caller; accesses bounded by both lengths.
    unsafe { quantize_q8k_impl(x, y) }
}

/// max |x| over `x.len()` (a multiple of 8) values.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn amax8(x: &[f32]) -> f32 {
    // SAFETY: loads at i + 8 <= x.len(); register arithmetic.
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= x.len() {
            m = _mm256_max_ps(
                m,
                _mm256_andnot_ps(sign, _mm256_loadu_ps(x.as_ptr().add(i))),
            );
            i += 8;
        }
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m1 = _mm_max_ss(m2, _mm_movehdup_ps(m2));
        _mm_cvtss_f32(m1)
    }
}

/// Rounds 32 values times `id` to int8 (ties to even) into `q`; returns the four i32 partial
/// sums of each group of 8 in a vector (lane k of group g…), plus their total.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn round32(x: &[f32], id: f32, q: &mut [i8]) -> [__m256i; 4] {
    let x = &x[..32];
    let q = &mut q[..32];
    // SAFETY: 4 loads of 8 f32 inside `x` (32 long), one 32-byte store into `q` (32 long).
    unsafe {
        let vid = _mm256_set1_ps(id);
        let mut v = [_mm256_setzero_si256(); 4];
        for (k, vk) in v.iter_mut().enumerate() {
            let f = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(8 * k)), vid);
            let r = _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            *vk = _mm256_cvtps_epi32(r);
        }
        // pack i32 → i16 → i8 (saturating; values are within ±127), then undo the lane mix
        let a = _mm256_packs_epi32(v[0], v[1]);
        let b = _mm256_packs_epi32(v[2], v[3]);
        let p = _mm256_packs_epi16(a, b);
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, p);
        v
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8x32_impl(x: &[f32], y: &mut [BlockQ8x32]) {
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(QK32)) {
        // SAFETY: `xs` is 32 values; `b.qs` is 32 bytes; register arithmetic.
        unsafe {
            let d = amax8(xs) / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let v = round32(xs, id, &mut b.qs);
            let s = _mm256_add_epi32(_mm256_add_epi32(v[0], v[1]), _mm256_add_epi32(v[2], v[3]));
            b.sum = hsum_epi32(s);
            b.d = d;
        }
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8k_impl(x: &[f32], y: &mut [BlockQ8K]) {
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(QK_K)) {
        // SAFETY: `xs` is 256 values; `b.qs` is 256 bytes; register arithmetic.
        unsafe {
            let d = amax8(xs) / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for g in 0..8 {
                let v = round32(&xs[32 * g..], id, &mut b.qs[32 * g..]);
                let lo = hsum_epi32(_mm256_add_epi32(v[0], v[1]));
                let hi = hsum_epi32(_mm256_add_epi32(v[2], v[3]));
                b.bsums[2 * g] = lo as i16;
                b.bsums[2 * g + 1] = hi as i16;
            }
            b.d = d;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// f32 helpers for attention

/// f32 dot product. Caller guarantees AVX2+FMA (checked by `ops::dot_f32` via `Isa::best`).
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: features detected by the caller; the kernel bounds accesses by both lengths.
    unsafe { dot_f32_impl(a, b) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let n32 = n / 32 * 32;
    let mut acc = [_mm256_setzero_ps(); 4];
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    while i < n32 {
        for (k, ac) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n32 <= both lengths.
            unsafe {
                let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                *ac = _mm256_fmadd_ps(x, y, *ac);
            }
        }
        i += 32;
    }
    // SAFETY: register arithmetic.
    let mut r = unsafe {
        hsum_ps(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ))
    };
    for j in n32..n {
        r += a[j] * b[j];
    }
    r
}

/// `y += a * x`. Caller guarantees AVX2+FMA.
pub(crate) fn axpy_f32(a: f32, x: &[f32], y: &mut [f32]) {
    // SAFETY: features detected by the caller; accesses bounded by both lengths.
    unsafe { axpy_impl(a, x, y) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_impl(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let n8 = n / 8 * 8;
    let va = _mm256_set1_ps(a);
    let (px, py) = (x.as_ptr(), y.as_mut_ptr());
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n8 <= both lengths.
        unsafe {
            let v = _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
            _mm256_storeu_ps(py.add(i), v);
        }
        i += 8;
    }
    for j in n8..n {
        y[j] += a * x[j];
    }
}

// ---------------------------------------------------------------------------------------------
// exponential-based element-wise ops (softmax, sigmoid gates)

/// e^x for eight lanes: x clamped to [-87.3, 88.0] (results stay normal, no overflow), split as
/// n·ln2 + r with |r| <= ln2/2 (ln2 in two parts for an exact reduction), e^r from Cephes'
/// degree-7 minimax polynomial, scaled by 2^n through the exponent bits. Within 2 ulp of a
/// correctly rounded exp over the clamped range.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn exp8(x: __m256) -> __m256 {
    // SAFETY: register arithmetic.
    unsafe {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
            _mm256_set1_ps(88.0),
        );
        let n = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let y = _mm256_fmadd_ps(
            p,
            _mm256_mul_ps(r, r),
            _mm256_add_ps(r, _mm256_set1_ps(1.0)),
        );
        let e = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
            23,
        );
        _mm256_mul_ps(y, _mm256_castsi256_ps(e))
    }
}

/// Softmax in place (see `ops::softmax_inplace`). Caller guarantees AVX2+FMA.
pub(crate) fn softmax(x: &mut [f32]) {
    // SAFETY: features detected by the caller; accesses bounded by the slice.
    unsafe { softmax_impl(x) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn softmax_impl(x: &mut [f32]) {
    let n8 = x.len() / 8 * 8;
    let mut max = f32::NEG_INFINITY;
    for &v in &x[n8..] {
        max = max.max(v);
    }
    // SAFETY: 8-float loads/stores at i < n8 <= len; register arithmetic.
    unsafe {
        let mut mv = _mm256_set1_ps(f32::NEG_INFINITY);
        for i in (0..n8).step_by(8) {
            mv = _mm256_max_ps(mv, _mm256_loadu_ps(x.as_ptr().add(i)));
        }
        let mut m = [0f32; 8];
        _mm256_storeu_ps(m.as_mut_ptr(), mv);
        max = m.iter().fold(max, |a, &b| a.max(b));
        if x.is_empty() || max == f32::NEG_INFINITY {
            return;
        }
        let vmax = _mm256_set1_ps(max);
        let mut sv = _mm256_setzero_ps();
        for i in (0..n8).step_by(8) {
            let p = x.as_mut_ptr().add(i);
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p), vmax));
            _mm256_storeu_ps(p, e);
            sv = _mm256_add_ps(sv, e);
        }
        let mut sum = hsum_ps(sv);
        for v in &mut x[n8..] {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        let vinv = _mm256_set1_ps(inv);
        for i in (0..n8).step_by(8) {
            let p = x.as_mut_ptr().add(i);
            _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), vinv));
        }
        for v in &mut x[n8..] {
            *v *= inv;
        }
    }
}

/// `g[i] = g[i] * sigmoid(k1 * g[i] + k3 * g[i]^3) * u[i]` (see `ops::sigmoid_gate_mul`).
/// Caller guarantees AVX2+FMA and equal lengths.
pub(crate) fn sigmoid_gate_mul(g: &mut [f32], u: &[f32], k1: f32, k3: f32) {
    // SAFETY: features detected by the caller; accesses bounded by both slices.
    unsafe { sigmoid_gate_mul_impl(g, u, k1, k3) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sigmoid_gate_mul_impl(g: &mut [f32], u: &[f32], k1: f32, k3: f32) {
    let n = g.len().min(u.len());
    let n8 = n / 8 * 8;
    // SAFETY: 8-float loads/stores at i < n8 <= both lengths; register arithmetic.
    unsafe {
        let (vk1, vk3, one) = (_mm256_set1_ps(k1), _mm256_set1_ps(k3), _mm256_set1_ps(1.0));
        for i in (0..n8).step_by(8) {
            let p = g.as_mut_ptr().add(i);
            let x = _mm256_loadu_ps(p);
            let z = _mm256_mul_ps(x, _mm256_fmadd_ps(vk3, _mm256_mul_ps(x, x), vk1));
            let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), z));
            let y = _mm256_mul_ps(x, _mm256_loadu_ps(u.as_ptr().add(i)));
            _mm256_storeu_ps(p, _mm256_div_ps(y, _mm256_add_ps(one, e)));
        }
    }
    for i in n8..n {
        let x = g[i];
        let z = x * (k1 + k3 * x * x);
        g[i] = x * u[i] / (1.0 + (-z).exp());
    }
}
