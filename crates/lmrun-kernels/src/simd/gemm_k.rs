//! Prefill GEMM for Q4_K, Q5_K, Q6_K and IQ4_XS weights on AVX-512 VNNI, for batches of 16 tokens or more.
//!
//! Why it exists: the 4-token kernels and the 8-row tiles unpack every weight block again for
//! each group of four tokens, and for the 6-bit codes that unpacking costs as much as the
//! multiply-adds. Here a panel of eight weight rows is unpacked once per matmul into a small
//! per-thread buffer (signed codes as bytes, scales as i32, with each sub-block's code sum
//! folded into one correction per super-block) and then meets every token of the batch. The
//! activations are re-laid once per matmul so that a 512-bit register holds four consecutive
//! values of 16 tokens (tokens in the lanes, stored +128 as unsigned bytes); one `vpdpbusd`
//! with the row's four codes broadcast from memory then does 4 values × 16 tokens, and a
//! sub-block's scale is one `vpmulld` per row and 16 tokens. This is compute scratch sized by
//! the panel (8 rows) and the batch, not a copy of the model: the weights stay in the mapping.
//!
//! Exactness: the integer sums are exact (codes × activations, the +128 offset removed with
//! the codes' sums); f32 arithmetic runs per super-block, as in the other kernels.

// See avx2.rs: intrinsics are safe in `#[target_feature]` functions only on newer compilers.
#![allow(unused_unsafe)]

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::avx2::{f16_at, kscales16, q6k_codes};
use crate::formats::{iq4_xs, q4_k, q5_k, q6_k, QuantFormat, IQ4XS, Q4K, Q5K, Q6K};
use crate::partner::{BlockQ8K, BlockQ8x32, QK32, QK_K};
use crate::pool::{DisjointOut, ThreadPool};
use crate::QType;

/// Tokens per activation group (the i32 lanes of a 512-bit register).
pub(crate) const GROUP: usize = 16;
/// Weight rows per panel.
const PANEL: usize = 8;

/// One super-block of up to 16 tokens' activations, re-laid for `vpdpbusd` with the tokens in
/// the lanes: `q[kg]` holds values `4kg..4kg + 4` of tokens 0..16 (64 bytes), +128 as unsigned
/// bytes; `bsum[s]` the 16 tokens' sums of values `16s..16s + 16`; `d` their scales (0 for the
/// padding tokens of a last, partial group).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct ActBlock {
    q: [[u8; 64]; 64],
    bsum: [[i32; GROUP]; 16],
    d: [f32; GROUP],
}

impl Default for ActBlock {
    fn default() -> ActBlock {
        ActBlock {
            q: [[128; 64]; 64],
            bsum: [[0; GROUP]; 16],
            d: [0.0; GROUP],
        }
    }
}

/// Eight weight rows of a matmul unpacked for [`ActBlock`]s: per row and super-block the 256
/// codes as signed bytes, the sub-block scales (and Q4_K's mins) as i32, the f32 scales, and
/// the correction `128 · Σ_s sc_s · Σ codes_s` that removes the activations' +128.
#[derive(Default)]
struct Panel {
    codes: Counted<i8>,
    scales: Counted<i32>,
    mins: Counted<i32>,
    d: Counted<f32>,
    dmin: Counted<f32>,
    corr: Counted<i32>,
}

thread_local! {
    /// The calling thread's re-laid activations (grown, never shrunk: no allocation per step
    /// once the largest batch has been seen).
    static ACTS: RefCell<Counted<ActBlock>> = const { RefCell::new(Counted(Vec::new())) };
    /// Each pool thread's unpacked weight panel.
    static PANELS: RefCell<[Panel; 2]> = RefCell::new([Panel::default(), Panel::default()]);
}

/// Bytes held by every thread's GEMM buffers (activations re-laid, weight panels): part of the
/// process's scratch memory, reported with [`Scratch::heap_bytes`](crate::Scratch::heap_bytes).
static HELD: AtomicUsize = AtomicUsize::new(0);

