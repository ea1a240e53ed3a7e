//! `TextLLMRunner` and `create_text_llm_runner`: ExecuTorch's text LLM runner — load, prefill,
//! decode loop, stop, reset, warm-up, stats — over any [`TextDecoder`]. The model is loaded with
//! [`crate::DEFAULT_LOAD_MODE`] unless the caller picks another mode.
//!
//! Deliberate differences from ExecuTorch (see docs/ARCHITECTURE.md): an empty or too-long
//! prompt is an error value, not an abort; one persistent seedable sampler decides every token,
//! the first one after the prompt included; the library never prints (callbacks receive the
//! text); when the caller leaves `num_bos` unset, the model's own BOS rule applies at the start
//! of the context.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lmrun_loader::{LoadMode, ProcessMemory};
use lmrun_tokenizers::{EncodeOptions, StreamDecoder, Tokenizer};

use crate::decoder::keys;
use crate::metadata::{get_eos_ids, get_llm_metadata};
use crate::sampler::{Sampler, SamplerParams, TokenLogprob};
use crate::stats::{time_in_ms, Stats};
use crate::stop::StopText;
use crate::{backend, ContextOverflow, GenerationConfig, RunnerError, RunnerOptions, TextDecoder};
use lmrun_grammar::{Constraint, Grammar, TokenSet, Vocab};

/// Build a runner with ExecuTorch's argument list. `tokenizer: None` uses the model's own
/// vocabulary (a GGUF's); `load_mode` is usually [`DEFAULT_LOAD_MODE`].
pub fn create_text_llm_runner(
    model_path: &Path,
    tokenizer: Option<Box<dyn Tokenizer>>,
    data_path: Option<&Path>,
    temperature: f32,
    method_name: &str,
    load_mode: LoadMode,
) -> Result<TextLLMRunner, RunnerError> {
    let opts = RunnerOptions {
        data_path: data_path.map(Path::to_path_buf),
        temperature,
        method_name: method_name.to_string(),
        load_mode,
        ..Default::default()
    };
    build(model_path, tokenizer, &opts)
}

/// Build a runner from [`RunnerOptions`] (tokenizer from `opts.tokenizer_path` or the model).
pub fn create_text_llm_runner_with(
    model_path: &Path,
    opts: &RunnerOptions,
) -> Result<TextLLMRunner, RunnerError> {
    let tokenizer = match &opts.tokenizer_path {
        Some(p) => Some(crate::load_tokenizer(p)?),
        None => None,
    };
    build(model_path, tokenizer, opts)
}

