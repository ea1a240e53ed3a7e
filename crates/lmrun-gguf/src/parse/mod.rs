//! The GGUF header parser, over plain bytes. It reads the header, the metadata and the tensor
//! infos from a prefix of the file, checks every count, length, type id and offset against the
//! file's size and the [`Limits`], and computes where the tensor data section starts. It never
//! touches tensor data, so it can run over a small first load of the file; when that prefix is
//! too short it says how far it needs ([`GgufError::PrefixTooShort`]) and the caller loads more.
//!
//! Layout (all little-endian; versions 2 and 3):
//! `"GGUF"`, `u32 version`, `u64 tensor_count`, `u64 kv_count`, the key/value pairs
//! (`string key`, `u32 type`, value), the tensor infos (`string name`, `u32 n_dims`,
//! `u64 dims[n_dims]`, `u32 ggml_type`, `u64 offset`), padding to `general.alignment`, then the
//! tensor data, each tensor at `data_start + offset`.

use std::collections::HashMap;

use crate::error::{GgufError, Result};
use crate::types::GgmlType;
mod reader;

use reader::Reader;

use crate::value::{FromMeta, LeArray, MetaArray, MetaValue, Mismatch, StrArray};
use lmrun_loader::Buffer;

/// The alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The most dimensions a tensor can have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// Defensive caps on what a file may declare, checked before anything is allocated.
///
/// The defaults are far above any real model (a 1M-token vocabulary, 1M tensors) and far below
/// what would exhaust memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest metadata key, in bytes (the GGUF spec says 65535).
    pub max_key_len: u64,
    /// Longest string value or tensor name, in bytes.
    pub max_string_len: u64,
    /// Most elements in one metadata array.
    pub max_array_len: u64,
    /// Most metadata key/value pairs.
    pub max_kv_count: u64,
    /// Most tensors.
    pub max_tensor_count: u64,
    /// Deepest nesting of arrays in arrays (1 = a plain array).
    pub max_array_depth: u32,
    /// Largest header (magic to the end of the tensor infos), in bytes.
    pub max_header_len: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_len: 65_535,
            max_string_len: 64 << 20,
            max_array_len: 1 << 28,
            max_kv_count: 1 << 20,
            max_tensor_count: 1 << 20,
            max_array_depth: 8,
            max_header_len: 1 << 30,
        }
    }
}

