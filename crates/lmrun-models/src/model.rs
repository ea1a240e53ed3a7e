//! The decoder: one forward pass written once for every architecture, reading the optional
//! pieces (biases, Q/K norms, post-norms, sliding windows, embedding scale, soft-capping) from
//! the model's [`ArchSpec`] and [`ModelConfig`]. Like llama2.c's `forward`, it is one readable
//! function over plain buffers allocated before the token loop; the matmuls, norms and rope come
//! from `lmrun-kernels`. A prompt is processed in chunks of up to [`UBATCH`] tokens, each chunk
//! one batched pass (every matmul multiplies the chunk's tokens at once).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lmrun_gguf::GgufFile;
use lmrun_kernels::ops::{
    add_inplace, embedding_row, rms_norm, rms_norm_inplace, rope_inplace_partial, scale_inplace,
    sigmoid_gate_mul,
};
use lmrun_kernels::{matmul, matvec_many, Scratch, ThreadPool};

use crate::arch::{ArchSpec, FfnAct};
use crate::attention::{attend, AttnShape, HEADS_PER_ITEM};
use crate::config::ModelConfig;
use crate::kv::{KvCache, KvDtype};
use crate::weights::{ModelWeights, Weight};
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

/// Activation buffers, grown to the largest chunk seen and then reused.
#[derive(Debug, Default)]
struct Buffers {
    cap_tokens: usize,
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att_hm: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    scores: Vec<f32>,
    logits: Vec<f32>,
    mm: Scratch,
}