fn build(
    model_path: &Path,
    tokenizer: Option<Box<dyn Tokenizer>>,
    opts: &RunnerOptions,
) -> Result<TextLLMRunner, RunnerError> {
    let load_start = time_in_ms();
    let stamps = [Some(model_path), opts.data_path.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(|p| lmrun_loader::FileStamp::of(p).map(|s| (p.to_path_buf(), s)))
        .collect();
    let opened = backend::open(model_path, opts)?;
    let load_end = time_in_ms();
    // Memory once the model is built (weights loaded, KV cache and scratch allocated).
    let mem_after_load = ProcessMemory::read();
    let mut decoder = opened.decoder;
    let (arch, chat_template) = (opened.arch, opened.chat_template);
    let tokenizer = match (tokenizer, opened.tokenizer) {
        (Some(t), _) => {
            backend::check_tokenizer_fits(t.as_ref(), decoder.as_ref(), &opened.vocab_sample)?;
            t
        }
        (None, Some(t)) => t,
        (None, None) => {
            return Err(RunnerError::InvalidArgument(format!(
                "{}: the model carries no vocabulary; pass a tokenizer file",
                model_path.display()
            )))
        }
    };
    let metadata = get_llm_metadata(tokenizer.as_ref(), decoder.as_mut())?;
    let eos_ids = get_eos_ids(tokenizer.as_ref(), decoder.as_mut())?;
    let mut stats = Stats {
        model_load_start_ms: load_start,
        model_load_end_ms: load_end,
        load: decoder.load_report(),
        threads: decoder.threads(),
        rss_after_load_anon_bytes: mem_after_load.rss_anon_bytes,
        rss_after_load_file_bytes: mem_after_load.rss_file_bytes,
        ..Default::default()
    };
    stats.reset();
    let stop = StopHandle::default();
    decoder.set_cancel_flag(stop.0.clone());
    Ok(TextLLMRunner {
        tokenizer,
        decoder,
        metadata,
        eos_ids,
        method_name: opts.method_name.clone(),
        temperature: opts.temperature,
        pos: 0,
        stats,
        stop,
        sampler: Sampler::from_clock(),
        n_probs: 0,
        logprobs: Vec::new(),
        overflow: (ContextOverflow::Error, 0),
        guide: Guide::default(),
        history: Vec::new(),
        stamps,
        arch,
        chat_template,
    })
}

/// Stops a running `generate` from another thread (or a signal handler thread).
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Ask the current generation to stop: after the token being produced, or during a long
    /// prompt at the next chunk or layer boundary of the model.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the decode loop produced.
struct Decoded {
    /// Every id produced (the first one from the prompt's logits included).
    ids: Vec<u32>,
    /// Their text.
    text: String,
    /// Decode steps run (one fewer than the ids).
    steps: i64,
    /// Why it ended.
    reason: StopReason,
}

/// How a prefill ended.
enum Prefilled {
    /// The whole prompt is in the KV cache; the first generated token when one was asked for.
    Done(Option<u32>),
    /// A stop request interrupted it; the position is back where the prompt started.
    Stopped,
    /// The prompt is in the KV cache, but the grammar allows no first token.
    NoToken,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-sequence token was produced.
    Eos,
    /// `max_new_tokens` (or the context) was reached.
    MaxTokens,
    /// `stop()` was called.
    Stopped,
    /// The text reached one of `GenerationConfig::stop` (not included in the text).
    StopString,
    /// The grammar allowed no token (the text so far cannot be continued within it).
    Grammar,
}

/// What one `generate` call produced.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The prompt as token ids (BOS/EOS included).
    pub prompt_token_ids: Vec<u32>,
    /// The generated token ids (the one from the prefill included).
    pub generated_token_ids: Vec<u32>,
    /// The generated text.
    pub text: String,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Each generated token's log-probability and top alternatives, when
    /// `GenerationConfig::n_probs` > 0 (one entry per generated token id).
    pub logprobs: Vec<TokenLogprob>,
    /// The stats of this call.
    pub stats: Stats,
}

/// ExecuTorch's `TextLLMRunner`: a tokenizer, a decoder, metadata, and the position of the next
/// free KV-cache slot, which persists across `generate` calls.
pub struct TextLLMRunner {
    tokenizer: Box<dyn Tokenizer>,
    decoder: Box<dyn TextDecoder>,
    metadata: BTreeMap<String, i64>,
    eos_ids: BTreeSet<u32>,
    method_name: String,
    temperature: f32,
    pos: usize,
    stats: Stats,
    stop: StopHandle,
    sampler: Sampler,
    /// Alternatives reported per generated token (this call's `GenerationConfig::n_probs`).
    n_probs: usize,
    /// This call's per-token log-probabilities (when `n_probs > 0`).
    logprobs: Vec<TokenLogprob>,
    /// This call's context-overflow policy and `n_keep`.
    overflow: (ContextOverflow, usize),
    /// This call's grammar constraint, and the buffers masking applies through.
    guide: Guide,
    /// Tokens in the KV cache (for the repetition penalty).
    history: Vec<u32>,
    /// The model (and data) files as they were when loaded, to notice a change under a mapping.
    stamps: Vec<(PathBuf, lmrun_loader::FileStamp)>,
    /// The model's architecture name (empty when unknown).
    arch: String,
    /// The model's own Jinja chat template, if it carries one.
    chat_template: Option<String>,
}