/// Metadata: the key/value pairs of a GGUF file, in file order, with typed lookups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, MetaValue)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// An empty set (for building one by hand, e.g. in tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a pair; `false` (and no change) if the key is already present.
    pub fn insert(&mut self, key: impl Into<String>, value: MetaValue) -> bool {
        let key = key.into();
        if self.index.contains_key(&key) {
            return false;
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        true
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pairs in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether the key is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The raw value of a key.
    pub fn value(&self, key: &str) -> Option<&MetaValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// The value of a key as `T`; errors name the key and the type found.
    pub fn get<'a, T: FromMeta<'a>>(&'a self, key: &str) -> Result<T> {
        self.get_opt(key)?.ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    /// The value of a key as `T`, or `None` if the key is absent (a present key of the wrong
    /// type is still an error).
    pub fn get_opt<'a, T: FromMeta<'a>>(&'a self, key: &str) -> Result<Option<T>> {
        let Some(v) = self.value(key) else {
            return Ok(None);
        };
        match T::from_meta(v) {
            Ok(x) => Ok(Some(x)),
            Err(Mismatch::Type) => Err(GgufError::TypeMismatch {
                key: key.to_string(),
                expected: T::EXPECTED,
                found: v.type_description(),
            }),
            Err(Mismatch::Range) => Err(GgufError::OutOfRange {
                key: key.to_string(),
                value: v.to_string(),
                expected: T::EXPECTED,
            }),
        }
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get("general.architecture")
    }

    /// `"<arch>.<suffix>"` for this file's architecture, e.g. `arch_key("block_count")` is
    /// `"qwen2.block_count"`.
    pub fn arch_key(&self, suffix: &str) -> Result<String> {
        Ok(format!("{}.{suffix}", self.architecture()?))
    }
}

macro_rules! typed_getters {
    ($($(#[$doc:meta])* $name:ident -> $t:ty;)*) => {
        impl Metadata {
            $($(#[$doc])* pub fn $name(&self, key: &str) -> Result<$t> { self.get(key) })*
        }
    };
}
typed_getters! {
    /// The value as `u32` (any integer type whose value fits).
    get_u32 -> u32;
    /// The value as `u64` (any integer type whose value fits).
    get_u64 -> u64;
    /// The value as `i32` (any integer type whose value fits).
    get_i32 -> i32;
    /// The value as `i64` (any integer type whose value fits).
    get_i64 -> i64;
    /// The value as `usize` (any integer type whose value fits).
    get_usize -> usize;
    /// The value as `f32` (an `f32`, or an `f64` rounded).
    get_f32 -> f32;
    /// The value as `f64` (an `f32` or an `f64`).
    get_f64 -> f64;
    /// A `bool`.
    get_bool -> bool;
    /// A string.
    get_str -> &str;
    /// An array of any element type.
    get_array -> &MetaArray;
    /// An array of strings.
    get_str_array -> &StrArray;
    /// An array of `f32`.
    get_f32_array -> &LeArray<f32>;
    /// An array of `i32`.
    get_i32_array -> &LeArray<i32>;
    /// An array of `u32`.
    get_u32_array -> &LeArray<u32>;
}

/// One tensor's entry in the tensor info table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Its ggml type.
    pub ggml_type: GgmlType,
    /// Its dimensions in ggml order: `shape[0]` is the row length (the fastest-moving index).
    pub shape: Vec<u64>,
    /// Offset of its data from the start of the data section (a multiple of the alignment).
    pub offset: u64,
    /// Offset of its data from the start of the file.
    pub file_offset: u64,
    /// Bytes of data.
    pub n_bytes: u64,
    /// Where this entry of the tensor info table starts in the file.
    pub info_offset: u64,
}

impl TensorInfo {
    /// Number of elements (the product of the shape; at most 2^63-1 for a parsed tensor,
    /// saturating for a hand-built one).
    pub fn n_elements(&self) -> u64 {
        self.shape
            .iter()
            .fold(1u64, |acc, &d| acc.saturating_mul(d))
    }
}

/// Everything before the tensor data: the parsed and validated header of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Metadata.
    pub metadata: Metadata,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data section alignment (`general.alignment`, default 32).
    pub alignment: u64,
    /// Where the tensor infos end.
    pub header_len: u64,
    /// Where the tensor data section starts (the header length rounded up to the alignment).
    pub data_offset: u64,
    /// Bytes of the data section (file size minus `data_offset`; 0 when the file ends
    /// earlier, which only a file without tensor data may do).
    pub data_len: u64,
    /// The size of the file.
    pub file_size: u64,
}

/// Parse a whole GGUF file held in memory (header and tensor infos; tensor data is checked for
/// bounds, not read).
pub fn parse_header(bytes: &[u8]) -> Result<GgufHeader> {
    parse_header_prefix(bytes, bytes.len() as u64, &Limits::default())
}

/// Parse the header from `prefix`, the first bytes of a file of `file_size` bytes. Returns
/// [`GgufError::PrefixTooShort`] when the header goes on past the prefix.
pub fn parse_header_prefix(prefix: &[u8], file_size: u64, limits: &Limits) -> Result<GgufHeader> {
    parse_with(prefix, None, file_size, limits)
}

/// Parse the header of the whole file held in `file` (as a loader returns it: a mapping, or a
/// heap copy in `file` mode). String and number arrays are not copied: they are read in place
/// from `file`, whose clones keep it alive (a vocabulary under a mapping stays page cache).
pub fn parse_header_in(file: &Buffer, limits: &Limits) -> Result<GgufHeader> {
    parse_with(file, Some(file), file.len() as u64, limits)
}

/// The parser: `prefix` is the file's first bytes; `owner`, when given, is the buffer whose
/// bytes `prefix` is, so arrays can be views of it.
fn parse_with(
    prefix: &[u8],
    owner: Option<&Buffer>,
    file_size: u64,
    limits: &Limits,
) -> Result<GgufHeader> {
    let prefix = match usize::try_from(file_size) {
        Ok(n) if n < prefix.len() => &prefix[..n],
        _ => prefix,
    };
    let file_size = file_size.max(prefix.len() as u64);
    let mut r = Reader {
        buf: prefix,
        owner,
        pos: 0,
        file_size,
        limits,
    };

    let version = r.magic_and_version()?;

    let count_at = r.offset();
    let tensor_count = r.u64("the tensor count")?;
    let kv_at = r.offset();
    let kv_count = r.u64("the metadata count")?;
    r.limit(
        count_at,
        "the tensor count",
        tensor_count,
        limits.max_tensor_count,
    )?;
    r.limit(kv_at, "the metadata count", kv_count, limits.max_kv_count)?;
    // Each pair needs at least 13 bytes (key length, type, 1-byte value), each tensor info 24.
    r.fits(count_at, tensor_count, 24, "the tensor count")?;
    r.fits(kv_at, kv_count, 13, "the metadata count")?;

    let metadata = r.metadata(kv_count)?;
    let raw_tensors = r.tensor_infos(tensor_count)?;
    let header_len = r.offset();

    // Alignment and the data section.
    let alignment = alignment(&metadata)?;
    let data_offset = align_up(header_len, alignment).ok_or_else(|| GgufError::Malformed {
        offset: header_len,
        what: "the data section offset overflows".into(),
    })?;
    let data_len = file_size.saturating_sub(data_offset);

    let mut tensors = Vec::with_capacity(raw_tensors.len());
    for (i, t) in raw_tensors.into_iter().enumerate() {
        tensors.push(
            t.validate(alignment, data_offset, data_len, file_size)
                .map_err(|e| e.context(|| format!("tensor info {i}")))?,
        );
    }
    check_overlaps(&tensors)?;

    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        alignment,
        header_len,
        data_offset,
        data_len,
        file_size,
    })
}

/// `general.alignment`, or the default: a u32 power of two.
fn alignment(metadata: &Metadata) -> Result<u64> {
    match metadata.value("general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(MetaValue::U32(a)) if *a != 0 && a.is_power_of_two() => Ok(u64::from(*a)),
        Some(v) => Err(GgufError::Malformed {
            offset: 0,
            what: format!(
                "general.alignment must be a u32 power of two, found {} {v}",
                v.type_description()
            ),
        }),
    }
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    let rem = x % alignment;
    if rem == 0 {
        Some(x)
    } else {
        x.checked_add(alignment - rem)
    }
}

fn check_overlaps(tensors: &[TensorInfo]) -> Result<()> {
    let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    order.sort_by_key(|t| t.offset);
    for w in order.windows(2) {
        let (a, b) = (w[0], w[1]);
        // Validated: offset + n_bytes does not overflow.
        if a.offset + a.n_bytes > b.offset {
            return Err(GgufError::Malformed {
                offset: b.info_offset,
                what: format!(
                    "tensor '{}' (data offset {}) overlaps tensor '{}' (data {}..{})",
                    b.name,
                    b.offset,
                    a.name,
                    a.offset,
                    a.offset + a.n_bytes
                ),
            });
        }
    }
    Ok(())
}
