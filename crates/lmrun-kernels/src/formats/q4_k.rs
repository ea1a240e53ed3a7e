//! Q4_K: 256-weight super-blocks of 4-bit values with 6-bit scales and mins per 32 values
//! (12 packed bytes, shared with Q5_K) and f16 super-block scale and min; dotted with
//! [`BlockQ8K`] activations (the mins meet the activation block sums).

use super::{f16_at, idot_u8, QuantFormat, QK_K};
use crate::partner::BlockQ8K;

/// 256 weights, 4-bit, 6-bit sub-block scales and mins.
#[derive(Debug, Clone, Copy)]
pub struct Q4K;

/// 6-bit scales and mins of Q4_K/Q5_K (8 of each) from the 12 packed bytes.
#[inline(always)]
pub(crate) fn kscales(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            mn[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
            mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (sc, mn)
}

/// Values 0..=15 in element order.
#[inline(always)]
pub(crate) fn unpack(b: &[u8]) -> [u8; QK_K] {
    let qs = &b[16..Q4K::BYTES];
    let mut q = [0u8; QK_K];
    for j in 0..4 {
        for l in 0..32 {
            q[64 * j + l] = qs[32 * j + l] & 0x0F;
            q[64 * j + 32 + l] = qs[32 * j + l] >> 4;
        }
    }
    q
}

/// Dequantization of a Q4_K/Q5_K block from its unpacked values `q`.
#[inline(always)]
pub(super) fn dequantize_k45(b: &[u8], q: &[u8; QK_K], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = kscales(&b[4..16]);
    for j in 0..8 {
        let d1 = d * sc[j] as f32;
        let m1 = dmin * mn[j] as f32;
        for l in 0..32 {
            y[32 * j + l] = d1 * q[32 * j + l] as f32 - m1;
        }
    }
}

/// Scalar dot of one Q4_K/Q5_K block (unpacked values `q`) with its activation block.
#[inline(always)]
pub(super) fn dot_k45(b: &[u8], q: &[u8; QK_K], y: &BlockQ8K) -> f32 {
    let (sc, mn) = kscales(&b[4..16]);
    let mut isum = 0i32;
    let mut msum = 0i32;
    for j in 0..8 {
        isum += sc[j] as i32 * idot_u8(&q[32 * j..32 * j + 32], &y.qs[32 * j..32 * j + 32]);
        msum += mn[j] as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
    }
    y.d * (f16_at(b, 0) * isum as f32 - f16_at(b, 2) * msum as f32)
}

/// Scalar dot of a row of Q4_K/Q5_K blocks (`bytes` each, values `unpack(b)`).
#[inline(always)]
pub(super) fn dot_k45_row(
    w: &[u8],
    a: &[BlockQ8K],
    bytes: usize,
    unpack: impl Fn(&[u8]) -> [u8; QK_K],
) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(bytes).zip(a) {
        s += dot_k45(b, &unpack(b), y);
    }
    s
}

impl QuantFormat for Q4K {
    const NAME: &'static str = "Q4_K";
    const GGML_ID: u32 = 12;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 16 + QK_K / 2;
    const F16_SCALES: &'static [usize] = &[0, 2];
    type Act = BlockQ8K;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        dequantize_k45(b, &unpack(b), y);
    }

    fn dot(w: &[u8], a: &[BlockQ8K]) -> f32 {
        dot_k45_row(w, a, Self::BYTES, unpack)
    }
}