impl TextLLMRunner {
    /// Assemble a runner from parts (tests use this with fake decoders).
    pub fn from_parts(
        tokenizer: Box<dyn Tokenizer>,
        mut decoder: Box<dyn TextDecoder>,
        method_name: &str,
        temperature: f32,
    ) -> Result<TextLLMRunner, RunnerError> {
        let metadata = get_llm_metadata(tokenizer.as_ref(), decoder.as_mut())?;
        let eos_ids = get_eos_ids(tokenizer.as_ref(), decoder.as_mut())?;
        let stats = Stats {
            load: decoder.load_report(),
            threads: decoder.threads(),
            ..Default::default()
        };
        let stop = StopHandle::default();
        decoder.set_cancel_flag(stop.0.clone());
        Ok(TextLLMRunner {
            tokenizer,
            decoder,
            metadata,
            eos_ids,
            method_name: method_name.to_string(),
            temperature,
            pos: 0,
            stats,
            stop,
            sampler: Sampler::from_clock(),
            n_probs: 0,
            logprobs: Vec::new(),
            overflow: (ContextOverflow::Error, 0),
            guide: Guide::default(),
            history: Vec::new(),
            stamps: Vec::new(),
            arch: String::new(),
            chat_template: None,
        })
    }

    /// Whether the forward method is loaded.
    pub fn is_loaded(&self) -> bool {
        self.decoder.is_method_loaded(&self.method_name)
    }

    /// Load the forward method (idempotent).
    pub fn load(&mut self) -> Result<(), RunnerError> {
        if self.is_loaded() {
            return Ok(());
        }
        self.decoder.load_method(&self.method_name)
    }

    /// The model metadata (`get_max_seq_len`, `get_max_context_len`, …).
    pub fn metadata(&self) -> &BTreeMap<String, i64> {
        &self.metadata
    }

    /// The ids that end generation.
    pub fn eos_ids(&self) -> &BTreeSet<u32> {
        &self.eos_ids
    }

    /// The chat template for this model: its own Jinja template when the file carries one,
    /// else a built-in format chosen by architecture
    /// ([`crate::chat::ChatTemplate::is_model_template`] tells which), with the tokenizer's BOS and EOS
    /// pieces as `bos_token` and `eos_token`.
    pub fn chat_template(&self) -> crate::chat::ChatTemplate {
        let tok = self.tokenizer.as_ref();
        let piece = |id: Option<u32>| id.and_then(|i| tok.piece(i)).unwrap_or_default();
        crate::chat::ChatTemplate::for_model(
            self.chat_template.as_deref(),
            &self.arch,
            &piece(tok.bos_id()),
            &piece(tok.eos_id()),
        )
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &dyn Tokenizer {
        self.tokenizer.as_ref()
    }

    /// The next free position in the KV cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// KV-cache capacity.
    pub fn max_context_len(&self) -> usize {
        self.metadata
            .get(keys::MAX_CONTEXT_LEN)
            .copied()
            .unwrap_or(128)
            .max(0) as usize
    }

    fn max_seq_len(&self) -> usize {
        let v = self.metadata.get(keys::MAX_SEQ_LEN).copied().unwrap_or(128);
        if v <= 0 {
            128
        } else {
            v as usize
        }
    }

    /// A handle that stops generation from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stop the current generation (same as `stop_handle().stop()`).
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// Forget the conversation: the position goes back to 0 (the KV cache is overwritten as
    /// needed) and the per-call stats are cleared.
    pub fn reset(&mut self) {
        self.stats.reset();
        self.pos = 0;
        self.history.clear();
    }

    /// Files the model was loaded from that were changed in place since (size or modification
    /// time of the same inode), each with what changed, in words. Empty when nothing changed. Under a mapping a changed
    /// file means the weights changed under the model (garbage or, if it shrank, a `SIGBUS`);
    /// the CLI warns at the end of a run when this is not empty.
    pub fn changed_model_files(&self) -> Vec<(PathBuf, String)> {
        self.stamps
            .iter()
            .filter_map(|(p, s)| s.changes(p).map(|c| (p.clone(), c)))
            .collect()
    }

    /// The stats of the last call.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn encode(&self, prompt: &str, config: &GenerationConfig) -> Result<Vec<u32>, RunnerError> {
        let model_rule = self.tokenizer.default_options(config.parse_special);
        let at_start = self.pos == 0;
        let opts = EncodeOptions {
            num_bos: config
                .num_bos
                .unwrap_or(if at_start { model_rule.num_bos } else { 0 }),
            num_eos: config.num_eos.unwrap_or(model_rule.num_eos),
            parse_special: config.parse_special,
        };
        Ok(self.tokenizer.encode_with(prompt, &opts)?)
    }

