//! Portable kernels for the operators ExecuTorch's Llama exports use (the `.out` variants of
//! `aten::` ops, the `executorch_prim::` scalar ops, `et_view`, and the custom
//! `llama::update_cache` / `llama::custom_sdpa`). Each kernel reads its arguments from the
//! interpreter's values, computes into a fresh buffer (so aliasing between inputs and the
//! output is harmless) and writes the result into the output tensor, resizing it within its
//! planned capacity. Float math is done in f32 in the order ExecuTorch's portable kernels use,
//! except linear, which uses `lmrun-kernels`' SIMD matmul on the weights in place.

use half::{bf16, f16};

use crate::method::{Ctx, RTensor, RValue, Storage};
use crate::value::ScalarType;

/// A kernel: run on the values at `args` (the output is the last argument).
pub(crate) type KernelFn = fn(&mut Ctx, &[usize]) -> Result<(), String>;

type KResult<T> = Result<T, String>;

/// The kernel registered for `name.overload`.
pub(crate) fn lookup(op: &str) -> Option<KernelFn> {
    let f: KernelFn = match op {
        "aten::sym_size.int" => sym_size,
        "aten::sym_numel" => sym_numel,
        "aten::_local_scalar_dense" => local_scalar_dense,
        "aten::embedding.out" => embedding,
        "aten::select_copy.int_out" => select_copy,
        "aten::slice_copy.Tensor_out" => slice_copy,
        "aten::mul.out" => |c, a| binary(c, a, BinOp::Mul, false),
        "aten::add.out" => |c, a| binary(c, a, BinOp::Add, true),
        "aten::sub.out" => |c, a| binary(c, a, BinOp::Sub, true),
        "aten::div.out" => |c, a| binary(c, a, BinOp::Div, false),
        "aten::mul.Scalar_out" => |c, a| binary_scalar(c, a, BinOp::Mul),
        "aten::add.Scalar_out" => |c, a| binary_scalar(c, a, BinOp::Add),
        "aten::eq.Scalar_out" => |c, a| binary_scalar(c, a, BinOp::Eq),
        "aten::mean.out" => mean,
        "aten::rsqrt.out" => |c, a| unary_f32(c, a, |x| 1.0 / x.sqrt()),
        "aten::sigmoid.out" => |c, a| unary_f32(c, a, |x| 1.0 / (1.0 + (-x).exp())),
        "aten::silu.out" => |c, a| unary_f32(c, a, |x| x / (1.0 + (-x).exp())),
        "aten::neg.out" => |c, a| unary_f32(c, a, |x| -x),
        "aten::linear.out" => linear,
        "executorch_prim::et_view.default" => et_view,
        "aten::view_copy.out" => view_copy,
        "aten::squeeze_copy.dims_out" => squeeze_copy,
        "aten::unsqueeze_copy.out" => unsqueeze_copy,
        "aten::cat.out" => cat,
        "aten::permute_copy.out" => permute_copy,
        "aten::arange.start_out" => arange_start,
        "aten::scalar_tensor.out" => scalar_tensor,
        "aten::_to_copy.out" | "aten::clone.out" | "dim_order_ops::_to_dim_order_copy.out" => {
            to_copy
        }
        "aten::index_put.out" => index_put,
        "aten::index.Tensor_out" => index_tensor,
        "aten::expand_copy.out" => expand_copy,
        "aten::where.self_out" => where_self,
        "aten::bmm.out" => bmm,
        "aten::_softmax.out" => softmax,
        "aten::logical_not.out" => logical_not,
        "aten::any.out" | "aten::any.dims_out" => any_dim,
        "aten::full_like.out" => full_like,
        "aten::copy_" => copy_inplace,
        "llama::update_cache.out" => update_cache,
        "llama::custom_sdpa.out" => custom_sdpa,
        "executorch_prim::add.Scalar" => |c, a| prim(c, a, PrimOp::Add),
        "executorch_prim::sub.Scalar" => |c, a| prim(c, a, PrimOp::Sub),
        "executorch_prim::mul.Scalar" => |c, a| prim(c, a, PrimOp::Mul),
        "executorch_prim::floordiv.Scalar" | "executorch_prim::floordiv.int" => {
            |c, a| prim(c, a, PrimOp::FloorDiv)
        }
        "executorch_prim::truediv.Scalar" => |c, a| prim(c, a, PrimOp::TrueDiv),
        "executorch_prim::mod.Scalar" | "executorch_prim::mod.int" => {
            |c, a| prim(c, a, PrimOp::Mod)
        }
        "executorch_prim::eq.Scalar" => |c, a| prim(c, a, PrimOp::Eq),
        "executorch_prim::gt.Scalar" => |c, a| prim(c, a, PrimOp::Gt),
        "executorch_prim::lt.Scalar" => |c, a| prim(c, a, PrimOp::Lt),
        "executorch_prim::ge.Scalar" => |c, a| prim(c, a, PrimOp::Ge),
        "executorch_prim::le.Scalar" => |c, a| prim(c, a, PrimOp::Le),
        "executorch_prim::sym_max.Scalar" => |c, a| prim(c, a, PrimOp::Max),
        "executorch_prim::sym_min.Scalar" => |c, a| prim(c, a, PrimOp::Min),
        "executorch_prim::neg.Scalar" => prim_neg,
        "aten::mm.out" => mm,
        "quantized_decomposed::embedding_byte.out"
        | "quantized_decomposed::embedding_byte.dtype_out" => |c, a| embedding_xbit(c, a, 8),
        "quantized_decomposed::embedding_4bit.out"
        | "quantized_decomposed::embedding_4bit.dtype_out" => |c, a| embedding_xbit(c, a, 4),
        "quantized_decomposed::embedding_2bit.out"
        | "quantized_decomposed::embedding_2bit.dtype_out" => |c, a| embedding_xbit(c, a, 2),
        "aten::addmm.out" => addmm,
        "aten::pow.Tensor_Scalar_out" => pow_scalar,
        "aten::transpose_copy.int_out" => transpose_copy,
        "aten::t_copy.out" => t_copy,
        "aten::stack.out" => stack,
        "aten::exp.out" => |c, a| unary_f32(c, a, f32::exp),
        "aten::cos.out" => |c, a| unary_f32(c, a, f32::cos),
        "aten::sin.out" => |c, a| unary_f32(c, a, f32::sin),
        "aten::tanh.out" => |c, a| unary_f32(c, a, f32::tanh),
        "aten::sqrt.out" => |c, a| unary_f32(c, a, f32::sqrt),
        "aten::relu.out" => |c, a| unary_f32(c, a, |x| x.max(0.0)),
        "aten::alias_copy.out" => to_copy,
        "aten::index_copy.out" => index_copy,
        "aten::unbind_copy.int_out" => unbind_copy,
        "aten::split_with_sizes_copy.out" => split_with_sizes_copy,
        "aten::full.out" => full,
        "aten::masked_fill.Scalar_out" => masked_fill,
        "aten::tril.out" => |c, a| tri(c, a, true),
        "aten::triu.out" => |c, a| tri(c, a, false),
        _ => return None,
    };
    Some(f)
}

// ---------------------------------------------------------------------------------------------
// dtype conversion

/// Decode little-endian elements of `dtype` to f32.
pub(crate) fn bytes_to_f32(dtype: ScalarType, b: &[u8]) -> Vec<f32> {
    use ScalarType::*;
    match dtype {
        Float => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Half => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        BFloat16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Double => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        _ => bytes_to_i64(dtype, b)
            .into_iter()
            .map(|x| x as f32)
            .collect(),
    }
}

