//! Decode-batch kernels on AVX-512 VNNI for the types of the common GGUF mixes (Q4_0, Q5_0,
//! Q8_0, Q4_K, Q6_K): eight weight rows against one to four tokens, with the eight rows in the
//! lanes of the result, used for every call of fewer than 16 tokens (one token included).
//!
//! Why it exists: a server decodes several sequences in one pass, so each weight row meets 2–8
//! activation rows. The older row × token tiles kept one 8-lane f32 accumulator per (row,
//! token) and paid a convert, a multiply and an FMA on all eight lanes for every block, where
//! only the lanes' sum matters; with four tokens the pass cost 2.8× one token. Here the eight
//! rows' integer block sums are folded into one vector with `vphaddd` (eight rows × one token
//! per register), so the f32 work per block is one convert, one multiply and one FMA for eight
//! rows. From two tokens on, the 32-wide types go sixteen rows at a time through a kernel that
//! transposes the weight codes in registers (one row per i32 lane of a 512-bit register), which
//! needs no lane sums at all and pays the transpose once for all the tokens: at 4 tokens a pass
//! over a Q8_0 weight costs ~1.2–1.4× one token instead of 2.8× with the old tiles. Q4_K and
//! Q6_K use the eight-row rows-in-lanes kernels of `avx512`, which were already laid out that
//! way (512-bit sixteen-row versions of them were measured slower).
//!
//! Batch invariance: every path here computes, for each (row, token), the exact integer sum of
//! each block and then `acc = fma(f32(sum), d_w · d_a, acc)` block after block — the order the
//! prefill GEMM ([`super::gemm_k`]) uses too (for the k-quants: exact super-block sums
//! `Σ sc·Σ q·a` and `Σ m·bsum`, then one FMA each). So a sequence's logits do not depend on
//! how many other sequences share the pass, nor on whether a prompt chunk rides along (which
//! sends the batch through the GEMM): a greedy stream served next to others is the stream it
//! would be alone. Rows past the last whole group of eight (rare: real row counts are multiples
//! of eight) go through [`row_exact`], which does the same arithmetic in scalar code.

// See avx2.rs: intrinsics are safe in `#[target_feature]` functions only on newer compilers.
#![allow(unused_unsafe)]

use std::arch::x86_64::*;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::avx2::load32;
use super::avx512::{q4_0_codes, q5_0_codes, q8_0_codes, rows8_q4k, rows8_q6k};
use crate::formats::{q4_0, q4_k, q5_0, q6_k, q8_0, QuantFormat, Q4K, Q4_0, Q5_0, Q6K, Q8_0};
use crate::partner::{BlockQ8K, BlockQ8x32, QK32, QK_K};
use crate::pool::{DisjointOut, ThreadPool};
use crate::QType;

/// Rows per kernel call (the i32 lanes of a 256-bit register).
const ROWS: usize = 8;

/// Whether [`matmul`] takes weight type `t` (with activations of its partner type).
pub(crate) fn handles(t: QType) -> bool {
    matches!(
        t,
        QType::Q4_0 | QType::Q5_0 | QType::Q8_0 | QType::Q4K | QType::Q6K
    )
}

/// Whether the one-token calls of type `t` go through [`matmul`] too (the 32-wide types, whose
/// eight-row kernel beats the one-row kernel). The k-quants' one-row kernels are faster for one
/// token (they prefetch and need no transposes) and use the same arithmetic, so `matmul` keeps
/// them there.
pub(crate) fn handles_one(t: QType) -> bool {
    matches!(t, QType::Q4_0 | QType::Q5_0 | QType::Q8_0)
}

/// The activation blocks the kernels here read: the 32-wide types' and the k-quants'.
pub(crate) trait Act: Sized + Sync {
    /// Values per block.
    const VALUES: usize;
    /// Eight rows of `t` against `T` (1..=4) activation rows: `out[t][r]`.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI; `handles(t)` with
    /// this partner type.
    unsafe fn rows8<const T: usize>(
        t: QType,
        w: [&[u8]; ROWS],
        a: [&[Self]; T],
    ) -> [[f32; ROWS]; T];
    /// Sixteen rows against `T` (2..=4) activation rows, `out[t][r]`, with the same
    /// arithmetic (weights transposed in 512-bit registers).
    ///
    /// # Safety
    /// As for [`Act::rows8`].
    unsafe fn rows16<const T: usize>(t: QType, w: [&[u8]; 16], a: [&[Self]; T]) -> [[f32; 16]; T];
    /// One row with the same arithmetic, in scalar code.
    fn row_exact(t: QType, w: &[u8], a: &[Self]) -> f32;
}

