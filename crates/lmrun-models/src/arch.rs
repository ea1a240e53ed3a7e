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
    /// Layer `il` is global when `il % period == period - 1`, sliding otherwise (gemma3: 6).
    /// The window comes from `<arch>.attention.sliding_window`.
    Periodic {
        /// Pattern period.
        period: usize,
        /// Rope base of the sliding layers when the file has no `<arch>.rope.freq_base_swa`.
        default_local_rope_base: f32,
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
}

/// llama (also mistral-style and smollm-style files): GQA, interleaved rope, SwiGLU.
pub const LLAMA: ArchSpec = ArchSpec {
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
};

/// qwen2: llama with Q/K/V biases and NeoX rope.
pub const QWEN2: ArchSpec = ArchSpec {
    name: "qwen2",
    rope_mode: RopeMode::NeoX,
    qkv_bias: Need::Required,
    out_bias: Need::No,
    qk_norm: Need::No,
    post_norms: false,
    ffn_act: FfnAct::Silu,
    scale_embeddings: false,
    sliding: SwaLayout::None,
    logit_softcap: false,
    rope_freqs: false,
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
        default_local_rope_base: 10_000.0,
    },
    logit_softcap: true,
    rope_freqs: false,
};

/// Every supported architecture.
pub const ARCHITECTURES: [&ArchSpec; 3] = [&LLAMA, &QWEN2, &GEMMA3];

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
