//! Q8_0: 32 weights per block, an f16 scale and int8 values; dotted with [`BlockQ8x32`]
//! activations.

use super::partner::BlockQ8x32;
use super::{f16_at, idot_i8, QuantFormat, QK32};

/// 32 weights: f16 scale, int8 values.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct Q8_0;

impl QuantFormat for Q8_0 {
    const NAME: &'static str = "Q8_0";
    const GGML_ID: u32 = 8;
    const BLOCK: usize = QK32;
    const BYTES: usize = 34;
    const F16_SCALES: &'static [usize] = &[0];
    type Act = BlockQ8x32;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        let d = f16_at(b, 0);
        for (o, &q) in y.iter_mut().zip(&b[2..Self::BYTES]) {
            *o = q as i8 as f32 * d;
        }
    }

    fn dot(w: &[u8], a: &[BlockQ8x32]) -> f32 {
        let mut s = 0f32;
        for (b, y) in w.chunks_exact(Self::BYTES).zip(a) {
            let mut q = [0i8; QK32];
            for (o, &v) in q.iter_mut().zip(&b[2..Self::BYTES]) {
                *o = v as i8;
            }
            s += f16_at(b, 0) * y.d * idot_i8(&q, &y.qs) as f32;
        }
        s
    }
}
