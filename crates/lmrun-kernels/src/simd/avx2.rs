//! AVX2 + FMA + F16C kernels for x86-64. Every function here is only reachable after
//! `dispatch` has detected those features at run time; each has a scalar twin in `scalar`
//! that the tests compare it with.

use std::arch::x86_64::*;

use crate::quant::{BlockQ8K, BlockQ8x32};
use crate::{DotFn, QType};

/// The AVX2 kernel for `t`, if there is one. Callers must have checked that AVX2, FMA and F16C
/// are available (`Isa::Avx2.is_available()`).
pub(crate) fn dot_fn(t: QType) -> Option<DotFn> {
    let _ = t;
    None
}

#[inline(always)]
fn hsum(v: __m256) -> f32 {
    // SAFETY: only called from AVX2 code paths (features detected by the caller).
    unsafe {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// f32 dot product. Caller guarantees AVX2+FMA (checked by `ops::dot_f32`).
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: features detected by the caller; lengths equal (sliced by the caller).
    unsafe { dot_f32_impl(a, b) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let n32 = n / 32 * 32;
    let mut acc = [_mm256_setzero_ps(); 4];
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    while i < n32 {
        for (k, ac) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n32 <= len of both slices.
            unsafe {
                let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                *ac = _mm256_fmadd_ps(x, y, *ac);
            }
        }
        i += 32;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut r = hsum(s);
    for j in n32..n {
        r += a[j] * b[j];
    }
    r
}

/// `y += a * x`. Caller guarantees AVX2+FMA.
pub(crate) fn axpy_f32(a: f32, x: &[f32], y: &mut [f32]) {
    // SAFETY: features detected by the caller.
    unsafe { axpy_impl(a, x, y) }
}

#[target_feature(enable = "avx2,fma")]
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

#[allow(dead_code)]
fn _types(_: &[BlockQ8x32], _: &[BlockQ8K]) {}
