//! Choosing and opening a backend by the file's magic: `GGUF` at byte 0 is a GGUF model run by
//! `lmrun-models` (with its own vocabulary as the default tokenizer); `ET12` at byte 4 is an
//! ExecuTorch program. Also the check that a separately given tokenizer fits the model.

use std::io::Read;
use std::path::Path;

use lmrun_gguf::{GgufFile, LeArray, StrArray};
use lmrun_loader::LoadReport;
use lmrun_models::{Model, ModelOptions};
use lmrun_tokenizers::{GgufTokenizer, GgufVocab, StrList, Tokenizer};

use crate::decoder::{keys, DecoderMemory};
use crate::{RunnerError, RunnerOptions, TextDecoder};

/// Context used when the caller does not choose one and the model's training context is larger.
pub const DEFAULT_CONTEXT_CAP: usize = 4096;

/// A backend opened from a file.
pub struct Opened {
    /// The model.
    pub decoder: Box<dyn TextDecoder>,
    /// The model's own vocabulary, when it carries one.
    pub tokenizer: Option<Box<dyn Tokenizer>>,
    /// Some (id, piece) pairs of the model's own vocabulary, to check a separate tokenizer.
    pub vocab_sample: Vec<(u32, String)>,
    /// The model's architecture name (`general.architecture`; empty for a `.pte`).
    pub arch: String,
    /// The model's own Jinja chat template (`tokenizer.chat_template`), if it carries one.
    pub chat_template: Option<String>,
}

/// The container format of a model file, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GGUF.
    Gguf,
    /// ExecuTorch program (`.pte`).
    Pte,
}

