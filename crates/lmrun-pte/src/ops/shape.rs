//! Ops that move elements without arithmetic: views and copies (`view_copy`, `et_view`,
//! squeeze/unsqueeze, dtype-converting copies), select and slice, cat/stack/split/unbind,
//! permute/transpose/expand and `copy_`. The N-d helpers [`permute`] and [`slice_box`] serve
//! the XNNPACK delegate as well.

use super::{need, out_idx};
use crate::tensor::{
    broadcast_map, bytes, bytes_to_f32, bytes_to_i64, contiguous_strides, dtype, encode, f32s,
    i64s, int, int_list, numel, opt_int, sizes, split, tensor, wrap_dim, write, Ctx, Data, KResult,
    RTensor, RValue, ScalarType, StridedWalk,
};

pub(super) fn et_view(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let src = tensor(ctx, a[0])?.clone();
    let new = view_sizes(&src.sizes, &int_list(ctx, a[1])?)?;
    let o = out_idx(a)?;
    let Some(RValue::Tensor(t)) = ctx.values.get(o) else {
        return Err("et_view output is not a tensor".into());
    };
    if t.dtype != src.dtype {
        return Err("et_view changes the dtype".into());
    }
    ctx.values[o] = RValue::Tensor(RTensor {
        dtype: src.dtype,
        sizes: new,
        cap: src.cap,
        storage: src.storage,
    });
    Ok(())
}

pub(super) fn view_sizes(old: &[usize], spec: &[i64]) -> KResult<Vec<usize>> {
    let n = numel(old);
    let mut infer = None;
    let mut known = 1usize;
    let mut out = Vec::with_capacity(spec.len());
    for (i, &s) in spec.iter().enumerate() {
        if s == -1 {
            if infer.is_some() {
                return Err("more than one -1 in view sizes".into());
            }
            infer = Some(i);
            out.push(1);
        } else if s < 0 {
            return Err(format!("negative view size {s}"));
        } else {
            known = known.checked_mul(s as usize).ok_or("view size overflows")?;
            out.push(s as usize);
        }
    }
    if let Some(i) = infer {
        if known == 0 || n % known != 0 {
            return Err(format!("cannot view {old:?} as {spec:?}"));
        }
        out[i] = n / known;
    } else if known != n {
        return Err(format!("cannot view {old:?} as {spec:?}"));
    }
    Ok(out)
}

pub(super) fn view_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let new = view_sizes(&s, &int_list(ctx, a[1])?)?;
    copy_as(ctx, a[0], out_idx(a)?, new)
}

/// Copy tensor `src` into `dst` with new sizes (same element count), converting the dtype.
fn copy_as(ctx: &mut Ctx, src: usize, dst: usize, new: Vec<usize>) -> KResult<()> {
    let raw = bytes(ctx, src)?.to_vec();
    write_same(ctx, src, dst, new, raw)
}

pub(super) fn squeeze_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let dims = int_list(ctx, a[1])?
        .into_iter()
        .map(|d| wrap_dim(d, s.len()))
        .collect::<KResult<Vec<_>>>()?;
    let new = s
        .iter()
        .enumerate()
        .filter(|(i, &d)| !(d == 1 && dims.contains(i)))
        .map(|(_, &d)| d)
        .collect();
    copy_as(ctx, a[0], out_idx(a)?, new)
}

pub(super) fn unsqueeze_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let mut s = sizes(ctx, a[0])?;
    let d = wrap_dim(int(ctx, a[1])?, s.len() + 1)?;
    s.insert(d, 1);
    copy_as(ctx, a[0], out_idx(a)?, s)
}

pub(super) fn select_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let s = sizes(ctx, a[0])?;
    if s.is_empty() {
        return Err("select on a 0-dim tensor".into());
    }
    let d = wrap_dim(int(ctx, a[1])?, s.len())?;
    let (outer, n, inner) = split(&s, d);
    let mut i = int(ctx, a[2])?;
    if i < 0 {
        i += n as i64;
    }
    if i < 0 || i as usize >= n {
        return Err(format!("index {i} out of range for size {n}"));
    }
    let es = dtype(ctx, a[0])?.size();
    let src = bytes(ctx, a[0])?;
    let mut out = Vec::with_capacity(outer * inner * es);
    for o in 0..outer {
        let st = ((o * n + i as usize) * inner) * es;
        out.extend_from_slice(&src[st..st + inner * es]);
    }
    let mut ns = s.clone();
    ns.remove(d);
    write_same(ctx, a[0], out_idx(a)?, ns, out)
}

