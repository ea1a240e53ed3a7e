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
    f16_at, f16x8, hsum2_epi32, hsum4, hsum_ps, iq4nl_codes, iq4xs_scale, k4_codes, k5_codes,
    kscales_v, load16, load32, load32_i8, nb4, nibbles32, pair_scales, q6k_bias, q6k_codes,
    q6k_scales, split_scales,
};
use crate::fn_types::{Dot4Fn, DotFn, TileFn};
use crate::formats::{q6_k, QuantFormat, IQ4XS, Q4_0, Q5_0, Q6K, Q8_0};
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
        Q5K => dot_q5k,
        Q6K => dot_q6k,
        IQ4XS => dot_iq4xs,
    )
}

/// The 4-token AVX-512 VNNI kernel for `t`, if there is one. Same precondition as [`dot_fn`].
pub(crate) fn dot4_fn(t: QType) -> Option<Dot4Fn> {
    kernel_table!(t, dot4_fn,
        Q4_0 => dot4_q4_0,
        Q5_0 => dot4_q5_0,
        Q8_0 => dot4_q8_0,
        Q4K => dot4_q4k,
        Q5K => dot4_q5k,
        Q6K => dot4_q6k,
    )
}

/// The `TILE_ROWS`-row × 4-token AVX-512 VNNI kernel for `t`, if there is one. Same
/// precondition.
pub(crate) fn tile_fn(t: QType) -> Option<TileFn> {
    kernel_table!(t, tile_fn,
        Q4_0 => tile8_q4_0,
        Q5_0 => tile8_q5_0,
        Q8_0 => tile8_q8_0,
        Q4K => tile_q4k,
        Q6K => tile_q6k,
    )
}

/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_q4k(w: [&[u8]; 8], a: [&[BlockQ8K]; 4]) -> [[f32; 4]; 8] {
    // SAFETY: same features.
    unsafe { rows8_q4k::<4>(w, a) }
}

