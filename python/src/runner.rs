//! `lmrun.TextLLMRunner`: ExecuTorch's Python runner class over lmrun's Rust runner, plus the
//! Pythonic extras (`generate_text`, `stream`, `chat`, `tokenize`).
//!
//! Threading is the point of this module. The model computes with the GIL released, on a
//! worker thread, while the calling thread waits without the GIL and wakes every few
//! milliseconds to let Python run its signal handlers: so Ctrl-C raises `KeyboardInterrupt`
//! promptly (even during a long prompt's prefill), other Python threads keep running, and two
//! runners in two threads compute in parallel. Callbacks take the GIL for the moment they run.
//! The Rust runner sits behind a mutex that is only ever waited on without the GIL, so a thread
//! waiting for a busy runner can never deadlock against that runner's callbacks; `stop()` needs
//! no lock at all.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use lmrun::chat::Message;
use lmrun::{GenerationConfig, RunnerError, RunnerOptions, StopHandle, TextLLMRunner};
use lmrun_tokenizers::EncodeOptions;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::{to_py, to_py_load};
use crate::types::{load_mode_arg, PyGenerationConfig, PyLoadMode, PyLoadReport, PyStats};

/// How often a waiting thread takes the GIL to run Python's signal handlers.
const SIGNAL_POLL: Duration = Duration::from_millis(20);

/// The Rust runner and which thread is inside it.
struct Shared {
    runner: Mutex<TextLLMRunner>,
    /// The threads inside a call that holds the runner: the Python caller and the worker that
    /// runs its callbacks (to refuse re-entry from a callback, which would otherwise wait for
    /// itself forever).
    inside: Mutex<Vec<ThreadId>>,
}

impl Shared {
    fn lock_runner(&self) -> MutexGuard<'_, TextLLMRunner> {
        self.runner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, t: ThreadId) {
        self.inside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t);
    }

    fn leave(&self, t: ThreadId) {
        self.inside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|&x| x != t);
    }

    /// Whether the current thread is inside a call on this runner.
    fn busy_here(&self) -> bool {
        let me = std::thread::current().id();
        self.inside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&me)
    }
}

/// ExecuTorch's `TextLLMRunner`, running GGUF models and ExecuTorch `.pte` programs.
#[pyclass(module = "lmrun", name = "TextLLMRunner")]
pub struct PyTextLLMRunner {
    shared: Arc<Shared>,
    stop: StopHandle,
    model_path: PathBuf,
}

fn busy() -> PyErr {
    PyRuntimeError::new_err(
        "this runner is busy in this thread (called from inside one of its own callbacks); \
         only stop() may be called there",
    )
}

/// Whether the current thread is Python's main thread (the only one signal handlers run in).
fn on_main_thread(py: Python<'_>) -> bool {
    let check = || -> PyResult<bool> {
        let threading = py.import("threading")?;
        let main = threading.call_method0("main_thread")?;
        let cur = threading.call_method0("current_thread")?;
        Ok(main.is(&cur))
    };
    check().unwrap_or(false)
}

/// Callbacks of one `generate` call and the first Python error they raised.
struct Callbacks {
    token: Option<Py<PyAny>>,
    stats: Option<Py<PyAny>>,
    error: Option<PyErr>,
    stop: StopHandle,
}

impl Callbacks {
    fn on_token(&mut self, piece: &str) {
        if self.error.is_some() {
            return;
        }
        if let Some(cb) = &self.token {
            Python::attach(|py| {
                if let Err(e) = cb.call1(py, (piece,)) {
                    self.error = Some(e);
                    self.stop.stop();
                }
            });
        }
    }

    fn on_stats(&mut self, stats: &lmrun::Stats) {
        if self.error.is_some() {
            return;
        }
        if let Some(cb) = &self.stats {
            Python::attach(|py| {
                let s = PyStats {
                    inner: stats.clone(),
                };
                if let Err(e) = cb.call1(py, (s,)) {
                    self.error = Some(e);
                }
            });
        }
    }
}

