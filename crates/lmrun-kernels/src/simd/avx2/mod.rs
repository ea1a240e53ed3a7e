//! AVX2 + FMA + F16C kernels for x86-64. Every function here is only reachable after
//! `dispatch` has detected those features at run time; each has a scalar twin in `formats`
//! that the tests compare it with. The integer block sums are computed exactly as in the
//! scalar code (u8×i8 `maddubs` pairs, widened by `madd`), so SIMD and scalar differ only in
//! the order of the f32 additions.
//!
//! The block loops are written once (`block_loop!` in `loops.rs`); each format contributes only
//! its per-block body (`q32.rs`: the 32-wide types' codes, `kquants.rs`: the k-quants' integer
//! sums) and one line in the tables below. Every kernel derives its block count from the slice
//! lengths (`min` of weight blocks and activation blocks), so all raw loads stay inside the
//! slices whatever the caller passes. This file holds the tables and the shared helpers.

// On newer compilers most intrinsics are safe inside `#[target_feature]` functions, on the
// 1.85 MSRV they are not: keep the `unsafe` blocks and silence the newer lint.
#![allow(unused_unsafe)]

use std::arch::x86_64::*;

use crate::fn_types::{Dot4Fn, DotFn};
use crate::QType;

#[macro_use]
mod loops;
mod elementwise;
mod float;
mod kquants;
mod q32;

pub(crate) use elementwise::{
    axpy_f32, dot_f32, quantize_q8k, quantize_q8x32, sigmoid_gate_mul, softmax,
};
pub(super) use kquants::{iq4xs_scale, k4_codes, k5_codes, q6k_bias, q6k_codes, q6k_scales};
pub(super) use q32::iq4nl_codes;

use float::*;
use kquants::*;
use q32::*;

/// The AVX2 kernel for `t`, if there is one. Only called by `dispatch::dot_fn` after it has
/// checked `Isa::Avx2.is_available()` (AVX2, FMA and F16C detected at run time).
pub(crate) fn dot_fn(t: QType) -> Option<DotFn> {
    kernel_table!(t, dot_fn,
        F32 => dot_f32w,
        F16 => dot_f16w,
        BF16 => dot_bf16w,
        Q4_0 => dot_q4_0,
        Q4_1 => dot_q4_1,
        Q5_0 => dot_q5_0,
        Q5_1 => dot_q5_1,
        Q8_0 => dot_q8_0,
        IQ4NL => dot_iq4nl,
        Q2K => dot_q2k,
        Q3K => dot_q3k,
        Q4K => dot_q4k,
        Q5K => dot_q5k_v,
        Q6K => dot_q6k,
        IQ4XS => dot_iq4xs,
    )
}

/// The 4-token kernel for `t` (one weight row against four activation rows), if there is one.
/// Same precondition as [`dot_fn`].
pub(crate) fn dot4_fn(t: QType) -> Option<Dot4Fn> {
    kernel_table!(t, dot4_fn,
        F32 => dot4_f32w,
        F16 => dot4_f16w,
        BF16 => dot4_bf16w,
        Q4_0 => dot4_q4_0,
        Q5_0 => dot4_q5_0,
        Q8_0 => dot4_q8_0,
        IQ4NL => dot4_iq4nl,
        IQ4XS => dot4_iq4xs,
        Q4K => dot4_q4k,
        Q5K => dot4_q5k_v,
        Q6K => dot4_q6k,
    )
}

