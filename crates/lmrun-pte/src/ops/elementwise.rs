//! Elementwise ops: `add`/`sub`/`mul`/`div` with broadcasting (tensor and scalar forms), unary
//! float math, `logical_not`, `where`, `pow`, `masked_fill`, `tril`/`triu`, and the ops that
//! fill a new tensor (`full`, `full_like`, `scalar_tensor`, `arange`).

use super::{need, out_idx};
use crate::tensor::{
    broadcast_map, broadcast_shape, broadcast_zip, check_numel, dtype, f32s, i64s, int, int_list,
    numel, scalar, sizes, write, Ctx, Data, KResult, Scalar, MAX_ELEMENTS,
};

fn q_of(s: Scalar) -> i64 {
    match s {
        Scalar::Int(v) => v,
        Scalar::Bool(b) => i64::from(b),
        Scalar::Double(d) => d as i64,
    }
}

pub(super) fn full_like(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

pub(super) fn scalar_tensor(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

pub(super) fn arange_start(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

#[derive(Clone, Copy)]
pub(super) enum BinOp {
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

pub(super) fn binary(ctx: &mut Ctx, a: &[usize], op: BinOp, has_alpha: bool) -> KResult<()> {
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
        Data::F32(broadcast_zip((&x, &sa), (&y, &sb), &shape, |p, q| {
            apply_f32(op, p, q, al)
        })?)
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

pub(super) fn binary_scalar(ctx: &mut Ctx, a: &[usize], op: BinOp) -> KResult<()> {
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

pub(super) fn unary_f32(ctx: &mut Ctx, a: &[usize], f: fn(f32) -> f32) -> KResult<()> {
    need(a, 2)?;
    let s = sizes(ctx, a[0])?;
    let v: Vec<f32> = f32s(ctx, a[0])?.into_iter().map(f).collect();
    write(ctx, out_idx(a)?, s, Data::F32(v))
}

pub(super) fn logical_not(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 2)?;
    let s = sizes(ctx, a[0])?;
    let v = if dtype(ctx, a[0])?.is_float() {
        f32s(ctx, a[0])?.iter().map(|&x| x == 0.0).collect()
    } else {
        i64s(ctx, a[0])?.iter().map(|&x| x == 0).collect()
    };
    write(ctx, out_idx(a)?, s, Data::Bool(v))
}

pub(super) fn where_self(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

pub(super) fn pow_scalar(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 3)?;
    let s = sizes(ctx, a[0])?;
    let e = scalar(ctx, a[1])?.f64() as f32;
    let v = f32s(ctx, a[0])?.into_iter().map(|x| x.powf(e)).collect();
    write(ctx, out_idx(a)?, s, Data::F32(v))
}

pub(super) fn full(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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

pub(super) fn masked_fill(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
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
pub(super) fn tri(ctx: &mut Ctx, a: &[usize], lower: bool) -> KResult<()> {
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