/// Bytes held by all threads' GEMM buffers now.
pub(crate) fn held_bytes() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// A grow-only buffer whose capacity is counted in [`HELD`] (and uncounted when it is dropped,
/// e.g. when a pool thread exits).
#[derive(Default)]
struct Counted<T>(Vec<T>);

impl<T: Clone> Counted<T> {
    /// Resizes to `n` elements (new ones `v`), counting any capacity it adds.
    fn grow(&mut self, n: usize, v: T) {
        let before = self.0.capacity();
        self.0.resize(n, v);
        let added = self.0.capacity().saturating_sub(before);
        HELD.fetch_add(added * std::mem::size_of::<T>(), Ordering::Relaxed);
    }
}

impl<T> std::ops::Deref for Counted<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Counted<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        HELD.fetch_sub(
            self.0.capacity() * std::mem::size_of::<T>(),
            Ordering::Relaxed,
        );
    }
}

/// Whether [`matmul`] takes weight type `t` for `n_tokens` tokens.
pub(crate) fn handles(t: QType, n_tokens: usize) -> bool {
    n_tokens >= GROUP && matches!(t, QType::Q4K | QType::Q5K | QType::Q6K | QType::IQ4XS)
}

/// `out[t * rows + r] = W[r] · act[t]` for the `n_tokens` Q8_K activation rows `acts` (each
/// `cols / 256` blocks) and Q4_K or Q6_K weights `data` (`rows` rows of `rb` bytes), on every
/// thread of `pool`. Only called by `matmul` after run-time detection of AVX-512 VNNI and
/// [`handles`]; `rows` is any count (a last partial panel runs with its rows repeated).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    pool: &ThreadPool,
    t: QType,
    data: &[u8],
    rows: usize,
    cols: usize,
    rb: usize,
    acts: &[BlockQ8K],
    n_tokens: usize,
    out: &mut [f32],
) {
    let nsb = cols / QK_K;
    let groups = n_tokens.div_ceil(GROUP);
    ACTS.with(|cell| {
        let mut packed = cell.borrow_mut();
        if packed.len() < groups * nsb {
            packed.grow(groups * nsb, ActBlock::default());
        }
        pack_acts(acts, n_tokens, nsb, &mut packed[..groups * nsb]);
        let packed = &packed[..groups * nsb];
        // work items of two panels (16 rows): each token's 16 outputs are one 64-byte line,
        // so no two threads write the same cache line
        let items = rows.div_ceil(2 * PANEL);
        let next = AtomicUsize::new(0);
        let dst = DisjointOut::new(out);
        pool.run_dynamic(|_ith, _nth| {
            PANELS.with(|pc| {
                let mut panels = pc.borrow_mut();
                loop {
                    let item = next.fetch_add(1, Ordering::Relaxed);
                    if item >= items {
                        break;
                    }
                    let r0 = item * 2 * PANEL;
                    let n_rows = (2 * PANEL).min(rows - r0);
                    let halves = n_rows.div_ceil(PANEL);
                    for (h, panel) in panels.iter_mut().enumerate().take(halves) {
                        // a last partial panel repeats its final row; only real rows are
                        // written
                        let w: [&[u8]; PANEL] = std::array::from_fn(|j| {
                            let r = r0 + (h * PANEL + j).min(n_rows - 1);
                            &data[r * rb..(r + 1) * rb]
                        });
                        match t {
                            QType::Q4K => unpack_k45::<Q4K>(&w, nsb, panel, q4_k::unpack),
                            QType::Q5K => unpack_k45::<Q5K>(&w, nsb, panel, q5_k::unpack),
                            QType::Q6K => unpack_q6k(&w, nsb, panel),
                            _ => unpack_iq4xs(&w, nsb, panel),
                        }
                    }
                    for g in 0..groups {
                        let ab = &packed[g * nsb..(g + 1) * nsb];
                        let mut res = [[[0f32; GROUP]; PANEL]; 2];
                        for (h, panel) in panels.iter().enumerate().take(halves) {
                            // SAFETY: this function is reached only after run-time detection
                            // of AVX-512 VNNI (see `handles`' caller); the kernel bounds its
                            // accesses by the panel's and the blocks' lengths.
                            res[h] = unsafe {
                                match t {
                                    QType::Q4K | QType::Q5K => panel_mins(panel, ab, nsb),
                                    QType::Q6K => panel_nomin::<16>(panel, ab, nsb),
                                    _ => panel_nomin::<32>(panel, ab, nsb),
                                }
                            };
                        }
                        for k in 0..GROUP.min(n_tokens - g * GROUP) {
                            let v: [f32; 2 * PANEL] =
                                std::array::from_fn(|j| res[j / PANEL][j % PANEL][k]);
                            let at = (g * GROUP + k) * rows + r0;
                            // SAFETY: item `item` is taken by one thread only, and it owns rows
                            // r0..r0 + n_rows of every token's output.
                            unsafe {
                                if n_rows == 2 * PANEL {
                                    dst.write_slice(at, &v);
                                } else {
                                    dst.write_slice(at, &v[..n_rows]);
                                }
                            }
                        }
                    }
                }
            })
        });
    });
}