fn check_callable(py: Python<'_>, cb: &Option<Py<PyAny>>, what: &str) -> PyResult<()> {
    if let Some(cb) = cb {
        if !cb.bind(py).is_callable() {
            return Err(PyTypeError::new_err(format!("{what} must be callable")));
        }
    }
    Ok(())
}

/// Build runner options from the constructor's arguments.
#[allow(clippy::too_many_arguments)]
fn options(
    tokenizer_path: Option<PathBuf>,
    data_path: Option<PathBuf>,
    temperature: f32,
    load_mode: Option<&Bound<'_, PyAny>>,
    method_name: String,
    threads: usize,
    context_len: Option<usize>,
    allow_long_context: bool,
) -> PyResult<RunnerOptions> {
    if !(temperature == -1.0 || (temperature.is_finite() && temperature >= 0.0)) {
        return Err(PyValueError::new_err(format!(
            "temperature must be -1 (use each GenerationConfig's) or >= 0, got {temperature}"
        )));
    }
    Ok(RunnerOptions {
        tokenizer_path,
        data_path,
        temperature,
        method_name,
        load_mode: load_mode_arg(load_mode)?,
        threads,
        context_len,
        allow_long_context,
        ..Default::default()
    })
}

impl PyTextLLMRunner {
    fn build(py: Python<'_>, model_path: PathBuf, opts: RunnerOptions) -> PyResult<Self> {
        let path = model_path.clone();
        let built = py.detach(move || lmrun::create_text_llm_runner_with(&path, &opts));
        let runner = built.map_err(|e| to_py_load(py, e))?;
        Ok(PyTextLLMRunner {
            stop: runner.stop_handle(),
            shared: Arc::new(Shared {
                runner: Mutex::new(runner),
                inside: Mutex::new(Vec::new()),
            }),
            model_path,
        })
    }