/// Decode little-endian elements of `dtype` to i64 (floats truncate).
pub(crate) fn bytes_to_i64(dtype: ScalarType, b: &[u8]) -> Vec<i64> {
    use ScalarType::*;
    match dtype {
        Byte | QUInt8 | QUInt4x2 | QUInt2x4 => b.iter().map(|&x| i64::from(x)).collect(),
        Bool => b.iter().map(|&x| i64::from(x != 0)).collect(),
        Char | QInt8 => b.iter().map(|&x| i64::from(x as i8)).collect(),
        Short => b
            .chunks_exact(2)
            .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        UInt16 | Bits16 => b
            .chunks_exact(2)
            .map(|c| i64::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Int | QInt32 => b
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        UInt32 => b
            .chunks_exact(4)
            .map(|c| i64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Long | UInt64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        Float | Half | BFloat16 | Double => bytes_to_f32(dtype, b)
            .into_iter()
            .map(|x| x as i64)
            .collect(),
    }
}

/// Computed data, before encoding into the output's dtype.
pub(crate) enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    /// Bytes already in the output's dtype.
    Raw(Vec<u8>),
}

fn encode(dtype: ScalarType, d: Data) -> KResult<Vec<u8>> {
    use ScalarType::*;
    if let Data::Raw(v) = d {
        return Ok(v);
    }
    let f = |v: f64| -> Vec<u8> {
        match dtype {
            Float => (v as f32).to_le_bytes().to_vec(),
            Double => v.to_le_bytes().to_vec(),
            Half => f16::from_f64(v).to_le_bytes().to_vec(),
            BFloat16 => bf16::from_f64(v).to_le_bytes().to_vec(),
            _ => Vec::new(),
        }
    };
    let i = |v: i64| -> Vec<u8> {
        match dtype {
            Byte | QUInt8 => vec![v as u8],
            Char | QInt8 => vec![v as i8 as u8],
            Bool => vec![u8::from(v != 0)],
            Short => (v as i16).to_le_bytes().to_vec(),
            UInt16 | Bits16 => (v as u16).to_le_bytes().to_vec(),
            Int | QInt32 => (v as i32).to_le_bytes().to_vec(),
            UInt32 => (v as u32).to_le_bytes().to_vec(),
            Long | UInt64 => v.to_le_bytes().to_vec(),
            _ => Vec::new(),
        }
    };
    if matches!(dtype, QUInt4x2 | QUInt2x4) {
        return Err(format!("cannot write {dtype:?} output"));
    }
    let mut out = Vec::new();
    match d {
        Data::F32(v) => {
            if dtype == Float {
                out.reserve(v.len() * 4);
                for x in v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            } else if dtype.is_float() {
                for x in v {
                    out.extend(f(f64::from(x)));
                }
            } else if dtype == Bool {
                out.extend(v.iter().map(|&x| u8::from(x != 0.0)));
            } else {
                for x in v {
                    out.extend(i(x as i64));
                }
            }
        }
        Data::I64(v) => {
            if dtype.is_float() {
                for x in v {
                    out.extend(f(x as f64));
                }
            } else {
                for x in v {
                    out.extend(i(x));
                }
            }
        }
        Data::Bool(v) => {
            for x in v {
                if dtype.is_float() {
                    out.extend(f(if x { 1.0 } else { 0.0 }));
                } else {
                    out.extend(i(i64::from(x)));
                }
            }
        }
        Data::Raw(_) => {}
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// value access

pub(crate) fn tensor_bytes<'a>(ctx: &'a Ctx, t: &'a RTensor) -> KResult<&'a [u8]> {
    let n = t.nbytes();
    let s: Option<&[u8]> = match &t.storage {
        Storage::Unset => {
            if n == 0 {
                Some(&[])
            } else {
                return Err("tensor has no data (input not set, or freed)".into());
            }
        }
        Storage::Const(b) => b.get(..n),
        Storage::Arena { id, off } => ctx
            .arenas
            .get(*id)
            .and_then(|a| a.get(*off..off.checked_add(n)?)),
        Storage::Owned(v) => v.get(..n),
    };
    s.ok_or_else(|| format!("tensor of {n} bytes exceeds its storage"))
}

pub(crate) fn tensor(ctx: &Ctx, i: usize) -> KResult<&RTensor> {
    match ctx.values.get(i) {
        Some(RValue::Tensor(t)) => Ok(t),
        Some(_) => Err(format!("value {i} is not a tensor")),
        None => Err(format!("value {i} out of range")),
    }
}

fn bytes(ctx: &Ctx, i: usize) -> KResult<&[u8]> {
    tensor_bytes(ctx, tensor(ctx, i)?)
}

fn f32s(ctx: &Ctx, i: usize) -> KResult<Vec<f32>> {
    let t = tensor(ctx, i)?;
    Ok(bytes_to_f32(t.dtype, tensor_bytes(ctx, t)?))
}

fn i64s(ctx: &Ctx, i: usize) -> KResult<Vec<i64>> {
    let t = tensor(ctx, i)?;
    Ok(bytes_to_i64(t.dtype, tensor_bytes(ctx, t)?))
}

fn sizes(ctx: &Ctx, i: usize) -> KResult<Vec<usize>> {
    Ok(tensor(ctx, i)?.sizes.clone())
}

fn dtype(ctx: &Ctx, i: usize) -> KResult<ScalarType> {
    Ok(tensor(ctx, i)?.dtype)
}

fn int(ctx: &Ctx, i: usize) -> KResult<i64> {
    match ctx.values.get(i) {
        Some(RValue::Int(v)) => Ok(*v),
        Some(RValue::Bool(b)) => Ok(i64::from(*b)),
        Some(RValue::Double(d)) if d.fract() == 0.0 => Ok(*d as i64),
        _ => Err(format!("value {i} is not an Int")),
    }
}

fn opt_int(ctx: &Ctx, i: usize) -> KResult<Option<i64>> {
    match ctx.values.get(i) {
        Some(RValue::None) => Ok(None),
        _ => int(ctx, i).map(Some),
    }
}

fn boolean(ctx: &Ctx, i: usize) -> KResult<bool> {
    match ctx.values.get(i) {
        Some(RValue::Bool(b)) => Ok(*b),
        Some(RValue::Int(v)) => Ok(*v != 0),
        _ => Err(format!("value {i} is not a Bool")),
    }
}

#[derive(Clone, Copy, Debug)]
enum Scalar {
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl Scalar {
    fn f64(self) -> f64 {
        match self {
            Scalar::Int(v) => v as f64,
            Scalar::Double(v) => v,
            Scalar::Bool(b) => f64::from(u8::from(b)),
        }
    }
}

fn scalar(ctx: &Ctx, i: usize) -> KResult<Scalar> {
    match ctx.values.get(i) {
        Some(RValue::Int(v)) => Ok(Scalar::Int(*v)),
        Some(RValue::Double(v)) => Ok(Scalar::Double(*v)),
        Some(RValue::Bool(v)) => Ok(Scalar::Bool(*v)),
        _ => Err(format!("value {i} is not a scalar")),
    }
}

fn int_list(ctx: &Ctx, i: usize) -> KResult<Vec<i64>> {
    match ctx.values.get(i) {
        Some(RValue::IntList(l)) => l.iter().map(|&j| int(ctx, j)).collect(),
        Some(RValue::Int(v)) => Ok(vec![*v]),
        Some(RValue::None) => Ok(Vec::new()),
        _ => Err(format!("value {i} is not an int list")),
    }
}

/// Write `data` (in `sizes`) into tensor value `i`, resizing it within its capacity.
pub(crate) fn write(ctx: &mut Ctx, i: usize, sizes: Vec<usize>, data: Data) -> KResult<()> {
    let dt = dtype(ctx, i)?;
    let b = encode(dt, data)?;
    let n = prod(&sizes).saturating_mul(dt.size());
    if b.len() != n {
        return Err(format!(
            "internal: {} bytes computed for an output of {n} bytes",
            b.len()
        ));
    }
    let Some(RValue::Tensor(t)) = ctx.values.get_mut(i) else {
        return Err(format!("value {i} is not a tensor"));
    };
    if n > t.cap {
        return Err(format!(
            "output of sizes {sizes:?} ({n} bytes) exceeds its planned capacity ({} bytes)",
            t.cap
        ));
    }
    match &mut t.storage {
        Storage::Arena { id, off } => {
            let (id, off) = (*id, *off);
            t.sizes = sizes;
            let a = ctx.arenas.get_mut(id).ok_or("arena out of range")?;
            a.get_mut(off..off + n)
                .ok_or("arena slot out of range")?
                .copy_from_slice(&b);
        }
        Storage::Const(_) => return Err("cannot write into a constant tensor".into()),
        s => {
            *s = Storage::Owned(b);
            t.sizes = sizes;
        }
    }
    Ok(())
}

fn out_idx(args: &[usize]) -> KResult<usize> {
    args.last()
        .copied()
        .ok_or_else(|| "no arguments".to_string())
}

fn need(args: &[usize], n: usize) -> KResult<()> {
    if args.len() < n {
        return Err(format!(
            "expected at least {n} arguments, got {}",
            args.len()
        ));
    }
    Ok(())
}

fn wrap_dim(d: i64, ndim: usize) -> KResult<usize> {
    let n = ndim.max(1) as i64;
    let w = if d < 0 { d + n } else { d };
    if w < 0 || w >= n {
        return Err(format!("dimension {d} out of range for rank {ndim}"));
    }
    Ok(w as usize)
}

fn numel(s: &[usize]) -> usize {
    prod(s)
}

/// Product of sizes, saturating at `usize::MAX` (sizes can come from a hostile file).
pub(crate) fn prod(s: &[usize]) -> usize {
    s.iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .unwrap_or(usize::MAX)
}

/// Most elements a kernel will materialise (guards allocations driven by hostile sizes:
/// 2^28 f32 = 1 GiB, far above any single activation of the models lmrun runs).
pub(crate) const MAX_ELEMENTS: usize = 1 << 28;

/// Refuse to materialise more than [`MAX_ELEMENTS`] elements.
pub(crate) fn check_numel(what: &str, dims: &[usize]) -> KResult<usize> {
    let n = prod(dims);
    if n > MAX_ELEMENTS {
        return Err(format!("{what}: output of shape {dims:?} is too large"));
    }
    Ok(n)
}

/// `outer, n, inner` around `dim`.
fn split(s: &[usize], dim: usize) -> (usize, usize, usize) {
    (
        numel(&s[..dim]),
        s.get(dim).copied().unwrap_or(1),
        numel(&s[(dim + 1).min(s.len())..]),
    )
}

pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> KResult<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!("shapes {a:?} and {b:?} do not broadcast"));
        };
    }
    Ok(out)
}

