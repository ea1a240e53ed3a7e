//! BF16: bfloat16 (the high half of an f32), one value per "block"; dotted with f32
//! activations.

use super::{bf16_at, QuantFormat};

/// bfloat16.
#[derive(Debug, Clone, Copy)]
pub struct BF16;

impl QuantFormat for BF16 {
    const NAME: &'static str = "BF16";
    const GGML_ID: u32 = 30;
    const BLOCK: usize = 1;
    const BYTES: usize = 2;
    const F16_SCALES: &'static [usize] = &[];
    type Act = f32;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        y[0] = bf16_at(b, 0);
    }

    fn dequantize(src: &[u8], dst: &mut [f32]) {
        for (o, c) in dst.iter_mut().zip(src.chunks_exact(Self::BYTES)) {
            *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
        }
    }

    fn dot(w: &[u8], x: &[f32]) -> f32 {
        let mut s = 0f32;
        for (i, &v) in x.iter().enumerate() {
            s += bf16_at(w, Self::BYTES * i) * v;
        }
        s
    }
}
