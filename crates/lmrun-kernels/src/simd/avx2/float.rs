//! AVX2 kernels for the float weight types (F32, F16, BF16) against f32 activations: the
//! per-format part is how eight weights become eight f32 lanes (`load8_*`) and one weight
//! becomes an f32 (`one_*`, for the tail); the loops are `block_loop!`'s `float` arms.

use std::arch::x86_64::*;

use super::{hsum4, hsum_ps, load16};
use crate::formats::{bf16_at, f16_at, f32_at, QuantFormat, BF16, F16, F32};

/// Weights `i..i + 8` of an F32 row, unchecked (the single-token loop's bound covers them).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C, and `4 * (i + 8) <= w.len()`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8_f32w_raw(w: &[u8], i: usize) -> __m256 {
    // SAFETY: the caller guarantees 32 readable bytes at `4 * i`; unaligned load.
    unsafe { _mm256_loadu_ps(w.as_ptr().add(F32::BYTES * i) as *const f32) }
}

/// Weights `i..i + 8` of an F32 row (bounds-checked).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8_f32w(w: &[u8], i: usize) -> __m256 {
    let s = &w[F32::BYTES * i..F32::BYTES * (i + 8)];
    // SAFETY: `s` is 32 readable bytes; unaligned load.
    unsafe { _mm256_loadu_ps(s.as_ptr() as *const f32) }
}

/// Weights `i..i + 8` of an F16 row (bounds-checked).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8_f16w(w: &[u8], i: usize) -> __m256 {
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe { _mm256_cvtph_ps(load16(w, F16::BYTES * i)) }
}

/// Weights `i..i + 8` of a BF16 row (bounds-checked).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8_bf16w(w: &[u8], i: usize) -> __m256 {
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe {
        _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(load16(w, BF16::BYTES * i)),
            16,
        ))
    }
}

#[inline(always)]
fn one_bf16(w: &[u8], j: usize) -> f32 {
    bf16_at(w, BF16::BYTES * j)
}

#[inline(always)]
fn one_f16(w: &[u8], j: usize) -> f32 {
    f16_at(w, F16::BYTES * j)
}

#[inline(always)]
fn one_f32(w: &[u8], j: usize) -> f32 {
    f32_at(w, F32::BYTES * j)
}

block_loop!(float dot, dot_f32w, F32, load8_f32w_raw, one_f32);
block_loop!(float dot, dot_f16w, F16, load8_f16w, one_f16);
block_loop!(float dot, dot_bf16w, BF16, load8_bf16w, one_bf16);
block_loop!(float dot4, dot4_f32w, F32, load8_f32w, one_f32);
block_loop!(float dot4, dot4_f16w, F16, load8_f16w, one_f16);
block_loop!(float dot4, dot4_bf16w, BF16, load8_bf16w, one_bf16);
