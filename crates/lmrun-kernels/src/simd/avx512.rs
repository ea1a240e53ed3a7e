//! AVX-512 VNNI kernels (256-bit registers, AVX512VL encoding) for the weight types the common
//! GGUF mixes are made of: Q4_0, Q5_0, Q8_0, Q4_K and Q6_K. Why a second x86 level: on CPUs that
//! have it (Zen 4, Ice Lake and later) `vpdpbusd` does in one instruction what AVX2 needs three
//! for (`maddubs` + `madd` + `add`), `vpdpwssd` folds the scale multiply into the accumulation,
//! and a 32-bit mask register turns Q5_0's high bits into bytes in one masked add. That is what
//! prompt processing is bound by (each weight block meets four tokens), and what keeps the
//! 5-bit types from being compute-bound in decode.
//!
//! Everything here is reached only after `dispatch` detected AVX2, FMA, F16C, AVX512F/BW/VL and
//! AVX512_VNNI at run time. The integer block sums are exactly those of the scalar and AVX2
//! kernels (the offsets of unsigned weight codes are removed as integers), so results differ
//! from them only in the order of f32 additions. Types without a kernel here use the AVX2 ones.
//! The k-quant kernels keep several independent `vpdpwssd` sums per super-block: with one chain
//! (latency 4 on Zen 4) they were latency-bound and no faster than AVX2's `vpmaddwd` + add.

// See avx2.rs: intrinsics are safe in `#[target_feature]` functions only on newer compilers.
#![allow(unused_unsafe)]

use std::arch::x86_64::*;

use super::avx2::{
    f16_at, f16x8, hsum4, hsum_ps, kscales_v, load32, load32_i8, nb4, nibbles32, pair_scales,
    q6k_bias, q6k_codes, q6k_scales, split_scales,
};
use crate::fn_types::{Dot4Fn, DotFn, TileFn};
use crate::formats::{q6_k, QuantFormat, Q4_0, Q5_0, Q6K, Q8_0};
use crate::partner::{BlockQ8K, BlockQ8x32};
use crate::QType;

/// The AVX-512 VNNI kernel for `t`, if there is one. Only called by `dispatch::dot_fn` after
/// `Isa::Avx512Vnni.is_available()`.
pub(crate) fn dot_fn(t: QType) -> Option<DotFn> {
    kernel_table!(t, dot_fn,
        Q4_0 => dot_q4_0,
        Q5_0 => dot_q5_0,
        Q8_0 => dot_q8_0,
        Q4K => dot_q4k,
        Q6K => dot_q6k,
    )
}

/// The 4-token AVX-512 VNNI kernel for `t`, if there is one. Same precondition as [`dot_fn`].
pub(crate) fn dot4_fn(t: QType) -> Option<Dot4Fn> {
    kernel_table!(t, dot4_fn,
        Q4_0 => dot4_q4_0,
        Q5_0 => dot4_q5_0,
        Q8_0 => dot4_q8_0,
        Q4K => dot4_q4k,
        Q6K => dot4_q6k,
    )
}

/// The `TILE_ROWS`-row × 4-token AVX-512 VNNI kernel for `t`, if there is one. Same
/// precondition.
pub(crate) fn tile_fn(t: QType) -> Option<TileFn> {
    kernel_table!(t, tile_fn,
        Q4_0 => tile_q4_0,
        Q5_0 => tile_q5_0,
        Q8_0 => tile_q8_0,
    )
}

// ---------------------------------------------------------------------------------------------
// 32-wide blocks: the weight codes as unsigned bytes `u` (Q4_0: q, Q5_0: q, Q8_0: q + 128) meet
// the signed activation in `vpdpbusd`; the accumulator starts at `-offset * Σ a` in lane 0, so
// the integer result is exactly Σ (u - offset) a.

/// `vpdpwssd`: i16 pair products of `a` and `b` summed into the i32 lanes of `acc`, as the one
/// instruction. Written as assembly because LLVM splits the intrinsic into `vpmaddwd` +
/// `vpaddd` (two instructions where one does the work), which is what the k-quant kernels'
/// instruction budget cannot afford.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    let mut r = acc;
    // SAFETY: a register-only instruction of a feature this function requires.
    unsafe {
        std::arch::asm!(
            "vpdpwssd {r:y}, {a:y}, {b:y}",
            r = inout(zmm_reg) r,
            a = in(zmm_reg) a,
            b = in(zmm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    r
}

/// `[-off * y.sum, 0, 0, 0, 0, 0, 0, 0]`: the start value that removes the code offset.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn offset_init(off: i32, y: &BlockQ8x32) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe { _mm256_zextsi128_si256(_mm_cvtsi32_si128(y.sum.wrapping_mul(-off))) }
}

/// Q5_0's 32 codes (0..32) as bytes: the nibbles plus 16 where the high bit is set, one masked
/// add instead of AVX2's byte-mask expansion.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q5_0_codes(b: &[u8]) -> __m256i {
    let qh = crate::formats::u32_at(b, 2);
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe {
        let nib = nibbles32(b, 6);
        _mm256_mask_add_epi8(nib, qh, nib, _mm256_set1_epi8(16))
    }
}

