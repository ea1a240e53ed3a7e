//! AVX2 + FMA + F16C kernels for x86-64. Every function here is only reachable after
//! `dispatch` has detected those features at run time; each has a scalar twin in `scalar`
//! that the tests compare it with. The integer block sums are computed exactly as in the
//! scalar code (u8×i8 `maddubs` pairs, widened by `madd`), so SIMD and scalar differ only in
//! the order of the f32 additions.
//!
//! Every kernel derives its block count from the slice lengths (`min` of weight blocks and
//! activation blocks), so all raw loads stay inside the slices whatever the caller passes.

// On newer compilers most intrinsics are safe inside `#[target_feature]` functions, on the
// 1.85 MSRV they are not: keep the `unsafe` blocks and silence the newer lint.
#![allow(unused_unsafe)]

use std::arch::x86_64::*;

use crate::blocks::KVALUES_IQ4NL;
use crate::dispatch::Dot4Fn;
use crate::quant::{BlockQ8K, BlockQ8x32};
use crate::{DotFn, QType};

/// The AVX2 kernel for `t`, if there is one. Only called by `dispatch::dot_fn` after it has
/// checked `Isa::Avx2.is_available()` (AVX2, FMA and F16C detected at run time).
pub(crate) fn dot_fn(t: QType) -> Option<DotFn> {
    Some(match t {
        QType::F32 => DotFn::F32(dot_f32w),
        QType::F16 => DotFn::F32(dot_f16w),
        QType::BF16 => DotFn::F32(dot_bf16w),
        QType::Q4_0 => DotFn::Q8x32(dot_q4_0),
        QType::Q4_1 => DotFn::Q8x32(dot_q4_1),
        QType::Q5_0 => DotFn::Q8x32(dot_q5_0),
        QType::Q5_1 => DotFn::Q8x32(dot_q5_1),
        QType::Q8_0 => DotFn::Q8x32(dot_q8_0),
        QType::IQ4NL => DotFn::Q8x32(dot_iq4nl),
        QType::Q2K => DotFn::Q8K(dot_q2k),
        QType::Q3K => DotFn::Q8K(dot_q3k),
        QType::Q4K => DotFn::Q8K(dot_q4k),
        QType::Q5K => DotFn::Q8K(dot_q5k),
        QType::Q6K => DotFn::Q8K(dot_q6k),
        QType::IQ4XS => DotFn::Q8K(dot_iq4xs),
        _ => return None,
    })
}

/// The 4-token kernel for `t` (one weight row against four activation rows), if there is one.
/// Same precondition as [`dot_fn`].
pub(crate) fn dot4_fn(t: QType) -> Option<Dot4Fn> {
    Some(match t {
        QType::F32 => Dot4Fn::F32(dot4_f32w),
        QType::F16 => Dot4Fn::F32(dot4_f16w),
        QType::BF16 => Dot4Fn::F32(dot4_bf16w),
        QType::Q4_0 => Dot4Fn::Q8x32(dot4_q4_0),
        QType::Q5_0 => Dot4Fn::Q8x32(dot4_q5_0),
        QType::Q8_0 => Dot4Fn::Q8x32(dot4_q8_0),
        QType::IQ4NL => Dot4Fn::Q8x32(dot4_iq4nl),
        QType::IQ4XS => Dot4Fn::Q8K(dot4_iq4xs),
        QType::Q4K => Dot4Fn::Q8K(dot4_q4k),
        QType::Q5K => Dot4Fn::Q8K(dot4_q5k),
        QType::Q6K => Dot4Fn::Q8K(dot4_q6k),
        _ => return None,
    })
}

wrap4!(dot4_f32w, dot4_f32w_impl, f32);
wrap4!(dot4_f16w, dot4_f16w_impl, f32);
wrap4!(dot4_bf16w, dot4_bf16w_impl, f32);
wrap4!(dot4_q4_0, dot4_q4_0_impl, BlockQ8x32);
wrap4!(dot4_q5_0, dot4_q5_0_impl, BlockQ8x32);
wrap4!(dot4_q8_0, dot4_q8_0_impl, BlockQ8x32);
wrap4!(dot4_iq4nl, dot4_iq4nl_impl, BlockQ8x32);
wrap4!(dot4_iq4xs, dot4_iq4xs_impl, BlockQ8K);
wrap4!(dot4_q4k, dot4_q4k_impl, BlockQ8K);
wrap4!(dot4_q5k, dot4_q5k_impl, BlockQ8K);
wrap4!(dot4_q6k, dot4_q6k_impl, BlockQ8K);

