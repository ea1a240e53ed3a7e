//! Ops that pick elements by index tensors: `embedding` (plain, and the quantized
//! `quantized_decomposed::embedding_{byte,4bit,2bit}` that dequantize rows on the fly),
//! `index.Tensor`, `index_put` and `index_copy`.

use super::shape::write_same;
use super::{need, out_idx};
use crate::tensor::{
    boolean, broadcast_map, broadcast_shape, bytes, check_numel, dtype, f32s, i64s, int, numel,
    sizes, split, tensor, wrap_dim, write, Ctx, Data, KResult, RValue, ScalarType,
};

pub(super) fn embedding(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let sw = sizes(ctx, a[0])?;
    if sw.len() != 2 {
        return Err(format!("embedding weight of rank {}", sw.len()));
    }
    let ids = i64s(ctx, a[1])?;
    let mut os = sizes(ctx, a[1])?;
    os.push(sw[1]);
    let es = dtype(ctx, a[0])?.size();
    let row = sw[1] * es;
    let w = bytes(ctx, a[0])?;
    let mut out = Vec::with_capacity(ids.len() * row);
    for &id in &ids {
        if id < 0 || id as usize >= sw[0] {
            return Err(format!("token id {id} out of range (vocabulary {})", sw[0]));
        }
        let st = id as usize * row;
        out.extend_from_slice(&w[st..st + row]);
    }
    write_same(ctx, a[0], out_idx(a)?, os, out)
}

pub(super) fn index_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 5)?;
    let s = sizes(ctx, a[0])?;
    let d = wrap_dim(int(ctx, a[1])?, s.len())?;
    let idx = i64s(ctx, a[2])?;
    let (outer, n, inner) = split(&s, d);
    let ss = sizes(ctx, a[3])?;
    let mut want = s.clone();
    if let Some(x) = want.get_mut(d) {
        *x = idx.len();
    }
    if ss != want {
        return Err(format!(
            "index_copy: source {ss:?} for self {s:?} and {} indices",
            idx.len()
        ));
    }
    let es = dtype(ctx, a[0])?.size();
    let mut out = bytes(ctx, a[0])?.to_vec();
    let src = if dtype(ctx, a[3])? == dtype(ctx, a[0])? {
        bytes(ctx, a[3])?.to_vec()
    } else {
        return Err("index_copy: source dtype differs".into());
    };
    for o in 0..outer {
        for (j, &i) in idx.iter().enumerate() {
            let i = if i < 0 { i + n as i64 } else { i };
            if i < 0 || i as usize >= n {
                return Err(format!("index_copy: index {i} out of range for size {n}"));
            }
            let dst = ((o * n + i as usize) * inner) * es;
            let from = ((o * idx.len() + j) * inner) * es;
            out[dst..dst + inner * es].copy_from_slice(&src[from..from + inner * es]);
        }
    }
    write_same(ctx, a[0], out_idx(a)?, s, out)
}

