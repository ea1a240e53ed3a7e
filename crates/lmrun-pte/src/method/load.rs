//! Loading a method: planned arenas sized from `non_const_buffer_sizes` (refused beyond the
//! machine's memory), every value wired to its storage (constants used in place, planned
//! slots in the arenas, external `.ptd` data, mutable initial values copied in), delegates
//! initialised, and every instruction resolved, so that a missing kernel, missing data or a
//! bad index is an error here and never at execute.

use crate::external::ExternalData;
use crate::ops;
use crate::program::Program;
use crate::schema::{Allocation, ExecutionPlan, Instruction, TensorDef, ValueDef};
use crate::tensor::{Ctx, RTensor, RValue, ScalarType, Storage};
use crate::xnnpack::{XnnDelegate, XnnInitError};
use crate::PteError;

use super::{inv, Method, Step};

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

/// What loading one plan has at hand.
struct Loader<'a> {
    program: &'a Program,
    plan: &'a ExecutionPlan,
    external: &'a ExternalData<'a>,
    name: &'a str,
}

impl Method {
    /// Load `plan` of `program`: wire storage, resolve kernels, init delegates.
    pub(crate) fn load(
        program: &Program,
        plan: &ExecutionPlan,
        external: &ExternalData,
        pool: std::sync::Arc<lmrun_kernels::ThreadPool>,
    ) -> Result<Method, PteError> {
        let l = Loader {
            program,
            plan,
            external,
            name: &plan.name,
        };
        let mut arenas = l.arenas()?;
        let values = plan
            .values
            .iter()
            .enumerate()
            .map(|(vi, v)| l.value(vi, v, &mut arenas))
            .collect::<Result<Vec<_>, _>>()?;
        let delegates = l.delegates()?;
        let op_names: Vec<String> = plan.operators.iter().map(|o| o.full_name()).collect();
        let steps = l.steps(&op_names, &delegates)?;
        l.check_float_operands(&steps, &op_names, &values)?;
        let inputs = l.indices(&plan.inputs, "input")?;
        let outputs = l.indices(&plan.outputs, "output")?;
        Ok(Method {
            name: plan.name.clone(),
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
}

impl Loader<'_> {
    /// Value index `i`, checked against the plan's values.
    fn idx(&self, i: i64, what: &str) -> Result<usize, PteError> {
        let nv = self.plan.values.len();
        usize::try_from(i).ok().filter(|&u| u < nv).ok_or_else(|| {
            inv(
                self.name,
                format!("{what} value index {i} out of range (of {nv})"),
            )
        })
    }

    /// Value indices `l`, each checked.
    fn indices(&self, l: &[i32], what: &str) -> Result<Vec<usize>, PteError> {
        l.iter().map(|&i| self.idx(i.into(), what)).collect()
    }

    /// An invalid-method error about value `vi`.
    fn bad(&self, vi: usize, what: impl std::fmt::Display) -> PteError {
        inv(self.name, format!("value {vi}: {what}"))
    }

    /// The bytes of external data `key`, which must exist.
    fn external(&self, key: &str) -> Result<lmrun_loader::Buffer, PteError> {
        self.external
            .get(key)?
            .ok_or_else(|| PteError::ExternalDataMissing {
                method: self.name.to_string(),
                key: key.to_string(),
            })
    }

    /// The planned arenas, zeroed, after checking their sizes and total.
    fn arenas(&self) -> Result<Vec<Vec<u8>>, PteError> {
        let sizes = &self.plan.non_const_buffer_sizes;
        let mut total: u64 = 0;
        let phys = physical_memory();
        for (k, &s) in sizes.iter().enumerate().skip(1) {
            if !(0..=MAX_ARENA).contains(&s) {
                return Err(inv(self.name, format!("planned buffer {k} has size {s}")));
            }
            total = total.saturating_add(s as u64);
            if total > phys {
                return Err(inv(
                    self.name,
                    format!("planned memory ({total} bytes) exceeds the machine's memory ({phys} bytes)"),
                ));
            }
        }
        Ok(sizes
            .iter()
            .skip(1)
            .map(|&s| vec![0u8; s as usize])
            .collect())
    }

    /// The runtime value of value `vi`.
    fn value(&self, vi: usize, v: &ValueDef, arenas: &mut [Vec<u8>]) -> Result<RValue, PteError> {
        Ok(match v {
            ValueDef::Null => RValue::None,
            ValueDef::Int(i) => RValue::Int(*i),
            ValueDef::Bool(b) => RValue::Bool(*b),
            ValueDef::Double(d) => RValue::Double(*d),
            ValueDef::String(s) => RValue::String(s.clone()),
            ValueDef::IntList(l) => RValue::IntList(
                l.iter()
                    .map(|&i| self.idx(i, "int list item"))
                    .collect::<Result<_, _>>()?,
            ),
            ValueDef::DoubleList(l) => RValue::DoubleList(l.clone()),
            ValueDef::BoolList(l) => RValue::BoolList(l.clone()),
            ValueDef::TensorList(l) => RValue::TensorList(self.indices(l, "tensor list item")?),
            ValueDef::OptionalTensorList(l) => RValue::OptTensorList(
                l.iter()
                    .map(|&i| {
                        if i < 0 {
                            return Ok(None);
                        }
                        let u = self.idx(i.into(), "optional tensor list item")?;
                        Ok(match self.plan.values[u] {
                            ValueDef::Null => None,
                            _ => Some(u),
                        })
                    })
                    .collect::<Result<_, PteError>>()?,
            ),
            ValueDef::Tensor(t) => RValue::Tensor(self.tensor(vi, t, arenas)?),
        })
    }

    /// A tensor value: dtype, sizes and byte count checked, storage wired.
    fn tensor(
        &self,
        vi: usize,
        t: &TensorDef,
        arenas: &mut [Vec<u8>],
    ) -> Result<RTensor, PteError> {
        let dtype = ScalarType::from_code(t.scalar_type)
            .ok_or_else(|| self.bad(vi, format!("unknown scalar type {}", t.scalar_type)))?;
        let mut sizes = Vec::with_capacity(t.sizes.len());
        for &s in &t.sizes {
            sizes.push(usize::try_from(s).map_err(|_| self.bad(vi, format!("negative size {s}")))?);
        }
        let nbytes = sizes
            .iter()
            .try_fold(dtype.size(), |a, &s| a.checked_mul(s))
            .filter(|&n| n <= 1 << 40)
            .ok_or_else(|| self.bad(vi, "tensor size overflows"))?;
        if !t.dim_order.is_empty()
            && t.dim_order
                .iter()
                .enumerate()
                .any(|(i, &d)| d as usize != i)
        {
            return Err(self.bad(
                vi,
                format!(
                    "dim order {:?} is not contiguous (unsupported)",
                    t.dim_order
                ),
            ));
        }
        let storage = self.storage(vi, t, nbytes, arenas)?;
        let cap = match &storage {
            Storage::Unset | Storage::Owned(_) => usize::MAX,
            _ => nbytes,
        };
        Ok(RTensor {
            dtype,
            sizes,
            cap,
            storage,
        })
    }

    /// Where tensor value `vi` (of `nbytes`) lives.
    fn storage(
        &self,
        vi: usize,
        t: &TensorDef,
        nbytes: usize,
        arenas: &mut [Vec<u8>],
    ) -> Result<Storage, PteError> {
        let external_key = t
            .extra
            .as_ref()
            .filter(|e| e.location == 1)
            .map(|e| e.fully_qualified_name.clone().unwrap_or_default());
        Ok(match (&t.allocation, t.data_buffer_idx, external_key) {
            (None, _, Some(key)) => {
                let b = self.external(&key)?;
                if b.len() < nbytes {
                    return Err(inv(
                        self.name,
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
                self.program
                    .constant_data(i, nbytes)
                    .map_err(|w| self.bad(vi, w))?,
            ),
            (Some(a), di, ext) => self.planned(vi, t, a, (di, ext), nbytes, arenas)?,
        })
    }

    /// A planned tensor's arena slot, with its initial value (external data or a mutable data
    /// segment) copied in.
    fn planned(
        &self,
        vi: usize,
        t: &TensorDef,
        a: &Allocation,
        (di, ext): (u32, Option<String>),
        nbytes: usize,
        arenas: &mut [Vec<u8>],
    ) -> Result<Storage, PteError> {
        let id = (a.memory_id as usize)
            .checked_sub(1)
            .ok_or_else(|| self.bad(vi, "memory id 0"))?;
        let arena = arenas
            .get_mut(id)
            .ok_or_else(|| self.bad(vi, format!("memory id {} has no buffer", a.memory_id)))?;
        let off = usize::try_from(a.offset).unwrap_or(usize::MAX);
        let end = off.checked_add(nbytes).filter(|&e| e <= arena.len());
        let Some(end) = end else {
            return Err(self.bad(
                vi,
                format!(
                    "planned {nbytes} bytes at {off} exceed buffer {} ({} bytes)",
                    a.memory_id,
                    arena.len()
                ),
            ));
        };
        if let Some(key) = ext {
            let b = self.external(&key)?;
            let n = nbytes.min(b.len());
            arena[off..off + n].copy_from_slice(&b[..n]);
        } else if di > 0 {
            let seg = t.extra.as_ref().map_or(0, |e| e.mutable_data_segments_idx);
            let b = self
                .program
                .mutable_data(seg, di, nbytes)
                .map_err(|w| self.bad(vi, w))?;
            arena[off..end].copy_from_slice(&b);
        }
        Ok(Storage::Arena { id, off })
    }

    /// Every delegate, initialised (only XNNPACK is available).
    fn delegates(&self) -> Result<Vec<XnnDelegate>, PteError> {
        let mut delegates = Vec::new();
        for (di, d) in self.plan.delegates.iter().enumerate() {
            let derr = |what: String| PteError::Delegate {
                method: self.name.to_string(),
                index: di,
                backend: d.id.clone(),
                what,
            };
            if d.id != "XnnpackBackend" {
                return Err(derr("backend not available in lmrun".into()));
            }
            let blob = self.program.delegate_data(d)?;
            let x = XnnDelegate::init(&blob, self.external).map_err(|e| match e {
                XnnInitError::Missing(key) => PteError::ExternalDataMissing {
                    method: self.name.to_string(),
                    key,
                },
                XnnInitError::Other(w) => derr(w),
            })?;
            delegates.push(x);
        }
        Ok(delegates)
    }

    /// Chain 0's instructions, resolved (kernels looked up once per operator).
    fn steps(&self, op_names: &[String], delegates: &[XnnDelegate]) -> Result<Vec<Step>, PteError> {
        let mut resolved: Vec<Option<ops::KernelFn>> = vec![None; op_names.len()];
        let chain = self.plan.chains.first().cloned().unwrap_or_default();
        let ni = chain.instructions.len();
        let mut steps = Vec::with_capacity(ni);
        for ins in &chain.instructions {
            steps.push(match ins {
                Instruction::Kernel { op_index, args } => {
                    let oi = usize::try_from(*op_index)
                        .ok()
                        .filter(|&o| o < op_names.len())
                        .ok_or_else(|| {
                            inv(self.name, format!("operator index {op_index} out of range"))
                        })?;
                    let f = match resolved[oi] {
                        Some(f) => f,
                        None => {
                            let f = ops::lookup(&op_names[oi]).ok_or_else(|| {
                                PteError::OperatorMissing {
                                    method: self.name.to_string(),
                                    operator: op_names[oi].clone(),
                                }
                            })?;
                            resolved[oi] = Some(f);
                            f
                        }
                    };
                    Step::Kernel(f, self.indices(args, "argument")?, oi)
                }
                Instruction::Delegate {
                    delegate_index,
                    args,
                } => self.delegate_step(*delegate_index, args, delegates)?,
                Instruction::Move { from, to } => Step::Move(
                    self.idx((*from).into(), "move")?,
                    self.idx((*to).into(), "move")?,
                ),
                Instruction::JumpFalse { cond, dest } => {
                    let d = usize::try_from(*dest)
                        .ok()
                        .filter(|&d| d <= ni)
                        .ok_or_else(|| {
                            inv(self.name, format!("jump destination {dest} out of range"))
                        })?;
                    Step::JumpFalse(self.idx((*cond).into(), "jump condition")?, d)
                }
                Instruction::Free { value } => Step::Free(self.idx((*value).into(), "free")?),
            });
        }
        Ok(steps)
    }

    /// A delegate call, its argument count checked against the graph's externals.
    fn delegate_step(
        &self,
        delegate_index: i32,
        args: &[i32],
        delegates: &[XnnDelegate],
    ) -> Result<Step, PteError> {
        let d = usize::try_from(delegate_index)
            .ok()
            .filter(|&d| d < delegates.len())
            .ok_or_else(|| {
                inv(
                    self.name,
                    format!("delegate index {delegate_index} out of range"),
                )
            })?;
        let a = self.indices(args, "argument")?;
        delegates[d]
            .check_args(a.len())
            .map_err(|w| PteError::Delegate {
                method: self.name.to_string(),
                index: d,
                backend: "XnnpackBackend".into(),
                what: w,
            })?;
        Ok(Step::Delegate(d, a))
    }

    /// Kernels are chosen by name and dtypes (ExecuTorch's kernel keys): reject a float
    /// kernel fed quantized constant weights at load, not with garbage at execute.
    fn check_float_operands(
        &self,
        steps: &[Step],
        op_names: &[String],
        values: &[RValue],
    ) -> Result<(), PteError> {
        for st in steps {
            let Step::Kernel(_, args, oi) = st else {
                continue;
            };
            let op = op_names[*oi].as_str();
            if op != "aten::linear.out" && op != "aten::mm.out" && op != "aten::bmm.out" {
                continue;
            }
            for &a in args.iter().take(2) {
                if let RValue::Tensor(t) = &values[a] {
                    if !t.dtype.is_float() && matches!(t.storage, Storage::Const(_)) {
                        return Err(PteError::OperatorMissing {
                            method: self.name.to_string(),
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
        Ok(())
    }
}