wrap!(dot_f32w, dot_f32w_impl, f32);
wrap!(dot_f16w, dot_f16w_impl, f32);
wrap!(dot_bf16w, dot_bf16w_impl, f32);
wrap!(dot_q4_0, dot_q4_0_impl, BlockQ8x32);
wrap!(dot_q4_1, dot_q4_1_impl, BlockQ8x32);
wrap!(dot_q5_0, dot_q5_0_impl, BlockQ8x32);
wrap!(dot_q5_1, dot_q5_1_impl, BlockQ8x32);
wrap!(dot_q8_0, dot_q8_0_impl, BlockQ8x32);
wrap!(dot_iq4nl, dot_iq4nl_impl, BlockQ8x32);
wrap!(dot_q2k, dot_q2k_impl, BlockQ8K);
wrap!(dot_q3k, dot_q3k_impl, BlockQ8K);
wrap!(dot_q4k, dot_q4k_impl, BlockQ8K);
wrap!(dot_q5k, dot_q5k_impl, BlockQ8K);
wrap!(dot_q6k, dot_q6k_impl, BlockQ8K);
wrap!(dot_iq4xs, dot_iq4xs_impl, BlockQ8K);

// ---------------------------------------------------------------------------------------------
// helpers

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

/// f16 at `b[off..off + 2]` as f32, exact. Integer/f32 arithmetic instead of F16C on
/// purpose: LLVM lowers a scalar `vcvtph2ps` with a `vpinsrw` that merges into whatever
/// register it picks — often the accumulator — which chains every block's scale conversion
/// to the previous block's FMA and halves the kernels' speed.
#[inline(always)]
pub(super) fn f16_at(b: &[u8], off: usize) -> f32 {
    let h = u16::from_le_bytes([b[off], b[off + 1]]);
    if h & 0x7c00 == 0x7c00 {
        return half::f16::from_bits(h).to_f32(); // inf / NaN
    }
    // exponent and mantissa moved into f32 position: the value times 2^-112 (exact, also for
    // subnormal halves), then rescaled by 2^112 (exact), then the sign.
    let mag = f32::from_bits(((h & 0x7fff) as u32) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(mag.to_bits() | (((h & 0x8000) as u32) << 16))
}

/// The f16 at `b[off..off + 2]` converted and broadcast to eight f32 lanes (F16C). All lanes
/// are used, so the compiler cannot merge the scalar into a stale register (see [`f16_at`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16x8(b: &[u8], off: usize) -> __m256 {
    let h = u16::from_le_bytes([b[off], b[off + 1]]);
    // SAFETY: register arithmetic.
    unsafe { _mm256_cvtph_ps(_mm_set1_epi16(h as i16)) }
}

/// Loads 32 bytes from `b[off..off + 32]` (bounds-checked).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load32(b: &[u8], off: usize) -> __m256i {
    let s = &b[off..off + 32];
    // SAFETY: `s` is 32 readable bytes; unaligned load.
    unsafe { _mm256_loadu_si256(s.as_ptr() as *const __m256i) }
}

/// Loads 16 bytes from `b[off..off + 16]` (bounds-checked).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load16(b: &[u8], off: usize) -> __m128i {
    let s = &b[off..off + 16];
    // SAFETY: `s` is 16 readable bytes; unaligned load.
    unsafe { _mm_loadu_si128(s.as_ptr() as *const __m128i) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load32_i8(q: &[i8], off: usize) -> __m256i {
    let s = &q[off..off + 32];
    // SAFETY: `s` is 32 readable bytes; unaligned load.
    unsafe { _mm256_loadu_si256(s.as_ptr() as *const __m256i) }
}

/// 16 nibble bytes → 32 bytes: low nibbles (values 0..16) then high nibbles (16..32).
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

/// Each of the 32 bits of `x` → a byte 0xFF (set) or 0x00.
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
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mul_sum_us8_i32(ax: __m256i, sy: __m256i) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1)) }
}

