//! The two option sets of the runner: [`RunnerOptions`] (how a runner is built: tokenizer, data
//! file, load mode, threads, context) and `GenerationConfig` (how one `generate` call runs:
//! ExecuTorch's fields and defaults, its `resolve_max_new_tokens` rule, and the sampling knobs a
//! llama.cpp user expects — top-k, top-p, min-p, repetition penalty, seed).

use std::path::PathBuf;

use lmrun_loader::{LoadMode, Prefetch};

use crate::DEFAULT_LOAD_MODE;

/// What happens when the KV cache is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContextOverflow {
    /// Fail with `PromptTooLong`, or end the generation with `MaxTokens`.
    #[default]
    Error,
    /// Keep the first `n_keep` tokens, drop the oldest half of the rest (the model re-rotates
    /// the kept keys), and go on. With `max_new_tokens = -1` a generation then stops after one
    /// context's worth of new tokens.
    Shift,
}

/// How one `generate` call runs.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Send the prompt text to the token callback before the generated text.
    pub echo: bool,
    /// Keep generating past end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Most tokens to generate; -1 = as many as the context allows.
    pub max_new_tokens: i64,
    /// This is a warm-up run (nothing printed; the runner resets afterwards).
    pub warming: bool,
    /// Cap on prompt + generated tokens; -1 = the model's context.
    pub seq_len: i64,
    /// Sampling temperature; 0 = greedy (argmax).
    pub temperature: f32,
    /// BOS tokens to put before the prompt; `None` = the model's own rule (a GGUF's
    /// `add_bos_token`).
    pub num_bos: Option<usize>,
    /// EOS tokens to put after the prompt; `None` = the model's own rule.
    pub num_eos: Option<usize>,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0 = off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the most likely one (0 = off).
    pub min_p: f32,
    /// Penalty for tokens seen in the last `repetition_window` tokens (1.0 = off).
    pub repetition_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repetition_window: usize,
    /// Seed for the sampler; `None` seeds from the clock once per runner.
    pub seed: Option<u64>,
    /// Turn control tokens written in the prompt (`<start_of_turn>`, `<|im_start|>`) into single
    /// tokens.
    pub parse_special: bool,
    /// Subtracted from the logit of every token seen in the penalty window (0 = off).
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per occurrence in the penalty window (0 = off).
    pub frequency_penalty: f32,
    /// Added to the logits of these token ids (`f32::NEG_INFINITY` bans a token).
    pub logit_bias: Vec<(u32, f32)>,
    /// Locally typical sampling mass (1.0 = off).
    pub typical_p: f32,
    /// Mirostat v2 `(tau, eta)` (replaces top-k, typical-p, top-p and min-p).
    pub mirostat: Option<(f32, f32)>,
    /// Report each generated token's log-probability and this many top alternatives
    /// ([`crate::Generation::logprobs`]); 0 = none.
    pub n_probs: usize,
    /// What happens when the context fills: an error (ExecuTorch's behaviour, the default), or
    /// a context shift that keeps the first `n_keep` tokens and drops the oldest half of the
    /// rest, so generation and chats go on.
    pub context_overflow: ContextOverflow,
    /// Tokens kept at the start of the context by a shift (0 = just the BOS token, if the
    /// history starts with one).
    pub n_keep: usize,
    /// Constrain the generated text to this GBNF grammar (llama.cpp's format; JSON schemas go
    /// through `lmrun_grammar::json_schema_to_gbnf` first). Only tokens that keep the text a
    /// prefix of the language can be sampled; end-of-generation only where it may end.
    pub grammar: Option<String>,
    /// Stop when the generated text contains one of these; the stop string itself is not
    /// part of the output, and streamed text never shows a prefix of it that is later
    /// withheld.
    pub stop: Vec<String>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            echo: true,
            ignore_eos: false,
            max_new_tokens: -1,
            warming: false,
            seq_len: -1,
            temperature: 0.8,
            num_bos: None,
            num_eos: None,
            top_k: 0,
            top_p: 0.9,
            min_p: 0.0,
            repetition_penalty: 1.0,
            repetition_window: 64,
            seed: None,
            parse_special: true,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            typical_p: 1.0,
            mirostat: None,
            n_probs: 0,
            context_overflow: ContextOverflow::Error,
            n_keep: 0,
            grammar: None,
            stop: Vec::new(),
        }
    }
}