    /// Feed `prompt` into the KV cache without generating (to rebuild a conversation).
    pub fn prefill(&mut self, prompt: &str, config: &GenerationConfig) -> Result<(), RunnerError> {
        self.load()?;
        if prompt.is_empty() {
            return Err(RunnerError::EmptyPrompt);
        }
        self.stop.take();
        let tokens = self.encode(prompt, config)?;
        self.check_room(tokens.len())?;
        match self.prefill_tokens(&tokens, None)? {
            Prefilled::Stopped => Err(RunnerError::Cancelled),
            Prefilled::Done(_) | Prefilled::NoToken => Ok(()),
        }
    }

    fn check_room(&self, n_prompt: usize) -> Result<usize, RunnerError> {
        let context = self.max_context_len();
        let left = context.saturating_sub(self.pos);
        if n_prompt == 0 {
            return Err(RunnerError::EmptyPrompt);
        }
        if n_prompt >= left {
            return Err(RunnerError::PromptTooLong {
                prompt_tokens: n_prompt,
                left,
                context,
            });
        }
        Ok(left)
    }

    /// Run the prompt through the model in chunks of at most `max_seq_len`. With `params`, the
    /// first generated token is sampled from the last chunk's logits where the decoder left
    /// them (no copy of a vocabulary-sized row) and returned. A stop request between chunks (or
    /// inside the decoder's step) rolls the position back to where the prompt started.
    fn prefill_tokens(
        &mut self,
        tokens: &[u32],
        params: Option<&SamplerParams>,
    ) -> Result<Prefilled, RunnerError> {
        // A static-shape program (no dynamic shapes, with a KV cache) takes one token per step,
        // as ExecuTorch's sequential prefill feeds it.
        let parallel = self
            .metadata
            .get(keys::ENABLE_DYNAMIC_SHAPE)
            .copied()
            .unwrap_or(0)
            != 0
            || self.metadata.get(keys::USE_KV_CACHE).copied().unwrap_or(1) == 0;
        let chunk = if parallel { self.max_seq_len() } else { 1 };
        let n_parts = tokens.len().div_ceil(chunk.max(1));
        if self.pos > 0 && !self.decoder.can_restart_at(self.pos) {
            // A stopped prompt ran the sliding-window caches past what this position needs:
            // feed the conversation so far again (it is still in the history).
            let kept = self.history.get(..self.pos).unwrap_or_default().to_vec();
            for (i, part) in kept.chunks(chunk.max(1)).enumerate() {
                self.decoder.step(part, i * chunk.max(1))?;
            }
        }
        let (pos0, hist0) = (self.pos, self.history.len());
        let mut first = None;
        let mut blocked = false;
        for (i, part) in tokens.chunks(chunk.max(1)).enumerate() {
            if self.stop.is_set() {
                self.rewind(pos0, hist0);
                return Ok(Prefilled::Stopped);
            }
            // Fields borrowed one by one: `logits` lives in the decoder.
            let logits = match self.decoder.step(part, self.pos) {
                Ok(l) => l,
                Err(e) if e.is_cancelled() => {
                    self.rewind(pos0, hist0);
                    return Ok(Prefilled::Stopped);
                }
                Err(e) => return Err(e),
            };
            self.pos += part.len();
            self.history.extend_from_slice(part);
            if let (true, Some(p)) = (i + 1 == n_parts, params) {
                self.stats.on_sampling_begin();
                first = pick(
                    &mut self.sampler,
                    &mut self.guide,
                    logits,
                    &self.history,
                    p,
                    self.n_probs,
                    &mut self.logprobs,
                )?;
                blocked = first.is_none();
                self.stats.on_sampling_end();
            }
        }
        if blocked {
            return Ok(Prefilled::NoToken);
        }
        Ok(Prefilled::Done(first))
    }