/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_q6k(w: [&[u8]; 8], a: [&[BlockQ8K]; 4]) -> [[f32; 4]; 8] {
    // SAFETY: same features.
    unsafe { rows8_q6k::<4>(w, a) }
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
pub(super) unsafe fn q5_0_codes(b: &[u8]) -> __m256i {
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
pub(super) unsafe fn q8_0_codes(b: &[u8]) -> __m256i {
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
pub(super) unsafe fn q4_0_codes(b: &[u8]) -> __m256i {
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

/// The eight-row tiles of the 32-wide types: two four-row tiles (eight rows × four tokens of
/// f32 accumulators would not fit the 32 registers).
macro_rules! tile8_32 {
    ($name:ident, $tile:ident) => {
        /// # Safety
        /// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name(w: [&[u8]; 8], a: [&[BlockQ8x32]; 4]) -> [[f32; 4]; 8] {
            // SAFETY: same features; the tile kernel bounds every access by the slice lengths.
            let (x, y) = unsafe {
                (
                    $tile::<4>([w[0], w[1], w[2], w[3]], a),
                    $tile::<4>([w[4], w[5], w[6], w[7]], a),
                )
            };
            std::array::from_fn(|r| if r < 4 { x[r] } else { y[r - 4] })
        }
    };
}

tile8_32!(tile8_q4_0, tile_q4_0);
tile8_32!(tile8_q5_0, tile_q5_0);
tile8_32!(tile8_q8_0, tile_q8_0);

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

/// Q6_K against one token (decode's matvec), with the arithmetic of the eight-row kernel and
/// the GEMM (the exact super-block sum, then one f32 FMA, in block order): the 6-bit codes
/// (stored +32, 0..64) rebuilt with one `vpternlogd` each, one `vpdpbusd` per 32 codes (|sum of 4| ≤ 4·63·128 < 2^15), two code
/// groups packed to i16 (`vpackssdw`, never saturating) and one `vpdpwssd` by their four
/// sub-block scales; the +32 offset removed as `32 Σ sc_k bsum_k`.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_q6k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    const BYTES: usize = <Q6K as QuantFormat>::BYTES;
    let nb = a.len().min(w.len() / BYTES);
    // pair (g, g + 1), g = 0 or 2: lane 0 words [2g ×4, 2g + 2 ×4], lane 1 [2g + 1 ×4, 2g + 3 ×4]
    let ctl: [[i8; 32]; 2] = std::array::from_fn(|p| {
        let g = 2 * p;
        let mut m = [0i8; 32];
        for l in 0..2 {
            for k in 0..8 {
                let wd = 2 * g + l + if k < 4 { 0 } else { 2 };
                m[16 * l + 2 * k] = (2 * wd) as i8;
                m[16 * l + 2 * k + 1] = (2 * wd + 1) as i8;
            }
        }
        m
    });
    let mut acc = 0f32;
    // SAFETY: register arithmetic; loads are bounds-checked or from fixed-size arrays.
    unsafe {
        let ctl: [__m256i; 2] = std::array::from_fn(|p| mask_v(&ctl[p]));
        let m4 = _mm256_set1_epi8(0x0F);
        let m30 = _mm256_set1_epi8(0x30);
        for i in 0..nb {
            let b: &[u8; BYTES] = w[BYTES * i..BYTES * i + BYTES].try_into().expect("block");
            let y = &a[i];
            let ahead = b.as_ptr().wrapping_add(super::PREFETCH_AHEAD);
            for k in 0..4 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * k) as *const i8);
            }
            let sc16 = q6k_scales(b);
            let (slo, shi) = split_scales(sc16);
            let mut s = [q6k_bias(sc16, y), _mm256_setzero_si256()];
            for h in 0..2 {
                let ld = |o: usize| _mm256_loadu_si256(b.as_ptr().add(o) as *const __m256i);
                let (qa, qb, qh) = (ld(64 * h), ld(64 * h + 32), ld(128 + 32 * h));
                let hb = [
                    _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                    _mm256_and_si256(qh, m30),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                ];
                let c = [
                    _mm256_ternarylogic_epi32::<0xEC>(qa, hb[0], m4),
                    _mm256_ternarylogic_epi32::<0xEC>(qb, hb[1], m4),
                    _mm256_ternarylogic_epi32::<0xEC>(_mm256_srli_epi16::<4>(qa), hb[2], m4),
                    _mm256_ternarylogic_epi32::<0xEC>(_mm256_srli_epi16::<4>(qb), hb[3], m4),
                ];
                let sv = if h == 0 { slo } else { shi };
                for p in 0..2 {
                    let yq = |g: usize| {
                        _mm256_loadu_si256(y.qs.as_ptr().add(128 * h + 32 * g) as *const __m256i)
                    };
                    let p0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), c[2 * p], yq(2 * p));
                    let p1 =
                        _mm256_dpbusd_epi32(_mm256_setzero_si256(), c[2 * p + 1], yq(2 * p + 1));
                    let pk = _mm256_packs_epi32(p0, p1);
                    s[p] = dpwssd(s[p], pk, _mm256_shuffle_epi8(sv, ctl[p]));
                }
            }
            let si = super::avx2::hsum_epi32(_mm256_add_epi32(s[0], s[1]));
            acc = (si as f32).mul_add(f16_at(b, q6_k::D_OFF) * y.d, acc);
        }
    }
    acc
}

/// IQ4_XS against one token: per sub-block of 32 the table codes (`vpshufb`), their magnitudes
/// times the activations with the codes' signs (`maddubs`, no saturation: 2 · 127 · 127 fits
/// i16), then `vpdpwssd` by the sub-block's scale into four independent sums (the AVX2 kernel's
/// one chain of `vpmaddwd` + add per super-block was latency-bound).
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_iq4xs(w: &[u8], a: &[BlockQ8K]) -> f32 {
    const BYTES: usize = <IQ4XS as QuantFormat>::BYTES;
    let nb = a.len().min(w.len() / BYTES);
    // SAFETY: register arithmetic.
    let mut acc = unsafe { _mm256_setzero_ps() };
    for i in 0..nb {
        let b = &w[BYTES * i..BYTES * i + BYTES];
        let y = &a[i];
        let sh = u16::from_le_bytes([b[2], b[3]]);
        // SAFETY: bounds-checked loads, register arithmetic; a prefetch never faults.
        unsafe {
            let ahead = b.as_ptr().wrapping_add(super::PREFETCH_AHEAD);
            _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128) as *const i8);
            let mut s = [_mm256_setzero_si256(); 4];
            for ib in 0..8 {
                let q = iq4nl_codes(b, 8 + 16 * ib);
                let yv = load32_i8(&y.qs, 32 * ib);
                let p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(yv, q));
                let sc = _mm256_set1_epi16(iq4xs_scale(b, sh, ib));
                s[ib % 4] = dpwssd(s[ib % 4], p, sc);
            }
            let sumi = _mm256_add_epi32(_mm256_add_epi32(s[0], s[1]), _mm256_add_epi32(s[2], s[3]));
            let d = _mm256_set1_ps(y.d * f16_at(b, 0));
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
    dpwssd,
    Q4K,
    k4_codes
);

