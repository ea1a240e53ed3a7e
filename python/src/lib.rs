//! `lmrun` for Python: ExecuTorch's `executorch.extension.llm.runner` API (`TextLLMRunner`,
//! `GenerationConfig`, `Stats`, `create_text_llm_runner`) over lmrun's Rust runner, so a script
//! written for ExecuTorch runs by changing its import, and runs GGUF models too. The model
//! computes with the GIL released; errors arrive as Python exceptions carrying lmrun's message.

mod errors;
mod runner;
mod types;

use std::path::PathBuf;

use lmrun::backend::{detect_format, gguf_vocab, Format};
use lmrun_tokenizers::{GgufTokenizer, Tokenizer};
use pyo3::prelude::*;

use crate::errors::to_py_load;

/// Token ids of `text` with the vocabulary of `path`: a tokenizer file (tokenizer.json,
/// tokenizer.model, tiktoken, tokenizer.bin) or a GGUF model's own vocabulary (only its header
/// is read). `add_bos=None` follows the tokenizer's rule.
#[pyfunction]
#[pyo3(signature = (path, text, add_bos=None, parse_special=true))]
fn tokenize(
    py: Python<'_>,
    path: PathBuf,
    text: &str,
    add_bos: Option<bool>,
    parse_special: bool,
) -> PyResult<Vec<u32>> {
    let r = py.detach(|| -> Result<Vec<u32>, lmrun::RunnerError> {
        let tok = load_any_tokenizer(&path)?;
        runner::encode(tok.as_ref(), text, add_bos, parse_special)
    });
    r.map_err(|e| to_py_load(py, e))
}

/// The text of `ids` with the vocabulary of `path` (as in `tokenize`).
#[pyfunction]
fn detokenize(py: Python<'_>, path: PathBuf, ids: Vec<u32>) -> PyResult<String> {
    let r = py.detach(|| -> Result<String, lmrun::RunnerError> {
        let tok = load_any_tokenizer(&path)?;
        runner::check_ids(tok.as_ref(), &ids)?;
        Ok(tok.decode(&ids)?)
    });
    r.map_err(|e| to_py_load(py, e))
}

fn load_any_tokenizer(path: &std::path::Path) -> Result<Box<dyn Tokenizer>, lmrun::RunnerError> {
    let is_gguf = path.is_file() && matches!(detect_format(path), Ok(Format::Gguf));
    if is_gguf {
        let g = lmrun_gguf::GgufFile::open(path, lmrun::LoadMode::Mmap)?;
        Ok(Box::new(GgufTokenizer::from_vocab(gguf_vocab(&g)?)?))
    } else {
        lmrun::load_tokenizer(path)
    }
}

/// The kernels' instruction-set level on this CPU (`scalar`, `avx2`, `avx512-vnni`, ...).
#[pyfunction]
fn isa() -> &'static str {
    lmrun_kernels::Isa::best().name()
}

/// The `lmrun._lmrun` extension module (re-exported by the `lmrun` package).
#[pymodule]
fn _lmrun(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<types::PyLoadMode>()?;
    m.add_class::<types::PyGenerationConfig>()?;
    m.add_class::<types::PyStats>()?;
    m.add_class::<types::PyLoadReport>()?;
    m.add_class::<runner::PyTextLLMRunner>()?;
    m.add_class::<runner::TokenStream>()?;
    m.add_function(wrap_pyfunction!(runner::create_text_llm_runner, m)?)?;
    m.add_function(wrap_pyfunction!(tokenize, m)?)?;
    m.add_function(wrap_pyfunction!(detokenize, m)?)?;
    m.add_function(wrap_pyfunction!(isa, m)?)?;
    m.add("LmrunError", py.get_type::<errors::LmrunError>())?;
    m.add("LoadError", py.get_type::<errors::LoadError>())?;
    m.add(
        "DEFAULT_LOAD_MODE",
        types::PyLoadMode::from(lmrun::DEFAULT_LOAD_MODE),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
