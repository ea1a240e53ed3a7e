//! `quantized_decomposed::` per-token activation quantization, as ExecuTorch's quantized
//! kernels compute it: the parameters (`choose_qparams_per_token_asymmetric`: one asymmetric
//! int8 scale and zero point per row of the last dimension) and the quantization itself
//! (`quantize_per_token`). Exports with `quantize_kv_cache` quantize each new query, key and
//! value row this way before `llama::custom_quantized_sdpa`.

use super::{need, out_idx};
use crate::tensor::{dtype, f32s, i64s, int, sizes, write, Ctx, Data, KResult, ScalarType};

/// Scales below this are raised to it (ExecuTorch's `SMALL_SCALE_THRESHOLD`).
const SMALL_SCALE: f32 = 6.1e-5;

/// The asymmetric (scale, zero point) of one row over `[qmin, qmax]`, ExecuTorch's rule: the
/// range is widened to hold 0, the scale is computed in f64 (0.1 when it is 0 or its f32
/// reciprocal overflows, at least [`SMALL_SCALE`]), and the zero point comes from whichever end
/// of the range has the smaller rounding error, clamped and rounded half to even.
pub(crate) fn asymmetric_params(row: &[f32], qmin: i32, qmax: i32) -> (f64, i64) {
    let (mut min, mut max) = row
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    min = min.min(0.0);
    max = max.max(0.0);
    let span = f64::from(qmax - qmin);
    let mut scale = (f64::from(max) - f64::from(min)) / span;
    if scale as f32 == 0.0 || (1.0f32 / scale as f32).is_infinite() {
        scale = 0.1;
    }
    if scale < f64::from(SMALL_SCALE) {
        let org = scale as f32;
        scale = f64::from(SMALL_SCALE);
        if min == 0.0 {
            max = SMALL_SCALE * (qmax - qmin) as f32;
        } else if max == 0.0 {
            min = -SMALL_SCALE * (qmax - qmin) as f32;
        } else {
            let amp = SMALL_SCALE / org;
            min *= amp;
            max *= amp;
        }
    }
    let from_min = f64::from(qmin) - f64::from(min) / scale;
    let from_max = f64::from(qmax) - f64::from(max) / scale;
    let err_min = f64::from(qmin.abs()) - (f64::from(min) / scale).abs();
    let err_max = f64::from(qmax.abs()) - (f64::from(max) / scale).abs();
    let zp = if err_min < err_max {
        from_min
    } else {
        from_max
    };
    let zp = if zp < f64::from(qmin) {
        i64::from(qmin)
    } else if zp > f64::from(qmax) {
        i64::from(qmax)
    } else {
        zp.round_ties_even() as i64
    };
    (scale, zp)
}

/// Rows of the last dimension of tensor `i`: (row count, row length).
fn rows_of(ctx: &Ctx, i: usize) -> KResult<(Vec<usize>, usize, usize)> {
    let s = sizes(ctx, i)?;
    let d = *s.last().ok_or("per-token quantization of a 0-dim tensor")?;
    let n: usize = s[..s.len() - 1].iter().product();
    Ok((s, n, d))
}

/// `choose_qparams_per_token_asymmetric.out(input, dtype, *, scale_out, zero_point_out)`.
pub(super) fn choose_qparams_per_token(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let (mut s, n, d) = rows_of(ctx, a[0])?;
    let x = f32s(ctx, a[0])?;
    let mut scales = Vec::with_capacity(n);
    let mut zps = Vec::with_capacity(n);
    for row in x.chunks(d.max(1)).take(n) {
        let (sc, zp) = asymmetric_params(row, -128, 127);
        scales.push(sc);
        zps.push(zp);
    }
    if let Some(last) = s.last_mut() {
        *last = 1;
    }
    let scale_data = match dtype(ctx, a[2])? {
        ScalarType::Double => Data::Raw(scales.iter().flat_map(|v| v.to_le_bytes()).collect()),
        _ => Data::F32(scales.iter().map(|&v| v as f32).collect()),
    };
    write(ctx, a[2], s.clone(), scale_data)?;
    write(ctx, a[3], s, Data::I64(zps))
}

/// `quantize_per_token.out(input, scales, zero_points, quant_min, quant_max, dtype, *, out)`:
/// `q = clamp(zp + round_half_even((1 / f32(scale)) · x), quant_min, quant_max)` per row.
pub(super) fn quantize_per_token(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 7)?;
    let (s, n, d) = rows_of(ctx, a[0])?;
    let x = f32s(ctx, a[0])?;
    let scales = f32s(ctx, a[1])?;
    let zps = i64s(ctx, a[2])?;
    if scales.len() != n || zps.len() != n {
        return Err(format!(
            "quantize_per_token: {n} rows but {} scales and {} zero points",
            scales.len(),
            zps.len()
        ));
    }
    let (qmin, qmax) = (int(ctx, a[3])?, int(ctx, a[4])?);
    if qmin >= qmax {
        return Err(format!("quantize_per_token: quant range [{qmin}, {qmax}]"));
    }
    let out = out_idx(a)?;
    let odt = dtype(ctx, out)?;
    let (lo, hi) = match odt {
        ScalarType::Char => (-128, 127),
        ScalarType::Byte => (0, 255),
        ScalarType::Short => (-32768, 32767),
        ScalarType::Int => (i64::from(i32::MIN), i64::from(i32::MAX)),
        t => return Err(format!("quantize_per_token: output dtype {t:?}")),
    };
    if qmin < lo || qmax > hi {
        return Err(format!(
            "quantize_per_token: [{qmin}, {qmax}] does not fit {odt:?}"
        ));
    }
    let mut q = Vec::with_capacity(x.len());
    for (r, row) in x.chunks(d.max(1)).take(n).enumerate() {
        let inv = 1.0f32 / scales[r];
        let zp = zps[r] as i32;
        for &v in row {
            let t = i64::from(zp) + (inv * v).round_ties_even() as i64;
            q.push(t.clamp(qmin, qmax));
        }
    }
    write(ctx, out, s, Data::I64(q))
}

#[cfg(test)]
mod tests {
    use super::asymmetric_params;

    #[test]
    fn params_follow_executorch_rules() {
        // All-positive row: the range is widened to 0, zero point at qmin.
        let (s, z) = asymmetric_params(&[1.0, 2.5, 3.2, 15.4], -128, 127);
        assert!((s - 15.4f32 as f64 / 255.0).abs() < 1e-12);
        assert_eq!(z, -128);
        // Symmetric-ish row.
        let (s, z) = asymmetric_params(&[-1.0, 1.0], -128, 127);
        assert!((s - 2.0 / 255.0).abs() < 1e-12);
        assert!((-1..=0).contains(&z), "{z}");
        // All zeros: scale 0 becomes 0.1.
        assert_eq!(asymmetric_params(&[0.0; 8], -128, 127).0, 0.1);
        // Tiny values: the scale is raised to the threshold.
        let (s, _) = asymmetric_params(&[1e-6, -1e-6], -128, 127);
        assert_eq!(s as f32, 6.1e-5);
    }
}