q4k_dot4!(
    dot4_q5k,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dpwssd,
    Q5K,
    k5_codes
);

q4k_dot!(
    dot_q5k,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dpwssd,
    Q5K,
    k5_codes
);

// ---------------------------------------------------------------------------------------------
// k-quant tiles: eight weight rows × four tokens with the rows in the lanes. GGUF stores each
// row's codes contiguously, so in a register loaded from one row every lane belongs to the same
// row and sub-block: a per-sub-block scale can then only be applied by a multiply per 32 codes
// and token (`maddubs` + `vpdpwssd`, what the 4-token kernels do). Transposing the 4-byte groups
// of eight rows (in registers, 24 in-lane shuffles per 32 bytes of eight rows, on the shuffle
// pipes) puts one row in each i32 lane; then one `vpdpbusd` with the token's four activation
// bytes broadcast from memory does 4 codes × 8 rows, and a sub-block's scale is one `vpmulld`
// per 32 codes × 8 rows × token. Per 256 multiply-adds that is ~9 multiply-pipe instructions
// instead of 16, and the weights stay in GGUF's layout in the mapping (no repacked copy).

/// Dwords `4h..4h + 4` of the 32 bytes at `off` of the eight blocks `b`, transposed: result `k`
/// holds dword `4h + k` of rows 0..8 in its i32 lanes 0..8.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn transpose_dwords<const N: usize>(b: &[&[u8; N]; 8], off: usize) -> [__m256i; 4] {
    // SAFETY: bounds-checked loads, register arithmetic.
    unsafe {
        let y: [__m256i; 4] = std::array::from_fn(|r| {
            _mm256_inserti128_si256::<1>(
                _mm256_castsi128_si256(load16(&b[r][..], off)),
                load16(&b[r + 4][..], off),
            )
        });
        // [r0d0 r1d0 r0d1 r1d1 | r4d0 r5d0 r4d1 r5d1] and so on
        let t0 = _mm256_unpacklo_epi32(y[0], y[1]);
        let t1 = _mm256_unpackhi_epi32(y[0], y[1]);
        let t2 = _mm256_unpacklo_epi32(y[2], y[3]);
        let t3 = _mm256_unpackhi_epi32(y[2], y[3]);
        [
            _mm256_unpacklo_epi64(t0, t2),
            _mm256_unpackhi_epi64(t0, t2),
            _mm256_unpacklo_epi64(t1, t3),
            _mm256_unpackhi_epi64(t1, t3),
        ]
    }
}

/// Block `i` of each of the eight rows `w` as fixed-size arrays (so that the loads at constant
/// offsets need no bounds checks); `i` must be below every row's block count.
#[inline(always)]
fn blocks<'a, const N: usize>(w: &[&'a [u8]; 8], i: usize) -> [&'a [u8; N]; 8] {
    let blk = |r: usize| -> &'a [u8; N] {
        let s: &[u8] = &w[r][N * i..N * (i + 1)];
        s.try_into().expect("a slice of N bytes")
    };
    [
        blk(0),
        blk(1),
        blk(2),
        blk(3),
        blk(4),
        blk(5),
        blk(6),
        blk(7),
    ]
}

/// The four activation bytes at `off` of `q` in every i32 lane (`vpdpbusd` folds it into an
/// embedded-broadcast memory operand).
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn bcast4(q: &[i8], off: usize) -> __m256i {
    let s = &q[off..off + 4];
    // SAFETY: `s` is 4 readable bytes; unaligned load, register arithmetic.
    unsafe { _mm256_set1_epi32((s.as_ptr() as *const i32).read_unaligned()) }
}

