//! A loaded method: its values wired to storage (constants in place, memory-planned arenas
//! sized from `non_const_buffer_sizes`, external `.ptd` data, mutable initial values), every
//! operator resolved to a kernel and every delegate initialised at load (a missing kernel is an
//! `OperatorMissing` error naming it), and the interpreter that walks chain 0's instructions.
//! Arenas live as long as the method, so mutable buffers (the KV caches) persist across
//! `execute` calls.

mod load;

use crate::ops::KernelFn;
use crate::tensor::{tensor_bytes, Ctx, EValue, RTensor, RValue, Storage, Tensor};
use crate::xnnpack::XnnDelegate;
use crate::PteError;

/// One instruction of chain 0, resolved at load.
enum Step {
    Kernel(KernelFn, Vec<usize>, usize),
    Delegate(usize, Vec<usize>),
    Move(usize, usize),
    JumpFalse(usize, usize),
    Free(usize),
}

/// A loaded, runnable method.
pub struct Method {
    name: String,
    ctx: Ctx,
    steps: Vec<Step>,
    op_names: Vec<String>,
    delegates: Vec<XnnDelegate>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

fn inv(method: &str, what: impl Into<String>) -> PteError {
    PteError::InvalidMethod {
        method: method.to_string(),
        what: what.into(),
    }
}

impl Method {
    /// Number of inputs.
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Set input `i`.
    pub fn set_input(&mut self, i: usize, v: &EValue) -> Result<(), PteError> {
        let vi = *self.inputs.get(i).ok_or_else(|| {
            PteError::InvalidArgument(format!(
                "method '{}' has {} inputs, input {i} given",
                self.name,
                self.inputs.len()
            ))
        })?;
        let slot = &mut self.ctx.values[vi];
        match (slot, v) {
            (RValue::Tensor(t), EValue::Tensor(src)) => {
                if t.dtype != src.dtype {
                    return Err(PteError::InvalidArgument(format!(
                        "input {i}: dtype {:?} given, {:?} expected",
                        src.dtype, t.dtype
                    )));
                }
                if src.data.len() != src.numel() * src.dtype.size() {
                    return Err(PteError::InvalidArgument(format!(
                        "input {i}: data length does not match sizes {:?}",
                        src.sizes
                    )));
                }
                if t.sizes.len() != src.sizes.len() {
                    return Err(PteError::InvalidArgument(format!(
                        "input {i}: rank {} given, {} expected ({:?})",
                        src.sizes.len(),
                        t.sizes.len(),
                        t.sizes
                    )));
                }
                match &t.storage {
                    Storage::Arena { id, off } => {
                        if src.data.len() > t.cap {
                            return Err(PteError::InvalidArgument(format!(
                                "input {i}: sizes {:?} exceed the planned {:?}",
                                src.sizes, t.sizes
                            )));
                        }
                        let (id, off) = (*id, *off);
                        self.ctx.arenas[id][off..off + src.data.len()].copy_from_slice(&src.data);
                    }
                    _ => t.storage = Storage::Owned(src.data.clone()),
                }
                t.sizes = src.sizes.clone();
                Ok(())
            }
            (RValue::Int(a), EValue::Int(b)) if a == b => Ok(()),
            (RValue::Bool(a), EValue::Bool(b)) if a == b => Ok(()),
            (RValue::Double(a), EValue::Double(b)) if a == b => Ok(()),
            (slot, v) => Err(PteError::InvalidArgument(format!(
                "input {i}: {v:?} does not match the program's {}",
                kind_name(slot)
            ))),
        }
    }

    /// Run chain 0.
    pub fn execute(&mut self) -> Result<(), PteError> {
        let mut pc = 0usize;
        let mut budget: u64 = 1 << 24;
        while pc < self.steps.len() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                return Err(inv(&self.name, "instruction budget exhausted (jump loop?)"));
            }
            let mut next = pc + 1;
            match &self.steps[pc] {
                Step::Kernel(f, args, oi) => {
                    f(&mut self.ctx, args).map_err(|what| PteError::Kernel {
                        method: self.name.clone(),
                        instruction: pc,
                        operator: self.op_names[*oi].clone(),
                        what,
                    })?;
                }
                Step::Delegate(d, args) => {
                    self.delegates[*d]
                        .execute(&mut self.ctx, args)
                        .map_err(|what| PteError::Kernel {
                            method: self.name.clone(),
                            instruction: pc,
                            operator: format!("XnnpackBackend delegate {d}"),
                            what,
                        })?;
                }
                Step::Move(a, b) => {
                    let v = self.ctx.values[*a].clone();
                    self.ctx.values[*b] = v;
                }
                Step::JumpFalse(c, d) => match self.ctx.values[*c] {
                    RValue::Bool(false) => next = *d,
                    RValue::Bool(true) => {}
                    _ => return Err(inv(&self.name, format!("jump condition {c} is not a Bool"))),
                },
                Step::Free(v) => {
                    if let RValue::Tensor(t) = &mut self.ctx.values[*v] {
                        if matches!(t.storage, Storage::Owned(_)) {
                            t.storage = Storage::Unset;
                        }
                    }
                }
            }
            pc = next;
        }
        Ok(())
    }

    /// Copy the outputs out.
    pub fn outputs(&self) -> Result<Vec<EValue>, PteError> {
        self.outputs.iter().map(|&o| self.to_evalue(o)).collect()
    }

    fn to_evalue(&self, i: usize) -> Result<EValue, PteError> {
        let c = &self.ctx;
        Ok(match &c.values[i] {
            RValue::None => EValue::None,
            RValue::Int(v) => EValue::Int(*v),
            RValue::Double(v) => EValue::Double(*v),
            RValue::Bool(v) => EValue::Bool(*v),
            RValue::String(s) => EValue::String(s.clone()),
            RValue::Tensor(t) => EValue::Tensor(self.tensor_out(t)?),
            RValue::IntList(l) => EValue::IntList(
                l.iter()
                    .map(|&j| match c.values[j] {
                        RValue::Int(v) => Ok(v),
                        _ => Err(inv(&self.name, "int list item is not an Int")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            RValue::DoubleList(l) => EValue::DoubleList(l.clone()),
            RValue::BoolList(l) => EValue::BoolList(l.clone()),
            RValue::TensorList(l) => EValue::TensorList(
                l.iter()
                    .map(|&j| match &c.values[j] {
                        RValue::Tensor(t) => self.tensor_out(t),
                        _ => Err(inv(&self.name, "tensor list item is not a Tensor")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            RValue::OptTensorList(_) => EValue::None,
        })
    }

    fn tensor_out(&self, t: &RTensor) -> Result<Tensor, PteError> {
        let data = tensor_bytes(&self.ctx, t)
            .map_err(|w| inv(&self.name, format!("output: {w}")))?
            .to_vec();
        Ok(Tensor {
            dtype: t.dtype,
            sizes: t.sizes.clone(),
            data,
        })
    }
}

fn kind_name(v: &RValue) -> &'static str {
    match v {
        RValue::None => "None",
        RValue::Int(_) => "Int",
        RValue::Double(_) => "Double",
        RValue::Bool(_) => "Bool",
        RValue::Tensor(_) => "Tensor",
        RValue::String(_) => "String",
        RValue::IntList(_) => "IntList",
        RValue::DoubleList(_) => "DoubleList",
        RValue::BoolList(_) => "BoolList",
        RValue::TensorList(_) => "TensorList",
        RValue::OptTensorList(_) => "OptionalTensorList",
    }
}
