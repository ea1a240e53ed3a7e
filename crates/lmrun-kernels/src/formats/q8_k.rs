//! Q8_K: 256 values per block, an f32 scale, int8 values and 16 int16 sums of 16 values. The
//! fields of [`BlockQ8K`](super::partner::BlockQ8K) (in another order there), the k-quants'
//! activation type; here only read (dequantized), never a weight, so it has no partner.

use super::{f32_at, QuantFormat, QK_K};
use crate::partner::NoPartner;

/// 256 values: f32 scale, int8 values, 16 int16 block sums (activation type).
#[derive(Debug, Clone, Copy)]
pub struct Q8K;

impl QuantFormat for Q8K {
    const NAME: &'static str = "Q8_K";
    const GGML_ID: u32 = 15;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 4 + QK_K + 2 * (QK_K / 16);
    const F16_SCALES: &'static [usize] = &[];
    type Act = NoPartner;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        let d = f32_at(b, 0);
        for (o, &q) in y.iter_mut().zip(&b[4..4 + QK_K]) {
            *o = d * q as i8 as f32;
        }
    }

    /// Never called: a slice of [`NoPartner`] is empty, and the sum over no blocks is 0.
    fn dot(_: &[u8], _: &[NoPartner]) -> f32 {
        0.0
    }
}
