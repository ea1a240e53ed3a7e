//! What `lmrun inspect` shows: a serializable summary of a GGUF file (architecture and
//! hyperparameters, parameter count, bytes per ggml type, tokenizer facts, the load report, the
//! tensor table and the metadata with large arrays summarised) and a plain-text rendering of it.
//! The CLI only calls [`inspect`] and prints [`render_text`] or the JSON; the logic lives here so
//! library users get the same answers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use lmrun_loader::{LoadMode, LoadReport};
use serde::Serialize;

use crate::error::Result;
use crate::file::GgufFile;
use crate::types::GgmlType;
use crate::value::{MetaArray, MetaValue};

/// Arrays longer than this are summarised by element type and length.
pub const MAX_ARRAY_SHOWN: usize = 16;

/// A summary of a GGUF file, as `lmrun inspect` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The file's path, if it came from a file.
    pub path: Option<String>,
    /// The file's size in bytes.
    pub file_size: u64,
    /// GGUF version.
    pub gguf_version: u32,
    /// Data section alignment.
    pub alignment: u64,
    /// Where the data section starts.
    pub data_offset: u64,
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// The scalar `<arch>.*` keys (hyperparameters), by key.
    pub hyperparameters: BTreeMap<String, SummaryValue>,
    /// Sum of the tensors' element counts.
    pub parameter_count: u64,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Sum of the tensors' byte sizes.
    pub tensor_bytes: u64,
    /// Tensors, elements and bytes per ggml type, most bytes first.
    pub bytes_per_type: Vec<TypeBytes>,
    /// Tokenizer facts from `tokenizer.*`.
    pub tokenizer: TokenizerSummary,
    /// What loading the file did.
    pub load: LoadReport,
    /// Every tensor, in file order.
    pub tensors: Vec<TensorRow>,
    /// Every metadata pair, in file order.
    pub metadata: Vec<MetaRow>,
}

/// Totals for one ggml type.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TypeBytes {
    /// The type.
    pub ggml_type: GgmlType,
    /// Whether ggml has removed the type.
    pub removed: bool,
    /// Number of tensors of this type.
    pub tensors: usize,
    /// Their elements.
    pub elements: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Tokenizer facts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TokenizerSummary {
    /// `tokenizer.ggml.model` (`llama` = SentencePiece, `gpt2` = byte-level BPE, …).
    pub model: Option<String>,
    /// `tokenizer.ggml.pre` (the pre-tokenizer).
    pub pre: Option<String>,
    /// Length of `tokenizer.ggml.tokens`.
    pub vocab_size: Option<usize>,
    /// Length of `tokenizer.ggml.merges`.
    pub merges: Option<usize>,
    /// The `tokenizer.ggml.<name>_token_id` keys, by `<name>` (`bos`, `eos`, …).
    pub special_token_ids: BTreeMap<String, i64>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos_token: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos_token: Option<bool>,
    /// Whether `tokenizer.chat_template` is present.
    pub has_chat_template: bool,
}

/// One row of the tensor table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TensorRow {
    /// Name.
    pub name: String,
    /// ggml type.
    pub ggml_type: GgmlType,
    /// Shape, ggml order.
    pub shape: Vec<u64>,
    /// Where its data starts in the file.
    pub offset: u64,
    /// Bytes of data.
    pub bytes: u64,
}

/// One metadata pair.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetaRow {
    /// Key.
    pub key: String,
    /// Type: `u32`, `string`, `array<f32>[262144]`, …
    #[serde(rename = "type")]
    pub type_name: String,
    /// Value (large arrays summarised).
    pub value: SummaryValue,
}

/// A metadata value for display: scalars as they are, arrays of up to [`MAX_ARRAY_SHOWN`]
/// elements in full, longer ones as their element type and length.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum SummaryValue {
    /// Unsigned integer.
    Unsigned(u64),
    /// Signed integer.
    Signed(i64),
    /// `f32` (serialized in its shortest form).
    F32(f32),
    /// `f64`.
    F64(f64),
    /// Bool.
    Bool(bool),
    /// String.
    String(String),
    /// A short array.
    Array(Vec<SummaryValue>),
    /// A long array.
    Summarised {
        /// Element type.
        element_type: String,
        /// Number of elements.
        len: usize,
    },
}