    /// A context shift: keep the first `n_keep` tokens (at least the BOS the history starts
    /// with), drop the oldest half of the rest from the decoder's cache and the history.
    /// Returns false when there is nothing to drop.
    fn shift_context(&mut self) -> Result<bool, RunnerError> {
        let bos = self.tokenizer.bos_id();
        let mut keep = self.overflow.1;
        if keep == 0 && bos.is_some() && self.history.first().copied() == bos {
            keep = 1;
        }
        let keep = keep.min(self.pos);
        let discard = (self.pos - keep) / 2;
        if discard == 0 {
            return Ok(false);
        }
        self.decoder.shift(keep, discard)?;
        log::info!(
            "context full at {} tokens: kept the first {keep}, dropped the next {discard}",
            self.pos
        );
        let end = (keep + discard).min(self.history.len());
        self.history.drain(keep.min(end)..end);
        self.pos -= discard;
        Ok(true)
    }

    /// Forget everything fed after position `pos` (history length `hist`).
    fn rewind(&mut self, pos: usize, hist: usize) {
        self.pos = pos;
        self.history.truncate(hist);
    }

    fn sampler_params(&self, config: &GenerationConfig) -> SamplerParams {
        SamplerParams {
            temperature: if self.temperature == -1.0 {
                config.temperature
            } else {
                self.temperature
            },
            top_k: config.top_k,
            top_p: config.top_p,
            min_p: config.min_p,
            repetition_penalty: config.repetition_penalty,
            repetition_window: config.repetition_window,
            presence_penalty: config.presence_penalty,
            frequency_penalty: config.frequency_penalty,
            logit_bias: config.logit_bias.clone(),
            typical_p: config.typical_p,
            mirostat: config.mirostat,
        }
    }

    fn sample(&mut self, logits: &[f32], params: &SamplerParams) -> u32 {
        self.stats.on_sampling_begin();
        let t = self.sampler.sample(logits, &self.history, params);
        self.stats.on_sampling_end();
        t
    }