/// Re-lays the Q8_K rows `acts` (`n_tokens` × `nsb` blocks) into `out` (`groups` × `nsb`).
fn pack_acts(acts: &[BlockQ8K], n_tokens: usize, nsb: usize, out: &mut [ActBlock]) {
    for (gi, grp) in out.chunks_mut(nsb).enumerate() {
        for (sb, ab) in grp.iter_mut().enumerate() {
            for tt in 0..GROUP {
                let tok = gi * GROUP + tt;
                if tok < n_tokens {
                    let y = &acts[tok * nsb + sb];
                    for kg in 0..64 {
                        for j in 0..4 {
                            ab.q[kg][4 * tt + j] = (y.qs[4 * kg + j] as u8) ^ 0x80;
                        }
                    }
                    for s in 0..16 {
                        ab.bsum[s][tt] = y.bsums[s] as i32;
                    }
                    ab.d[tt] = y.d;
                } else {
                    for kg in 0..64 {
                        ab.q[kg][4 * tt..4 * tt + 4].fill(0x80);
                    }
                    for s in 0..16 {
                        ab.bsum[s][tt] = 0;
                    }
                    ab.d[tt] = 0.0;
                }
            }
        }
    }
}

/// Resizes the panel's arrays for `nsb` super-blocks with `nsub` sub-blocks each.
fn panel_size(p: &mut Panel, nsb: usize, nsub: usize, mins: bool) {
    p.codes.grow(PANEL * nsb * QK_K, 0);
    p.scales.grow(PANEL * nsb * nsub, 0);
    p.mins.grow(if mins { PANEL * nsb * 8 } else { 0 }, 0);
    p.d.grow(PANEL * nsb, 0.0);
    p.dmin.grow(if mins { PANEL * nsb } else { 0 }, 0.0);
    p.corr.grow(PANEL * nsb, 0);
}

/// Unpacks eight Q4_K or Q5_K rows (`unpack`: the format's codes in value order): codes,
/// scales and mins, `d`, `dmin`, corrections.
fn unpack_k45<F: QuantFormat>(
    w: &[&[u8]; PANEL],
    nsb: usize,
    p: &mut Panel,
    unpack: fn(&[u8]) -> [u8; QK_K],
) {
    panel_size(p, nsb, 8, true);
    for (t, row) in w.iter().enumerate() {
        for sb in 0..nsb {
            let b = &row[sb * F::BYTES..(sb + 1) * F::BYTES];
            let i = t * nsb + sb;
            let sc = kscales16(&b[4..16]);
            let q = unpack(b);
            let codes = &mut p.codes[i * QK_K..(i + 1) * QK_K];
            let mut corr = 0i32;
            for s in 0..8 {
                let mut sum = 0i32;
                for k in 32 * s..32 * s + 32 {
                    codes[k] = q[k] as i8;
                    sum += q[k] as i32;
                }
                corr += sc[s] as i32 * sum;
                p.scales[i * 8 + s] = sc[s] as i32;
                p.mins[i * 8 + s] = sc[8 + s] as i32;
            }
            p.d[i] = f16_at(b, 0);
            p.dmin[i] = f16_at(b, 2);
            p.corr[i] = 128 * corr;
        }
    }
}

