//! The decoder: a model built from a GGUF file (architecture spec, hyperparameters, weight
//! views, KV cache, thread pool, buffers) and its forward pass, which is short because the work
//! lives in shared blocks (`blocks`: embeddings, attention, feed-forward, output) that read the
//! optional pieces (biases, Q/K norms, post-norms, sliding windows, embedding scale,
//! soft-capping) from the [`ArchSpec`] and [`ModelConfig`]. Every buffer is allocated when the
//! model is built or grown for a longer chunk; decoding a token allocates nothing. A prompt is
//! processed in chunks of up to [`UBATCH`] tokens, each chunk one batched pass (every matmul
//! multiplies the chunk's tokens at once).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lmrun_gguf::GgufFile;
use lmrun_kernels::ThreadPool;

use crate::arch::ArchSpec;
use crate::attention::AttnScratch;
use crate::blocks::{self, Buffers, Pass};
use crate::config::ModelConfig;
use crate::kv::{KvCache, KvDtype};
use crate::weights::ModelWeights;
use crate::ModelError;

/// Largest number of tokens processed in one batched pass; longer inputs are split.
pub const UBATCH: usize = 512;

/// What the runner asks of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOptions {
    /// KV cache capacity in tokens (positions `0..context_len`).
    pub context_len: usize,
    /// KV cache element type.
    pub kv_dtype: KvDtype,
    /// Worker threads; 0 means the kernels' default (physical cores).
    pub n_threads: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            context_len: 2048,
            kv_dtype: KvDtype::default(),
            n_threads: 0,
        }
    }
}

/// A decoder-only transformer ready to run: weights (views into the loaded file), KV cache,
/// activation buffers and a thread pool.
#[derive(Debug)]
pub struct Model {
    spec: &'static ArchSpec,
    cfg: ModelConfig,
    w: ModelWeights,
    kv: KvCache,
    pool: ThreadPool,
    buf: Buffers,
    n_past: usize,
    /// Set by another thread to stop a long `step` between chunks and between blocks.
    cancel: Option<Arc<AtomicBool>>,
}

impl Model {
    /// Builds a model from a loaded GGUF file: architecture from `general.architecture`,
    /// hyperparameters from `<arch>.*`, weights as views of the file's data buffer, and a KV
    /// cache of `opts.context_len` positions.
    pub fn from_gguf(gguf: &GgufFile, opts: &ModelOptions) -> Result<Model, ModelError> {
        let arch = gguf.architecture()?;
        let spec = ArchSpec::find(arch).ok_or_else(|| ModelError::UnknownArchitecture {
            arch: arch.to_string(),
            supported: ArchSpec::supported_list(),
        })?;
        let cfg = ModelConfig::from_gguf(gguf, spec)?;
        let w = ModelWeights::from_gguf(gguf, spec, &cfg)?;
        if opts.context_len == 0 {
            return Err(ModelError::BadOptions(
                "context_len must be at least 1".into(),
            ));
        }
        if opts.context_len > 1 << 24 {
            return Err(ModelError::BadOptions(format!(
                "context_len {} is too large",
                opts.context_len
            )));
        }
        if cfg.n_ctx_train > 0 && opts.context_len > cfg.n_ctx_train {
            log::warn!(
                "context_len {} exceeds the model's training context {}",
                opts.context_len,
                cfg.n_ctx_train
            );
        }
        let n_threads = if opts.n_threads == 0 {
            ThreadPool::default_threads()
        } else {
            opts.n_threads
        };
        let kv_bytes = KvCache::bytes_needed(
            opts.kv_dtype,
            cfg.n_layer,
            opts.context_len,
            cfg.k_dim(),
            cfg.v_dim(),
        );
        if let Some(available) = lmrun_loader::memory_headroom() {
            if kv_bytes > u128::from(available) {
                return Err(ModelError::KvCacheTooLarge {
                    context_len: opts.context_len,
                    bytes: u64::try_from(kv_bytes).unwrap_or(u64::MAX),
                    available,
                });
            }
        }
        let pool = ThreadPool::new(n_threads)?;
        let kv = KvCache::new(
            opts.kv_dtype,
            cfg.n_layer,
            opts.context_len,
            cfg.k_dim(),
            cfg.v_dim(),
        )?;
        let mut buf = Buffers::default();
        buf.ensure(&cfg, 1);
        buf.attn = AttnScratch::new(n_threads, opts.context_len, cfg.head_dim_v);
        buf.logits = vec![0.0; cfg.n_vocab];
        log::debug!(
            "{} model: {} layers, n_embd {}, {} heads ({} kv), head_dim {}, vocab {}, kv cache {} B",
            cfg.arch,
            cfg.n_layer,
            cfg.n_embd,
            cfg.n_head,
            cfg.n_head_kv,
            cfg.head_dim,
            cfg.n_vocab,
            kv.bytes()
        );
        Ok(Model {
            spec,
            cfg,
            w,
            kv,
            pool,
            buf,
            n_past: 0,
            cancel: None,
        })
    }

