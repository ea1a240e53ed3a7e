//! Q5_0: 32 weights per block, an f16 scale, a 32-bit word of high bits and 4-bit low parts;
//! values centred at 16; dotted with [`BlockQ8x32`] activations.

use super::{dequantize_d, dot_d, u32_at, QuantFormat, QK32};
use crate::partner::BlockQ8x32;

/// 32 weights: f16 scale, 5-bit values centred at 16.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct Q5_0;

/// 5-bit values from a 4-byte high-bit word and 16 nibble bytes (shared with Q5_1).
#[inline(always)]
pub(super) fn unpack5(qh: u32, qs: &[u8]) -> [u8; QK32] {
    let mut q = [0u8; QK32];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        q[j] = (qs[j] & 0x0F) | (h0 << 4);
        q[j + 16] = (qs[j] >> 4) | (h1 << 4);
    }
    q
}

/// Values q - 16 in element order.
#[inline(always)]
pub(crate) fn unpack(b: &[u8]) -> [i8; QK32] {
    let u = unpack5(u32_at(b, 2), &b[6..Q5_0::BYTES]);
    u.map(|v| v as i8 - 16)
}

impl QuantFormat for Q5_0 {
    const NAME: &'static str = "Q5_0";
    const GGML_ID: u32 = 6;
    const BLOCK: usize = QK32;
    const BYTES: usize = 22;
    const F16_SCALES: &'static [usize] = &[0];
    type Act = BlockQ8x32;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        dequantize_d(b, unpack(b), y);
    }

    fn dot(w: &[u8], a: &[BlockQ8x32]) -> f32 {
        dot_d(w, a, Self::BYTES, unpack)
    }
}
