//! The hot loop of ExecuTorch's `8da4w` exports: XNNPACK FullyConnected of dynamically
//! quantized int8 activations with int4 weights (blockwise bf16 scales, or one f32 scale per
//! output channel), computed on the weights where they lie in the mapping (`lmrun-pte`'s
//! XNNPACK delegate calls it).
//!
//! Why it lives here: it is SIMD code like the GGUF kernels, and the `.pte` crate forbids
//! `unsafe`. Real exports spend nearly all their time here. The kernel works on 64 weight bytes
//! (128 columns) at a time in "lanes" of 8 columns. Activations are stored shifted to unsigned,
//! `u = q + 128`, and weights are used as signed `w − 8`, so one VNNI `vpdpbusd` per nibble
//! half gives each lane's exact `Σ u·(w − 8)` with no per-token correction inside the loop:
//! since `(q − zp)(w − 8) = u·(w − 8) − (128 + zp)(w − 8)`, the zero-point term is
//! `(128 + zp) · Σ_lanes scale · Σ(w − 8)`, where the second factor depends on the row only:
//! [`zero_point_sums`] computes it once per filter (the caller keeps it), so the loop never
//! sees it. Per lane the exact integer is
//! converted to f32 (|lane| < 2^24), multiplied by its block's scale and added to that lane's
//! accumulator; the 16 lanes are summed in a fixed order at the end of the row. Per token and
//! chunk that is two `vpdpbusd`, one convert and one FMA. The scalar twin does the same
//! arithmetic in the same order, so every CPU gives the same bits.

use half::bf16;

/// Columns per chunk (64 weight bytes).
const CHUNK: usize = 128;
/// Lanes per chunk (8 columns each).
const LANES: usize = 16;

/// How a filter's rows are scaled.
#[derive(Clone, Copy)]
pub enum Scales<'a> {
    /// `block` columns per bf16 scale, `nblocks` scales per row, little-endian bytes.
    Blockwise {
        /// The scales, `[rows][nblocks]` bf16.
        bytes: &'a [u8],
        /// Columns per scale.
        block: usize,
        /// Scales per row.
        nblocks: usize,
    },
    /// One f32 scale per row.
    PerChannel(&'a [f32]),
}

impl Scales<'_> {
    /// Whether the lane kernel handles this layout for rows of `cols` columns: blocks that
    /// tile a chunk (32, 64, 128) or whole chunks (multiples of 128), dividing the row.
    pub fn supported(&self, cols: usize) -> bool {
        match *self {
            Scales::Blockwise { block, .. } => {
                block >= 32
                    && cols.is_multiple_of(block)
                    && (CHUNK.is_multiple_of(block) || block.is_multiple_of(CHUNK))
            }
            Scales::PerChannel(_) => cols.is_multiple_of(8),
        }
    }

    /// The scale of lane `lane` of chunk `k` of row `r`.
    fn lane_scale(&self, r: usize, k: usize, lane: usize) -> f32 {
        match *self {
            Scales::Blockwise {
                bytes,
                block,
                nblocks,
            } => {
                let b = (k * CHUNK + lane * 8) / block;
                let i = (r * nblocks + b.min(nblocks.saturating_sub(1))) * 2;
                bf16::from_le_bytes([bytes[i], bytes[i + 1]]).to_f32()
            }
            Scales::PerChannel(s) => s[r],
        }
    }
}

/// One token's activations prepared for the lane kernel.
pub struct Act {
    /// Even columns shifted to unsigned (`q[2j] + 128`), zero-padded to whole chunks.
    ue: Vec<u8>,
    /// Odd columns (`q[2j + 1] + 128`), zero-padded.
    uo: Vec<u8>,
    /// `128 + zp`: the multiplier of the row's zero-point term.
    c: f32,
}

