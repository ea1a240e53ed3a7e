//! The value classes of the Python API — `LoadMode`, `GenerationConfig`, `Stats` and
//! `LoadReport` — with ExecuTorch's names, fields and defaults where ExecuTorch has them, and
//! lmrun's extra fields beside them. They are plain copies of the Rust values: changing one in
//! Python never reaches into a running generation.

use lmrun::{GenerationConfig, LoadReport, MlockOutcome, Stats};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// How the model file is loaded (ExecuTorch's `Module::LoadMode`).
#[pyclass(
    eq,
    eq_int,
    hash,
    frozen,
    module = "lmrun",
    name = "LoadMode",
    from_py_object
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PyLoadMode {
    /// Read the whole file into memory.
    File,
    /// Map the file; pages come in on first touch and can be evicted.
    Mmap,
    /// Map the file and pin it with mlock; a failed mlock fails the load.
    MmapUseMlock,
    /// Map the file and try to pin it; a failed mlock is logged and the load goes on (default).
    MmapUseMlockIgnoreErrors,
}

impl From<PyLoadMode> for lmrun::LoadMode {
    fn from(m: PyLoadMode) -> Self {
        match m {
            PyLoadMode::File => lmrun::LoadMode::File,
            PyLoadMode::Mmap => lmrun::LoadMode::Mmap,
            PyLoadMode::MmapUseMlock => lmrun::LoadMode::MmapUseMlock,
            PyLoadMode::MmapUseMlockIgnoreErrors => lmrun::LoadMode::MmapUseMlockIgnoreErrors,
        }
    }
}

impl From<lmrun::LoadMode> for PyLoadMode {
    fn from(m: lmrun::LoadMode) -> Self {
        match m {
            lmrun::LoadMode::File => PyLoadMode::File,
            lmrun::LoadMode::Mmap => PyLoadMode::Mmap,
            lmrun::LoadMode::MmapUseMlock => PyLoadMode::MmapUseMlock,
            lmrun::LoadMode::MmapUseMlockIgnoreErrors => PyLoadMode::MmapUseMlockIgnoreErrors,
        }
    }
}

#[pymethods]
impl PyLoadMode {
    /// The CLI's name of the mode (`file`, `mmap`, `mmap-mlock`, `mmap-mlock-ignore-errors`).
    #[getter]
    fn cli_name(&self) -> &'static str {
        lmrun::LoadMode::from(*self).cli_name()
    }
}

/// A load mode given as `LoadMode`, as its Python name (`"MmapUseMlock"`) or as the CLI's name
/// (`"mmap-mlock"`); `None` is the default mode.
pub fn load_mode_arg(v: Option<&Bound<'_, PyAny>>) -> PyResult<lmrun::LoadMode> {
    let Some(v) = v else {
        return Ok(lmrun::DEFAULT_LOAD_MODE);
    };
    if v.is_none() {
        return Ok(lmrun::DEFAULT_LOAD_MODE);
    }
    if let Ok(m) = v.extract::<PyLoadMode>() {
        return Ok(m.into());
    }
    if let Ok(s) = v.extract::<String>() {
        let all = [
            lmrun::LoadMode::File,
            lmrun::LoadMode::Mmap,
            lmrun::LoadMode::MmapUseMlock,
            lmrun::LoadMode::MmapUseMlockIgnoreErrors,
        ];
        for m in all {
            if s == m.cli_name() || s == format!("{:?}", PyLoadMode::from(m)) {
                return Ok(m);
            }
        }
        return Err(PyValueError::new_err(format!(
            "unknown load mode {s:?} (one of File, Mmap, MmapUseMlock, MmapUseMlockIgnoreErrors, \
             or file, mmap, mmap-mlock, mmap-mlock-ignore-errors)"
        )));
    }
    Err(PyTypeError::new_err(
        "load_mode must be an lmrun.LoadMode or a string",
    ))
}

