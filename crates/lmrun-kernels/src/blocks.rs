//! Block layouts of the ggml quantization formats and their scalar dequantization to f32.
//!
//! Each block type has an `unpack` helper turning one block into plain integer values in
//! element order (shared by dequantization and the scalar dot products), and dequantization
//! computes exactly the float operations `gguf.quants.dequantize` does, so results are
//! bit-identical to the Python reference.

use crate::{KernelError, QType};

/// Values per k-quant super-block.
pub const QK_K: usize = 256;
/// Values per small block (Q4_0 … Q8_0, IQ4_NL).
pub const QK32: usize = 32;

/// The IQ4_NL / IQ4_XS non-linear value table.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Reads a little-endian f16 at `off` as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

#[inline(always)]
pub(crate) fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[inline(always)]
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Q4_0 block: values q - 8 in element order.
#[inline(always)]
pub(crate) fn unpack_q4_0(b: &[u8]) -> [i8; 32] {
    let mut q = [0i8; 32];
    for j in 0..16 {
        q[j] = (b[2 + j] & 0x0F) as i8 - 8;
        q[j + 16] = (b[2 + j] >> 4) as i8 - 8;
    }
    q
}

/// Q4_1 block: unsigned nibbles.
#[inline(always)]
pub(crate) fn unpack_q4_1(b: &[u8]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = b[4 + j] & 0x0F;
        q[j + 16] = b[4 + j] >> 4;
    }
    q
}

/// 5-bit values from a 4-byte high-bit word and 16 nibble bytes.
#[inline(always)]
fn unpack5(qh: u32, qs: &[u8]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        q[j] = (qs[j] & 0x0F) | (h0 << 4);
        q[j + 16] = (qs[j] >> 4) | (h1 << 4);
    }
    q
}

/// Q5_0 block: values q - 16.
#[inline(always)]
pub(crate) fn unpack_q5_0(b: &[u8]) -> [i8; 32] {
    let u = unpack5(u32_at(b, 2), &b[6..22]);
    u.map(|v| v as i8 - 16)
}

/// Q5_1 block: unsigned 5-bit values.
#[inline(always)]
pub(crate) fn unpack_q5_1(b: &[u8]) -> [u8; 32] {
    unpack5(u32_at(b, 4), &b[8..24])
}

/// IQ4_NL block: table values.
#[inline(always)]
pub(crate) fn unpack_iq4nl(b: &[u8]) -> [i8; 32] {
    let mut q = [0i8; 32];
    for j in 0..16 {
        q[j] = KVALUES_IQ4NL[(b[2 + j] & 0x0F) as usize];
        q[j + 16] = KVALUES_IQ4NL[(b[2 + j] >> 4) as usize];
    }
    q
}

/// Q2_K: (scale, min) nibbles per 16 values, and 2-bit values 0..=3.
#[inline(always)]
pub(crate) fn unpack_q2k(b: &[u8]) -> ([u8; 16], [u8; 16], [u8; 256]) {
    let mut sc = [0u8; 16];
    let mut mn = [0u8; 16];
    for k in 0..16 {
        sc[k] = b[k] & 0x0F;
        mn[k] = b[k] >> 4;
    }
    let qs = &b[16..80];
    let mut q = [0u8; 256];
    for n in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                q[128 * n + 32 * s + l] = (qs[32 * n + l] >> (2 * s)) & 3;
            }
        }
    }
    (sc, mn, q)
}

/// Q3_K: signed 6-bit scales (already minus 32) per 16 values, and values -4..=3.
#[inline(always)]
pub(crate) fn unpack_q3k(b: &[u8]) -> ([i8; 16], [i8; 256]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let s = &b[96..108];
    let mut sc = [0i8; 16];
    for (j, out) in sc.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
        let high = (s[8 + (j % 4)] >> (2 * (j / 4))) & 3;
        *out = (low | (high << 4)) as i8 - 32;
    }
    let mut q = [0i8; 256];
    for n in 0..2 {
        for sh in 0..4 {
            let m = 4 * n + sh; // hmask bit
            for l in 0..32 {
                let low = ((qs[32 * n + l] >> (2 * sh)) & 3) as i8;
                let hi = if hmask[l] & (1 << m) != 0 { 0 } else { 4 };
                q[128 * n + 32 * sh + l] = low - hi;
            }
        }
    }
    (sc, q)
}

