//! Scalar reference dot products under their historical names: one weight row (raw block
//! bytes, in place) against the row's quantized activation. Each is its format's
//! [`QuantFormat::dot`](crate::formats::QuantFormat::dot), which lives with the format in
//! `formats/`; this module only keeps the public paths.

use crate::formats::{self, QuantFormat};
use crate::partner::{BlockQ8K, BlockQ8x32};

/// Defines `pub fn $name` as the scalar dot of format `$f`.
macro_rules! scalar_dots {
    ($($(#[$doc:meta])* $name:ident = $f:ident($act:ty);)*) => {
        $(
            $(#[$doc])*
            pub fn $name(w: &[u8], a: &[$act]) -> f32 {
                <formats::$f as QuantFormat>::dot(w, a)
            }
        )*
    };
}

scalar_dots! {
    /// F32 weight row · f32 activations.
    dot_f32w = F32(f32);
    /// F16 weight row · f32 activations.
    dot_f16w = F16(f32);
    /// BF16 weight row · f32 activations.
    dot_bf16w = BF16(f32);
    /// Q4_0 row · Q8x32 activations.
    dot_q4_0 = Q4_0(BlockQ8x32);
    /// Q4_1 row · Q8x32 activations.
    dot_q4_1 = Q4_1(BlockQ8x32);
    /// Q5_0 row · Q8x32 activations.
    dot_q5_0 = Q5_0(BlockQ8x32);
    /// Q5_1 row · Q8x32 activations.
    dot_q5_1 = Q5_1(BlockQ8x32);
    /// Q8_0 row · Q8x32 activations.
    dot_q8_0 = Q8_0(BlockQ8x32);
    /// IQ4_NL row · Q8x32 activations.
    dot_iq4nl = IQ4NL(BlockQ8x32);
    /// Q2_K row · Q8_K activations.
    dot_q2k = Q2K(BlockQ8K);
    /// Q3_K row · Q8_K activations.
    dot_q3k = Q3K(BlockQ8K);
    /// Q4_K row · Q8_K activations.
    dot_q4k = Q4K(BlockQ8K);
    /// Q5_K row · Q8_K activations.
    dot_q5k = Q5K(BlockQ8K);
    /// Q6_K row · Q8_K activations.
    dot_q6k = Q6K(BlockQ8K);
    /// IQ4_XS row · Q8_K activations.
    dot_iq4xs = IQ4XS(BlockQ8K);
}
