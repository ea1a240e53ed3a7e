//! F32: plain little-endian 32-bit floats, one value per "block"; dotted with f32 activations.

use super::{f32_at, QuantFormat};

/// 32-bit float.
#[derive(Debug, Clone, Copy)]
pub struct F32;

impl QuantFormat for F32 {
    const NAME: &'static str = "F32";
    const GGML_ID: u32 = 0;
    const BLOCK: usize = 1;
    const BYTES: usize = 4;
    const F16_SCALES: &'static [usize] = &[];
    type Act = f32;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        y[0] = f32_at(b, 0);
    }

    fn dequantize(src: &[u8], dst: &mut [f32]) {
        for (o, c) in dst.iter_mut().zip(src.chunks_exact(Self::BYTES)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }

    fn dot(w: &[u8], x: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        for (c, xs) in w.chunks_exact(8 * Self::BYTES).zip(x.chunks_exact(8)) {
            for i in 0..8 {
                acc[i] += f32_at(c, Self::BYTES * i) * xs[i];
            }
        }
        let mut s: f32 = acc.iter().sum();
        let done = (x.len() / 8) * 8;
        for i in done..x.len() {
            s += f32_at(w, Self::BYTES * i) * x[i];
        }
        s
    }
}