/// `quantized_decomposed::embedding_{byte,4bit,2bit}`: look up rows of a quantized table and
/// dequantize them, `(q - zero_point) * scale` per row or per group (ExecuTorch's
/// `quantized_embedding_xbit_out`). Packed values are offset by 2^(bits-1); 4-bit keeps the
/// even element in the high nibble, 2-bit the first element in the lowest bits.
pub(super) fn embedding_xbit(ctx: &mut Ctx, a: &[usize], bits: usize) -> KResult<()> {
    need(a, 7)?;
    let sw = sizes(ctx, a[0])?;
    if sw.len() != 2 {
        return Err(format!("quantized embedding weight of rank {}", sw.len()));
    }
    let per_byte = 8 / bits;
    let (rows, dim) = (sw[0], sw[1].saturating_mul(per_byte));
    let ss = sizes(ctx, a[1])?;
    let groups = match ss.as_slice() {
        [r] if *r == rows => 1,
        [r, g] if *r == rows && *g > 0 && dim % *g == 0 => *g,
        _ => {
            return Err(format!(
                "embedding scales {ss:?} for a weight of {rows} rows"
            ))
        }
    };
    let group = dim / groups;
    let scales = f32s(ctx, a[1])?;
    let zps = match ctx.values.get(a[2]) {
        Some(RValue::Tensor(_)) => {
            let z = f32s(ctx, a[2])?;
            if z.len() != scales.len() {
                return Err("embedding zero points and scales differ in size".into());
            }
            Some(z)
        }
        _ => None,
    };
    let ids = i64s(ctx, a[5])?;
    let mut os = sizes(ctx, a[5])?;
    os.push(dim);
    check_numel("quantized embedding", &os)?;
    let wdt = dtype(ctx, a[0])?;
    let w = bytes(ctx, a[0])?;
    let row_bytes = sw[1];
    let mut out = Vec::with_capacity(ids.len() * dim);
    for &id in &ids {
        if id < 0 || id as usize >= rows {
            return Err(format!("token id {id} out of range (vocabulary {rows})"));
        }
        let r = id as usize;
        let wr = &w[r * row_bytes..(r + 1) * row_bytes];
        for j in 0..dim {
            let q: i32 = match bits {
                8 => {
                    if matches!(wdt, ScalarType::Byte | ScalarType::QUInt8) {
                        i32::from(wr[j])
                    } else {
                        i32::from(wr[j] as i8)
                    }
                }
                4 => {
                    // even element in the high nibble
                    let byte = wr[j / 2];
                    let nib = if j % 2 == 0 { byte >> 4 } else { byte & 0x0f };
                    i32::from(nib) - 8
                }
                _ => {
                    // 2-bit: element 0 in the lowest bits
                    let byte = wr[j / 4];
                    i32::from((byte >> (2 * (j % 4))) & 3) - 2
                }
            };
            let g = r * groups + j / group;
            let zp = zps.as_ref().map_or(0.0, |z| z[g]);
            out.push((q as f32 - zp) * scales[g]);
        }
    }
    write(ctx, out_idx(a)?, os, Data::F32(out))
}

/// Resolve an `OptionalTensorList` of indices against `s`: (first indexed dim, number of
/// indexed dims, broadcast index shape, per-dim index vectors broadcast to that shape).
#[allow(clippy::type_complexity)]
pub(super) fn resolve_indices(
    ctx: &Ctx,
    li: usize,
    s: &[usize],
) -> KResult<(usize, usize, Vec<usize>, Vec<Vec<usize>>)> {
    let list = match ctx.values.get(li) {
        Some(RValue::OptTensorList(l)) => l.clone(),
        Some(RValue::TensorList(l)) => l.iter().map(|&x| Some(x)).collect(),
        _ => return Err("indices are not a tensor list".into()),
    };
    if list.len() > s.len() {
        return Err("too many indices".into());
    }
    let present: Vec<usize> = (0..list.len()).filter(|&i| list[i].is_some()).collect();
    let (Some(&first), Some(&last)) = (present.first(), present.last()) else {
        return Err("no index tensors".into());
    };
    if last - first + 1 != present.len() {
        return Err("non-adjacent advanced indices are not supported".into());
    }
    let mut bshape: Vec<usize> = Vec::new();
    for &d in &present {
        let t = list[d].unwrap_or(0);
        if tensor(ctx, t)?.dtype == ScalarType::Bool {
            return Err("boolean mask indices are not supported".into());
        }
        bshape = broadcast_shape(&bshape, &sizes(ctx, t)?)?;
    }
    let mut idx = Vec::new();
    for &d in &present {
        let t = list[d].unwrap_or(0);
        let v = i64s(ctx, t)?;
        let map = broadcast_map(&sizes(ctx, t)?, &bshape)?;
        let n = s[d] as i64;
        let mut col = Vec::with_capacity(map.len());
        for m in map {
            let mut x = v[m];
            if x < 0 {
                x += n;
            }
            if x < 0 || x >= n {
                return Err(format!("index {} out of range for size {n}", v[m]));
            }
            col.push(x as usize);
        }
        idx.push(col);
    }
    Ok((first, present.len(), bshape, idx))
}