impl SummaryValue {
    /// The display form of a metadata value.
    pub fn from_meta(v: &MetaValue) -> SummaryValue {
        use MetaValue as V;
        match v {
            V::U8(x) => SummaryValue::Unsigned((*x).into()),
            V::U16(x) => SummaryValue::Unsigned((*x).into()),
            V::U32(x) => SummaryValue::Unsigned((*x).into()),
            V::U64(x) => SummaryValue::Unsigned(*x),
            V::I8(x) => SummaryValue::Signed((*x).into()),
            V::I16(x) => SummaryValue::Signed((*x).into()),
            V::I32(x) => SummaryValue::Signed((*x).into()),
            V::I64(x) => SummaryValue::Signed(*x),
            V::F32(x) => SummaryValue::F32(*x),
            V::F64(x) => SummaryValue::F64(*x),
            V::Bool(b) => SummaryValue::Bool(*b),
            V::String(s) => SummaryValue::String(s.clone()),
            V::Array(a) => SummaryValue::from_array(a),
        }
    }

    fn from_array(a: &MetaArray) -> SummaryValue {
        if a.len() > MAX_ARRAY_SHOWN {
            return SummaryValue::Summarised {
                element_type: a.element_type().name().to_string(),
                len: a.len(),
            };
        }
        SummaryValue::Array(
            (0..a.len())
                .filter_map(|i| a.get(i))
                .map(|v| SummaryValue::from_meta(&v))
                .collect(),
        )
    }

    /// One-line text form; strings longer than `max_str` characters are cut.
    pub fn to_text(&self, max_str: usize) -> String {
        match self {
            SummaryValue::Unsigned(x) => x.to_string(),
            SummaryValue::Signed(x) => x.to_string(),
            SummaryValue::F32(x) => x.to_string(),
            SummaryValue::F64(x) => x.to_string(),
            SummaryValue::Bool(x) => x.to_string(),
            SummaryValue::String(s) => {
                let n = s.chars().count();
                if n > max_str {
                    let cut: String = s.chars().take(max_str).collect();
                    format!("{cut:?}… ({n} chars)")
                } else {
                    format!("{s:?}")
                }
            }
            SummaryValue::Array(v) => {
                let items: Vec<String> = v.iter().map(|x| x.to_text(max_str)).collect();
                format!("[{}]", items.join(", "))
            }
            SummaryValue::Summarised { element_type, len } => {
                format!("[{len} × {element_type}]")
            }
        }
    }
}

/// Open a GGUF file with a load mode and summarise it: what `lmrun inspect` does.
pub fn inspect(path: &Path, mode: LoadMode) -> Result<Summary> {
    Ok(GgufFile::open(path, mode)?.summary())
}

