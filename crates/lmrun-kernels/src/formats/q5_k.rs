//! Q5_K: Q4_K's layout with a 32-byte plane of high bits before the nibbles (5-bit values);
//! dotted with [`BlockQ8K`] activations.

use super::q4_k::{dequantize_k45, dot_k45_row};
use super::{QuantFormat, QK_K};
use crate::partner::BlockQ8K;

/// 256 weights, 5-bit, 6-bit sub-block scales and mins.
#[derive(Debug, Clone, Copy)]
pub struct Q5K;

/// Values 0..=31 in element order.
#[inline(always)]
pub(crate) fn unpack(b: &[u8]) -> [u8; QK_K] {
    let qh = &b[16..48];
    let qs = &b[48..Q5K::BYTES];
    let mut q = [0u8; QK_K];
    for j in 0..4 {
        for l in 0..32 {
            let h0 = (qh[l] >> (2 * j)) & 1;
            let h1 = (qh[l] >> (2 * j + 1)) & 1;
            q[64 * j + l] = (qs[32 * j + l] & 0x0F) | (h0 << 4);
            q[64 * j + 32 + l] = (qs[32 * j + l] >> 4) | (h1 << 4);
        }
    }
    q
}

impl QuantFormat for Q5K {
    const NAME: &'static str = "Q5_K";
    const GGML_ID: u32 = 13;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 48 + QK_K / 2;
    const F16_SCALES: &'static [usize] = &[0, 2];
    type Act = BlockQ8K;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        dequantize_k45(b, &unpack(b), y);
    }

    fn dot(w: &[u8], a: &[BlockQ8K]) -> f32 {
        dot_k45_row(w, a, Self::BYTES, unpack)
    }
}