/// Q8_0's 32 codes plus 128 (unsigned).
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q8_0_codes(b: &[u8]) -> __m256i {
    // SAFETY: bounds-checked load, register arithmetic.
    unsafe { _mm256_xor_si256(load32(b, 2), _mm256_set1_epi8(-128)) }
}

/// Defines a single-token kernel for a 32-wide type: `$bytes` per block, `$codes(b)` gives the
/// unsigned codes, `$off` is their offset.
macro_rules! dot32 {
    ($name:ident, $F:ident, $codes:expr, $off:expr) => {
        /// # Safety
        /// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name(w: &[u8], a: &[BlockQ8x32]) -> f32 {
            const BYTES: usize = <$F as QuantFormat>::BYTES;
            let nb = a.len().min(w.len() / BYTES);
            // One block's contribution, scaled; `i < nb` bounds both slices.
            let block = |i: usize| {
                // SAFETY: i < nb <= the blocks of both slices; register arithmetic.
                unsafe {
                    let b = w.get_unchecked(BYTES * i..BYTES * i + BYTES);
                    let y = a.get_unchecked(i);
                    let d = _mm256_mul_ps(f16x8(b, 0), _mm256_set1_ps(y.d));
                    let yq = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                    let p = _mm256_dpbusd_epi32(offset_init($off, y), $codes(b), yq);
                    (d, _mm256_cvtepi32_ps(p))
                }
            };
            // four accumulators: consecutive blocks do not wait on each other's FMA
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 4 <= nb {
                for k in 0..4 {
                    let (d, p) = block(i + k);
                    // SAFETY: register arithmetic.
                    acc[k] = unsafe { _mm256_fmadd_ps(d, p, acc[k]) };
                }
                i += 4;
            }
            while i < nb {
                let (d, p) = block(i);
                // SAFETY: register arithmetic.
                acc[0] = unsafe { _mm256_fmadd_ps(d, p, acc[0]) };
                i += 1;
            }
            // SAFETY: register arithmetic.
            unsafe {
                hsum_ps(_mm256_add_ps(
                    _mm256_add_ps(acc[0], acc[1]),
                    _mm256_add_ps(acc[2], acc[3]),
                ))
            }
        }
    };
}

/// Q4_0's codes: the 32 nibbles.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q4_0_codes(b: &[u8]) -> __m256i {
    // SAFETY: bounds-checked load.
    unsafe { nibbles32(b, 2) }
}

/// Defines the `R`-row × 4-token kernel for a 32-wide type (`R = TILE_ROWS` for the tiles,
/// `R = 1` for the one-row 4-token kernel): each code unpack feeds four
/// tokens and each activation block (its values, scale and offset start) feeds every row of the
/// tile, which takes prefill from instruction-bound towards the `vpdpbusd`/FMA pipes' limit.
/// AVX512VL's 32 vector registers hold the 16 accumulators, four code vectors and four scales.
/// (Folding the four tokens' sums with `vphaddd` before the f32 step was measured slower.)
macro_rules! tile_32 {
    ($name:ident, $F:ident, $codes:expr, $off:expr) => {
        /// # Safety
        /// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name<const R: usize>(w: [&[u8]; R], a: [&[BlockQ8x32]; 4]) -> [[f32; 4]; R] {
            const BYTES: usize = <$F as QuantFormat>::BYTES;
            let wl = w.iter().fold(usize::MAX, |m, r| m.min(r.len()));
            let nb = nb4(wl, BYTES, &a);
            let mut acc = [[_mm256_setzero_ps(); 4]; R];
            for i in 0..nb {
                // SAFETY: i < nb, so every weight row holds block i (nb <= len / BYTES) and
                // every activation row holds block i (nb <= its length); register arithmetic.
                unsafe {
                    let mut dw = [_mm256_setzero_ps(); R];
                    let mut q = [_mm256_setzero_si256(); R];
                    for r in 0..R {
                        let b = w[r].get_unchecked(BYTES * i..BYTES * i + BYTES);
                        dw[r] = f16x8(b, 0);
                        q[r] = $codes(b);
                    }
                    for n in 0..4 {
                        let y = a[n].get_unchecked(i);
                        let init = offset_init($off, y);
                        let yq = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                        let yd = _mm256_set1_ps(y.d);
                        for r in 0..R {
                            let p = _mm256_dpbusd_epi32(init, q[r], yq);
                            acc[r][n] = _mm256_fmadd_ps(
                                _mm256_mul_ps(dw[r], yd),
                                _mm256_cvtepi32_ps(p),
                                acc[r][n],
                            );
                        }
                    }
                }
            }
            // A loop, not `acc.map(|ar| ..)`: the closure was not always inlined, which kept
            // the accumulators in memory for the whole kernel.
            let mut out = [[0f32; 4]; R];
            for r in 0..R {
                // SAFETY: register arithmetic.
                out[r] = unsafe { hsum4(&acc[r]) };
            }
            out
        }
    };
}

