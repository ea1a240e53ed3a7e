//! The activation partner types: an f32 activation row is quantized once per matmul into the
//! partner of the weight format, so that every weight block meets an int8 block. Plain data
//! only (no kernels), so that every other module can depend on it.

/// Values per k-quant super-block.
pub const QK_K: usize = 256;

/// Values per small block (Q4_0 … Q8_0, IQ4_NL).
pub const QK32: usize = 32;

/// Activation block for 32-wide weight types: `x ≈ d * qs`, with `sum = Σ qs` (used for the
/// offset of Q4_0/Q5_0 values and the min of Q4_1/Q5_1).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ8x32 {
    /// Scale.
    pub d: f32,
    /// Sum of `qs`.
    pub sum: i32,
    /// Quantized values.
    pub qs: [i8; QK32],
}

impl Default for BlockQ8x32 {
    fn default() -> Self {
        BlockQ8x32 {
            d: 0.0,
            sum: 0,
            qs: [0; QK32],
        }
    }
}

/// Activation block for the k-quants (ggml's `block_q8_K`, [`super::Q8K`], with the fields
/// reordered and the block 64-byte aligned: the kernels' 32-byte loads of `qs` never straddle
/// a cache line; 320 bytes a block instead of 292).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
pub struct BlockQ8K {
    /// Quantized values.
    pub qs: [i8; QK_K],
    /// Sums of each 16 consecutive `qs`.
    pub bsums: [i16; QK_K / 16],
    /// Scale.
    pub d: f32,
}

impl Default for BlockQ8K {
    fn default() -> Self {
        BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// Which activation format a weight type's dot product consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActKind {
    /// Plain f32 activations (F32/F16/BF16 weights).
    F32,
    /// [`BlockQ8x32`] blocks.
    Q8x32,
    /// [`BlockQ8K`] blocks.
    Q8K,
}

/// The partner of the activation-only formats (Q8_1, Q8_K), which are never weights: it has
/// no values, so a slice of it is always empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPartner {}
