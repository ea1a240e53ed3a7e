//! The options `run` and `chat` share: which model and how it is loaded and computed
//! ([`ModelArgs`], which also builds the runner) and how tokens are sampled ([`SamplingArgs`]).

use std::path::PathBuf;

use anyhow::bail;
use lmrun::{GenerationConfig, LoadMode, RunnerOptions, TextLLMRunner};

/// Options shared by `run` and `chat`: the model and how it is loaded and computed.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model file (GGUF, or an ExecuTorch .pte).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,

    /// Tokenizer file or directory (default: the model's own vocabulary).
    #[arg(short = 't', long = "tokenizer")]
    pub tokenizer: Option<PathBuf>,

    /// External weights (.ptd) for a .pte program.
    #[arg(long)]
    pub data_path: Option<PathBuf>,

    /// How the model file is loaded.
    #[arg(long, default_value_t = lmrun::DEFAULT_LOAD_MODE)]
    pub load_mode: LoadMode,

    /// Prefetch the mapped weights: none, willneed (MADV_WILLNEED: start read-ahead) or
    /// populate (MADV_POPULATE_READ: read every page before the first token). Helps a cold
    /// start; no effect in the file mode.
    #[arg(long, default_value_t = lmrun_loader::Prefetch::None)]
    pub prefetch: lmrun_loader::Prefetch,

    /// Compute threads [default: the number of physical cores].
    #[arg(long)]
    pub threads: Option<usize>,

    /// KV-cache capacity in tokens [default: the model's training context, at most 4096].
    #[arg(long = "ctx-size", short = 'c')]
    pub ctx_size: Option<usize>,

    /// Allow a --ctx-size above the model's training context (quality degrades past it).
    #[arg(long)]
    pub allow_long_context: bool,

    /// KV cache element type: f16, f32, or q8_0 (about half of f16's memory).
    #[arg(long, value_enum, default_value_t = CacheType::F16)]
    pub cache_type: CacheType,

    /// Keep the whole context in sliding-window layers' KV caches (default: a ring of the
    /// window + 511 positions, which is all they attend to).
    #[arg(long)]
    pub swa_full: bool,

    /// The method that computes logits.
    #[arg(long = "method", default_value = "forward")]
    pub method: String,
}

impl ModelArgs {
    /// Build the runner these arguments describe.
    pub fn runner(&self, temperature: Option<f32>) -> anyhow::Result<TextLLMRunner> {
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        if self.ctx_size == Some(0) {
            bail!("--ctx-size must be at least 1");
        }
        if let Some(t) = self.threads {
            warn_threads(t);
        }
        let opts = RunnerOptions {
            tokenizer_path: self.tokenizer.clone(),
            data_path: self.data_path.clone(),
            temperature: temperature.unwrap_or(-1.0),
            method_name: self.method.clone(),
            load_mode: self.load_mode,
            threads: self.threads.unwrap_or(0),
            context_len: self.ctx_size,
            prefetch: self.prefetch,
            allow_long_context: self.allow_long_context,
            swa_full: self.swa_full,
            kv_dtype: match self.cache_type {
                CacheType::F16 => lmrun::KvDtype::F16,
                CacheType::F32 => lmrun::KvDtype::F32,
                CacheType::Q8_0 => lmrun::KvDtype::Q8_0,
            },
        };
        lmrun::create_text_llm_runner_with(&self.model, &opts)
            .map_err(|e| crate::hints::runner_error(e, &self.model, self.ctx_size))
    }
}

/// Sampling options shared by `run` and `chat`.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1.0 = off).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Drop tokens below min-p × the top probability (0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Repetition penalty (1.0 = off).
    #[arg(
        long = "repeat-penalty",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over.
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Subtract this from the logit of every token in the last --repeat-last-n (0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// Subtract this × the token's count in the last --repeat-last-n (0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub frequency_penalty: f32,
    /// Add BIAS to token ID's logit: ID=BIAS, or ID=-inf to ban it (repeatable).
    #[arg(long = "logit-bias", value_parser = parse_logit_bias)]
    pub logit_bias: Vec<(u32, f32)>,
    /// Locally typical sampling mass (1.0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub typical_p: f32,
    /// Mirostat version (0 = off, 2 = mirostat v2; replaces top-k/top-p/min-p/typical-p).
    #[arg(long, default_value_t = 0)]
    pub mirostat: u8,
    /// Mirostat target surprise (bits).
    #[arg(long, default_value_t = 5.0)]
    pub mirostat_tau: f32,
    /// Mirostat learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub mirostat_eta: f32,
    /// Report each generated token's log-probability and this many alternatives (with
    /// --output json).
    #[arg(long, default_value_t = 0)]
    pub n_probs: usize,
    /// Stop when the text contains this string (repeatable; the string is not printed).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Constrain the output to a GBNF grammar (llama.cpp's format) read from FILE.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["grammar", "json_schema"])]
    pub grammar_file: Option<std::path::PathBuf>,
    /// Constrain the output to this GBNF grammar.
    #[arg(long, conflicts_with = "json_schema")]
    pub grammar: Option<String>,
    /// Constrain the output to JSON following this schema (a file, or the JSON itself).
    #[arg(long, value_name = "FILE|JSON")]
    pub json_schema: Option<String>,
    /// When the context is full: `error` (stop there), or `shift` (keep the first --keep
    /// tokens, drop the oldest half of the rest, go on).
    #[arg(long, value_enum, default_value_t = Overflow::Error)]
    pub context_overflow: Overflow,
    /// Tokens a context shift keeps at the start (0 = just the BOS token).
    #[arg(long, default_value_t = 0)]
    pub keep: usize,
}

