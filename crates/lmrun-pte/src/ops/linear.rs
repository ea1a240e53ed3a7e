//! Matrix products: `aten::linear` (fp32/fp16/bf16 weights used in place through
//! `lmrun-kernels`' SIMD matmul on the thread pool), `mm`, `addmm` and `bmm`, and the plain
//! [`batched_matmul`] loop that the XNNPACK delegate shares.

use super::{need, out_idx};
use crate::tensor::{
    broadcast_map, bytes, check_numel, dtype, f32s, numel, scalar, sizes, write, Ctx, Data,
    KResult, RValue, ScalarType,
};

pub(super) fn bmm(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let (sa, sb) = (sizes(ctx, a[0])?, sizes(ctx, a[1])?);
    if sa.len() != 3 || sb.len() != 3 || sa[0] != sb[0] || sa[2] != sb[1] {
        return Err(format!("bmm: shapes {sa:?} and {sb:?}"));
    }
    let (b, n, k, m) = (sa[0], sa[1], sa[2], sb[2]);
    check_numel("bmm", &[b, n, m])?;
    let (x, y) = (f32s(ctx, a[0])?, f32s(ctx, a[1])?);
    let out = batched_matmul(&x, &y, b, n, k, m);
    write(ctx, out_idx(a)?, vec![b, n, m], Data::F32(out))
}

pub(super) fn linear(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let si = sizes(ctx, a[0])?;
    let sw = sizes(ctx, a[1])?;
    let wdt = dtype(ctx, a[1])?;
    let qtype = match wdt {
        ScalarType::Float => lmrun_kernels::QType::F32,
        ScalarType::Half => lmrun_kernels::QType::F16,
        ScalarType::BFloat16 => lmrun_kernels::QType::BF16,
        _ => {
            return Err(format!(
                "linear.out needs a floating-point weight, got {wdt:?} (ExecuTorch's portable \
                 linear.out rejects this program too: a quantized weight needs a \
                 quantized-linear kernel or the XNNPACK delegate)"
            ))
        }
    };
    if !dtype(ctx, a[0])?.is_float() {
        return Err(format!("linear.out: input dtype {:?}", dtype(ctx, a[0])?));
    }
    if sw.len() != 2 || si.last() != Some(&sw[1]) {
        return Err(format!("linear: input {si:?} and weight {sw:?}"));
    }
    let (rows, cols) = (sw[0], sw[1]);
    let ntok = numel(&si).checked_div(cols).unwrap_or(0);
    check_numel("linear", &[ntok, rows])?;
    let x = f32s(ctx, a[0])?;
    let mut out = vec![0f32; ntok * rows];
    let mut scratch = std::mem::take(&mut ctx.scratch);
    let r = (|| -> KResult<()> {
        let wb = bytes(ctx, a[1])?;
        let w = lmrun_kernels::WeightRef::new(qtype, wb, rows, cols).map_err(|e| e.to_string())?;
        lmrun_kernels::matmul(&ctx.pool, &w, &x, ntok, &mut out, &mut scratch)
            .map_err(|e| e.to_string())
    })();
    ctx.scratch = scratch;
    r?;
    if let Some(RValue::Tensor(_)) = ctx.values.get(a[2]) {
        let bias = f32s(ctx, a[2])?;
        if bias.len() != rows {
            return Err("linear: bias length".into());
        }
        for r in out.chunks_mut(rows.max(1)) {
            for (o, b) in r.iter_mut().zip(&bias) {
                *o += b;
            }
        }
    }
    let mut os = si.clone();
    if let Some(l) = os.last_mut() {
        *l = rows;
    }
    write(ctx, out_idx(a)?, os, Data::F32(out))
}

/// `batch` products `[n, k] x [k, m]` in f32, summing over k in order (like the portable
/// kernels); `x` is `[batch, n, k]` and `y` `[batch, k, m]`, both contiguous. `aten::mm`,
/// `aten::bmm`, and XNNPACK's BatchMatrixMultiply and transposed-weight FullyConnected all
/// compute through this loop.
pub(crate) fn batched_matmul(
    x: &[f32],
    y: &[f32],
    batch: usize,
    n: usize,
    k: usize,
    m: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; batch * n * m];
    for bi in 0..batch {
        for i in 0..n {
            for j in 0..m {
                let mut s = 0f32;
                for kk in 0..k {
                    s += x[(bi * n + i) * k + kk] * y[(bi * k + kk) * m + j];
                }
                out[(bi * n + i) * m + j] = s;
            }
        }
    }
    out
}

fn mm_shapes(ctx: &Ctx, a: usize, b: usize) -> KResult<(usize, usize, usize)> {
    let (sa, sb) = (sizes(ctx, a)?, sizes(ctx, b)?);
    if sa.len() != 2 || sb.len() != 2 || sa[1] != sb[0] {
        return Err(format!("mm: shapes {sa:?} and {sb:?}"));
    }
    check_numel("mm", &[sa[0], sb[1]])?;
    Ok((sa[0], sa[1], sb[1]))
}

pub(super) fn mm(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let (n, k, m) = mm_shapes(ctx, a[0], a[1])?;
    let out = batched_matmul(&f32s(ctx, a[0])?, &f32s(ctx, a[1])?, 1, n, k, m);
    write(ctx, out_idx(a)?, vec![n, m], Data::F32(out))
}

pub(super) fn addmm(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 6)?;
    let (n, k, m) = mm_shapes(ctx, a[1], a[2])?;
    let (beta, alpha) = (
        scalar(ctx, a[3])?.f64() as f32,
        scalar(ctx, a[4])?.f64() as f32,
    );
    let prod = batched_matmul(&f32s(ctx, a[1])?, &f32s(ctx, a[2])?, 1, n, k, m);
    let bias = f32s(ctx, a[0])?;
    let map = broadcast_map(&sizes(ctx, a[0])?, &[n, m])?;
    let out = prod
        .iter()
        .zip(&map)
        .map(|(&p, &bi)| beta * bias[bi] + alpha * p)
        .collect();
    write(ctx, out_idx(a)?, vec![n, m], Data::F32(out))
}
