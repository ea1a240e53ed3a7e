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
use lmrun_kernels::ops::{rope_inplace_at, RopeParams};
use lmrun_kernels::ThreadPool;

use crate::arch::ArchSpec;
use crate::attention::AttnScratch;
use crate::blocks::{self, Buffers, Pass, Seg};
use crate::config::ModelConfig;
use crate::kv::{KvCache, KvDtype, LayerRows};
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
    /// Keep the whole context for sliding-window layers too (llama.cpp's `--swa-full`) instead
    /// of a ring of `window + UBATCH - 1` positions: costs memory, allows any rewind.
    pub swa_full: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            context_len: 2048,
            kv_dtype: KvDtype::default(),
            n_threads: 0,
            swa_full: false,
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
    /// One KV cache per sequence slot; slot 0 is the one [`Model::step`] uses.
    kv: Vec<KvCache>,
    pool: ThreadPool,
    buf: Buffers,
    /// Positions held by each slot's cache.
    n_past: Vec<usize>,
    /// Per slot: the lowest position a step may restart at since the last context shift (the
    /// rows before it were moved or dropped).
    floor: Vec<usize>,
    /// The tokens of a multi-sequence pass, gathered (reused between calls).
    batch_tokens: Vec<u32>,
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
        let mut w = ModelWeights::from_gguf(gguf, spec, &cfg)?;
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
        if opts.context_len > cfg.rope.n_ctx_orig && cfg.rope.n_ctx_orig > 0 {
            w.use_long_rope_factors();
        }
        let n_threads = if opts.n_threads == 0 {
            ThreadPool::default_threads()
        } else {
            opts.n_threads
        };
        if opts.kv_dtype == KvDtype::Q8_0
            && (cfg.head_dim % 32 != 0
                || cfg.head_dim_v % 32 != 0
                || cfg.head_dim_v > crate::attention::MAX_HEAD_DIM_V)
        {
            return Err(ModelError::BadOptions(format!(
                "a q8_0 KV cache needs key and value head sizes that are multiples of 32 (at \
                 most {}); this model's are {} and {}: use f16",
                crate::attention::MAX_HEAD_DIM_V,
                cfg.head_dim,
                cfg.head_dim_v
            )));
        }
        let layer_rows = layer_rows(&cfg, opts.context_len, opts.swa_full);
        let kv_bytes = KvCache::bytes_needed(opts.kv_dtype, &layer_rows, cfg.k_dim(), cfg.v_dim());
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
            opts.context_len,
            &layer_rows,
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
            kv: vec![kv],
            pool,
            buf,
            n_past: vec![0],
            floor: vec![0],
            batch_tokens: Vec::new(),
            cancel: None,
        })
    }

    /// Checks that `gguf` is a model lmrun can run — a supported architecture with every tensor
    /// and hyperparameter it needs, of usable shapes and types — without allocating a KV cache
    /// or threads (what `lmrun inspect` reports). Returns the architecture's spec.
    pub fn check(gguf: &GgufFile) -> Result<&'static ArchSpec, ModelError> {
        let arch = gguf.architecture()?;
        let spec = ArchSpec::find(arch).ok_or_else(|| ModelError::UnknownArchitecture {
            arch: arch.to_string(),
            supported: ArchSpec::supported_list(),
        })?;
        let cfg = ModelConfig::from_gguf(gguf, spec)?;
        ModelWeights::from_gguf(gguf, spec, &cfg)?;
        Ok(spec)
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
        self.kv[0].capacity()
    }

    /// Bytes held by the KV cache.
    pub fn kv_cache_bytes(&self) -> usize {
        self.kv.iter().map(KvCache::bytes).sum()
    }

    /// Bytes of the KV cache held by full-context layers and by sliding-window layers (whose
    /// caches are rings of `window + UBATCH - 1` positions when that is shorter than the
    /// context).
    pub fn kv_cache_bytes_by_kind(&self) -> (usize, usize) {
        self.kv
            .iter()
            .map(KvCache::bytes_by_kind)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// How far before [`Model::n_past`] a step may start (`usize::MAX` when every layer keeps
    /// the whole context; sliding-window rings remember only so much).
    pub fn max_rewind(&self) -> usize {
        self.kv[0].max_rewind(self.cfg.sliding_window.unwrap_or(0))
    }

    /// KV cache element type.
    pub fn kv_dtype(&self) -> KvDtype {
        self.kv[0].dtype()
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
        self.n_past[0]
    }

    /// Forgets the KV cache contents of slot 0 (the next step must start at position 0).
    pub fn reset(&mut self) {
        self.n_past[0] = 0;
        self.floor[0] = 0;
    }

    /// Number of sequence slots (KV caches); 1 unless [`Model::set_slots`] added more.
    pub fn n_slots(&self) -> usize {
        self.kv.len()
    }

    /// Give the model `n` sequence slots, each with its own KV cache of the model's context
    /// length, so [`Model::step_multi`] can run several sequences in one pass (a server's
    /// users). New slots start empty; removing slots drops their caches. Fails, keeping the
    /// slots it had, when the caches would not fit in memory.
    pub fn set_slots(&mut self, n: usize) -> Result<(), ModelError> {
        if n == 0 {
            return Err(ModelError::BadOptions(
                "a model needs at least 1 slot".into(),
            ));
        }
        let cap = self.kv[0].capacity();
        let dtype = self.kv[0].dtype();
        let (kd, vd) = (self.cfg.k_dim(), self.cfg.v_dim());
        let rows = self.kv[0]
            .layers
            .iter()
            .map(|l| LayerRows {
                rows: l.rows,
                ring: l.ring,
            })
            .collect::<Vec<_>>();
        if n > self.kv.len() {
            let each = KvCache::bytes_needed(dtype, &rows, kd, vd);
            let more = each.saturating_mul((n - self.kv.len()) as u128);
            if let Some(available) = lmrun_loader::memory_headroom() {
                if more > u128::from(available) {
                    return Err(ModelError::KvCacheTooLarge {
                        context_len: cap * n,
                        bytes: u64::try_from(more).unwrap_or(u64::MAX),
                        available,
                    });
                }
            }
        }
        while self.kv.len() < n {
            self.kv.push(KvCache::new(dtype, cap, &rows, kd, vd)?);
            self.n_past.push(0);
            self.floor.push(0);
        }
        self.kv.truncate(n);
        self.n_past.truncate(n);
        self.floor.truncate(n);
        Ok(())
    }

    /// Positions held by `slot`'s cache (0 for a slot that does not exist).
    pub fn slot_n_past(&self, slot: usize) -> usize {
        self.n_past.get(slot).copied().unwrap_or(0)
    }

    /// Forget `slot`'s cache contents from position `pos` on (0 forgets all of it); keeping a
    /// prefix lets a slot reuse the prompt it shares with its next request. When the
    /// sliding-window rings no longer hold the windows of the positions before `pos` (a cut
    /// deeper than [`Model::max_rewind`]), the whole slot is forgotten: read
    /// [`Model::slot_n_past`] for what was kept.
    pub fn truncate_slot(&mut self, slot: usize, pos: usize) {
        let max = self.max_rewind();
        let floor = self.floor.get(slot).copied().unwrap_or(0);
        if let Some(n) = self.n_past.get_mut(slot) {
            if pos < *n && (*n - pos > max || pos < floor) {
                *n = 0;
                self.floor[slot] = 0;
            } else {
                *n = (*n).min(pos);
            }
        }
    }

    /// Context shift (llama.cpp's): forget positions `n_keep..n_keep + n_discard` of `slot` and
    /// move the later ones down by `n_discard`, their keys re-rotated by `-n_discard` so they
    /// read as roped at their new positions. The slot then holds `n_past - n_discard`
    /// positions and cannot restart before that (the runner replays its history if asked to).
    pub fn shift_slot(
        &mut self,
        slot: usize,
        n_keep: usize,
        n_discard: usize,
    ) -> Result<(), ModelError> {
        let Some(&n_past) = self.n_past.get(slot) else {
            return Err(ModelError::BadOptions(format!("no slot {slot}")));
        };
        if n_discard == 0 {
            return Ok(());
        }
        if n_keep.saturating_add(n_discard) > n_past {
            return Err(ModelError::BadOptions(format!(
                "a context shift keeping {n_keep} and dropping {n_discard} positions needs more \
                 than the {n_past} held"
            )));
        }
        let cfg = &self.cfg;
        let (kd, vd, hd, nkv) = (cfg.k_dim(), cfg.v_dim(), cfg.head_dim, cfg.n_head_kv);
        let new_past = n_past - n_discard;
        let delta = -(n_discard as f32);
        let r = &cfg.rope;
        let rope = |swa: bool| RopeParams {
            n_rot: r.n_rot,
            theta_base: if swa { r.freq_base_swa } else { r.freq_base },
            mode: r.mode,
            freq_factors: self.w.rope_freqs.as_deref(),
            freq_scale: if swa { 1.0 } else { r.freq_scale },
            // a pure rotation: cancel the magnitude factor YaRN applies
            mscale: match (swa, r.yarn) {
                (false, Some(_)) => 1.0 / (1.0 + 0.1 * (1.0 / r.freq_scale).ln()),
                _ => 1.0,
            },
            yarn: if swa { None } else { r.yarn },
        };
        let mut krow = vec![0f32; kd];
        for (il, lkv) in self.kv[slot].layers.iter_mut().enumerate() {
            let rp = rope(cfg.is_swa(il));
            let roped = cfg.uses_rope(il);
            let rows = lkv.rows;
            if !lkv.ring {
                // Ascending: each row is read before a later position overwrites it.
                for q in n_keep..new_past {
                    lkv.k.read((q + n_discard) * kd, &mut krow);
                    if roped {
                        rope_inplace_at(&mut krow, nkv, hd, delta, &rp)?;
                    }
                    lkv.k.write(q * kd, &krow);
                }
                if lkv.v_by_row {
                    lkv.v.copy_within(
                        (n_keep + n_discard) * vd,
                        n_keep * vd,
                        (new_past - n_keep) * vd,
                    );
                    continue;
                }
                for c in 0..vd {
                    lkv.v.copy_within(
                        c * rows + n_keep + n_discard,
                        c * rows + n_keep,
                        new_past - n_keep,
                    );
                }
                continue;
            }
            // A ring: gather the rows of the new positions it will hold, then write them.
            let lo = new_past.saturating_sub(rows);
            let n = new_past - lo;
            let mut ks = vec![0f32; n * kd];
            let mut vs = vec![0f32; n * vd];
            let mut one = [0f32];
            for (j, q) in (lo..new_past).enumerate() {
                let old = if q < n_keep { q } else { q + n_discard };
                if old + rows < n_past {
                    // Overwritten already (a kept prefix position far back): outside every
                    // window the slot can still use, since it cannot restart before new_past.
                    continue;
                }
                let kr = &mut ks[j * kd..(j + 1) * kd];
                lkv.k.read(lkv.row(old) * kd, kr);
                if roped && q >= n_keep {
                    rope_inplace_at(kr, nkv, hd, delta, &rp)?;
                }
                if lkv.v_by_row {
                    lkv.v.read(lkv.row(old) * vd, &mut vs[j * vd..(j + 1) * vd]);
                    continue;
                }
                for c in 0..vd {
                    lkv.v.read(c * rows + lkv.row(old), &mut one);
                    vs[j * vd + c] = one[0];
                }
            }
            for (j, q) in (lo..new_past).enumerate() {
                let row = lkv.row(q);
                lkv.k.write(row * kd, &ks[j * kd..(j + 1) * kd]);
                if lkv.v_by_row {
                    lkv.v.write(row * vd, &vs[j * vd..(j + 1) * vd]);
                    continue;
                }
                for c in 0..vd {
                    lkv.v.write_one(c * rows + row, vs[j * vd + c]);
                }
            }
        }
        self.n_past[slot] = new_past;
        self.floor[slot] = new_past;
        Ok(())
    }

    /// Errors unless a step of `slot` may start at `start_pos`.
    fn check_start(&self, slot: usize, start_pos: usize) -> Result<(), ModelError> {
        let n_past = self.n_past[slot];
        if start_pos > n_past {
            return Err(ModelError::PositionGap { start_pos, n_past });
        }
        let max_rewind = self.max_rewind().min(n_past - self.floor[slot]);
        if n_past - start_pos > max_rewind {
            return Err(ModelError::RewindTooFar {
                start_pos,
                n_past,
                max_rewind,
            });
        }
        Ok(())
    }

    /// Runs several sequences in one batched pass: each chunk's `tokens` at positions
    /// `start_pos..` of its own slot. Every matmul multiplies all the chunks' tokens at once
    /// (the weights are read once for all sequences); attention is per sequence, over its own
    /// cache. Returns the logits of each chunk's last token, chunk after chunk
    /// (`chunks.len() * n_vocab` floats).
    ///
    /// A slot may appear once; the chunks' tokens together may be at most [`UBATCH`]. On an
    /// error no slot keeps positions from this call.
    pub fn step_multi(&mut self, chunks: &[SeqChunk<'_>]) -> Result<&[f32], ModelError> {
        if chunks.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        let n_vocab = self.cfg.n_vocab;
        let total: usize = chunks.iter().map(|c| c.tokens.len()).sum();
        if total > UBATCH {
            return Err(ModelError::BadOptions(format!(
                "a multi-sequence pass of {total} tokens is longer than {UBATCH}"
            )));
        }
        let mut segs = Vec::with_capacity(chunks.len());
        let mut row = 0;
        for (i, c) in chunks.iter().enumerate() {
            if c.tokens.is_empty() {
                return Err(ModelError::EmptyInput);
            }
            if c.slot >= self.kv.len() || chunks[..i].iter().any(|d| d.slot == c.slot) {
                return Err(ModelError::BadOptions(format!(
                    "slot {} is not one of the model's {} slots, or appears twice in one pass",
                    c.slot,
                    self.kv.len()
                )));
            }
            if let Some((index, &token)) = c
                .tokens
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
            let end = c.start_pos.saturating_add(c.tokens.len());
            let cap = self.kv[c.slot].capacity();
            if end > cap {
                return Err(ModelError::ContextOverflow {
                    start_pos: c.start_pos,
                    end,
                    context_len: cap,
                });
            }
            self.check_start(c.slot, c.start_pos)?;
            segs.push(Seg {
                row0: row,
                n: c.tokens.len(),
                p0: c.start_pos,
                slot: c.slot,
            });
            row += c.tokens.len();
        }
        let mut tokens = std::mem::take(&mut self.batch_tokens);
        tokens.clear();
        for c in chunks {
            tokens.extend_from_slice(c.tokens);
        }
        if self.buf.logits.len() < chunks.len() * n_vocab {
            self.buf.logits.resize(chunks.len() * n_vocab, 0.0);
        }
        let r = self.forward(&tokens, &segs, Out::LastOfEach);
        self.batch_tokens = tokens;
        for c in chunks {
            self.n_past[c.slot] = match r {
                Ok(()) => c.start_pos + c.tokens.len(),
                // Positions from start_pos on may be half written.
                Err(_) => c.start_pos,
            };
        }
        r?;
        Ok(&self.buf.logits[..chunks.len() * n_vocab])
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
        if end > self.kv[0].capacity() {
            return Err(ModelError::ContextOverflow {
                start_pos,
                end,
                context_len: self.kv[0].capacity(),
            });
        }
        self.check_start(0, start_pos)?;
        let n_out = if all_logits { tokens.len() } else { 1 };
        if self.buf.logits.len() < n_out * n_vocab {
            self.buf.logits.resize(n_out * n_vocab, 0.0);
        }
        let mut done = 0;
        for chunk in tokens.chunks(UBATCH) {
            let last = done + chunk.len() == tokens.len();
            let out_off = if all_logits { done } else { 0 };
            let seg = [Seg {
                row0: 0,
                n: chunk.len(),
                p0: start_pos + done,
                slot: 0,
            }];
            let out = if all_logits {
                Out::All(out_off)
            } else if last {
                Out::Last
            } else {
                Out::None
            };
            if let Err(e) = self.forward(chunk, &seg, out) {
                // Only the finished chunks are valid in the cache now.
                self.n_past[0] = start_pos + done;
                return Err(e);
            }
            done += chunk.len();
            self.n_past[0] = start_pos + done;
        }
        Ok(&self.buf.logits[..n_out * n_vocab])
    }

    /// One batched pass over `tokens`, whose rows belong to the sequences `segs`: the
    /// embeddings, each layer's attention and feed-forward blocks, and the output block for the
    /// rows `out` asks for.
    fn forward(&mut self, tokens: &[u32], segs: &[Seg], out: Out) -> Result<(), ModelError> {
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
            dots: kv[0].dots,
            rope_freqs: w.rope_freqs.as_deref(),
            n,
            segs,
        };
        buf.ensure(cfg, n);
        blocks::embed(&pass, &w.token_embd, tokens, buf)?;
        for (il, lw) in w.layers.iter().enumerate() {
            // A stop request ends a long prefill within one block, not one whole pass.
            if (il == 0 || n > 1) && cancelled() {
                return Err(ModelError::Cancelled);
            }
            blocks::attention(&pass, il, lw, kv, buf)?;
            if n > 1 && cancelled() {
                return Err(ModelError::Cancelled);
            }
            blocks::feed_forward(&pass, lw, buf)?;
        }
        match out {
            Out::None => Ok(()),
            Out::All(out_row) => blocks::output(&pass, w, 0..n, out_row, buf),
            Out::Last => blocks::output(&pass, w, n - 1..n, 0, buf),
            Out::LastOfEach => {
                // Gather each sequence's last row to the front (row i <= its source row, and
                // every later source row is > i, so nothing is overwritten before it is read),
                // then one output pass over them all.
                blocks::gather_rows(buf, cfg.n_embd, segs.iter().map(|s| s.row0 + s.n - 1));
                blocks::output(&pass, w, 0..segs.len(), 0, buf)
            }
        }
    }
}

