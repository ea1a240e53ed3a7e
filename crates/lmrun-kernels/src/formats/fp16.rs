//! F16: IEEE half floats, one value per "block"; dotted with f32 activations.

use super::{f16_at, QuantFormat};

/// IEEE half.
#[derive(Debug, Clone, Copy)]
pub struct F16;

impl QuantFormat for F16 {
    const NAME: &'static str = "F16";
    const GGML_ID: u32 = 1;
    const BLOCK: usize = 1;
    const BYTES: usize = 2;
    const F16_SCALES: &'static [usize] = &[];
    type Act = f32;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        y[0] = f16_at(b, 0);
    }

    fn dequantize(src: &[u8], dst: &mut [f32]) {
        for (o, c) in dst.iter_mut().zip(src.chunks_exact(Self::BYTES)) {
            *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
        }
    }

    fn dot(w: &[u8], x: &[f32]) -> f32 {
        let mut s = 0f32;
        for (i, &v) in x.iter().enumerate() {
            s += f16_at(w, Self::BYTES * i) * v;
        }
        s
    }
}
