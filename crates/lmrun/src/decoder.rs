//! The seam between the runner and its backends. `TextDecoder` is what ExecuTorch's `Module` is
//! to its runner: named constant methods answering metadata (`get_max_seq_len`, `get_eos_ids`,
//! …), a `forward` method that takes tokens at a position and returns logits, and the load
//! report. The runner knows nothing of GGUF or `.pte`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use lmrun_loader::LoadReport;

use crate::RunnerError;

/// Metadata method names (ExecuTorch's `constants.h`).
pub mod keys {
    /// Whether prefill may run many tokens in one step.
    pub const ENABLE_DYNAMIC_SHAPE: &str = "enable_dynamic_shape";
    /// BOS token id.
    pub const BOS_ID: &str = "get_bos_id";
    /// End-of-sequence token ids.
    pub const EOS_IDS: &str = "get_eos_ids";
    /// Longest sequence one step accepts.
    pub const MAX_SEQ_LEN: &str = "get_max_seq_len";
    /// KV-cache capacity.
    pub const MAX_CONTEXT_LEN: &str = "get_max_context_len";
    /// Vocabulary size.
    pub const VOCAB_SIZE: &str = "get_vocab_size";
    /// Whether the model keeps a KV cache.
    pub const USE_KV_CACHE: &str = "use_kv_cache";
    /// Whether attention uses the SDPA-with-cache op.
    pub const USE_SDPA_WITH_KV_CACHE: &str = "use_sdpa_with_kv_cache";
}

/// A model the runner can drive.
pub trait TextDecoder: Send {
    /// Names of the methods the model has (metadata methods and `forward`).
    fn method_names(&self) -> Vec<String>;

    /// Run a constant (metadata) method; a list-valued one returns several values.
    fn get_metadata(&mut self, name: &str) -> Result<Vec<i64>, RunnerError>;

    /// Prepare `method` for execution (idempotent).
    fn load_method(&mut self, method: &str) -> Result<(), RunnerError>;

    /// Whether `method` is ready.
    fn is_method_loaded(&self, method: &str) -> bool;

    /// Feed `tokens` at positions `start_pos..` through the loaded method and return the logits
    /// of the last position (one row of `vocab_size` scores).
    fn step(&mut self, tokens: &[u32], start_pos: usize) -> Result<&[f32], RunnerError>;

    /// Whether a step may start at `start_pos` (at most the positions fed so far). A decoder
    /// whose caches forget old positions (sliding-window rings) says no to restarts further
    /// back than they remember; the runner then feeds its history again from position 0.
    fn can_restart_at(&self, start_pos: usize) -> bool {
        let _ = start_pos;
        true
    }

    /// Context shift: forget positions `n_keep..n_keep + n_discard` and move the later ones
    /// down (their keys re-rotated). Decoders that cannot say no with
    /// [`RunnerError::InvalidArgument`].
    fn shift(&mut self, n_keep: usize, n_discard: usize) -> Result<(), RunnerError> {
        let _ = (n_keep, n_discard);
        Err(RunnerError::InvalidArgument(
            "this model cannot shift its context (ExecuTorch programs keep their own KV cache)"
                .into(),
        ))
    }

    /// What loading the model did (summed over its loads).
    fn load_report(&self) -> LoadReport;

    /// Give the decoder the runner's stop flag. A decoder that can interrupt a long `step`
    /// (between prompt chunks or layers) returns an error for which
    /// [`RunnerError::is_cancelled`] holds once the flag is set; the default ignores the flag
    /// (the runner still checks it between steps).
    fn set_cancel_flag(&mut self, flag: Arc<AtomicBool>) {
        let _ = flag;
    }

    /// Threads the decoder computes with.
    fn threads(&self) -> usize {
        1
    }

    /// Where the decoder's memory goes (all zero when it cannot say).
    fn memory(&self) -> DecoderMemory {
        DecoderMemory::default()
    }
}

/// The memory a decoder accounts for itself, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderMemory {
    /// Weight tensors (file-backed in the mmap modes, anonymous in `file` mode).
    pub weight_bytes: u64,
    /// The KV cache.
    pub kv_cache_bytes: u64,
    /// The part of `kv_cache_bytes` held by sliding-window layers (rings of
    /// `window + 511` positions when that is shorter than the context).
    pub kv_cache_sliding_bytes: u64,
    /// Activation buffers, attention scores, logits and quantized activations (it grows to the
    /// largest chunk run so far).
    pub scratch_bytes: u64,
}