/// Write raw bytes of `src`'s dtype into `dst`, converting if the dtypes differ.
pub(super) fn write_same(
    ctx: &mut Ctx,
    src: usize,
    dst: usize,
    sizes: Vec<usize>,
    raw: Vec<u8>,
) -> KResult<()> {
    let st = dtype(ctx, src)?;
    let dt = dtype(ctx, dst)?;
    let data = if st == dt {
        Data::Raw(raw)
    } else if st.is_float() {
        Data::F32(bytes_to_f32(st, &raw))
    } else {
        Data::I64(bytes_to_i64(st, &raw))
    };
    write(ctx, dst, sizes, data)
}

pub(super) fn slice_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 6)?;
    let s = sizes(ctx, a[0])?;
    let d = wrap_dim(int(ctx, a[1])?, s.len())?;
    let (outer, n, inner) = split(&s, d);
    let n_i = n as i64;
    let norm = |v: i64| -> i64 {
        let v = if v < 0 { v + n_i } else { v };
        v.clamp(0, n_i)
    };
    let start = norm(opt_int(ctx, a[2])?.unwrap_or(0));
    let end = norm(opt_int(ctx, a[3])?.unwrap_or(n_i)).max(start);
    let step = int(ctx, a[4])?;
    if step <= 0 {
        return Err(format!("slice step {step} must be positive"));
    }
    let len = ((end - start) + step - 1) / step;
    let es = dtype(ctx, a[0])?.size();
    let src = bytes(ctx, a[0])?;
    let mut out = Vec::with_capacity(outer * len as usize * inner * es);
    for o in 0..outer {
        for k in 0..len {
            let j = (start + k * step) as usize;
            let st = ((o * n + j) * inner) * es;
            out.extend_from_slice(&src[st..st + inner * es]);
        }
    }
    let mut ns = s.clone();
    ns[d] = len as usize;
    write_same(ctx, a[0], out_idx(a)?, ns, out)
}

pub(super) fn cat(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let list = match ctx.values.get(a[0]) {
        Some(RValue::TensorList(l)) => l.clone(),
        _ => return Err("cat: first argument is not a tensor list".into()),
    };
    let o = out_idx(a)?;
    let odt = dtype(ctx, o)?;
    let mut parts = Vec::new();
    for &t in &list {
        let s = sizes(ctx, t)?;
        if s.len() == 1 && s[0] == 0 {
            continue;
        }
        parts.push((t, s));
    }
    let Some((_, first)) = parts.first() else {
        return write(ctx, o, vec![0], Data::Raw(Vec::new()));
    };
    let ndim = first.len();
    let d = wrap_dim(int(ctx, a[1])?, ndim)?;
    let mut ns = first.clone();
    ns[d] = 0;
    for (_, s) in &parts {
        if s.len() != ndim || s.iter().enumerate().any(|(i, &x)| i != d && x != first[i]) {
            return Err(format!(
                "cat: shapes {first:?} and {s:?} differ outside dim {d}"
            ));
        }
        ns[d] += s[d];
    }
    let (outer, _, inner) = split(first, d);
    let es = odt.size();
    let mut chunks = Vec::new();
    for (t, s) in &parts {
        chunks.push((bytes_as(ctx, *t, odt)?, s[d] * inner * es));
    }
    write(ctx, o, ns, Data::Raw(interleave(outer, &chunks)))
}

pub(super) fn permute_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let perm = int_list(ctx, a[1])?
        .into_iter()
        .map(|d| wrap_dim(d, s.len()))
        .collect::<KResult<Vec<_>>>()?;
    if perm.len() != s.len() {
        return Err(format!(
            "permute of rank {} with {} dims",
            s.len(),
            perm.len()
        ));
    }
    let mut seen = vec![false; s.len()];
    for &p in &perm {
        if std::mem::replace(&mut seen[p], true) {
            return Err("permute dims repeat".into());
        }
    }
    permute_into(ctx, a[0], out_idx(a)?, &perm)
}

