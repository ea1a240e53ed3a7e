//! `Module`: ExecuTorch's `extension/module` in Rust. It opens the `.pte` and every `.ptd` with
//! the same load mode, parses them (`Program::load`, `FlatTensorData::load`), and caches loaded
//! methods by name. `execute` sets inputs, runs the method and copies the outputs out; `get`
//! returns a method's first output (how constant metadata methods are read).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lmrun_loader::{open_loader, LoadMode, LoadReport};

use crate::external::ExternalData;
use crate::method::Method;
use crate::program::Program;
use crate::ptd::FlatTensorData;
use crate::schema::ValueDef;
use crate::tensor::{EValue, ScalarType, Tensor};
use crate::PteError;

/// Tensor metadata of a method input or output.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TensorMeta {
    /// Element type.
    pub dtype: ScalarType,
    /// Sizes (upper bounds when dynamic).
    pub sizes: Vec<usize>,
}

/// What a method takes and returns, without loading it (ExecuTorch's `MethodMeta`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MethodMeta {
    /// Method name.
    pub name: String,
    /// Kind of each input (`Tensor`, `Int`, ...).
    pub input_kinds: Vec<String>,
    /// Tensor metadata of each input (None for non-tensors).
    pub input_tensors: Vec<Option<TensorMeta>>,
    /// Kind of each output.
    pub output_kinds: Vec<String>,
    /// Tensor metadata of each output.
    pub output_tensors: Vec<Option<TensorMeta>>,
    /// Sizes of the memory-planned buffers (`non_const_buffer_sizes[1..]`).
    pub planned_buffer_sizes: Vec<i64>,
}

/// An ExecuTorch program plus its data files, with loaded methods cached by name.
pub struct Module {
    program: Program,
    ptds: Vec<FlatTensorData>,
    methods: HashMap<String, Method>,
    pool: Arc<lmrun_kernels::ThreadPool>,
}

impl Module {
    /// Open `pte` and `data_files` (`.ptd`) with `mode`; the program is parsed now, methods are
    /// loaded on first use.
    pub fn from_path(
        pte: &Path,
        data_files: &[PathBuf],
        mode: LoadMode,
    ) -> Result<Module, PteError> {
        let loader = open_loader(pte, mode)?;
        let mut data = Vec::with_capacity(data_files.len());
        for d in data_files {
            data.push((d.clone(), open_loader(d, mode)?));
        }
        Module::from_loaders(pte, loader, data)
    }

    /// Build a module from loaders the caller made (ExecuTorch's `Module(unique_ptr<DataLoader>,
    /// ...)`), e.g. a [`lmrun_loader::BufferLoader`] over bytes in memory. `pte` and the data
    /// paths only name the sources in messages.
    pub fn from_loaders(
        pte: &Path,
        program_loader: Box<dyn lmrun_loader::DataLoader>,
        data_loaders: Vec<(PathBuf, Box<dyn lmrun_loader::DataLoader>)>,
    ) -> Result<Module, PteError> {
        let program = Program::load(pte, program_loader)?;
        let mut ptds = Vec::new();
        for (d, l) in data_loaders {
            let d = &d;
            let p = FlatTensorData::load(d, l)?;
            for e in &p.entries {
                if ptds
                    .iter()
                    .any(|q: &FlatTensorData| q.entry(&e.key).is_some())
                {
                    return Err(PteError::InvalidExternalData {
                        path: d.clone(),
                        what: format!("key '{}' appears in more than one data file", e.key),
                    });
                }
            }
            ptds.push(p);
        }
        let pool = lmrun_kernels::ThreadPool::with_default_threads()
            .map_err(|e| PteError::InvalidArgument(format!("thread pool: {e}")))?;
        Ok(Module {
            program,
            ptds,
            methods: HashMap::new(),
            pool: Arc::new(pool),
        })
    }

    /// Use `n` threads for matmuls in methods loaded from now on.
    pub fn set_threads(&mut self, n: usize) -> Result<(), PteError> {
        let pool = lmrun_kernels::ThreadPool::new(n.max(1))
            .map_err(|e| PteError::InvalidArgument(format!("thread pool: {e}")))?;
        self.pool = Arc::new(pool);
        Ok(())
    }

    /// The parsed program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The parsed program, mutable (for test and fuzzing hooks such as
    /// [`Program::override_delegate_data`]; methods already loaded keep what they read).
    #[doc(hidden)]
    pub fn program_mut(&mut self) -> &mut Program {
        &mut self.program
    }

