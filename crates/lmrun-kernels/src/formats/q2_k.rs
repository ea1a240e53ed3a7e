//! Q2_K: 256-weight super-blocks of 2-bit values with a 4-bit scale and min per 16 values and
//! f16 super-block scale and min (at the end of the block); dotted with [`BlockQ8K`]
//! activations (the mins meet the activation block sums).

use super::{f16_at, idot_u8, QuantFormat, QK_K};
use crate::partner::BlockQ8K;

/// 256 weights, 2-bit, 4-bit sub-block scales and mins.
#[derive(Debug, Clone, Copy)]
pub struct Q2K;

/// Byte offset of the f16 super-block scale (the min follows it).
pub(crate) const D_OFF: usize = 80;

/// (scale, min) nibbles per 16 values, and 2-bit values 0..=3.
#[inline(always)]
fn unpack(b: &[u8]) -> ([u8; 16], [u8; 16], [u8; QK_K]) {
    let mut sc = [0u8; 16];
    let mut mn = [0u8; 16];
    for k in 0..16 {
        sc[k] = b[k] & 0x0F;
        mn[k] = b[k] >> 4;
    }
    let qs = &b[16..D_OFF];
    let mut q = [0u8; QK_K];
    for n in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                q[128 * n + 32 * s + l] = (qs[32 * n + l] >> (2 * s)) & 3;
            }
        }
    }
    (sc, mn, q)
}

impl QuantFormat for Q2K {
    const NAME: &'static str = "Q2_K";
    const GGML_ID: u32 = 10;
    const BLOCK: usize = QK_K;
    const BYTES: usize = D_OFF + 4;
    const F16_SCALES: &'static [usize] = &[D_OFF, D_OFF + 2];
    type Act = BlockQ8K;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        let (d, dmin) = (f16_at(b, D_OFF), f16_at(b, D_OFF + 2));
        let (sc, mn, q) = unpack(b);
        for k in 0..16 {
            let dl = d * sc[k] as f32;
            let ml = dmin * mn[k] as f32;
            for l in 0..16 {
                y[16 * k + l] = dl * q[16 * k + l] as f32 - ml;
            }
        }
    }

    fn dot(w: &[u8], a: &[BlockQ8K]) -> f32 {
        let mut s = 0f32;
        for (b, y) in w.chunks_exact(Self::BYTES).zip(a) {
            let (sc, mn, q) = unpack(b);
            let mut isum = 0i32;
            let mut msum = 0i32;
            for k in 0..16 {
                isum += sc[k] as i32 * idot_u8(&q[16 * k..16 * k + 16], &y.qs[16 * k..16 * k + 16]);
                msum += mn[k] as i32 * y.bsums[k] as i32;
            }
            s += y.d * (f16_at(b, D_OFF) * isum as f32 - f16_at(b, D_OFF + 2) * msum as f32);
        }
        s
    }
}