/// i8 × i8 products summed in fours (i32), via |x| × sign(y, x).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mul_sum_i8_i32(x: __m256i, y: __m256i) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe { mul_sum_us8_i32(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x)) }
}

/// Subtracts `x` from lane 0 of eight i32 (applies a per-block integer offset exactly).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sub_lane0(v: __m256i, x: i32) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe { _mm256_sub_epi32(v, _mm256_set_epi32(0, 0, 0, 0, 0, 0, 0, x)) }
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

/// Σ_j mins[j] * (bsums[2j] + bsums[2j+1]) for the 8 mins in bytes 8..16 of `ms`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn mins_dot_bsums(ms: &[u8; 16], bsums: &[i16; 16]) -> i32 {
    // SAFETY: 16-byte and 32-byte loads from arrays of exactly that size; register arithmetic.
    unsafe {
        let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(ms.as_ptr().add(8) as *const __m128i));
        let lo = _mm_loadu_si128(bsums.as_ptr() as *const __m128i);
        let hi = _mm_loadu_si128(bsums.as_ptr().add(8) as *const __m128i);
        let pairs = _mm_hadd_epi16(lo, hi); // bsums[2j] + bsums[2j+1], j = 0..8
        let p = _mm_madd_epi16(mins, pairs);
        let p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0b01_00_11_10));
        let p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0b10_11_00_01));
        _mm_cvtsi128_si32(p)
    }
}

