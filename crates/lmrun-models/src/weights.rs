//! The tensor table: every weight an architecture needs, looked up by its GGUF name, checked
//! against the hyperparameters (shape, and a type the kernels can compute with) and kept as a
//! [`Buffer`] slice of the loaded data section. In the mmap modes that slice *is* the mapping:
//! matrices are never copied, dequantized or repacked. Only the small 1-D tensors (norm
//! weights, biases, rope frequency factors — a few KiB per layer) are decoded into `Vec<f32>`.

use lmrun_gguf::{GgufFile, TensorInfo};
use lmrun_kernels::{dequantize_row, QType, WeightRef};
use lmrun_loader::Buffer;

use crate::arch::{names, ArchSpec, Need};
use crate::config::ModelConfig;
use crate::ModelError;

/// A 2-D weight used in place: `rows` × `cols` values of `qtype` (GGUF shape `[cols, rows]`).
#[derive(Debug, Clone)]
pub struct Weight {
    /// Tensor name (for messages).
    pub name: String,
    /// Element type.
    pub qtype: QType,
    /// Output dimension.
    pub rows: usize,
    /// Input dimension.
    pub cols: usize,
    /// The bytes (a slice of the loaded data section).
    pub data: Buffer,
}

impl Weight {
    /// Rows `r` of this matrix as a matrix of their own, sharing the bytes (a fused QKV or
    /// gate+up tensor split into its parts without a copy).
    fn rows(&self, r: std::ops::Range<usize>, part: &str) -> Result<Weight, ModelError> {
        let rb = self.qtype.row_bytes(self.cols).unwrap_or(0);
        let data =
            self.data
                .slice(r.start * rb..r.end * rb)
                .ok_or_else(|| ModelError::BadShape {
                    name: self.name.clone(),
                    expected: vec![self.cols as u64, r.end as u64],
                    found: vec![self.cols as u64, self.rows as u64],
                })?;
        Ok(Weight {
            name: format!("{} ({part})", self.name),
            qtype: self.qtype,
            rows: r.len(),
            cols: self.cols,
            data,
        })
    }

    /// A kernel view of the weight.
    pub fn as_ref(&self) -> WeightRef<'_> {
        WeightRef {
            qtype: self.qtype,
            data: &self.data,
            rows: self.rows,
            cols: self.cols,
        }
    }
}

/// The weights of one transformer block.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// Input norm of the attention block.
    pub attn_norm: Vec<f32>,
    /// Q projection.
    pub wq: Weight,
    /// K projection.
    pub wk: Weight,
    /// V projection.
    pub wv: Weight,
    /// Q, K, V biases.
    pub bq: Option<Vec<f32>>,
    /// K bias.
    pub bk: Option<Vec<f32>>,
    /// V bias.
    pub bv: Option<Vec<f32>>,
    /// Per-head Q norm (head_dim values).
    pub q_norm: Option<Vec<f32>>,
    /// Per-head K norm.
    pub k_norm: Option<Vec<f32>>,
    /// Attention output projection.
    pub wo: Weight,
    /// Its bias.
    pub bo: Option<Vec<f32>>,
    /// Norm of the attention output (gemma).
    pub post_attn_norm: Option<Vec<f32>>,
    /// Input norm of the FFN block.
    pub ffn_norm: Vec<f32>,
    /// FFN gate.
    pub gate: Weight,
    /// FFN up.
    pub up: Weight,
    /// FFN down.
    pub down: Weight,
    /// Norm of the FFN output (gemma).
    pub post_ffn_norm: Option<Vec<f32>>,
}

/// All weights of a model.
#[derive(Debug, Clone)]
pub struct ModelWeights {
    /// Token embedding table (`n_vocab` rows of `n_embd`).
    pub token_embd: Weight,
    /// Final norm.
    pub output_norm: Vec<f32>,
    /// Output matrix (a clone of the embedding handle when tied).
    pub output: Weight,
    /// Rope frequency factors (Llama 3.x, or Phi-3's short LongRoPE factors), `n_rot / 2`
    /// values.
    pub rope_freqs: Option<Vec<f32>>,
    /// Phi-3's long LongRoPE factors (used instead for contexts past the original one).
    pub rope_freqs_long: Option<Vec<f32>>,
    /// Blocks.
    pub layers: Vec<LayerWeights>,
}