/// 6-bit scales and mins of Q4_K/Q5_K (8 of each) from the 12 packed bytes.
#[inline(always)]
pub(crate) fn kscales(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            mn[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
            mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (sc, mn)
}

/// Q4_K values 0..=15 in element order.
#[inline(always)]
pub(crate) fn unpack_q4k(b: &[u8]) -> [u8; 256] {
    let qs = &b[16..144];
    let mut q = [0u8; 256];
    for j in 0..4 {
        for l in 0..32 {
            q[64 * j + l] = qs[32 * j + l] & 0x0F;
            q[64 * j + 32 + l] = qs[32 * j + l] >> 4;
        }
    }
    q
}

/// Q5_K values 0..=31 in element order.
#[inline(always)]
pub(crate) fn unpack_q5k(b: &[u8]) -> [u8; 256] {
    let qh = &b[16..48];
    let qs = &b[48..176];
    let mut q = [0u8; 256];
    for j in 0..4 {
        for l in 0..32 {
            let h0 = (qh[l] >> (2 * j)) & 1;
            let h1 = (qh[l] >> (2 * j + 1)) & 1;
            q[64 * j + l] = (qs[32 * j + l] & 0x0F) | (h0 << 4);
            q[64 * j + 32 + l] = (qs[32 * j + l] >> 4) | (h1 << 4);
        }
    }
    q
}

/// Q6_K values -32..=31 in element order (scales are `b[192..208]` as i8).
#[inline(always)]
pub(crate) fn unpack_q6k(b: &[u8]) -> [i8; 256] {
    let mut q = [0i8; 256];
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

/// IQ4_XS: signed scales (minus 32) per 32 values and table values.
#[inline(always)]
pub(crate) fn unpack_iq4xs(b: &[u8]) -> ([i8; 8], [i8; 256]) {
    let sh = u16::from_le_bytes([b[2], b[3]]);
    let sl = &b[4..8];
    let qs = &b[8..136];
    let mut sc = [0i8; 8];
    let mut q = [0i8; 256];
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

/// Dequantizes one block `b` (exactly `t.type_size()` bytes) into `y` (`t.block_size()`).
fn dequant_block(t: QType, b: &[u8], y: &mut [f32]) {
    match t {
        QType::F32 => y[0] = f32_at(b, 0),
        QType::F16 => y[0] = f16_at(b, 0),
        QType::BF16 => y[0] = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
        QType::Q4_0 => {
            let d = f16_at(b, 0);
            for (o, q) in y.iter_mut().zip(unpack_q4_0(b)) {
                *o = d * q as f32;
            }
        }
        QType::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for (o, q) in y.iter_mut().zip(unpack_q4_1(b)) {
                *o = d * q as f32 + m;
            }
        }
        QType::Q5_0 => {
            let d = f16_at(b, 0);
            for (o, q) in y.iter_mut().zip(unpack_q5_0(b)) {
                *o = d * q as f32;
            }
        }
        QType::Q5_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for (o, q) in y.iter_mut().zip(unpack_q5_1(b)) {
                *o = d * q as f32 + m;
            }
        }
        QType::Q8_0 => {
            let d = f16_at(b, 0);
            for (o, &q) in y.iter_mut().zip(&b[2..34]) {
                *o = q as i8 as f32 * d;
            }
        }
        QType::Q8_1 => {
            let d = f16_at(b, 0);
            for (o, &q) in y.iter_mut().zip(&b[4..36]) {
                *o = d * q as i8 as f32;
            }
        }
        QType::IQ4NL => {
            let d = f16_at(b, 0);
            for (o, q) in y.iter_mut().zip(unpack_iq4nl(b)) {
                *o = d * q as f32;
            }
        }
        QType::Q2K => {
            let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
            let (sc, mn, q) = unpack_q2k(b);
            for k in 0..16 {
                let dl = d * sc[k] as f32;
                let ml = dmin * mn[k] as f32;
                for l in 0..16 {
                    y[16 * k + l] = dl * q[16 * k + l] as f32 - ml;
                }
            }
        }
        QType::Q3K => {
            let d = f16_at(b, 108);
            let (sc, q) = unpack_q3k(b);
            for k in 0..16 {
                let dl = d * sc[k] as f32;
                for l in 0..16 {
                    y[16 * k + l] = dl * q[16 * k + l] as f32;
                }
            }
        }
        QType::Q4K | QType::Q5K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (sc, mn) = kscales(&b[4..16]);
            let q = if t == QType::Q4K {
                unpack_q4k(b)
            } else {
                unpack_q5k(b)
            };
            for j in 0..8 {
                let d1 = d * sc[j] as f32;
                let m1 = dmin * mn[j] as f32;
                for l in 0..32 {
                    y[32 * j + l] = d1 * q[32 * j + l] as f32 - m1;
                }
            }
        }
        QType::Q6K => {
            let d = f16_at(b, 208);
            let q = unpack_q6k(b);
            for k in 0..16 {
                let dl = d * b[192 + k] as i8 as f32;
                for l in 0..16 {
                    y[16 * k + l] = dl * q[16 * k + l] as f32;
                }
            }
        }
        QType::Q8K => {
            let d = f32_at(b, 0);
            for (o, &q) in y.iter_mut().zip(&b[4..260]) {
                *o = d * q as i8 as f32;
            }
        }
        QType::IQ4XS => {
            let d = f16_at(b, 0);
            let (sc, q) = unpack_iq4xs(b);
            for j in 0..8 {
                let dl = d * sc[j] as f32;
                for l in 0..32 {
                    y[32 * j + l] = dl * q[32 * j + l] as f32;
                }
            }
        }
    }
}

/// Dequantizes a row of blocks `src` of type `t` into `dst`.
///
/// `dst.len()` must be a multiple of the block size and `src.len()` must equal
/// `t.row_bytes(dst.len())`; otherwise an error is returned.
pub fn dequantize_row(t: QType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    let expected = t.row_bytes(dst.len()).ok_or(KernelError::BadShape {
        qtype: t,
        cols: dst.len(),
        block: t.block_size(),
    })?;
    if src.len() != expected {
        return Err(KernelError::Length {
            what: "dequantize_row src",
            expected,
            got: src.len(),
        });
    }
    let (bs, ts) = (t.block_size(), t.type_size());
    match t {
        // fast paths for the float types
        QType::F32 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        QType::F16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        QType::BF16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
            }
        }
        _ => {
            for (y, b) in dst.chunks_exact_mut(bs).zip(src.chunks_exact(ts)) {
                dequant_block(t, b, y);
            }
        }
    }
    Ok(())
}
