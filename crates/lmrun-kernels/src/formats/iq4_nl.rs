//! IQ4_NL: 32 weights per block, an f16 scale and 4-bit indices into a non-linear table of
//! int8 values ([`KVALUES_IQ4NL`], shared with IQ4_XS); dotted with [`BlockQ8x32`]
//! activations.

use super::{dequantize_d, dot_d, QuantFormat, QK32};
use crate::partner::BlockQ8x32;

/// The IQ4_NL / IQ4_XS non-linear value table.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// 32 weights: f16 scale, 4-bit indices into a non-linear table.
#[derive(Debug, Clone, Copy)]
pub struct IQ4NL;

/// Table values in element order.
#[inline(always)]
fn unpack(b: &[u8]) -> [i8; QK32] {
    let mut q = [0i8; QK32];
    for j in 0..16 {
        q[j] = KVALUES_IQ4NL[(b[2 + j] & 0x0F) as usize];
        q[j + 16] = KVALUES_IQ4NL[(b[2 + j] >> 4) as usize];
    }
    q
}

impl QuantFormat for IQ4NL {
    const NAME: &'static str = "IQ4_NL";
    const GGML_ID: u32 = 20;
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
