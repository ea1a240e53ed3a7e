//! AVX2 kernels for the 32-wide block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) against
//! [`BlockQ8x32`] activations. A format's part is its `*_codes` function (the 32 weight codes
//! as bytes) and how the codes meet the activation (`signed_dot`, `offset_dot`, `unsigned_dot`
//! plus the min term); the loops are `block_loop!`'s.

use std::arch::x86_64::*;

use super::{f16_at, f16x8, hsum4, hsum_ps, load32, load32_i8, nb4, nibbles32};
use crate::formats::{u32_at, QuantFormat, IQ4NL, KVALUES_IQ4NL, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use crate::partner::BlockQ8x32;

/// Each of the 32 bits of `x` → a byte 0xFF (set) or 0x00.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bytes_from_bits(x: u32) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe {
        let shuf = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuf);
        let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
        _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
    }
}

/// u8 × i8 products summed in pairs (i16), then in fours (i32).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mul_sum_us8_i32(ax: __m256i, sy: __m256i) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1)) }
}

/// Subtracts `x` from lane 0 of eight i32 (applies a per-block integer offset exactly).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sub_lane0(v: __m256i, x: i32) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe { _mm256_sub_epi32(v, _mm256_set_epi32(0, 0, 0, 0, 0, 0, 0, x)) }
}

/// Signed codes `q` · the activation (i32 sums of fours), via |q| × sign(y, q).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn signed_dot(q: __m256i, y: &BlockQ8x32) -> __m256i {
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe {
        let yq = load32_i8(&y.qs, 0);
        mul_sum_us8_i32(_mm256_sign_epi8(q, q), _mm256_sign_epi8(yq, q))
    }
}

/// Unsigned codes `q` · the activation (i32 sums of fours).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unsigned_dot(q: __m256i, y: &BlockQ8x32) -> __m256i {
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe { mul_sum_us8_i32(q, load32_i8(&y.qs, 0)) }
}

/// Unsigned codes `q` stored `+OFF` · the activation: Σ (q - OFF) a = Σ q a - OFF Σ a, with q
/// unsigned (no sign juggling) and the offset removed as an integer.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn offset_dot<const OFF: i32>(q: __m256i, y: &BlockQ8x32) -> __m256i {
    // SAFETY: register arithmetic after a bounds-checked load.
    unsafe { sub_lane0(unsigned_dot(q, y), OFF * y.sum) }
}

/// A 32-wide block's scale times the activation's, in eight lanes.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scale32(b: &[u8], y: &BlockQ8x32) -> __m256 {
    // SAFETY: register arithmetic.
    unsafe { _mm256_mul_ps(f16x8(b, 0), _mm256_set1_ps(y.d)) }
}

/// The min term of Q4_1/Q5_1 (f16 min at byte 2 times the activation sum).
#[inline(always)]
fn min32(b: &[u8], y: &BlockQ8x32) -> f32 {
    f16_at(b, 2) * (y.d * y.sum as f32)
}

/// Q4_0's codes: the 32 nibbles (stored +8).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0_codes(b: &[u8]) -> __m256i {
    // SAFETY: bounds-checked load.
    unsafe { nibbles32(b, 2) }
}

/// Q4_1's codes: the 32 nibbles.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_codes(b: &[u8]) -> __m256i {
    // SAFETY: bounds-checked load.
    unsafe { nibbles32(b, 4) }
}

/// 5-bit codes from the high-bit word at `qh_off` and the nibbles after it (Q5_0, Q5_1).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn codes5(b: &[u8], qh_off: usize) -> __m256i {
    let qh = u32_at(b, qh_off);
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe {
        let hi = _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(0x10));
        _mm256_or_si256(nibbles32(b, qh_off + 4), hi)
    }
}

/// Q5_0's codes (stored +16).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0_codes(b: &[u8]) -> __m256i {
    // SAFETY: bounds-checked loads.
    unsafe { codes5(b, 2) }
}

/// Q5_1's codes.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1_codes(b: &[u8]) -> __m256i {
    // SAFETY: bounds-checked loads.
    unsafe { codes5(b, 4) }
}

/// Q8_0's codes: the 32 int8 values.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_codes(b: &[u8]) -> __m256i {
    // SAFETY: bounds-checked load.
    unsafe { load32(b, 2) }
}

/// IQ4_NL's codes: the table values of the 32 nibbles.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::simd) unsafe fn iq4nl_codes(b: &[u8], off: usize) -> __m256i {
    // SAFETY: KVALUES_IQ4NL is 16 bytes; bounds-checked load, register arithmetic.
    unsafe {
        let table =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i));
        _mm256_shuffle_epi8(table, nibbles32(b, off))
    }
}

/// [`iq4nl_codes`] of an IQ4_NL block.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4nl_block_codes(b: &[u8]) -> __m256i {
    // SAFETY: bounds-checked load.
    unsafe { iq4nl_codes(b, 2) }
}

block_loop!(dot acc2, dot_q4_0, Q4_0, |b, y| (scale32(b, y), offset_dot::<8>(q4_0_codes(b), y)));
block_loop!(dot acc2, dot_q5_0, Q5_0, |b, y| (scale32(b, y), offset_dot::<16>(q5_0_codes(b), y)));
block_loop!(dot acc2, dot_q8_0, Q8_0, |b, y| (scale32(b, y), signed_dot(q8_0_codes(b), y)));
block_loop!(dot acc1, dot_iq4nl, IQ4NL, |b, y| (scale32(b, y), signed_dot(iq4nl_block_codes(b), y)));
block_loop!(dot acc1 +, dot_q4_1, Q4_1, |b, y| (scale32(b, y), unsigned_dot(q4_1_codes(b), y), min32(b, y)));
block_loop!(dot acc1 +, dot_q5_1, Q5_1, |b, y| (scale32(b, y), unsigned_dot(q5_1_codes(b), y), min32(b, y)));
block_loop!(dot4 q32, dot4_q4_0, Q4_0, q4_0_codes, offset_dot::<8>);
block_loop!(dot4 q32, dot4_q5_0, Q5_0, q5_0_codes, offset_dot::<16>);
block_loop!(dot4 q32, dot4_q8_0, Q8_0, q8_0_codes, signed_dot);
block_loop!(dot4 q32, dot4_iq4nl, IQ4NL, iq4nl_block_codes, signed_dot);