/// Each layer's KV rows for a context of `context_len`: rings for sliding-window layers.
fn layer_rows(cfg: &ModelConfig, context_len: usize, swa_full: bool) -> Vec<LayerRows> {
    (0..cfg.n_layer)
        .map(|il| {
            let w = if cfg.is_swa(il) && !swa_full {
                cfg.sliding_window
            } else {
                None
            };
            LayerRows::for_layer(context_len, w)
        })
        .collect()
}

/// Which rows of a pass get logits.
#[derive(Debug, Clone, Copy)]
enum Out {
    /// None (a prompt chunk that is not the last).
    None,
    /// Every row, written from this row of the logits buffer.
    All(usize),
    /// The last row.
    Last,
    /// The last row of each sequence.
    LastOfEach,
}

/// One sequence's part of [`Model::step_multi`]: `tokens` at positions `start_pos..` of the KV
/// cache of `slot`.
#[derive(Debug, Clone, Copy)]
pub struct SeqChunk<'a> {
    /// The slot (0..[`Model::n_slots`]).
    pub slot: usize,
    /// The tokens (a prompt chunk, or one token to decode).
    pub tokens: &'a [u32],
    /// Position of the first token; at most the slot's [`Model::slot_n_past`].
    pub start_pos: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmrun_gguf::LoadMode;

    fn model(file: &str, ctx: usize) -> Model {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(file);
        let g = GgufFile::open(&p, LoadMode::Mmap).unwrap();
        let opts = ModelOptions {
            context_len: ctx,
            kv_dtype: KvDtype::F32,
            n_threads: 1,
            swa_full: false,
        };
        Model::from_gguf(&g, &opts).unwrap()
    }

    /// Layer 0's keys and values depend only on the token and its position, so after a shift
    /// they must equal a fresh run of the shortened sequence: this checks the re-rotation
    /// (YaRN, rings, NoPE-free) and the row moves.
    fn shifted_layer0_matches_fresh(file: &str, ctx: usize, n: usize, keep: usize, drop: usize) {
        let mut a = model(file, ctx);
        let nv = a.config().n_vocab as u32;
        let seq: Vec<u32> = (0..n as u32).map(|i| (i * 37 + 5) % nv).collect();
        a.step(&seq, 0, false).unwrap();
        a.shift_slot(0, keep, drop).unwrap();
        assert_eq!(a.n_past(), n - drop);
        let short: Vec<u32> = seq[..keep]
            .iter()
            .chain(&seq[keep + drop..])
            .copied()
            .collect();
        let mut b = model(file, ctx);
        b.step(&short, 0, false).unwrap();
        let (kd, vd) = (a.cfg.k_dim(), a.cfg.v_dim());
        let (la, lb) = (&a.kv[0].layers[0], &b.kv[0].layers[0]);
        let (mut x, mut y) = (vec![0f32; kd], vec![0f32; kd]);
        let (mut u, mut w) = ([0f32], [0f32]);
        let first = (n - drop).saturating_sub(la.rows).max(keep);
        for q in first..n - drop {
            la.k.read(la.row(q) * kd, &mut x);
            lb.k.read(lb.row(q) * kd, &mut y);
            for (i, (p, r)) in x.iter().zip(&y).enumerate() {
                assert!(
                    (p - r).abs() <= 1e-4 * (1.0 + r.abs()),
                    "{file}: K[{q}][{i}] {p} vs {r}"
                );
            }
            for c in 0..vd {
                la.v.read(c * la.rows + la.row(q), &mut u);
                lb.v.read(c * lb.rows + lb.row(q), &mut w);
                assert_eq!(u, w, "{file}: V[{q}][{c}]");
            }
        }
        // No restart before the shift point; a step there works.
        assert!(matches!(
            a.step(&seq[..1], n - drop - 1, false),
            Err(ModelError::RewindTooFar { .. })
        ));
        a.step(&seq[..1], n - drop, false).unwrap();
    }

    #[test]
    fn context_shift_rerotates_keys() {
        shifted_layer0_matches_fresh("archs/llama-yarn.gguf", 128, 100, 3, 40);
        shifted_layer0_matches_fresh("archs/phi3.gguf", 128, 90, 1, 44);
        shifted_layer0_matches_fresh("archs/qwen3.gguf", 128, 64, 0, 10);
        // gemma2's layer 0 slides (window 8): a ring of 519 rows in a 700-position context
        shifted_layer0_matches_fresh("archs/gemma2.gguf", 700, 690, 4, 150);
    }
}