/// For every element of `out` shape, the linear index into a tensor of shape `inp`
/// broadcast to it.
pub(crate) fn broadcast_map(inp: &[usize], out: &[usize]) -> KResult<Vec<usize>> {
    if inp.len() > out.len() {
        return Err(format!("cannot broadcast {inp:?} to {out:?}"));
    }
    let pad = out.len() - inp.len();
    let mut strides = vec![0usize; out.len()];
    let mut s = 1;
    for i in (0..inp.len()).rev() {
        let d = inp[i];
        if d != 1 && d != out[i + pad] {
            return Err(format!("cannot broadcast {inp:?} to {out:?}"));
        }
        strides[i + pad] = if d == 1 { 0 } else { s };
        s *= d;
    }
    let n = numel(out);
    if n > MAX_ELEMENTS {
        return Err(format!("shape {out:?} is too large"));
    }
    let mut map = Vec::with_capacity(n);
    if n == 0 {
        return Ok(map);
    }
    let mut idx = vec![0usize; out.len()];
    let mut lin = 0usize;
    for _ in 0..n {
        map.push(lin);
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            lin += strides[d];
            if idx[d] < out[d] {
                break;
            }
            lin -= strides[d] * idx[d];
            idx[d] = 0;
        }
    }
    Ok(map)
}

// ---------------------------------------------------------------------------------------------
// scalar / shape ops

fn sym_size(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let d = wrap_dim(int(ctx, a[1])?, s.len())?;
    let v = s.get(d).copied().unwrap_or(1) as i64;
    ctx.values[out_idx(a)?] = RValue::Int(v);
    Ok(())
}

fn sym_numel(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let n = numel(&sizes(ctx, a[0])?) as i64;
    ctx.values[out_idx(a)?] = RValue::Int(n);
    Ok(())
}

fn local_scalar_dense(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let t = tensor(ctx, a[0])?;
    if t.numel() != 1 {
        return Err(format!(
            "_local_scalar_dense of a tensor with {} elements",
            t.numel()
        ));
    }
    let v = if t.dtype.is_float() {
        RValue::Double(f64::from(f32s(ctx, a[0])?[0]))
    } else if t.dtype == ScalarType::Bool {
        RValue::Bool(i64s(ctx, a[0])?[0] != 0)
    } else {
        RValue::Int(i64s(ctx, a[0])?[0])
    };
    ctx.values[out_idx(a)?] = v;
    Ok(())
}

#[derive(Clone, Copy)]
enum PrimOp {
    Add,
    Sub,
    Mul,
    FloorDiv,
    TrueDiv,
    Mod,
    Eq,
    Gt,
    Lt,
    Ge,
    Le,
    Max,
    Min,
}

fn prim(ctx: &mut Ctx, a: &[usize], op: PrimOp) -> KResult<()> {
    need(a, 3)?;
    let x = scalar(ctx, a[0])?;
    let y = scalar(ctx, a[1])?;
    let v = match (x, y) {
        (Scalar::Int(p), Scalar::Int(q)) => match op {
            PrimOp::Add => RValue::Int(p.wrapping_add(q)),
            PrimOp::Sub => RValue::Int(p.wrapping_sub(q)),
            PrimOp::Mul => RValue::Int(p.wrapping_mul(q)),
            PrimOp::FloorDiv => {
                if q == 0 {
                    return Err("integer division by zero".into());
                }
                RValue::Int(p.div_euclid(q) - i64::from(q < 0 && p.rem_euclid(q) != 0))
            }
            PrimOp::TrueDiv => RValue::Double(p as f64 / q as f64),
            PrimOp::Mod => {
                if q == 0 {
                    return Err("integer modulo by zero".into());
                }
                let r = p % q;
                RValue::Int(if r != 0 && ((r < 0) != (q < 0)) {
                    r + q
                } else {
                    r
                })
            }
            PrimOp::Eq => RValue::Bool(p == q),
            PrimOp::Gt => RValue::Bool(p > q),
            PrimOp::Lt => RValue::Bool(p < q),
            PrimOp::Ge => RValue::Bool(p >= q),
            PrimOp::Le => RValue::Bool(p <= q),
            PrimOp::Max => RValue::Int(p.max(q)),
            PrimOp::Min => RValue::Int(p.min(q)),
        },
        _ => {
            let (p, q) = (x.f64(), y.f64());
            match op {
                PrimOp::Add => RValue::Double(p + q),
                PrimOp::Sub => RValue::Double(p - q),
                PrimOp::Mul => RValue::Double(p * q),
                PrimOp::FloorDiv => RValue::Double((p / q).floor()),
                PrimOp::TrueDiv => RValue::Double(p / q),
                PrimOp::Mod => RValue::Double(p - (p / q).floor() * q),
                PrimOp::Eq => RValue::Bool(p == q),
                PrimOp::Gt => RValue::Bool(p > q),
                PrimOp::Lt => RValue::Bool(p < q),
                PrimOp::Ge => RValue::Bool(p >= q),
                PrimOp::Le => RValue::Bool(p <= q),
                PrimOp::Max => RValue::Double(p.max(q)),
                PrimOp::Min => RValue::Double(p.min(q)),
            }
        }
    };
    ctx.values[out_idx(a)?] = v;
    Ok(())
}

fn q_of(s: Scalar) -> i64 {
    match s {
        Scalar::Int(v) => v,
        Scalar::Bool(b) => i64::from(b),
        Scalar::Double(d) => d as i64,
    }
}

fn prim_neg(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let v = match scalar(ctx, a[0])? {
        Scalar::Int(v) => RValue::Int(v.wrapping_neg()),
        s => RValue::Double(-s.f64()),
    };
    ctx.values[out_idx(a)?] = v;
    Ok(())
}

fn et_view(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

fn view_sizes(old: &[usize], spec: &[i64]) -> KResult<Vec<usize>> {
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

fn view_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let new = view_sizes(&s, &int_list(ctx, a[1])?)?;
    copy_as(ctx, a[0], out_idx(a)?, new)
}

/// Copy tensor `src` into `dst` with new sizes (same element count), converting the dtype.
fn copy_as(ctx: &mut Ctx, src: usize, dst: usize, new: Vec<usize>) -> KResult<()> {
    let st = dtype(ctx, src)?;
    let dt = dtype(ctx, dst)?;
    let data = if st == dt {
        Data::Raw(bytes(ctx, src)?.to_vec())
    } else if st.is_float() {
        Data::F32(f32s(ctx, src)?)
    } else {
        Data::I64(i64s(ctx, src)?)
    };
    write(ctx, dst, new, data)
}

fn squeeze_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

fn unsqueeze_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let mut s = sizes(ctx, a[0])?;
    let d = wrap_dim(int(ctx, a[1])?, s.len() + 1)?;
    s.insert(d, 1);
    copy_as(ctx, a[0], out_idx(a)?, s)
}

