//! How lmrun's error values become Python exceptions. A Python user expects the built-in
//! classes where one fits (`FileNotFoundError` for a missing model, `ValueError` for a bad
//! argument or a prompt that does not fit) and one catchable class of the package for the rest;
//! an mlock failure under `MmapUseMlock` is an `lmrun.LoadError` whose `errno` attribute holds
//! the OS error, so a caller can tell a memory-lock limit from a corrupt file. The message is
//! always lmrun's own, which names the file and what was wrong.

use lmrun::RunnerError;
use lmrun_loader::LoadError as RustLoadError;
use pyo3::exceptions::{
    PyFileNotFoundError, PyIsADirectoryError, PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;

pyo3::create_exception!(
    lmrun,
    LmrunError,
    PyRuntimeError,
    "Base class of lmrun's own exceptions (a RuntimeError)."
);
pyo3::create_exception!(
    lmrun,
    LoadError,
    LmrunError,
    "A model, data or tokenizer file could not be loaded: corrupt, truncated, of an unknown \
     format, or (under LoadMode.MmapUseMlock) its pages could not be locked. `errno` holds the \
     OS error number when there is one (mlock failures), else None; `path` the file."
);

/// The loader error inside a runner error, wherever it was wrapped.
fn loader_error(e: &RunnerError) -> Option<&RustLoadError> {
    match e {
        RunnerError::Load(l) => Some(l),
        RunnerError::Gguf(lmrun_gguf::GgufError::Load(l)) => Some(l),
        RunnerError::Pte(lmrun_pte::PteError::Load(l)) => Some(l),
        RunnerError::Model(lmrun_models::ModelError::Gguf(lmrun_gguf::GgufError::Load(l))) => {
            Some(l)
        }
        _ => None,
    }
}

/// An `lmrun.LoadError` with `errno` and `path` attributes.
fn load_error(py: Python<'_>, msg: String, errno: Option<i32>, path: Option<String>) -> PyErr {
    let err = LoadError::new_err(msg);
    let value = err.value(py);
    // Setting attributes on a fresh exception instance cannot fail in practice; if it did, the
    // message still carries the errno.
    let _ = value.setattr("errno", errno);
    let _ = value.setattr("path", path);
    err
}

/// Turn a runner error into the Python exception a user would expect.
pub fn to_py(py: Python<'_>, e: RunnerError) -> PyErr {
    convert(py, e, false)
}

/// Like [`to_py`] for errors raised while building a runner or loading a tokenizer: whatever is
/// not a missing file or a bad argument is a `LoadError` (the file could not be used).
pub fn to_py_load(py: Python<'_>, e: RunnerError) -> PyErr {
    convert(py, e, true)
}

fn convert(py: Python<'_>, e: RunnerError, loading: bool) -> PyErr {
    let msg = e.to_string();
    if let Some(l) = loader_error(&e) {
        return match l {
            RustLoadError::NotFound { .. } => PyFileNotFoundError::new_err((libc::ENOENT, msg)),
            RustLoadError::IsDirectory { .. } => PyIsADirectoryError::new_err((libc::EISDIR, msg)),
            RustLoadError::PermissionDenied { .. } => {
                PyPermissionError::new_err((libc::EACCES, msg))
            }
            RustLoadError::MlockFailed { errno, path, .. } => {
                load_error(py, msg, Some(*errno), Some(path.display().to_string()))
            }
            RustLoadError::MlockExceedsMemory { path, .. } => {
                load_error(py, msg, None, Some(path.display().to_string()))
            }
            _ => load_error(py, msg, None, None),
        };
    }
    match &e {
        RunnerError::Tokenizer(lmrun_tokenizers::TokenizerError::Io { source, .. }) => match source
            .kind()
        {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err((libc::ENOENT, msg)),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err((libc::EACCES, msg)),
            _ => load_error(py, msg, source.raw_os_error(), None),
        },
        RunnerError::EmptyPrompt
        | RunnerError::PromptTooLong { .. }
        | RunnerError::NoRoom { .. }
        | RunnerError::ContextTooLong { .. }
        | RunnerError::InvalidArgument(_) => PyValueError::new_err(msg),
        RunnerError::Gguf(_)
        | RunnerError::Pte(_)
        | RunnerError::UnknownFormat { .. }
        | RunnerError::Tokenizer(_)
        | RunnerError::TokenizerMismatch(_) => load_error(py, msg, None, None),
        _ if loading => load_error(py, msg, None, None),
        _ => LmrunError::new_err(msg),
    }
}