/// The two i16 of `bsums` at `2q`, `2q + 1` in every i32 lane.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn bcast_bsums(bsums: &[i16; 16], q: usize) -> __m256i {
    let s = &bsums[2 * q..2 * q + 2];
    // SAFETY: `s` is 4 readable bytes; unaligned load, register arithmetic.
    unsafe { _mm256_set1_epi32((s.as_ptr() as *const i32).read_unaligned()) }
}

/// A `vpshufb` control that moves byte `k % 4` of every dword to byte `at` of that dword and
/// zeroes the other bytes (`at2`: a second byte to fill with byte `k2 % 4`, or none).
#[inline(always)]
fn dword_byte_mask(k: usize, at: usize, second: Option<(usize, usize)>) -> [i8; 32] {
    let mut m = [-128i8; 32];
    for l in 0..8 {
        m[4 * l + at] = (4 * (l % 4) + k % 4) as i8;
        if let Some((k2, at2)) = second {
            m[4 * l + at2] = (4 * (l % 4) + k2 % 4) as i8;
        }
    }
    m
}

/// Loads a 32-byte `vpshufb` control.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mask_v(m: &[i8; 32]) -> __m256i {
    // SAFETY: 32 readable bytes.
    unsafe { _mm256_loadu_si256(m.as_ptr() as *const __m256i) }
}

/// The eight lanes of each token's accumulator as `out[row][token]`.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn lanes_out<const T: usize>(acc: &[__m256; T]) -> [[f32; T]; 8] {
    let mut t = [[0f32; 8]; T];
    for n in 0..T {
        // SAFETY: 8 writable f32.
        unsafe { _mm256_storeu_ps(t[n].as_mut_ptr(), acc[n]) };
    }
    std::array::from_fn(|r| std::array::from_fn(|n| t[n][r]))
}

/// Q4_K, eight rows × `T` tokens, rows in the lanes (see above). Per super-block: the 16-byte
/// headers of the eight rows transposed give `d|dmin`, and the packed 6-bit scale/min words,
/// unpacked for all rows at once; per 32 codes of a sub-block pair: a transpose, the nibble
/// split, 16 `vpdpbusd` per token, then two `vpmulld` by the sub-blocks' scales; the mins term
/// `Σ m_j (bsum_2j + bsum_2j+1)` is eight `vpdpwssd` per token against broadcast `bsums` pairs.
/// Integer sums are exact (as in the other kernels); per output the f32 sums run per
/// super-block, not per 8 lanes, so results differ from the 4-token kernel only by rounding.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn rows8_q4k<const T: usize>(
    w: [&[u8]; 8],
    a: [&[BlockQ8K]; T],
) -> [[f32; T]; 8] {
    const BYTES: usize = <crate::formats::Q4K as QuantFormat>::BYTES;
    let wl = w.iter().fold(usize::MAX, |m, r| m.min(r.len()));
    let nb = a.iter().fold(wl / BYTES, |m, x| m.min(x.len()));
    // sub-block j's scale (byte j % 4 of its dword) as i32, min twice as an i16 pair
    let sc_mask: [[i8; 32]; 4] = std::array::from_fn(|k| dword_byte_mask(k, 0, None));
    let mn_mask: [[i8; 32]; 4] = std::array::from_fn(|k| dword_byte_mask(k, 0, Some((k, 2))));
    // SAFETY: register arithmetic; every load below is bounds-checked.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); T];
        for i in 0..nb {
            let b = blocks::<BYTES>(&w, i);
            // lanes = rows: [d|dmin], then the packed scale words u0, u1, u2
            let [hd, u0, u1, u2] = transpose_dwords(&b, 0);
            let d = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(hd));
            let dmin = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32::<16>(hd)));
            let k6 = _mm256_set1_epi32(0x3f3f_3f3f);
            let k4 = _mm256_set1_epi32(0x0f0f_0f0f);
            let k2 = _mm256_set1_epi32(0x0303_0303);
            // scales 0..4, 4..8 and mins 0..4, 4..8 of every row, one byte each
            let scv = [
                _mm256_and_si256(u0, k6),
                _mm256_or_si256(
                    _mm256_and_si256(u2, k4),
                    _mm256_slli_epi32::<4>(_mm256_and_si256(_mm256_srli_epi32::<6>(u0), k2)),
                ),
            ];
            let mnv = [
                _mm256_and_si256(u1, k6),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi32::<4>(u2), k4),
                    _mm256_slli_epi32::<4>(_mm256_and_si256(_mm256_srli_epi32::<6>(u1), k2)),
                ),
            ];
            let mut sumi = [_mm256_setzero_si256(); T];
            for p in 0..4 {
                let mut slo = [_mm256_setzero_si256(); T];
                let mut shi = [_mm256_setzero_si256(); T];
                for h in 0..2 {
                    let cs = transpose_dwords(&b, 16 + 32 * p + 16 * h);
                    for (k, c) in cs.iter().enumerate() {
                        let lo = _mm256_and_si256(*c, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(*c), m4);
                        let o = 64 * p + 4 * (4 * h + k);
                        for n in 0..T {
                            let q = &a[n][i].qs;
                            slo[n] = _mm256_dpbusd_epi32(slo[n], lo, bcast4(q, o));
                            shi[n] = _mm256_dpbusd_epi32(shi[n], hi, bcast4(q, o + 32));
                        }
                    }
                }
                let (j0, j1) = (2 * p, 2 * p + 1);
                let s0 = _mm256_shuffle_epi8(scv[j0 / 4], mask_v(&sc_mask[j0 % 4]));
                let s1 = _mm256_shuffle_epi8(scv[j1 / 4], mask_v(&sc_mask[j1 % 4]));
                for n in 0..T {
                    let t = _mm256_add_epi32(
                        _mm256_mullo_epi32(slo[n], s0),
                        _mm256_mullo_epi32(shi[n], s1),
                    );
                    sumi[n] = _mm256_add_epi32(sumi[n], t);
                }
            }
            let mp: [__m256i; 8] =
                std::array::from_fn(|j| _mm256_shuffle_epi8(mnv[j / 4], mask_v(&mn_mask[j % 4])));
            for n in 0..T {
                let y = &a[n][i];
                let mut ms = _mm256_setzero_si256();
                for (j, m) in mp.iter().enumerate() {
                    ms = dpwssd(ms, *m, bcast_bsums(&y.bsums, j));
                }
                let yd = _mm256_set1_ps(y.d);
                acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[n]), _mm256_mul_ps(d, yd), acc[n]);
                acc[n] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dmin, yd), acc[n]);
            }
        }
        lanes_out(&acc)
    }
}