/// How one `generate` call runs: ExecuTorch's fields and defaults (except `num_bos`/`num_eos`,
/// whose default `None` means the model's own rule), plus lmrun's sampling fields.
#[pyclass(module = "lmrun", name = "GenerationConfig", from_py_object)]
#[derive(Clone, Debug)]
pub struct PyGenerationConfig {
    /// Pass the prompt to the token callback before the generated text.
    #[pyo3(get, set)]
    pub echo: bool,
    /// Most tokens to generate; -1 = as many as the context allows.
    #[pyo3(get, set)]
    pub max_new_tokens: i64,
    /// A warm-up run.
    #[pyo3(get, set)]
    pub warming: bool,
    /// Cap on prompt + generated tokens; -1 = the context.
    #[pyo3(get, set)]
    pub seq_len: i64,
    /// Sampling temperature; 0 = greedy.
    #[pyo3(get, set)]
    pub temperature: f32,
    /// BOS tokens before the prompt; None = the model's rule.
    #[pyo3(get, set)]
    pub num_bos: Option<usize>,
    /// EOS tokens after the prompt; None = the model's rule.
    #[pyo3(get, set)]
    pub num_eos: Option<usize>,
    /// Keep generating past end-of-sequence tokens.
    #[pyo3(get, set)]
    pub ignore_eos: bool,
    /// Keep the k most likely tokens (0 = off).
    #[pyo3(get, set)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1.0 = off).
    #[pyo3(get, set)]
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the most likely (0 = off).
    #[pyo3(get, set)]
    pub min_p: f32,
    /// Penalty for recently seen tokens (1.0 = off).
    #[pyo3(get, set)]
    pub repetition_penalty: f32,
    /// How many recent tokens the penalty looks at.
    #[pyo3(get, set)]
    pub repetition_window: usize,
    /// Sampler seed; None = seeded from the clock once per runner.
    #[pyo3(get, set)]
    pub seed: Option<u64>,
    /// Turn control tokens written in the prompt into single tokens.
    #[pyo3(get, set)]
    pub parse_special: bool,
    /// Stop when the text contains one of these (not included in the text).
    #[pyo3(get, set)]
    pub stop: Vec<String>,
    /// Subtracted from the logit of every token seen in the penalty window (0 = off).
    #[pyo3(get, set)]
    pub presence_penalty: f32,
    /// Subtracted once per occurrence in the penalty window (0 = off).
    #[pyo3(get, set)]
    pub frequency_penalty: f32,
    /// Added to the logits of these token ids (float('-inf') bans a token).
    #[pyo3(get, set)]
    pub logit_bias: std::collections::BTreeMap<u32, f32>,
    /// Locally typical sampling mass (1.0 = off).
    #[pyo3(get, set)]
    pub typical_p: f32,
    /// "error" (default) or "shift": what happens when the context fills.
    #[pyo3(get, set)]
    pub context_overflow: String,
    /// Tokens a context shift keeps at the start (0 = just BOS).
    #[pyo3(get, set)]
    pub n_keep: usize,
    /// Constrain the output to this GBNF grammar (llama.cpp's format).
    #[pyo3(get, set)]
    pub grammar: Option<String>,
    /// Constrain the output to JSON following this schema (JSON text).
    #[pyo3(get, set)]
    pub json_schema: Option<String>,
    /// Mirostat version: 0 = off, 2 = mirostat v2 (replaces top-k, typical-p, top-p, min-p).
    #[pyo3(get, set)]
    pub mirostat: u8,
    /// Mirostat target surprise (tau).
    #[pyo3(get, set)]
    pub mirostat_tau: f32,
    /// Mirostat learning rate (eta).
    #[pyo3(get, set)]
    pub mirostat_eta: f32,
    /// Report each generated token's log-probability with this many top alternatives
    /// (`generate_detailed`); 0 = none.
    #[pyo3(get, set)]
    pub n_probs: usize,
}

impl Default for PyGenerationConfig {
    fn default() -> Self {
        PyGenerationConfig::from_rust(&GenerationConfig::default())
    }
}