impl GenerationConfig {
    /// How many new tokens may be generated, given the context left and the prompt length
    /// (ExecuTorch's rule, clamped at 0).
    pub fn resolve_max_new_tokens(&self, max_context_len: i64, num_prompt_tokens: i64) -> i64 {
        let room = max_context_len - num_prompt_tokens;
        let n = match (self.seq_len, self.max_new_tokens) {
            (-1, -1) => room,
            (-1, max_new) => max_new.min(room),
            (seq_len, -1) => seq_len.min(max_context_len) - num_prompt_tokens,
            (seq_len, max_new) => (seq_len.min(max_context_len) - num_prompt_tokens).min(max_new),
        };
        n.max(0)
    }
}

/// How `create_text_llm_runner_with` builds a runner. `Default` is exactly ExecuTorch's
/// defaults: no data file, temperature -1 (use the `GenerationConfig`'s), method `forward`,
/// load mode `MmapUseMlockIgnoreErrors`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerOptions {
    /// A tokenizer file or directory; `None` uses the model's own vocabulary (GGUF).
    pub tokenizer_path: Option<PathBuf>,
    /// A `.ptd` data file for a `.pte` program.
    pub data_path: Option<PathBuf>,
    /// Overrides every `GenerationConfig::temperature` unless -1.
    pub temperature: f32,
    /// The method that computes logits.
    pub method_name: String,
    /// How the model file is loaded.
    pub load_mode: LoadMode,
    /// Compute threads (0 = the number of physical cores).
    pub threads: usize,
    /// KV-cache capacity in tokens (`None` = the model's training context, capped at 4096).
    pub context_len: Option<usize>,
    /// Opt-in prefetch of the mapped weights, separate from the load mode (default: none).
    pub prefetch: Prefetch,
    /// Allow a `context_len` above the model's training context (quality degrades past it);
    /// without it such a context is an error.
    pub allow_long_context: bool,
    /// Sliding-window layers keep the whole context (llama.cpp's `--swa-full`) instead of a
    /// ring of window + 511 positions: more memory, but any restart position works without a
    /// replay.
    pub swa_full: bool,
    /// KV cache element type (GGUF models): f16 (default), f32, or q8_0 (about half of f16).
    pub kv_dtype: lmrun_models::KvDtype,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            tokenizer_path: None,
            data_path: None,
            temperature: -1.0,
            method_name: "forward".to_string(),
            load_mode: DEFAULT_LOAD_MODE,
            threads: 0,
            context_len: None,
            prefetch: Prefetch::None,
            allow_long_context: false,
            swa_full: false,
            kv_dtype: lmrun_models::KvDtype::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seq_len: i64, max_new_tokens: i64) -> GenerationConfig {
        GenerationConfig {
            seq_len,
            max_new_tokens,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_executorchs() {
        let c = GenerationConfig::default();
        assert!(c.echo);
        assert!(!c.ignore_eos);
        assert_eq!(c.max_new_tokens, -1);
        assert!(!c.warming);
        assert_eq!(c.seq_len, -1);
        assert_eq!(c.temperature, 0.8);
    }

    #[test]
    fn resolve_max_new_tokens_every_branch() {
        // neither set: the room left
        assert_eq!(cfg(-1, -1).resolve_max_new_tokens(128, 10), 118);
        // max_new only: the smaller of it and the room
        assert_eq!(cfg(-1, 20).resolve_max_new_tokens(128, 10), 20);
        assert_eq!(cfg(-1, 200).resolve_max_new_tokens(128, 10), 118);
        // seq_len only: min(seq_len, ctx) - prompt
        assert_eq!(cfg(50, -1).resolve_max_new_tokens(128, 10), 40);
        assert_eq!(cfg(500, -1).resolve_max_new_tokens(128, 10), 118);
        // both: the smaller of the two budgets
        assert_eq!(cfg(50, 30).resolve_max_new_tokens(128, 10), 30);
        assert_eq!(cfg(50, 60).resolve_max_new_tokens(128, 10), 40);
        // clamped at zero
        assert_eq!(cfg(5, -1).resolve_max_new_tokens(128, 10), 0);
        assert_eq!(cfg(-1, -1).resolve_max_new_tokens(8, 10), 0);
        assert_eq!(cfg(-1, 0).resolve_max_new_tokens(128, 10), 0);
    }
}