/// Q6_K, eight rows × `T` tokens, rows in the lanes (see above). Per half super-block and
/// 16-byte half of its code groups: the `ql` and `qh` bytes of eight rows transposed, the 6-bit
/// codes (stored +32, unsigned) rebuilt lane-wise, one `vpdpbusd` per 4 codes × 8 rows × token,
/// one `vpmulld` per sub-block of 16 by the int8 scales; the +32 offset is removed as
/// `32 Σ sc_k bsum_k` (eight `vpdpwssd` per token against broadcast `bsums` pairs).
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn rows8_q6k<const T: usize>(
    w: [&[u8]; 8],
    a: [&[BlockQ8K]; T],
) -> [[f32; T]; 8] {
    const BYTES: usize = <Q6K as QuantFormat>::BYTES;
    let wl = w.iter().fold(usize::MAX, |m, r| m.min(r.len()));
    let nb = a.iter().fold(wl / BYTES, |m, x| m.min(x.len()));
    // scale k (int8, byte k % 4 of its dword) into the top byte: an arithmetic shift makes i32
    let sc_mask: [[i8; 32]; 4] = std::array::from_fn(|k| dword_byte_mask(k, 3, None));
    // scales 2q, 2q + 1 into the top bytes of the two i16 halves
    let pair_mask: [[i8; 32]; 2] =
        std::array::from_fn(|q| dword_byte_mask(2 * q, 1, Some((2 * q + 1, 3))));
    // SAFETY: register arithmetic; every load below is bounds-checked.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let m30 = _mm256_set1_epi8(0x30);
        let mut acc = [_mm256_setzero_ps(); T];
        for i in 0..nb {
            let b = blocks::<BYTES>(&w, i);
            let scv = transpose_dwords(&b, q6_k::SCALES_OFF);
            let dh: [u16; 8] = std::array::from_fn(|r| {
                u16::from_le_bytes([b[r][q6_k::D_OFF], b[r][q6_k::D_OFF + 1]])
            });
            let d = _mm256_cvtph_ps(_mm_loadu_si128(dh.as_ptr() as *const __m128i));
            let mut sumi = [_mm256_setzero_si256(); T];
            for h in 0..2 {
                for e in 0..2 {
                    // groups g = 0, 2 come from `ql` bytes 64h.., groups 1, 3 from 64h + 32..;
                    // all four take two bits each from `qh` bytes 128 + 32h..
                    let qh = transpose_dwords(&b, 128 + 32 * h + 16 * e);
                    for gp in 0..2 {
                        let ql = transpose_dwords(&b, 64 * h + 32 * gp + 16 * e);
                        let mut s = [[_mm256_setzero_si256(); 2]; T];
                        for k in 0..4 {
                            let c = 4 * e + k;
                            let (lo_h, hi_h) = if gp == 0 {
                                (_mm256_slli_epi16::<4>(qh[k]), qh[k])
                            } else {
                                (_mm256_slli_epi16::<2>(qh[k]), _mm256_srli_epi16::<2>(qh[k]))
                            };
                            let c_lo = _mm256_or_si256(
                                _mm256_and_si256(ql[k], m4),
                                _mm256_and_si256(lo_h, m30),
                            );
                            let c_hi = _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16::<4>(ql[k]), m4),
                                _mm256_and_si256(hi_h, m30),
                            );
                            // code group g = gp (low nibbles) and g = gp + 2 (high nibbles)
                            let o = 128 * h + 32 * gp + 4 * c;
                            for n in 0..T {
                                let q = &a[n][i].qs;
                                s[n][0] = _mm256_dpbusd_epi32(s[n][0], c_lo, bcast4(q, o));
                                s[n][1] = _mm256_dpbusd_epi32(s[n][1], c_hi, bcast4(q, o + 64));
                            }
                        }
                        // sub-blocks of 16: 8h + 2g + e for g = gp, gp + 2
                        let k0 = 8 * h + 2 * gp + e;
                        let k1 = k0 + 4;
                        let s0 = _mm256_srai_epi32::<24>(_mm256_shuffle_epi8(
                            scv[k0 / 4],
                            mask_v(&sc_mask[k0 % 4]),
                        ));
                        let s1 = _mm256_srai_epi32::<24>(_mm256_shuffle_epi8(
                            scv[k1 / 4],
                            mask_v(&sc_mask[k1 % 4]),
                        ));
                        for n in 0..T {
                            let t = _mm256_add_epi32(
                                _mm256_mullo_epi32(s[n][0], s0),
                                _mm256_mullo_epi32(s[n][1], s1),
                            );
                            sumi[n] = _mm256_add_epi32(sumi[n], t);
                        }
                    }
                }
            }
            // scale pairs (sc_2q, sc_2q+1) as i16 for the offset term
            let sp: [__m256i; 8] = std::array::from_fn(|q| {
                _mm256_srai_epi16::<8>(_mm256_shuffle_epi8(scv[q / 2], mask_v(&pair_mask[q % 2])))
            });
            for n in 0..T {
                let y = &a[n][i];
                let mut bias = _mm256_setzero_si256();
                for (q, s) in sp.iter().enumerate() {
                    bias = dpwssd(bias, *s, bcast_bsums(&y.bsums, q));
                }
                let si = _mm256_sub_epi32(sumi[n], _mm256_slli_epi32::<5>(bias));
                let dd = _mm256_mul_ps(d, _mm256_set1_ps(y.d));
                acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), dd, acc[n]);
            }
        }
        lanes_out(&acc)
    }
}

