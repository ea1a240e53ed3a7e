//! Hyperparameters: what a model's `<arch>.*` metadata keys say, checked for consistency and
//! gathered into one [`ModelConfig`] that the forward pass reads (never the raw metadata).

use lmrun_gguf::{GgufFile, MetaArray, MetaValue};
use lmrun_kernels::ops::Yarn;
use lmrun_kernels::RopeMode;

use crate::arch::{names, ArchSpec, AttnScaleRule, SwaLayout};
use crate::ModelError;

/// Rotary position embedding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    /// Pair layout.
    pub mode: RopeMode,
    /// Rotated dims per head (`<arch>.rope.dimension_count`, default the head size).
    pub n_rot: usize,
    /// Frequency base of global layers (`<arch>.rope.freq_base`, default 10000).
    pub freq_base: f32,
    /// Frequency base of sliding-window layers (gemma3: `<arch>.rope.freq_base_swa`, else 10000).
    pub freq_base_swa: f32,
    /// Linear position scale of global layers (1 / `<arch>.rope.scaling.factor` for
    /// `linear` scaling, else 1).
    pub freq_scale: f32,
    /// Whether per-pair frequency factors (`rope_freqs.weight`) are applied.
    pub has_freq_factors: bool,
    /// Factor on cos/sin of global layers (`rope.scaling.attn_factor`, with YaRN's magnitude
    /// correction folded in as llama.cpp does; 1.0 for none).
    pub attn_factor: f32,
    /// YaRN frequency blend of global layers (`rope.scaling.type = yarn`).
    pub yarn: Option<Yarn>,
    /// Context the model was trained for before any rope scaling
    /// (`rope.scaling.original_context_length`, else `context_length`): LongRoPE picks its
    /// long factors past it.
    pub n_ctx_orig: usize,
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// `general.architecture`.
    pub arch: String,
    /// Vocabulary size (rows of `token_embd`).
    pub n_vocab: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Number of layers.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_head_kv: usize,
    /// Size of one query/key head (`<arch>.attention.key_length`, default `n_embd / n_head`).
    pub head_dim: usize,
    /// Size of one value head (`<arch>.attention.value_length`, default `head_dim`).
    pub head_dim_v: usize,
    /// FFN inner size.
    pub n_ff: usize,
    /// Training context (`<arch>.context_length`); informative, the KV cache is sized by
    /// [`crate::ModelOptions::context_len`].
    pub n_ctx_train: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Rope settings.
    pub rope: RopeConfig,
    /// Sliding window (keys within `pos - window < k_pos <= pos`) of sliding layers.
    pub sliding_window: Option<usize>,
    /// Per layer: whether it uses the sliding window.
    pub swa_layers: Vec<bool>,
    /// Scale of the attention scores (1/√head_dim unless the file says otherwise).
    pub attn_scale: f32,
    /// Final logit soft-capping `c·tanh(x/c)`.
    pub final_logit_softcap: Option<f32>,
    /// Factor applied to the token embeddings (√n_embd for gemma).
    pub embd_scale: Option<f32>,
    /// The output matrix is the embedding table (no `output.weight`).
    pub tied_output: bool,
    /// Attention-score soft-capping `c·tanh(s/c)` (gemma2).
    pub attn_softcap: Option<f32>,
    /// Per layer: whether it skips rope (smollm3's NoPE layers).
    pub nope_layers: Vec<bool>,
    /// Factor on each block's output before the residual add (granite).
    pub residual_scale: Option<f32>,
    /// Divisor of the logits (granite).
    pub logit_scale: Option<f32>,
    /// Attention temperature (mistral3 / llama4): queries at position `p` are multiplied by
    /// `1 + scale · ln(⌊p / floor⌋ + 1)`; `(scale, floor)`.
    pub attn_temp: Option<(f32, usize)>,
}

fn bad(key: impl Into<String>, what: impl Into<String>) -> ModelError {
    ModelError::BadHyperparameter {
        key: key.into(),
        what: what.into(),
    }
}

/// The `<arch>.*` metadata of one file, read with the range checks every key needs.
struct Keys<'a> {
    gguf: &'a GgufFile,
    arch: &'a str,
}