/// Unpacks eight IQ4_XS rows: the non-linear code values (−127..113), the 6-bit scales minus
/// 32, `d`, corrections.
fn unpack_iq4xs(w: &[&[u8]; PANEL], nsb: usize, p: &mut Panel) {
    const BYTES: usize = <IQ4XS as QuantFormat>::BYTES;
    panel_size(p, nsb, 8, false);
    for (t, row) in w.iter().enumerate() {
        for sb in 0..nsb {
            let b = &row[sb * BYTES..(sb + 1) * BYTES];
            let i = t * nsb + sb;
            let (sc, q) = iq4_xs::unpack(b);
            let codes = &mut p.codes[i * QK_K..(i + 1) * QK_K];
            codes.copy_from_slice(&q);
            let mut corr = 0i32;
            for s in 0..8 {
                let sum: i32 = q[32 * s..32 * s + 32].iter().map(|&c| c as i32).sum();
                corr += sc[s] as i32 * sum;
                p.scales[i * 8 + s] = sc[s] as i32;
            }
            p.d[i] = f16_at(b, 0);
            p.corr[i] = 128 * corr;
        }
    }
}

/// Unpacks eight Q6_K rows: codes −32..31, the int8 scales, `d`, corrections.
fn unpack_q6k(w: &[&[u8]; PANEL], nsb: usize, p: &mut Panel) {
    const BYTES: usize = <Q6K as QuantFormat>::BYTES;
    panel_size(p, nsb, 16, false);
    for (t, row) in w.iter().enumerate() {
        for sb in 0..nsb {
            let b = &row[sb * BYTES..(sb + 1) * BYTES];
            let i = t * nsb + sb;
            let codes = &mut p.codes[i * QK_K..(i + 1) * QK_K];
            // SAFETY: the AVX-512 VNNI level implies AVX2 (checked by the caller's dispatch);
            // 32-byte stores into a 256-byte slice at offsets below 256 - 32.
            unsafe { q6k_unpack(b, codes) };
            let mut corr = 0i32;
            for s in 0..16 {
                let sc = b[q6_k::SCALES_OFF + s] as i8 as i32;
                let sum: i32 = codes[16 * s..16 * s + 16].iter().map(|&c| c as i32).sum();
                p.scales[i * 16 + s] = sc;
                corr += sc * sum;
            }
            p.d[i] = f16_at(b, q6_k::D_OFF);
            p.corr[i] = 128 * corr;
        }
    }
}

/// Q6_K's 256 codes of block `b` minus 32, as signed bytes in value order.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_unpack(b: &[u8], codes: &mut [i8]) {
    let dst = &mut codes[..QK_K];
    // SAFETY: bounds-checked loads, register arithmetic, stores inside `dst`.
    unsafe {
        let m32 = _mm256_set1_epi8(32);
        for h in 0..2 {
            let q = q6k_codes(b, h);
            for (g, v) in q.iter().enumerate() {
                let o = 128 * h + 32 * g;
                let s = &mut dst[o..o + 32];
                _mm256_storeu_si256(s.as_mut_ptr() as *mut __m256i, _mm256_sub_epi8(*v, m32));
            }
        }
    }
}

