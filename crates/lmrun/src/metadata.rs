//! `get_llm_metadata` and `get_eos_ids`: the runner's view of a model's constant methods, with
//! ExecuTorch's keys and defaults. One deliberate difference: a failing metadata method is an
//! error value, never an abort.

use std::collections::{BTreeMap, BTreeSet};

use lmrun_tokenizers::Tokenizer;

use crate::decoder::keys;
use crate::{RunnerError, TextDecoder};

/// Metadata keys with ExecuTorch's defaults, used when the model lacks the method.
pub const DEFAULTS: [(&str, i64); 5] = [
    (keys::ENABLE_DYNAMIC_SHAPE, 0),
    (keys::MAX_SEQ_LEN, 128),
    (keys::MAX_CONTEXT_LEN, 128),
    (keys::USE_KV_CACHE, 1),
    (keys::USE_SDPA_WITH_KV_CACHE, 0),
];

/// Read the model's metadata: the five keys of [`DEFAULTS`] (the model's value when it has the
/// method), `get_max_context_len` falling back to `get_max_seq_len`, and `get_bos_id` /
/// `get_vocab_size` taken from the tokenizer (as ExecuTorch does).
pub fn get_llm_metadata(
    tokenizer: &dyn Tokenizer,
    decoder: &mut dyn TextDecoder,
) -> Result<BTreeMap<String, i64>, RunnerError> {
    let names = decoder.method_names();
    if !names.iter().any(|n| n == keys::MAX_SEQ_LEN) {
        return Err(RunnerError::MissingMethod(keys::MAX_SEQ_LEN.to_string()));
    }
    let mut meta = BTreeMap::new();
    for (key, default) in DEFAULTS {
        let value = if names.iter().any(|n| n == key) {
            let v = decoder.get_metadata(key)?;
            *v.first().ok_or_else(|| {
                RunnerError::InvalidArgument(format!("metadata method {key} returned nothing"))
            })?
        } else {
            log::info!("method {key} not found, using the default value {default}");
            default
        };
        log::info!("metadata {key} = {value}");
        meta.insert(key.to_string(), value);
    }
    if !names.iter().any(|n| n == keys::MAX_CONTEXT_LEN) {
        meta.insert(keys::MAX_CONTEXT_LEN.to_string(), meta[keys::MAX_SEQ_LEN]);
    }
    meta.insert(
        keys::BOS_ID.to_string(),
        tokenizer.bos_id().map_or(-1, i64::from),
    );
    meta.insert(keys::VOCAB_SIZE.to_string(), tokenizer.vocab_size() as i64);
    Ok(meta)
}

/// The ids that end generation: the model's `get_eos_ids` when it has that method, else the
/// tokenizer's end-of-generation ids.
pub fn get_eos_ids(
    tokenizer: &dyn Tokenizer,
    decoder: &mut dyn TextDecoder,
) -> Result<BTreeSet<u32>, RunnerError> {
    if decoder.method_names().iter().any(|n| n == keys::EOS_IDS) {
        let ids = decoder.get_metadata(keys::EOS_IDS)?;
        Ok(ids
            .into_iter()
            .filter_map(|v| u32::try_from(v).ok())
            .collect())
    } else {
        Ok(tokenizer.eog_ids().into_iter().collect())
    }
}
