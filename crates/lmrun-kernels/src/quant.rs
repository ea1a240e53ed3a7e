//! Activation quantization: an f32 activation row is turned, once per matmul, into the integer
//! partner format of the weight type, so that every weight block meets an int8 block and the
//! dot product runs on integers. 32-wide weight types pair with [`BlockQ8x32`] (ggml's Q8_1 idea
//! with an f32 scale and an exact integer sum), the 256-wide k-quants with [`BlockQ8K`] (ggml's
//! Q8_K layout).

use crate::QType;

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
    pub qs: [i8; 32],
}

impl Default for BlockQ8x32 {
    fn default() -> Self {
        BlockQ8x32 {
            d: 0.0,
            sum: 0,
            qs: [0; 32],
        }
    }
}

/// Activation block for the k-quants (same layout as ggml's `block_q8_K`, 292 bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ8K {
    /// Scale.
    pub d: f32,
    /// Quantized values.
    pub qs: [i8; 256],
    /// Sums of each 16 consecutive `qs`.
    pub bsums: [i16; 16],
}

impl Default for BlockQ8K {
    fn default() -> Self {
        BlockQ8K {
            d: 0.0,
            qs: [0; 256],
            bsums: [0; 16],
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

/// The activation partner of a weight type.
pub fn act_kind(t: QType) -> ActKind {
    match t {
        QType::F32 | QType::F16 | QType::BF16 => ActKind::F32,
        QType::Q2K | QType::Q3K | QType::Q4K | QType::Q5K | QType::Q6K | QType::IQ4XS => {
            ActKind::Q8K
        }
        _ => ActKind::Q8x32,
    }
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
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(32)) {
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
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(256)) {
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