    /// Generate text after `prompt`. `on_token` receives the prompt (when `config.echo`) and
    /// then each generated piece, always whole UTF-8; `on_stats` receives the stats at the end.
    pub fn generate(
        &mut self,
        prompt: &str,
        config: &GenerationConfig,
        on_token: &mut dyn FnMut(&str),
        on_stats: &mut dyn FnMut(&Stats),
    ) -> Result<Generation, RunnerError> {
        if prompt.is_empty() {
            return Err(RunnerError::EmptyPrompt);
        }
        if !self.is_loaded() {
            // The file was loaded when the runner was created; loading the method extends the
            // load window (ExecuTorch loads both here).
            if self.stats.model_load_start_ms == 0 {
                self.stats.model_load_start_ms = time_in_ms();
            }
            self.load()?;
            self.stats.model_load_end_ms = time_in_ms();
        }
        self.stop.take(); // a stop requested before this call does not cancel it
        self.stats.reset();
        self.stats.inference_start_ms = time_in_ms();
        if let Some(seed) = config.seed {
            self.sampler.reseed(seed);
        }
        let n_vocab = self.tokenizer.vocab_size();
        if let Some(&(id, _)) = config
            .logit_bias
            .iter()
            .find(|(id, _)| *id as usize >= n_vocab)
        {
            return Err(RunnerError::InvalidArgument(format!(
                "logit bias for token {id}, which is outside the vocabulary of {n_vocab} tokens"
            )));
        }
        if let Some(&(id, b)) = config.logit_bias.iter().find(|(_, b)| b.is_nan()) {
            return Err(RunnerError::InvalidArgument(format!(
                "logit bias for token {id} is {b}"
            )));
        }
        self.guide.begin(
            config.grammar.as_deref(),
            self.tokenizer.as_ref(),
            &self.eos_ids,
        )?;
        self.sampler.begin();
        self.n_probs = config.n_probs;
        self.logprobs.clear();
        let params = self.sampler_params(config);

        let prompt_tokens = self.encode(prompt, config)?;
        self.stats.token_encode_end_ms = time_in_ms();
        self.overflow = (config.context_overflow, config.n_keep);
        if config.context_overflow == ContextOverflow::Shift {
            // Make room for the prompt and one new token by shifting, if that is enough.
            let context = self.max_context_len();
            while self.pos > 0 && self.pos + prompt_tokens.len() + 1 > context {
                if !self.shift_context()? {
                    break;
                }
            }
        }
        let left = self.check_room(prompt_tokens.len())?;
        if config.max_new_tokens == 0 {
            return Err(RunnerError::InvalidArgument(
                "max_new_tokens is 0: nothing to generate (ask for at least 1 token, or -1 for \
                 as many as the context holds)"
                    .into(),
            ));
        }
        let max_new = if config.context_overflow == ContextOverflow::Shift {
            // The context no longer bounds the generation: max_new_tokens does, or one
            // context's worth of tokens.
            match config.max_new_tokens {
                -1 => self.max_context_len() as i64,
                n => n,
            }
        } else {
            config.resolve_max_new_tokens(left as i64, prompt_tokens.len() as i64)
        };
        if max_new <= 0 {
            return Err(RunnerError::NoRoom {
                prompt_tokens: prompt_tokens.len(),
                seq_len: config.seq_len,
            });
        }
        log::info!("max_new_tokens resolved to {max_new}");
        if config.echo {
            on_token(prompt);
        }

        let cur = match self.prefill_tokens(&prompt_tokens, Some(&params))? {
            Prefilled::Done(Some(t)) => t,
            // No prompt tokens: an empty row, which samples as token 0.
            Prefilled::Done(None) => self.sample(&[], &params),
            Prefilled::NoToken => {
                self.stats.prompt_eval_end_ms = time_in_ms();
                self.stats.first_token_ms = self.stats.prompt_eval_end_ms;
                self.stats.num_prompt_tokens = prompt_tokens.len() as i64;
                let reason = StopReason::Grammar;
                return Ok(self.finish(
                    prompt_tokens,
                    Vec::new(),
                    String::new(),
                    0,
                    reason,
                    on_stats,
                ));
            }
            Prefilled::Stopped => {
                // Stopped during the prompt: nothing was generated and the conversation is
                // where it was before this call.
                self.stop.take();
                self.stats.prompt_eval_end_ms = time_in_ms();
                self.stats.first_token_ms = self.stats.prompt_eval_end_ms;
                // No prompt token was kept (the position is rolled back), so none is counted.
                self.stats.num_prompt_tokens = 0;
                let no_text = String::new();
                let stopped = StopReason::Stopped;
                return Ok(self.finish(prompt_tokens, Vec::new(), no_text, 0, stopped, on_stats));
            }
        };
        self.stats.prompt_eval_end_ms = time_in_ms();
        self.stats.first_token_ms = self.stats.prompt_eval_end_ms;

        let decoded = self.decode_loop(
            cur,
            max_new,
            config.ignore_eos,
            &params,
            &config.stop,
            on_token,
        )?;
        self.stop.take();
        self.stats.num_prompt_tokens = prompt_tokens.len() as i64;
        let Decoded {
            ids,
            text,
            steps,
            reason,
        } = decoded;
        Ok(self.finish(prompt_tokens, ids, text, steps, reason, on_stats))
    }