impl Act for BlockQ8x32 {
    const VALUES: usize = QK32;
    #[inline]
    unsafe fn rows8<const T: usize>(
        t: QType,
        w: [&[u8]; ROWS],
        a: [&[Self]; T],
    ) -> [[f32; ROWS]; T] {
        // SAFETY: same features; the kernels bound every access by the slice lengths.
        unsafe {
            match t {
                QType::Q4_0 if T == 1 => {
                    let r = rows8_q4_0_one(w, a[0]);
                    std::array::from_fn(|_| r)
                }
                QType::Q4_0 => rows8_q4_0::<T>(w, a),
                QType::Q5_0 => rows8_q5_0::<T>(w, a),
                _ => rows8_q8_0::<T>(w, a),
            }
        }
    }
    #[inline]
    unsafe fn rows16<const T: usize>(t: QType, w: [&[u8]; 16], a: [&[Self]; T]) -> [[f32; 16]; T] {
        // SAFETY: same features; the kernels bound every access by the slice lengths.
        unsafe {
            match t {
                QType::Q4_0 => rows16_q4_0::<T>(w, a),
                QType::Q5_0 => rows16_q5_0::<T>(w, a),
                _ => rows16_q8_0::<T>(w, a),
            }
        }
    }
    fn row_exact(t: QType, w: &[u8], a: &[Self]) -> f32 {
        row_exact_32(t, w, a)
    }
}

impl Act for BlockQ8K {
    const VALUES: usize = QK_K;
    #[inline]
    unsafe fn rows8<const T: usize>(
        t: QType,
        w: [&[u8]; ROWS],
        a: [&[Self]; T],
    ) -> [[f32; ROWS]; T] {
        // SAFETY: same features; the kernels bound every access by the slice lengths.
        let by_row = unsafe {
            match t {
                QType::Q4K => rows8_q4k::<T>(w, a),
                _ => rows8_q6k::<T>(w, a),
            }
        };
        std::array::from_fn(|k| std::array::from_fn(|r| by_row[r][k]))
    }
    #[inline]
    unsafe fn rows16<const T: usize>(t: QType, w: [&[u8]; 16], a: [&[Self]; T]) -> [[f32; 16]; T] {
        // SAFETY: same features; the kernels bound every access by the slice lengths.
        unsafe {
            // (512-bit sixteen-row versions of these were measured slower on an Emerald
            // Rapids Xeon: `vpmulld` on 512 bits is two slow uops there)
            let x = Self::rows8::<T>(t, std::array::from_fn(|j| w[j]), a);
            let y = Self::rows8::<T>(t, std::array::from_fn(|j| w[8 + j]), a);
            std::array::from_fn(|k| {
                std::array::from_fn(|r| if r < 8 { x[k][r] } else { y[k][r - 8] })
            })
        }
    }
    fn row_exact(t: QType, w: &[u8], a: &[Self]) -> f32 {
        row_exact_k(t, w, a)
    }
}

/// The sum of the eight lanes of each of `p[0..8]`, as lane `r` of the result.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn fold8(p: &[__m256i; ROWS]) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe {
        // per 128-bit half: [r0 r0 r1 r1 | ...] pair sums, then [r0 r1 r2 r3] quad sums
        let h01 = _mm256_hadd_epi32(p[0], p[1]);
        let h23 = _mm256_hadd_epi32(p[2], p[3]);
        let h45 = _mm256_hadd_epi32(p[4], p[5]);
        let h67 = _mm256_hadd_epi32(p[6], p[7]);
        let a = _mm256_hadd_epi32(h01, h23);
        let b = _mm256_hadd_epi32(h45, h67);
        // a = [r0..r3 low halves | r0..r3 high halves], b likewise for r4..r7
        let lo = _mm256_permute2x128_si256(a, b, 0x20);
        let hi = _mm256_permute2x128_si256(a, b, 0x31);
        _mm256_add_epi32(lo, hi)
    }
}

