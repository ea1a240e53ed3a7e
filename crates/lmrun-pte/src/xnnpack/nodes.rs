//! The interpreter of a decoded XNNPACK graph: one function per node kind, over values held as
//! f32 or as dynamically quantized int8 rows, with shapes recomputed from the actual inputs
//! (dynamic shapes). Batched matmul, transposes, slices, softmax and broadcasting call the
//! portable ops' shared pieces, so the two paths cannot drift apart.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::graph::FLAG_TRANSPOSE_WEIGHTS;
use super::graph::{BinKind, Graph, Node, UnKind, ValueDef, DT_FP32, DT_INT32};
use super::quant::{qd8_fully_connected, quantize_rows};
use crate::ops::linear::batched_matmul;
use crate::ops::reduce::softmax_in_place;
use crate::ops::shape::{permute, slice_box};
use crate::tensor::{
    broadcast_shape, broadcast_zip, bytes_to_f32, check_numel, prod, Ctx, ScalarType,
};

/// A runtime value inside the graph.
#[derive(Clone)]
pub(super) enum XVal {
    F32(Vec<usize>, Vec<f32>),
    /// Dynamically quantized int8 rows with (scale, zero point) per row.
    Qd8(Vec<usize>, Vec<i8>, Vec<(f32, i32)>),
}

impl XVal {
    fn dims(&self) -> &[usize] {
        match self {
            XVal::F32(d, _) | XVal::Qd8(d, _, _) => d,
        }
    }
}

/// Values computed so far, by value id.
pub(super) type Vals = BTreeMap<u32, XVal>;

/// Result of a node: an error message.
type NResult<T> = Result<T, String>;

fn clamp(v: f32, (lo, hi): (f32, f32)) -> f32 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

