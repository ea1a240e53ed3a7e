//! One home per quant format. Each file here holds everything the crate knows about one ggml
//! element type that is not instruction-set specific: its block size and bytes per block, ggml
//! id and name, the byte offsets of its f16 scales, its activation partner type, its block
//! layout (`unpack` helpers), dequantization and the scalar reference dot product, all behind
//! [`QuantFormat`]. Every other place (the [`QType`] tables, `matmul`, `dispatch`, the SIMD
//! block loops, the tests) reads block sizes and bytes from here; [`with_formats!`] is the one
//! list of formats the tables are generated from.
//!
//! Dequantization computes exactly the float operations `gguf.quants.dequantize` does, so
//! results are bit-identical to the Python reference; the scalar dot products use exact integer
//! block sums and are what every SIMD kernel is tested against.

use crate::fn_types::Partner;

pub(crate) mod bf16;
pub(crate) mod fp16;
pub(crate) mod fp32;
pub(crate) mod iq4_nl;
pub(crate) mod iq4_xs;
pub use crate::partner;
pub use crate::partner::{QK32, QK_K};
pub(crate) mod q2_k;
pub(crate) mod q3_k;
pub(crate) mod q4_0;
pub(crate) mod q4_1;
pub(crate) mod q4_k;
pub(crate) mod q5_0;
pub(crate) mod q5_1;
pub(crate) mod q5_k;
pub(crate) mod q6_k;
pub(crate) mod q8_0;
pub(crate) mod q8_1;
pub(crate) mod q8_k;

pub use bf16::BF16;
pub use fp16::F16;
pub use fp32::F32;
pub use iq4_nl::{IQ4NL, KVALUES_IQ4NL};
pub use iq4_xs::IQ4XS;
pub use q2_k::Q2K;
pub use q3_k::Q3K;
pub use q4_0::Q4_0;
pub use q4_1::Q4_1;
pub use q4_k::Q4K;
pub use q5_0::Q5_0;
pub use q5_1::Q5_1;
pub use q5_k::Q5K;
pub use q6_k::Q6K;
pub use q8_0::Q8_0;
pub use q8_1::Q8_1;
pub use q8_k::Q8K;