impl Act {
    /// Prepare a row of `cols` int8 activations with zero point `zp`.
    pub fn new(q: &[i8], zp: i32) -> Act {
        let cols = q.len();
        let chunks = cols.div_ceil(CHUNK);
        let mut ue = vec![0u8; chunks * CHUNK / 2];
        let mut uo = vec![0u8; chunks * CHUNK / 2];
        let u = |x: i8| (i16::from(x) + 128) as u8;
        for (j, pair) in q.chunks(2).enumerate() {
            ue[j] = u(pair[0]);
            uo[j] = pair.get(1).map_or(0, |&x| u(x));
        }
        Act {
            ue,
            uo,
            c: (128 + zp) as f32,
        }
    }
}

/// For each row `r` of `rows` and token `t`: `dst[(r − rows.start)·ntok + t] = Σ_c (q_t[c] −
/// zp_t)(w_r[c] − 8)·scale_r(c)` (before the tokens' dequantization scales), where `w` is the
/// whole filter (row `r` at byte `r·cols/2`, packed nibbles, low = even column) and `ntok =
/// acts.len()`. The layout must be [`Scales::supported`]; `csum` is the filter's
/// [`zero_point_sums`].
///
/// # Panics
/// If `w`, the scales, `csum` or `dst` are too short for `rows`.
pub fn rows(
    w: &[u8],
    cols: usize,
    rows: std::ops::Range<usize>,
    scales: Scales<'_>,
    csum: &[f32],
    acts: &[Act],
    dst: &mut [f32],
) {
    let rb = cols / 2;
    assert!(w.len() >= rows.end * rb && dst.len() >= rows.len() * acts.len());
    assert!(csum.len() >= rows.end);
    match scales {
        Scales::Blockwise { bytes, nblocks, .. } => {
            assert!(bytes.len() >= rows.end * nblocks * 2)
        }
        Scales::PerChannel(s) => assert!(s.len() >= rows.end),
    }
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::best() == crate::Isa::Avx512Vnni {
        // SAFETY: the CPU has AVX-512 F/BW/VL/VNNI (checked by Isa::best); the lengths were
        // checked above.
        unsafe { avx512::rows(w, cols, rows, scales, csum, acts, dst) };
        return;
    }
    let ntok = acts.len();
    for (i, r) in rows.enumerate() {
        row_scalar(
            &w[r * rb..(r + 1) * rb],
            cols,
            r,
            scales,
            csum[r],
            acts,
            &mut dst[i * ntok..(i + 1) * ntok],
        );
    }
}

/// The signed weights of lane `l` of chunk `k`: 4 bytes, (low nibble − 8, high nibble − 8),
/// 0 past the row.
fn lane_weights(w: &[u8], k: usize, l: usize) -> [(i32, i32); 4] {
    std::array::from_fn(|i| match w.get(k * CHUNK / 2 + 4 * l + i) {
        Some(&b) => (i32::from(b & 15) - 8, i32::from(b >> 4) - 8),
        None => (0, 0),
    })
}

/// The lane arithmetic of one chunk for one token: 16 exact `Σ u·(w − 8)`.
fn lanes_scalar(w: &[u8], a: &Act, k: usize, out: &mut [i32; LANES]) {
    for (l, o) in out.iter_mut().enumerate() {
        let mut d = 0i32;
        for (i, (lo, hi)) in lane_weights(w, k, l).into_iter().enumerate() {
            let j = k * CHUNK / 2 + 4 * l + i;
            d += lo * i32::from(a.ue[j]) + hi * i32::from(a.uo[j]);
        }
        *o = d;
    }
}

/// The fixed summation order of the 16 lane accumulators (a tree, as the SIMD code does it).
fn sum_lanes(acc: &[f32; LANES]) -> f32 {
    let mut v = *acc;
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            v[i] += v[i + n];
        }
    }
    v[0]
}

/// Row `r`'s zero-point factor `Σ_lanes scale · Σ(w − 8)`: per lane a fused multiply-add per
/// chunk, then the lanes in [`sum_lanes`] order (the AVX-512 twin does the same).
fn row_csum_scalar(w: &[u8], cols: usize, r: usize, scales: Scales<'_>) -> f32 {
    let w = &w[..cols / 2];
    let mut cs = [0f32; LANES];
    for k in 0..cols.div_ceil(CHUNK) {
        for (l, c) in cs.iter_mut().enumerate() {
            let sw: i32 = lane_weights(w, k, l).iter().map(|(a, b)| a + b).sum();
            *c = (sw as f32).mul_add(scales.lane_scale(r, k, l), *c);
        }
    }
    sum_lanes(&cs)
}