dot32!(dot_q4_0, Q4_0, q4_0_codes, 8);
dot32!(dot_q5_0, Q5_0, q5_0_codes, 16);
dot32!(dot_q8_0, Q8_0, q8_0_codes, 128);
tile_32!(tile_q4_0, Q4_0, q4_0_codes, 8);
tile_32!(tile_q5_0, Q5_0, q5_0_codes, 16);
tile_32!(tile_q8_0, Q8_0, q8_0_codes, 128);

/// The 4-token kernels of the 32-wide types: their tile kernels with one row.
macro_rules! dot4_32 {
    ($name:ident, $tile:ident) => {
        /// # Safety
        /// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name(w: &[u8], a: [&[BlockQ8x32]; 4]) -> [f32; 4] {
            // SAFETY: same features; the tile kernel bounds every access by the slice lengths.
            unsafe { $tile::<1>([w], a)[0] }
        }
    };
}

dot4_32!(dot4_q4_0, tile_q4_0);
dot4_32!(dot4_q5_0, tile_q5_0);
dot4_32!(dot4_q8_0, tile_q8_0);

// ---------------------------------------------------------------------------------------------
// k-quants: `maddubs` gives i16 pair sums (no saturation for 4- and 6-bit codes), `vpdpwssd`
// multiplies them by the sub-block scales and accumulates in one instruction.

/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_q6k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    const BYTES: usize = <Q6K as QuantFormat>::BYTES;
    let nb = a.len().min(w.len() / BYTES);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        let b = &w[BYTES * i..BYTES * i + BYTES];
        let y = &a[i];
        // SAFETY: bounds-checked loads, register arithmetic; a prefetch never faults.
        unsafe {
            let ahead = b.as_ptr().wrapping_add(super::PREFETCH_AHEAD);
            for k in 0..4 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * k) as *const i8);
            }
            let sc16 = q6k_scales(b);
            let (slo, shi) = split_scales(sc16);
            // four independent sums: one chain of eight `vpdpwssd` (latency 4) per super-block
            // made this kernel latency-bound
            let mut s = [
                q6k_bias(sc16, y),
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
            ];
            for h in 0..2 {
                let q = q6k_codes(b, h);
                for g in 0..4 {
                    let p = _mm256_maddubs_epi16(q[g], load32_i8(&y.qs, 128 * h + 32 * g));
                    s[g] = dpwssd(s[g], p, pair_scales(slo, shi, 4 * h + g));
                }
            }
            let sumi = _mm256_add_epi32(_mm256_add_epi32(s[0], s[1]), _mm256_add_epi32(s[2], s[3]));
            let d = _mm256_set1_ps(y.d * f16_at(b, q6_k::D_OFF));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum_ps(acc) }
}

/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot4_q6k(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    const BYTES: usize = <Q6K as QuantFormat>::BYTES;
    let nb = nb4(w.len(), BYTES, &a);
    let mut acc = [_mm256_setzero_ps(); 4];
    for i in 0..nb {
        let b = &w[BYTES * i..BYTES * i + BYTES];
        // SAFETY: bounds-checked loads, register arithmetic.
        unsafe {
            let (d, sumi) = q6k_sums4!(b, a, i, dpwssd);
            for n in 0..4 {
                let dd = _mm256_set1_ps(a[n][i].d * d);
                acc[n] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi[n]), acc[n]);
            }
        }
    }
    // SAFETY: register arithmetic.
    unsafe { hsum4(&acc) }
}

q4k_dot4!(
    dot4_q4k,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dpwssd
);

q4k_dot!(
    dot_q4k,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dpwssd
);
