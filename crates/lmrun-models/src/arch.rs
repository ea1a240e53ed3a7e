//! The architectures, each one a short description over the shared blocks of [`crate::model`]:
//! which rope layout, which optional pieces (Q/K/V biases, Q/K norms, post-norms, embedding
//! scale, sliding-window layers), which FFN activation. Adding a llama-like architecture means
//! adding one [`ArchSpec`] here; tensor names are the GGUF (llama.cpp) names in [`names`].

use lmrun_kernels::RopeMode;

/// The activation of the gated FFN: `down(act(gate(x)) * up(x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnAct {
    /// SiLU (SwiGLU): llama, qwen2.
    Silu,
    /// GELU with the tanh approximation (GeGLU): gemma.
    GeluTanh,
}

/// Whether an optional piece of a layer is absent, allowed, or required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Never used (even if the file has it).
    No,
    /// Used when the file has it.
    Optional,
    /// The file must have it.
    Required,
}

/// Which layers use sliding-window attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SwaLayout {
    /// Every layer attends to the whole context.
    None,
    /// Layer `il` is global when `il % period == period - 1`, sliding otherwise (gemma3: 6,
    /// gemma2: 2). The window comes from `<arch>.attention.sliding_window`; the period from
    /// `<arch>.attention.sliding_window_pattern` when the file has it (a number, or one bool per
    /// layer, true = sliding).
    Periodic {
        /// Pattern period.
        period: usize,
        /// Rope base of the sliding layers when the file has no `<arch>.rope.freq_base_swa`
        /// (`None`: the global layers' base).
        default_local_rope_base: Option<f32>,
        /// Window when the file has no `<arch>.attention.sliding_window` (`None`: no sliding
        /// layers then).
        default_window: Option<usize>,
    },
}

/// What distinguishes one llama-family architecture from another.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArchSpec {
    /// `general.architecture` value.
    pub name: &'static str,
    /// Rotary layout.
    pub rope_mode: RopeMode,
    /// Biases on the Q, K and V projections (`attn_{q,k,v}.bias`).
    pub qkv_bias: Need,
    /// Bias on the attention output projection (`attn_output.bias`).
    pub out_bias: Need,
    /// Per-head RMSNorm on Q and K before rope (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: Need,
    /// RMSNorm on the attention and FFN outputs before the residual add
    /// (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    /// FFN activation.
    pub ffn_act: FfnAct,
    /// Multiply the token embeddings by √n_embd.
    pub scale_embeddings: bool,
    /// Which layers use sliding-window attention. (The attention scale is 1/√key_length for
    /// every architecture here; `<arch>.attention.scale`, when present, wins.)
    pub sliding: SwaLayout,
    /// Read `<arch>.final_logit_softcapping` and apply it.
    pub logit_softcap: bool,
    /// Rope frequency factors (`rope_freqs.weight`, Llama 3.x) are honoured.
    pub rope_freqs: bool,
    /// Read `<arch>.attn_logit_softcapping` and cap the attention scores with it (gemma2).
    pub attn_softcap: bool,
    /// Layers with no rope: layer `il` skips it when `(il + 1) % n == 0` (smollm3: 4).
    pub nope_every: Option<usize>,
    /// Granite's multipliers: `<arch>.embedding_scale` on the embeddings,
    /// `<arch>.residual_scale` on each block's output before the residual add,
    /// `<arch>.logit_scale` dividing the logits (`<arch>.attention.scale` is read for every
    /// architecture).
    pub multipliers: bool,
    /// Q, K and V may come as one `attn_qkv` matrix (rows: Q, then K, then V) (phi3).
    pub fused_qkv: bool,
    /// Gate and up are one `ffn_up` matrix of `2·n_ff` rows, gate first (phi3).
    pub fused_gate_up: bool,
    /// LongRoPE: per-pair factors `rope_factors_short`/`rope_factors_long` (the long ones when
    /// the context asked for exceeds the original context) and `rope.scaling.attn_factor` on
    /// cos/sin (phi3).
    pub longrope: bool,
    /// How the attention scale is chosen when the file has no `<arch>.attention.scale`.
    pub attn_scale_rule: AttnScaleRule,
}

