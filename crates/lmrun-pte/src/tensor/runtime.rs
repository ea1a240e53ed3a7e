//! The interpreter's view of values: [`RValue`] and [`RTensor`] (whose bytes live in a constant
//! buffer, a memory-planned arena or an owned vector, see [`Storage`]), the [`Ctx`] every kernel
//! receives, and the typed accessors kernels read their arguments with ([`f32s`], [`int`],
//! [`int_list`], ...) plus [`write`], which stores a result within the output's planned
//! capacity. Errors are plain strings; the interpreter wraps them with the method, instruction
//! and operator.

use lmrun_loader::Buffer;

use super::{bytes_to_f32, bytes_to_i64, encode, prod, Data, KResult, ScalarType};

/// Where a runtime tensor's bytes live.
#[derive(Debug, Clone)]
pub(crate) enum Storage {
    /// No data yet (inputs before `set_input`, unallocated outputs, freed tensors).
    Unset,
    /// Read-only bytes in the program, a segment or a `.ptd` (used in place).
    Const(Buffer),
    /// A slot in a memory-planned arena.
    Arena { id: usize, off: usize },
    /// Owned bytes (inputs, unplanned outputs).
    Owned(Vec<u8>),
}

/// A tensor as the interpreter holds it.
#[derive(Debug, Clone)]
pub(crate) struct RTensor {
    pub dtype: ScalarType,
    pub sizes: Vec<usize>,
    /// Capacity in bytes for arena/const storage.
    pub cap: usize,
    pub storage: Storage,
}

impl RTensor {
    pub fn numel(&self) -> usize {
        prod(&self.sizes)
    }
    pub fn nbytes(&self) -> usize {
        self.numel().saturating_mul(self.dtype.size())
    }
}

/// A runtime value.
#[derive(Debug, Clone)]
pub(crate) enum RValue {
    None,
    Int(i64),
    Double(f64),
    Bool(bool),
    Tensor(RTensor),
    String(String),
    /// Value indices of Ints.
    IntList(Vec<usize>),
    DoubleList(Vec<f64>),
    BoolList(Vec<bool>),
    TensorList(Vec<usize>),
    OptTensorList(Vec<Option<usize>>),
}

/// The interpreter's mutable state, handed to kernels.
pub(crate) struct Ctx {
    pub values: Vec<RValue>,
    pub arenas: Vec<Vec<u8>>,
    pub pool: std::sync::Arc<lmrun_kernels::ThreadPool>,
    pub scratch: lmrun_kernels::Scratch,
}

/// The bytes of `t`, wherever they live (exactly `numel × element size` of them).
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

/// Value `i` as a tensor.
pub(crate) fn tensor(ctx: &Ctx, i: usize) -> KResult<&RTensor> {
    match ctx.values.get(i) {
        Some(RValue::Tensor(t)) => Ok(t),
        Some(_) => Err(format!("value {i} is not a tensor")),
        None => Err(format!("value {i} out of range")),
    }
}

/// The bytes of tensor value `i`.
pub(crate) fn bytes(ctx: &Ctx, i: usize) -> KResult<&[u8]> {
    tensor_bytes(ctx, tensor(ctx, i)?)
}

/// Tensor value `i` decoded to f32.
pub(crate) fn f32s(ctx: &Ctx, i: usize) -> KResult<Vec<f32>> {
    let t = tensor(ctx, i)?;
    Ok(bytes_to_f32(t.dtype, tensor_bytes(ctx, t)?))
}

/// Tensor value `i` decoded to i64.
pub(crate) fn i64s(ctx: &Ctx, i: usize) -> KResult<Vec<i64>> {
    let t = tensor(ctx, i)?;
    Ok(bytes_to_i64(t.dtype, tensor_bytes(ctx, t)?))
}

/// The sizes of tensor value `i`.
pub(crate) fn sizes(ctx: &Ctx, i: usize) -> KResult<Vec<usize>> {
    Ok(tensor(ctx, i)?.sizes.clone())
}

/// The dtype of tensor value `i`.
pub(crate) fn dtype(ctx: &Ctx, i: usize) -> KResult<ScalarType> {
    Ok(tensor(ctx, i)?.dtype)
}

/// Value `i` as an integer (a Bool or a whole Double count too).
pub(crate) fn int(ctx: &Ctx, i: usize) -> KResult<i64> {
    match ctx.values.get(i) {
        Some(RValue::Int(v)) => Ok(*v),
        Some(RValue::Bool(b)) => Ok(i64::from(*b)),
        Some(RValue::Double(d)) if d.fract() == 0.0 => Ok(*d as i64),
        _ => Err(format!("value {i} is not an Int")),
    }
}

/// Value `i` as an optional integer (None stays None).
pub(crate) fn opt_int(ctx: &Ctx, i: usize) -> KResult<Option<i64>> {
    match ctx.values.get(i) {
        Some(RValue::None) => Ok(None),
        _ => int(ctx, i).map(Some),
    }
}

/// Value `i` as a bool (an Int counts: non-zero is true).
pub(crate) fn boolean(ctx: &Ctx, i: usize) -> KResult<bool> {
    match ctx.values.get(i) {
        Some(RValue::Bool(b)) => Ok(*b),
        Some(RValue::Int(v)) => Ok(*v != 0),
        _ => Err(format!("value {i} is not a Bool")),
    }
}

/// A scalar argument as the program gave it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar {
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl Scalar {
    pub(crate) fn f64(self) -> f64 {
        match self {
            Scalar::Int(v) => v as f64,
            Scalar::Double(v) => v,
            Scalar::Bool(b) => f64::from(u8::from(b)),
        }
    }
}

/// Value `i` as a scalar.
pub(crate) fn scalar(ctx: &Ctx, i: usize) -> KResult<Scalar> {
    match ctx.values.get(i) {
        Some(RValue::Int(v)) => Ok(Scalar::Int(*v)),
        Some(RValue::Double(v)) => Ok(Scalar::Double(*v)),
        Some(RValue::Bool(v)) => Ok(Scalar::Bool(*v)),
        _ => Err(format!("value {i} is not a scalar")),
    }
}

/// Value `i` as an integer list (a single Int is a list of one, None an empty list).
pub(crate) fn int_list(ctx: &Ctx, i: usize) -> KResult<Vec<i64>> {
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