fn select_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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
fn write_same(
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

fn slice_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

fn cat(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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
        let raw = if dtype(ctx, *t)? == odt {
            bytes(ctx, *t)?.to_vec()
        } else if odt.is_float() {
            encode(odt, Data::F32(f32s(ctx, *t)?))?
        } else {
            encode(odt, Data::I64(i64s(ctx, *t)?))?
        };
        chunks.push((raw, s[d] * inner * es));
    }
    let mut out = Vec::with_capacity(numel(&ns) * es);
    for oi in 0..outer {
        for (raw, w) in &chunks {
            out.extend_from_slice(&raw[oi * w..(oi + 1) * w]);
        }
    }
    write(ctx, o, ns, Data::Raw(out))
}

fn permute_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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
    let es = dtype(ctx, a[0])?.size();
    let ns: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let mut st = vec![1usize; s.len()];
    for i in (0..s.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * s[i + 1];
    }
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let src = bytes(ctx, a[0])?;
    let n = numel(&ns);
    let mut out = Vec::with_capacity(n * es);
    let mut idx = vec![0usize; ns.len()];
    let mut lin = 0usize;
    for _ in 0..n {
        out.extend_from_slice(&src[lin * es..(lin + 1) * es]);
        for d in (0..ns.len()).rev() {
            idx[d] += 1;
            lin += pst[d];
            if idx[d] < ns[d] {
                break;
            }
            lin -= pst[d] * idx[d];
            idx[d] = 0;
        }
    }
    write_same(ctx, a[0], out_idx(a)?, ns, out)
}

fn expand_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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
    let mut out = Vec::with_capacity(map.len() * es);
    for &m in &map {
        out.extend_from_slice(&src[m * es..(m + 1) * es]);
    }
    write_same(ctx, a[0], out_idx(a)?, ns, out)
}

fn to_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let s = sizes(ctx, a[0])?;
    copy_as(ctx, a[0], out_idx(a)?, s)
}

fn full_like(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let v = scalar(ctx, a[1])?;
    let n = check_numel("full_like", &s)?;
    let o = out_idx(a)?;
    let data = match v {
        Scalar::Double(d) => Data::F32(vec![d as f32; n]),
        Scalar::Int(i) => Data::I64(vec![i; n]),
        Scalar::Bool(b) => Data::Bool(vec![b; n]),
    };
    write(ctx, o, s, data)
}

fn scalar_tensor(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let v = scalar(ctx, a[0])?;
    let data = match v {
        Scalar::Double(d) => Data::F32(vec![d as f32]),
        Scalar::Int(i) => Data::I64(vec![i]),
        Scalar::Bool(b) => Data::Bool(vec![b]),
    };
    let o = out_idx(a)?;
    write(ctx, o, Vec::new(), data)
}

fn arange_start(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let (s, e, st) = (scalar(ctx, a[0])?, scalar(ctx, a[1])?, scalar(ctx, a[2])?);
    let o = out_idx(a)?;
    let (sf, ef, stf) = (s.f64(), e.f64(), st.f64());
    if stf == 0.0 || !stf.is_finite() || !sf.is_finite() || !ef.is_finite() {
        return Err("arange: bad start/end/step".into());
    }
    let n = ((ef - sf) / stf).ceil().max(0.0);
    if n > MAX_ELEMENTS as f64 {
        return Err("arange: too many elements".into());
    }
    let n = n as usize;
    let data = if dtype(ctx, o)?.is_float() {
        Data::F32((0..n).map(|i| (sf + stf * i as f64) as f32).collect())
    } else {
        Data::I64((0..n).map(|i| (sf + stf * i as f64) as i64).collect())
    };
    write(ctx, o, vec![n], data)
}

// ---------------------------------------------------------------------------------------------
// elementwise

#[derive(Clone, Copy)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
}

fn apply_f32(op: BinOp, x: f32, y: f32, alpha: f32) -> f32 {
    match op {
        BinOp::Add => x + alpha * y,
        BinOp::Sub => x - alpha * y,
        BinOp::Mul => x * y,
        BinOp::Div => x / y,
        BinOp::Eq => f32::from(u8::from(x == y)),
    }
}

fn apply_i64(op: BinOp, x: i64, y: i64, alpha: i64) -> i64 {
    match op {
        BinOp::Add => x.wrapping_add(alpha.wrapping_mul(y)),
        BinOp::Sub => x.wrapping_sub(alpha.wrapping_mul(y)),
        BinOp::Mul => x.wrapping_mul(y),
        BinOp::Div => {
            if y == 0 {
                0
            } else {
                x / y
            }
        }
        BinOp::Eq => i64::from(x == y),
    }
}

fn binary(ctx: &mut Ctx, a: &[usize], op: BinOp, has_alpha: bool) -> KResult<()> {
    need(a, if has_alpha { 4 } else { 3 })?;
    let o = out_idx(a)?;
    let (sa, sb) = (sizes(ctx, a[0])?, sizes(ctx, a[1])?);
    let shape = broadcast_shape(&sa, &sb)?;
    let alpha = if has_alpha {
        scalar(ctx, a[2])?
    } else {
        Scalar::Int(1)
    };
    let odt = dtype(ctx, o)?;
    let n = numel(&shape);
    let data = if odt.is_float() || matches!(op, BinOp::Div) {
        let (x, y) = (f32s(ctx, a[0])?, f32s(ctx, a[1])?);
        let al = alpha.f64() as f32;
        if sa == shape && sb == shape {
            Data::F32(
                x.iter()
                    .zip(&y)
                    .map(|(&p, &q)| apply_f32(op, p, q, al))
                    .collect(),
            )
        } else {
            let (ma, mb) = (broadcast_map(&sa, &shape)?, broadcast_map(&sb, &shape)?);
            Data::F32(
                (0..n)
                    .map(|i| apply_f32(op, x[ma[i]], y[mb[i]], al))
                    .collect(),
            )
        }
    } else {
        let (x, y) = (i64s(ctx, a[0])?, i64s(ctx, a[1])?);
        let (ma, mb) = (broadcast_map(&sa, &shape)?, broadcast_map(&sb, &shape)?);
        let al = q_of(alpha);
        Data::I64(
            (0..n)
                .map(|i| apply_i64(op, x[ma[i]], y[mb[i]], al))
                .collect(),
        )
    };
    write(ctx, o, shape, data)
}

fn binary_scalar(ctx: &mut Ctx, a: &[usize], op: BinOp) -> KResult<()> {
    need(a, 3)?;
    let o = out_idx(a)?;
    let s = sizes(ctx, a[0])?;
    let y = scalar(ctx, a[1])?;
    let odt = dtype(ctx, o)?;
    let data = if matches!(op, BinOp::Eq) {
        if dtype(ctx, a[0])?.is_float() || matches!(y, Scalar::Double(_)) {
            let yv = y.f64();
            Data::Bool(
                f32s(ctx, a[0])?
                    .iter()
                    .map(|&x| f64::from(x) == yv)
                    .collect(),
            )
        } else {
            let yv = q_of(y);
            Data::Bool(i64s(ctx, a[0])?.iter().map(|&x| x == yv).collect())
        }
    } else if odt.is_float() {
        let yv = y.f64() as f32;
        Data::F32(
            f32s(ctx, a[0])?
                .iter()
                .map(|&x| apply_f32(op, x, yv, 1.0))
                .collect(),
        )
    } else {
        let yv = q_of(y);
        Data::I64(
            i64s(ctx, a[0])?
                .iter()
                .map(|&x| apply_i64(op, x, yv, 1))
                .collect(),
        )
    };
    write(ctx, o, s, data)
}

fn unary_f32(ctx: &mut Ctx, a: &[usize], f: fn(f32) -> f32) -> KResult<()> {
    need(a, 2)?;
    let s = sizes(ctx, a[0])?;
    let v: Vec<f32> = f32s(ctx, a[0])?.into_iter().map(f).collect();
    write(ctx, out_idx(a)?, s, Data::F32(v))
}

fn logical_not(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let s = sizes(ctx, a[0])?;
    let v = if dtype(ctx, a[0])?.is_float() {
        f32s(ctx, a[0])?.iter().map(|&x| x == 0.0).collect()
    } else {
        i64s(ctx, a[0])?.iter().map(|&x| x == 0).collect()
    };
    write(ctx, out_idx(a)?, s, Data::Bool(v))
}