impl Keys<'_> {
    fn key(&self, s: &str) -> String {
        format!("{}.{s}", self.arch)
    }

    /// A required dimension in `1..=MAX_DIM`.
    fn req(&self, s: &str) -> Result<usize, ModelError> {
        let k = self.key(s);
        let v = self.gguf.get_usize(&k)?;
        if v == 0 || v > MAX_DIM {
            return Err(bad(k, format!("{v} is out of range 1..={MAX_DIM}")));
        }
        Ok(v)
    }

    fn opt_usize(&self, s: &str) -> Result<Option<usize>, ModelError> {
        Ok(self.gguf.get_opt::<u64>(&self.key(s))?.map(|v| v as usize))
    }

    fn opt_f32(&self, s: &str) -> Result<Option<f32>, ModelError> {
        Ok(self.gguf.get_opt::<f64>(&self.key(s))?.map(|v| v as f32))
    }

    /// Rotary dimensions, frequency base, linear position scale, cos/sin factor and YaRN blend
    /// (rope scaling), as llama.cpp derives them from the `rope.*` keys.
    fn rope(&self, head_dim: usize, n_ctx_orig: usize) -> Result<RopeKeys, ModelError> {
        let n_rot = self.opt_usize("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 || n_rot == 0 {
            return Err(bad(
                self.key("rope.dimension_count"),
                format!("{n_rot} must be even, nonzero and at most the head size {head_dim}"),
            ));
        }
        let freq_base = self.opt_f32("rope.freq_base")?.unwrap_or(10_000.0);
        if !(freq_base.is_finite() && freq_base > 0.0) {
            return Err(bad(self.key("rope.freq_base"), format!("{freq_base}")));
        }
        let scaling_type = self
            .gguf
            .get_opt::<&str>(&self.key("rope.scaling.type"))?
            .unwrap_or("none");
        let factor = self
            .opt_f32("rope.scaling.factor")?
            .or(self.opt_f32("rope.scale_linear")?)
            .unwrap_or(0.0);
        let attn_factor_key = self.opt_f32("rope.scaling.attn_factor")?.unwrap_or(1.0);
        if !(attn_factor_key.is_finite() && attn_factor_key > 0.0) {
            return Err(bad(
                self.key("rope.scaling.attn_factor"),
                format!("{attn_factor_key}"),
            ));
        }
        let check_factor = |f: f32| {
            if f.is_finite() && f > 0.0 {
                Ok(f)
            } else {
                Err(bad(self.key("rope.scaling.factor"), format!("{f}")))
            }
        };
        // llama.cpp: a missing or zero factor means no scaling.
        let freq_scale = if factor == 0.0 {
            1.0
        } else {
            1.0 / check_factor(factor)?
        };
        let mut r = RopeKeys {
            n_rot,
            freq_base,
            freq_scale,
            attn_factor: attn_factor_key,
            yarn: None,
        };
        match scaling_type {
            // llama.cpp's default type is linear: a bare factor scales positions.
            "none" | "linear" => {}
            // LongRoPE's factors are tensors; its attention factor is the key above.
            "longrope" | "su" => r.freq_scale = 1.0,
            "yarn" => {
                let beta_fast = self.opt_f32("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0);
                let beta_slow = self.opt_f32("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0);
                let ext = self.opt_f32("rope.scaling.yarn_ext_factor")?.unwrap_or(1.0);
                let log_mul = self
                    .opt_f32("rope.scaling.yarn_log_multiplier")?
                    .unwrap_or(0.0);
                for (k, v) in [
                    ("yarn_beta_fast", beta_fast),
                    ("yarn_beta_slow", beta_slow),
                    ("yarn_ext_factor", ext),
                    ("yarn_log_multiplier", log_mul),
                ] {
                    if !v.is_finite() {
                        return Err(bad(self.key(&format!("rope.scaling.{k}")), format!("{v}")));
                    }
                }
                if n_ctx_orig == 0 {
                    return Err(bad(
                        self.key("rope.scaling.original_context_length"),
                        "YaRN needs the original context length",
                    ));
                }
                if ext != 0.0 {
                    let f = 1.0 / r.freq_scale;
                    let mscale = |m: f32| {
                        if f <= 1.0 {
                            1.0
                        } else {
                            0.1 * m * f.ln() + 1.0
                        }
                    };
                    // The kernel multiplies by 1 + 0.1 ln f again; llama.cpp cancels it here.
                    let a = if log_mul != 0.0 {
                        mscale(1.0) / mscale(log_mul)
                    } else {
                        mscale(1.0)
                    };
                    r.attn_factor *= a / (1.0 + 0.1 * f.ln());
                    let mut y = Yarn::new(n_rot, n_ctx_orig, freq_base, beta_fast, beta_slow);
                    y.ext_factor = ext;
                    r.yarn = Some(y);
                }
            }
            other => {
                return Err(bad(
                    self.key("rope.scaling.type"),
                    format!(
                        "rope scaling '{other}' is not supported (none, linear, yarn, longrope)"
                    ),
                ));
            }
        }
        Ok(r)
    }

    /// Which layers slide: `attention.sliding_window_pattern` as one bool per layer, or as a
    /// period (llama.cpp's rule: layer `il` slides when `il % period < period - 1`, so a period
    /// of 0 or 1 makes none slide), else `period`.
    fn swa_pattern(&self, n_layer: usize, period: usize) -> Result<Vec<bool>, ModelError> {
        let k = self.key("attention.sliding_window_pattern");
        let period = match self.gguf.metadata().value(&k) {
            None => period,
            Some(v) => {
                if let MetaValue::Array(MetaArray::Bool(arr)) = v {
                    if arr.len() != n_layer {
                        return Err(bad(
                            k,
                            format!("{} entries for {n_layer} layers", arr.len()),
                        ));
                    }
                    return Ok(arr.clone());
                }
                match self.gguf.get_opt::<u64>(&k)? {
                    Some(p) => p as usize,
                    None => return Err(bad(k, "neither a number nor one bool per layer")),
                }
            }
        };
        Ok((0..n_layer)
            .map(|il| period > 0 && il % period < period - 1)
            .collect())
    }

    /// The vocabulary size, from the token embedding's shape.
    fn n_vocab(&self, n_embd: usize) -> Result<usize, ModelError> {
        let embd =
            self.gguf
                .tensor_info(names::TOKEN_EMBD)
                .ok_or_else(|| ModelError::MissingTensor {
                    name: names::TOKEN_EMBD.into(),
                    arch: self.arch.into(),
                })?;
        if embd.shape.len() != 2 || embd.shape[0] != n_embd as u64 {
            return Err(ModelError::BadShape {
                name: names::TOKEN_EMBD.into(),
                expected: vec![n_embd as u64, embd.shape.get(1).copied().unwrap_or(0)],
                found: embd.shape.clone(),
            });
        }
        let n_vocab = usize::try_from(embd.shape[1])
            .ok()
            .filter(|&v| v > 0 && v <= MAX_DIM)
            .ok_or_else(|| bad("n_vocab", format!("{} rows in token_embd", embd.shape[1])))?;

        Ok(n_vocab)
    }
}

/// What [`Keys::rope`] reads.
struct RopeKeys {
    n_rot: usize,
    freq_base: f32,
    freq_scale: f32,
    attn_factor: f32,
    yarn: Option<Yarn>,
}

/// Largest size accepted for any one dimension (defensive cap; real models are far below).
const MAX_DIM: usize = 1 << 24;

impl ModelConfig {
    /// Reads and checks the hyperparameters of `gguf` for architecture `spec`.
    pub fn from_gguf(gguf: &GgufFile, spec: &ArchSpec) -> Result<ModelConfig, ModelError> {
        let a = spec.name;
        let k = Keys { gguf, arch: a };
        let (key, req) = (|s: &str| k.key(s), |s: &str| k.req(s));
        let (opt_usize, opt_f32) = (|s: &str| k.opt_usize(s), |s: &str| k.opt_f32(s));

        let n_embd = req("embedding_length")?;
        let n_layer = req("block_count")?;
        let n_head = req("attention.head_count")?;
        let n_head_kv = match opt_usize("attention.head_count_kv")? {
            Some(v) => v,
            None => n_head,
        };
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(bad(
                key("attention.head_count_kv"),
                format!("{n_head_kv} does not divide head_count {n_head}"),
            ));
        }
        let n_ff = req("feed_forward_length")?;
        let n_ctx_train = opt_usize("context_length")?.unwrap_or(0);
        let head_dim = match opt_usize("attention.key_length")? {
            Some(v) => v,
            None => {
                if n_embd % n_head != 0 {
                    return Err(bad(
                        key("attention.head_count"),
                        format!("{n_head} does not divide embedding_length {n_embd}"),
                    ));
                }
                n_embd / n_head
            }
        };
        let head_dim_v = opt_usize("attention.value_length")?.unwrap_or(head_dim);
        for (k, v) in [("key_length", head_dim), ("value_length", head_dim_v)] {
            if v == 0 || v > MAX_DIM {
                return Err(bad(key(&format!("attention.{k}")), format!("{v}")));
            }
        }
        let rms_eps = opt_f32("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5);
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(bad(key("attention.layer_norm_rms_epsilon"), "not finite"));
        }

        let n_ctx_orig = opt_usize("rope.scaling.original_context_length")?.unwrap_or(n_ctx_train);
        let rk = k.rope(head_dim, n_ctx_orig)?;
        let freq_base = rk.freq_base;

        let (sliding_window, swa_layers, freq_base_swa) = match spec.sliding {
            SwaLayout::None => (None, vec![false; n_layer], freq_base),
            SwaLayout::Periodic {
                period,
                default_local_rope_base,
                default_window,
            } => {
                let w = opt_usize("attention.sliding_window")?.or(default_window);
                let base = opt_f32("rope.freq_base_swa")?
                    .or(default_local_rope_base)
                    .unwrap_or(freq_base);
                if !(base.is_finite() && base > 0.0) {
                    return Err(bad(key("rope.freq_base_swa"), format!("{base}")));
                }
                match w {
                    Some(w) if w > 0 => (Some(w), k.swa_pattern(n_layer, period)?, base),
                    _ => (None, vec![false; n_layer], freq_base),
                }
            }
        };

        let attn_scale = match opt_f32("attention.scale")? {
            Some(s) if s.is_finite() && s > 0.0 => s,
            _ => match spec.attn_scale_rule {
                AttnScaleRule::Gemma2 if n_layer == 46 => 1.0 / ((n_embd / n_head) as f32).sqrt(),
                _ => 1.0 / (head_dim as f32).sqrt(),
            },
        };
        let positive = |s: &str| -> Result<Option<f32>, ModelError> {
            match opt_f32(s)? {
                None => Ok(None),
                Some(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
                Some(v) => Err(bad(key(s), format!("{v} must be positive"))),
            }
        };
        let attn_softcap = if spec.attn_softcap {
            opt_f32("attn_logit_softcapping")?.filter(|c| c.is_finite() && *c > 0.0)
        } else {
            None
        };
        let nope_layers = (0..n_layer)
            .map(|il| spec.nope_every.is_some_and(|n| (il + 1) % n == 0))
            .collect();
        let (embd_mult, residual_scale, logit_scale) = if spec.multipliers {
            (
                positive("embedding_scale")?,
                positive("residual_scale")?,
                positive("logit_scale")?,
            )
        } else {
            (None, None, None)
        };
        let attn_temp = match opt_f32("attention.temperature_scale")? {
            Some(t) if t != 0.0 => {
                if !t.is_finite() || n_ctx_orig == 0 {
                    return Err(bad(
                        key("attention.temperature_scale"),
                        format!("{t} (needs a finite value and an original context length)"),
                    ));
                }
                Some((t, n_ctx_orig))
            }
            _ => None,
        };
        let final_logit_softcap = if spec.logit_softcap {
            opt_f32("final_logit_softcapping")?.filter(|c| c.is_finite() && *c > 0.0)
        } else {
            None
        };

        let n_vocab = k.n_vocab(n_embd)?;

        Ok(ModelConfig {
            arch: a.to_string(),
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_ff,
            n_ctx_train,
            rms_eps,
            rope: RopeConfig {
                mode: spec.rope_mode,
                n_rot: rk.n_rot,
                freq_base,
                freq_base_swa,
                freq_scale: rk.freq_scale,
                has_freq_factors: (spec.rope_freqs && gguf.has_tensor(names::ROPE_FREQS))
                    || (spec.longrope && gguf.has_tensor(names::ROPE_FACTORS_SHORT)),
                attn_factor: rk.attn_factor,
                yarn: rk.yarn,
                n_ctx_orig,
            },
            sliding_window,
            swa_layers,
            attn_scale,
            final_logit_softcap,
            embd_scale: if spec.scale_embeddings {
                Some((n_embd as f32).sqrt())
            } else {
                embd_mult
            },
            tied_output: !gguf.has_tensor(names::OUTPUT),
            attn_softcap,
            nope_layers,
            residual_scale,
            logit_scale,
            attn_temp,
        })
    }

    /// Whether layer `il` applies rope.
    pub fn uses_rope(&self, il: usize) -> bool {
        !self.nope_layers.get(il).copied().unwrap_or(false)
    }

    /// Whether layer `il` uses the sliding window.
    pub fn is_swa(&self, il: usize) -> bool {
        self.swa_layers.get(il).copied().unwrap_or(false)
    }

    /// Width of the Q projection (`n_head * head_dim`).
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of the K projection (`n_head_kv * head_dim`).
    pub fn k_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Width of the V projection (`n_head_kv * head_dim_v`).
    pub fn v_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }
}