// ---------------------------------------------------------------------------------------------
// The one-token Q4_K kernel and its helpers.

/// A `vpshufb` control repeated in both 128-bit lanes: i16 word `k` (0..8) of each lane takes
/// byte `src[k]` zero-extended.
#[inline(always)]
fn word_pick(src: [u8; 8]) -> [i8; 32] {
    let mut m = [-128i8; 32];
    for l in 0..2 {
        for (k, &s) in src.iter().enumerate() {
            m[16 * l + 2 * k] = s as i8;
        }
    }
    m
}

/// `(Σ a, Σ b)` over the eight i32 lanes of each, as `[Σa, Σa, Σb, Σb]` (exact), with
/// single-uop shuffles (no `vphaddd`).
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn reduce2(a: __m256i, b: __m256i) -> __m128i {
    // SAFETY: register arithmetic.
    unsafe {
        let w = _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
        let w = _mm256_add_epi32(w, _mm256_shuffle_epi32::<0b10_11_00_01>(w));
        _mm_add_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w))
    }
}

/// `[Σa, Σb, Σc, Σd]` over the eight i32 lanes of each (exact), shuffles and adds only.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline(always)]
unsafe fn reduce4(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
    // SAFETY: register arithmetic.
    unsafe {
        let u = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
        let v = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
        let w = _mm256_add_epi32(_mm256_unpacklo_epi64(u, v), _mm256_unpackhi_epi64(u, v));
        _mm_add_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w))
    }
}