/// Each row's zero-point factor, for [`rows`]: a pass over the whole filter, to be done once
/// (the weights do not change) and kept with it.
///
/// # Panics
/// If `w` or the scales are shorter than `nrows` rows.
pub fn zero_point_sums(w: &[u8], cols: usize, nrows: usize, scales: Scales<'_>) -> Vec<f32> {
    let rb = cols / 2;
    assert!(w.len() >= nrows * rb);
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::best() == crate::Isa::Avx512Vnni {
        // SAFETY: AVX-512 F/BW/VL/VNNI checked by Isa::best; the length was checked above.
        return (0..nrows)
            .map(|r| unsafe { avx512::row_csum(&w[r * rb..(r + 1) * rb], cols, r, scales) })
            .collect();
    }
    (0..nrows)
        .map(|r| row_csum_scalar(&w[r * rb..(r + 1) * rb], cols, r, scales))
        .collect()
}

/// The scalar twin of the AVX-512 row kernel (same operations, same order).
fn row_scalar(
    w: &[u8],
    cols: usize,
    r: usize,
    scales: Scales<'_>,
    csum: f32,
    acts: &[Act],
    dst: &mut [f32],
) {
    let chunks = cols.div_ceil(CHUNK);
    let w = &w[..cols / 2];
    for (a, d) in acts.iter().zip(dst.iter_mut()) {
        let mut acc = [0f32; LANES];
        let mut li = [0i32; LANES];
        for k in 0..chunks {
            lanes_scalar(w, a, k, &mut li);
            for l in 0..LANES {
                acc[l] = (li[l] as f32).mul_add(scales.lane_scale(r, k, l), acc[l]);
            }
        }
        *d = sum_lanes(&acc) - a.c * csum;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Act, Scales, CHUNK, LANES};

    /// Scale layouts, as the `M` parameter of [`group_row`]: one scale per row, a bf16 scale
    /// per 32 / 64 columns, one per 128 or more.
    const PER_ROW: u8 = 0;
    const B32: u8 = 1;
    const B64: u8 = 2;
    const B128: u8 = 3;
    /// How far ahead of the chunk being computed the weights are prefetched, bytes.
    const PREFETCH: usize = 4096;

    /// The 16 lane scales of a full chunk whose first block's bf16 scale is at `p`
    /// (`M` = B32, B64 or B128); `row_scale` for PER_ROW.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; `p` points at the chunk's scales.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scale_vec<const M: u8>(p: *const u8, row_scale: f32) -> __m512 {
        // bf16 → f32 is a 16-bit shift.
        let widen = |v: __m128i| _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(v), 16));
        // SAFETY: the caller's CPU features and pointer.
        unsafe {
            match M {
                B32 => {
                    let s4 = widen(_mm_loadl_epi64(p as *const __m128i));
                    let idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
                    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(s4))
                }
                B64 => {
                    let v = (p as *const u32).read_unaligned();
                    let s2 = widen(_mm_cvtsi32_si128(v as i32));
                    let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
                    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(s2))
                }
                B128 => {
                    let v = (p as *const u16).read_unaligned();
                    _mm512_set1_ps(f32::from_bits(u32::from(v) << 16))
                }
                _ => _mm512_set1_ps(row_scale),
            }
        }
    }

    /// The lane scales of a partial last chunk (lanes past the row get any finite scale:
    /// their integers are 0).
    #[cold]
    fn tail_scales(scales: Scales<'_>, r: usize, k: usize) -> [f32; LANES] {
        std::array::from_fn(|l| scales.lane_scale(r, k, l))
    }

    /// See [`super::rows`]. Tokens go four at a time (const-generic groups, so the
    /// accumulators stay in registers) and each weight chunk is unpacked once per group.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; lengths as [`super::rows`] checks them.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn rows(
        w: &[u8],
        cols: usize,
        rows: std::ops::Range<usize>,
        scales: Scales<'_>,
        csum: &[f32],
        acts: &[Act],
        dst: &mut [f32],
    ) {
        let ntok = acts.len();
        let rb = cols / 2;
        // Tokens in blocks whose activations fit in L1 (about 24 KiB), every row of the range
        // per block: the activations are then read from L1 for each row, the weights from L2.
        let tb = ((24 << 10) / cols.max(1)).clamp(4, 64) / 4 * 4;
        for t0 in (0..ntok).step_by(tb) {
            let block = &acts[t0..(t0 + tb).min(ntok)];
            for (i, r) in rows.clone().enumerate() {
                let wr = &w[r * rb..(r + 1) * rb];
                let out = &mut dst[i * ntok + t0..i * ntok + t0 + block.len()];
                for (g, group) in block.chunks(4).enumerate() {
                    let o = &mut out[g * 4..g * 4 + group.len()];
                    let mode = match scales {
                        Scales::PerChannel(_) => PER_ROW,
                        Scales::Blockwise { block: 32, .. } => B32,
                        Scales::Blockwise { block: 64, .. } => B64,
                        Scales::Blockwise { .. } => B128,
                    };
                    macro_rules! go {
                    ($($m:ident)*) => {
                        $(if mode == $m {
                            // SAFETY: the caller's CPU features and lengths.
                            unsafe {
                                match group.len() {
                                    1 => group_row::<1, $m>(wr, cols, r, scales, csum[r], group, o),
                                    2 => group_row::<2, $m>(wr, cols, r, scales, csum[r], group, o),
                                    3 => group_row::<3, $m>(wr, cols, r, scales, csum[r], group, o),
                                    _ => group_row::<4, $m>(wr, cols, r, scales, csum[r], group, o),
                                }
                            }
                        })*
                    };
                }
                    go!(PER_ROW B32 B64 B128);
                }
            }
        }
    }

    /// Sum the 16 lanes in the order of [`super::sum_lanes`] (halves, then quarters, …).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn hsum(v: __m512) -> f32 {
        let a = _mm256_add_ps(
            _mm512_castps512_ps256(v),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
        );
        let b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let c = _mm_add_ps(b, _mm_movehl_ps(b, b));
        let d = _mm_add_ss(c, _mm_shuffle_ps::<1>(c, c));
        _mm_cvtss_f32(d)
    }

    /// Row `r`'s zero-point factor, as [`super::row_csum_scalar`] computes it (same lanes,
    /// same order, same bits).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; `w` holds the row's `cols / 2` bytes, the scales row `r`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn row_csum(w: &[u8], cols: usize, r: usize, scales: Scales<'_>) -> f32 {
        // SAFETY: the caller's CPU features and lengths.
        unsafe {
            match scales {
                Scales::PerChannel(_) => row_csum_m::<PER_ROW>(w, cols, r, scales),
                Scales::Blockwise { block: 32, .. } => row_csum_m::<B32>(w, cols, r, scales),
                Scales::Blockwise { block: 64, .. } => row_csum_m::<B64>(w, cols, r, scales),
                Scales::Blockwise { .. } => row_csum_m::<B128>(w, cols, r, scales),
            }
        }
    }

    /// [`row_csum`] for scale layout `M`.
    ///
    /// # Safety
    /// As [`row_csum`].
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn row_csum_m<const M: u8>(w: &[u8], cols: usize, r: usize, scales: Scales<'_>) -> f32 {
        // SAFETY: the caller's CPU features; loads are within `w` (masked in a partial chunk).
        unsafe {
            let row_bytes = cols / 2;
            let nib = _mm512_set1_epi8(0x0F);
            let eight = _mm512_set1_epi8(8);
            let ones = _mm512_set1_epi8(1);
            let (sp, rs, block) = match scales {
                Scales::Blockwise {
                    bytes,
                    block,
                    nblocks,
                } => (bytes.as_ptr().add(r * nblocks * 2), 0.0, block),
                Scales::PerChannel(s) => (std::ptr::null(), s[r], CHUNK),
            };
            let mut cacc = _mm512_setzero_ps();
            for k in 0..cols.div_ceil(CHUNK) {
                let off = k * CHUNK / 2;
                let full = off + CHUNK / 2 <= row_bytes;
                let m: __mmask64 = if full {
                    !0
                } else {
                    (1u64 << (row_bytes - off)) - 1
                };
                let wv = _mm512_maskz_loadu_epi8(m, w.as_ptr().add(off) as *const i8);
                let lo = _mm512_maskz_sub_epi8(m, _mm512_and_si512(wv, nib), eight);
                let hi = _mm512_maskz_sub_epi8(
                    m,
                    _mm512_and_si512(_mm512_srli_epi16(wv, 4), nib),
                    eight,
                );
                let sw = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_add_epi8(lo, hi));
                let sc = if full {
                    scale_vec::<M>(sp.wrapping_add(k * CHUNK / block * 2), rs)
                } else {
                    _mm512_loadu_ps(tail_scales(scales, r, k).as_ptr())
                };
                cacc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sw), sc, cacc);
            }
            hsum(cacc)
        }
    }

    /// One row against `N` tokens.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; `w` holds the row's `cols / 2` bytes, the scales row `r`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn group_row<const N: usize, const M: u8>(
        w: &[u8],
        cols: usize,
        r: usize,
        scales: Scales<'_>,
        csum: f32,
        acts: &[Act],
        out: &mut [f32],
    ) {
        // SAFETY: the caller's CPU features; every load is within `w` (masked in a partial
        // chunk) or the activations' padded arrays.
        unsafe {
            let chunks = cols.div_ceil(CHUNK);
            let row_bytes = cols / 2;
            let nib = _mm512_set1_epi8(0x0F);
            let zero = _mm512_setzero_si512();
            let mut acc = [_mm512_setzero_ps(); N];
            // The row's scales: the first bf16 of the row, or its one f32.
            let (sp, rs, block) = match scales {
                Scales::Blockwise {
                    bytes,
                    block,
                    nblocks,
                } => (bytes.as_ptr().add(r * nblocks * 2), 0.0, block),
                Scales::PerChannel(s) => (std::ptr::null(), s[r], CHUNK),
            };
            let eight = _mm512_set1_epi8(8);
            for k in 0..chunks {
                let off = k * CHUNK / 2;
                let full = off + CHUNK / 2 <= row_bytes;
                let m: __mmask64 = if full {
                    !0
                } else {
                    (1u64 << (row_bytes - off)) - 1
                };
                let wv = if full {
                    _mm512_loadu_si512(w.as_ptr().add(off) as *const _)
                } else {
                    _mm512_maskz_loadu_epi8(m, w.as_ptr().add(off) as *const i8)
                };
                // The rows are short (448 bytes for 896 columns) and the filter is read once
                // per token: ask for the bytes PREFETCH ahead (the next rows) now. A prefetch
                // past the end of the filter is only a hint, never a fault.
                _mm_prefetch::<_MM_HINT_T0>(w.as_ptr().wrapping_add(off + PREFETCH) as *const i8);
                // Signed nibbles w − 8, zero past the row.
                let (lo, hi) = if full {
                    (
                        _mm512_sub_epi8(_mm512_and_si512(wv, nib), eight),
                        _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(wv, 4), nib), eight),
                    )
                } else {
                    (
                        _mm512_maskz_sub_epi8(m, _mm512_and_si512(wv, nib), eight),
                        _mm512_maskz_sub_epi8(
                            m,
                            _mm512_and_si512(_mm512_srli_epi16(wv, 4), nib),
                            eight,
                        ),
                    )
                };
                let sc = if full {
                    scale_vec::<M>(sp.wrapping_add(k * CHUNK / block * 2), rs)
                } else {
                    _mm512_loadu_ps(tail_scales(scales, r, k).as_ptr())
                };
                for t in 0..N {
                    let a = &acts[t];
                    let ue = _mm512_loadu_si512(a.ue.as_ptr().add(off) as *const _);
                    let uo = _mm512_loadu_si512(a.uo.as_ptr().add(off) as *const _);
                    let d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, ue, lo), uo, hi);
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sc, acc[t]);
                }
            }
            for t in 0..N {
                out[t] = hsum(acc[t]) - acts[t].c * csum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition, in f64.
    fn naive(w: &[u8], q: &[i8], zp: i32, cols: usize, r: usize, scales: Scales<'_>) -> f64 {
        let mut s = 0f64;
        for c in 0..cols {
            let b = w[c / 2];
            let nib = if c % 2 == 0 { b & 15 } else { b >> 4 };
            let v = (i32::from(q[c]) - zp) * (i32::from(nib) - 8);
            let sc = match scales {
                Scales::Blockwise {
                    bytes,
                    block,
                    nblocks,
                } => {
                    let i = (r * nblocks + c / block) * 2;
                    bf16::from_le_bytes([bytes[i], bytes[i + 1]]).to_f32()
                }
                Scales::PerChannel(s) => s[r],
            };
            s += f64::from(v) * f64::from(sc);
        }
        s
    }

    #[test]
    fn lanes_match_the_definition_and_every_isa_agrees() {
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        // Row lengths with and without a partial last chunk; block sizes 32, 64, 128, 256.
        for (cols, block) in [
            (896, 32),
            (352, 32),
            (384, 64),
            (896, 128),
            (512, 256),
            (160, 32),
        ] {
            let rows = 3;
            let nblocks = cols / block;
            let w: Vec<u8> = (0..rows * cols / 2).map(|_| rnd() as u8).collect();
            let sb: Vec<u8> = (0..rows * nblocks)
                .flat_map(|_| bf16::from_f32((rnd() % 1000) as f32 / 997.0 + 0.01).to_le_bytes())
                .collect();
            let pc: Vec<f32> = (0..rows).map(|i| 0.5 + i as f32).collect();
            let acts: Vec<(Vec<i8>, i32)> = (0..7)
                .map(|_| {
                    let q: Vec<i8> = (0..cols).map(|_| rnd() as i8).collect();
                    (q, (rnd() % 256) as i32 - 128)
                })
                .collect();
            let prepared: Vec<Act> = acts.iter().map(|(q, zp)| Act::new(q, *zp)).collect();
            for scales in [
                Scales::Blockwise {
                    bytes: &sb,
                    block,
                    nblocks,
                },
                Scales::PerChannel(&pc),
            ] {
                assert!(scales.supported(cols));
                // 1, 3 and 7 tokens: every group size of the SIMD code.
                for n in [1, 3, 7] {
                    let prepared = &prepared[..n];
                    let acts = &acts[..n];
                    let mut all = vec![0f32; rows * n];
                    let csum = zero_point_sums(&w, cols, rows, scales);
                    super::rows(&w, cols, 0..rows, scales, &csum, prepared, &mut all);
                    for r in 0..rows {
                        let wr = &w[r * cols / 2..(r + 1) * cols / 2];
                        let fast = &all[r * n..(r + 1) * n];
                        let mut slow = vec![0f32; n];
                        // The zero-point factor, from both ISAs, and the row from the twin.
                        let cs = row_csum_scalar(wr, cols, r, scales);
                        assert_eq!(cs.to_bits(), csum[r].to_bits());
                        row_scalar(wr, cols, r, scales, cs, prepared, &mut slow);
                        for (t, (q, zp)) in acts.iter().enumerate() {
                            // Every ISA gives the same bits.
                            assert_eq!(
                                fast[t].to_bits(),
                                slow[t].to_bits(),
                                "cols {cols} block {block}"
                            );
                            let want = naive(wr, q, *zp, cols, r, scales);
                            let tol = 1e-5 * want.abs().max(1.0) + 1e-3;
                            assert!(
                                (f64::from(fast[t]) - want).abs() <= tol,
                                "{} vs {want}",
                                fast[t]
                            );
                        }
                    }
                }
            }
        }
        // Layouts the kernel leaves to the plain loop.
        let sb = [0u8; 64];
        assert!(!Scales::Blockwise {
            bytes: &sb,
            block: 48,
            nblocks: 2
        }
        .supported(96));
        assert!(!Scales::Blockwise {
            bytes: &sb,
            block: 16,
            nblocks: 2
        }
        .supported(32));
    }
}