    /// The loaded `.ptd` files.
    pub fn data_files(&self) -> &[FlatTensorData] {
        &self.ptds
    }

    /// Names of every method (execution plan), in file order.
    pub fn method_names(&mut self) -> Result<Vec<String>, PteError> {
        Ok(self
            .program
            .def
            .plans
            .iter()
            .map(|p| p.name.clone())
            .collect())
    }

    fn plan_index(&self, name: &str) -> Result<usize, PteError> {
        self.program
            .def
            .plans
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| PteError::MethodNotFound(name.to_string()))
    }

    /// Inputs, outputs and planned memory of a method, without loading it.
    pub fn method_meta(&self, name: &str) -> Result<MethodMeta, PteError> {
        let plan = &self.program.def.plans[self.plan_index(name)?];
        let meta = |ids: &[i32]| -> Result<(Vec<String>, Vec<Option<TensorMeta>>), PteError> {
            let mut kinds = Vec::new();
            let mut tensors = Vec::new();
            for &i in ids {
                let v = usize::try_from(i)
                    .ok()
                    .and_then(|u| plan.values.get(u))
                    .ok_or_else(|| PteError::InvalidMethod {
                        method: name.to_string(),
                        what: format!("input/output index {i} out of range"),
                    })?;
                kinds.push(v.kind().to_string());
                tensors.push(match v {
                    ValueDef::Tensor(t) => {
                        ScalarType::from_code(t.scalar_type).map(|dtype| TensorMeta {
                            dtype,
                            sizes: t.sizes.iter().map(|&s| s.max(0) as usize).collect(),
                        })
                    }
                    _ => None,
                });
            }
            Ok((kinds, tensors))
        };
        let (input_kinds, input_tensors) = meta(&plan.inputs)?;
        let (output_kinds, output_tensors) = meta(&plan.outputs)?;
        Ok(MethodMeta {
            name: name.to_string(),
            input_kinds,
            input_tensors,
            output_kinds,
            output_tensors,
            planned_buffer_sizes: plan.planned_buffer_sizes(),
        })
    }

    /// Load a method (no-op when already loaded): wire its storage, resolve every operator
    /// (an unknown one is [`PteError::OperatorMissing`]) and initialise its delegates.
    pub fn load_method(&mut self, name: &str) -> Result<(), PteError> {
        if self.methods.contains_key(name) {
            return Ok(());
        }
        let pi = self.plan_index(name)?;
        let ext = ExternalData {
            program: &self.program,
            ptds: &self.ptds,
        };
        let m = Method::load(
            &self.program,
            &self.program.def.plans[pi],
            &ext,
            self.pool.clone(),
        )?;
        self.methods.insert(name.to_string(), m);
        Ok(())
    }

    /// Whether a method is loaded.
    pub fn is_method_loaded(&self, name: &str) -> bool {
        self.methods.contains_key(name)
    }

    /// Drop a loaded method (its arenas, including KV caches). Returns whether it was loaded.
    pub fn unload_method(&mut self, name: &str) -> bool {
        self.methods.remove(name).is_some()
    }

    /// Run a method on `inputs` and return copies of its outputs.
    pub fn execute(&mut self, name: &str, inputs: &[EValue]) -> Result<Vec<EValue>, PteError> {
        self.load_method(name)?;
        let m = self
            .methods
            .get_mut(name)
            .ok_or_else(|| PteError::MethodNotFound(name.to_string()))?;
        if inputs.len() > m.num_inputs() {
            return Err(PteError::InvalidArgument(format!(
                "method '{name}' takes {} inputs, {} given",
                m.num_inputs(),
                inputs.len()
            )));
        }
        for (i, v) in inputs.iter().enumerate() {
            m.set_input(i, v)?;
        }
        m.execute()?;
        m.outputs()
    }

    /// Run a method with no inputs and return its first output (constant methods).
    pub fn get(&mut self, name: &str) -> Result<EValue, PteError> {
        self.execute(name, &[])?
            .into_iter()
            .next()
            .ok_or_else(|| PteError::InvalidArgument(format!("method '{name}' has no outputs")))
    }

    /// A constant method's outputs read straight from the flatbuffer (no execution), or None
    /// when `name` is not a constant method.
    pub fn constant_values(&self, name: &str) -> Option<Vec<EValue>> {
        let plan = self.program.def.plans.iter().find(|p| p.name == name)?;
        if !plan.inputs.is_empty()
            || plan.chains.iter().any(|c| !c.instructions.is_empty())
            || plan.outputs.is_empty()
        {
            return None;
        }
        let mut out = Vec::new();
        for &o in &plan.outputs {
            out.push(match plan.values.get(usize::try_from(o).ok()?)? {
                ValueDef::Int(i) => EValue::Int(*i),
                ValueDef::Bool(b) => EValue::Bool(*b),
                ValueDef::Double(d) => EValue::Double(*d),
                ValueDef::String(s) => EValue::String(s.clone()),
                ValueDef::Null => EValue::None,
                _ => return None,
            });
        }
        Some(out)
    }

    /// Every constant method's value, read from the flatbuffer without executing (the LLM
    /// metadata: `get_max_seq_len`, `get_eos_ids`, `use_kv_cache`, ...). A method with several
    /// outputs gives a list (`IntList` when all are ints).
    pub fn metadata(&self) -> std::collections::BTreeMap<String, EValue> {
        let mut out = std::collections::BTreeMap::new();
        for p in &self.program.def.plans {
            let Some(mut v) = self.constant_values(&p.name) else {
                continue;
            };
            let value = if v.len() == 1 {
                v.remove(0)
            } else if v.iter().all(|x| matches!(x, EValue::Int(_))) {
                EValue::IntList(v.iter().filter_map(EValue::as_int).collect())
            } else if v.iter().all(|x| matches!(x, EValue::Double(_))) {
                EValue::DoubleList(
                    v.iter()
                        .filter_map(|x| match x {
                            EValue::Double(d) => Some(*d),
                            _ => None,
                        })
                        .collect(),
                )
            } else {
                continue;
            };
            out.insert(p.name.clone(), value);
        }
        out
    }

    /// LLM convenience: `forward(tokens i64[1,T], input_pos i64[1])` → the logits of the last
    /// position as f32 (`[1, V]` or `[1, T, V]` outputs both give the last row). A program
    /// exported with static shapes (tokens `[1, 1]`) is fed several tokens one at a time.
    pub fn forward_logits(&mut self, tokens: &[i64], start_pos: i64) -> Result<Vec<f32>, PteError> {
        if tokens.is_empty() {
            return Err(PteError::InvalidArgument("no tokens".into()));
        }
        let meta = self.method_meta("forward")?;
        let bound = meta
            .input_tensors
            .first()
            .and_then(|t| t.as_ref())
            .and_then(|t| t.sizes.get(1).copied());
        if bound == Some(1) && tokens.len() > 1 {
            // A static-shape export takes one token per call: prefill sequentially, as
            // ExecuTorch's TextPrefiller does without parallel prefill.
            let mut last = Vec::new();
            for (i, &t) in tokens.iter().enumerate() {
                last = self.forward_logits(&[t], start_pos + i as i64)?;
            }
            return Ok(last);
        }
        let mut inputs = vec![EValue::Tensor(Tensor::from_i64(&[1, tokens.len()], tokens))];
        if meta.input_kinds.len() >= 2 {
            let pos_len = meta
                .input_tensors
                .get(1)
                .and_then(|t| t.as_ref())
                .map_or(1, |t| t.sizes.first().copied().unwrap_or(1));
            let pos = if pos_len > 1 {
                // cache-position vector [S]
                let v: Vec<i64> = (0..tokens.len() as i64).map(|i| start_pos + i).collect();
                Tensor::from_i64(&[v.len()], &v)
            } else {
                Tensor::from_i64(&[1], &[start_pos])
            };
            inputs.push(EValue::Tensor(pos));
        }
        let out = self.execute("forward", &inputs)?;
        let t = out
            .first()
            .and_then(EValue::as_tensor)
            .ok_or_else(|| PteError::InvalidArgument("forward returned no tensor".into()))?;
        let v = t.to_f32();
        let vocab = t.sizes.last().copied().unwrap_or(v.len());
        if vocab == 0 || v.len() < vocab {
            return Err(PteError::InvalidArgument(
                "forward returned empty logits".into(),
            ));
        }
        Ok(v[v.len() - vocab..].to_vec())
    }

    /// The load report summed over the `.pte` and every `.ptd`.
    pub fn load_report(&self) -> LoadReport {
        let mut r = self.program.report();
        for p in &self.ptds {
            r.merge(&p.report());
        }
        r
    }
}
