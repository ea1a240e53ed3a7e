//! Q4_0: 32 weights per block, an f16 scale and 4-bit values centred at 8; dotted with
//! [`BlockQ8x32`] activations.

use super::{dequantize_d, dot_d, QuantFormat, QK32};
use crate::partner::BlockQ8x32;

/// 32 weights: f16 scale, 4-bit values centred at 8.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct Q4_0;

/// Values q - 8 in element order.
#[inline(always)]
pub(crate) fn unpack(b: &[u8]) -> [i8; QK32] {
    let mut q = [0i8; QK32];
    for j in 0..16 {
        q[j] = (b[2 + j] & 0x0F) as i8 - 8;
        q[j + 16] = (b[2 + j] >> 4) as i8 - 8;
    }
    q
}

impl QuantFormat for Q4_0 {
    const NAME: &'static str = "Q4_0";
    const GGML_ID: u32 = 2;
    const BLOCK: usize = QK32;
    const BYTES: usize = 18;
    const F16_SCALES: &'static [usize] = &[0];
    type Act = BlockQ8x32;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        dequantize_d(b, unpack(b), y);
    }

    fn dot(w: &[u8], a: &[BlockQ8x32]) -> f32 {
        dot_d(w, a, Self::BYTES, unpack)
    }
}