impl Graph {
    /// A value as f32: borrowed when computed by an earlier node, decoded when constant.
    fn get_f32<'a>(&'a self, vals: &'a Vals, id: u32) -> NResult<(Vec<usize>, Cow<'a, [f32]>)> {
        if let Some(v) = vals.get(&id) {
            return match v {
                XVal::F32(d, x) => Ok((d.clone(), Cow::Borrowed(x.as_slice()))),
                XVal::Qd8(..) => Err(format!("value {id} is quantized where f32 is needed")),
            };
        }
        let def = self
            .values
            .get(&id)
            .ok_or_else(|| format!("value {id} undefined"))?;
        match (&def.data, def.dtype) {
            (Some(b), DT_FP32) => Ok((
                def.dims.clone(),
                Cow::Owned(bytes_to_f32(ScalarType::Float, b)),
            )),
            (Some(b), DT_INT32) => Ok((
                def.dims.clone(),
                Cow::Owned(bytes_to_f32(ScalarType::Int, b)),
            )),
            (Some(_), dt) => Err(format!("constant value {id} of datatype {dt} used as f32")),
            (None, _) => Err(format!("value {id} used before it was computed")),
        }
    }

    /// Run one node, storing its output in `vals`.
    pub(super) fn run_node(&self, ctx: &mut Ctx, node: &Node, vals: &mut Vals) -> NResult<()> {
        let (o, v) = match node {
            Node::Binary(k, a, b, o, mm) => (o, self.binary(vals, *k, *a, *b, *mm)?),
            Node::Unary(k, a, o, mm) => (o, self.unary(vals, *k, *a, *mm)?),
            Node::Softmax(a, o) => (o, self.softmax(vals, *a)?),
            Node::Bmm(a, b, o) => (o, self.bmm(vals, *a, *b)?),
            Node::Convert(a, o) => {
                let (d, x) = self.get_f32(vals, *a)?;
                let (q, params) = quantize_rows(&x, d.last().copied().unwrap_or(1).max(1));
                (o, XVal::Qd8(d, q, params))
            }
            Node::FullyConnected {
                input,
                filter,
                bias,
                out,
                flags,
                minmax,
            } => {
                let fc = Fc {
                    input: *input,
                    filter: &self.values[filter],
                    bias: *bias,
                    flags: *flags,
                    minmax: *minmax,
                };
                (out, self.fully_connected(ctx, vals, &fc)?)
            }
            Node::Reshape(a, o, shape) => (o, self.reshape(vals, *a, shape)?),
            Node::Concat(axis, ins, o) => (o, self.concat(vals, *axis, ins)?),
            Node::Transpose(a, o, perm) => (o, self.transpose(vals, *a, perm)?),
            Node::Slice(a, o, offs, sizes) => (o, self.slice(vals, *a, offs, sizes)?),
        };
        vals.insert(*o, v);
        Ok(())
    }

    fn binary(&self, vals: &Vals, k: BinKind, a: u32, b: u32, mm: (f32, f32)) -> NResult<XVal> {
        let (da, xa) = self.get_f32(vals, a)?;
        let (db, xb) = self.get_f32(vals, b)?;
        let shape = broadcast_shape(&da, &db)?;
        let f = |p: f32, q: f32| -> f32 {
            let r = match k {
                BinKind::Add => p + q,
                BinKind::Sub => p - q,
                BinKind::Mul => p * q,
                BinKind::Div => p / q,
                BinKind::Min => p.min(q),
                BinKind::Max => p.max(q),
            };
            clamp(r, mm)
        };
        let out = broadcast_zip((&xa, &da), (&xb, &db), &shape, f)?;
        Ok(XVal::F32(shape, out))
    }

    fn unary(&self, vals: &Vals, k: UnKind, a: u32, mm: (f32, f32)) -> NResult<XVal> {
        let (d, x) = self.get_f32(vals, a)?;
        let mut x = x.into_owned();
        for v in &mut x {
            let r = match k {
                UnKind::Sigmoid => 1.0 / (1.0 + (-*v).exp()),
                UnKind::Rsqrt => 1.0 / v.sqrt(),
                UnKind::Sqrt => v.sqrt(),
                UnKind::Neg => -*v,
                UnKind::Abs => v.abs(),
                UnKind::Square => *v * *v,
                UnKind::Exp => v.exp(),
                UnKind::Log => v.ln(),
                UnKind::Tanh => v.tanh(),
                UnKind::Clamp | UnKind::Copy => *v,
            };
            *v = clamp(r, mm);
        }
        Ok(XVal::F32(d, x))
    }

    /// Softmax over the last dimension.
    fn softmax(&self, vals: &Vals, a: u32) -> NResult<XVal> {
        let (d, x) = self.get_f32(vals, a)?;
        let mut x = x.into_owned();
        let n = d.last().copied().unwrap_or(1).max(1);
        for row in x.chunks_mut(n) {
            let len = row.len();
            softmax_in_place(row, 1, len, 1);
        }
        Ok(XVal::F32(d, x))
    }

    /// BatchMatrixMultiply: `[..., n, k] x [..., k, m]` with equal batch dims.
    fn bmm(&self, vals: &Vals, a: u32, b: u32) -> NResult<XVal> {
        let (da, xa) = self.get_f32(vals, a)?;
        let (db, xb) = self.get_f32(vals, b)?;
        if da.len() < 2 || da.len() != db.len() || da[..da.len() - 2] != db[..db.len() - 2] {
            return Err(format!("BatchMatrixMultiply shapes {da:?} x {db:?}"));
        }
        let r = da.len();
        let (n, k, m) = (da[r - 2], da[r - 1], db[r - 1]);
        if db[r - 2] != k {
            return Err(format!("BatchMatrixMultiply shapes {da:?} x {db:?}"));
        }
        let batch: usize = prod(&da[..r - 2]);
        check_numel("BatchMatrixMultiply", &[batch, n, m])?;
        let out = batched_matmul(&xa, &xb, batch, n, k, m);
        let mut od = da.clone();
        od[r - 1] = m;
        Ok(XVal::F32(od, out))
    }

    /// StaticReshape: sizes with at most one 0 (inferred).
    fn reshape(&self, vals: &Vals, a: u32, shape: &[usize]) -> NResult<XVal> {
        let (d, x) = self.get_f32(vals, a)?;
        let n: usize = prod(&d);
        let nz: Vec<usize> = shape.iter().copied().filter(|&s| s != 0).collect();
        let known = prod(&nz);
        let zeros = shape.iter().filter(|&&s| s == 0).count();
        let new: Vec<usize> = if zeros == 0 {
            shape.to_vec()
        } else if zeros == 1 && known > 0 && n % known == 0 {
            shape
                .iter()
                .map(|&s| if s == 0 { n / known } else { s })
                .collect()
        } else {
            return Err(format!("cannot reshape {d:?} to {shape:?}"));
        };
        if prod(&new) != n {
            return Err(format!("cannot reshape {d:?} to {shape:?}"));
        }
        Ok(XVal::F32(new, x.into_owned()))
    }

    /// Concatenate2–5 along `axis`.
    fn concat(&self, vals: &Vals, axis: usize, ins: &[u32]) -> NResult<XVal> {
        let mut parts = Vec::new();
        for i in ins {
            parts.push(self.get_f32(vals, *i)?);
        }
        let (d0, _) = &parts[0];
        if axis >= d0.len() {
            return Err(format!("concat axis {axis} for rank {}", d0.len()));
        }
        let mut nd = d0.clone();
        nd[axis] = 0;
        for (d, _) in &parts {
            if d.len() != d0.len() || d.iter().enumerate().any(|(i, &x)| i != axis && x != d0[i]) {
                return Err(format!("concat shapes {d0:?} and {d:?}"));
            }
            nd[axis] += d[axis];
        }
        let outer: usize = prod(&d0[..axis]);
        let inner: usize = prod(&d0[axis + 1..]);
        let mut out = Vec::with_capacity(prod(&nd));
        for oi in 0..outer {
            for (d, x) in &parts {
                let w = d[axis] * inner;
                out.extend_from_slice(&x[oi * w..(oi + 1) * w]);
            }
        }
        Ok(XVal::F32(nd, out))
    }

    /// StaticTranspose by `perm`.
    fn transpose(&self, vals: &Vals, a: u32, perm: &[usize]) -> NResult<XVal> {
        let (d, x) = self.get_f32(vals, a)?;
        let mut seen = vec![false; d.len()];
        if perm.len() != d.len()
            || perm
                .iter()
                .any(|&p| p >= d.len() || std::mem::replace(&mut seen[p], true))
        {
            return Err(format!("transpose {d:?} by {perm:?}"));
        }
        let (nd, out) = permute(&x, &d, perm, 1);
        Ok(XVal::F32(nd, out))
    }

    /// StaticSlice: `sizes` 0 means "to the end".
    fn slice(&self, vals: &Vals, a: u32, offs: &[usize], sizes: &[usize]) -> NResult<XVal> {
        let (d, x) = self.get_f32(vals, a)?;
        if offs.len() != d.len() || sizes.len() != d.len() {
            return Err("slice rank".into());
        }
        let nd: Vec<usize> = (0..d.len())
            .map(|i| {
                if sizes[i] == 0 {
                    d[i].saturating_sub(offs[i])
                } else {
                    sizes[i]
                }
            })
            .collect();
        if (0..d.len()).any(|i| offs[i] + nd[i] > d[i]) {
            return Err(format!("slice {offs:?}+{nd:?} out of {d:?}"));
        }
        let out = slice_box(&x, &d, offs, &nd);
        Ok(XVal::F32(nd, out))
    }
}

