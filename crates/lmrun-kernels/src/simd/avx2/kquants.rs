//! AVX2 kernels for the k-quants (Q2_K … Q6_K) and IQ4_XS against [`BlockQ8K`] activations.
//! A format's part is its per-super-block body: the exact i32 sums of codes × activations
//! times the sub-block scales (and, for the types with mins, the mins · block-sums term); the
//! loops are `block_loop!`'s. Q4_K's and Q5_K's kernels are `q4k_dot!` and `q4k_dot4!`
//! (Q5_K: the same with the fifth bit added to each code), shared with AVX-512.

use std::arch::x86_64::*;

use super::q32::iq4nl_codes;
use super::{
    f16_at, hsum2_epi32, hsum4, hsum_epi32, hsum_ps, kscales_v, load16, load32, load32_i8, nb4,
    pair_scales, split_scales,
};
use crate::formats::{q2_k, q3_k, q6_k, QuantFormat, IQ4XS, Q2K, Q3K, Q6K};
use crate::partner::BlockQ8K;

/// Q5_K's two code vectors of sub-block pair `j`: nibbles plus 16 where the high bit is set.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5k_codes(b: &[u8], hbits: __m256i, j: usize) -> (__m256i, __m256i) {
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let sixteen = _mm256_set1_epi8(16);
        let q5 = load32(b, 48 + 32 * j);
        let ml = _mm256_set1_epi8((1u8 << (2 * j)) as i8);
        let mh = _mm256_set1_epi8((1u8 << (2 * j + 1)) as i8);
        let hl = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, ml), ml), sixteen);
        let hh = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mh), mh), sixteen);
        let lo = _mm256_or_si256(_mm256_and_si256(q5, m4), hl);
        let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q5, 4), m4), hh);
        (lo, hi)
    }
}

/// Q4_K's two code vectors of sub-block pair `j` (0..4): the low and the high nibbles of the
/// 32 bytes at `16 + 32j`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::simd) unsafe fn k4_codes(b: &[u8], j: usize) -> (__m256i, __m256i) {
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let q4 = load32(b, 16 + 32 * j);
        (
            _mm256_and_si256(q4, m4),
            _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4),
        )
    }
}

/// Q5_K's two code vectors of sub-block pair `j` (see [`q5k_codes`]).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::simd) unsafe fn k5_codes(b: &[u8], j: usize) -> (__m256i, __m256i) {
    // SAFETY: bounds-checked loads, register arithmetic.
    unsafe { q5k_codes(b, load32(b, 16), j) }
}

/// Q6_K code vector `g` (0..4) of half `h` (0..2): the 6-bit codes, stored +32, as bytes.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::simd) unsafe fn q6k_codes(b: &[u8], h: usize) -> [__m256i; 4] {
    // SAFETY: bounds-checked loads, register arithmetic.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let m30 = _mm256_set1_epi8(0x30);
        let qa = load32(b, 64 * h);
        let qb = load32(b, 64 * h + 32);
        let qh = load32(b, 128 + 32 * h);
        [
            _mm256_or_si256(
                _mm256_and_si256(qa, m4),
                _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30),
            ),
            _mm256_or_si256(
                _mm256_and_si256(qb, m4),
                _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(qa, 4), m4),
                _mm256_and_si256(qh, m30),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30),
            ),
        ]
    }
}

/// Q6_K's 16 int8 sub-block scales as i16.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::simd) unsafe fn q6k_scales(b: &[u8]) -> __m256i {
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe { _mm256_cvtepi8_epi16(load16(b, q6_k::SCALES_OFF)) }
}

