//! Reductions over dimensions: `aten::mean`, `aten::any` (one generic fold over an N-d walk)
//! and `aten::_softmax`, whose lane loop [`softmax_in_place`] the XNNPACK delegate shares.

use super::{need, out_idx};
use crate::tensor::{
    boolean, f32s, i64s, int, int_list, numel, sizes, split, wrap_dim, write, Ctx, Data, KResult,
    StridedWalk,
};

/// Fold `x` (sizes `s`) over `dims` (all dims when empty) with `f` from `init`: returns the
/// output sizes (keeping reduced dims as 1 when `keepdim`), the accumulators, and how many
/// inputs fed each one.
fn reduce<T: Copy, A: Copy>(
    s: &[usize],
    dims: &[usize],
    keepdim: bool,
    x: &[T],
    init: A,
    f: impl Fn(A, T) -> A,
) -> (Vec<usize>, Vec<A>, usize) {
    let nd = s.len();
    let red: Vec<bool> = (0..nd)
        .map(|i| dims.is_empty() || dims.contains(&i))
        .collect();
    let mut oshape_keep = s.to_vec();
    for i in 0..nd {
        if red[i] {
            oshape_keep[i] = 1;
        }
    }
    let nout = numel(&oshape_keep);
    let mut acc = vec![init; nout];
    // strides of the keepdim output
    let mut ost = vec![0usize; nd];
    let mut st = 1;
    for i in (0..nd).rev() {
        ost[i] = if red[i] { 0 } else { st };
        st *= oshape_keep[i];
    }
    let n = numel(s);
    for (&v, lin) in x.iter().zip(StridedWalk::new(s, &ost, 0)) {
        acc[lin] = f(acc[lin], v);
    }
    let count = n.checked_div(nout).unwrap_or(0);
    let oshape = if keepdim {
        oshape_keep
    } else {
        (0..nd).filter(|&i| !red[i]).map(|i| s[i]).collect()
    };
    (oshape, acc, count)
}

fn dims_of(ctx: &Ctx, i: usize, nd: usize) -> KResult<Vec<usize>> {
    int_list(ctx, i)?
        .into_iter()
        .map(|d| wrap_dim(d, nd))
        .collect()
}

pub(super) fn mean(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let s = sizes(ctx, a[0])?;
    let dims = dims_of(ctx, a[1], s.len())?;
    let keep = boolean(ctx, a[2])?;
    let x = f32s(ctx, a[0])?;
    let (os, acc, count) = reduce(&s, &dims, keep, &x, 0f32, |p, q| p + q);
    let c = count as f32;
    let v = acc.into_iter().map(|x| x / c).collect();
    write(ctx, out_idx(a)?, os, Data::F32(v))
}

pub(super) fn any_dim(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let s = sizes(ctx, a[0])?;
    let dims = dims_of(ctx, a[1], s.len())?;
    let keep = boolean(ctx, a[2])?;
    let x = i64s(ctx, a[0])?;
    let (os, acc, _) = reduce(&s, &dims, keep, &x, false, |p, q| p || q != 0);
    write(ctx, out_idx(a)?, os, Data::Bool(acc))
}

pub(super) fn softmax(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let s = sizes(ctx, a[0])?;
    let d = wrap_dim(int(ctx, a[1])?, s.len())?;
    let (outer, n, inner) = split(&s, d);
    let mut x = f32s(ctx, a[0])?;
    softmax_in_place(&mut x, outer, n, inner);
    write(ctx, out_idx(a)?, s, Data::F32(x))
}

/// Softmax in place over the `n` elements `inner` apart of each of the `outer × inner` lanes of
/// `x` (at least `outer × n × inner` long): the maximum, then `exp(x - max)` summed in order,
/// then a division by the sum (ExecuTorch's portable order; XNNPACK's Softmax node uses it
/// with `inner = 1`).
pub(crate) fn softmax_in_place(x: &mut [f32], outer: usize, n: usize, inner: usize) {
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * n + k) * inner + i;
            let mut mx = f32::NEG_INFINITY;
            for k in 0..n {
                mx = mx.max(x[at(k)]);
            }
            let mut sum = 0f32;
            for k in 0..n {
                let e = (x[at(k)] - mx).exp();
                x[at(k)] = e;
                sum += e;
            }
            for k in 0..n {
                x[at(k)] /= sum;
            }
        }
    }
}
