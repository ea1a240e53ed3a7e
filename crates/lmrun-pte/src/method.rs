//! A loaded method: its values wired to storage (constants in place, memory-planned arenas
//! sized from `non_const_buffer_sizes`, external `.ptd` data, mutable initial values), every
//! operator resolved to a kernel and every delegate initialised at load (a missing kernel is an
//! `OperatorMissing` error naming it), and the interpreter that walks chain 0's instructions.
//! Arenas live as long as the method, so mutable buffers (the KV caches) persist across
//! `execute` calls.

use lmrun_loader::Buffer;

use crate::kernels::{self, KernelFn};
use crate::program::Program;
use crate::schema::{ExecutionPlan, Instruction, ValueDef};
use crate::value::{EValue, ScalarType, Tensor};
use crate::xnnpack::XnnDelegate;
use crate::{ExternalData, PteError};

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
        crate::kernels::prod(&self.sizes)
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

/// Cap on planned arena sizes (guards against absurd allocations from hostile files).
const MAX_ARENA: i64 = 1 << 40;

/// Physical memory of the machine (planned arenas beyond it are refused rather than aborting
/// the process on allocation failure).
fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
            kb.checked_mul(1024)
        })
        .unwrap_or(64 << 30)
}

impl Method {
    /// Load `plan` of `program`: wire storage, resolve kernels, init delegates.
    pub(crate) fn load(
        program: &Program,
        plan: &ExecutionPlan,
        external: &ExternalData,
        pool: std::sync::Arc<lmrun_kernels::ThreadPool>,
    ) -> Result<Method, PteError> {
        let name = plan.name.clone();
        let m = name.as_str();
        let nv = plan.values.len();
        let idx = |i: i64, what: &str| -> Result<usize, PteError> {
            usize::try_from(i)
                .ok()
                .filter(|&u| u < nv)
                .ok_or_else(|| inv(m, format!("{what} value index {i} out of range (of {nv})")))
        };
        // Arenas.
        let mut arenas = Vec::new();
        let mut total: u64 = 0;
        let phys = physical_memory();
        for (k, &s) in plan.non_const_buffer_sizes.iter().enumerate().skip(1) {
            if !(0..=MAX_ARENA).contains(&s) {
                return Err(inv(m, format!("planned buffer {k} has size {s}")));
            }
            total = total.saturating_add(s as u64);
            if total > phys {
                return Err(inv(
                    m,
                    format!("planned memory ({total} bytes) exceeds the machine's memory ({phys} bytes)"),
                ));
            }
        }
        for &s in plan.non_const_buffer_sizes.iter().skip(1) {
            arenas.push(vec![0u8; s as usize]);
        }
        // Values.
        let mut values = Vec::with_capacity(nv);
        for (vi, v) in plan.values.iter().enumerate() {
            let rv = match v {
                ValueDef::Null => RValue::None,
                ValueDef::Int(i) => RValue::Int(*i),
                ValueDef::Bool(b) => RValue::Bool(*b),
                ValueDef::Double(d) => RValue::Double(*d),
                ValueDef::String(s) => RValue::String(s.clone()),
                ValueDef::IntList(l) => RValue::IntList(
                    l.iter()
                        .map(|&i| idx(i, "int list item"))
                        .collect::<Result<_, _>>()?,
                ),
                ValueDef::DoubleList(l) => RValue::DoubleList(l.clone()),
                ValueDef::BoolList(l) => RValue::BoolList(l.clone()),
                ValueDef::TensorList(l) => RValue::TensorList(
                    l.iter()
                        .map(|&i| idx(i.into(), "tensor list item"))
                        .collect::<Result<_, _>>()?,
                ),
                ValueDef::OptionalTensorList(l) => RValue::OptTensorList(
                    l.iter()
                        .map(|&i| {
                            if i < 0 {
                                Ok(None)
                            } else {
                                let u = idx(i.into(), "optional tensor list item")?;
                                Ok(match plan.values[u] {
                                    ValueDef::Null => None,
                                    _ => Some(u),
                                })
                            }
                        })
                        .collect::<Result<_, PteError>>()?,
                ),
                ValueDef::Tensor(t) => {
                    let dtype = ScalarType::from_code(t.scalar_type).ok_or_else(|| {
                        inv(
                            m,
                            format!("value {vi}: unknown scalar type {}", t.scalar_type),
                        )
                    })?;
                    let mut sizes = Vec::with_capacity(t.sizes.len());
                    for &s in &t.sizes {
                        sizes.push(
                            usize::try_from(s)
                                .map_err(|_| inv(m, format!("value {vi}: negative size {s}")))?,
                        );
                    }
                    let nbytes = sizes
                        .iter()
                        .try_fold(dtype.size(), |a, &s| a.checked_mul(s))
                        .filter(|&n| n <= 1 << 40)
                        .ok_or_else(|| inv(m, format!("value {vi}: tensor size overflows")))?;
                    if !t.dim_order.is_empty()
                        && t.dim_order
                            .iter()
                            .enumerate()
                            .any(|(i, &d)| d as usize != i)
                    {
                        return Err(inv(
                            m,
                            format!(
                                "value {vi}: dim order {:?} is not contiguous (unsupported)",
                                t.dim_order
                            ),
                        ));
                    }
                    let external_key = t
                        .extra
                        .as_ref()
                        .filter(|e| e.location == 1)
                        .map(|e| e.fully_qualified_name.clone().unwrap_or_default());
                    let storage = match (&t.allocation, t.data_buffer_idx, external_key) {
                        (None, _, Some(key)) => {
                            let b = external.get(&key)?.ok_or_else(|| {
                                PteError::ExternalDataMissing {
                                    method: name.clone(),
                                    key: key.clone(),
                                }
                            })?;
                            if b.len() < nbytes {
                                return Err(inv(
                                    m,
                                    format!(
                                        "external tensor '{key}' has {} bytes, needs {nbytes}",
                                        b.len()
                                    ),
                                ));
                            }
                            Storage::Const(b)
                        }
                        (None, 0, None) => Storage::Unset,
                        (None, i, None) => Storage::Const(
                            program
                                .constant_data(i, nbytes)
                                .map_err(|w| inv(m, format!("value {vi}: {w}")))?,
                        ),
                        (Some(a), di, ext) => {
                            let id = (a.memory_id as usize)
                                .checked_sub(1)
                                .ok_or_else(|| inv(m, format!("value {vi}: memory id 0")))?;
                            let arena = arenas.get_mut(id).ok_or_else(|| {
                                inv(
                                    m,
                                    format!("value {vi}: memory id {} has no buffer", a.memory_id),
                                )
                            })?;
                            let off = usize::try_from(a.offset).unwrap_or(usize::MAX);
                            let end = off.checked_add(nbytes).filter(|&e| e <= arena.len());
                            let Some(end) = end else {
                                return Err(inv(
                                    m,
                                    format!("value {vi}: planned {nbytes} bytes at {off} exceed buffer {} ({} bytes)", a.memory_id, arena.len()),
                                ));
                            };
                            if let Some(key) = ext {
                                let b = external.get(&key)?.ok_or_else(|| {
                                    PteError::ExternalDataMissing {
                                        method: name.clone(),
                                        key: key.clone(),
                                    }
                                })?;
                                let n = nbytes.min(b.len());
                                arena[off..off + n].copy_from_slice(&b[..n]);
                            } else if di > 0 {
                                let seg =
                                    t.extra.as_ref().map_or(0, |e| e.mutable_data_segments_idx);
                                let b = program
                                    .mutable_data(seg, di, nbytes)
                                    .map_err(|w| inv(m, format!("value {vi}: {w}")))?;
                                arena[off..end].copy_from_slice(&b);
                            }
                            Storage::Arena { id, off }
                        }
                    };
                    let cap = match &storage {
                        Storage::Unset | Storage::Owned(_) => usize::MAX,
                        _ => nbytes,
                    };
                    RValue::Tensor(RTensor {
                        dtype,
                        sizes,
                        cap,
                        storage,
                    })
                }
            };
            values.push(rv);
        }
        // Delegates.
        let mut delegates = Vec::new();
        for (di, d) in plan.delegates.iter().enumerate() {
            let derr = |what: String| PteError::Delegate {
                method: name.clone(),
                index: di,
                backend: d.id.clone(),
                what,
            };
            if d.id != "XnnpackBackend" {
                return Err(derr("backend not available in lmrun".into()));
            }
            let blob = program.delegate_data(d)?;
            let x = XnnDelegate::init(&blob, external).map_err(|e| match e {
                crate::xnnpack::XnnInitError::Missing(key) => PteError::ExternalDataMissing {
                    method: name.clone(),
                    key,
                },
                crate::xnnpack::XnnInitError::Other(w) => derr(w),
            })?;
            delegates.push(x);
        }
        // Instructions.
        let op_names: Vec<String> = plan.operators.iter().map(|o| o.full_name()).collect();
        let mut resolved: Vec<Option<KernelFn>> = vec![None; op_names.len()];
        let chain = plan.chains.first().cloned().unwrap_or_default();
        let ni = chain.instructions.len();
        let mut steps = Vec::with_capacity(ni);
        for ins in &chain.instructions {
            let args_of = |a: &[i32]| -> Result<Vec<usize>, PteError> {
                a.iter().map(|&i| idx(i.into(), "argument")).collect()
            };
            steps.push(match ins {
                Instruction::Kernel { op_index, args } => {
                    let oi = usize::try_from(*op_index)
                        .ok()
                        .filter(|&o| o < op_names.len())
                        .ok_or_else(|| inv(m, format!("operator index {op_index} out of range")))?;
                    let f = match resolved[oi] {
                        Some(f) => f,
                        None => {
                            let f = kernels::lookup(&op_names[oi]).ok_or_else(|| {
                                PteError::OperatorMissing {
                                    method: name.clone(),
                                    operator: op_names[oi].clone(),
                                }
                            })?;
                            resolved[oi] = Some(f);
                            f
                        }
                    };
                    Step::Kernel(f, args_of(args)?, oi)
                }
                Instruction::Delegate {
                    delegate_index,
                    args,
                } => {
                    let d = usize::try_from(*delegate_index)
                        .ok()
                        .filter(|&d| d < delegates.len())
                        .ok_or_else(|| {
                            inv(m, format!("delegate index {delegate_index} out of range"))
                        })?;
                    let a = args_of(args)?;
                    delegates[d]
                        .check_args(a.len())
                        .map_err(|w| PteError::Delegate {
                            method: name.clone(),
                            index: d,
                            backend: "XnnpackBackend".into(),
                            what: w,
                        })?;
                    Step::Delegate(d, a)
                }
                Instruction::Move { from, to } => {
                    Step::Move(idx((*from).into(), "move")?, idx((*to).into(), "move")?)
                }
                Instruction::JumpFalse { cond, dest } => {
                    let d = usize::try_from(*dest)
                        .ok()
                        .filter(|&d| d <= ni)
                        .ok_or_else(|| inv(m, format!("jump destination {dest} out of range")))?;
                    Step::JumpFalse(idx((*cond).into(), "jump condition")?, d)
                }
                Instruction::Free { value } => Step::Free(idx((*value).into(), "free")?),
            });
        }
        // Kernels are chosen by name and dtypes (ExecuTorch's kernel keys): reject a float
        // kernel fed quantized constant weights at load, not with garbage at execute.
        for st in &steps {
            if let Step::Kernel(_, args, oi) = st {
                let op = op_names[*oi].as_str();
                if op == "aten::linear.out" || op == "aten::mm.out" || op == "aten::bmm.out" {
                    for &a in args.iter().take(2) {
                        if let RValue::Tensor(t) = &values[a] {
                            if !t.dtype.is_float() && matches!(t.storage, Storage::Const(_)) {
                                return Err(PteError::OperatorMissing {
                                    method: name.clone(),
                                    operator: format!(
                                        "{op} with a {:?} ({}) constant operand: the program feeds quantized \
                                         weights to a float kernel (ExecuTorch fails this program at execute \
                                         with InvalidArgument; export with the XNNPACK delegate or \
                                         quantized kernels)",
                                        t.dtype,
                                        if t.dtype == ScalarType::Char { "int8" } else { "integer" }
                                    ),
                                });
                            }
                        }
                    }
                }
            }
        }
        let inputs = plan
            .inputs
            .iter()
            .map(|&i| idx(i.into(), "input"))
            .collect::<Result<_, _>>()?;
        let outputs = plan
            .outputs
            .iter()
            .map(|&i| idx(i.into(), "output"))
            .collect::<Result<_, _>>()?;
        Ok(Method {
            name,
            ctx: Ctx {
                values,
                arenas,
                pool,
                scratch: lmrun_kernels::Scratch::default(),
            },
            steps,
            op_names,
            delegates,
            inputs,
            outputs,
        })
    }

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
        let data = kernels::tensor_bytes(&self.ctx, t)
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
