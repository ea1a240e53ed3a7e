//! The text LLM runner: `create_text_llm_runner`, `TextLLMRunner`, `GenerationConfig`, the
//! sampler and stats. The default load mode lives here. (The runner lands with issue 7.)
#![forbid(unsafe_code)]

pub use lmrun_loader::LoadMode;

/// The load mode the runner uses when the caller does not choose one (ExecuTorch PR #17613):
/// map the model, try to pin it with `mlock`, and carry on unpinned if pinning fails.
pub const DEFAULT_LOAD_MODE: LoadMode = LoadMode::MmapUseMlockIgnoreErrors;