impl PyGenerationConfig {
    fn from_rust(c: &GenerationConfig) -> Self {
        PyGenerationConfig {
            echo: c.echo,
            max_new_tokens: c.max_new_tokens,
            warming: c.warming,
            seq_len: c.seq_len,
            temperature: c.temperature,
            num_bos: c.num_bos,
            num_eos: c.num_eos,
            ignore_eos: c.ignore_eos,
            top_k: c.top_k,
            top_p: c.top_p,
            min_p: c.min_p,
            repetition_penalty: c.repetition_penalty,
            repetition_window: c.repetition_window,
            seed: c.seed,
            parse_special: c.parse_special,
            stop: c.stop.clone(),
            presence_penalty: c.presence_penalty,
            frequency_penalty: c.frequency_penalty,
            logit_bias: c.logit_bias.iter().copied().collect(),
            typical_p: c.typical_p,
            context_overflow: match c.context_overflow {
                lmrun::ContextOverflow::Error => "error".into(),
                lmrun::ContextOverflow::Shift => "shift".into(),
            },
            n_keep: c.n_keep,
            grammar: c.grammar.clone(),
            json_schema: None,
            mirostat: if c.mirostat.is_some() { 2 } else { 0 },
            mirostat_tau: c.mirostat.map_or(5.0, |m| m.0),
            mirostat_eta: c.mirostat.map_or(0.1, |m| m.1),
            n_probs: c.n_probs,
        }
    }

    /// The Rust config, after checking the values a sampler cannot use.
    pub fn to_rust(&self) -> PyResult<GenerationConfig> {
        let bad = |what: &str| Err(PyValueError::new_err(what.to_string()));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(&format!(
                "temperature must be a finite number >= 0 (0 = greedy), got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(&format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(&format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(&format!(
                "repetition_penalty must be > 0 (1.0 = off), got {}",
                self.repetition_penalty
            ));
        }
        if !(self.typical_p > 0.0 && self.typical_p <= 1.0) {
            return bad(&format!(
                "typical_p must be in (0, 1], got {}",
                self.typical_p
            ));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !v.is_finite() {
                return bad(&format!("{name} must be a finite number, got {v}"));
            }
        }
        let grammar = match (&self.grammar, &self.json_schema) {
            (Some(_), Some(_)) => return bad("give grammar or json_schema, not both"),
            (Some(g), None) => Some(g.clone()),
            (None, Some(s)) => match lmrun::grammar::json_schema_str_to_gbnf(s) {
                Ok(g) => Some(g),
                Err(e) => return bad(&format!("json_schema: {e}")),
            },
            (None, None) => None,
        };
        if let Some(g) = &grammar {
            if let Err(e) = lmrun::grammar::Grammar::parse(g) {
                return bad(&format!("grammar: {e}"));
            }
        }
        let context_overflow = match self.context_overflow.as_str() {
            "error" => lmrun::ContextOverflow::Error,
            "shift" => lmrun::ContextOverflow::Shift,
            other => {
                return bad(&format!(
                    "context_overflow must be \"error\" or \"shift\", got {other:?}"
                ))
            }
        };
        let mirostat = match self.mirostat {
            0 => None,
            2 if self.mirostat_tau.is_finite()
                && self.mirostat_tau > 0.0
                && self.mirostat_eta.is_finite()
                && self.mirostat_eta > 0.0 =>
            {
                Some((self.mirostat_tau, self.mirostat_eta))
            }
            2 => {
                return bad(&format!(
                    "mirostat_tau and mirostat_eta must be > 0, got {} and {}",
                    self.mirostat_tau, self.mirostat_eta
                ))
            }
            v => return bad(&format!("mirostat must be 0 (off) or 2 (v2), got {v}")),
        };
        if self.n_probs > 100 {
            return bad(&format!(
                "n_probs must be at most 100, got {}",
                self.n_probs
            ));
        }
        if self.max_new_tokens < -1 || self.seq_len < -1 {
            return bad(&format!(
                "max_new_tokens and seq_len must be -1 or positive, got {} and {}",
                self.max_new_tokens, self.seq_len
            ));
        }
        Ok(GenerationConfig {
            echo: self.echo,
            ignore_eos: self.ignore_eos,
            max_new_tokens: self.max_new_tokens,
            warming: self.warming,
            seq_len: self.seq_len,
            temperature: self.temperature,
            num_bos: self.num_bos,
            num_eos: self.num_eos,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            repetition_window: self.repetition_window,
            seed: self.seed,
            parse_special: self.parse_special,
            stop: self.stop.clone(),
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            logit_bias: self.logit_bias.iter().map(|(&k, &v)| (k, v)).collect(),
            typical_p: self.typical_p,
            context_overflow,
            n_keep: self.n_keep,
            grammar,
            mirostat,
            n_probs: self.n_probs,
        })
    }

    /// `base` (or the defaults with `echo` as given) with keyword overrides applied through
    /// the class's own setters, so a misspelt option is an error, not ignored.
    pub fn with_overrides(
        py: Python<'_>,
        base: Option<&PyGenerationConfig>,
        echo_default: bool,
        overrides: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<GenerationConfig> {
        let start = match base {
            Some(b) => b.clone(),
            None => PyGenerationConfig {
                echo: echo_default,
                ..Default::default()
            },
        };
        let obj = Bound::new(py, start)?;
        if let Some(kw) = overrides {
            for (k, v) in kw.iter() {
                let name: String = k.extract()?;
                if name.starts_with('_') || !obj.hasattr(name.as_str())? {
                    return Err(PyTypeError::new_err(format!(
                        "unknown generation option {name:?} (see lmrun.GenerationConfig)"
                    )));
                }
                obj.setattr(name.as_str(), v)?;
            }
        }
        let c = obj.borrow().to_rust();
        c
    }
}