    /// Run `f` on the runner with the GIL released. Refuses a call from inside one of this
    /// runner's own callbacks (it would wait for itself).
    fn with_runner<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut TextLLMRunner) -> R + Send,
    ) -> PyResult<R> {
        if self.shared.busy_here() {
            return Err(busy());
        }
        let me = std::thread::current().id();
        let shared = &self.shared;
        Ok(py.detach(|| {
            let mut guard = shared.lock_runner();
            shared.enter(me);
            let r = f(&mut guard);
            shared.leave(me);
            r
        }))
    }

    /// Generate on a worker thread while this thread waits without the GIL, running Python's
    /// signal handlers every [`SIGNAL_POLL`] when it is the main thread. A `KeyboardInterrupt`
    /// (or any exception a signal handler raises) stops the generation and is raised once the
    /// runner has stopped.
    fn generate_inner(
        &self,
        py: Python<'_>,
        prompt: &str,
        cfg: &GenerationConfig,
        token_callback: Option<Py<PyAny>>,
        stats_callback: Option<Py<PyAny>>,
    ) -> PyResult<lmrun::Generation> {
        check_callable(py, &token_callback, "token_callback")?;
        check_callable(py, &stats_callback, "stats_callback")?;
        let main = on_main_thread(py);
        let cbs = Mutex::new(Callbacks {
            token: token_callback,
            stats: stats_callback,
            error: None,
            stop: self.stop.clone(),
        });
        let stop = self.stop.clone();
        let result = self.with_runner(py, |runner| {
            std::thread::scope(|s| {
                let (done_tx, done_rx) = mpsc::channel::<()>();
                let cbs = &cbs;
                let shared = &self.shared;
                let worker = s.spawn(move || {
                    let id = std::thread::current().id();
                    shared.enter(id);
                    let lock = || cbs.lock().unwrap_or_else(|p| p.into_inner());
                    let r = runner.generate(
                        prompt,
                        cfg,
                        &mut |piece| lock().on_token(piece),
                        &mut |st| lock().on_stats(st),
                    );
                    shared.leave(id);
                    let _ = done_tx.send(());
                    r
                });
                let mut interrupt: Option<PyErr> = None;
                loop {
                    match done_rx.recv_timeout(SIGNAL_POLL) {
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => {
                            if main && interrupt.is_none() {
                                if let Err(e) = Python::attach(|py| py.check_signals()) {
                                    interrupt = Some(e);
                                    stop.stop();
                                }
                            }
                        }
                    }
                }
                (worker.join(), interrupt)
            })
        })?;
        let (joined, interrupt) = result;
        if let Some(e) = interrupt {
            return Err(e);
        }
        if let Some(e) = cbs.into_inner().unwrap_or_else(|p| p.into_inner()).error {
            return Err(e);
        }
        match joined {
            Ok(r) => r.map_err(|e| to_py(py, e)),
            Err(_) => Err(PyRuntimeError::new_err(
                "lmrun: the generation thread panicked (a bug; please report it)",
            )),
        }
    }

    /// The prompt and config of a chat call: `messages` rendered with `tools`, the runner
    /// reset (a chat call starts from an empty context).
    fn chat_prompt(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyList>,
        config: Option<PyGenerationConfig>,
        tools: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<(String, GenerationConfig)> {
        let msgs = messages_arg(messages)?;
        let tools = tools_arg(tools)?;
        let prompt = self
            .with_runner(py, |r| {
                let p = r
                    .chat_template()
                    .render_with_tools(&msgs, true, tools.as_ref());
                if p.is_ok() {
                    r.reset();
                }
                p
            })?
            .map_err(|e| to_py(py, e))?;
        let mut cfg = PyGenerationConfig::with_overrides(py, config.as_ref(), false, options)?;
        cfg.echo = false;
        cfg.parse_special = true;
        Ok((prompt, cfg))
    }

    /// A generation as the dict `generate_detailed` returns; with `chat` = Some(tools), the
    /// chat fields too (tool calls parsed only when tools were given).
    fn detailed<'py>(
        &self,
        py: Python<'py>,
        g: lmrun::Generation,
        chat: Option<bool>,
    ) -> PyResult<Bound<'py, PyDict>> {
        use serde_json::json;
        let names: Vec<(String, Vec<(u32, String)>)> = self.with_runner(py, |r| {
            let tok = r.tokenizer();
            let name = |id: u32| {
                tok.token_bytes(id, true)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            };
            g.logprobs
                .iter()
                .map(|lp| {
                    (
                        name(lp.id),
                        lp.top.iter().map(|&(id, _)| (id, name(id))).collect(),
                    )
                })
                .collect()
        })?;
        let lp = |v: f32| if v.is_finite() { json!(v) } else { json!(null) };
        let logprobs: Vec<serde_json::Value> = g
            .logprobs
            .iter()
            .zip(&names)
            .map(|(t, (text, tops))| {
                let top: Vec<serde_json::Value> = t
                    .top
                    .iter()
                    .zip(tops)
                    .map(|(&(id, v), (_, name))| json!({"id": id, "token": name, "logprob": lp(v)}))
                    .collect();
                json!({"id": t.id, "token": text, "logprob": lp(t.logprob), "top_logprobs": top})
            })
            .collect();
        let mut v = json!({
            "text": g.text,
            "token_ids": g.generated_token_ids,
            "stop_reason": format!("{:?}", g.stop_reason).to_lowercase(),
            "logprobs": logprobs,
        });
        if let Some(tools) = chat {
            let p = if tools {
                lmrun::tools::parse_answer(&g.text)
            } else {
                let (reasoning, content) = lmrun::tools::split_reasoning(&g.text);
                lmrun::tools::ParsedAnswer {
                    reasoning,
                    content,
                    tool_calls: Vec::new(),
                }
            };
            v["content"] = json!(p.content);
            v["reasoning"] = json!(p.reasoning);
            v["tool_calls"] = p
                .tool_calls
                .iter()
                .map(|c| json!({"name": c.name, "arguments": c.arguments}))
                .collect();
        }
        let d = crate::types::json_to_py(py, &v)?.cast_into::<PyDict>()?;
        d.set_item("stats", PyStats { inner: g.stats })?;
        Ok(d)
    }
}