/// A FullyConnected node's operands.
struct Fc<'a> {
    input: u32,
    filter: &'a ValueDef,
    bias: Option<u32>,
    flags: u32,
    minmax: (f32, f32),
}

impl Graph {
    /// FullyConnected: fp32 (SIMD matmul on the weights in place, or the plain loop for
    /// transposed weights) or qd8 activations × int8/int4 weights; then bias and output range.
    fn fully_connected(&self, ctx: &mut Ctx, vals: &Vals, fc: &Fc<'_>) -> NResult<XVal> {
        let fdef = fc.filter;
        let w = fdef.data.as_ref().ok_or("filter has no data")?;
        let transposed = fc.flags & FLAG_TRANSPOSE_WEIGHTS != 0;
        let (rows, cols) = if transposed {
            (fdef.dims[1], fdef.dims[0])
        } else {
            (fdef.dims[0], fdef.dims[1])
        };
        let in_dims = vals
            .get(&fc.input)
            .map(|v| v.dims().to_vec())
            .ok_or("FullyConnected input not computed")?;
        if in_dims.last() != Some(&cols) {
            return Err(format!(
                "FullyConnected input {in_dims:?} with {cols} input channels"
            ));
        }
        let ntok = prod(&in_dims) / cols.max(1);
        check_numel("FullyConnected", &[ntok, rows])?;
        let mut o = match (&vals[&fc.input], fdef.dtype) {
            (XVal::F32(_, x), DT_FP32) if transposed => {
                let wf = bytes_to_f32(ScalarType::Float, w);
                if wf.len() < rows.saturating_mul(cols) {
                    return Err("filter data too short".into());
                }
                batched_matmul(x, &wf, 1, ntok, cols, rows)
            }
            (XVal::F32(_, x), DT_FP32) => fp32_matmul(ctx, w, x, ntok, rows, cols)?,
            (XVal::Qd8(_, q, params), dt) => {
                if transposed {
                    return Err("transposed quantized weights are not supported".into());
                }
                let mut o = vec![0f32; ntok * rows];
                qd8_fully_connected(&ctx.pool, fdef, dt, w, q, params, rows, cols, &mut o)?;
                o
            }
            (_, dt) => {
                return Err(format!(
                    "FullyConnected: f32 input with filter datatype {dt}"
                ))
            }
        };
        if let Some(b) = fc.bias {
            let (_, bv) = self.get_f32(vals, b)?;
            if bv.len() != rows {
                return Err("bias length".into());
            }
            for row in o.chunks_mut(rows.max(1)) {
                for (x, y) in row.iter_mut().zip(bv.iter()) {
                    *x += y;
                }
            }
        }
        for v in &mut o {
            *v = clamp(*v, fc.minmax);
        }
        let mut od = in_dims;
        if let Some(l) = od.last_mut() {
            *l = rows;
        }
        Ok(XVal::F32(od, o))
    }
}

/// `x [ntok, cols]` times the fp32 weight `w [rows, cols]` (in place) with `lmrun-kernels`'
/// SIMD matmul on the thread pool.
fn fp32_matmul(
    ctx: &mut Ctx,
    w: &[u8],
    x: &[f32],
    ntok: usize,
    rows: usize,
    cols: usize,
) -> NResult<Vec<f32>> {
    let mut o = vec![0f32; ntok * rows];
    let wbytes = w
        .get(..rows.saturating_mul(cols).saturating_mul(4))
        .ok_or("filter data too short")?;
    let wr = lmrun_kernels::WeightRef::new(lmrun_kernels::QType::F32, wbytes, rows, cols)
        .map_err(|e| e.to_string())?;
    let mut scratch = std::mem::take(&mut ctx.scratch);
    let r = lmrun_kernels::matmul(&ctx.pool, &wr, x, ntok, &mut o, &mut scratch);
    ctx.scratch = scratch;
    r.map_err(|e| e.to_string())?;
    Ok(o)
}
