//! Activation quantization: an f32 activation row is turned, once per matmul, into the integer
//! partner format of the weight type, so that every weight block meets an int8 block and the
//! dot product runs on integers. 32-wide weight types pair with [`BlockQ8x32`] (ggml's Q8_1 idea
//! with an f32 scale and an exact integer sum), the 256-wide k-quants with [`BlockQ8K`] (ggml's
//! Q8_K layout). The partner of each weight type is its [`QuantFormat::Act`]
//! (crate::formats::QuantFormat).

use crate::formats::{QK32, QK_K};
use crate::QType;

pub use crate::partner::{ActKind, BlockQ8K, BlockQ8x32};

/// The activation partner of a weight type (see [`QType::act_kind`]).
pub fn act_kind(t: QType) -> ActKind {
    t.act_kind()
}

#[inline(always)]
fn amax(x: &[f32]) -> f32 {
    let mut m = [0f32; 8];
    for c in x.chunks_exact(8) {
        for i in 0..8 {
            m[i] = m[i].max(c[i].abs());
        }
    }
    m.iter().fold(0f32, |a, &b| a.max(b))
}

/// Quantizes `x` (length `32 * y.len()`; extra values are ignored) into 32-wide blocks:
/// `d = max|x| / 127`, `q = round_ties_even(x / d)`. Uses AVX2 when available; the result is
/// bit-identical to [`quantize_q8x32_scalar`].
pub fn quantize_q8x32(x: &[f32], y: &mut [BlockQ8x32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::best() != crate::Isa::Scalar {
        crate::simd::avx2::quantize_q8x32(x, y);
        return;
    }
    quantize_q8x32_scalar(x, y)
}

/// Quantizes `x` (length `256 * y.len()`; extra values are ignored) into Q8_K blocks, same
/// rule as [`quantize_q8x32`]. Uses AVX2 when available, bit-identical to
/// [`quantize_q8k_scalar`].
pub fn quantize_q8k(x: &[f32], y: &mut [BlockQ8K]) {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::best() != crate::Isa::Scalar {
        crate::simd::avx2::quantize_q8k(x, y);
        return;
    }
    quantize_q8k_scalar(x, y)
}

/// Scalar reference of [`quantize_q8x32`].
pub fn quantize_q8x32_scalar(x: &[f32], y: &mut [BlockQ8x32]) {
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(QK32)) {
        let d = amax(xs) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            let r = (v * id).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        b.d = d;
        b.sum = sum;
    }
}

/// Scalar reference of [`quantize_q8k`].
pub fn quantize_q8k_scalar(x: &[f32], y: &mut [BlockQ8K]) {
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(QK_K)) {
        let d = amax(xs) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
        for (k, s) in b.bsums.iter_mut().enumerate() {
            *s = b.qs[16 * k..16 * k + 16]
                .iter()
                .map(|&q| q as i16)
                .sum::<i16>();
        }
        b.d = d;
    }
}