/// The eight rows' f16 scales of block `i` (at byte 0 of each `bytes`-byte block) as f32.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI; every row must hold
/// block `i`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn scales8(w: &[&[u8]; ROWS], i: usize, bytes: usize) -> __m256 {
    // SAFETY: the caller guarantees block i of every row; register arithmetic.
    unsafe {
        let h = |r: usize| -> i16 {
            let p = w[r].as_ptr().add(i * bytes) as *const [u8; 2];
            i16::from_le_bytes(p.read_unaligned())
        };
        _mm256_cvtph_ps(_mm_setr_epi16(
            h(0),
            h(1),
            h(2),
            h(3),
            h(4),
            h(5),
            h(6),
            h(7),
        ))
    }
}

/// A block's 32 signed values (code minus offset) of Q4_0, Q5_0 or Q8_0, unpacked with the
/// vector code functions (the prefill GEMM's panel fill: the scalar unpack of Q5_0's high bits
/// showed at ~5 % in a profile of a mixed prefill + decode pass).
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn unpack32(t: QType, b: &[u8]) -> [i8; QK32] {
    let mut q = [0i8; QK32];
    // SAFETY: bounds-checked loads inside the code functions, register arithmetic, a 32-byte
    // store into `q`.
    unsafe {
        let v = match t {
            QType::Q4_0 => _mm256_sub_epi8(q4_0_codes(b), _mm256_set1_epi8(8)),
            QType::Q5_0 => _mm256_sub_epi8(q5_0_codes(b), _mm256_set1_epi8(16)),
            _ => load32(b, 2),
        };
        _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, v);
    }
    q
}

/// Defines `$name::<T>(w, a) -> [[f32; 8]; T]`: eight rows of a 32-wide type against `T`
/// (1..=4) activation rows, `out[t][r]`. `$codes` gives a block's unsigned codes, `$off`
/// their offset (removed exactly: each accumulator starts at `-off · Σ a`).
macro_rules! rows8_32 {
    ($name:ident, $F:ident, $codes:ident, $off:expr) => {
        /// # Safety
        /// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name<const T: usize>(
            w: [&[u8]; ROWS],
            a: [&[BlockQ8x32]; T],
        ) -> [[f32; ROWS]; T] {
            const BYTES: usize = <$F as QuantFormat>::BYTES;
            let wl = w.iter().fold(usize::MAX, |m, r| m.min(r.len()));
            let nb = a.iter().fold(wl / BYTES, |m, x| m.min(x.len()));
            // SAFETY: i < nb, so every weight row holds block i and every activation row holds
            // block i; register arithmetic.
            unsafe {
                let mut acc = [_mm256_setzero_ps(); T];
                for i in 0..nb {
                    let q: [__m256i; ROWS] = std::array::from_fn(|r| {
                        $codes(w[r].get_unchecked(BYTES * i..BYTES * i + BYTES))
                    });
                    let dw = scales8(&w, i, BYTES);
                    for t in 0..T {
                        let y = a[t].get_unchecked(i);
                        let init =
                            _mm256_zextsi128_si256(_mm_cvtsi32_si128(y.sum.wrapping_mul(-$off)));
                        let yq = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                        let p: [__m256i; ROWS] =
                            std::array::from_fn(|r| _mm256_dpbusd_epi32(init, q[r], yq));
                        let s = _mm256_cvtepi32_ps(fold8(&p));
                        acc[t] = _mm256_fmadd_ps(s, _mm256_mul_ps(dw, _mm256_set1_ps(y.d)), acc[t]);
                    }
                }
                let mut out = [[0f32; ROWS]; T];
                for t in 0..T {
                    _mm256_storeu_ps(out[t].as_mut_ptr(), acc[t]);
                }
                out
            }
        }
    };
}

/// The order of the rows in the lanes of [`rows16_32`]'s 512-bit transposes: lane `l` holds row
/// `LANE_ROW[l]` (the 128-bit lane shuffles interleave the two groups of eight rows).
const LANE_ROW: [usize; 16] = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15];

