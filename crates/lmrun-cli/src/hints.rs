//! The CLI's wording of library errors a user can fix with a flag. The library's messages speak
//! of its options (`context_len`, `allow_long_context`); here the same errors name the flag to
//! change and the numbers to use, so every message tells a command-line user what to type.

use lmrun::{ModelError, RunnerError};

use std::path::Path;

use lmrun_loader::fmt_bytes;

/// `e` as the CLI explains it (for `run`; `chat` words a prompt that does not fit itself), for
/// the model at `model` run with `--ctx-size ctx_size` (`None`: the default context).
pub fn runner_error(e: RunnerError, model: &Path, ctx_size: Option<usize>) -> anyhow::Error {
    let ctx_flag = |n: usize| match ctx_size {
        Some(c) => format!("--ctx-size {c}"),
        None => format!("the default context of {n} tokens"),
    };
    let msg = match &e {
        RunnerError::PromptTooLong {
            prompt_tokens,
            context,
            ..
        } => format!(
            "the prompt has {prompt_tokens} tokens but the context holds {context} ({}); use a \
             shorter prompt or a larger --ctx-size (at least {} to generate anything)",
            ctx_flag(*context),
            prompt_tokens + 1
        ),
        RunnerError::ContextTooLong {
            path,
            requested,
            trained,
        } => format!(
            "{}: --ctx-size {requested} is longer than the {trained} tokens the model was \
             trained for (quality degrades past it); use --ctx-size {trained} or less, or add \
             --allow-long-context",
            path.display()
        ),
        RunnerError::NoRoom {
            prompt_tokens,
            seq_len,
        } => format!(
            "no room to generate: the prompt has {prompt_tokens} tokens and --seq-len {seq_len} \
             caps prompt + generated tokens; raise --seq-len (or -1 for the whole context)"
        ),
        RunnerError::Model(ModelError::KvCacheTooLarge {
            context_len,
            bytes,
            available,
        }) => format!(
            "{}: a KV cache for {} needs {} but only {} of memory is available; use a smaller \
             --ctx-size (this model needs about {} per position)",
            model.display(),
            ctx_flag(*context_len),
            fmt_bytes(*bytes),
            fmt_bytes(*available),
            fmt_bytes(bytes / (*context_len).max(1) as u64)
        ),
        _ => return anyhow::Error::new(e),
    };
    anyhow::anyhow!(msg)
}