/// One ggml element type: its constants, its activation partner, dequantization and the scalar
/// reference dot product. Implemented by the unit structs of this module, one per file.
pub trait QuantFormat {
    /// The ggml name, e.g. `"Q4_K"`.
    const NAME: &'static str;
    /// The ggml type id (as stored in GGUF tensor infos).
    const GGML_ID: u32;
    /// Values per block (1 for the float types).
    const BLOCK: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Byte offsets of the f16 scale fields in a block (for tests and benchmarks that make
    /// random blocks with sane scales).
    const F16_SCALES: &'static [usize];
    /// What one element of an activation row is for this weight format.
    type Act: Partner;

    /// Dequantizes one block `b` (`BYTES` long) into `y` (`BLOCK` long).
    fn dequantize_block(b: &[u8], y: &mut [f32]);

    /// Dequantizes a row of whole blocks (`src.len() / BYTES == dst.len() / BLOCK`).
    fn dequantize(src: &[u8], dst: &mut [f32]) {
        for (y, b) in dst
            .chunks_exact_mut(Self::BLOCK)
            .zip(src.chunks_exact(Self::BYTES))
        {
            Self::dequantize_block(b, y);
        }
    }

    /// Scalar reference dot product of one weight row with its activation row.
    fn dot(w: &[u8], a: &[Self::Act]) -> f32;
}

/// The one list of formats, in [`QType::ALL`] order: calls `$m!` with each format's doc and
/// name (the [`QType`] variant and the unit struct here share it).
macro_rules! with_formats {
    ($m:ident) => {
        $m! {
            /// 32-bit float.
            F32,
            /// IEEE half.
            F16,
            /// bfloat16.
            BF16,
            /// 32 weights: f16 scale, 4-bit values centred at 8.
            Q4_0,
            /// 32 weights: f16 scale and min, 4-bit values.
            Q4_1,
            /// 32 weights: f16 scale, 5-bit values centred at 16.
            Q5_0,
            /// 32 weights: f16 scale and min, 5-bit values.
            Q5_1,
            /// 32 weights: f16 scale, int8 values.
            Q8_0,
            /// 32 weights: f16 scale, f16 sum, int8 values (activation type in ggml).
            Q8_1,
            /// 256 weights, 2-bit, 4-bit sub-block scales and mins.
            Q2K,
            /// 256 weights, 3-bit, 6-bit sub-block scales.
            Q3K,
            /// 256 weights, 4-bit, 6-bit sub-block scales and mins.
            Q4K,
            /// 256 weights, 5-bit, 6-bit sub-block scales and mins.
            Q5K,
            /// 256 weights, 6-bit, int8 sub-block scales.
            Q6K,
            /// 256 values: f32 scale, int8 values, 16 int16 block sums (activation type).
            Q8K,
            /// 32 weights: f16 scale, 4-bit indices into a non-linear table.
            IQ4NL,
            /// 256 weights: IQ4_NL values with 6-bit sub-block scales.
            IQ4XS,
        }
    };
}
pub(crate) use with_formats;

/// Reads a little-endian f16 at `off` as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// Reads a little-endian f32 at `off`.
#[inline(always)]
pub(crate) fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads a little-endian bf16 at `off` as f32.
#[inline(always)]
pub(crate) fn bf16_at(b: &[u8], off: usize) -> f32 {
    f32::from_bits((u16::from_le_bytes([b[off], b[off + 1]]) as u32) << 16)
}

/// Reads a little-endian u32 at `off`.
#[inline(always)]
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Σ a·b over i8 × i8 (exact).
#[inline(always)]
pub(crate) fn idot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// Σ a·b over u8 × i8 (exact).
#[inline(always)]
pub(crate) fn idot_u8(a: &[u8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// Dequantizes a 32-wide block with an f16 scale at byte 0 from its signed values: `d · q`.
#[inline(always)]
pub(crate) fn dequantize_d(b: &[u8], q: [i8; QK32], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, q) in y.iter_mut().zip(q) {
        *o = d * q as f32;
    }
}

/// Scalar dot of a row of 32-wide blocks (`bytes` each, f16 scale at byte 0, signed values
/// `unpack(b)`) with [`BlockQ8x32`](partner::BlockQ8x32) activations.
#[inline(always)]
pub(crate) fn dot_d(
    w: &[u8],
    a: &[partner::BlockQ8x32],
    bytes: usize,
    unpack: impl Fn(&[u8]) -> [i8; QK32],
) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(bytes).zip(a) {
        s += f16_at(b, 0) * y.d * idot_i8(&unpack(b), &y.qs) as f32;
    }
    s
}

/// Dequantizes a 32-wide block with f16 scale and min at bytes 0 and 2 from its unsigned
/// values: `d · q + m`.
#[inline(always)]
pub(crate) fn dequantize_dm(b: &[u8], q: [u8; QK32], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (o, q) in y.iter_mut().zip(q) {
        *o = d * q as f32 + m;
    }
}

/// Scalar dot of a row of 32-wide blocks with scale and min (`bytes` each, unsigned values
/// `unpack(b)`): the min meets the activation sum.
#[inline(always)]
pub(crate) fn dot_dm(
    w: &[u8],
    a: &[partner::BlockQ8x32],
    bytes: usize,
    unpack: impl Fn(&[u8]) -> [u8; QK32],
) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(bytes).zip(a) {
        s += f16_at(b, 0) * y.d * idot_u8(&unpack(b), &y.qs) as f32
            + f16_at(b, 2) * (y.d * y.sum as f32);
    }
    s
}

/// Dequantizes a super-block with one signed scale per 16 values (Q3_K, Q6_K): `d · sc · q`.
#[inline(always)]
pub(crate) fn dequantize_k16(d: f32, sc: &[i8; 16], q: &[i8; QK_K], y: &mut [f32]) {
    for k in 0..16 {
        let dl = d * sc[k] as f32;
        for l in 0..16 {
            y[16 * k + l] = dl * q[16 * k + l] as f32;
        }
    }
}

/// Σ_k sc_k · (q · a over the 16 values of sub-block k), exact (Q3_K, Q6_K).
#[inline(always)]
pub(crate) fn isum_k16(sc: &[i8; 16], q: &[i8; QK_K], y: &partner::BlockQ8K) -> i32 {
    let mut isum = 0i32;
    for k in 0..16 {
        isum += sc[k] as i32 * idot_i8(&q[16 * k..16 * k + 16], &y.qs[16 * k..16 * k + 16]);
    }
    isum
}