// ---------------------------------------------------------------------------------------------
// float weights

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32w_impl(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(w.len() / 4);
    let n8 = n / 8 * 8;
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n <= both lengths (in f32 units); unaligned loads.
        unsafe {
            let wv = _mm256_loadu_ps(w.as_ptr().add(4 * i) as *const f32);
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
        s += crate::blocks::f32_at(w, 4 * j) * x[j];
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16w_impl(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(w.len() / 2);
    let n8 = n / 8 * 8;
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i < n8 {
        // SAFETY: bounds-checked 16-byte load; i + 8 <= x.len().
        unsafe {
            let wv = _mm256_cvtph_ps(load16(w, 2 * i));
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
        s += crate::blocks::f16_at(w, 2 * j) * x[j];
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_bf16w_impl(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(w.len() / 2);
    let n8 = n / 8 * 8;
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i < n8 {
        // SAFETY: bounds-checked 16-byte load; i + 8 <= x.len().
        unsafe {
            let h = _mm256_cvtepu16_epi32(load16(w, 2 * i));
            let wv = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
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
        let b = f32::from_bits((u16::from_le_bytes([w[2 * j], w[2 * j + 1]]) as u32) << 16);
        s += b * x[j];
    }
    s
}

// ---------------------------------------------------------------------------------------------
// 32-wide blocks × BlockQ8x32

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0_impl(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let nb = a.len().min(w.len() / 34);
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    for i in 0..nb {
        let b = &w[34 * i..34 * i + 34];
        let y = &a[i];
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let d = _mm256_mul_ps(f16x8(b, 0), _mm256_set1_ps(y.d));
            let p = mul_sum_i8_i32(load32(b, 2), load32_i8(&y.qs, 0));
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

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_0_impl(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let nb = a.len().min(w.len() / 18);
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    for i in 0..nb {
        let b = &w[18 * i..18 * i + 18];
        let y = &a[i];
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let d = _mm256_mul_ps(f16x8(b, 0), _mm256_set1_ps(y.d));
            // Σ (q - 8) a = Σ q a - 8 Σ a, with q unsigned: no sign juggling
            let p = mul_sum_us8_i32(nibbles32(b, 2), load32_i8(&y.qs, 0));
            let p = sub_lane0(p, 8 * y.sum);
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

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_1_impl(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let nb = a.len().min(w.len() / 20);
    let mut acc = _mm256_setzero_ps();
    let mut summ = 0f32;
    for i in 0..nb {
        let b = &w[20 * i..20 * i + 20];
        let y = &a[i];
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let d = _mm256_mul_ps(f16x8(b, 0), _mm256_set1_ps(y.d));
            summ += f16_at(b, 2) * (y.d * y.sum as f32);
            let p = mul_sum_us8_i32(nibbles32(b, 4), load32_i8(&y.qs, 0));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum_ps(acc) + summ }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_0_impl(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let nb = a.len().min(w.len() / 22);
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    for i in 0..nb {
        let b = &w[22 * i..22 * i + 22];
        let y = &a[i];
        let qh = crate::blocks::u32_at(b, 2);
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let d = _mm256_mul_ps(f16x8(b, 0), _mm256_set1_ps(y.d));
            let hi = _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(0x10));
            let q = _mm256_or_si256(nibbles32(b, 6), hi); // unsigned 5-bit; -16 via the sum
            let p = mul_sum_us8_i32(q, load32_i8(&y.qs, 0));
            let p = sub_lane0(p, 16 * y.sum);
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

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_1_impl(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let nb = a.len().min(w.len() / 24);
    let mut acc = _mm256_setzero_ps();
    let mut summ = 0f32;
    for i in 0..nb {
        let b = &w[24 * i..24 * i + 24];
        let y = &a[i];
        let qh = crate::blocks::u32_at(b, 4);
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let d = _mm256_mul_ps(f16x8(b, 0), _mm256_set1_ps(y.d));
            summ += f16_at(b, 2) * (y.d * y.sum as f32);
            let hi = _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(0x10));
            let q = _mm256_or_si256(nibbles32(b, 8), hi);
            let p = mul_sum_us8_i32(q, load32_i8(&y.qs, 0));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum_ps(acc) + summ }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_iq4nl_impl(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let nb = a.len().min(w.len() / 18);
    let mut acc = _mm256_setzero_ps();
    // SAFETY: KVALUES_IQ4NL is 16 bytes.
    let table = unsafe {
        _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i))
    };
    for i in 0..nb {
        let b = &w[18 * i..18 * i + 18];
        let y = &a[i];
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let d = _mm256_mul_ps(f16x8(b, 0), _mm256_set1_ps(y.d));
            let q = _mm256_shuffle_epi8(table, nibbles32(b, 2));
            let p = mul_sum_i8_i32(q, load32_i8(&y.qs, 0));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum_ps(acc) }
}

// ---------------------------------------------------------------------------------------------
// k-quants × Q8_K

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4k_impl(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let nb = a.len().min(w.len() / 144);
    let mut acc = _mm256_setzero_ps();
    let mut summ = 0f32;
    for i in 0..nb {
        let b = &w[144 * i..144 * i + 144];
        let y = &a[i];
        let sc = kscales16(&b[4..16]);
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let msum = mins_dot_bsums(&sc, &y.bsums);
            summ += y.d * f16_at(b, 2) * msum as f32;
            let m4 = _mm256_set1_epi8(0x0F);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..4 {
                let q4 = load32(b, 16 + 32 * j);
                let lo = _mm256_and_si256(q4, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                let pl = _mm256_maddubs_epi16(lo, load32_i8(&y.qs, 64 * j));
                let ph = _mm256_maddubs_epi16(hi, load32_i8(&y.qs, 64 * j + 32));
                let pl = _mm256_madd_epi16(pl, _mm256_set1_epi16(sc[2 * j] as i16));
                let ph = _mm256_madd_epi16(ph, _mm256_set1_epi16(sc[2 * j + 1] as i16));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
            }
            let d = _mm256_set1_ps(y.d * f16_at(b, 0));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum_ps(acc) - summ }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5k_impl(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let nb = a.len().min(w.len() / 176);
    let mut acc = _mm256_setzero_ps();
    let mut summ = 0f32;
    for i in 0..nb {
        let b = &w[176 * i..176 * i + 176];
        let y = &a[i];
        let sc = kscales16(&b[4..16]);
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let msum = mins_dot_bsums(&sc, &y.bsums);
            summ += y.d * f16_at(b, 2) * msum as f32;
            let m4 = _mm256_set1_epi8(0x0F);
            let sixteen = _mm256_set1_epi8(16);
            let hbits = load32(b, 16);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..4 {
                let q5 = load32(b, 48 + 32 * j);
                let ml = _mm256_set1_epi8((1u8 << (2 * j)) as i8);
                let mh = _mm256_set1_epi8((1u8 << (2 * j + 1)) as i8);
                let hl =
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, ml), ml), sixteen);
                let hh =
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mh), mh), sixteen);
                let lo = _mm256_or_si256(_mm256_and_si256(q5, m4), hl);
                let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q5, 4), m4), hh);
                let pl = _mm256_maddubs_epi16(lo, load32_i8(&y.qs, 64 * j));
                let ph = _mm256_maddubs_epi16(hi, load32_i8(&y.qs, 64 * j + 32));
                let pl = _mm256_madd_epi16(pl, _mm256_set1_epi16(sc[2 * j] as i16));
                let ph = _mm256_madd_epi16(ph, _mm256_set1_epi16(sc[2 * j + 1] as i16));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
            }
            let d = _mm256_set1_ps(y.d * f16_at(b, 0));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum_ps(acc) - summ }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q6k_impl(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let nb = a.len().min(w.len() / 210);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        let b = &w[210 * i..210 * i + 210];
        let y = &a[i];
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            // Σ sc_k * bsum_k, vectorized: values are stored +32, so this times 32 is removed
            let sc16 = _mm256_cvtepi8_epi16(load16(b, 192));
            // SAFETY: `bsums` is exactly 32 bytes.
            let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            let bias = _mm256_madd_epi16(sc16, bs);
            let (slo, shi) = split_scales(sc16);
            let m4 = _mm256_set1_epi8(0x0F);
            let m30 = _mm256_set1_epi8(0x30);
            let mut sumi = _mm256_setzero_si256();
            for n in 0..2 {
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
            let d = _mm256_set1_ps(y.d * f16_at(b, 208));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum_ps(acc) }
}

/// Broadcast helpers for 16 i16 sub-block scales `sc16`: returns (scales 0..8 in both 128-bit
/// halves, scales 8..16 in both halves), the inputs of [`pair_scales`].
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

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q2k_impl(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let nb = a.len().min(w.len() / 84);
    let mut acc = _mm256_setzero_ps();
    let mut summ = 0f32;
    for i in 0..nb {
        let b = &w[84 * i..84 * i + 84];
        let y = &a[i];
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let m4 = _mm_set1_epi8(0x0F);
            let raw = load16(b, 0);
            let sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
            let mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
            // SAFETY: `bsums` is exactly 32 bytes.
            let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            let msum = hsum_epi32(_mm256_madd_epi16(mn16, bs));
            summ += y.d * f16_at(b, 82) * msum as f32;
            let (slo, shi) = split_scales(sc16);
            let m3 = _mm256_set1_epi8(3);
            let mut sumi = _mm256_setzero_si256();
            for n in 0..2 {
                let qv = load32(b, 16 + 32 * n);
                for s in 0..4 {
                    let q =
                        _mm256_and_si256(_mm256_srl_epi16(qv, _mm_cvtsi32_si128(2 * s as i32)), m3);
                    let p = _mm256_maddubs_epi16(q, load32_i8(&y.qs, 128 * n + 32 * s));
                    let sv = pair_scales(slo, shi, 4 * n + s);
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sv));
                }
            }
            let d = _mm256_set1_ps(y.d * f16_at(b, 80));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum_ps(acc) - summ }
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

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q3k_impl(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let nb = a.len().min(w.len() / 110);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        let b = &w[110 * i..110 * i + 110];
        let y = &a[i];
        let sc = q3k_scales(&b[96..108]);
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
            let d = _mm256_set1_ps(y.d * f16_at(b, 108));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum_ps(acc) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_iq4xs_impl(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let nb = a.len().min(w.len() / 136);
    let mut acc = _mm256_setzero_ps();
    // SAFETY: KVALUES_IQ4NL is 16 bytes.
    let table = unsafe {
        _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i))
    };
    for i in 0..nb {
        let b = &w[136 * i..136 * i + 136];
        let y = &a[i];
        let sh = u16::from_le_bytes([b[2], b[3]]);
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let mut sumi = _mm256_setzero_si256();
            for ib in 0..8 {
                let lo = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0x0F;
                let hi = ((sh >> (2 * ib)) & 3) as u8;
                let ls = (lo | (hi << 4)) as i32 - 32;
                let q = _mm256_shuffle_epi8(table, nibbles32(b, 8 + 16 * ib));
                let yv = load32_i8(&y.qs, 32 * ib);
                let p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(yv, q));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, _mm256_set1_epi16(ls as i16)));
            }
            let d = _mm256_set1_ps(y.d * f16_at(b, 0));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum_ps(acc) }
}