/// `--cache-type` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheType {
    /// IEEE half (default).
    F16,
    /// 32-bit float.
    F32,
    /// 8-bit blocks with f16 scales.
    #[value(name = "q8_0")]
    Q8_0,
}

/// `--context-overflow` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Stop (or refuse a prompt that does not fit).
    Error,
    /// Context shift.
    Shift,
}

impl SamplingArgs {
    /// The GBNF text of --grammar-file, --grammar or --json-schema, checked here so a bad one
    /// fails before the model loads, with its file named.
    fn grammar_text(&self) -> anyhow::Result<Option<String>> {
        use lmrun::grammar::{json_schema_str_to_gbnf, Grammar};
        let (text, from) = if let Some(p) = &self.grammar_file {
            let t = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read --grammar-file {}: {e}", p.display()))?;
            (t, p.display().to_string())
        } else if let Some(g) = &self.grammar {
            (g.clone(), "--grammar".to_string())
        } else if let Some(s) = &self.json_schema {
            let (json, from) = if s.trim_start().starts_with('{') {
                (s.clone(), "--json-schema".to_string())
            } else {
                let t = std::fs::read_to_string(s)
                    .map_err(|e| anyhow::anyhow!("cannot read --json-schema file {s}: {e}"))?;
                (t, s.clone())
            };
            let g = json_schema_str_to_gbnf(&json).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
            (g, from)
        } else {
            return Ok(None);
        };
        Grammar::parse(&text).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
        Ok(Some(text))
    }
}

/// `ID=BIAS` for --logit-bias.
fn parse_logit_bias(s: &str) -> Result<(u32, f32), String> {
    let (id, bias) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not ID=BIAS (e.g. 42=-inf or 42=2.5)"))?;
    let id: u32 = id
        .trim()
        .parse()
        .map_err(|_| format!("'{id}' is not a token id"))?;
    let bias: f32 = match bias.trim() {
        "-inf" | "-infinity" => f32::NEG_INFINITY,
        b => b
            .parse()
            .ok()
            .filter(|v: &f32| v.is_finite())
            .ok_or_else(|| format!("'{b}' is not a finite number or -inf"))?,
    };
    Ok((id, bias))
}

impl SamplingArgs {
    /// Check ranges and fill a config.
    pub fn apply(&self, cfg: &mut GenerationConfig) -> anyhow::Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            bail!("--temperature must be a number >= 0");
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            bail!("--top-p must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            bail!("--min-p must be between 0 and 1");
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            bail!("--repeat-penalty must be a number > 0");
        }
        for (name, v) in [
            ("--presence-penalty", self.presence_penalty),
            ("--frequency-penalty", self.frequency_penalty),
        ] {
            if !v.is_finite() {
                bail!("{name} must be a finite number");
            }
        }
        if !(self.typical_p > 0.0 && self.typical_p <= 1.0) {
            bail!("--typical-p must be above 0 and at most 1");
        }
        let mirostat = match self.mirostat {
            0 => None,
            2 => {
                if !(self.mirostat_tau.is_finite() && self.mirostat_tau > 0.0) {
                    bail!("--mirostat-tau must be a number > 0");
                }
                if !(self.mirostat_eta.is_finite() && self.mirostat_eta > 0.0) {
                    bail!("--mirostat-eta must be a number > 0");
                }
                Some((self.mirostat_tau, self.mirostat_eta))
            }
            v => bail!("--mirostat {v} is not supported (0 = off, 2 = mirostat v2)"),
        };
        cfg.temperature = self.temperature;
        cfg.top_k = self.top_k;
        cfg.top_p = self.top_p;
        cfg.min_p = self.min_p;
        cfg.repetition_penalty = self.repeat_penalty;
        cfg.repetition_window = self.repeat_last_n;
        cfg.seed = self.seed;
        cfg.presence_penalty = self.presence_penalty;
        cfg.frequency_penalty = self.frequency_penalty;
        cfg.logit_bias = self.logit_bias.clone();
        cfg.typical_p = self.typical_p;
        cfg.mirostat = mirostat;
        cfg.n_probs = self.n_probs;
        cfg.stop = self.stop.clone();
        cfg.context_overflow = match self.context_overflow {
            Overflow::Error => lmrun::ContextOverflow::Error,
            Overflow::Shift => lmrun::ContextOverflow::Shift,
        };
        cfg.n_keep = self.keep;
        cfg.grammar = self.grammar_text()?;
        Ok(())
    }
}

/// Warn (once per process) when more threads are asked for than the machine has cores: the
/// extra threads only wait on each other.
pub fn warn_threads(threads: usize) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if cores > 0 && threads > cores {
        WARNED.call_once(|| {
            log::warn!(
                "--threads {threads} is more than the {cores} cores this process may use; the \
                 extra threads only slow it down (use --threads {cores} or fewer)"
            );
        });
    }
}