/// The `tools` argument: None, or OpenAI's tools list (checked).
fn tools_arg(tools: Option<&Bound<'_, PyAny>>) -> PyResult<Option<serde_json::Value>> {
    let Some(t) = tools.filter(|t| !t.is_none()) else {
        return Ok(None);
    };
    let v = py_to_json(t).map_err(|e| PyValueError::new_err(format!("tools: {e}")))?;
    lmrun::tools::tool_names(&v).map_err(PyValueError::new_err)?;
    Ok(Some(v))
}

#[pymethods]
impl PyTextLLMRunner {
    /// Load `model_path` (GGUF, or an ExecuTorch `.pte` with `tokenizer_path` and an optional
    /// `.ptd` `data_path`). `temperature` -1 uses each GenerationConfig's; `load_mode` defaults
    /// to `LoadMode.MmapUseMlockIgnoreErrors`.
    #[new]
    #[pyo3(signature = (model_path, tokenizer_path=None, data_path=None, temperature=-1.0,
        load_mode=None, *, method_name="forward".to_string(), threads=0, context_len=None,
        allow_long_context=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model_path: PathBuf,
        tokenizer_path: Option<PathBuf>,
        data_path: Option<PathBuf>,
        temperature: f32,
        load_mode: Option<&Bound<'_, PyAny>>,
        method_name: String,
        threads: usize,
        context_len: Option<usize>,
        allow_long_context: bool,
    ) -> PyResult<Self> {
        let opts = options(
            tokenizer_path,
            data_path,
            temperature,
            load_mode,
            method_name,
            threads,
            context_len,
            allow_long_context,
        )?;
        Self::build(py, model_path, opts)
    }

    /// Generate text after `prompt`, streaming each piece (whole UTF-8) to `token_callback` and
    /// the final `Stats` to `stats_callback`. Returns None, as ExecuTorch's does.
    #[pyo3(signature = (prompt, config=None, token_callback=None, stats_callback=None))]
    fn generate(
        &self,
        py: Python<'_>,
        prompt: &str,
        config: Option<PyGenerationConfig>,
        token_callback: Option<Py<PyAny>>,
        stats_callback: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let cfg = config.unwrap_or_default().to_rust()?;
        self.generate_inner(py, prompt, &cfg, token_callback, stats_callback)?;
        Ok(())
    }

    /// Generate and return the generated text (not the prompt). Options are
    /// `GenerationConfig` fields as keywords, over `config` when given.
    #[pyo3(signature = (prompt, config=None, token_callback=None, **options))]
    fn generate_text(
        &self,
        py: Python<'_>,
        prompt: &str,
        config: Option<PyGenerationConfig>,
        token_callback: Option<Py<PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<String> {
        let mut cfg = PyGenerationConfig::with_overrides(py, config.as_ref(), false, options)?;
        cfg.echo = false;
        Ok(self
            .generate_inner(py, prompt, &cfg, token_callback, None)?
            .text)
    }

    /// Generate and return `(text, generated_token_ids, stats)`: the text, every generated id,
    /// and the call's Stats. Options as in `generate_text`.
    #[pyo3(signature = (prompt, config=None, **options))]
    fn generate_full(
        &self,
        py: Python<'_>,
        prompt: &str,
        config: Option<PyGenerationConfig>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<(String, Vec<u32>, PyStats)> {
        let mut cfg = PyGenerationConfig::with_overrides(py, config.as_ref(), false, options)?;
        cfg.echo = false;
        let g = self.generate_inner(py, prompt, &cfg, None, None)?;
        Ok((g.text, g.generated_token_ids, PyStats { inner: g.stats }))
    }

    /// Generate and return a dict: `text`, `token_ids`, `stop_reason` ("eos", "maxtokens",
    /// "stopped", "stopstring", "grammar"), `stats` (a Stats) and, with `n_probs` > 0,
    /// `logprobs`: per generated token `{"id", "token", "logprob", "top_logprobs": [{"id",
    /// "token", "logprob"}, ...]}` (natural logs, after logit bias and penalties, at
    /// temperature 1). Options as in `generate_text`.
    #[pyo3(signature = (prompt, config=None, **options))]
    fn generate_detailed<'py>(
        &self,
        py: Python<'py>,
        prompt: &str,
        config: Option<PyGenerationConfig>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut cfg = PyGenerationConfig::with_overrides(py, config.as_ref(), false, options)?;
        cfg.echo = false;
        let g = self.generate_inner(py, prompt, &cfg, None, None)?;
        self.detailed(py, g, None)
    }

    /// An iterator over the generated pieces: `for piece in runner.stream(prompt, ...)`.
    /// Breaking out of the loop (or dropping the iterator) stops the generation.
    #[pyo3(signature = (prompt, config=None, **options))]
    fn stream(
        &self,
        py: Python<'_>,
        prompt: String,
        config: Option<PyGenerationConfig>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<TokenStream> {
        let mut cfg = PyGenerationConfig::with_overrides(py, config.as_ref(), false, options)?;
        cfg.echo = false;
        if self.shared.busy_here() {
            return Err(busy());
        }
        let (tx, rx) = mpsc::channel::<Item>();
        let shared = self.shared.clone();
        let worker = std::thread::Builder::new()
            .name("lmrun-stream".into())
            .spawn(move || {
                let mut runner = shared.lock_runner();
                let piece_tx = tx.clone();
                let r = runner.generate(
                    &prompt,
                    &cfg,
                    &mut |p| {
                        let _ = piece_tx.send(Item::Piece(p.to_string()));
                    },
                    &mut |_| {},
                );
                let _ = tx.send(Item::End(r.map(|_| ())));
            })
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
        Ok(TokenStream {
            rx: Mutex::new(Some(rx)),
            worker: Mutex::new(Some(worker)),
            stop: self.stop.clone(),
            main: on_main_thread(py),
        })
    }

    /// Chat: render `messages` (a list of `{"role": ..., "content": ...}` dicts; assistant
    /// messages may carry OpenAI `tool_calls`, `tool` messages `tool_call_id` and `name`) with
    /// the model's chat template and `tools` (OpenAI's tools list), start from an empty
    /// context, and return the assistant's reply.
    #[pyo3(signature = (messages, config=None, token_callback=None, tools=None, **options))]
    fn chat(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyList>,
        config: Option<PyGenerationConfig>,
        token_callback: Option<Py<PyAny>>,
        tools: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<String> {
        let (prompt, cfg) = self.chat_prompt(py, messages, config, tools, options)?;
        Ok(self
            .generate_inner(py, &prompt, &cfg, token_callback, None)?
            .text)
    }

    /// Like `chat`, returning a dict: `content` (the answer without reasoning and tool calls),
    /// `reasoning` (a `<think>` block's text, or None), `tool_calls` (`[{"name", "arguments"}]`
    /// parsed from the answer when `tools` were given), `text` (the raw answer), and what
    /// `generate_detailed` returns besides.
    #[pyo3(signature = (messages, config=None, tools=None, **options))]
    fn chat_detailed<'py>(
        &self,
        py: Python<'py>,
        messages: &Bound<'py, PyList>,
        config: Option<PyGenerationConfig>,
        tools: Option<&Bound<'py, PyAny>>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let with_tools = tools.is_some_and(|t| !t.is_none());
        let (prompt, cfg) = self.chat_prompt(py, messages, config, tools, options)?;
        let g = self.generate_inner(py, &prompt, &cfg, None, None)?;
        self.detailed(py, g, Some(with_tools))
    }

    /// The text `chat` would feed the model for `messages`: the model's chat template (or the
    /// built-in format for its architecture) rendered, ending where the assistant's answer
    /// begins when `add_generation_prompt`.
    #[pyo3(signature = (messages, add_generation_prompt=true, tools=None))]
    fn apply_chat_template(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyList>,
        add_generation_prompt: bool,
        tools: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let msgs = messages_arg(messages)?;
        let tools = tools_arg(tools)?;
        self.with_runner(py, |r| {
            r.chat_template()
                .render_with_tools(&msgs, add_generation_prompt, tools.as_ref())
        })?
        .map_err(|e| to_py(py, e))
    }

    /// Feed `prompt` into the KV cache without generating.
    #[pyo3(signature = (prompt, config=None))]
    fn prefill(
        &self,
        py: Python<'_>,
        prompt: &str,
        config: Option<PyGenerationConfig>,
    ) -> PyResult<()> {
        let cfg = config.unwrap_or_default().to_rust()?;
        self.with_runner(py, |r| r.prefill(prompt, &cfg))?
            .map_err(|e| to_py(py, e))
    }

    /// A warm-up generation of `max_new_tokens` tokens, then `reset()`.
    #[pyo3(signature = (prompt, max_new_tokens=16))]
    fn warmup(&self, py: Python<'_>, prompt: &str, max_new_tokens: i64) -> PyResult<()> {
        self.with_runner(py, |r| r.warmup(prompt, max_new_tokens))?
            .map_err(|e| to_py(py, e))
    }

    /// Stop the current generation after the token being produced (or during a prompt's
    /// prefill). Safe from any thread and from inside a callback.
    fn stop(&self) {
        self.stop.stop();
    }

    /// Forget the conversation: the next prompt starts at position 0.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.with_runner(py, |r| r.reset())
    }

    /// Load the forward method (the model itself was loaded by the constructor).
    fn load(&self, py: Python<'_>) -> PyResult<()> {
        self.with_runner(py, |r| r.load())?
            .map_err(|e| to_py(py, e))
    }

    /// Whether the forward method is loaded.
    fn is_loaded(&self, py: Python<'_>) -> PyResult<bool> {
        self.with_runner(py, |r| r.is_loaded())
    }

    /// The tokenizer's vocabulary size.
    fn get_vocab_size(&self, py: Python<'_>) -> PyResult<usize> {
        self.with_runner(py, |r| r.tokenizer().vocab_size())
    }

    /// Token ids of `text`; `add_bos=None` follows the model's rule.
    #[pyo3(signature = (text, add_bos=None, parse_special=true))]
    fn tokenize(
        &self,
        py: Python<'_>,
        text: &str,
        add_bos: Option<bool>,
        parse_special: bool,
    ) -> PyResult<Vec<u32>> {
        self.with_runner(py, |r| {
            let tok = r.tokenizer();
            encode(tok, text, add_bos, parse_special)
        })?
        .map_err(|e| to_py(py, e))
    }

    /// The text of `ids` (special tokens skipped).
    fn detokenize(&self, py: Python<'_>, ids: Vec<u32>) -> PyResult<String> {
        self.with_runner(py, |r| {
            let tok = r.tokenizer();
            check_ids(tok, &ids)?;
            tok.decode(&ids).map_err(RunnerError::from)
        })?
        .map_err(|e| to_py(py, e))
    }

    /// The model's metadata (`get_max_seq_len`, `get_max_context_len`, ...).
    #[getter]
    fn metadata(&self, py: Python<'_>) -> PyResult<std::collections::BTreeMap<String, i64>> {
        self.with_runner(py, |r| r.metadata().clone())
    }

    /// The ids that end generation.
    #[getter]
    fn eos_ids(&self, py: Python<'_>) -> PyResult<Vec<u32>> {
        self.with_runner(py, |r| r.eos_ids().iter().copied().collect())
    }

    /// The next free position in the KV cache.
    #[getter]
    fn position(&self, py: Python<'_>) -> PyResult<usize> {
        self.with_runner(py, |r| r.position())
    }

    /// The KV cache's capacity in tokens.
    #[getter]
    fn max_context_len(&self, py: Python<'_>) -> PyResult<usize> {
        self.with_runner(py, |r| r.max_context_len())
    }

    /// The stats of the last call.
    #[getter]
    fn stats(&self, py: Python<'_>) -> PyResult<PyStats> {
        self.with_runner(py, |r| PyStats {
            inner: r.stats().clone(),
        })
    }

    /// What loading the model did: mode requested, mode in effect, mlock outcome and errno.
    #[getter]
    fn load_report(&self, py: Python<'_>) -> PyResult<PyLoadReport> {
        self.with_runner(py, |r| PyLoadReport {
            inner: r.stats().load.clone(),
        })
    }

    /// The load mode that was asked for.
    #[getter]
    fn load_mode(&self, py: Python<'_>) -> PyResult<Option<PyLoadMode>> {
        self.with_runner(py, |r| r.stats().load.mode.map(PyLoadMode::from))
    }

    /// The model file.
    #[getter]
    fn model_path(&self) -> PathBuf {
        self.model_path.clone()
    }

    fn __repr__(&self) -> String {
        format!("TextLLMRunner({:?})", self.model_path.display().to_string())
    }
}