/// Defines `$name::<T>(w, a) -> [[f32; 16]; T]`: sixteen rows of a 32-wide type against `T`
/// (2..=4) activation rows, `out[t][r]`, with the weights transposed in registers so that
/// each i32 lane of a 512-bit register is one row: per block the sixteen rows' codes (8 inserts
/// and 24 in-lane shuffles) meet each token in eight `vpdpbusd` with the token's four bytes
/// broadcast, and no lane sums are needed. Worth it from two tokens on (the transpose is paid
/// once per block for all of them); the arithmetic is [`rows8_32`]'s, bit for bit.
macro_rules! rows16_32 {
    ($name:ident, $F:ident, $codes:ident, $off:expr) => {
        /// # Safety
        /// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name<const T: usize>(w: [&[u8]; 16], a: [&[BlockQ8x32]; T]) -> [[f32; 16]; T] {
            const BYTES: usize = <$F as QuantFormat>::BYTES;
            let wl = w.iter().fold(usize::MAX, |m, r| m.min(r.len()));
            let nb = a.iter().fold(wl / BYTES, |m, x| m.min(x.len()));
            // SAFETY: i < nb, so every weight row holds block i and every activation row holds
            // block i; register arithmetic.
            unsafe {
                let mut acc = [_mm512_setzero_ps(); T];
                for i in 0..nb {
                    let blk = |r: usize| w[r].get_unchecked(BYTES * i..BYTES * i + BYTES);
                    // z[j] = [row j | row j + 8], 32 code bytes each
                    let z: [__m512i; 8] = std::array::from_fn(|j| {
                        _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512($codes(blk(j))),
                            $codes(blk(j + 8)),
                        )
                    });
                    let t: [__m512i; 8] = std::array::from_fn(|j| {
                        let (x, y) = (z[j & !1], z[j | 1]);
                        if j & 1 == 0 {
                            _mm512_unpacklo_epi32(x, y)
                        } else {
                            _mm512_unpackhi_epi32(x, y)
                        }
                    });
                    // u[k] (k < 4): dword k of rows 0..4 | rows 8..12 (128-bit lanes 0, 2) and
                    // dword 4 + k (lanes 1, 3); u[4 + k] the same for rows 4..8 | 12..16
                    let u: [__m512i; 8] = std::array::from_fn(|m| {
                        let g = 4 * (m / 4);
                        let k = m % 4;
                        let (x, y) = (t[g + (k / 2)], t[g + 2 + (k / 2)]);
                        if k % 2 == 0 {
                            _mm512_unpacklo_epi64(x, y)
                        } else {
                            _mm512_unpackhi_epi64(x, y)
                        }
                    });
                    // c[k]: dword k of the sixteen rows, in the order LANE_ROW
                    let c: [__m512i; 8] = std::array::from_fn(|k| {
                        if k < 4 {
                            _mm512_shuffle_i32x4::<0b10_00_10_00>(u[k], u[4 + k])
                        } else {
                            _mm512_shuffle_i32x4::<0b11_01_11_01>(u[k - 4], u[k])
                        }
                    });
                    let h = |l: usize| -> i16 {
                        let p = blk(LANE_ROW[l]).as_ptr() as *const [u8; 2];
                        i16::from_le_bytes(p.read_unaligned())
                    };
                    let dw = _mm512_cvtph_ps(_mm256_setr_epi16(
                        h(0),
                        h(1),
                        h(2),
                        h(3),
                        h(4),
                        h(5),
                        h(6),
                        h(7),
                        h(8),
                        h(9),
                        h(10),
                        h(11),
                        h(12),
                        h(13),
                        h(14),
                        h(15),
                    ));
                    let mut sum: [__m512i; T] = std::array::from_fn(|n| {
                        _mm512_set1_epi32(a[n].get_unchecked(i).sum.wrapping_mul(-$off))
                    });
                    for (k, ck) in c.iter().enumerate() {
                        for n in 0..T {
                            let q = &a[n].get_unchecked(i).qs;
                            let y4 = (q.as_ptr().add(4 * k) as *const i32).read_unaligned();
                            sum[n] = _mm512_dpbusd_epi32(sum[n], *ck, _mm512_set1_epi32(y4));
                        }
                    }
                    for n in 0..T {
                        let yd = _mm512_set1_ps(a[n].get_unchecked(i).d);
                        acc[n] = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(sum[n]),
                            _mm512_mul_ps(dw, yd),
                            acc[n],
                        );
                    }
                }
                let mut out = [[0f32; 16]; T];
                for n in 0..T {
                    let mut lanes = [0f32; 16];
                    _mm512_storeu_ps(lanes.as_mut_ptr(), acc[n]);
                    for (l, &r) in LANE_ROW.iter().enumerate() {
                        out[n][r] = lanes[l];
                    }
                }
                out
            }
        }
    };
}

