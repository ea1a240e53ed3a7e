//! The f32 operations a decoder needs besides matmul: normalization, softmax, rotary position
//! embedding, activations, element-wise arithmetic, the f32 dot/axpy used by attention, and
//! embedding-row lookup for every weight type. Length mismatches are errors, not panics.

use crate::dispatch::Isa;
use crate::{dequantize_row, KernelError, QType};

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), KernelError> {
    if expected != got {
        return Err(KernelError::Length {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// RMSNorm: `out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i]`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) -> Result<(), KernelError> {
    check_len("rms_norm weight", x.len(), weight.len())?;
    check_len("rms_norm out", x.len(), out.len())?;
    if x.is_empty() {
        return Ok(());
    }
    let ss = dot_f32(x, x);
    let scale = 1.0 / (ss / x.len() as f32 + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * g;
    }
    Ok(())
}

/// RMSNorm in place: `x[i] = x[i] / sqrt(mean(x²) + eps) * weight[i]`.
pub fn rms_norm_inplace(x: &mut [f32], weight: &[f32], eps: f32) -> Result<(), KernelError> {
    check_len("rms_norm weight", x.len(), weight.len())?;
    if x.is_empty() {
        return Ok(());
    }
    let ss = dot_f32(x, x);
    let scale = 1.0 / (ss / x.len() as f32 + eps).sqrt();
    for (v, &g) in x.iter_mut().zip(weight) {
        *v = *v * scale * g;
    }
    Ok(())
}

/// Numerically stable softmax in place (max subtracted). `-inf` entries become 0; an empty
/// slice, or one where every entry is `-inf`, is left unchanged.
pub fn softmax_inplace(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best() != Isa::Scalar {
        crate::simd::avx2::softmax(x);
        return;
    }
    softmax_inplace_scalar(x)
}

/// Scalar reference for [`softmax_inplace`] (libm `exp`).
pub fn softmax_inplace_scalar(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if x.is_empty() || max == f32::NEG_INFINITY {
        return;
    }
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Rotary embedding layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeMode {
    /// Adjacent pairs `(x[2i], x[2i+1])` rotate together (llama in GGUF; "interleaved").
    Normal,
    /// Halves `(x[i], x[i + d/2])` rotate together (GPT-NeoX, qwen2, gemma).
    NeoX,
}

/// Rotary position embedding in place over `n_heads` heads of `head_dim` values, all dims
/// rotated. Pair `i` (of `head_dim/2`) turns by
/// `pos * freq_scale * theta_base^(-2i/head_dim) / freq_factors[i]` (factors as in Llama 3.x
/// `rope_freqs`; `freq_scale` is linear position scaling, 1.0 for none).
#[allow(clippy::too_many_arguments)]
pub fn rope_inplace(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    pos: usize,
    theta_base: f32,
    mode: RopeMode,
    freq_factors: Option<&[f32]>,
    freq_scale: f32,
) -> Result<(), KernelError> {
    rope_inplace_partial(
        x,
        n_heads,
        head_dim,
        head_dim,
        pos,
        theta_base,
        mode,
        freq_factors,
        freq_scale,
    )
}

/// [`rope_inplace`] rotating only the first `n_rot` dims of each head (ggml `n_dims`); the
/// frequency exponent is `-2i/n_rot`.
#[allow(clippy::too_many_arguments)]
pub fn rope_inplace_partial(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    n_rot: usize,
    pos: usize,
    theta_base: f32,
    mode: RopeMode,
    freq_factors: Option<&[f32]>,
    freq_scale: f32,
) -> Result<(), KernelError> {
    let p = RopeParams {
        n_rot,
        theta_base,
        mode,
        freq_factors,
        freq_scale,
        ..RopeParams::new(n_rot, theta_base, mode)
    };
    rope_inplace_ext(x, n_heads, head_dim, pos, &p)
}

/// YaRN's blend of interpolated and extrapolated frequencies (ggml's `ext_factor`,
/// `corr_dims`): pairs below `corr_dims[0]` keep their original (extrapolated) frequency, pairs
/// above `corr_dims[1]` are interpolated by `freq_scale`, with a linear ramp between.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    /// Weight of the extrapolated frequency at the ramp's low end (1.0 for YaRN).
    pub ext_factor: f32,
    /// First and last pair index of the ramp.
    pub corr_dims: [f32; 2],
}

impl Yarn {
    /// The ramp for `n_rot` rotated dims, a training context of `n_ctx_orig` and the
    /// `beta_fast`/`beta_slow` rotation counts (YaRN's defaults: 32 and 1).
    pub fn new(n_rot: usize, n_ctx_orig: usize, base: f32, beta_fast: f32, beta_slow: f32) -> Yarn {
        let corr = |rot: f32| {
            n_rot as f32 * (n_ctx_orig as f32 / (rot * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let lo = corr(beta_fast).floor().max(0.0);
        let hi = corr(beta_slow).ceil().min(n_rot as f32 - 1.0);
        Yarn {
            ext_factor: 1.0,
            corr_dims: [lo, hi],
        }
    }
}

/// Everything that decides the rotation of one head's pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParams<'a> {
    /// Rotated dims per head (the rest pass through).
    pub n_rot: usize,
    /// Frequency base.
    pub theta_base: f32,
    /// Pair layout.
    pub mode: RopeMode,
    /// Per-pair divisors of the angle (Llama 3 `rope_freqs`, Phi-3 LongRoPE factors).
    pub freq_factors: Option<&'a [f32]>,
    /// Linear position scale (1 / the scaling factor; 1.0 for none).
    pub freq_scale: f32,
    /// Factor on cos and sin (LongRoPE's and YaRN's attention factor; 1.0 for none).
    pub mscale: f32,
    /// YaRN frequency blend, if any.
    pub yarn: Option<Yarn>,
}

impl RopeParams<'_> {
    /// Plain rope: no factors, no scaling.
    pub fn new(n_rot: usize, theta_base: f32, mode: RopeMode) -> RopeParams<'static> {
        RopeParams {
            n_rot,
            theta_base,
            mode,
            freq_factors: None,
            freq_scale: 1.0,
            mscale: 1.0,
            yarn: None,
        }
    }
}

/// Rotary position embedding with every option: pair `i` turns by
/// `θ = pos · base^(-2i/n_rot) / freq_factors[i]`, interpolated as `freq_scale · θ` (blended
/// back toward `θ` by YaRN's ramp, which also multiplies the magnitude by
/// `1 + 0.1 ln(1/freq_scale)`), and cos/sin are multiplied by `mscale` — ggml's `rope_ext`.
pub fn rope_inplace_ext(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    pos: usize,
    rp: &RopeParams<'_>,
) -> Result<(), KernelError> {
    rope_inplace_at(x, n_heads, head_dim, pos as f32, rp)
}

/// [`rope_inplace_ext`] at a position that may be negative or fractional: rotating by
/// `-d` turns a key roped at `p` into one roped at `p - d` (a context shift), when `mscale`
/// is 1 (and YaRN's magnitude factor is cancelled by the caller).
pub fn rope_inplace_at(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    pos: f32,
    rp: &RopeParams<'_>,
) -> Result<(), KernelError> {
    let n_rot = rp.n_rot;
    let total = n_heads
        .checked_mul(head_dim)
        .ok_or(KernelError::Overflow("rope size"))?;
    check_len("rope x", total, x.len())?;
    if n_rot > head_dim || !n_rot.is_multiple_of(2) {
        return Err(KernelError::Invalid(
            "rope: n_rot must be even and <= head_dim",
        ));
    }
    let half = n_rot / 2;
    if let Some(ff) = rp.freq_factors {
        check_len("rope freq_factors", half, ff.len())?;
    }
    let mut mscale = rp.mscale;
    let yarn = rp.yarn.filter(|y| y.ext_factor != 0.0);
    if yarn.is_some() {
        mscale *= 1.0 + 0.1 * (1.0 / rp.freq_scale).ln();
    }
    let p = pos;
    // base^(-2i/n_rot) as a running product, as ggml computes it (one powf per call).
    let step = rp.theta_base.powf(-2.0 / n_rot as f32);
    let mut inv = 1.0f32;
    for i in 0..half {
        let mut extrap = p * inv;
        inv *= step;
        if let Some(ff) = rp.freq_factors {
            extrap /= ff[i];
        }
        let interp = rp.freq_scale * extrap;
        let theta = match yarn {
            Some(y) => {
                let [lo, hi] = y.corr_dims;
                let r = (i as f32 - lo) / (hi - lo).max(0.001);
                let mix = (1.0 - r.clamp(0.0, 1.0)) * y.ext_factor;
                interp * (1.0 - mix) + extrap * mix
            }
            None => interp,
        };
        let (s, c) = theta.sin_cos();
        let (s, c) = (s * mscale, c * mscale);
        for h in 0..n_heads {
            let base = h * head_dim;
            let (a, b) = match rp.mode {
                RopeMode::Normal => (base + 2 * i, base + 2 * i + 1),
                RopeMode::NeoX => (base + i, base + i + half),
            };
            let (x0, x1) = (x[a], x[b]);
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
    Ok(())
}

/// Gated activation in place: `g[i] = g[i] * sigmoid(k1 * g[i] + k3 * g[i]^3) * u[i]`. SiLU-gated
/// FFNs use `k1 = 1, k3 = 0`; the tanh approximation of GELU is `x * sigmoid(2z)` with
/// `z = √(2/π) (x + 0.044715 x³)`, i.e. `k1 = 2√(2/π), k3 = 0.044715 k1`. SIMD `exp` on AVX2
/// (within a few ulp of [`sigmoid_gate_mul_scalar`]).
pub fn sigmoid_gate_mul(g: &mut [f32], u: &[f32], k1: f32, k3: f32) -> Result<(), KernelError> {
    check_len("gate u", g.len(), u.len())?;
    #[cfg(target_arch = "x86_64")]
    if Isa::best() != Isa::Scalar {
        crate::simd::avx2::sigmoid_gate_mul(g, u, k1, k3);
        return Ok(());
    }
    sigmoid_gate_mul_scalar(g, u, k1, k3)
}

/// Scalar reference for [`sigmoid_gate_mul`] (libm `exp`).
pub fn sigmoid_gate_mul_scalar(
    g: &mut [f32],
    u: &[f32],
    k1: f32,
    k3: f32,
) -> Result<(), KernelError> {
    check_len("gate u", g.len(), u.len())?;
    for (x, &y) in g.iter_mut().zip(u) {
        let v = *x;
        let z = v * (k1 + k3 * v * v);
        *x = v * y / (1.0 + (-z).exp());
    }
    Ok(())
}

/// SiLU in place: `x * sigmoid(x)`.
pub fn silu_inplace(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v /= 1.0 + (-*v).exp();
    }
}

/// GELU, tanh approximation, in place.
pub fn gelu_tanh_inplace(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for v in x.iter_mut() {
        let u = *v;
        *v = 0.5 * u * (1.0 + (SQRT_2_OVER_PI * u * (1.0 + 0.044715 * u * u)).tanh());
    }
}

/// `a[i] += b[i]`.
pub fn add_inplace(a: &mut [f32], b: &[f32]) -> Result<(), KernelError> {
    check_len("add b", a.len(), b.len())?;
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
    Ok(())
}

/// `a[i] *= b[i]`.
pub fn mul_inplace(a: &mut [f32], b: &[f32]) -> Result<(), KernelError> {
    check_len("mul b", a.len(), b.len())?;
    for (x, &y) in a.iter_mut().zip(b) {
        *x *= y;
    }
    Ok(())
}

/// `a[i] *= s`.
pub fn scale_inplace(a: &mut [f32], s: f32) {
    for x in a.iter_mut() {
        *x *= s;
    }
}

/// f32 dot product over the common length of `a` and `b` (callers pass equal lengths).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    #[cfg(target_arch = "x86_64")]
    if Isa::best() != Isa::Scalar {
        return crate::simd::avx2::dot_f32(&a[..n], &b[..n]);
    }
    dot_f32_scalar(&a[..n], &b[..n])
}

/// Scalar reference for [`dot_f32`] (8 partial sums).
pub fn dot_f32_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let n8 = a.len().min(b.len()) / 8 * 8;
    for (x, y) in a[..n8].chunks_exact(8).zip(b[..n8].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in a[n8..].iter().zip(&b[n8..]) {
        s += x * y;
    }
    s
}

/// `y[i] += a * x[i]` over the common length (callers pass equal lengths).
pub fn axpy_f32(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    #[cfg(target_arch = "x86_64")]
    if Isa::best() != Isa::Scalar {
        crate::simd::avx2::axpy_f32(a, &x[..n], &mut y[..n]);
        return;
    }
    for (o, &v) in y[..n].iter_mut().zip(&x[..n]) {
        *o += a * v;
    }
}

/// Dequantizes row `row` of an embedding table of type `qtype` with `cols` columns into `out`
/// (`out.len() == cols`).
pub fn embedding_row(
    qtype: QType,
    table: &[u8],
    cols: usize,
    row: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_len("embedding_row out", cols, out.len())?;
    let rb = qtype.row_bytes(cols).ok_or(KernelError::BadShape {
        qtype,
        cols,
        block: qtype.block_size(),
    })?;
    let n_rows = table.len().checked_div(rb).unwrap_or(0);
    if row >= n_rows {
        return Err(KernelError::OutOfRange {
            what: "embedding row",
            index: row,
            len: n_rows,
        });
    }
    dequantize_row(qtype, &table[row * rb..(row + 1) * rb], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_softmax_act() {
        let x = [1.0f32, -2.0, 3.0, 0.5];
        let w = [1.0f32, 2.0, 0.5, 1.0];
        let mut o = [0f32; 4];
        rms_norm(&x, &w, 1e-6, &mut o).unwrap();
        let rms = ((1.0 + 4.0 + 9.0 + 0.25) / 4.0f32 + 1e-6).sqrt();
        for i in 0..4 {
            assert!((o[i] - x[i] / rms * w[i]).abs() < 1e-6);
        }
        assert!(rms_norm(&x, &w[..3], 1e-6, &mut o).is_err());
        let mut s = [1.0f32, 2.0, 3.0, f32::NEG_INFINITY];
        softmax_inplace(&mut s);
        let e: f32 = (1f32.exp() + 2f32.exp() + 3f32.exp()).ln();
        assert!((s[2] - (3.0 - e).exp()).abs() < 1e-6 && s[3] == 0.0);
        let mut a = [0.0f32, 1.0, -1.0];
        silu_inplace(&mut a);
        assert!((a[1] - 0.731_058_6).abs() < 1e-6 && a[0] == 0.0);
        let mut g = [1.0f32, -1.0];
        gelu_tanh_inplace(&mut g);
        assert!((g[0] - 0.841_192).abs() < 1e-5 && (g[1] + 0.158_808).abs() < 1e-5);
    }

    #[test]
    fn dot_axpy_match_scalar() {
        let a: Vec<f32> = (0..77).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..77).map(|i| (i as f32 * 0.11).cos()).collect();
        let r: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot_f32(&a, &b) - r).abs() < 1e-4);
        assert!((dot_f32_scalar(&a, &b) - r).abs() < 1e-4);
        let mut y = b.clone();
        axpy_f32(0.5, &a, &mut y);
        for i in 0..77 {
            assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6);
        }
    }

    #[test]
    fn rope_modes() {
        // head_dim 4, pos 1, base 10000: pair 0 turns by 1 rad, pair 1 by 0.01 rad
        let mut x = [1.0f32, 0.0, 1.0, 0.0];
        rope_inplace(&mut x, 1, 4, 1, 10000.0, RopeMode::Normal, None, 1.0).unwrap();
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        assert!((x[2] - 0.01f32.cos()).abs() < 1e-6 && (x[3] - 0.01f32.sin()).abs() < 1e-6);
        let mut y = [1.0f32, 1.0, 0.0, 0.0];
        let ff = [1.0f32, 2.0];
        rope_inplace(&mut y, 1, 4, 1, 10000.0, RopeMode::NeoX, Some(&ff), 1.0).unwrap();
        assert!((y[0] - 1f32.cos()).abs() < 1e-6 && (y[2] - 1f32.sin()).abs() < 1e-6);
        assert!((y[1] - 0.005f32.cos()).abs() < 1e-6 && (y[3] - 0.005f32.sin()).abs() < 1e-6);
        assert!(rope_inplace(&mut y, 2, 4, 1, 1e4, RopeMode::NeoX, None, 1.0).is_err());
    }
}
