//! Q8_1: 32 values per block, an f16 scale, an f16 sum and int8 values. ggml's activation type
//! for 32-wide weights; here only read (dequantized), never a weight, so it has no partner.

use super::{f16_at, QuantFormat, QK32};
use crate::partner::NoPartner;

/// 32 weights: f16 scale, f16 sum, int8 values (activation type in ggml).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct Q8_1;

impl QuantFormat for Q8_1 {
    const NAME: &'static str = "Q8_1";
    const GGML_ID: u32 = 9;
    const BLOCK: usize = QK32;
    const BYTES: usize = 36;
    const F16_SCALES: &'static [usize] = &[0, 2];
    type Act = NoPartner;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        let d = f16_at(b, 0);
        for (o, &q) in y.iter_mut().zip(&b[4..Self::BYTES]) {
            *o = d * q as i8 as f32;
        }
    }

    /// Never called: a slice of [`NoPartner`] is empty, and the sum over no blocks is 0.
    fn dot(_: &[u8], _: &[NoPartner]) -> f32 {
        0.0
    }
}