/// [`kscales_v`] for two blocks at once: the 16 bytes at 4.. of each block in the two halves.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline(always)]
unsafe fn kscales2(v: __m256i) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe {
        let x = _mm256_shuffle_epi32::<0b01_01_00_00>(v);
        let y = _mm256_shuffle_epi32::<0b10_10_10_10>(v);
        let lo = _mm256_and_si256(x, _mm256_set1_epi32(0x3f3f_3f3f));
        let y = _mm256_srlv_epi32(y, _mm256_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4));
        let hi = _mm256_or_si256(
            _mm256_and_si256(y, _mm256_set1_epi32(0x0f0f_0f0f)),
            _mm256_and_si256(_mm256_srli_epi32::<2>(x), _mm256_set1_epi32(0x3030_3030)),
        );
        _mm256_blend_epi32::<0b1010_1010>(lo, hi)
    }
}

/// One Q4_K super-block against `y`, as two vectors whose lanes sum to the exact integers
/// `(Σ_j sc_j Σ q·a, Σ_j m_j bsum_j)`, for block bytes `b` (144) with the block's scale and min
/// bytes `s` (as [`kscales_v`] gives them, in both 128-bit halves). Per 32 codes one `vpdpbusd`
/// (codes × activations, i32 per 4 values; |sum| ≤ 4·15·128, so it fits i16), the two
/// sub-blocks of each 64 values packed to i16 (`vpackssdw`, never saturating) and one
/// `vpdpwssd` by their two scales (one `vpshufb` from `s`): 5 instructions per 64 values where
/// `maddubs` + scale shuffle + `vpdpwssd` per 32 took 6, and no i16 pair sums can saturate.
/// The mins term is one `vpshufb` + `vpmaddwd` against the `bsums`.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI; `b` points to 144
/// readable bytes.
#[inline(always)]
unsafe fn q4k_sums(
    b: *const u8,
    y: &BlockQ8K,
    s: __m256i,
    ctl: &[__m256i; 4],
    mctl: __m256i,
) -> (__m256i, __m256i) {
    // SAFETY: the caller guarantees the features and the 144 bytes; the activation loads are
    // inside `y`.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let mut sa = _mm256_setzero_si256();
        let mut sb = _mm256_setzero_si256();
        for j in 0..4 {
            let q = _mm256_loadu_si256(b.add(16 + 32 * j) as *const __m256i);
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
            let ya = _mm256_loadu_si256(y.qs.as_ptr().add(64 * j) as *const __m256i);
            let yb = _mm256_loadu_si256(y.qs.as_ptr().add(64 * j + 32) as *const __m256i);
            let p0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, ya);
            let p1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), hi, yb);
            let pk = _mm256_packs_epi32(p0, p1);
            let sv = _mm256_shuffle_epi8(s, ctl[j]);
            if j % 2 == 0 {
                sa = dpwssd(sa, pk, sv);
            } else {
                sb = dpwssd(sb, pk, sv);
            }
        }
        let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
        let ms = _mm256_madd_epi16(_mm256_shuffle_epi8(s, mctl), bs);
        (_mm256_add_epi32(sa, sb), ms)
    }
}