/// The panel's i32 sums for one super-block of 16 tokens: Σ_s sc_s · Σ_{k∈s} code_k ·
/// (a_k + 128) − corr, sub-blocks of `SUB` values (`SUB / 4` register loads each).
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn scaled_sums<const SUB: usize>(
    p: &Panel,
    ab: &ActBlock,
    nsb: usize,
    sb: usize,
) -> [__m512i; PANEL] {
    let nsub = QK_K / SUB;
    // this super-block's codes of each row, as fixed-size arrays (checked once here)
    let rows: [&[i8; QK_K]; PANEL] = std::array::from_fn(|t| {
        let o = (t * nsb + sb) * QK_K;
        p.codes[o..o + QK_K].try_into().expect("QK_K codes")
    });
    // SAFETY: register arithmetic; every load is bounds-checked except the code broadcasts,
    // whose offsets `4 * kg` stay below QK_K (kg < nsub * SUB / 4 = 64).
    unsafe {
        let mut s1 = [_mm512_setzero_si512(); PANEL];
        for s in 0..nsub {
            let mut a = [_mm512_setzero_si512(); PANEL];
            for u in 0..SUB / 4 {
                let kg = s * (SUB / 4) + u;
                let av = _mm512_load_si512(ab.q[kg].as_ptr() as *const __m512i);
                for (t, at) in a.iter_mut().enumerate() {
                    let c = (rows[t].as_ptr().add(4 * kg) as *const i32).read_unaligned();
                    *at = _mm512_dpbusd_epi32(*at, av, _mm512_set1_epi32(c));
                }
            }
            for (t, st) in s1.iter_mut().enumerate() {
                let sc = _mm512_set1_epi32(p.scales[(t * nsb + sb) * nsub + s]);
                *st = _mm512_add_epi32(*st, _mm512_mullo_epi32(a[t], sc));
            }
        }
        for (t, st) in s1.iter_mut().enumerate() {
            *st = _mm512_sub_epi32(*st, _mm512_set1_epi32(p.corr[t * nsb + sb]));
        }
        s1
    }
}

/// Eight unpacked Q4_K/Q5_K rows (sub-blocks of 32 with mins) against one group of 16
/// tokens: `out[row][token]`.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn panel_mins(p: &Panel, acts: &[ActBlock], nsb: usize) -> [[f32; GROUP]; PANEL] {
    // SAFETY: register arithmetic; every load is bounds-checked.
    unsafe {
        let mut res = [_mm512_setzero_ps(); PANEL];
        for (sb, ab) in acts.iter().enumerate().take(nsb) {
            let s1 = scaled_sums::<32>(p, ab, nsb, sb);
            let dt = _mm512_load_ps(ab.d.as_ptr());
            // activation sums of the eight sub-blocks of 32 (for the mins)
            let bs: [__m512i; 8] = std::array::from_fn(|s| {
                _mm512_add_epi32(
                    _mm512_load_si512(ab.bsum[2 * s].as_ptr() as *const __m512i),
                    _mm512_load_si512(ab.bsum[2 * s + 1].as_ptr() as *const __m512i),
                )
            });
            for t in 0..PANEL {
                let i = t * nsb + sb;
                let mut s2 = _mm512_setzero_si512();
                for (s, b) in bs.iter().enumerate() {
                    let m = _mm512_set1_epi32(p.mins[i * 8 + s]);
                    s2 = _mm512_add_epi32(s2, _mm512_mullo_epi32(*b, m));
                }
                let dd = _mm512_mul_ps(_mm512_set1_ps(p.d[i]), dt);
                let dm = _mm512_mul_ps(_mm512_set1_ps(p.dmin[i]), dt);
                res[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[t]), dd, res[t]);
                res[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(s2), dm, res[t]);
            }
        }
        lanes(&res)
    }
}

/// Eight unpacked rows without mins (Q6_K: sub-blocks of `SUB` = 16, IQ4_XS: 32) against one
/// group of 16 tokens: `out[row][token]`.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn panel_nomin<const SUB: usize>(
    p: &Panel,
    acts: &[ActBlock],
    nsb: usize,
) -> [[f32; GROUP]; PANEL] {
    // SAFETY: register arithmetic; every load is bounds-checked.
    unsafe {
        let mut res = [_mm512_setzero_ps(); PANEL];
        for (sb, ab) in acts.iter().enumerate().take(nsb) {
            let s1 = scaled_sums::<SUB>(p, ab, nsb, sb);
            let dt = _mm512_load_ps(ab.d.as_ptr());
            for t in 0..PANEL {
                let dd = _mm512_mul_ps(_mm512_set1_ps(p.d[t * nsb + sb]), dt);
                res[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[t]), dd, res[t]);
            }
        }
        lanes(&res)
    }
}