#[pymethods]
impl PyGenerationConfig {
    #[new]
    #[pyo3(signature = (*, echo=true, max_new_tokens=-1, warming=false, seq_len=-1,
        temperature=0.8, num_bos=None, num_eos=None, ignore_eos=false, top_k=0, top_p=0.9,
        min_p=0.0, repetition_penalty=1.0, repetition_window=64, seed=None, parse_special=true,
        stop=Vec::new(), presence_penalty=0.0, frequency_penalty=0.0,
        logit_bias=std::collections::BTreeMap::new(), typical_p=1.0,
        context_overflow="error".to_string(), n_keep=0, grammar=None, json_schema=None,
        mirostat=0, mirostat_tau=5.0, mirostat_eta=0.1, n_probs=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        echo: bool,
        max_new_tokens: i64,
        warming: bool,
        seq_len: i64,
        temperature: f32,
        num_bos: Option<usize>,
        num_eos: Option<usize>,
        ignore_eos: bool,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repetition_penalty: f32,
        repetition_window: usize,
        seed: Option<u64>,
        parse_special: bool,
        stop: Vec<String>,
        presence_penalty: f32,
        frequency_penalty: f32,
        logit_bias: std::collections::BTreeMap<u32, f32>,
        typical_p: f32,
        context_overflow: String,
        n_keep: usize,
        grammar: Option<String>,
        json_schema: Option<String>,
        mirostat: u8,
        mirostat_tau: f32,
        mirostat_eta: f32,
        n_probs: usize,
    ) -> Self {
        PyGenerationConfig {
            echo,
            max_new_tokens,
            warming,
            seq_len,
            temperature,
            num_bos,
            num_eos,
            ignore_eos,
            top_k,
            top_p,
            min_p,
            repetition_penalty,
            repetition_window,
            seed,
            parse_special,
            stop,
            presence_penalty,
            frequency_penalty,
            logit_bias,
            typical_p,
            context_overflow,
            n_keep,
            grammar,
            json_schema,
            mirostat,
            mirostat_tau,
            mirostat_eta,
            n_probs,
        }
    }

    /// How many tokens may be generated given the context and the prompt length
    /// (ExecuTorch's rule).
    fn resolve_max_new_tokens(
        &self,
        max_context_len: i64,
        num_prompt_tokens: i64,
    ) -> PyResult<i64> {
        Ok(self
            .to_rust()?
            .resolve_max_new_tokens(max_context_len, num_prompt_tokens))
    }

    fn __repr__(&self) -> String {
        let opt = |v: Option<usize>| v.map_or("None".to_string(), |v| v.to_string());
        format!(
            "GenerationConfig(echo={}, max_new_tokens={}, warming={}, seq_len={}, \
             temperature={:?}, num_bos={}, num_eos={}, ignore_eos={}, top_k={}, top_p={:?}, \
             min_p={:?}, repetition_penalty={:?}, repetition_window={}, seed={}, \
             parse_special={}, stop={:?}, presence_penalty={:?}, frequency_penalty={:?}, \
             logit_bias={:?}, typical_p={:?}, context_overflow={:?}, n_keep={}, mirostat={}, \
             mirostat_tau={:?}, mirostat_eta={:?}, n_probs={})",
            py_bool(self.echo),
            self.max_new_tokens,
            py_bool(self.warming),
            self.seq_len,
            self.temperature,
            opt(self.num_bos),
            opt(self.num_eos),
            py_bool(self.ignore_eos),
            self.top_k,
            self.top_p,
            self.min_p,
            self.repetition_penalty,
            self.repetition_window,
            self.seed.map_or("None".to_string(), |v| v.to_string()),
            py_bool(self.parse_special),
            self.stop,
            self.presence_penalty,
            self.frequency_penalty,
            self.logit_bias,
            self.typical_p,
            self.context_overflow,
            self.n_keep,
            self.mirostat,
            self.mirostat_tau,
            self.mirostat_eta,
            self.n_probs,
        )
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// What one `generate` call measured (ExecuTorch's `Stats`, plus lmrun's rates and memory).
#[pyclass(module = "lmrun", name = "Stats", from_py_object)]
#[derive(Clone, Debug)]
pub struct PyStats {
    /// The Rust stats.
    pub inner: Stats,
}

#[pymethods]
impl PyStats {
    /// When model loading started (ms since the epoch).
    #[getter]
    fn model_load_start_ms(&self) -> i64 {
        self.inner.model_load_start_ms
    }
    /// When model loading ended.
    #[getter]
    fn model_load_end_ms(&self) -> i64 {
        self.inner.model_load_end_ms
    }
    /// When inference started.
    #[getter]
    fn inference_start_ms(&self) -> i64 {
        self.inner.inference_start_ms
    }
    /// When the prompt was encoded.
    #[getter]
    fn token_encode_end_ms(&self) -> i64 {
        self.inner.token_encode_end_ms
    }
    /// When the prompt's prefill finished.
    #[getter]
    fn prompt_eval_end_ms(&self) -> i64 {
        self.inner.prompt_eval_end_ms
    }
    /// When the first generated token was available.
    #[getter]
    fn first_token_ms(&self) -> i64 {
        self.inner.first_token_ms
    }
    /// When inference ended.
    #[getter]
    fn inference_end_ms(&self) -> i64 {
        self.inner.inference_end_ms
    }
    /// Time spent in the sampler.
    #[getter]
    fn aggregate_sampling_time_ms(&self) -> i64 {
        self.inner.aggregate_sampling_time_ms
    }
    /// Prompt tokens fed to the model.
    #[getter]
    fn num_prompt_tokens(&self) -> i64 {
        self.inner.num_prompt_tokens
    }
    /// Tokens generated (the one sampled from the prompt's logits included).
    #[getter]
    fn num_generated_tokens(&self) -> i64 {
        self.inner.num_generated_tokens
    }
    /// Decode steps run (one fewer than the generated tokens).
    #[getter]
    fn num_decode_steps(&self) -> i64 {
        self.inner.num_decode_steps
    }
    /// Prompt tokens per second.
    #[getter]
    fn prompt_tokens_per_s(&self) -> f64 {
        self.inner.prompt_tokens_per_s()
    }
    /// Decode tokens per second.
    #[getter]
    fn decode_tokens_per_s(&self) -> f64 {
        self.inner.decode_tokens_per_s()
    }
    /// Time from the start of inference to the first token.
    #[getter]
    fn time_to_first_token_ms(&self) -> i64 {
        self.inner.time_to_first_token_ms()
    }
    /// Peak resident memory of the process, bytes.
    #[getter]
    fn peak_rss_bytes(&self) -> Option<u64> {
        self.inner.peak_rss_bytes
    }
    /// The model's load report.
    #[getter]
    fn load(&self) -> PyLoadReport {
        PyLoadReport {
            inner: self.inner.load.clone(),
        }
    }

    /// ExecuTorch's JSON (PyTorchObserver keys, in its order, no spaces).
    fn to_json_string(&self) -> String {
        self.inner.to_executorch_json()
    }

    /// Everything as a dict: ExecuTorch's keys, then lmrun's rates, memory and load report.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inner.to_json())
    }

    /// Zero everything except the model-load timestamps and report.
    fn reset(&mut self) {
        self.inner.reset();
    }

    fn __repr__(&self) -> String {
        format!("Stats({})", self.inner.to_executorch_json())
    }
}