/// Q4_K against one token (decode's matvec): [`q4k_sums`] per super-block, two super-blocks
/// per step (their packed 6-bit scale words unpacked together in one register, their four sums
/// reduced together with shuffles and adds, no `vphaddd`); the f32 steps stay those of every
/// other Q4_K path: per super-block `acc = fma(s1, d·d_a, acc)`, then `acc = fma(−s2,
/// dmin·d_a, acc)`, in block order, so the result is bit-identical to the eight-row kernels
/// and the GEMM. (With 512-bit registers, two sub-blocks per `vpmaddubsw`, it was slower on an
/// Emerald Rapids Xeon: port 1 does no vector work while 512-bit instructions are in flight.)
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_q4k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    const BYTES: usize = <crate::formats::Q4K as QuantFormat>::BYTES;
    let nb = a.len().min(w.len() / BYTES);
    let ctl: [[i8; 32]; 4] = std::array::from_fn(|j| {
        let (s0, s1) = (2 * j as u8, 2 * j as u8 + 1);
        word_pick([s0, s0, s0, s0, s1, s1, s1, s1])
    });
    let mut mctl = [-128i8; 32];
    for j in 0..8 {
        mctl[4 * j] = (8 + j) as i8;
        mctl[4 * j + 2] = (8 + j) as i8;
    }
    // SAFETY: register arithmetic; loads are bounds-checked or from fixed-size arrays.
    unsafe {
        let ctl: [__m256i; 4] = std::array::from_fn(|j| mask_v(&ctl[j]));
        let mctl = mask_v(&mctl);
        let mut acc = _mm_setzero_ps();
        let mut i = 0;
        while i + 2 <= nb {
            let b: &[u8; 2 * BYTES] = w[BYTES * i..BYTES * i + 2 * BYTES]
                .try_into()
                .expect("blocks");
            let (y0, y1) = (&a[i], &a[i + 1]);
            let ahead = b.as_ptr().wrapping_add(super::PREFETCH_AHEAD);
            for k in 0..5 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * k) as *const i8);
            }
            let raw = _mm256_inserti128_si256::<1>(
                _mm256_castsi128_si256(_mm_loadu_si128(b.as_ptr().add(4) as *const __m128i)),
                _mm_loadu_si128(b.as_ptr().add(BYTES + 4) as *const __m128i),
            );
            let sc = kscales2(raw);
            let s0 = _mm256_permute2x128_si256::<0x00>(sc, sc);
            let s1 = _mm256_permute2x128_si256::<0x11>(sc, sc);
            let (si0, ms0) = q4k_sums(b.as_ptr(), y0, s0, &ctl, mctl);
            let (si1, ms1) = q4k_sums(b.as_ptr().add(BYTES), y1, s1, &ctl, mctl);
            let f = _mm_cvtepi32_ps(reduce4(si0, ms0, si1, ms1));
            let h = _mm_insert_epi32::<1>(
                _mm_cvtsi32_si128(crate::formats::u32_at(b, 0) as i32),
                crate::formats::u32_at(b, BYTES) as i32,
            );
            let yd = _mm_movelh_ps(_mm_set1_ps(y0.d), _mm_set1_ps(y1.d));
            let dd = _mm_mul_ps(_mm_cvtph_ps(h), yd);
            acc = _mm_fmadd_ss(f, dd, acc);
            acc = _mm_fnmadd_ss(_mm_movehdup_ps(f), _mm_movehdup_ps(dd), acc);
            let (fh, dh) = (_mm_movehl_ps(f, f), _mm_movehl_ps(dd, dd));
            acc = _mm_fmadd_ss(fh, dh, acc);
            acc = _mm_fnmadd_ss(_mm_movehdup_ps(fh), _mm_movehdup_ps(dh), acc);
            i += 2;
        }
        if i < nb {
            let b: &[u8; BYTES] = w[BYTES * i..BYTES * i + BYTES].try_into().expect("block");
            let y = &a[i];
            let s = _mm256_broadcastsi128_si256(kscales_v(b));
            let (si, ms) = q4k_sums(b.as_ptr(), y, s, &ctl, mctl);
            let f = _mm_cvtepi32_ps(reduce2(si, ms));
            let dd = _mm_mul_ps(
                _mm_cvtph_ps(_mm_cvtsi32_si128(crate::formats::u32_at(b, 0) as i32)),
                _mm_set1_ps(y.d),
            );
            acc = _mm_fmadd_ss(f, dd, acc);
            acc = _mm_fnmadd_ss(_mm_movehl_ps(f, f), _mm_movehdup_ps(dd), acc);
        }
        _mm_cvtss_f32(acc)
    }
}