// ---------------------------------------------------------------------------------------------
// helpers

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn hsum_ps(v: __m256) -> f32 {
    // SAFETY: plain register arithmetic; features enabled on this function.
    unsafe {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// f16 at `b[off..off + 2]` as f32, exact. Integer arithmetic instead of F16C on purpose:
/// LLVM lowers a scalar `vcvtph2ps` with a `vpinsrw` that merges into whatever register it
/// picks — often the accumulator — which chains every block's scale conversion to the previous
/// block's FMA and halves the kernels' speed. No float operation here sees a subnormal: the
/// super-block scales of Q6_K and IQ4_XS are often f16 subnormals (~1e-5), and an earlier
/// version that rescaled by 2^112 in f32 took a microcode assist on each of them (the kernels
/// ran 2-3x slower on such files).
#[inline(always)]
pub(super) fn f16_at(b: &[u8], off: usize) -> f32 {
    let h = u16::from_le_bytes([b[off], b[off + 1]]);
    let exp = ((h >> 10) & 0x1f) as u32;
    if exp == 0x1f {
        return half::f16::from_bits(h).to_f32(); // inf / NaN
    }
    let sign = ((h & 0x8000) as u32) << 16;
    let mant = (h & 0x3ff) as u32;
    // normal: rebias the exponent (15 -> 127) and widen the mantissa, in the bits
    let normal = sign | ((exp + 112) << 23) | (mant << 13);
    // subnormal (and zero): mant * 2^-24, an exact int -> f32 conversion and a power-of-two
    // scaling whose result (>= 2^-24) is a normal f32
    let sub = (mant as f32 * f32::from_bits(0x3380_0000)).to_bits() | sign;
    f32::from_bits(if exp == 0 { sub } else { normal })
}

/// The f16 at `b[off..off + 2]` converted and broadcast to eight f32 lanes (F16C). All lanes
/// are used, so the compiler cannot merge the scalar into a stale register (see [`f16_at`]).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16x8(b: &[u8], off: usize) -> __m256 {
    let h = u16::from_le_bytes([b[off], b[off + 1]]);
    // SAFETY: register arithmetic.
    unsafe { _mm256_cvtph_ps(_mm_set1_epi16(h as i16)) }
}

/// Loads 32 bytes from `b[off..off + 32]` (bounds-checked).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load32(b: &[u8], off: usize) -> __m256i {
    let s = &b[off..off + 32];
    // SAFETY: `s` is 32 readable bytes; unaligned load.
    unsafe { _mm256_loadu_si256(s.as_ptr() as *const __m256i) }
}

/// Loads 16 bytes from `b[off..off + 16]` (bounds-checked).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load16(b: &[u8], off: usize) -> __m128i {
    let s = &b[off..off + 16];
    // SAFETY: `s` is 16 readable bytes; unaligned load.
    unsafe { _mm_loadu_si128(s.as_ptr() as *const __m128i) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load32_i8(q: &[i8], off: usize) -> __m256i {
    let s = &q[off..off + 32];
    // SAFETY: `s` is 32 readable bytes; unaligned load.
    unsafe { _mm256_loadu_si256(s.as_ptr() as *const __m256i) }
}

/// 16 nibble bytes → 32 bytes: low nibbles (values 0..16) then high nibbles (16..32).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn nibbles32(b: &[u8], off: usize) -> __m256i {
    // SAFETY: register arithmetic after a bounds-checked load.
    unsafe {
        let t = load16(b, off);
        let v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
        _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
    }
}

/// The 8 scales and 8 mins of a Q4_K/Q5_K block as 16 bytes (scales first), branch-free.
#[inline(always)]
pub(super) fn kscales16(s: &[u8]) -> [u8; 16] {
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    let u0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let u1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let u2 = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let sc_lo = u0 & K1;
    let sc_hi = (u2 & K2) | (((u0 >> 6) & K3) << 4);
    let mn_lo = u1 & K1;
    let mn_hi = ((u2 >> 4) & K2) | (((u1 >> 6) & K3) << 4);
    let mut out = [0u8; 16];
    out[0..4].copy_from_slice(&sc_lo.to_le_bytes());
    out[4..8].copy_from_slice(&sc_hi.to_le_bytes());
    out[8..12].copy_from_slice(&mn_lo.to_le_bytes());
    out[12..16].copy_from_slice(&mn_hi.to_le_bytes());
    out
}