rows16_32!(rows16_q4_0, Q4_0, q4_0_codes, 8);
rows16_32!(rows16_q5_0, Q5_0, q5_0_codes, 16);
rows16_32!(rows16_q8_0, Q8_0, q8_0_codes, 128);

rows8_32!(rows8_q4_0, Q4_0, q4_0_codes, 8);

/// Q4_0, eight rows against one token (decode), with the arithmetic of [`rows8_32`]: the 16 code
/// bytes of two rows (`r`, `r + 4`) share one register, so one nibble split serves two rows and
/// each `vpdpbusd` meets the block's low or high 16 activations broadcast to both halves; the
/// four registers' lanes fold into the eight rows' sums with three `vphaddd`, and the code offset
/// (−8 · Σ a, the same for every row) is one add after the fold. Where the rows are evenly
/// spaced (rows of one matrix), the next group of eight rows is prefetched while this one is
/// computed: a group of short rows (1536 columns: 864 bytes a row) is too short a stream for
/// the hardware prefetcher, and such weights ran at ~60 % of the speed of long-row ones.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn rows8_q4_0_one(w: [&[u8]; ROWS], a: &[BlockQ8x32]) -> [f32; ROWS] {
    const BYTES: usize = <Q4_0 as QuantFormat>::BYTES;
    let wl = w.iter().fold(usize::MAX, |m, r| m.min(r.len()));
    let nb = a.len().min(wl / BYTES);
    // the next group of eight rows, where the rows are evenly spaced (as in a matrix):
    // 8 · 18 · nb bytes, 2.25 lines per block, prefetched 3 lines per block
    let base = w[0].as_ptr() as isize;
    let stride = w[1].as_ptr() as isize - base;
    let even = (0..ROWS).all(|r| w[r].as_ptr() as isize - base == r as isize * stride);
    let next = w[0].as_ptr().wrapping_offset(8 * stride);
    // SAFETY: i < nb, so every weight row holds block i and the activation row holds block i;
    // register arithmetic; a prefetch never faults, wherever it points.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let y = a.get_unchecked(i);
            if even {
                for k in 0..3 {
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(64 * (3 * i + k)) as *const i8);
                }
            }
            let blk = |r: usize| w[r].get_unchecked(BYTES * i..BYTES * i + BYTES).as_ptr();
            let ylo = _mm256_broadcastsi128_si256(_mm_loadu_si128(y.qs.as_ptr() as *const __m128i));
            let yhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                y.qs.as_ptr().add(16) as *const __m128i
            ));
            let p: [__m256i; 4] = std::array::from_fn(|k| {
                let v = _mm256_inserti128_si256::<1>(
                    _mm256_castsi128_si256(_mm_loadu_si128(blk(k).add(2) as *const __m128i)),
                    _mm_loadu_si128(blk(k + 4).add(2) as *const __m128i),
                );
                let lo = _mm256_and_si256(v, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                _mm256_dpbusd_epi32(
                    _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, ylo),
                    hi,
                    yhi,
                )
            });
            // [r0 r1 r2 r3 | r4 r5 r6 r7]
            let f = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
            let s = _mm256_add_epi32(f, _mm256_set1_epi32(y.sum.wrapping_mul(-8)));
            let dw = scales8(&w, i, BYTES);
            acc = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(s),
                _mm256_mul_ps(dw, _mm256_set1_ps(y.d)),
                acc,
            );
        }
        let mut out = [0f32; ROWS];
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
        out
    }
}
rows8_32!(rows8_q5_0, Q5_0, q5_0_codes, 16);
rows8_32!(rows8_q8_0, Q8_0, q8_0_codes, 128);

/// One row of a 32-wide type against one activation row with the arithmetic of the vector
/// kernels: exact integer block sums, then `acc = fma(sum, d_w · d_a, acc)` block by block.
fn row_exact_32(t: QType, w: &[u8], a: &[BlockQ8x32]) -> f32 {
    type Unpack = fn(&[u8]) -> [i8; QK32];
    let (bytes, unpack): (usize, Unpack) = match t {
        QType::Q4_0 => (Q4_0::BYTES, q4_0::unpack),
        QType::Q5_0 => (Q5_0::BYTES, q5_0::unpack),
        _ => (Q8_0::BYTES, q8_0::unpack),
    };
    let mut acc = 0f32;
    for (b, y) in w.chunks_exact(bytes).zip(a) {
        let q = unpack(b);
        let s: i32 = q
            .iter()
            .zip(&y.qs)
            .map(|(&c, &v)| c as i32 * v as i32)
            .sum();
        let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32() * y.d;
        acc = (s as f32).mul_add(d, acc);
    }
    acc
}