struct Loader<'g> {
    gguf: &'g GgufFile,
    arch: &'static str,
}

impl Loader<'_> {
    fn info(&self, name: &str) -> Result<&TensorInfo, ModelError> {
        self.gguf
            .tensor_info(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                arch: self.arch.to_string(),
            })
    }

    fn qtype(&self, info: &TensorInfo, role: &'static str) -> Result<QType, ModelError> {
        QType::from_ggml_id(info.ggml_type.id())
            .filter(|q| q.is_weight_type())
            .ok_or_else(|| ModelError::UnsupportedType {
                name: info.name.clone(),
                ggml_type: info.ggml_type.name().to_string(),
                role,
            })
    }

    /// A matrix with GGUF shape `[cols, rows]`.
    fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<Weight, ModelError> {
        let info = self.info(name)?;
        let expected = vec![cols as u64, rows as u64];
        if info.shape != expected {
            return Err(ModelError::BadShape {
                name: name.to_string(),
                expected,
                found: info.shape.clone(),
            });
        }
        let qtype = self.qtype(info, "as a matmul weight")?;
        if qtype.row_bytes(cols).is_none() {
            return Err(ModelError::UnsupportedType {
                name: name.to_string(),
                ggml_type: qtype.name().to_string(),
                role: "for a row length that is not a multiple of its block size",
            });
        }
        let t = self.gguf.tensor_owned(name)?;
        let w = Weight {
            name: name.to_string(),
            qtype,
            rows,
            cols,
            data: t.bytes,
        };
        WeightRef::new(w.qtype, &w.data, rows, cols)?;
        Ok(w)
    }

    /// A 1-D tensor of `n` values, decoded to f32.
    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let info = self.info(name)?;
        let expected = vec![n as u64];
        if info.shape != expected {
            return Err(ModelError::BadShape {
                name: name.to_string(),
                expected,
                found: info.shape.clone(),
            });
        }
        let qtype = self.qtype(info, "for a vector")?;
        if qtype.row_bytes(n).is_none() {
            return Err(ModelError::UnsupportedType {
                name: name.to_string(),
                ggml_type: qtype.name().to_string(),
                role: "for a vector of this length",
            });
        }
        let view = self.gguf.tensor(name)?;
        let mut out = vec![0f32; n];
        dequantize_row(qtype, view.bytes, &mut out)?;
        Ok(out)
    }

    fn opt_vector(&self, name: &str, n: usize, need: Need) -> Result<Option<Vec<f32>>, ModelError> {
        match need {
            Need::No => Ok(None),
            Need::Optional if !self.gguf.has_tensor(name) => Ok(None),
            _ => self.vector(name, n).map(Some),
        }
    }
}