/// Where the default attention scale comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnScaleRule {
    /// `1/√head_dim`.
    HeadDim,
    /// gemma2: `1/√(n_embd/n_head)` for the 46-layer (27B) model, whose
    /// `query_pre_attn_scalar` is that, else `1/√head_dim` (llama.cpp's rule: the GGUF does not
    /// carry the value).
    Gemma2,
}

/// What every architecture shares unless its entry says otherwise (llama).
const BASE: ArchSpec = ArchSpec {
    name: "llama",
    rope_mode: RopeMode::Normal,
    qkv_bias: Need::Optional,
    out_bias: Need::Optional,
    qk_norm: Need::No,
    post_norms: false,
    ffn_act: FfnAct::Silu,
    scale_embeddings: false,
    sliding: SwaLayout::None,
    logit_softcap: false,
    rope_freqs: true,
    attn_softcap: false,
    nope_every: None,
    multipliers: false,
    fused_qkv: false,
    fused_gate_up: false,
    longrope: false,
    attn_scale_rule: AttnScaleRule::HeadDim,
};

/// llama (also mistral-style and smollm-style files): GQA, interleaved rope, SwiGLU, Llama 3
/// `rope_freqs`. A `llama.attention.sliding_window` key is
/// ignored, as llama.cpp does (Mistral 7B v0.1's window is longer than the contexts run).
pub const LLAMA: ArchSpec = BASE;

/// qwen2: llama with Q/K/V biases and NeoX rope.
pub const QWEN2: ArchSpec = ArchSpec {
    name: "qwen2",
    rope_mode: RopeMode::NeoX,
    qkv_bias: Need::Required,
    out_bias: Need::No,
    rope_freqs: false,
    ..BASE
};

/// qwen3: qwen2 without biases, with per-head RMSNorm on Q and K before rope, and a head size
/// of its own (`attention.key_length`, 128 where n_embd/n_head is 64 or 80).
pub const QWEN3: ArchSpec = ArchSpec {
    name: "qwen3",
    rope_mode: RopeMode::NeoX,
    qkv_bias: Need::No,
    out_bias: Need::No,
    qk_norm: Need::Required,
    rope_freqs: false,
    ..BASE
};

/// gemma3: scaled embeddings, Q/K norms, post-norms, GeGLU, 5 sliding layers per global one.
pub const GEMMA3: ArchSpec = ArchSpec {
    name: "gemma3",
    rope_mode: RopeMode::NeoX,
    qkv_bias: Need::No,
    out_bias: Need::No,
    qk_norm: Need::Required,
    post_norms: true,
    ffn_act: FfnAct::GeluTanh,
    scale_embeddings: true,
    sliding: SwaLayout::Periodic {
        period: 6,
        default_local_rope_base: Some(10_000.0),
        default_window: None,
    },
    logit_softcap: true,
    rope_freqs: false,
    ..BASE
};

/// gemma2: gemma3's layer without Q/K norms, sliding window on every other layer (4096 unless
/// the file says), attention-logit and final-logit tanh soft-capping.
pub const GEMMA2: ArchSpec = ArchSpec {
    name: "gemma2",
    qk_norm: Need::No,
    sliding: SwaLayout::Periodic {
        period: 2,
        default_local_rope_base: None,
        default_window: Some(4096),
    },
    attn_softcap: true,
    attn_scale_rule: AttnScaleRule::Gemma2,
    ..GEMMA3
};

/// phi3 (Phi-3/3.5-mini, Phi-4-mini): fused QKV, gate and up fused in `ffn_up`, NeoX rope over
/// a part of each head (Phi-4-mini: 96 of 128 dims), LongRoPE factors. Phi-3's
/// `sliding_window` key is ignored, as llama.cpp does.
pub const PHI3: ArchSpec = ArchSpec {
    name: "phi3",
    rope_mode: RopeMode::NeoX,
    qkv_bias: Need::Optional,
    out_bias: Need::Optional,
    rope_freqs: false,
    fused_qkv: true,
    fused_gate_up: true,
    longrope: true,
    ..BASE
};

