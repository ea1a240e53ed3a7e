//! Q3_K: 256-weight super-blocks of 3-bit values (a high-bit mask and 2-bit low parts) with
//! 6-bit signed scales per 16 values and an f16 super-block scale (at the end of the block);
//! dotted with [`BlockQ8K`] activations.

use super::{dequantize_k16, f16_at, isum_k16, QuantFormat, QK_K};
use crate::partner::BlockQ8K;

/// 256 weights, 3-bit, 6-bit sub-block scales.
#[derive(Debug, Clone, Copy)]
pub struct Q3K;

/// Byte offset of the f16 super-block scale.
pub(crate) const D_OFF: usize = 108;

/// Signed 6-bit scales (already minus 32) per 16 values, and values -4..=3.
#[inline(always)]
fn unpack(b: &[u8]) -> ([i8; 16], [i8; QK_K]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let s = &b[96..D_OFF];
    let mut sc = [0i8; 16];
    for (j, out) in sc.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
        let high = (s[8 + (j % 4)] >> (2 * (j / 4))) & 3;
        *out = (low | (high << 4)) as i8 - 32;
    }
    let mut q = [0i8; QK_K];
    for n in 0..2 {
        for sh in 0..4 {
            let m = 4 * n + sh; // hmask bit
            for l in 0..32 {
                let low = ((qs[32 * n + l] >> (2 * sh)) & 3) as i8;
                let hi = if hmask[l] & (1 << m) != 0 { 0 } else { 4 };
                q[128 * n + 32 * sh + l] = low - hi;
            }
        }
    }
    (sc, q)
}

impl QuantFormat for Q3K {
    const NAME: &'static str = "Q3_K";
    const GGML_ID: u32 = 11;
    const BLOCK: usize = QK_K;
    const BYTES: usize = D_OFF + 2;
    const F16_SCALES: &'static [usize] = &[D_OFF];
    type Act = BlockQ8K;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        let (sc, q) = unpack(b);
        dequantize_k16(f16_at(b, D_OFF), &sc, &q, y);
    }

    fn dot(w: &[u8], a: &[BlockQ8K]) -> f32 {
        let mut s = 0f32;
        for (b, y) in w.chunks_exact(Self::BYTES).zip(a) {
            let (sc, q) = unpack(b);
            s += y.d * f16_at(b, D_OFF) * isum_k16(&sc, &q, y) as f32;
        }
        s
    }
}