/// Q6_K: scale and i32 sums of one super-block.
/// A macro rather than an `#[inline]` function: as a function (inlined or not) it
/// compiled to a kernel loop with more spills than the loop written out.
macro_rules! q6k_block {
    ($b:ident, $y:ident) => {{
        let (b, y): (&[u8], &BlockQ8K) = ($b, $y);
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            // Σ sc_k * bsum_k, vectorized: values are stored +32, so this times 32 is removed
            let sc16 = _mm256_cvtepi8_epi16(load16(b, q6_k::SCALES_OFF));
            // SAFETY: `bsums` is exactly 32 bytes.
            let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            let bias = _mm256_madd_epi16(sc16, bs);
            let (slo, shi) = split_scales(sc16);
            let m4 = _mm256_set1_epi8(0x0F);
            let m30 = _mm256_set1_epi8(0x30);
            let mut sumi = _mm256_setzero_si256();
            for n in 0..2 {
                // The codes as in `q6k_codes`, each used as soon as it is made: unpacking all four
                // first (the 4-token kernels' order) costs this kernel spills and ~10 %.
                let qa = load32(b, 64 * n);
                let qb = load32(b, 64 * n + 32);
                let qh = load32(b, 128 + 32 * n);
                let q1 = _mm256_or_si256(
                    _mm256_and_si256(qa, m4),
                    _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30),
                );
                let q2 = _mm256_or_si256(
                    _mm256_and_si256(qb, m4),
                    _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30),
                );
                let q3 = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(qa, 4), m4),
                    _mm256_and_si256(qh, m30),
                );
                let q4 = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30),
                );
                let s = 4 * n;
                let p1 = _mm256_maddubs_epi16(q1, load32_i8(&y.qs, 128 * n));
                let p2 = _mm256_maddubs_epi16(q2, load32_i8(&y.qs, 128 * n + 32));
                let p3 = _mm256_maddubs_epi16(q3, load32_i8(&y.qs, 128 * n + 64));
                let p4 = _mm256_maddubs_epi16(q4, load32_i8(&y.qs, 128 * n + 96));
                let p1 = _mm256_madd_epi16(p1, pair_scales(slo, shi, s));
                let p2 = _mm256_madd_epi16(p2, pair_scales(slo, shi, s + 1));
                let p3 = _mm256_madd_epi16(p3, pair_scales(slo, shi, s + 2));
                let p4 = _mm256_madd_epi16(p4, pair_scales(slo, shi, s + 3));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p1, p2));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p3, p4));
            }
            sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(bias, 5));
            (_mm256_set1_ps(y.d * f16_at(b, q6_k::D_OFF)), sumi)
        }
    }};
}

/// `-32 · Σ_k sc_k · bsum_k` (per i32 lane): removes Q6_K's +32 code offset as an integer.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::simd) unsafe fn q6k_bias(sc16: __m256i, y: &BlockQ8K) -> __m256i {
    // SAFETY: `bsums` is exactly 32 bytes; register arithmetic.
    unsafe {
        let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
        _mm256_sub_epi32(
            _mm256_setzero_si256(),
            _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5),
        )
    }
}

/// `sum + p·sv` (i16 pair products into i32 lanes) with `vpmaddwd` and an add.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn madd_add(sum: __m256i, p: __m256i, sv: __m256i) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe { _mm256_add_epi32(sum, _mm256_madd_epi16(p, sv)) }
}

/// Q2_K: scale, i32 sums and mins term of one super-block.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q2k_block(b: &[u8], y: &BlockQ8K) -> (__m256, __m256i, f32) {
    let d_off = q2_k::D_OFF;
    // SAFETY: bounds-checked loads, register arithmetic.
    unsafe {
        let m4 = _mm_set1_epi8(0x0F);
        let raw = load16(b, 0);
        let sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
        let mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
        // SAFETY: `bsums` is exactly 32 bytes.
        let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
        let msum = hsum_epi32(_mm256_madd_epi16(mn16, bs));
        let m = y.d * f16_at(b, d_off + 2) * msum as f32;
        let (slo, shi) = split_scales(sc16);
        let m3 = _mm256_set1_epi8(3);
        let mut sumi = _mm256_setzero_si256();
        for n in 0..2 {
            let qv = load32(b, 16 + 32 * n);
            for s in 0..4 {
                let q = _mm256_and_si256(_mm256_srl_epi16(qv, _mm_cvtsi32_si128(2 * s as i32)), m3);
                let p = _mm256_maddubs_epi16(q, load32_i8(&y.qs, 128 * n + 32 * s));
                let sv = pair_scales(slo, shi, 4 * n + s);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sv));
            }
        }
        (_mm256_set1_ps(y.d * f16_at(b, d_off)), sumi, m)
    }
}

