//! Q6_K: 256-weight super-blocks of 6-bit values (4-bit low parts, then 2-bit high parts), an
//! int8 scale per 16 values and an f16 super-block scale (at the end of the block); dotted
//! with [`BlockQ8K`] activations.

use super::{dequantize_k16, f16_at, isum_k16, QuantFormat, QK_K};
use crate::partner::BlockQ8K;

/// 256 weights, 6-bit, int8 sub-block scales.
#[derive(Debug, Clone, Copy)]
pub struct Q6K;

/// Byte offset of the 16 int8 sub-block scales.
pub(crate) const SCALES_OFF: usize = 192;
/// Byte offset of the f16 super-block scale.
pub(crate) const D_OFF: usize = SCALES_OFF + 16;

/// Values -32..=31 in element order.
#[inline(always)]
pub(crate) fn unpack(b: &[u8]) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        for l in 0..32 {
            let o = 128 * n;
            q[o + l] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
            q[o + l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            q[o + l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            q[o + l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    q
}

/// The 16 int8 sub-block scales.
#[inline(always)]
fn scales(b: &[u8]) -> [i8; 16] {
    std::array::from_fn(|k| b[SCALES_OFF + k] as i8)
}

impl QuantFormat for Q6K {
    const NAME: &'static str = "Q6_K";
    const GGML_ID: u32 = 14;
    const BLOCK: usize = QK_K;
    const BYTES: usize = D_OFF + 2;
    const F16_SCALES: &'static [usize] = &[D_OFF];
    type Act = BlockQ8K;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        dequantize_k16(f16_at(b, D_OFF), &scales(b), &unpack(b), y);
    }

    fn dot(w: &[u8], a: &[BlockQ8K]) -> f32 {
        let mut s = 0f32;
        for (b, y) in w.chunks_exact(Self::BYTES).zip(a) {
            s += y.d * f16_at(b, D_OFF) * isum_k16(&scales(b), &unpack(b), y) as f32;
        }
        s
    }
}