/// Identify the container of `path` from its magic bytes.
pub fn detect_format(path: &Path) -> Result<Format, RunnerError> {
    let mut head = [0u8; 8];
    // By metadata first: a FIFO is refused without blocking on open or losing bytes to a read.
    lmrun_loader::check_regular_file(path)?;
    let mut f =
        std::fs::File::open(path).map_err(|e| lmrun_loader::LoadError::from_io(path, "open", e))?;
    let n = read_up_to(&mut f, &mut head)
        .map_err(|e| lmrun_loader::LoadError::from_io(path, "read", e))?;
    if n >= 4 && &head[..4] == b"GGUF" {
        return Ok(Format::Gguf);
    }
    if n >= 8 && &head[4..8] == b"ET12" {
        return Ok(Format::Pte);
    }
    let what = if n == 0 {
        "the file is empty".to_string()
    } else {
        format!(
            "no GGUF or ExecuTorch magic; first bytes {}",
            head[..n]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    };
    Err(RunnerError::UnknownFormat {
        path: path.to_path_buf(),
        what,
    })
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Open the model at `path` with the options' load mode.
pub fn open(path: &Path, opts: &RunnerOptions) -> Result<Opened, RunnerError> {
    match detect_format(path)? {
        Format::Gguf => open_gguf(path, opts),
        Format::Pte => open_pte(path, opts),
    }
}

fn open_pte(path: &Path, opts: &RunnerOptions) -> Result<Opened, RunnerError> {
    let data: Vec<std::path::PathBuf> = opts.data_path.iter().cloned().collect();
    let mut module = lmrun_pte::Module::from_path(path, &data, opts.load_mode)?;
    if opts.threads > 0 {
        module.set_threads(opts.threads)?;
    }
    let threads = if opts.threads > 0 {
        opts.threads
    } else {
        crate::default_threads()
    };
    Ok(Opened {
        decoder: Box::new(PteDecoder {
            module,
            logits: Vec::new(),
            threads,
        }),
        tokenizer: None,
        vocab_sample: Vec::new(),
        arch: String::new(),
        chat_template: None,
    })
}

/// An ExecuTorch program behind the [`TextDecoder`] seam: metadata methods are the program's
/// constant methods, `forward(tokens, input_pos)` gives the logits.
struct PteDecoder {
    module: lmrun_pte::Module,
    logits: Vec<f32>,
    threads: usize,
}

fn evalue_ints(v: &lmrun_pte::EValue) -> Option<Vec<i64>> {
    use lmrun_pte::EValue as E;
    Some(match v {
        E::Int(i) => vec![*i],
        E::Bool(b) => vec![i64::from(*b)],
        E::Double(d) => vec![*d as i64],
        E::IntList(l) => l.clone(),
        E::BoolList(l) => l.iter().map(|&b| i64::from(b)).collect(),
        _ => return None,
    })
}

impl TextDecoder for PteDecoder {
    fn method_names(&self) -> Vec<String> {
        self.module
            .program()
            .def
            .plans
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    fn get_metadata(&mut self, name: &str) -> Result<Vec<i64>, RunnerError> {
        let outs = self.module.execute(name, &[])?;
        let mut v = Vec::new();
        for o in &outs {
            v.extend(evalue_ints(o).ok_or_else(|| {
                RunnerError::InvalidArgument(format!(
                    "metadata method {name} returned a non-numeric value"
                ))
            })?);
        }
        Ok(v)
    }

    fn load_method(&mut self, method: &str) -> Result<(), RunnerError> {
        if method != "forward" {
            return Err(RunnerError::InvalidArgument(format!(
                "lmrun runs .pte programs through their 'forward' method, not '{method}'"
            )));
        }
        Ok(self.module.load_method(method)?)
    }

    fn is_method_loaded(&self, method: &str) -> bool {
        self.module.is_method_loaded(method)
    }

    fn step(&mut self, tokens: &[u32], start_pos: usize) -> Result<&[f32], RunnerError> {
        let toks: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        self.logits = self.module.forward_logits(&toks, start_pos as i64)?;
        Ok(&self.logits)
    }

    fn load_report(&self) -> LoadReport {
        self.module.load_report()
    }

    fn threads(&self) -> usize {
        self.threads
    }
}

/// A GGUF model opened for direct use, outside the single-sequence [`TextDecoder`] seam (the
/// server drives its sequence slots with [`Model::step_multi`]): the model, its own vocabulary,
/// the load report and what the file says about chat.
pub struct GgufModel {
    /// The model (weights are views of the loaded file).
    pub model: Model,
    /// The file's vocabulary, when it has one.
    pub tokenizer: Option<GgufTokenizer>,
    /// Every 997th vocabulary entry (to check a separate tokenizer against).
    pub vocab_sample: Vec<(u32, String)>,
    /// What the load did.
    pub report: LoadReport,
    /// `general.architecture`.
    pub arch: String,
    /// `tokenizer.chat_template`, when present.
    pub chat_template: Option<String>,
    /// Bytes of tensor data in the file.
    pub tensor_bytes: u64,
}

fn open_gguf(path: &Path, opts: &RunnerOptions) -> Result<Opened, RunnerError> {
    let g = open_gguf_model(path, opts)?;
    // End-of-generation ids as llama.cpp decides them: EOS, EOT, EOM and well-known end
    // markers (`<end_of_turn>`, `<|im_end|>`, …) found in the vocabulary.
    let eos = g
        .tokenizer
        .as_ref()
        .map(|t| t.eog_ids().into_iter().map(i64::from).collect())
        .unwrap_or_default();
    Ok(Opened {
        decoder: Box::new(GgufDecoder {
            model: g.model,
            report: g.report,
            eos,
            method_loaded: false,
            tensor_bytes: g.tensor_bytes,
        }),
        tokenizer: g.tokenizer.map(|t| Box::new(t) as Box<dyn Tokenizer>),
        vocab_sample: g.vocab_sample,
        arch: g.arch,
        chat_template: g.chat_template,
    })
}

/// Open a GGUF file as a [`GgufModel`]: the load mode, prefetch, context and thread options of
/// `opts` apply as for a runner.
pub fn open_gguf_model(path: &Path, opts: &RunnerOptions) -> Result<GgufModel, RunnerError> {
    if opts.data_path.is_some() {
        return Err(RunnerError::InvalidArgument(
            "--data-path is for ExecuTorch .pte programs; a GGUF holds its own weights".into(),
        ));
    }
    let gguf = GgufFile::open(path, opts.load_mode)?;
    // Before anything reads the weights, so read-ahead overlaps with building the model.
    let prefetch = gguf.data().prefetch(opts.prefetch);
    // A GGUF without `tokenizer.ggml.*` keys still runs (bench, or with a tokenizer file).
    let has_vocab = gguf.get_opt::<&str>("tokenizer.ggml.model")?.is_some();
    let (tokenizer, vocab_sample) = if has_vocab {
        let in_file = |source| RunnerError::FileTokenizer {
            path: path.to_path_buf(),
            source,
        };
        let vocab = gguf_vocab(&gguf)?;
        let sample = sample_vocab(&vocab.tokens);
        (
            Some(GgufTokenizer::from_vocab(vocab).map_err(in_file)?),
            sample,
        )
    } else {
        (None, Vec::new())
    };
    let ctx_key = gguf.arch_key("context_length")?;
    let train_ctx = match gguf.get_opt::<u64>(&ctx_key)? {
        Some(0) => {
            log::warn!(
                "{}: {ctx_key} is 0 (the file does not say how long a context the model was \
                 trained for); using at most {DEFAULT_CONTEXT_CAP} positions",
                path.display()
            );
            None
        }
        v => v.map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
    };
    let context_len = opts.context_len.unwrap_or_else(|| {
        train_ctx
            .unwrap_or(DEFAULT_CONTEXT_CAP)
            .min(DEFAULT_CONTEXT_CAP)
    });
    if let Some(trained) = train_ctx {
        if context_len > trained && !opts.allow_long_context {
            return Err(RunnerError::ContextTooLong {
                path: path.to_path_buf(),
                requested: context_len,
                trained,
            });
        }
    }
    let model_opts = ModelOptions {
        context_len,
        kv_dtype: opts.kv_dtype,
        n_threads: opts.threads,
        swa_full: opts.swa_full,
    };
    let model = Model::from_gguf(&gguf, &model_opts)?;
    let mut report = gguf.load_report();
    report.prefetch = prefetch;
    Ok(GgufModel {
        model,
        tokenizer,
        vocab_sample,
        report,
        arch: gguf.architecture()?.to_string(),
        chat_template: gguf
            .get_opt::<&str>("tokenizer.chat_template")?
            .map(str::to_string),
        tensor_bytes: gguf.tensor_bytes(),
    })
}

/// Whether lmrun can run the GGUF at `path`: its architecture, tensors and hyperparameters
/// (checked without allocating a KV cache) and its tokenizer, if it has one. The error says
/// what is missing or wrong.
pub fn check_gguf(path: &Path) -> Result<(), RunnerError> {
    let gguf = GgufFile::open(path, lmrun_loader::LoadMode::Mmap)?;
    Model::check(&gguf)?;
    if gguf.get_opt::<&str>("tokenizer.ggml.model")?.is_some() {
        let vocab = gguf_vocab(&gguf)?;
        GgufTokenizer::from_vocab(vocab).map_err(|source| RunnerError::FileTokenizer {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Read the `tokenizer.ggml.*` keys into a [`GgufVocab`]. The token and merge texts, scores and
/// token types are shared with the file's buffer, not copied (page cache under a mapping).
pub fn gguf_vocab(g: &GgufFile) -> Result<GgufVocab, RunnerError> {
    let model: &str = g.get("tokenizer.ggml.model")?;
    let id = |k: &str| -> Result<Option<u32>, RunnerError> { Ok(g.get_opt::<u32>(k)?) };
    Ok(GgufVocab {
        model: model.to_string(),
        pre: g.get_opt::<&str>("tokenizer.ggml.pre")?.map(str::to_string),
        tokens: g.get::<&StrArray>("tokenizer.ggml.tokens")?.clone(),
        scores: g
            .get_opt::<&LeArray<f32>>("tokenizer.ggml.scores")?
            .cloned(),
        token_types: g
            .get_opt::<&LeArray<i32>>("tokenizer.ggml.token_type")?
            .cloned(),
        merges: g.get_opt::<&StrArray>("tokenizer.ggml.merges")?.cloned(),
        bos_id: id("tokenizer.ggml.bos_token_id")?,
        eos_id: id("tokenizer.ggml.eos_token_id")?,
        unk_id: id("tokenizer.ggml.unknown_token_id")?,
        pad_id: id("tokenizer.ggml.padding_token_id")?,
        eot_id: id("tokenizer.ggml.eot_token_id")?,
        eom_id: id("tokenizer.ggml.eom_token_id")?,
        add_bos: g.get_opt::<bool>("tokenizer.ggml.add_bos_token")?,
        add_eos: g.get_opt::<bool>("tokenizer.ggml.add_eos_token")?,
        add_space_prefix: g.get_opt::<bool>("tokenizer.ggml.add_space_prefix")?,
    })
}

/// Every 997th token (and the last), enough to tell two vocabularies apart cheaply.
fn sample_vocab(tokens: &StrList) -> Vec<(u32, String)> {
    let mut ids: Vec<usize> = (0..tokens.len()).step_by(997).collect();
    if let Some(last) = tokens.len().checked_sub(1) {
        ids.push(last);
    }
    ids.into_iter()
        .map(|i| (i as u32, tokens[i].to_string()))
        .collect()
}

/// Refuse a tokenizer that cannot belong to the model: ids past the model's logits, or pieces
/// that disagree with the model's own vocabulary at most sampled ids.
pub fn check_tokenizer_fits(
    tok: &dyn Tokenizer,
    decoder: &dyn TextDecoder,
    model_vocab: &[(u32, String)],
) -> Result<(), RunnerError> {
    let _ = decoder;
    if let Some(&(last, _)) = model_vocab.last() {
        let model_n = last as usize + 1;
        if tok.vocab_size() > model_n {
            return Err(RunnerError::TokenizerMismatch(format!(
                "the tokenizer has {} tokens but the model only {model_n}",
                tok.vocab_size()
            )));
        }
        let comparable: Vec<_> = model_vocab
            .iter()
            .filter(|(id, _)| (*id as usize) < tok.vocab_size())
            .collect();
        let differ: Vec<_> = comparable
            .iter()
            .filter(|(id, piece)| tok.piece(*id).as_deref() != Some(piece.as_str()))
            .collect();
        if !comparable.is_empty() && differ.len() * 2 > comparable.len() {
            let (id, piece) = differ[0];
            return Err(RunnerError::TokenizerMismatch(format!(
                "{} of {} sampled tokens differ from the model's vocabulary (token {id} is {:?} \
                 in the tokenizer but {piece:?} in the model)",
                differ.len(),
                comparable.len(),
                tok.piece(*id).unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// A GGUF model behind the [`TextDecoder`] seam. Metadata methods are synthesised from the
/// model: `get_max_seq_len` = `get_max_context_len` = the KV capacity (prefill runs in one
/// batched pass), `enable_dynamic_shape` = 1, `use_kv_cache` = 1, `get_eos_ids` from the GGUF.
struct GgufDecoder {
    model: Model,
    report: LoadReport,
    eos: Vec<i64>,
    method_loaded: bool,
    /// The file's tensor bytes.
    tensor_bytes: u64,
}

const METHODS: [&str; 8] = [
    "forward",
    keys::MAX_SEQ_LEN,
    keys::MAX_CONTEXT_LEN,
    keys::ENABLE_DYNAMIC_SHAPE,
    keys::USE_KV_CACHE,
    keys::VOCAB_SIZE,
    keys::EOS_IDS,
    "get_n_layers",
];

impl TextDecoder for GgufDecoder {
    fn method_names(&self) -> Vec<String> {
        let mut v: Vec<String> = METHODS
            .iter()
            .filter(|m| **m != keys::EOS_IDS || !self.eos.is_empty())
            .map(|s| s.to_string())
            .collect();
        v.sort();
        v
    }

    fn get_metadata(&mut self, name: &str) -> Result<Vec<i64>, RunnerError> {
        let c = self.model.config();
        Ok(match name {
            keys::MAX_SEQ_LEN | keys::MAX_CONTEXT_LEN => vec![self.model.context_len() as i64],
            keys::ENABLE_DYNAMIC_SHAPE | keys::USE_KV_CACHE => vec![1],
            keys::VOCAB_SIZE => vec![c.n_vocab as i64],
            keys::EOS_IDS => self.eos.clone(),
            "get_n_layers" => vec![c.n_layer as i64],
            other => return Err(RunnerError::MissingMethod(other.to_string())),
        })
    }

    fn load_method(&mut self, method: &str) -> Result<(), RunnerError> {
        if method != "forward" {
            return Err(RunnerError::MissingMethod(method.to_string()));
        }
        self.method_loaded = true;
        Ok(())
    }

    fn is_method_loaded(&self, method: &str) -> bool {
        self.method_loaded && method == "forward"
    }

    fn step(&mut self, tokens: &[u32], start_pos: usize) -> Result<&[f32], RunnerError> {
        Ok(self.model.step(tokens, start_pos, false)?)
    }

    fn shift(&mut self, n_keep: usize, n_discard: usize) -> Result<(), RunnerError> {
        Ok(self.model.shift_slot(0, n_keep, n_discard)?)
    }

    fn can_restart_at(&self, start_pos: usize) -> bool {
        self.model.n_past().saturating_sub(start_pos) <= self.model.max_rewind()
    }

    fn set_cancel_flag(&mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.model.set_cancel_flag(Some(flag));
    }

    fn load_report(&self) -> LoadReport {
        self.report.clone()
    }

    fn threads(&self) -> usize {
        self.model.n_threads()
    }

    fn memory(&self) -> DecoderMemory {
        DecoderMemory {
            weight_bytes: self.tensor_bytes,
            kv_cache_bytes: self.model.kv_cache_bytes() as u64,
            kv_cache_sliding_bytes: self.model.kv_cache_bytes_by_kind().1 as u64,
            scratch_bytes: self.model.scratch_bytes() as u64,
        }
    }
}