/// The 16 Q3_K scales (6-bit, not yet minus 32) as bytes, branch-free.
#[inline(always)]
fn q3k_scales(s: &[u8]) -> [u8; 16] {
    const K1: u32 = 0x0303_0303;
    const K2: u32 = 0x0f0f_0f0f;
    let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let t = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let r = [
        (a0 & K2) | ((t & K1) << 4),
        (a1 & K2) | (((t >> 2) & K1) << 4),
        ((a0 >> 4) & K2) | (((t >> 4) & K1) << 4),
        ((a1 >> 4) & K2) | (((t >> 6) & K1) << 4),
    ];
    let mut out = [0u8; 16];
    for (k, v) in r.iter().enumerate() {
        out[4 * k..4 * k + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// Q3_K: scale and i32 sums of one super-block.
/// A macro rather than an `#[inline]` function: as a function (inlined or not) it
/// compiled to a kernel loop with more spills than the loop written out.
macro_rules! q3k_block {
    ($b:ident, $y:ident) => {{
        let (b, y): (&[u8], &BlockQ8K) = ($b, $y);
        let d_off = q3_k::D_OFF;
        let sc = q3k_scales(&b[96..d_off]);
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            // SAFETY: `sc` is 16 bytes.
            let raw = _mm_loadu_si128(sc.as_ptr() as *const __m128i);
            let sc16 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(raw), _mm256_set1_epi16(32));
            // SAFETY: `bsums` is exactly 32 bytes.
            let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            // stored values are +4 (0..=7): remove 4 * Σ sc_k * bsum_k
            let mut sumi = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 2),
            );
            let (slo, shi) = split_scales(sc16);
            let m3 = _mm256_set1_epi8(3);
            let four = _mm256_set1_epi8(4);
            let hm = load32(b, 0);
            for n in 0..2 {
                let qv = load32(b, 32 + 32 * n);
                for sh in 0..4 {
                    let low = _mm256_and_si256(
                        _mm256_srl_epi16(qv, _mm_cvtsi32_si128(2 * sh as i32)),
                        m3,
                    );
                    let m = _mm256_set1_epi8((1u8 << (4 * n + sh)) as i8);
                    let hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, m), m), four);
                    let q = _mm256_or_si256(low, hb);
                    let p = _mm256_maddubs_epi16(q, load32_i8(&y.qs, 128 * n + 32 * sh));
                    let sv = pair_scales(slo, shi, 4 * n + sh);
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sv));
                }
            }
            (_mm256_set1_ps(y.d * f16_at(b, d_off)), sumi)
        }
    }};
}

/// IQ4_XS sub-block `ib`'s signed scale (6 bits, minus 32).
#[inline(always)]
pub(in crate::simd) fn iq4xs_scale(b: &[u8], sh: u16, ib: usize) -> i16 {
    let lo = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0x0F;
    let hi = ((sh >> (2 * ib)) & 3) as u8;
    (lo | (hi << 4)) as i16 - 32
}

/// IQ4_XS: scale and i32 sums of one super-block.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4xs_block(b: &[u8], y: &BlockQ8K) -> (__m256, __m256i) {
    let sh = u16::from_le_bytes([b[2], b[3]]);
    // SAFETY: bounds-checked loads, register arithmetic.
    unsafe {
        let mut sumi = _mm256_setzero_si256();
        for ib in 0..8 {
            let ls = iq4xs_scale(b, sh, ib);
            let q = iq4nl_codes(b, 8 + 16 * ib);
            let yv = load32_i8(&y.qs, 32 * ib);
            let p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(yv, q));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, _mm256_set1_epi16(ls)));
        }
        (_mm256_set1_ps(y.d * f16_at(b, 0)), sumi)
    }
}

/// IQ4_XS, four tokens: super-block scale and i32 sums.
/// A macro rather than an `#[inline]` function: as a function (inlined or not) it
/// compiled to a kernel loop with more spills than the loop written out.
macro_rules! iq4xs_block4 {
    ($b:ident, $a:ident, $i:ident) => {{
        let (b, a, i): (&[u8], &[&[BlockQ8K]; 4], usize) = ($b, &$a, $i);
        let sh = u16::from_le_bytes([b[2], b[3]]);
        let d = f16_at(b, 0);
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let mut sumi = [_mm256_setzero_si256(); 4];
            for ib in 0..8 {
                let ls = _mm256_set1_epi16(iq4xs_scale(b, sh, ib));
                let q = iq4nl_codes(b, 8 + 16 * ib);
                let aq = _mm256_sign_epi8(q, q);
                for n in 0..4 {
                    let yv = load32_i8(&a[n][i].qs, 32 * ib);
                    let p = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(yv, q));
                    sumi[n] = _mm256_add_epi32(sumi[n], _mm256_madd_epi16(p, ls));
                }
            }
            (d, sumi)
        }
    }};
}

block_loop!(dot acc1 -, dot_q2k, Q2K, |b, y| q2k_block(b, y));
block_loop!(dot acc1, dot_q3k, Q3K, |b, y| q3k_block!(b, y));
q4k_dot!(pub(super) dot_q4k, "avx2,fma,f16c", madd_add, Q4K, k4_codes);
q4k_dot!(pub(super) dot_q5k_v, "avx2,fma,f16c", madd_add, Q5K, k5_codes);
block_loop!(dot acc1, dot_q6k, Q6K, |b, y| q6k_block!(b, y));
block_loop!(dot acc1, dot_iq4xs, IQ4XS, |b, y| iq4xs_block(b, y));
block_loop!(dot4 k, dot4_q6k, Q6K, |b, a, i| q6k_sums4!(b, a, i, madd_add));
block_loop!(dot4 k, dot4_iq4xs, IQ4XS, |b, a, i| iq4xs_block4!(b, a, i));
q4k_dot4!(pub(super) dot4_q4k, "avx2,fma,f16c", madd_add, Q4K, k4_codes);
q4k_dot4!(pub(super) dot4_q5k_v, "avx2,fma,f16c", madd_add, Q5K, k5_codes);