pub(super) fn expand_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let spec = int_list(ctx, a[1])?;
    if spec.len() < s.len() {
        return Err(format!("expand {s:?} to fewer dims {spec:?}"));
    }
    let pad = spec.len() - s.len();
    let mut ns = Vec::with_capacity(spec.len());
    for (i, &x) in spec.iter().enumerate() {
        ns.push(if x == -1 {
            if i < pad {
                return Err("expand: -1 in a new leading dim".into());
            }
            s[i - pad]
        } else if x < 0 {
            return Err(format!("expand: bad size {x}"));
        } else {
            x as usize
        });
    }
    let map = broadcast_map(&s, &ns)?;
    let es = dtype(ctx, a[0])?.size();
    let src = bytes(ctx, a[0])?;
    let out = gather(src, es, map.into_iter());
    write_same(ctx, a[0], out_idx(a)?, ns, out)
}

pub(super) fn to_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let s = sizes(ctx, a[0])?;
    copy_as(ctx, a[0], out_idx(a)?, s)
}

/// Permute `src` into `dst` by `perm` (already validated).
fn permute_into(ctx: &mut Ctx, src: usize, dst: usize, perm: &[usize]) -> KResult<()> {
    let s = sizes(ctx, src)?;
    let es = dtype(ctx, src)?.size();
    let (ns, out) = permute(bytes(ctx, src)?, &s, perm, es);
    write_same(ctx, src, dst, ns, out)
}

pub(super) fn transpose_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let nd = sizes(ctx, a[0])?.len();
    if nd == 0 {
        return to_copy(ctx, &[a[0], out_idx(a)?]);
    }
    let (d0, d1) = (
        wrap_dim(int(ctx, a[1])?, nd)?,
        wrap_dim(int(ctx, a[2])?, nd)?,
    );
    let mut perm: Vec<usize> = (0..nd).collect();
    perm.swap(d0, d1);
    permute_into(ctx, a[0], out_idx(a)?, &perm)
}

pub(super) fn t_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let nd = sizes(ctx, a[0])?.len();
    match nd {
        0 | 1 => to_copy(ctx, &[a[0], out_idx(a)?]),
        2 => permute_into(ctx, a[0], out_idx(a)?, &[1, 0]),
        _ => Err(format!("t() of a {nd}-D tensor")),
    }
}

pub(super) fn stack(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let list = match ctx.values.get(a[0]) {
        Some(RValue::TensorList(l)) => l.clone(),
        _ => return Err("stack: first argument is not a tensor list".into()),
    };
    let Some(&first) = list.first() else {
        return Err("stack of no tensors".into());
    };
    let s = sizes(ctx, first)?;
    let d = wrap_dim(int(ctx, a[1])?, s.len() + 1)?;
    let (outer, inner) = (numel(&s[..d]), numel(&s[d..]));
    let o = out_idx(a)?;
    let odt = dtype(ctx, o)?;
    let es = odt.size();
    let mut parts = Vec::new();
    for &t in &list {
        if sizes(ctx, t)? != s {
            return Err("stack: tensors of different shapes".into());
        }
        parts.push((bytes_as(ctx, t, odt)?, inner * es));
    }
    let mut ns = s.clone();
    ns.insert(d, list.len());
    write(ctx, o, ns, Data::Raw(interleave(outer, &parts)))
}

/// Split `src` along `dim` into pieces of `lens`, written into the tensors of list value `lv`.
fn split_into(ctx: &mut Ctx, src: usize, dim: usize, lens: &[usize], lv: usize) -> KResult<()> {
    let list = match ctx.values.get(lv) {
        Some(RValue::TensorList(l)) => l.clone(),
        _ => return Err("split: output is not a tensor list".into()),
    };
    let s = sizes(ctx, src)?;
    let total = lens.iter().try_fold(0usize, |a, &b| a.checked_add(b));
    if list.len() != lens.len() || total != s.get(dim).copied() {
        return Err(format!("split of {s:?} along {dim} into {lens:?}"));
    }
    let (outer, n, inner) = split(&s, dim);
    let es = dtype(ctx, src)?.size();
    let b = bytes(ctx, src)?.to_vec();
    let mut start = 0;
    for (&t, &len) in list.iter().zip(lens) {
        let mut out = Vec::with_capacity(outer * len * inner * es);
        for o in 0..outer {
            let st = ((o * n + start) * inner) * es;
            out.extend_from_slice(&b[st..st + len * inner * es]);
        }
        let mut ns = s.clone();
        ns[dim] = len;
        write_same(ctx, src, t, ns, out)?;
        start += len;
    }
    Ok(())
}