/// Linear element offsets (in `s`) of every element selected by the indices, in the order of
/// the result shape `s[..first] + bshape + s[first+k..]`.
pub(super) fn gather_offsets(
    s: &[usize],
    first: usize,
    k: usize,
    idx: &[Vec<usize>],
) -> (usize, Vec<usize>, usize) {
    let outer = numel(&s[..first]);
    let inner = numel(&s[first + k..]);
    let nb = idx.first().map_or(0, Vec::len);
    let mut base = Vec::with_capacity(nb);
    for b in 0..nb {
        let mut off = 0usize;
        for (j, col) in idx.iter().enumerate() {
            off = off * s[first + j] + col[b];
        }
        base.push(off);
    }
    let mid = numel(&s[first..first + k]);
    let _ = mid;
    (outer, base, inner)
}

pub(super) fn index_tensor(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let (first, k, bshape, idx) = resolve_indices(ctx, a[1], &s)?;
    let (outer, base, inner) = gather_offsets(&s, first, k, &idx);
    check_numel("index", &[outer, base.len(), inner])?;
    let mid = numel(&s[first..first + k]);
    let es = dtype(ctx, a[0])?.size();
    let src = bytes(ctx, a[0])?;
    let mut out = Vec::with_capacity(outer * base.len() * inner * es);
    for o in 0..outer {
        for &b in &base {
            let st = ((o * mid + b) * inner) * es;
            out.extend_from_slice(&src[st..st + inner * es]);
        }
    }
    let mut os = s[..first].to_vec();
    os.extend_from_slice(&bshape);
    os.extend_from_slice(&s[first + k..]);
    write_same(ctx, a[0], out_idx(a)?, os, out)
}

pub(super) fn index_put(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 5)?;
    let s = sizes(ctx, a[0])?;
    let (first, k, bshape, idx) = resolve_indices(ctx, a[1], &s)?;
    let accumulate = boolean(ctx, a[3])?;
    let (outer, base, inner) = gather_offsets(&s, first, k, &idx);
    check_numel("index_put", &[outer, base.len(), inner])?;
    let mid = numel(&s[first..first + k]);
    let mut rshape = s[..first].to_vec();
    rshape.extend_from_slice(&bshape);
    rshape.extend_from_slice(&s[first + k..]);
    let vs = sizes(ctx, a[2])?;
    let vmap = broadcast_map(&vs, &rshape)?;
    let o = out_idx(a)?;
    let sdt = dtype(ctx, a[0])?;
    let put = Put {
        outer,
        base: &base,
        mid,
        inner,
        vmap: &vmap,
        accumulate,
    };
    if sdt.is_float() {
        let mut x = f32s(ctx, a[0])?;
        put.apply(&mut x, &f32s(ctx, a[2])?);
        write(ctx, o, s, Data::F32(x))
    } else {
        let mut x = i64s(ctx, a[0])?;
        put.apply(&mut x, &i64s(ctx, a[2])?);
        write(ctx, o, s, Data::I64(x))
    }
}

/// Where `index_put` writes: for each of `outer` rows, each indexed offset in `base` (among
/// `mid` indexed positions), `inner` consecutive elements; `vmap` maps each written element to
/// its (broadcast) value.
struct Put<'a> {
    outer: usize,
    base: &'a [usize],
    mid: usize,
    inner: usize,
    vmap: &'a [usize],
    accumulate: bool,
}

impl Put<'_> {
    /// Store (or add, when accumulating) the values `v` into `x`.
    fn apply<T: Copy + std::ops::Add<Output = T>>(&self, x: &mut [T], v: &[T]) {
        let mut r = 0usize;
        for oi in 0..self.outer {
            for &b in self.base {
                for i in 0..self.inner {
                    let dst = (oi * self.mid + b) * self.inner + i;
                    let val = v[self.vmap[r]];
                    x[dst] = if self.accumulate { x[dst] + val } else { val };
                    r += 1;
                }
            }
        }
    }
}
