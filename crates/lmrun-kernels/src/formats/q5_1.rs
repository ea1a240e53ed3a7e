//! Q5_1: 32 weights per block, an f16 scale and min, a 32-bit word of high bits and 4-bit low
//! parts; dotted with [`BlockQ8x32`] activations (the min meets the activation sum).

use super::q5_0::unpack5;
use super::{dequantize_dm, dot_dm, u32_at, QuantFormat, QK32};
use crate::partner::BlockQ8x32;

/// 32 weights: f16 scale and min, 5-bit values.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct Q5_1;

/// Unsigned 5-bit values in element order.
#[inline(always)]
fn unpack(b: &[u8]) -> [u8; QK32] {
    unpack5(u32_at(b, 4), &b[8..Q5_1::BYTES])
}

impl QuantFormat for Q5_1 {
    const NAME: &'static str = "Q5_1";
    const GGML_ID: u32 = 7;
    const BLOCK: usize = QK32;
    const BYTES: usize = 24;
    const F16_SCALES: &'static [usize] = &[0, 2];
    type Act = BlockQ8x32;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        dequantize_dm(b, unpack(b), y);
    }

    fn dot(w: &[u8], a: &[BlockQ8x32]) -> f32 {
        dot_dm(w, a, Self::BYTES, unpack)
    }
}