    /// The decode loop after the prompt: `first` came from the prompt's logits; each step feeds
    /// the last token, samples the next where the decoder left the logits (no copy of a
    /// vocabulary-sized row) and streams whole UTF-8 pieces to `on_token`, until an end token,
    /// a stop request or `max_new` ids.
    fn decode_loop(
        &mut self,
        first: u32,
        max_new: i64,
        ignore_eos: bool,
        params: &SamplerParams,
        stops: &[String],
        on_token: &mut dyn FnMut(&str),
    ) -> Result<Decoded, RunnerError> {
        // Generated text continues the prompt: never strip its leading space.
        let mut stream = StreamDecoder::new(false);
        let mut text = StopText::new(stops);
        // Returns whether a stop string was completed.
        let mut emit = |tok: &dyn Tokenizer, id: u32, text: &mut StopText| {
            let piece = stream.push(tok, id, false)?;
            let (show, stopped) = text.push(&piece);
            if !show.is_empty() {
                on_token(&show);
            }
            Ok::<bool, RunnerError>(stopped)
        };
        let mut cur = first;
        let mut ids = vec![cur];
        let mut stopped = emit(self.tokenizer.as_ref(), cur, &mut text)?;
        let mut steps = 0i64;
        let reason = loop {
            if stopped {
                break StopReason::StopString;
            }
            if !ignore_eos && self.eos_ids.contains(&cur) {
                break StopReason::Eos;
            }
            if self.stop.is_set() {
                break StopReason::Stopped;
            }
            if ids.len() as i64 >= max_new {
                break StopReason::MaxTokens;
            }
            if self.pos + 1 > self.max_context_len()
                && (self.overflow.0 != ContextOverflow::Shift || !self.shift_context()?)
            {
                break StopReason::MaxTokens;
            }
            let logits = match self.decoder.step(&[cur], self.pos) {
                Ok(l) => l,
                Err(e) if e.is_cancelled() => break StopReason::Stopped,
                Err(e) => return Err(e),
            };
            self.pos += 1;
            self.history.push(cur);
            steps += 1;
            self.stats.on_sampling_begin();
            let next = pick(
                &mut self.sampler,
                &mut self.guide,
                logits,
                &self.history,
                params,
                self.n_probs,
                &mut self.logprobs,
            )?;
            self.stats.on_sampling_end();
            let Some(next) = next else {
                break StopReason::Grammar;
            };
            cur = next;
            ids.push(cur);
            stopped = emit(self.tokenizer.as_ref(), cur, &mut text)?;
        };
        let mut reason = reason;
        if !text.stopped() {
            let (tail, stopped) = text.finish(&stream.finish());
            if !tail.is_empty() {
                on_token(&tail);
            }
            if stopped {
                reason = StopReason::StopString;
            }
        }
        Ok(Decoded {
            ids,
            text: text.text().to_string(),
            steps,
            reason,
        })
    }

    /// Close the stats of a `generate` call, hand them to `on_stats` and build its result.
    fn finish(
        &mut self,
        prompt_token_ids: Vec<u32>,
        generated_token_ids: Vec<u32>,
        text: String,
        decode_steps: i64,
        stop_reason: StopReason,
        on_stats: &mut dyn FnMut(&Stats),
    ) -> Generation {
        self.stats.inference_end_ms = time_in_ms();
        self.stats.num_generated_tokens = generated_token_ids.len() as i64;
        self.stats.num_decode_steps = decode_steps;
        self.stats.load = self.decoder.load_report();
        self.stats.threads = self.decoder.threads();
        self.stats.memory = self.decoder.memory();
        self.stats.isa = lmrun_kernels::Isa::best().name();
        let mem = ProcessMemory::read();
        self.stats.peak_rss_bytes = lmrun_loader::peak_rss_bytes().or(mem.peak_rss_bytes);
        self.stats.rss_anon_bytes = mem.rss_anon_bytes;
        self.stats.rss_file_bytes = mem.rss_file_bytes;
        on_stats(&self.stats);
        Generation {
            prompt_token_ids,
            generated_token_ids,
            text,
            stop_reason,
            logprobs: std::mem::take(&mut self.logprobs),
            stats: self.stats.clone(),
        }
    }

    /// A warm-up run of `max_new_tokens` tokens after `prompt`, then `reset()` whatever happened.
    pub fn warmup(&mut self, prompt: &str, max_new_tokens: i64) -> Result<(), RunnerError> {
        let config = GenerationConfig {
            echo: false,
            max_new_tokens,
            warming: true,
            ..Default::default()
        };
        let r = self.generate(prompt, &config, &mut |_| {}, &mut |_| {});
        self.reset();
        r.map(|_| ())
    }
}