/// Chat messages from a list of `{"role": str, "content": str}` dicts.
fn messages_arg(messages: &Bound<'_, PyList>) -> PyResult<Vec<Message>> {
    let mut msgs = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let get = |k: &str| -> PyResult<String> {
            m.get_item(k)
                .and_then(|v| v.extract::<String>())
                .map_err(|_| {
                    PyValueError::new_err(format!(
                        "messages[{i}] must be a dict with string 'role' and 'content'"
                    ))
                })
        };
        let role = get("role")?;
        // An assistant message that only calls tools may have content None.
        let has_calls = m.get_item("tool_calls").is_ok_and(|v| !v.is_none());
        let content = match m.get_item("content") {
            Ok(v) if v.is_none() && has_calls => String::new(),
            _ => get("content")?,
        };
        let mut msg = Message::new(&role, &content);
        let opt = |k: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
            match m.get_item(k) {
                Ok(v) if !v.is_none() => Ok(Some(v)),
                _ => Ok(None),
            }
        };
        if let Some(v) = opt("tool_calls")? {
            let calls = py_to_json(&v)
                .map_err(|e| PyValueError::new_err(format!("messages[{i}].tool_calls: {e}")))?;
            msg.tool_calls =
                Some(template_tool_calls(calls).map_err(|e| {
                    PyValueError::new_err(format!("messages[{i}].tool_calls: {e}"))
                })?);
        }
        for (k, slot) in [
            ("tool_call_id", &mut msg.tool_call_id),
            ("name", &mut msg.name),
        ] {
            if let Some(v) = opt(k)? {
                *slot = Some(v.extract::<String>().map_err(|_| {
                    PyValueError::new_err(format!("messages[{i}].{k} must be a string"))
                })?);
            }
        }
        msgs.push(msg);
    }
    if msgs.is_empty() {
        return Err(PyValueError::new_err("messages is empty"));
    }
    Ok(msgs)
}