impl Buffers {
    fn ensure(&mut self, cfg: &ModelConfig, n: usize) {
        if n <= self.cap_tokens {
            return;
        }
        let grow = |v: &mut Vec<f32>, per: usize| v.resize(n * per, 0.0);
        grow(&mut self.x, cfg.n_embd);
        grow(&mut self.xn, cfg.n_embd);
        grow(&mut self.q, cfg.q_dim());
        grow(&mut self.k, cfg.k_dim());
        grow(&mut self.v, cfg.v_dim());
        grow(&mut self.att_hm, cfg.n_head * cfg.head_dim_v);
        grow(&mut self.att, cfg.n_head * cfg.head_dim_v);
        grow(&mut self.o, cfg.n_embd);
        grow(&mut self.g, cfg.n_ff);
        grow(&mut self.u, cfg.n_ff);
        self.cap_tokens = n;
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
        buf.scores = vec![
            0.0;
            n_threads
                .saturating_mul(HEADS_PER_ITEM)
                .saturating_mul(opts.context_len)
        ];
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
        let b = &self.buf;
        let f32s: usize = [
            &b.x, &b.xn, &b.q, &b.k, &b.v, &b.att_hm, &b.att, &b.o, &b.g, &b.u, &b.scores,
            &b.logits,
        ]
        .iter()
        .map(|v| v.capacity() * 4)
        .sum();
        f32s + b.mm.heap_bytes()
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

    /// One batched pass over `tokens` at positions `p0..`. Writes logits (all rows when `all`,
    /// else the last row when `last`) starting at row `out_row` of `self.buf.logits`.
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
        if cancelled() {
            return Err(ModelError::Cancelled);
        }
        let n = tokens.len();
        buf.ensure(cfg, n);
        let e = cfg.n_embd;
        let (qd, kd, vd) = (cfg.q_dim(), cfg.k_dim(), cfg.v_dim());
        let (hd, hdv) = (cfg.head_dim, cfg.head_dim_v);
        let (nh, nkv) = (cfg.n_head, cfg.n_head_kv);
        let eps = cfg.rms_eps;
        let cap = kv.capacity;
        let dots = kv.dots;

        // Token embeddings.
        for (t, &tok) in tokens.iter().enumerate() {
            let row = &mut buf.x[t * e..(t + 1) * e];
            let emb = &w.token_embd;
            embedding_row(emb.qtype, &emb.data, e, tok as usize, row)?;
            if let Some(s) = cfg.embd_scale {
                scale_inplace(row, s);
            }
        }
        let x = &mut buf.x[..n * e];
        let xn = &mut buf.xn[..n * e];
        let q = &mut buf.q[..n * qd];
        let k = &mut buf.k[..n * kd];
        let v = &mut buf.v[..n * vd];
        let att_hm = &mut buf.att_hm[..n * nh * hdv];
        let att = &mut buf.att[..n * nh * hdv];
        let o = &mut buf.o[..n * e];
        let g = &mut buf.g[..n * cfg.n_ff];
        let u = &mut buf.u[..n * cfg.n_ff];
        let mm = &mut buf.mm;

        for (il, lw) in w.layers.iter().enumerate() {
            // A stop request ends a long prefill within one block, not one whole pass.
            if il > 0 && n > 1 && cancelled() {
                return Err(ModelError::Cancelled);
            }
            let swa = cfg.is_swa(il);
            // --- attention block ---
            par_norm_rows(pool, x, &lw.attn_norm, eps, xn, n)?;
            if n == 1 {
                // decode: the three projections in one pass of the pool
                let ws = [&lw.wq.as_ref(), &lw.wk.as_ref(), &lw.wv.as_ref()];
                matvec_many(pool, ws, xn, [&mut *q, &mut *k, &mut *v], mm)?;
            } else {
                mat(pool, &lw.wq, xn, n, q, mm)?;
                mat(pool, &lw.wk, xn, n, k, mm)?;
                mat(pool, &lw.wv, xn, n, v, mm)?;
            }
            add_bias(q, lw.bq.as_deref())?;
            add_bias(k, lw.bk.as_deref())?;
            add_bias(v, lw.bv.as_deref())?;
            let (base, fscale) = if swa {
                (cfg.rope.freq_base_swa, 1.0)
            } else {
                (cfg.rope.freq_base, cfg.rope.freq_scale)
            };
            let ff = w.rope_freqs.as_deref();
            // Q/K norms and rope, per token (chunks of tokens in parallel).
            let ct = par_chunk(pool, n);
            let items: Vec<_> = q
                .chunks_mut(ct * qd)
                .zip(k.chunks_mut(ct * kd))
                .enumerate()
                .collect();
            par_items(pool, items, |(ci, (qc, kc))| {
                if let Some(qn) = &lw.q_norm {
                    for h in qc.chunks_exact_mut(hd) {
                        rms_norm_inplace(h, qn, eps)?;
                    }
                }
                if let Some(kn) = &lw.k_norm {
                    for h in kc.chunks_exact_mut(hd) {
                        rms_norm_inplace(h, kn, eps)?;
                    }
                }
                for (j, (qt, kt)) in qc
                    .chunks_exact_mut(qd)
                    .zip(kc.chunks_exact_mut(kd))
                    .enumerate()
                {
                    let pos = p0 + ci * ct + j;
                    let rope = |x: &mut [f32], heads| {
                        rope_inplace_partial(
                            x,
                            heads,
                            hd,
                            cfg.rope.n_rot,
                            pos,
                            base,
                            cfg.rope.mode,
                            ff,
                            fscale,
                        )
                    };
                    rope(qt, nh)?;
                    rope(kt, nkv)?;
                }
                Ok(())
            })?;
            // Store K rows and transposed V of the chunk.
            let lkv = &mut kv.layers[il];
            lkv.k.write(p0 * kd, k);
            for t in 0..n {
                let vt = &v[t * vd..(t + 1) * vd];
                for (c, &val) in vt.iter().enumerate() {
                    lkv.v.write_one(c * cap + p0 + t, val);
                }
            }
            let shape = AttnShape {
                n_head: nh,
                n_head_kv: nkv,
                head_dim: hd,
                head_dim_v: hdv,
                capacity: cap,
                scale: cfg.attn_scale,
                window: if swa { cfg.sliding_window } else { None },
            };
            attend(pool, &shape, lkv, &dots, q, n, p0, att_hm, &mut buf.scores);
            // head-major [h][t][d] -> token-major [t][h][d]
            for h in 0..nh {
                for t in 0..n {
                    att[(t * nh + h) * hdv..][..hdv]
                        .copy_from_slice(&att_hm[(h * n + t) * hdv..][..hdv]);
                }
            }
            mat(pool, &lw.wo, att, n, o, mm)?;
            add_bias(o, lw.bo.as_deref())?;
            if let Some(pn) = &lw.post_attn_norm {
                for r in o.chunks_exact_mut(e) {
                    rms_norm_inplace(r, pn, eps)?;
                }
            }
            add_inplace(x, o)?;

            // --- feed-forward block ---
            if n > 1 && cancelled() {
                return Err(ModelError::Cancelled);
            }
            par_norm_rows(pool, x, &lw.ffn_norm, eps, xn, n)?;
            if n == 1 {
                let ws = [&lw.gate.as_ref(), &lw.up.as_ref()];
                matvec_many(pool, ws, xn, [&mut *g, &mut *u], mm)?;
            } else {
                mat(pool, &lw.gate, xn, n, g, mm)?;
                mat(pool, &lw.up, xn, n, u, mm)?;
            }
            let cf = par_chunk(pool, n) * cfg.n_ff;
            let items: Vec<_> = g.chunks_mut(cf).zip(u.chunks(cf)).collect();
            par_items(pool, items, |(gc, uc)| {
                // SiLU(g)·u = g·σ(g)·u; GELU-tanh(g)·u = g·σ(2√(2/π)(g + 0.044715 g³))·u
                let (k1, k3) = match spec.ffn_act {
                    FfnAct::Silu => (1.0, 0.0),
                    FfnAct::GeluTanh => (GELU_K1, GELU_K1 * 0.044715),
                };
                sigmoid_gate_mul(gc, uc, k1, k3)?;
                Ok(())
            })?;
            mat(pool, &lw.down, g, n, o, mm)?;
            if let Some(pn) = &lw.post_ffn_norm {
                for r in o.chunks_exact_mut(e) {
                    rms_norm_inplace(r, pn, eps)?;
                }
            }
            add_inplace(x, o)?;
        }

        // --- output ---
        let nv = cfg.n_vocab;
        let (rows_in, n_rows) = if all {
            (&x[..], n)
        } else if last {
            (&x[(n - 1) * e..], 1)
        } else {
            return Ok(());
        };
        let xn = &mut xn[..n_rows * e];
        norm_rows(rows_in, &w.output_norm, eps, xn)?;
        let out = &mut buf.logits[out_row * nv..(out_row + n_rows) * nv];
        mat(pool, &w.output, xn, n_rows, out, mm)?;
        if let Some(c) = cfg.final_logit_softcap {
            for l in out.iter_mut() {
                *l = c * (*l / c).tanh();
            }
        }
        Ok(())
    }
}