/// A grammar constraint for one generation: the parsed grammar's [`Constraint`] over the
/// model's vocabulary (built once per runner, on first use), and the buffers the mask is
/// applied through.
struct Guide {
    /// The vocabulary as byte strings (token bytes; control tokens empty, EOS ids marked).
    vocab: Option<Arc<Vocab>>,
    constraint: Option<Constraint>,
    mask: TokenSet,
    masked: Vec<f32>,
}

impl Default for Guide {
    fn default() -> Self {
        Guide {
            vocab: None,
            constraint: None,
            mask: TokenSet::new(0),
            masked: Vec::new(),
        }
    }
}

impl Guide {
    /// Start a generation with `grammar` (GBNF text) or none.
    fn begin(
        &mut self,
        grammar: Option<&str>,
        tok: &dyn Tokenizer,
        eos: &BTreeSet<u32>,
    ) -> Result<(), RunnerError> {
        self.constraint = None;
        let Some(text) = grammar else {
            return Ok(());
        };
        let g = Grammar::parse(text)
            .map_err(|e| RunnerError::InvalidArgument(format!("grammar: {e}")))?;
        let vocab = match &self.vocab {
            Some(v) => Arc::clone(v),
            None => {
                let eog: Vec<u32> = eos.iter().copied().collect();
                let v = Arc::new(grammar_vocab(tok, &eog));
                self.vocab = Some(Arc::clone(&v));
                v
            }
        };
        self.constraint = Some(
            Constraint::new(Arc::new(g), vocab)
                .map_err(|e| RunnerError::InvalidArgument(format!("grammar: {e}")))?,
        );
        Ok(())
    }
}

/// A tokenizer's vocabulary as the byte strings a grammar mask walks: each token's decoded
/// bytes, special tokens empty (never allowed), `eog` the end-of-generation ids (allowed where
/// the grammar may end). Built once per model (the server shares one across requests).
pub fn grammar_vocab(tok: &dyn Tokenizer, eog: &[u32]) -> Vocab {
    let n = tok.vocab_size();
    let tokens = (0..n as u32)
        .map(|id| {
            if tok.is_special(id) {
                Vec::new()
            } else {
                tok.token_bytes(id, false)
                    .map(|b| b.into_owned())
                    .unwrap_or_default()
            }
        })
        .collect();
    Vocab::new(tokens, eog)
}

/// Sample the next token from `logits`, through the grammar's mask when there is one (the
/// disallowed tokens' logits set to -inf in a copy), recording its logprobs when `n_probs > 0`.
/// `None` when the grammar allows no token.
#[allow(clippy::too_many_arguments)]
fn pick(
    sampler: &mut Sampler,
    guide: &mut Guide,
    logits: &[f32],
    history: &[u32],
    params: &SamplerParams,
    n_probs: usize,
    logprobs: &mut Vec<TokenLogprob>,
) -> Result<Option<u32>, RunnerError> {
    let logits = match guide.constraint.as_mut() {
        None => logits,
        Some(c) => {
            if c.allowed(&mut guide.mask).is_err() || guide.mask.is_empty() {
                return Ok(None);
            }
            guide.masked.clear();
            guide.masked.resize(logits.len(), f32::NEG_INFINITY);
            for id in guide.mask.iter() {
                if let (Some(m), Some(&l)) =
                    (guide.masked.get_mut(id as usize), logits.get(id as usize))
                {
                    *m = l;
                }
            }
            &guide.masked[..]
        }
    };
    let t = if n_probs > 0 {
        let (t, lp) = sampler.sample_with_logprobs(logits, history, params, n_probs);
        logprobs.push(lp);
        t
    } else {
        sampler.sample(logits, history, params)
    };
    if let Some(c) = guide.constraint.as_mut() {
        if c.accept_token(t).is_err() {
            // The sampler fell back to a token outside the mask (every allowed logit was -inf
            // after penalties): the grammar cannot go on.
            return Ok(None);
        }
    }
    Ok(Some(t))
}