/// What loading the model did: the mode asked for, the mode in effect, the mlock outcome.
#[pyclass(module = "lmrun", name = "LoadReport", from_py_object)]
#[derive(Clone, Debug)]
pub struct PyLoadReport {
    /// The Rust report.
    pub inner: LoadReport,
}

#[pymethods]
impl PyLoadReport {
    /// The mode the caller asked for (None for a model built from memory).
    #[getter]
    fn mode_requested(&self) -> Option<PyLoadMode> {
        self.inner.mode.map(PyLoadMode::from)
    }

    /// The mode that took effect: `MmapUseMlockIgnoreErrors` becomes `MmapUseMlock` when the
    /// pages were locked and `Mmap` when locking failed.
    #[getter]
    fn mode_in_effect(&self) -> Option<PyLoadMode> {
        let m = self.inner.mode?;
        Some(match (m, self.inner.mlock) {
            (lmrun::LoadMode::MmapUseMlockIgnoreErrors, MlockOutcome::Locked) => {
                PyLoadMode::MmapUseMlock
            }
            (lmrun::LoadMode::MmapUseMlockIgnoreErrors, _) => PyLoadMode::Mmap,
            (m, _) => m.into(),
        })
    }

    /// `locked`, `failed` or `not-attempted`.
    #[getter]
    fn mlock(&self) -> &'static str {
        self.inner.mlock.name()
    }

    /// The errno of a failed mlock, else None.
    #[getter]
    fn mlock_errno(&self) -> Option<i32> {
        self.inner.mlock.errno()
    }

    /// Bytes mapped.
    #[getter]
    fn bytes_mapped(&self) -> u64 {
        self.inner.bytes_mapped
    }

    /// Bytes read into memory (the File mode).
    #[getter]
    fn bytes_read(&self) -> u64 {
        self.inner.bytes_read
    }

    /// Bytes locked with mlock.
    #[getter]
    fn bytes_locked(&self) -> u64 {
        self.inner.bytes_locked
    }

    /// Time the loads took, ms.
    #[getter]
    fn elapsed_ms(&self) -> f64 {
        self.inner.elapsed_ms()
    }

    /// The report as a dict (the CLI's JSON form).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = serde_json::to_value(&self.inner).unwrap_or_default();
        json_to_py(py, &v)
    }

    fn __repr__(&self) -> String {
        let name = |m: Option<PyLoadMode>| m.map_or("None".to_string(), |m| format!("{m:?}"));
        format!(
            "LoadReport(mode_requested={}, mode_in_effect={}, mlock={:?}, mlock_errno={}, \
             bytes_mapped={}, bytes_read={}, bytes_locked={})",
            name(self.mode_requested()),
            name(self.mode_in_effect()),
            self.mlock(),
            self.mlock_errno()
                .map_or("None".to_string(), |e| e.to_string()),
            self.inner.bytes_mapped,
            self.inner.bytes_read,
            self.inner.bytes_locked
        )
    }
}

/// A JSON value as the matching Python object (through the `json` module: one code path,
/// Python's own number and string rules).
pub fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    let json = py.import("json")?;
    json.call_method1("loads", (v.to_string(),))
}