/// Encode with the model's BOS rule unless `add_bos` says otherwise.
pub fn encode(
    tok: &dyn lmrun_tokenizers::Tokenizer,
    text: &str,
    add_bos: Option<bool>,
    parse_special: bool,
) -> Result<Vec<u32>, RunnerError> {
    let rule = tok.default_options(parse_special);
    let opts = EncodeOptions {
        num_bos: match add_bos {
            None => rule.num_bos,
            Some(b) => usize::from(b && tok.bos_id().is_some()),
        },
        num_eos: rule.num_eos,
        parse_special,
    };
    Ok(tok.encode_with(text, &opts)?)
}

/// An id outside the vocabulary is a bad argument, not a crash.
pub fn check_ids(tok: &dyn lmrun_tokenizers::Tokenizer, ids: &[u32]) -> Result<(), RunnerError> {
    let n = tok.vocab_size();
    match ids.iter().find(|&&i| i as usize >= n) {
        Some(bad) => Err(RunnerError::InvalidArgument(format!(
            "token id {bad} is outside the vocabulary of {n} tokens"
        ))),
        None => Ok(()),
    }
}

/// What the stream's worker sends.
enum Item {
    Piece(String),
    End(Result<(), RunnerError>),
}

/// The iterator `TextLLMRunner.stream` returns.
#[pyclass(module = "lmrun", name = "TokenStream")]
pub struct TokenStream {
    rx: Mutex<Option<Receiver<Item>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    stop: StopHandle,
    main: bool,
}

