//! Q4_1: 32 weights per block, an f16 scale and min and 4-bit values; dotted with
//! [`BlockQ8x32`] activations (the min meets the activation sum).

use super::{dequantize_dm, dot_dm, QuantFormat, QK32};
use crate::partner::BlockQ8x32;

/// 32 weights: f16 scale and min, 4-bit values.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct Q4_1;

/// Unsigned nibbles in element order.
#[inline(always)]
fn unpack(b: &[u8]) -> [u8; QK32] {
    let mut q = [0u8; QK32];
    for j in 0..16 {
        q[j] = b[4 + j] & 0x0F;
        q[j + 16] = b[4 + j] >> 4;
    }
    q
}

impl QuantFormat for Q4_1 {
    const NAME: &'static str = "Q4_1";
    const GGML_ID: u32 = 3;
    const BLOCK: usize = QK32;
    const BYTES: usize = 20;
    const F16_SCALES: &'static [usize] = &[0, 2];
    type Act = BlockQ8x32;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        dequantize_dm(b, unpack(b), y);
    }

    fn dot(w: &[u8], a: &[BlockQ8x32]) -> f32 {
        dot_dm(w, a, Self::BYTES, unpack)
    }
}