impl GgufFile {
    /// Tensors, elements and bytes per ggml type, most bytes first.
    pub fn bytes_per_type(&self) -> Vec<TypeBytes> {
        let mut by: BTreeMap<GgmlType, TypeBytes> = BTreeMap::new();
        for t in self.tensors() {
            let e = by.entry(t.ggml_type).or_insert(TypeBytes {
                ggml_type: t.ggml_type,
                removed: t.ggml_type.is_removed(),
                tensors: 0,
                elements: 0,
                bytes: 0,
            });
            e.tensors += 1;
            e.elements = e.elements.saturating_add(t.n_elements());
            e.bytes = e.bytes.saturating_add(t.n_bytes);
        }
        let mut v: Vec<TypeBytes> = by.into_values().collect();
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.ggml_type.cmp(&b.ggml_type)));
        v
    }

    /// Tokenizer facts from the `tokenizer.*` keys (absent or mistyped keys give `None`).
    pub fn tokenizer_summary(&self) -> TokenizerSummary {
        let md = self.metadata();
        let special_token_ids = md
            .iter()
            .filter_map(|(k, v)| {
                let name = k
                    .strip_prefix("tokenizer.ggml.")?
                    .strip_suffix("_token_id")?;
                let id = i64::try_from(v.as_integer()?).ok()?;
                Some((name.to_string(), id))
            })
            .collect();
        TokenizerSummary {
            model: md
                .get_opt::<&str>("tokenizer.ggml.model")
                .ok()
                .flatten()
                .map(str::to_string),
            pre: md
                .get_opt::<&str>("tokenizer.ggml.pre")
                .ok()
                .flatten()
                .map(str::to_string),
            vocab_size: md
                .value("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
                .map(MetaArray::len),
            merges: md
                .value("tokenizer.ggml.merges")
                .and_then(|v| v.as_array())
                .map(MetaArray::len),
            special_token_ids,
            add_bos_token: md.get_opt("tokenizer.ggml.add_bos_token").ok().flatten(),
            add_eos_token: md.get_opt("tokenizer.ggml.add_eos_token").ok().flatten(),
            has_chat_template: md.contains_key("tokenizer.chat_template"),
        }
    }

    /// The summary `lmrun inspect` shows.
    pub fn summary(&self) -> Summary {
        let md = self.metadata();
        let architecture = md.architecture().ok().map(str::to_string);
        let hyperparameters = match &architecture {
            Some(arch) => {
                let prefix = format!("{arch}.");
                md.iter()
                    .filter(|(k, v)| k.starts_with(&prefix) && v.as_array().is_none())
                    .map(|(k, v)| (k.to_string(), SummaryValue::from_meta(v)))
                    .collect()
            }
            None => BTreeMap::new(),
        };
        Summary {
            path: self.path().map(|p| p.display().to_string()),
            file_size: self.file_size(),
            gguf_version: self.version(),
            alignment: self.alignment(),
            data_offset: self.data_offset(),
            architecture,
            name: md
                .get_opt::<&str>("general.name")
                .ok()
                .flatten()
                .map(str::to_string),
            hyperparameters,
            parameter_count: self.parameter_count(),
            tensor_count: self.tensors().len(),
            tensor_bytes: self.tensor_bytes(),
            bytes_per_type: self.bytes_per_type(),
            tokenizer: self.tokenizer_summary(),
            load: self.load_report(),
            tensors: self
                .tensors()
                .iter()
                .map(|t| TensorRow {
                    name: t.name.clone(),
                    ggml_type: t.ggml_type,
                    shape: t.shape.clone(),
                    offset: t.file_offset,
                    bytes: t.n_bytes,
                })
                .collect(),
            metadata: md
                .iter()
                .map(|(k, v)| MetaRow {
                    key: k.to_string(),
                    type_name: v.type_description(),
                    value: SummaryValue::from_meta(v),
                })
                .collect(),
        }
    }
}

/// `1.5 MiB`, `236.0 KiB`, `12 B`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut x = n as f64 / 1024.0;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    format!("{x:.1} {}", UNITS[u])
}

/// `268.1M`, `1.54B`.
fn human_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}K", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.2}B", n as f64 / 1e9),
    }
}

/// The human-readable rendering of a [`Summary`] (what `lmrun inspect` prints without `--json`):
/// the file and its tensors by type, the tokenizer, the load report, then the hyperparameter,
/// metadata and tensor tables.
pub fn render_text(s: &Summary) -> String {
    let mut o = String::new();
    render_overview(s, &mut o);
    render_tokenizer(&s.tokenizer, &mut o);
    render_load(&s.load, &mut o);
    render_tables(s, &mut o);
    o
}