fn mat(
    pool: &ThreadPool,
    w: &Weight,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    mm: &mut Scratch,
) -> Result<(), ModelError> {
    matmul(pool, &w.as_ref(), x, n, out, mm)?;
    Ok(())
}

/// Below this many tokens the per-token element-wise work runs on the calling thread: waking
/// the pool would cost more than it saves (decode).
const PAR_MIN_TOKENS: usize = 8;

/// Runs `f` on every item, the items shared out among the pool's threads (each item taken by
/// exactly one thread, from a shared counter). Used for the per-token element-wise steps of a
/// batched pass (norms, rope, activation), which would otherwise be the serial part of prefill.
/// The first error any call returns is returned.
fn par_items<T: Send>(
    pool: &ThreadPool,
    items: Vec<T>,
    f: impl Fn(T) -> Result<(), ModelError> + Sync,
) -> Result<(), ModelError> {
    if pool.n_threads() == 1 || items.len() < 2 {
        return items.into_iter().try_for_each(f);
    }
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let next = AtomicUsize::new(0);
    let err = Mutex::new(None);
    pool.run_dynamic(|_, _| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = slots.get(i) else {
            break;
        };
        let item = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(item) = item {
            if let Err(e) = f(item) {
                err.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
            }
        }
    });
    match err.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Tokens per item of [`par_items`] for `n` tokens: a few items per thread.
fn par_chunk(pool: &ThreadPool, n: usize) -> usize {
    if n < PAR_MIN_TOKENS {
        n.max(1)
    } else {
        n.div_ceil(4 * pool.n_threads()).max(1)
    }
}

/// [`norm_rows`] with the rows shared out among the pool's threads.
fn par_norm_rows(
    pool: &ThreadPool,
    x: &[f32],
    w: &[f32],
    eps: f32,
    out: &mut [f32],
    n: usize,
) -> Result<(), ModelError> {
    let e = w.len();
    let c = par_chunk(pool, n) * e;
    let items: Vec<_> = x.chunks(c).zip(out.chunks_mut(c)).collect();
    par_items(pool, items, |(xr, or)| norm_rows(xr, w, eps, or))
}

fn norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) -> Result<(), ModelError> {
    let e = w.len();
    for (xr, or) in x.chunks_exact(e).zip(out.chunks_exact_mut(e)) {
        rms_norm(xr, w, eps, or)?;
    }
    Ok(())
}

fn add_bias(x: &mut [f32], b: Option<&[f32]>) -> Result<(), ModelError> {
    if let Some(b) = b {
        for r in x.chunks_exact_mut(b.len()) {
            add_inplace(r, b)?;
        }
    }
    Ok(())
}

/// `g[i] = gelu_tanh(g[i]) * u[i]`, with `0.5·(1 + tanh(z)) = 1 / (1 + e^(-2z))`: the same
/// function as the kernels' `gelu_tanh_inplace`, one `exp` instead of a `tanh` (which was 10%
/// of a Gemma prefill), fused with the gate product. Saturates cleanly: no NaN for finite input.
/// `2√(2/π)`: GELU's tanh approximation written as a sigmoid, `tanh(z) = 2σ(2z) - 1`.
const GELU_K1: f32 = 2.0 * 0.797_884_6;

#[cfg(test)]
fn geglu_inplace(g: &mut [f32], u: &[f32]) {
    sigmoid_gate_mul(g, u, GELU_K1, GELU_K1 * 0.044715).unwrap();
}

#[cfg(test)]
mod tests {
    #[test]
    fn geglu_matches_gelu_tanh() {
        let xs: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.05).collect();
        let mut want = xs.clone();
        lmrun_kernels::ops::gelu_tanh_inplace(&mut want);
        let mut got = xs.clone();
        super::geglu_inplace(&mut got, &vec![1.0; xs.len()]);
        for ((x, a), b) in xs.iter().zip(&got).zip(&want) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "gelu({x}): {a} vs {b}"
            );
        }
        let mut big = [1e30f32, -1e30, f32::MAX, -f32::MAX];
        super::geglu_inplace(&mut big, &[1.0; 4]);
        assert!(big.iter().all(|v| !v.is_nan()), "{big:?}");
    }
}