impl ModelWeights {
    /// Looks up and checks every tensor of `spec` for the shapes in `cfg`.
    pub fn from_gguf(
        gguf: &GgufFile,
        spec: &'static ArchSpec,
        cfg: &ModelConfig,
    ) -> Result<ModelWeights, ModelError> {
        let l = Loader {
            gguf,
            arch: spec.name,
        };
        let e = cfg.n_embd;
        let token_embd = l.matrix(names::TOKEN_EMBD, e, cfg.n_vocab)?;
        let output = if cfg.tied_output {
            token_embd.clone()
        } else {
            l.matrix(names::OUTPUT, e, cfg.n_vocab)?
        };
        let output_norm = l.vector(names::OUTPUT_NORM, e)?;
        let factors = |name: &str| -> Result<Vec<f32>, ModelError> {
            let f = l.vector(name, cfg.rope.n_rot / 2)?;
            if f.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(ModelError::BadHyperparameter {
                    key: name.into(),
                    what: "frequency factors must be positive and finite".into(),
                });
            }
            Ok(f)
        };
        let (rope_freqs, rope_freqs_long) = if !cfg.rope.has_freq_factors {
            (None, None)
        } else if spec.longrope {
            (
                Some(factors(names::ROPE_FACTORS_SHORT)?),
                Some(factors(names::ROPE_FACTORS_LONG)?),
            )
        } else {
            (Some(factors(names::ROPE_FREQS)?), None)
        };
        let (qd, kd, vd) = (cfg.q_dim(), cfg.k_dim(), cfg.v_dim());
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for il in 0..cfg.n_layer {
            let n = |s: &str| names::blk(il, s);
            let post = if spec.post_norms {
                Need::Required
            } else {
                Need::No
            };
            let (wq, wk, wv) = if spec.fused_qkv && gguf.has_tensor(&n(names::ATTN_QKV)) {
                let qkv = l.matrix(&n(names::ATTN_QKV), e, qd + kd + vd)?;
                (
                    qkv.rows(0..qd, "Q")?,
                    qkv.rows(qd..qd + kd, "K")?,
                    qkv.rows(qd + kd..qd + kd + vd, "V")?,
                )
            } else {
                (
                    l.matrix(&n(names::ATTN_Q), e, qd)?,
                    l.matrix(&n(names::ATTN_K), e, kd)?,
                    l.matrix(&n(names::ATTN_V), e, vd)?,
                )
            };
            let (gate, up) = if spec.fused_gate_up {
                let gu = l.matrix(&n(names::FFN_UP), e, 2 * cfg.n_ff)?;
                (
                    gu.rows(0..cfg.n_ff, "gate")?,
                    gu.rows(cfg.n_ff..2 * cfg.n_ff, "up")?,
                )
            } else {
                (
                    l.matrix(&n(names::FFN_GATE), e, cfg.n_ff)?,
                    l.matrix(&n(names::FFN_UP), e, cfg.n_ff)?,
                )
            };
            layers.push(LayerWeights {
                attn_norm: l.vector(&n(names::ATTN_NORM), e)?,
                wq,
                wk,
                wv,
                bq: l.opt_vector(&n(names::ATTN_Q_BIAS), qd, spec.qkv_bias)?,
                bk: l.opt_vector(&n(names::ATTN_K_BIAS), kd, spec.qkv_bias)?,
                bv: l.opt_vector(&n(names::ATTN_V_BIAS), vd, spec.qkv_bias)?,
                q_norm: l.opt_vector(&n(names::ATTN_Q_NORM), cfg.head_dim, spec.qk_norm)?,
                k_norm: l.opt_vector(&n(names::ATTN_K_NORM), cfg.head_dim, spec.qk_norm)?,
                wo: l.matrix(&n(names::ATTN_OUT), cfg.n_head * cfg.head_dim_v, e)?,
                bo: l.opt_vector(&n(names::ATTN_OUT_BIAS), e, spec.out_bias)?,
                post_attn_norm: l.opt_vector(&n(names::POST_ATTN_NORM), e, post)?,
                ffn_norm: l.vector(&n(names::FFN_NORM), e)?,
                gate,
                up,
                down: l.matrix(&n(names::FFN_DOWN), cfg.n_ff, e)?,
                post_ffn_norm: l.opt_vector(&n(names::POST_FFN_NORM), e, post)?,
            });
        }
        Ok(ModelWeights {
            token_embd,
            output_norm,
            output,
            rope_freqs,
            rope_freqs_long,
            layers,
        })
    }

    /// Use Phi-3's long LongRoPE factors (llama.cpp does when the context asked for is longer
    /// than the original training context).
    pub fn use_long_rope_factors(&mut self) {
        if let Some(l) = self.rope_freqs_long.take() {
            self.rope_freqs = Some(l);
        }
    }

    /// Bytes of the matrices (what one decode step reads).
    pub fn matrix_bytes(&self) -> usize {
        let mut n = self.output.data.len();
        for l in &self.layers {
            for w in [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down] {
                n += w.data.len();
            }
        }
        n
    }
}
