//! IQ4_XS: 256-weight super-blocks of IQ4_NL table indices with a 6-bit signed scale per 32
//! values and an f16 super-block scale; dotted with [`BlockQ8K`] activations.

use super::iq4_nl::KVALUES_IQ4NL;
use super::{f16_at, idot_i8, QuantFormat, QK_K};
use crate::partner::BlockQ8K;

/// 256 weights: IQ4_NL values with 6-bit sub-block scales.
#[derive(Debug, Clone, Copy)]
pub struct IQ4XS;

/// Signed scales (minus 32) per 32 values and table values.
#[inline(always)]
pub(crate) fn unpack(b: &[u8]) -> ([i8; 8], [i8; QK_K]) {
    let sh = u16::from_le_bytes([b[2], b[3]]);
    let sl = &b[4..8];
    let qs = &b[8..IQ4XS::BYTES];
    let mut sc = [0i8; 8];
    let mut q = [0i8; QK_K];
    for ib in 0..8 {
        let lo = (sl[ib / 2] >> (4 * (ib % 2))) & 0x0F;
        let hi = ((sh >> (2 * ib)) & 3) as u8;
        sc[ib] = (lo | (hi << 4)) as i8 - 32;
        for j in 0..16 {
            q[32 * ib + j] = KVALUES_IQ4NL[(qs[16 * ib + j] & 0x0F) as usize];
            q[32 * ib + j + 16] = KVALUES_IQ4NL[(qs[16 * ib + j] >> 4) as usize];
        }
    }
    (sc, q)
}

impl QuantFormat for IQ4XS {
    const NAME: &'static str = "IQ4_XS";
    const GGML_ID: u32 = 23;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 8 + QK_K / 2;
    const F16_SCALES: &'static [usize] = &[0];
    type Act = BlockQ8K;

    fn dequantize_block(b: &[u8], y: &mut [f32]) {
        let d = f16_at(b, 0);
        let (sc, q) = unpack(b);
        for j in 0..8 {
            let dl = d * sc[j] as f32;
            for l in 0..32 {
                y[32 * j + l] = dl * q[32 * j + l] as f32;
            }
        }
    }

    fn dot(w: &[u8], a: &[BlockQ8K]) -> f32 {
        let mut s = 0f32;
        for (b, y) in w.chunks_exact(Self::BYTES).zip(a) {
            let (sc, q) = unpack(b);
            let mut isum = 0i32;
            for j in 0..8 {
                isum += sc[j] as i32 * idot_i8(&q[32 * j..32 * j + 32], &y.qs[32 * j..32 * j + 32]);
            }
            s += y.d * f16_at(b, 0) * isum as f32;
        }
        s
    }
}