impl TokenStream {
    /// Stop the worker (if still running) and wait for it, without the GIL.
    fn finish(&self, py: Python<'_>) {
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = worker {
            if !w.is_finished() {
                self.stop.stop();
            }
            py.detach(|| {
                let _ = w.join();
            });
        }
    }
}

#[pymethods]
impl TokenStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        loop {
            let got = py.detach(|| {
                let guard = self.rx.lock().unwrap_or_else(|p| p.into_inner());
                guard.as_ref().map(|rx| rx.recv_timeout(SIGNAL_POLL))
            });
            let Some(got) = got else {
                return Ok(None);
            };
            match got {
                Ok(Item::Piece(p)) => return Ok(Some(p)),
                Ok(Item::End(r)) => {
                    self.finish(py);
                    return r.map(|_| None).map_err(|e| to_py(py, e));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish(py);
                    return Ok(None);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.main {
                        if let Err(e) = py.check_signals() {
                            self.finish(py);
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Stop the generation and wait for it to end.
    fn close(&self, py: Python<'_>) {
        self.finish(py);
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.finish(py);
        false
    }
}

impl Drop for TokenStream {
    fn drop(&mut self) {
        self.stop_on_drop();
    }
}

impl TokenStream {
    fn stop_on_drop(&mut self) {
        let worker = self
            .worker
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(w) = worker {
            if !w.is_finished() {
                self.stop.stop();
            }
            // The worker never needs the GIL, so joining here (with or without it) ends.
            let _ = w.join();
        }
    }
}

/// ExecuTorch's `create_text_llm_runner(model_path, tokenizer, data_path, temperature,
/// method_name, load_mode)`, with the tokenizer given as a path (None = the model's own).
#[pyfunction]
#[pyo3(signature = (model_path, tokenizer_path=None, data_path=None, temperature=-1.0,
    method_name="forward".to_string(), load_mode=None))]
pub fn create_text_llm_runner(
    py: Python<'_>,
    model_path: PathBuf,
    tokenizer_path: Option<PathBuf>,
    data_path: Option<PathBuf>,
    temperature: f32,
    method_name: String,
    load_mode: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyTextLLMRunner> {
    let opts = options(
        tokenizer_path,
        data_path,
        temperature,
        load_mode,
        method_name,
        0,
        None,
        false,
    )?;
    PyTextLLMRunner::build(py, model_path, opts)
}

/// A Python value (dicts, lists, strings, numbers, bools, None) as JSON, through Python's own
/// `json.dumps` (so anything it cannot encode is an error naming the type).
pub fn py_to_json(v: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let text: String = v
        .py()
        .import("json")?
        .call_method1("dumps", (v,))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Tool calls as templates read them: OpenAI's `[{"type": "function", "function": {"name",
/// "arguments"}}]` with `arguments` given as a JSON string turned into the object it encodes.
fn template_tool_calls(calls: serde_json::Value) -> Result<serde_json::Value, String> {
    let serde_json::Value::Array(mut items) = calls else {
        return Err("must be a list of tool calls".into());
    };
    for (j, c) in items.iter_mut().enumerate() {
        let Some(f) = c.get_mut("function").filter(|f| f.is_object()) else {
            return Err(format!(
                "[{j}] needs a 'function' dict with 'name' and 'arguments'"
            ));
        };
        if let Some(serde_json::Value::String(a)) = f.get("arguments") {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(a) {
                f["arguments"] = v;
            }
        }
    }
    Ok(serde_json::Value::Array(items))
}