/// One Q4_K or Q6_K row against one activation row with the arithmetic of the vector kernels:
/// per super-block the exact integer sums, then `acc = fma(s1, d·d_a, acc)` (and for Q4_K
/// `acc = acc − s2 · dmin·d_a`, fused).
fn row_exact_k(t: QType, w: &[u8], a: &[BlockQ8K]) -> f32 {
    let bytes = if t == QType::Q4K {
        Q4K::BYTES
    } else {
        Q6K::BYTES
    };
    let mut acc = 0f32;
    for (b, y) in w.chunks_exact(bytes).zip(a) {
        if t == QType::Q4K {
            let (sc, mn) = q4_k::kscales(&b[4..16]);
            let q = q4_k::unpack(b);
            let mut s1 = 0i32;
            let mut s2 = 0i32;
            for j in 0..8 {
                let r = 32 * j..32 * j + 32;
                let dot: i32 = q[r.clone()]
                    .iter()
                    .zip(&y.qs[r])
                    .map(|(&c, &v)| c as i32 * v as i32)
                    .sum();
                s1 += sc[j] as i32 * dot;
                s2 += mn[j] as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
            }
            let d = f16(b, 0);
            let dmin = f16(b, 2);
            acc = (s1 as f32).mul_add(d * y.d, acc);
            acc = (-(s2 as f32)).mul_add(dmin * y.d, acc);
        } else {
            let q = q6_k::unpack(b);
            let mut s1 = 0i32;
            for j in 0..16 {
                let r = 16 * j..16 * j + 16;
                let dot: i32 = q[r.clone()]
                    .iter()
                    .zip(&y.qs[r])
                    .map(|(&c, &v)| c as i32 * v as i32)
                    .sum();
                s1 += b[q6_k::SCALES_OFF + j] as i8 as i32 * dot;
            }
            acc = (s1 as f32).mul_add(f16(b, q6_k::D_OFF) * y.d, acc);
        }
    }
    acc
}

/// The f16 at byte `off` of `b` as f32.
fn f16(b: &[u8], off: usize) -> f32 {
    half::f16::from_le_bytes([b[off], b[off + 1]]).to_f32()
}

/// `out[k * rows + r] = W[r] · act[k]` for `n_tokens` activation rows `acts` (each
/// `cols / 32` blocks) and Q4_0/Q5_0/Q8_0 weights `data` (`rows` rows of `rb` bytes), on every
/// thread of `pool`: row chunks (whole groups of eight) from a shared counter, each chunk meeting
/// the tokens four at a time while its weight bytes are in cache.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI; `handles(t)`;
/// `data.len() == rows * rb`, `acts.len() == n_tokens * cols / 32`, `out.len() == n_tokens *
/// rows`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul<A: Act>(
    pool: &ThreadPool,
    t: QType,
    data: &[u8],
    rows: usize,
    cols: usize,
    rb: usize,
    acts: &[A],
    n_tokens: usize,
    out: &mut [f32],
) {
    let nth = pool.n_threads();
    let mut chunk = rows.div_ceil(nth * 8).max(1);
    if n_tokens > 1 {
        chunk = chunk.min((16 * 1024 / rb.max(1)).max(1));
    }
    // whole groups of sixteen rows from two tokens on (the sixteen-row kernels), of eight for one
    let chunk = chunk.next_multiple_of(if n_tokens > 1 { 2 * ROWS } else { ROWS });
    let n_chunks = rows.div_ceil(chunk);
    let next = AtomicUsize::new(0);
    let dst = DisjointOut::new(out);
    let w = Rows {
        t,
        data,
        rows,
        rb,
        per: cols / A::VALUES,
    };
    pool.run_dynamic(|_ith, _nth| loop {
        let c = next.fetch_add(1, Ordering::Relaxed);
        if c >= n_chunks {
            break;
        }
        let r0 = c * chunk;
        // SAFETY: the caller guarantees the features and lengths; chunk `c` is taken by this
        // thread only, so it owns rows r0.. of every token's output.
        unsafe { w.chunk(r0, (r0 + chunk).min(rows), acts, n_tokens, &dst) };
    });
}