fn where_self(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let o = out_idx(a)?;
    let (sc, sx, sy) = (sizes(ctx, a[0])?, sizes(ctx, a[1])?, sizes(ctx, a[2])?);
    let shape = broadcast_shape(&broadcast_shape(&sc, &sx)?, &sy)?;
    let (mc, mx, my) = (
        broadcast_map(&sc, &shape)?,
        broadcast_map(&sx, &shape)?,
        broadcast_map(&sy, &shape)?,
    );
    let c = i64s(ctx, a[0])?;
    let data = if dtype(ctx, o)?.is_float() {
        let (x, y) = (f32s(ctx, a[1])?, f32s(ctx, a[2])?);
        Data::F32(
            (0..mc.len())
                .map(|i| if c[mc[i]] != 0 { x[mx[i]] } else { y[my[i]] })
                .collect(),
        )
    } else {
        let (x, y) = (i64s(ctx, a[1])?, i64s(ctx, a[2])?);
        Data::I64(
            (0..mc.len())
                .map(|i| if c[mc[i]] != 0 { x[mx[i]] } else { y[my[i]] })
                .collect(),
        )
    };
    write(ctx, o, shape, data)
}

// ---------------------------------------------------------------------------------------------
// reductions

/// Output shape and, for each output element, the list of reduced input indices is implied by
/// iterating: returns (out_shape, outer strides) via a generic loop.
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
    let mut idx = vec![0usize; nd];
    let mut lin = 0usize;
    for &v in x.iter().take(n) {
        acc[lin] = f(acc[lin], v);
        for d in (0..nd).rev() {
            idx[d] += 1;
            lin += ost[d];
            if idx[d] < s[d] {
                break;
            }
            lin -= ost[d] * idx[d];
            idx[d] = 0;
        }
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

fn mean(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

fn any_dim(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let s = sizes(ctx, a[0])?;
    let dims = dims_of(ctx, a[1], s.len())?;
    let keep = boolean(ctx, a[2])?;
    let x = i64s(ctx, a[0])?;
    let (os, acc, _) = reduce(&s, &dims, keep, &x, false, |p, q| p || q != 0);
    write(ctx, out_idx(a)?, os, Data::Bool(acc))
}

fn softmax(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let s = sizes(ctx, a[0])?;
    let d = wrap_dim(int(ctx, a[1])?, s.len())?;
    let (outer, n, inner) = split(&s, d);
    let mut x = f32s(ctx, a[0])?;
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
    write(ctx, out_idx(a)?, s, Data::F32(x))
}

// ---------------------------------------------------------------------------------------------
// matmul-like

fn bmm(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let (sa, sb) = (sizes(ctx, a[0])?, sizes(ctx, a[1])?);
    if sa.len() != 3 || sb.len() != 3 || sa[0] != sb[0] || sa[2] != sb[1] {
        return Err(format!("bmm: shapes {sa:?} and {sb:?}"));
    }
    let (b, n, k, m) = (sa[0], sa[1], sa[2], sb[2]);
    check_numel("bmm", &[b, n, m])?;
    let (x, y) = (f32s(ctx, a[0])?, f32s(ctx, a[1])?);
    let mut out = vec![0f32; b * n * m];
    for bi in 0..b {
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
    write(ctx, out_idx(a)?, vec![b, n, m], Data::F32(out))
}

fn linear(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

fn embedding(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

/// `[n, k] x [k, m]` in f32, summing over k in order (like the portable kernels).
fn matmul_2d(x: &[f32], y: &[f32], n: usize, k: usize, m: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * m];
    for i in 0..n {
        for j in 0..m {
            let mut s = 0f32;
            for kk in 0..k {
                s += x[i * k + kk] * y[kk * m + j];
            }
            out[i * m + j] = s;
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

fn mm(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let (n, k, m) = mm_shapes(ctx, a[0], a[1])?;
    let out = matmul_2d(&f32s(ctx, a[0])?, &f32s(ctx, a[1])?, n, k, m);
    write(ctx, out_idx(a)?, vec![n, m], Data::F32(out))
}

fn addmm(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 6)?;
    let (n, k, m) = mm_shapes(ctx, a[1], a[2])?;
    let (beta, alpha) = (
        scalar(ctx, a[3])?.f64() as f32,
        scalar(ctx, a[4])?.f64() as f32,
    );
    let prod = matmul_2d(&f32s(ctx, a[1])?, &f32s(ctx, a[2])?, n, k, m);
    let bias = f32s(ctx, a[0])?;
    let map = broadcast_map(&sizes(ctx, a[0])?, &[n, m])?;
    let out = prod
        .iter()
        .zip(&map)
        .map(|(&p, &bi)| beta * bias[bi] + alpha * p)
        .collect();
    write(ctx, out_idx(a)?, vec![n, m], Data::F32(out))
}

fn pow_scalar(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let e = scalar(ctx, a[1])?.f64() as f32;
    let v = f32s(ctx, a[0])?.into_iter().map(|x| x.powf(e)).collect();
    write(ctx, out_idx(a)?, s, Data::F32(v))
}

/// Permute `src` into `dst` by `perm` (already validated).
fn permute_into(ctx: &mut Ctx, src: usize, dst: usize, perm: &[usize]) -> KResult<()> {
    let s = sizes(ctx, src)?;
    let es = dtype(ctx, src)?.size();
    let ns: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let mut st = vec![1usize; s.len()];
    for i in (0..s.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * s[i + 1];
    }
    let b = bytes(ctx, src)?;
    let n = numel(&ns);
    let mut out = Vec::with_capacity(n * es);
    let mut idx = vec![0usize; ns.len()];
    for _ in 0..n {
        let lin: usize = idx.iter().zip(perm).map(|(&i, &p)| i * st[p]).sum();
        out.extend_from_slice(&b[lin * es..(lin + 1) * es]);
        for d in (0..ns.len()).rev() {
            idx[d] += 1;
            if idx[d] < ns[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    write_same(ctx, src, dst, ns, out)
}

fn transpose_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

fn t_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let nd = sizes(ctx, a[0])?.len();
    match nd {
        0 | 1 => to_copy(ctx, &[a[0], out_idx(a)?]),
        2 => permute_into(ctx, a[0], out_idx(a)?, &[1, 0]),
        _ => Err(format!("t() of a {nd}-D tensor")),
    }
}

fn stack(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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
        parts.push(if dtype(ctx, t)? == odt {
            bytes(ctx, t)?.to_vec()
        } else if odt.is_float() {
            encode(odt, Data::F32(f32s(ctx, t)?))?
        } else {
            encode(odt, Data::I64(i64s(ctx, t)?))?
        });
    }
    let w = inner * es;
    let mut out = Vec::with_capacity(parts.len() * numel(&s) * es);
    for oi in 0..outer {
        for p in &parts {
            out.extend_from_slice(&p[oi * w..(oi + 1) * w]);
        }
    }
    let mut ns = s.clone();
    ns.insert(d, list.len());
    write(ctx, o, ns, Data::Raw(out))
}

fn index_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

fn unbind_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

fn split_with_sizes_copy(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let s = sizes(ctx, a[0])?;
    let d = wrap_dim(int(ctx, a[2])?, s.len())?;
    let lens = int_list(ctx, a[1])?
        .into_iter()
        .map(|x| usize::try_from(x).map_err(|_| format!("negative split size {x}")))
        .collect::<KResult<Vec<_>>>()?;
    split_into(ctx, a[0], d, &lens, a[3])
}

fn full(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = int_list(ctx, a[0])?
        .into_iter()
        .map(|x| usize::try_from(x).map_err(|_| format!("negative size {x}")))
        .collect::<KResult<Vec<_>>>()?;
    let n = check_numel("full", &s)?;
    let data = match scalar(ctx, a[1])? {
        Scalar::Double(d) => Data::F32(vec![d as f32; n]),
        Scalar::Int(i) => Data::I64(vec![i; n]),
        Scalar::Bool(b) => Data::Bool(vec![b; n]),
    };
    write(ctx, out_idx(a)?, s, data)
}

fn masked_fill(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let s = sizes(ctx, a[0])?;
    let map = broadcast_map(&sizes(ctx, a[1])?, &s)?;
    let mask = i64s(ctx, a[1])?;
    let v = scalar(ctx, a[2])?.f64();
    let data = if dtype(ctx, a[0])?.is_float() {
        let mut x = f32s(ctx, a[0])?;
        for (xi, &m) in x.iter_mut().zip(&map) {
            if mask[m] != 0 {
                *xi = v as f32;
            }
        }
        Data::F32(x)
    } else {
        let mut x = i64s(ctx, a[0])?;
        for (xi, &m) in x.iter_mut().zip(&map) {
            if mask[m] != 0 {
                *xi = v as i64;
            }
        }
        Data::I64(x)
    };
    write(ctx, out_idx(a)?, s, data)
}

/// `tril`/`triu` over the last two dimensions.
fn tri(ctx: &mut Ctx, a: &[usize], lower: bool) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    if s.len() < 2 {
        return Err("tril/triu need at least 2 dimensions".into());
    }
    let diag = int(ctx, a[1])?;
    let (r, c) = (s[s.len() - 2], s[s.len() - 1]);
    let keep = |i: usize, j: usize| {
        let d = j as i64 - i as i64;
        if lower {
            d <= diag
        } else {
            d >= diag
        }
    };
    let data = if dtype(ctx, a[0])?.is_float() {
        let mut x = f32s(ctx, a[0])?;
        for (k, v) in x.iter_mut().enumerate() {
            if !keep((k / c.max(1)) % r.max(1), k % c.max(1)) {
                *v = 0.0;
            }
        }
        Data::F32(x)
    } else {
        let mut x = i64s(ctx, a[0])?;
        for (k, v) in x.iter_mut().enumerate() {
            if !keep((k / c.max(1)) % r.max(1), k % c.max(1)) {
                *v = 0;
            }
        }
        Data::I64(x)
    };
    write(ctx, out_idx(a)?, s, data)
}

/// `quantized_decomposed::embedding_{byte,4bit,2bit}`: look up rows of a quantized table and
/// dequantize them, `(q - zero_point) * scale` per row or per group (ExecuTorch's
/// `quantized_embedding_xbit_out`). Packed values are offset by 2^(bits-1); 4-bit keeps the
/// even element in the high nibble, 2-bit the first element in the lowest bits.
fn embedding_xbit(ctx: &mut Ctx, a: &[usize], bits: usize) -> KResult<()> {
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

// ---------------------------------------------------------------------------------------------
// indexing

/// Resolve an `OptionalTensorList` of indices against `s`: (first indexed dim, number of
/// indexed dims, broadcast index shape, per-dim index vectors broadcast to that shape).
#[allow(clippy::type_complexity)]
fn resolve_indices(
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
fn gather_offsets(
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

fn index_tensor(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

fn index_put(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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
    if sdt.is_float() {
        let mut x = f32s(ctx, a[0])?;
        let v = f32s(ctx, a[2])?;
        let mut r = 0usize;
        for oi in 0..outer {
            for &b in &base {
                for i in 0..inner {
                    let dst = (oi * mid + b) * inner + i;
                    let val = v[vmap[r]];
                    x[dst] = if accumulate { x[dst] + val } else { val };
                    r += 1;
                }
            }
        }
        write(ctx, o, s, Data::F32(x))
    } else {
        let mut x = i64s(ctx, a[0])?;
        let v = i64s(ctx, a[2])?;
        let mut r = 0usize;
        for oi in 0..outer {
            for &b in &base {
                for i in 0..inner {
                    let dst = (oi * mid + b) * inner + i;
                    let val = v[vmap[r]];
                    x[dst] = if accumulate { x[dst] + val } else { val };
                    r += 1;
                }
            }
        }
        write(ctx, o, s, Data::I64(x))
    }
}

fn copy_inplace(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

// ---------------------------------------------------------------------------------------------
// llama custom ops

fn update_cache(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let vs = sizes(ctx, a[0])?;
    let cs = sizes(ctx, a[1])?;
    if vs.len() != 4 || cs.len() != 4 || vs[0] != cs[0] || vs[2] != cs[2] || vs[3] != cs[3] {
        return Err(format!("update_cache: value {vs:?}, cache {cs:?}"));
    }
    let pos = int(ctx, a[2])?;
    if pos < 0 || pos as usize + vs[1] > cs[1] {
        return Err(format!(
            "update_cache: start_pos {pos} + {} tokens exceeds the cache length {}",
            vs[1], cs[1]
        ));
    }
    if dtype(ctx, a[0])? != dtype(ctx, a[1])? {
        return Err("update_cache: value and cache dtypes differ".into());
    }
    let es = dtype(ctx, a[0])?.size();
    let val = bytes(ctx, a[0])?.to_vec();
    let row = vs[2] * vs[3] * es;
    let Some(RValue::Tensor(t)) = ctx.values.get(a[1]) else {
        return Err("cache is not a tensor".into());
    };
    let (id, off) = match t.storage {
        Storage::Arena { id, off } => (id, off),
        _ => return Err("update_cache: the cache is not a planned mutable buffer".into()),
    };
    let arena = ctx.arenas.get_mut(id).ok_or("arena")?;
    for b in 0..vs[0] {
        for s in 0..vs[1] {
            let dst = off + ((b * cs[1] + pos as usize + s) * row);
            let src = (b * vs[1] + s) * row;
            arena
                .get_mut(dst..dst + row)
                .ok_or("cache slot out of range")?
                .copy_from_slice(&val[src..src + row]);
        }
    }
    Ok(())
}

fn custom_sdpa(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 9)?;
    let (qs, ks, vs) = (sizes(ctx, a[0])?, sizes(ctx, a[1])?, sizes(ctx, a[2])?);
    if qs.len() != 4 || ks.len() != 4 || ks != vs || qs[0] != ks[0] || qs[3] != ks[3] {
        return Err(format!("custom_sdpa: q {qs:?}, k {ks:?}, v {vs:?}"));
    }
    let (b, s, h, d) = (qs[0], qs[1], qs[2], qs[3]);
    let (smax, hkv) = (ks[1], ks[2]);
    if hkv == 0 || h % hkv != 0 {
        return Err(format!("custom_sdpa: {h} heads over {hkv} kv heads"));
    }
    let pos = int(ctx, a[3])?;
    if pos < 0 || pos as usize + s > smax {
        return Err(format!("custom_sdpa: start_pos {pos} + {s} exceeds {smax}"));
    }
    if !matches!(ctx.values.get(a[4]), Some(RValue::None)) {
        return Err("custom_sdpa: attention masks are not supported".into());
    }
    let causal = boolean(ctx, a[6])?;
    let scale = match ctx.values.get(a[7]) {
        Some(RValue::Double(x)) => *x as f32,
        _ => 1.0 / (d as f32).sqrt(),
    };
    let (q, k, v) = (f32s(ctx, a[0])?, f32s(ctx, a[1])?, f32s(ctx, a[2])?);
    let group = h / hkv;
    let pos = pos as usize;
    let mut out = vec![0f32; b * s * h * d];
    let mut scores = vec![0f32; pos + s];
    for bi in 0..b {
        for si in 0..s {
            let nk = if causal { pos + si + 1 } else { pos + s };
            for hi in 0..h {
                let kh = hi / group;
                let qo = ((bi * s + si) * h + hi) * d;
                let qv = &q[qo..qo + d];
                let mut mx = f32::NEG_INFINITY;
                for (j, sc) in scores.iter_mut().enumerate().take(nk) {
                    let ko = ((bi * smax + j) * hkv + kh) * d;
                    let dot = lmrun_kernels::ops::dot_f32(qv, &k[ko..ko + d]);
                    *sc = dot * scale;
                    mx = mx.max(*sc);
                }
                let mut sum = 0f32;
                for sc in scores.iter_mut().take(nk) {
                    *sc = (*sc - mx).exp();
                    sum += *sc;
                }
                let o = &mut out[qo..qo + d];
                for (j, &sc) in scores.iter().enumerate().take(nk) {
                    let vo = ((bi * smax + j) * hkv + kh) * d;
                    let p = sc / sum;
                    for (x, &y) in o.iter_mut().zip(&v[vo..vo + d]) {
                        *x += p * y;
                    }
                }
            }
        }
    }
    write(ctx, out_idx(a)?, vec![b, s, h, d], Data::F32(out))
}

#[cfg(test)]
mod tests {
    //! Kernel semantics against hand-computed PyTorch results.
    use super::*;
    use std::sync::Arc;

    fn ctx(values: Vec<RValue>) -> Ctx {
        Ctx {
            values,
            arenas: Vec::new(),
            pool: Arc::new(lmrun_kernels::ThreadPool::new(1).unwrap()),
            scratch: lmrun_kernels::Scratch::default(),
        }
    }
    fn ft(sizes: &[usize], v: &[f32]) -> RValue {
        RValue::Tensor(RTensor {
            dtype: ScalarType::Float,
            sizes: sizes.to_vec(),
            cap: usize::MAX,
            storage: Storage::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        })
    }
    fn lt(sizes: &[usize], v: &[i64]) -> RValue {
        RValue::Tensor(RTensor {
            dtype: ScalarType::Long,
            sizes: sizes.to_vec(),
            cap: usize::MAX,
            storage: Storage::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        })
    }
    fn out(dtype: ScalarType) -> RValue {
        RValue::Tensor(RTensor {
            dtype,
            sizes: vec![],
            cap: usize::MAX,
            storage: Storage::Unset,
        })
    }
    fn get(c: &Ctx, i: usize) -> (Vec<usize>, Vec<f32>) {
        (sizes(c, i).unwrap(), f32s(c, i).unwrap())
    }

    #[test]
    fn add_broadcasts_with_alpha_and_sub() {
        let mut c = ctx(vec![
            ft(&[2, 3], &[1., 2., 3., 4., 5., 6.]),
            ft(&[3], &[10., 20., 30.]),
            RValue::Int(2),
            out(ScalarType::Float),
        ]);
        binary(&mut c, &[0, 1, 2, 3, 3], BinOp::Add, true).unwrap();
        assert_eq!(get(&c, 3), (vec![2, 3], vec![21., 42., 63., 24., 45., 66.]));
        binary(&mut c, &[1, 0, 2, 3, 3], BinOp::Sub, true).unwrap();
        assert_eq!(get(&c, 3).1, [8., 16., 24., 2., 10., 18.]);
        // incompatible shapes
        c.values[1] = ft(&[2], &[1., 2.]);
        assert!(binary(&mut c, &[0, 1, 2, 3, 3], BinOp::Add, true).is_err());
    }

    #[test]
    fn slice_select_and_negative_indices() {
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut c = ctx(vec![
            ft(&[3, 4], &x),
            RValue::Int(1),
            RValue::Int(-3),
            RValue::None,
            RValue::Int(2),
            out(ScalarType::Float),
        ]);
        // x[:, -3::2]
        slice_copy(&mut c, &[0, 1, 2, 3, 4, 5, 5]).unwrap();
        assert_eq!(get(&c, 5), (vec![3, 2], vec![1., 3., 5., 7., 9., 11.]));
        // end clamped past the size, start past the end -> empty
        c.values[2] = RValue::Int(10);
        slice_copy(&mut c, &[0, 1, 2, 3, 4, 5, 5]).unwrap();
        assert_eq!(get(&c, 5).0, [3, 0]);
        // x.select(0, -1)
        c.values[1] = RValue::Int(0);
        c.values[2] = RValue::Int(-1);
        select_copy(&mut c, &[0, 1, 2, 5, 5]).unwrap();
        assert_eq!(get(&c, 5), (vec![4], vec![8., 9., 10., 11.]));
        c.values[2] = RValue::Int(3);
        assert!(select_copy(&mut c, &[0, 1, 2, 5, 5]).is_err());
    }

    #[test]
    fn permute_expand_cat_view() {
        let mut c = ctx(vec![
            ft(&[2, 3], &[1., 2., 3., 4., 5., 6.]),
            RValue::Int(1),
            RValue::Int(0),
            RValue::IntList(vec![1, 2]),
            out(ScalarType::Float),
            RValue::Int(-1),
            RValue::Int(2),
            RValue::IntList(vec![6, 5]),
            RValue::TensorList(vec![0, 0]),
        ]);
        permute_copy(&mut c, &[0, 3, 4, 4]).unwrap();
        assert_eq!(get(&c, 4), (vec![3, 2], vec![1., 4., 2., 5., 3., 6.]));
        // expand [2,3] -> [2, 2, 3] via (2, -1, -1)
        c.values[7] = RValue::IntList(vec![6, 5, 5]);
        expand_copy(&mut c, &[0, 7, 4]).unwrap();
        assert_eq!(get(&c, 4).0, [2, 2, 3]);
        assert_eq!(get(&c, 4).1[..6], [1., 2., 3., 4., 5., 6.]);
        // cat([x, x], dim=1)
        cat(&mut c, &[8, 1, 4, 4]).unwrap();
        assert_eq!(
            get(&c, 4),
            (
                vec![2, 6],
                vec![1., 2., 3., 1., 2., 3., 4., 5., 6., 4., 5., 6.]
            )
        );
        // view with -1
        assert_eq!(view_sizes(&[2, 3], &[-1]).unwrap(), [6]);
        assert_eq!(view_sizes(&[2, 3], &[3, -1]).unwrap(), [3, 2]);
        assert!(view_sizes(&[2, 3], &[4, -1]).is_err());
        assert!(view_sizes(&[2, 3], &[-1, -1]).is_err());
    }

    #[test]
    fn index_put_and_index_with_leading_none() {
        // cache [1, 2, 4] (b, h, pos); cache[:, :, pos] = v with pos = [2]
        let mut c = ctx(vec![
            ft(&[1, 2, 4], &[0.0; 8]),
            RValue::OptTensorList(vec![None, None, Some(2)]),
            lt(&[1], &[2]),
            ft(&[1, 2, 1], &[7., 8.]),
            RValue::Bool(false),
            out(ScalarType::Float),
        ]);
        index_put(&mut c, &[0, 1, 3, 4, 5, 5]).unwrap();
        assert_eq!(
            get(&c, 5),
            (vec![1, 2, 4], vec![0., 0., 7., 0., 0., 0., 8., 0.])
        );
        // read it back: out[:, :, [2, 1]]
        c.values[0] = c.values[5].clone();
        c.values[2] = lt(&[2], &[2, -3]);
        c.values[5] = out(ScalarType::Float);
        index_tensor(&mut c, &[0, 1, 5, 5]).unwrap();
        assert_eq!(get(&c, 5), (vec![1, 2, 2], vec![7., 0., 8., 0.]));
        c.values[2] = lt(&[1], &[4]);
        assert!(index_tensor(&mut c, &[0, 1, 5, 5]).is_err());
    }

    #[test]
    fn reductions_and_softmax() {
        let mut c = ctx(vec![
            ft(&[2, 3], &[1., 2., 3., 4., 5., 6.]),
            RValue::IntList(vec![2]),
            RValue::Int(-1),
            RValue::Bool(true),
            RValue::None,
            out(ScalarType::Float),
            RValue::Bool(false),
        ]);
        mean(&mut c, &[0, 1, 3, 4, 5, 5]).unwrap();
        assert_eq!(get(&c, 5), (vec![2, 1], vec![2., 5.]));
        softmax(&mut c, &[0, 2, 6, 5, 5]).unwrap();
        let (s, v) = get(&c, 5);
        assert_eq!(s, [2, 3]);
        assert!((v[0] + v[1] + v[2] - 1.0).abs() < 1e-6);
        assert!((v[2] - 0.665_240_9).abs() < 1e-6);
    }

    #[test]
    fn prim_scalar_ops_follow_python() {
        let mut c = ctx(vec![RValue::Int(-7), RValue::Int(2), RValue::None]);
        prim(&mut c, &[0, 1, 2], PrimOp::FloorDiv).unwrap();
        assert!(matches!(c.values[2], RValue::Int(-4)));
        prim(&mut c, &[0, 1, 2], PrimOp::Mod).unwrap();
        assert!(matches!(c.values[2], RValue::Int(1)));
        c.values[1] = RValue::Int(-2);
        c.values[0] = RValue::Int(7);
        prim(&mut c, &[0, 1, 2], PrimOp::FloorDiv).unwrap();
        assert!(matches!(c.values[2], RValue::Int(-4)));
        prim(&mut c, &[0, 1, 2], PrimOp::Mod).unwrap();
        assert!(matches!(c.values[2], RValue::Int(-1)));
        c.values[1] = RValue::Int(0);
        assert!(prim(&mut c, &[0, 1, 2], PrimOp::FloorDiv).is_err());
        c.values[1] = RValue::Double(0.5);
        prim(&mut c, &[0, 1, 2], PrimOp::Mul).unwrap();
        assert!(matches!(c.values[2], RValue::Double(x) if x == 3.5));
    }

    #[test]
    fn where_arange_and_dtype_conversion() {
        let mut c = ctx(vec![
            RValue::Tensor(RTensor {
                dtype: ScalarType::Bool,
                sizes: vec![3],
                cap: usize::MAX,
                storage: Storage::Owned(vec![1, 0, 1]),
            }),
            ft(&[3], &[1., 2., 3.]),
            ft(&[], &[-1.]),
            out(ScalarType::Float),
            RValue::Int(2),
            RValue::Int(9),
            RValue::Int(3),
            out(ScalarType::Long),
        ]);
        where_self(&mut c, &[0, 1, 2, 3, 3]).unwrap();
        assert_eq!(get(&c, 3), (vec![3], vec![1., -1., 3.]));
        arange_start(&mut c, &[4, 5, 6, 7, 7]).unwrap();
        assert_eq!(i64s(&c, 7).unwrap(), [2, 5, 8]);
        // float -> long truncates, like a C cast
        c.values[1] = ft(&[2], &[2.7, -1.5]);
        to_copy(&mut c, &[1, 2, 2, 7, 7]).unwrap();
        assert_eq!(i64s(&c, 7).unwrap(), [2, -1]);
    }

    #[test]
    fn matmuls_transposes_and_stack() {
        let mut c = ctx(vec![
            ft(&[2, 3], &[1., 2., 3., 4., 5., 6.]),
            ft(&[3, 2], &[1., 0., 0., 1., 1., 1.]),
            out(ScalarType::Float),
            ft(&[2], &[10., 20.]),
            RValue::Int(1),
            RValue::Int(2),
            RValue::Int(0),
            RValue::TensorList(vec![0, 0]),
        ]);
        mm(&mut c, &[0, 1, 2, 2]).unwrap();
        assert_eq!(get(&c, 2), (vec![2, 2], vec![4., 5., 10., 11.]));
        // beta=1, alpha=2
        addmm(&mut c, &[3, 0, 1, 4, 5, 2, 2]).unwrap();
        assert_eq!(get(&c, 2).1, [18., 30., 30., 42.]);
        transpose_copy(&mut c, &[0, 6, 4, 2, 2]).unwrap();
        assert_eq!(get(&c, 2), (vec![3, 2], vec![1., 4., 2., 5., 3., 6.]));
        t_copy(&mut c, &[1, 2, 2]).unwrap();
        assert_eq!(get(&c, 2), (vec![2, 3], vec![1., 0., 1., 0., 1., 1.]));
        stack(&mut c, &[7, 4, 2, 2]).unwrap();
        assert_eq!(
            get(&c, 2),
            (
                vec![2, 2, 3],
                vec![1., 2., 3., 1., 2., 3., 4., 5., 6., 4., 5., 6.]
            )
        );
        stack(&mut c, &[7, 6, 2, 2]).unwrap();
        assert_eq!(get(&c, 2).0, [2, 2, 3]);
        assert_eq!(get(&c, 2).1[6..], [1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn index_copy_split_unbind_fill_tri() {
        let mut c = ctx(vec![
            ft(&[3, 2], &[0.; 6]),
            RValue::Int(0),
            lt(&[1], &[2]),
            ft(&[1, 2], &[7., 8.]),
            out(ScalarType::Float),
            out(ScalarType::Float),
            RValue::TensorList(vec![4, 5]),
            RValue::IntList(vec![8, 9]),
            RValue::Int(1),
            RValue::Int(2),
        ]);
        index_copy(&mut c, &[0, 1, 2, 3, 4, 4]).unwrap();
        assert_eq!(get(&c, 4), (vec![3, 2], vec![0., 0., 0., 0., 7., 8.]));
        c.values[0] = c.values[4].clone();
        split_with_sizes_copy(&mut c, &[0, 7, 1, 6]).unwrap();
        assert_eq!(get(&c, 4), (vec![1, 2], vec![0., 0.]));
        assert_eq!(get(&c, 5), (vec![2, 2], vec![0., 0., 7., 8.]));
        c.values[0] = ft(&[2, 2], &[1., 2., 3., 4.]);
        unbind_copy(&mut c, &[0, 8, 6]).unwrap();
        assert_eq!(get(&c, 4), (vec![2], vec![1., 3.]));
        assert_eq!(get(&c, 5), (vec![2], vec![2., 4.]));
        tri(&mut c, &[0, 1, 4, 4], true).unwrap();
        assert_eq!(get(&c, 4), (vec![2, 2], vec![1., 0., 3., 4.]));
        tri(&mut c, &[0, 8, 4, 4], false).unwrap();
        assert_eq!(get(&c, 4).1, [0., 2., 0., 0.]);
        c.values[7] = RValue::IntList(vec![9, 9]);
        c.values[8] = RValue::Double(0.5);
        full(&mut c, &[7, 8, 4, 4]).unwrap();
        assert_eq!(get(&c, 4), (vec![2, 2], vec![0.5; 4]));
    }

    /// ExecuTorch's own `OpQuantizedEmbedding4bTest` / `2bTest` cases.
    #[test]
    fn quantized_embeddings_match_executorch_tests() {
        let byte = |sizes: &[usize], v: &[u8]| {
            RValue::Tensor(RTensor {
                dtype: ScalarType::Byte,
                sizes: sizes.to_vec(),
                cap: usize::MAX,
                storage: Storage::Owned(v.to_vec()),
            })
        };
        let mut c = ctx(vec![
            byte(&[3, 2], &[89, 239, 163, 72, 11, 126]),
            ft(&[3], &[0.5, 1.0, 1.5]),
            ft(&[3], &[1., -5., 0.]),
            RValue::Int(-8),
            RValue::Int(7),
            lt(&[3], &[0, 2, 1]),
            out(ScalarType::Float),
        ]);
        embedding_xbit(&mut c, &[0, 1, 2, 3, 4, 5, 6, 6], 4).unwrap();
        assert_eq!(
            get(&c, 6),
            (
                vec![3, 4],
                vec![-2.0, 0.0, 2.5, 3.0, -12.0, 4.5, -1.5, 9.0, 7.0, 0.0, 1.0, 5.0]
            )
        );
        // 2-bit (ExecuTorch's current test: first element in the lowest bits), per row and
        // then in groups of 2 (expected values computed by hand)
        c.values[0] = byte(&[3, 1], &[236, 134, 228]);
        c.values[2] = ft(&[3], &[1., -2., 0.]);
        c.values[3] = RValue::Int(-2);
        c.values[4] = RValue::Int(1);
        embedding_xbit(&mut c, &[0, 1, 2, 3, 4, 5, 6, 6], 2).unwrap();
        assert_eq!(
            get(&c, 6).1,
            [-1.5, 0.0, -0.5, 0.0, -3.0, -1.5, 0.0, 1.5, 2.0, 1.0, 0.0, 2.0]
        );
        c.values[1] = ft(&[3, 2], &[0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
        c.values[2] = ft(&[3, 2], &[1., -2., 0., 1., -2., -1.]);
        embedding_xbit(&mut c, &[0, 1, 2, 3, 4, 5, 6, 6], 2).unwrap();
        assert_eq!(
            get(&c, 6).1,
            [-1.5, 0.0, 2.0, 3.0, 0.0, 2.5, 3.0, 6.0, 0.0, -1.5, -6.0, -2.0]
        );
        // out-of-range id
        c.values[5] = lt(&[1], &[3]);
        assert!(embedding_xbit(&mut c, &[0, 1, 2, 3, 4, 5, 6, 6], 2).is_err());
    }

    #[test]
    fn planned_capacity_is_enforced() {
        let mut c = ctx(vec![ft(&[4], &[1., 2., 3., 4.]), RValue::None]);
        c.arenas.push(vec![0u8; 8]);
        c.values[1] = RValue::Tensor(RTensor {
            dtype: ScalarType::Float,
            sizes: vec![2],
            cap: 8,
            storage: Storage::Arena { id: 0, off: 0 },
        });
        let e = write(&mut c, 1, vec![4], Data::F32(vec![0.0; 4])).unwrap_err();
        assert!(e.contains("capacity"), "{e}");
        write(&mut c, 1, vec![1], Data::F32(vec![5.0])).unwrap();
        assert_eq!(get(&c, 1), (vec![1], vec![5.0]));
        // a huge expand is refused, not allocated
        let mut c2 = ctx(vec![
            ft(&[1], &[1.0]),
            RValue::IntList(vec![2]),
            RValue::Int(1 << 40),
            out(ScalarType::Float),
        ]);
        assert!(expand_copy(&mut c2, &[0, 1, 3]).is_err());
    }
}