    /// Give the model a flag that, once set, makes a running [`Model::step`] return
    /// [`ModelError::Cancelled`] at the next chunk or block boundary (tens of milliseconds on a
    /// long prefill). The flag is only read; clearing it is the owner's business.
    pub fn set_cancel_flag(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.cancel = flag;
    }

    /// The hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The architecture description.
    pub fn spec(&self) -> &'static ArchSpec {
        self.spec
    }

    /// KV cache capacity in tokens.
    pub fn context_len(&self) -> usize {
        self.kv.capacity()
    }

    /// Bytes held by the KV cache.
    pub fn kv_cache_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// KV cache element type.
    pub fn kv_dtype(&self) -> KvDtype {
        self.kv.dtype()
    }

    /// Bytes held by the activation buffers, attention scores, logits and the matmuls'
    /// quantized activations: the model's scratch besides the KV cache. It grows to the largest
    /// chunk run so far (up to [`UBATCH`] tokens) and stays.
    pub fn scratch_bytes(&self) -> usize {
        self.buf.heap_bytes()
    }

    /// Bytes of weight matrices read per decoded token.
    pub fn weight_bytes(&self) -> usize {
        self.w.matrix_bytes()
    }

    /// Threads used by the model's pool.
    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// Positions currently held in the KV cache (the next `start_pos` of a continuation).
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// Forgets the KV cache contents (the next step must start at position 0).
    pub fn reset(&mut self) {
        self.n_past = 0;
    }

    /// Runs `tokens` at positions `start_pos..`: a batched prefill for many tokens, one decode
    /// step for one. Returns the logits of the last position (`n_vocab` floats), or of every
    /// position when `all_logits` (`tokens.len() * n_vocab` floats, row-major).
    ///
    /// `start_pos` may be at most [`Model::n_past`] (continuing, or rewinding to recompute);
    /// positions past the context and token ids past the vocabulary are errors.
    pub fn step(
        &mut self,
        tokens: &[u32],
        start_pos: usize,
        all_logits: bool,
    ) -> Result<&[f32], ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        let n_vocab = self.cfg.n_vocab;
        if let Some((index, &token)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= n_vocab)
        {
            return Err(ModelError::TokenOutOfRange {
                token,
                index,
                n_vocab,
            });
        }
        let end = start_pos.saturating_add(tokens.len());
        if end > self.kv.capacity() {
            return Err(ModelError::ContextOverflow {
                start_pos,
                end,
                context_len: self.kv.capacity(),
            });
        }
        if start_pos > self.n_past {
            return Err(ModelError::PositionGap {
                start_pos,
                n_past: self.n_past,
            });
        }
        let n_out = if all_logits { tokens.len() } else { 1 };
        if self.buf.logits.len() < n_out * n_vocab {
            self.buf.logits.resize(n_out * n_vocab, 0.0);
        }
        let mut done = 0;
        for chunk in tokens.chunks(UBATCH) {
            let last = done + chunk.len() == tokens.len();
            let out_off = if all_logits { done } else { 0 };
            if let Err(e) = self.forward(chunk, start_pos + done, all_logits, last, out_off) {
                // Only the finished chunks are valid in the cache now.
                self.n_past = start_pos + done;
                return Err(e);
            }
            done += chunk.len();
            self.n_past = start_pos + done;
        }
        Ok(&self.buf.logits[..n_out * n_vocab])
    }

    /// One batched pass over `tokens` at positions `p0..`: the embeddings, each layer's
    /// attention and feed-forward blocks, and the output block. Writes logits (all rows when
    /// `all`, else the last row when `last`) starting at row `out_row` of the logits buffer.
    fn forward(
        &mut self,
        tokens: &[u32],
        p0: usize,
        all: bool,
        last: bool,
        out_row: usize,
    ) -> Result<(), ModelError> {
        let Model {
            spec,
            cfg,
            w,
            kv,
            pool,
            buf,
            cancel,
            ..
        } = self;
        let cancelled = || cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
        let n = tokens.len();
        let pass = Pass {
            spec,
            cfg,
            pool,
            dots: kv.dots,
            capacity: kv.capacity,
            rope_freqs: w.rope_freqs.as_deref(),
            n,
            p0,
        };
        buf.ensure(cfg, n);
        blocks::embed(&pass, &w.token_embd, tokens, buf)?;
        for (il, lw) in w.layers.iter().enumerate() {
            // A stop request ends a long prefill within one block, not one whole pass.
            if (il == 0 || n > 1) && cancelled() {
                return Err(ModelError::Cancelled);
            }
            blocks::attention(&pass, il, lw, &mut kv.layers[il], buf)?;
            if n > 1 && cancelled() {
                return Err(ModelError::Cancelled);
            }
            blocks::feed_forward(&pass, lw, buf)?;
        }
        let rows = if all {
            Some(0..n)
        } else if last {
            Some(n - 1..n)
        } else {
            None
        };
        match rows {
            Some(rows) => blocks::output(&pass, w, rows, out_row, buf),
            None => Ok(()),
        }
    }
}