/// smollm3: llama with no rope on every fourth layer.
pub const SMOLLM3: ArchSpec = ArchSpec {
    name: "smollm3",
    nope_every: Some(4),
    ..BASE
};

/// granite (Granite 3.x dense): llama with embedding, residual, attention and logit
/// multipliers.
pub const GRANITE: ArchSpec = ArchSpec {
    name: "granite",
    multipliers: true,
    ..BASE
};

/// mistral3 (Ministral 3): llama with YaRN rope scaling and attention temperature (both read
/// from the file's keys, as for every architecture).
pub const MISTRAL3: ArchSpec = ArchSpec {
    name: "mistral3",
    ..BASE
};

/// Every supported architecture.
pub const ARCHITECTURES: [&ArchSpec; 9] = [
    &LLAMA, &QWEN2, &QWEN3, &GEMMA3, &GEMMA2, &PHI3, &SMOLLM3, &GRANITE, &MISTRAL3,
];

impl ArchSpec {
    /// The spec for a `general.architecture` value.
    pub fn find(name: &str) -> Option<&'static ArchSpec> {
        ARCHITECTURES.iter().copied().find(|a| a.name == name)
    }

    /// Comma-separated names of the supported architectures.
    pub fn supported_list() -> String {
        ARCHITECTURES
            .iter()
            .map(|a| a.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// GGUF tensor names (llama.cpp's `LLM_TENSOR_NAMES`).
pub mod names {
    /// Token embedding table.
    pub const TOKEN_EMBD: &str = "token_embd.weight";
    /// Final norm.
    pub const OUTPUT_NORM: &str = "output_norm.weight";
    /// Output (lm head); absent when tied to the embeddings.
    pub const OUTPUT: &str = "output.weight";
    /// Llama 3.x rope frequency factors.
    pub const ROPE_FREQS: &str = "rope_freqs.weight";

    /// `blk.{il}.{suffix}`.
    pub fn blk(il: usize, suffix: &str) -> String {
        format!("blk.{il}.{suffix}")
    }

    /// Phi-3 LongRoPE factors for contexts up to the original length.
    pub const ROPE_FACTORS_SHORT: &str = "rope_factors_short.weight";
    /// Phi-3 LongRoPE factors for longer contexts.
    pub const ROPE_FACTORS_LONG: &str = "rope_factors_long.weight";
    /// Fused Q/K/V projection (phi3).
    pub const ATTN_QKV: &str = "attn_qkv.weight";

    /// Per-layer tensor suffixes.
    pub const ATTN_NORM: &str = "attn_norm.weight";
    /// Q projection.
    pub const ATTN_Q: &str = "attn_q.weight";
    /// K projection.
    pub const ATTN_K: &str = "attn_k.weight";
    /// V projection.
    pub const ATTN_V: &str = "attn_v.weight";
    /// Q bias.
    pub const ATTN_Q_BIAS: &str = "attn_q.bias";
    /// K bias.
    pub const ATTN_K_BIAS: &str = "attn_k.bias";
    /// V bias.
    pub const ATTN_V_BIAS: &str = "attn_v.bias";
    /// Per-head Q norm.
    pub const ATTN_Q_NORM: &str = "attn_q_norm.weight";
    /// Per-head K norm.
    pub const ATTN_K_NORM: &str = "attn_k_norm.weight";
    /// Attention output projection.
    pub const ATTN_OUT: &str = "attn_output.weight";
    /// Attention output bias.
    pub const ATTN_OUT_BIAS: &str = "attn_output.bias";
    /// Norm on the attention output (gemma).
    pub const POST_ATTN_NORM: &str = "post_attention_norm.weight";
    /// FFN input norm.
    pub const FFN_NORM: &str = "ffn_norm.weight";
    /// FFN gate.
    pub const FFN_GATE: &str = "ffn_gate.weight";
    /// FFN up.
    pub const FFN_UP: &str = "ffn_up.weight";
    /// FFN down.
    pub const FFN_DOWN: &str = "ffn_down.weight";
    /// Norm on the FFN output (gemma).
    pub const POST_FFN_NORM: &str = "post_ffw_norm.weight";
}