pub(super) fn unbind_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let d = wrap_dim(int(ctx, a[1])?, s.len())?;
    let n_out = match ctx.values.get(a[2]) {
        Some(RValue::TensorList(l)) => l.len(),
        _ => return Err("unbind: output is not a tensor list".into()),
    };
    if s.get(d) != Some(&n_out) {
        return Err(format!("unbind of {s:?} along {d} into {n_out} tensors"));
    }
    split_into(ctx, a[0], d, &vec![1; n_out], a[2])?;
    // unbind removes the dimension
    if let Some(RValue::TensorList(l)) = ctx.values.get(a[2]).cloned() {
        for t in l {
            if let Some(RValue::Tensor(x)) = ctx.values.get_mut(t) {
                if x.sizes.len() > d {
                    x.sizes.remove(d);
                }
            }
        }
    }
    Ok(())
}

pub(super) fn split_with_sizes_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let s = sizes(ctx, a[0])?;
    let d = wrap_dim(int(ctx, a[2])?, s.len())?;
    let lens = int_list(ctx, a[1])?
        .into_iter()
        .map(|x| usize::try_from(x).map_err(|_| format!("negative split size {x}")))
        .collect::<KResult<Vec<_>>>()?;
    split_into(ctx, a[0], d, &lens, a[3])
}

pub(super) fn copy_inplace(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let s = sizes(ctx, a[0])?;
    let ss = sizes(ctx, a[1])?;
    let map = broadcast_map(&ss, &s)?;
    let data = if dtype(ctx, a[0])?.is_float() {
        let v = f32s(ctx, a[1])?;
        Data::F32(map.iter().map(|&m| v[m]).collect())
    } else {
        let v = i64s(ctx, a[1])?;
        Data::I64(map.iter().map(|&m| v[m]).collect())
    };
    write(ctx, a[0], s, data)?;
    let o = out_idx(a)?;
    if o != a[0] && a.len() > 3 {
        ctx.values[o] = ctx.values[a[0]].clone();
    }
    Ok(())
}

/// The bytes of tensor value `t` in dtype `dt` (converted when its own dtype differs).
fn bytes_as(ctx: &Ctx, t: usize, dt: ScalarType) -> KResult<Vec<u8>> {
    if dtype(ctx, t)? == dt {
        Ok(bytes(ctx, t)?.to_vec())
    } else if dt.is_float() {
        encode(dt, Data::F32(f32s(ctx, t)?))
    } else {
        encode(dt, Data::I64(i64s(ctx, t)?))
    }
}

/// For each of `outer` rows, that row's chunk (`width` bytes) of every part in turn: the
/// layout of `cat` and `stack` along a dimension.
fn interleave(outer: usize, parts: &[(Vec<u8>, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|(p, _)| p.len()).sum());
    for oi in 0..outer {
        for (raw, w) in parts {
            out.extend_from_slice(&raw[oi * w..(oi + 1) * w]);
        }
    }
    out
}

/// The elements (`es` items each) of `src` at the element offsets `at`, in order.
pub(crate) fn gather<T: Copy>(src: &[T], es: usize, at: impl Iterator<Item = usize>) -> Vec<T> {
    let mut out = Vec::with_capacity(at.size_hint().0.saturating_mul(es));
    for m in at {
        out.extend_from_slice(&src[m * es..(m + 1) * es]);
    }
    out
}

/// `src` (sizes `s`, contiguous, `es` items an element) permuted by `perm` (a valid
/// permutation of its dimensions): the new sizes and the elements. `permute_copy`,
/// `transpose_copy`, `t_copy` and XNNPACK's StaticTranspose.
pub(crate) fn permute<T: Copy>(
    src: &[T],
    s: &[usize],
    perm: &[usize],
    es: usize,
) -> (Vec<usize>, Vec<T>) {
    let ns: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let st = contiguous_strides(s);
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let out = gather(src, es, StridedWalk::new(&ns, &pst, 0));
    (ns, out)
}

/// The box of `src` (sizes `s`, contiguous) that starts at `offs` and has sizes `ns` (already
/// checked to lie inside), row-major: XNNPACK's StaticSlice.
pub(crate) fn slice_box<T: Copy>(src: &[T], s: &[usize], offs: &[usize], ns: &[usize]) -> Vec<T> {
    let st = contiguous_strides(s);
    let base = offs.iter().zip(&st).map(|(&o, &t)| o * t).sum();
    gather(src, 1, StridedWalk::new(ns, &st, base))
}