fn render_overview(s: &Summary, w: &mut String) {
    let _ = writeln!(
        w,
        "file          {} ({}, {} bytes)",
        s.path.as_deref().unwrap_or("<memory>"),
        human_bytes(s.file_size),
        s.file_size
    );
    let _ = writeln!(
        w,
        "format        GGUF v{}, alignment {}, tensor data at offset {}",
        s.gguf_version, s.alignment, s.data_offset
    );
    let _ = writeln!(
        w,
        "architecture  {}{}",
        s.architecture.as_deref().unwrap_or("(none)"),
        s.name
            .as_deref()
            .map(|n| format!(" ({n:?})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        w,
        "parameters    {} ({})",
        human_count(s.parameter_count),
        s.parameter_count
    );
    let _ = writeln!(
        w,
        "tensors       {}, {} ({} bytes)",
        s.tensor_count,
        human_bytes(s.tensor_bytes),
        s.tensor_bytes
    );
    for t in &s.bytes_per_type {
        let _ = writeln!(
            w,
            "  {:<10} {:>5} tensors {:>14} elements {:>12}{}",
            t.ggml_type.name(),
            t.tensors,
            t.elements,
            human_bytes(t.bytes),
            if t.removed {
                "  (removed from ggml)"
            } else {
                ""
            }
        );
    }
}

fn render_tokenizer(tk: &TokenizerSummary, w: &mut String) {
    let _ = writeln!(
        w,
        "tokenizer     {} (pre: {}), vocab {}{}, chat template: {}",
        tk.model.as_deref().unwrap_or("(none)"),
        tk.pre.as_deref().unwrap_or("(none)"),
        tk.vocab_size.map_or("?".to_string(), |n| n.to_string()),
        tk.merges
            .map(|n| format!(", {n} merges"))
            .unwrap_or_default(),
        if tk.has_chat_template { "yes" } else { "no" }
    );
    if !tk.special_token_ids.is_empty() {
        let ids: Vec<String> = tk
            .special_token_ids
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(w, "  special ids {}", ids.join(" "));
    }
    if tk.add_bos_token.is_some() || tk.add_eos_token.is_some() {
        let f = |b: Option<bool>| b.map_or("?".to_string(), |b| b.to_string());
        let _ = writeln!(
            w,
            "  add bos {}, add eos {}",
            f(tk.add_bos_token),
            f(tk.add_eos_token)
        );
    }
}

fn render_load(l: &LoadReport, w: &mut String) {
    let _ = writeln!(
        w,
        "load          mode {}, {} loads, mapped {}, read {}, locked {}, mlock {}{}, {:.2} ms",
        l.mode.map_or("memory", |m| m.cli_name()),
        l.loads,
        human_bytes(l.bytes_mapped),
        human_bytes(l.bytes_read),
        human_bytes(l.bytes_locked),
        l.mlock.name(),
        l.mlock
            .errno()
            .map(|e| format!(" (errno {e})"))
            .unwrap_or_default(),
        l.elapsed_ms()
    );
}

fn render_tables(s: &Summary, w: &mut String) {
    if !s.hyperparameters.is_empty() {
        let _ = writeln!(w, "\nhyperparameters");
        for (k, v) in &s.hyperparameters {
            let _ = writeln!(w, "  {k:<48} {}", v.to_text(60));
        }
    }

    let _ = writeln!(w, "\nmetadata ({} keys)", s.metadata.len());
    let kw = s.metadata.iter().map(|m| m.key.len()).max().unwrap_or(0);
    let tw = s
        .metadata
        .iter()
        .map(|m| m.type_name.len())
        .max()
        .unwrap_or(0);
    for m in &s.metadata {
        let _ = writeln!(
            w,
            "  {:<kw$}  {:<tw$}  {}",
            m.key,
            m.type_name,
            m.value.to_text(60)
        );
    }

    let _ = writeln!(w, "\ntensors ({})", s.tensor_count);
    let nw = s.tensors.iter().map(|t| t.name.len()).max().unwrap_or(4);
    let _ = writeln!(
        w,
        "  {:<nw$}  {:<10} {:<24} {:>12} {:>12}",
        "name", "type", "shape", "offset", "bytes"
    );
    for t in &s.tensors {
        let shape = format!("{:?}", t.shape);
        let _ = writeln!(
            w,
            "  {:<nw$}  {:<10} {:<24} {:>12} {:>12}",
            t.name,
            t.ggml_type.name(),
            shape,
            t.offset,
            t.bytes
        );
    }
}
