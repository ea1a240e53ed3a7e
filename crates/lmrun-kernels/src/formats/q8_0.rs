//! Q8_0: 32 weights per block, an f16 scale and int8 values; dotted with [`BlockQ8x32`]
//! activations.

use super::{dequantize_d, dot_d, QuantFormat, QK32};
use crate::partner::BlockQ8x32;

/// 32 weights: f16 scale, int8 values.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct Q8_0;

/// The int8 values in element order.
#[inline(always)]
pub(crate) fn unpack(b: &[u8]) -> [i8; QK32] {
    let mut q = [0i8; QK32];
    for (o, &v) in q.iter_mut().zip(&b[2..Q8_0::BYTES]) {
        *o = v as i8;
    }
    q
}

impl QuantFormat for Q8_0 {
    const NAME: &'static str = "Q8_0";
    const GGML_ID: u32 = 8;
    const BLOCK: usize = QK32;
    const BYTES: usize = 34;
    const F16_SCALES: &'static [usize] = &[0];
    type Act = BlockQ8x32;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        dequantize_d(b, unpack(b), y);
    }

    fn dot(w: &[u8], a: &[BlockQ8x32]) -> f32 {
        dot_d(w, a, Self::BYTES, unpack)
    }
}