/// A weight of one of the [`handles`] types, as [`Rows::chunk`] reads it.
pub(crate) struct Rows<'a> {
    /// Weight type.
    pub t: QType,
    /// `rows * rb` bytes.
    pub data: &'a [u8],
    /// Rows (outputs per token).
    pub rows: usize,
    /// Bytes per row.
    pub rb: usize,
    /// Activation blocks per token (`cols / A::VALUES`).
    pub per: usize,
}

impl Rows<'_> {
    /// Rows `r0..r1` against the `n_tokens` activation rows `acts`, written to
    /// `dst[k * rows + r]`.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA, F16C, AVX512F/BW/VL and AVX512_VNNI; `handles(self.t)`;
    /// `r1 <= rows`, `acts` holds `n_tokens * per` blocks, `dst` holds `n_tokens * rows`
    /// values and no other thread writes rows `r0..r1` of it.
    pub(crate) unsafe fn chunk<A: Act>(
        &self,
        r0: usize,
        r1: usize,
        acts: &[A],
        n_tokens: usize,
        dst: &DisjointOut,
    ) {
        let (t, rows, rb, per) = (self.t, self.rows, self.rb, self.per);
        let act = |k: usize| &acts[k * per..(k + 1) * per];
        let row = |r: usize| &self.data[r * rb..(r + 1) * rb];
        let full = r0 + (r1 - r0) / ROWS * ROWS;
        let mut k0 = 0;
        while k0 < n_tokens {
            let nt = (n_tokens - k0).min(4);
            let mut r = r0;
            while nt >= 2 && r + 16 <= full {
                let w: [&[u8]; 16] = std::array::from_fn(|j| row(r + j));
                // SAFETY: the caller guarantees the features.
                let res: [[f32; 16]; 4] = unsafe {
                    match nt {
                        2 => pad16(A::rows16::<2>(t, w, [act(k0), act(k0 + 1)])),
                        3 => pad16(A::rows16::<3>(t, w, [act(k0), act(k0 + 1), act(k0 + 2)])),
                        _ => A::rows16::<4>(t, w, [act(k0), act(k0 + 1), act(k0 + 2), act(k0 + 3)]),
                    }
                };
                for (k, v) in res.iter().enumerate().take(nt) {
                    // SAFETY: the caller gives this thread rows r0..r1 of every token.
                    unsafe { dst.write_slice((k0 + k) * rows + r, v) };
                }
                r += 16;
            }
            while r < full {
                let w: [&[u8]; ROWS] = std::array::from_fn(|j| row(r + j));
                // SAFETY: the caller guarantees the features.
                let res: [[f32; ROWS]; 4] = unsafe {
                    match nt {
                        1 => pad(A::rows8::<1>(t, w, [act(k0)])),
                        2 => pad(A::rows8::<2>(t, w, [act(k0), act(k0 + 1)])),
                        3 => pad(A::rows8::<3>(t, w, [act(k0), act(k0 + 1), act(k0 + 2)])),
                        _ => A::rows8::<4>(t, w, [act(k0), act(k0 + 1), act(k0 + 2), act(k0 + 3)]),
                    }
                };
                for (k, v) in res.iter().enumerate().take(nt) {
                    // SAFETY: the caller gives this thread rows r0..r1 of every token.
                    unsafe { dst.write_slice((k0 + k) * rows + r, v) };
                }
                r += ROWS;
            }
            for r in full..r1 {
                for k in k0..k0 + nt {
                    // SAFETY: as above.
                    unsafe { dst.write(k * rows + r, A::row_exact(t, row(r), act(k))) };
                }
            }
            k0 += nt;
        }
    }
}

/// `T` sixteen-row results widened to four (the rest zero).
fn pad16<const T: usize>(v: [[f32; 16]; T]) -> [[f32; 16]; 4] {
    std::array::from_fn(|k| if k < T { v[k] } else { [0.0; 16] })
}

/// `T` result rows widened to four (the rest zero).
fn pad<const T: usize>(v: [[f32; ROWS]; T]) -> [[f32; ROWS]; 4] {
    std::array::from_fn(|k| if k < T { v[k] } else { [0.0; ROWS] })
}