// ---------------------------------------------------------------------------------------------
// 4-token kernels for prefill: each weight block is loaded and unpacked once and multiplied
// with the same block of four activation rows (4 accumulators).

/// Number of blocks usable by a 4-token kernel.
#[inline(always)]
pub(super) fn nb4<T>(w_len: usize, ts: usize, a: &[&[T]; 4]) -> usize {
    a.iter().fold(w_len / ts, |m, x| m.min(x.len()))
}

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

/// Defines a 4-token kernel for a float weight type: `$load(w, i)` gives weights `i..i + 8`
/// as f32, `$one(w, i)` weight `i` (tail).
macro_rules! float_dot4 {
    ($name:ident, $elem:expr, $load:expr, $one:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], x: [&[f32]; 4]) -> [f32; 4] {
            let n = x.iter().fold(w.len() / $elem, |m, v| m.min(v.len()));
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

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8_f32w(w: &[u8], i: usize) -> __m256 {
    let s = &w[4 * i..4 * i + 32];
    // SAFETY: `s` is 32 readable bytes; unaligned load.
    unsafe { _mm256_loadu_ps(s.as_ptr() as *const f32) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8_f16w(w: &[u8], i: usize) -> __m256 {
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe { _mm256_cvtph_ps(load16(w, 2 * i)) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8_bf16w(w: &[u8], i: usize) -> __m256 {
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe {
        _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(load16(w, 2 * i)),
            16,
        ))
    }
}

fn one_bf16(w: &[u8], j: usize) -> f32 {
    f32::from_bits((u16::from_le_bytes([w[2 * j], w[2 * j + 1]]) as u32) << 16)
}

fn one_f16(w: &[u8], j: usize) -> f32 {
    crate::blocks::f16_at(w, 2 * j)
}

fn one_f32(w: &[u8], j: usize) -> f32 {
    crate::blocks::f32_at(w, 4 * j)
}

float_dot4!(dot4_f32w_impl, 4, load8_f32w, one_f32);
float_dot4!(dot4_f16w_impl, 2, load8_f16w, one_f16);
float_dot4!(dot4_bf16w_impl, 2, load8_bf16w, one_bf16);

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_q8_0_impl(w: &[u8], a: [&[BlockQ8x32]; 4]) -> [f32; 4] {
    let nb = nb4(w.len(), 34, &a);
    let mut acc = [_mm256_setzero_ps(); 4];
    for i in 0..nb {
        let b = &w[34 * i..34 * i + 34];
        // SAFETY: register arithmetic (F16C enabled on this function).
        let dw = unsafe { f16x8(b, 0) };
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let q = load32(b, 2);
            let aq = _mm256_sign_epi8(q, q);
            for n in 0..4 {
                let y = &a[n][i];
                let sy = _mm256_sign_epi8(load32_i8(&y.qs, 0), q);
                let p = mul_sum_us8_i32(aq, sy);
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

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_q4_0_impl(w: &[u8], a: [&[BlockQ8x32]; 4]) -> [f32; 4] {
    let nb = nb4(w.len(), 18, &a);
    let mut acc = [_mm256_setzero_ps(); 4];
    for i in 0..nb {
        let b = &w[18 * i..18 * i + 18];
        // SAFETY: register arithmetic (F16C enabled on this function).
        let dw = unsafe { f16x8(b, 0) };
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let q = nibbles32(b, 2);
            for n in 0..4 {
                let y = &a[n][i];
                let p = sub_lane0(mul_sum_us8_i32(q, load32_i8(&y.qs, 0)), 8 * y.sum);
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

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_q5_0_impl(w: &[u8], a: [&[BlockQ8x32]; 4]) -> [f32; 4] {
    let nb = nb4(w.len(), 22, &a);
    let mut acc = [_mm256_setzero_ps(); 4];
    for i in 0..nb {
        let b = &w[22 * i..22 * i + 22];
        // SAFETY: register arithmetic (F16C enabled on this function).
        let dw = unsafe { f16x8(b, 0) };
        let qh = crate::blocks::u32_at(b, 2);
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let hi = _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(0x10));
            let q = _mm256_or_si256(nibbles32(b, 6), hi);
            for n in 0..4 {
                let y = &a[n][i];
                let p = sub_lane0(mul_sum_us8_i32(q, load32_i8(&y.qs, 0)), 16 * y.sum);
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

/// `sum + pl·sl + ph·sh` (i16 pair products into i32 lanes) with `vpmaddwd` and adds.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot2_avx2(sum: __m256i, pl: __m256i, sl: __m256i, ph: __m256i, sh: __m256i) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe {
        _mm256_add_epi32(
            sum,
            _mm256_add_epi32(_mm256_madd_epi16(pl, sl), _mm256_madd_epi16(ph, sh)),
        )
    }
}

q4k_dot4!(dot4_q4k_impl, "avx2,fma,f16c", dot2_avx2);

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_iq4nl_impl(w: &[u8], a: [&[BlockQ8x32]; 4]) -> [f32; 4] {
    let nb = nb4(w.len(), 18, &a);
    let mut acc = [_mm256_setzero_ps(); 4];
    // SAFETY: KVALUES_IQ4NL is 16 bytes.
    let table = unsafe {
        _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i))
    };
    for i in 0..nb {
        let b = &w[18 * i..18 * i + 18];
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let dw = f16x8(b, 0);
            let q = _mm256_shuffle_epi8(table, nibbles32(b, 2));
            let aq = _mm256_sign_epi8(q, q);
            for n in 0..4 {
                let y = &a[n][i];
                let p = mul_sum_us8_i32(aq, _mm256_sign_epi8(load32_i8(&y.qs, 0), q));
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(y.d));
                acc[n] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[n]);
            }
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum4(&acc) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_iq4xs_impl(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    let nb = nb4(w.len(), 136, &a);
    let mut acc = [_mm256_setzero_ps(); 4];
    // SAFETY: KVALUES_IQ4NL is 16 bytes.
    let table = unsafe {
        _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i))
    };
    for i in 0..nb {
        let b = &w[136 * i..136 * i + 136];
        let sh = u16::from_le_bytes([b[2], b[3]]);
        let d = f16_at(b, 0);
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let mut sumi = [_mm256_setzero_si256(); 4];
            for ib in 0..8 {
                let lo = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0x0F;
                let hi = ((sh >> (2 * ib)) & 3) as u8;
                let ls = _mm256_set1_epi16((lo | (hi << 4)) as i16 - 32);
                let q = _mm256_shuffle_epi8(table, nibbles32(b, 8 + 16 * ib));
                let aq = _mm256_sign_epi8(q, q);
                for n in 0..4 {
                    let yv = load32_i8(&a[n][i].qs, 32 * ib);
                    let p = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(yv, q));
                    sumi[n] = _mm256_add_epi32(sumi[n], _mm256_madd_epi16(p, ls));
                }
            }
            for n in 0..4 {
                let dd = _mm256_set1_ps(a[n][i].d * d);
                acc[n] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi[n]), acc[n]);
            }
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum4(&acc) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_q5k_impl(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    let nb = nb4(w.len(), 176, &a);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut summ = [0f32; 4];
    for i in 0..nb {
        let b = &w[176 * i..176 * i + 176];
        let sc = kscales16(&b[4..16]);
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let m4 = _mm256_set1_epi8(0x0F);
            let sixteen = _mm256_set1_epi8(16);
            let hbits = load32(b, 16);
            let mut sumi = [_mm256_setzero_si256(); 4];
            for j in 0..4 {
                let q5 = load32(b, 48 + 32 * j);
                let ml = _mm256_set1_epi8((1u8 << (2 * j)) as i8);
                let mh = _mm256_set1_epi8((1u8 << (2 * j + 1)) as i8);
                let hl =
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, ml), ml), sixteen);
                let hh =
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mh), mh), sixteen);
                let lo = _mm256_or_si256(_mm256_and_si256(q5, m4), hl);
                let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q5, 4), m4), hh);
                let sl = _mm256_set1_epi16(sc[2 * j] as i16);
                let sh = _mm256_set1_epi16(sc[2 * j + 1] as i16);
                for n in 0..4 {
                    let y = &a[n][i];
                    let pl =
                        _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32_i8(&y.qs, 64 * j)), sl);
                    let ph = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(hi, load32_i8(&y.qs, 64 * j + 32)),
                        sh,
                    );
                    sumi[n] = _mm256_add_epi32(sumi[n], _mm256_add_epi32(pl, ph));
                }
            }
            for n in 0..4 {
                let y = &a[n][i];
                summ[n] += y.d * dmin * mins_dot_bsums(&sc, &y.bsums) as f32;
                acc[n] =
                    _mm256_fmadd_ps(_mm256_set1_ps(y.d * d), _mm256_cvtepi32_ps(sumi[n]), acc[n]);
            }
        }
    }
    // SAFETY: register arithmetic.
    let h = unsafe { hsum4(&acc) };
    [
        h[0] - summ[0],
        h[1] - summ[1],
        h[2] - summ[2],
        h[3] - summ[3],
    ]
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_q6k_impl(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    let nb = nb4(w.len(), 210, &a);
    let mut acc = [_mm256_setzero_ps(); 4];
    for i in 0..nb {
        let b = &w[210 * i..210 * i + 210];
        let d = f16_at(b, 208);
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let sc16 = _mm256_cvtepi8_epi16(load16(b, 192));
            let (slo, shi) = split_scales(sc16);
            let mut sumi = [_mm256_setzero_si256(); 4];
            for n in 0..4 {
                // SAFETY: `bsums` is exactly 32 bytes.
                let bs = _mm256_loadu_si256(a[n][i].bsums.as_ptr() as *const __m256i);
                sumi[n] =
                    _mm256_sub_epi32(sumi[n], _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5));
            }
            let m4 = _mm256_set1_epi8(0x0F);
            let m30 = _mm256_set1_epi8(0x30);
            for h in 0..2 {
                let qa = load32(b, 64 * h);
                let qb = load32(b, 64 * h + 32);
                let qh = load32(b, 128 + 32 * h);
                for g in 0..4 {
                    let q = match g {
                        0 => _mm256_or_si256(
                            _mm256_and_si256(qa, m4),
                            _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30),
                        ),
                        1 => _mm256_or_si256(
                            _mm256_and_si256(qb, m4),
                            _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30),
                        ),
                        2 => _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(qa, 4), m4),
                            _mm256_and_si256(qh, m30),
                        ),
                        _ => _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                            _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30),
                        ),
                    };
                    let sv = pair_scales(slo, shi, 4 * h + g);
                    for n in 0..4 {
                        let y = &a[n][i];
                        let p = _mm256_maddubs_epi16(q, load32_i8(&y.qs, 128 * h + 32 * g));
                        sumi[n] = _mm256_add_epi32(sumi[n], _mm256_madd_epi16(p, sv));
                    }
                }
            }
            for n in 0..4 {
                let dd = _mm256_set1_ps(a[n][i].d * d);
                acc[n] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi[n]), acc[n]);
            }
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum4(&acc) }
}

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

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8x32_impl(x: &[f32], y: &mut [BlockQ8x32]) {
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(32)) {
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

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8k_impl(x: &[f32], y: &mut [BlockQ8K]) {
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(256)) {
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

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum_epi32(v: __m256i) -> i32 {
    // SAFETY: register arithmetic.
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }
}

// ---------------------------------------------------------------------------------------------
// f32 helpers for attention

/// f32 dot product. Caller guarantees AVX2+FMA (checked by `ops::dot_f32` via `Isa::best`).
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: features detected by the caller; the kernel bounds accesses by both lengths.
    unsafe { dot_f32_impl(a, b) }
}

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
