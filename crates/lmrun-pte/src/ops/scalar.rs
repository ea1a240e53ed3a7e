//! Scalar ops on Int/Double/Bool values (the `executorch_prim::` arithmetic and comparisons with
//! Python's floor division and modulo) and the ops that read a tensor's size or its single
//! element into a scalar (`sym_size`, `sym_numel`, `_local_scalar_dense`).

use super::{need, out_idx};
use crate::tensor::{
    f32s, i64s, int, numel, scalar, sizes, tensor, wrap_dim, Ctx, KResult, RValue, Scalar,
    ScalarType,
};

pub(super) fn sym_size(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let d = wrap_dim(int(ctx, a[1])?, s.len())?;
    let v = s.get(d).copied().unwrap_or(1) as i64;
    ctx.values[out_idx(a)?] = RValue::Int(v);
    Ok(())
}

pub(super) fn sym_numel(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let n = numel(&sizes(ctx, a[0])?) as i64;
    ctx.values[out_idx(a)?] = RValue::Int(n);
    Ok(())
}

pub(super) fn local_scalar_dense(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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
pub(super) enum PrimOp {
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

pub(super) fn prim(ctx: &mut Ctx, a: &[usize], op: PrimOp) -> KResult<()> {
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

pub(super) fn prim_neg(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let v = match scalar(ctx, a[0])? {
        Scalar::Int(v) => RValue::Int(v.wrapping_neg()),
        s => RValue::Double(-s.f64()),
    };
    ctx.values[out_idx(a)?] = v;
    Ok(())
}