/// The accumulators' lanes as `out[row][token]`.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn lanes(res: &[__m512; PANEL]) -> [[f32; GROUP]; PANEL] {
    let mut out = [[0f32; GROUP]; PANEL];
    for (o, r) in out.iter_mut().zip(res) {
        // SAFETY: 16 writable f32.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *r) };
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The 32-wide types (Q4_0, Q5_0, Q8_0) against `BlockQ8x32` activations: the same scheme with
// a block of 32 values as the unit, and the scales applied in f32 per block (each block has its
// own f16 weight scale and f32 activation scale).

/// One block of 32 values of up to 16 tokens, re-laid as [`ActBlock`]'s codes: `q[kg]` holds
/// values `4kg..4kg + 4` of the 16 tokens (+128 as unsigned bytes), `d` their scales.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct ActBlock32 {
    q: [[u8; 64]; 8],
    d: [f32; GROUP],
}

impl Default for ActBlock32 {
    fn default() -> ActBlock32 {
        ActBlock32 {
            q: [[128; 64]; 8],
            d: [0.0; GROUP],
        }
    }
}

/// Eight rows of a 32-wide type unpacked: per row and block the 32 signed codes, the f32
/// scale and the correction `128 · Σ codes`.
#[derive(Default)]
struct Panel32 {
    codes: Counted<i8>,
    d: Counted<f32>,
    corr: Counted<i32>,
}

thread_local! {
    static ACTS32: RefCell<Counted<ActBlock32>> = const { RefCell::new(Counted(Vec::new())) };
    static PANELS32: RefCell<[Panel32; 2]> =
        RefCell::new([Panel32::default(), Panel32::default()]);
}

/// Whether [`matmul32`] takes weight type `t` for `n_tokens` tokens.
pub(crate) fn handles32(t: QType, n_tokens: usize) -> bool {
    n_tokens >= GROUP && matches!(t, QType::Q4_0 | QType::Q5_0 | QType::Q8_0)
}