/// [`kscales16`] in vector registers: the 12 packed 6-bit scale/min bytes of the Q4_K/Q5_K
/// super-block `b` (bytes 4..16) as 16 bytes `[sc0..8, m0..8]`, without the scalar unpack and
/// the store-then-reload of a byte array (a store-forwarding stall per super-block).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn kscales_v(b: &[u8]) -> __m128i {
    // SAFETY: bounds-checked 16-byte load (bytes 4..20 of a 144- or 176-byte block, checked by
    // the slice index), register arithmetic.
    unsafe {
        let v = _mm_loadu_si128(b[4..20].as_ptr() as *const __m128i);
        // lanes [u0, u0, u1, u1] and [u2; 4] of the packed words u0, u1, u2
        let x = _mm_shuffle_epi32(v, 0b01_01_00_00);
        let y = _mm_shuffle_epi32(v, 0b10_10_10_10);
        // lanes 0, 2: the low six bits (scales 0..4, mins 0..4)
        let lo = _mm_and_si128(x, _mm_set1_epi32(0x3f3f_3f3f));
        // lanes 1, 3: four low bits from u2 (its high nibbles for the mins), two high bits from
        // the top of u0 / u1
        let y = _mm_srlv_epi32(y, _mm_set_epi32(4, 0, 0, 0));
        let hi = _mm_or_si128(
            _mm_and_si128(y, _mm_set1_epi32(0x0f0f_0f0f)),
            _mm_and_si128(_mm_srli_epi32(x, 2), _mm_set1_epi32(0x3030_3030)),
        );
        _mm_blend_epi32(lo, hi, 0b1010)
    }
}

/// Broadcast helpers for 16 i16 sub-block scales `sc16`: returns (scales 0..8 in both 128-bit
/// halves, scales 8..16 in both halves), the inputs of [`pair_scales`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn split_scales(sc16: __m256i) -> (__m256i, __m256i) {
    // SAFETY: register arithmetic.
    unsafe {
        (
            _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sc16)),
            _mm256_broadcastsi128_si256(_mm256_extracti128_si256(sc16, 1)),
        )
    }
}

/// For sub-block pair `p` (scales `2p`, `2p + 1` of 16): scale `2p` in every i16 of the low
/// 128 bits, scale `2p + 1` in the high 128 bits. `lo`/`hi` come from [`split_scales`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn pair_scales(lo: __m256i, hi: __m256i, p: usize) -> __m256i {
    let q = (p % 4) as i16;
    let m_lo = ((4 * q + 1) << 8) | (4 * q);
    let m_hi = ((4 * q + 3) << 8) | (4 * q + 2);
    // SAFETY: register arithmetic.
    unsafe {
        let mask = _mm256_set_m128i(_mm_set1_epi16(m_hi), _mm_set1_epi16(m_lo));
        _mm256_shuffle_epi8(if p < 4 { lo } else { hi }, mask)
    }
}

/// Number of blocks usable by a 4-token kernel.
#[inline(always)]
pub(super) fn nb4<T>(w_len: usize, ts: usize, a: &[&[T]; 4]) -> usize {
    a.iter().fold(w_len / ts, |m, x| m.min(x.len()))
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn hsum4(acc: &[__m256; 4]) -> [f32; 4] {
    // SAFETY: register arithmetic.
    unsafe {
        [
            hsum_ps(acc[0]),
            hsum_ps(acc[1]),
            hsum_ps(acc[2]),
            hsum_ps(acc[3]),
        ]
    }
}

/// The sums of the eight i32 lanes of `a` and of `b` (two `vphaddd` fold both at once).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn hsum2_epi32(a: __m256i, b: __m256i) -> (i32, i32) {
    // SAFETY: register arithmetic.
    unsafe {
        // [a01 a23 b01 b23 | a45 a67 b45 b67], then [A03 B03 A03 B03 | A47 B47 A47 B47]
        let h = _mm256_hadd_epi32(a, b);
        let h = _mm256_hadd_epi32(h, h);
        let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
        (_mm_cvtsi128_si32(s), _mm_extract_epi32::<1>(s))
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn hsum_epi32(v: __m256i) -> i32 {
    // SAFETY: register arithmetic.
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn f16_conversion_is_exact_for_all_values() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = super::f16_at(&h.to_le_bytes(), 0);
            assert!(
                want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
                "{h:#06x}: {want} vs {got}"
            );
        }
    }
}