/// [`matmul`] for the 32-wide types against the `BlockQ8x32` rows `acts` (each `cols / 32`
/// blocks). Same preconditions, with [`handles32`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul32(
    pool: &ThreadPool,
    t: QType,
    data: &[u8],
    rows: usize,
    cols: usize,
    rb: usize,
    acts: &[BlockQ8x32],
    n_tokens: usize,
    out: &mut [f32],
) {
    let nblk = cols / QK32;
    let groups = n_tokens.div_ceil(GROUP);
    // SAFETY: `matmul32` is reached only after run-time detection of AVX-512 VNNI; the
    // blocks passed are `bytes` long, a whole block of `t`.
    let unpack = |b: &[u8]| unsafe { super::rows8::unpack32(t, b) };
    let bytes = rb / nblk.max(1);
    ACTS32.with(|cell| {
        let mut packed = cell.borrow_mut();
        if packed.len() < groups * nblk {
            packed.grow(groups * nblk, ActBlock32::default());
        }
        for (gi, grp) in packed[..groups * nblk].chunks_mut(nblk).enumerate() {
            for (bi, ab) in grp.iter_mut().enumerate() {
                for tt in 0..GROUP {
                    let tok = gi * GROUP + tt;
                    let y = (tok < n_tokens).then(|| &acts[tok * nblk + bi]);
                    for kg in 0..8 {
                        for j in 0..4 {
                            ab.q[kg][4 * tt + j] = match y {
                                Some(y) => (y.qs[4 * kg + j] as u8) ^ 0x80,
                                None => 0x80,
                            };
                        }
                    }
                    ab.d[tt] = y.map_or(0.0, |y| y.d);
                }
            }
        }
        let packed = &packed[..groups * nblk];
        let items = rows.div_ceil(2 * PANEL);
        let next = AtomicUsize::new(0);
        let dst = DisjointOut::new(out);
        pool.run_dynamic(|_ith, _nth| {
            PANELS32.with(|pc| {
                let mut panels = pc.borrow_mut();
                loop {
                    let item = next.fetch_add(1, Ordering::Relaxed);
                    if item >= items {
                        break;
                    }
                    let r0 = item * 2 * PANEL;
                    let n_rows = (2 * PANEL).min(rows - r0);
                    let halves = n_rows.div_ceil(PANEL);
                    for (h, p) in panels.iter_mut().enumerate().take(halves) {
                        p.codes.grow(PANEL * nblk * QK32, 0);
                        p.d.grow(PANEL * nblk, 0.0);
                        p.corr.grow(PANEL * nblk, 0);
                        for j in 0..PANEL {
                            // a last partial panel repeats its final row
                            let r = r0 + (h * PANEL + j).min(n_rows - 1);
                            let row = &data[r * rb..(r + 1) * rb];
                            for bi in 0..nblk {
                                let b = &row[bi * bytes..(bi + 1) * bytes];
                                let q = unpack(b);
                                let i = j * nblk + bi;
                                p.codes[i * QK32..(i + 1) * QK32].copy_from_slice(&q);
                                p.d[i] = f16_at(b, 0);
                                p.corr[i] = 128 * q.iter().map(|&c| c as i32).sum::<i32>();
                            }
                        }
                    }
                    for g in 0..groups {
                        let ab = &packed[g * nblk..(g + 1) * nblk];
                        let mut res = [[[0f32; GROUP]; PANEL]; 2];
                        for (h, p) in panels.iter().enumerate().take(halves) {
                            // SAFETY: reached only after run-time detection of AVX-512 VNNI;
                            // the kernel bounds its accesses by the panel's and blocks' lengths.
                            res[h] = unsafe { panel32(p, ab, nblk) };
                        }
                        for k in 0..GROUP.min(n_tokens - g * GROUP) {
                            let v: [f32; 2 * PANEL] =
                                std::array::from_fn(|j| res[j / PANEL][j % PANEL][k]);
                            let at = (g * GROUP + k) * rows + r0;
                            // SAFETY: item `item` is taken by one thread only, and it owns
                            // rows r0..r0 + n_rows of every token's output.
                            unsafe {
                                if n_rows == 2 * PANEL {
                                    dst.write_slice(at, &v);
                                } else {
                                    dst.write_slice(at, &v[..n_rows]);
                                }
                            }
                        }
                    }
                }
            })
        });
    });
}

/// Eight unpacked rows of a 32-wide type against one group of 16 tokens: `out[row][token]`.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn panel32(p: &Panel32, acts: &[ActBlock32], nblk: usize) -> [[f32; GROUP]; PANEL] {
    // SAFETY: register arithmetic; every load is bounds-checked except the code broadcasts,
    // whose offsets `4 * kg` stay below QK32 (kg < 8).
    unsafe {
        let mut res = [_mm512_setzero_ps(); PANEL];
        for (bi, ab) in acts.iter().enumerate().take(nblk) {
            let rows: [&[i8; QK32]; PANEL] = std::array::from_fn(|t| {
                let o = (t * nblk + bi) * QK32;
                p.codes[o..o + QK32].try_into().expect("QK32 codes")
            });
            let mut a = [_mm512_setzero_si512(); PANEL];
            for kg in 0..8 {
                let av = _mm512_load_si512(ab.q[kg].as_ptr() as *const __m512i);
                for (t, at) in a.iter_mut().enumerate() {
                    let c = (rows[t].as_ptr().add(4 * kg) as *const i32).read_unaligned();
                    *at = _mm512_dpbusd_epi32(*at, av, _mm512_set1_epi32(c));
                }
            }
            let dt = _mm512_load_ps(ab.d.as_ptr());
            for t in 0..PANEL {
                let i = t * nblk + bi;
                let s = _mm512_sub_epi32(a[t], _mm512_set1_epi32(p.corr[i]));
                let dd = _mm512_mul_ps(_mm512_set1_ps(p.d[i]), dt);
                res[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd, res[t]);
            }
        }
        lanes(&res)
    }
}
