//! The byte reader under the GGUF parser: bounds-checked reads of the header's numbers,
//! strings, typed metadata values (arrays as views of the file's buffer where possible) and
//! tensor infos, each failure naming the offset and what was being read.

use std::collections::HashMap;

use lmrun_loader::Buffer;

use super::{Limits, Metadata, TensorInfo, MAX_DIMS};
use crate::error::{GgufError, Result};
use crate::types::GgmlType;
use crate::value::{LeArray, LeNum, MetaArray, MetaValue, StrArray, ValueType};

/// A tensor info as read, before the alignment and data section are known.
pub(super) struct RawTensorInfo {
    name: String,
    shape: Vec<u64>,
    type_id: u32,
    type_at: u64,
    offset: u64,
    offset_at: u64,
    info_offset: u64,
}

impl RawTensorInfo {
    pub(super) fn validate(
        self,
        alignment: u64,
        data_offset: u64,
        data_len: u64,
        file_size: u64,
    ) -> Result<TensorInfo> {
        let name = &self.name;
        let ggml_type = GgmlType::from_id(self.type_id).ok_or_else(|| GgufError::Malformed {
            offset: self.type_at,
            what: format!(
                "tensor '{name}' has unknown ggml type id {} (known: 0..={})",
                self.type_id,
                GgmlType::ALL.len() - 1
            ),
        })?;
        if ggml_type.is_removed() {
            log::warn!(
                "tensor '{name}' has type {ggml_type}, which ggml has removed; it cannot be computed"
            );
        }
        let n_elements = self
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| GgufError::Malformed {
                offset: self.info_offset,
                what: format!(
                    "tensor '{name}' shape {:?} has more than 2^63 elements",
                    self.shape
                ),
            })?;
        let _ = n_elements;
        let row = self.shape.first().copied().unwrap_or(1);
        if row % u64::from(ggml_type.block_size()) != 0 {
            return Err(GgufError::Malformed {
                offset: self.info_offset,
                what: format!(
                    "tensor '{name}' of type {ggml_type} has rows of {row} elements, not a multiple of the block size {}",
                    ggml_type.block_size()
                ),
            });
        }
        let n_bytes = ggml_type
            .tensor_bytes(&self.shape)
            .ok_or_else(|| GgufError::Malformed {
                offset: self.info_offset,
                what: format!(
                    "tensor '{name}' of type {ggml_type} and shape {:?}: byte size overflows",
                    self.shape
                ),
            })?;
        if self.offset % alignment != 0 {
            return Err(GgufError::Malformed {
                offset: self.offset_at,
                what: format!(
                    "tensor '{name}' data offset {} is not a multiple of the alignment {alignment}",
                    self.offset
                ),
            });
        }
        let end = self.offset.checked_add(n_bytes);
        if end.is_none_or(|e| e > data_len) {
            return Err(GgufError::Malformed {
                offset: self.offset_at,
                what: format!(
                    "tensor '{name}' ({ggml_type} {:?}, {n_bytes} bytes at data offset {}) ends past the end of the data section ({data_len} bytes from file offset {data_offset}; file size {file_size})",
                    self.shape, self.offset
                ),
            });
        }
        Ok(TensorInfo {
            file_offset: data_offset + self.offset, // <= file_size, checked above
            name: self.name,
            ggml_type,
            shape: self.shape,
            offset: self.offset,
            n_bytes,
            info_offset: self.info_offset,
        })
    }
}

/// A cursor over the prefix that knows the file's size.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    /// The buffer `buf` is the bytes of, when arrays may be views of it.
    pub(super) owner: Option<&'a Buffer>,
    pub(super) pos: usize,
    pub(super) file_size: u64,
    pub(super) limits: &'a Limits,
}

impl<'a> Reader<'a> {
    /// The magic and the version (2 or 3; a byte-swapped header is named as such).
    pub(super) fn magic_and_version(&mut self) -> Result<u32> {
        let magic = self.bytes(4, "the magic")?;
        if magic != b"GGUF" {
            let mut found = [0u8; 4];
            found.copy_from_slice(magic);
            return Err(GgufError::BadMagic { found });
        }
        let raw = self.bytes(4, "the version")?;
        let raw = [raw[0], raw[1], raw[2], raw[3]];
        let version = u32::from_le_bytes(raw);
        if !(2..=3).contains(&version) {
            let swapped = u32::from_be_bytes(raw);
            if version & 0xffff == 0 && (1..=3).contains(&swapped) {
                return Err(GgufError::BigEndian { version: swapped });
            }
            return Err(GgufError::UnsupportedVersion { version });
        }
        Ok(version)
    }

    /// `kv_count` key/value pairs (keys strict UTF-8 and unique).
    pub(super) fn metadata(&mut self, kv_count: u64) -> Result<Metadata> {
        let mut metadata = Metadata::default();
        for i in 0..kv_count {
            let entry_at = self.offset();
            let key = self
                .string(self.limits.max_key_len, "the key")
                .and_then(|(k, ok)| self.strict_utf8(k, ok, entry_at, "the key"))
                .map_err(|e| e.context(|| format!("metadata entry {i}")))?;
            let value = self
                .value(&key)
                .map_err(|e| e.context(|| format!("metadata entry {i} '{key}'")))?;
            if metadata.contains_key(&key) {
                return Err(GgufError::Malformed {
                    offset: entry_at,
                    what: format!("duplicate metadata key '{key}' (entry {i})"),
                });
            }
            metadata.insert(key, value);
        }
        Ok(metadata)
    }

    /// `tensor_count` tensor infos (names unique), not yet checked against the data section.
    pub(super) fn tensor_infos(&mut self, tensor_count: u64) -> Result<Vec<RawTensorInfo>> {
        let mut raw_tensors = Vec::with_capacity(usize::try_from(tensor_count).unwrap_or(0));
        let mut names: HashMap<String, usize> = HashMap::new();
        for i in 0..tensor_count {
            let t = self
                .tensor_info()
                .map_err(|e| e.context(|| format!("tensor info {i}")))?;
            if names.insert(t.name.clone(), raw_tensors.len()).is_some() {
                return Err(GgufError::Malformed {
                    offset: t.info_offset,
                    what: format!("duplicate tensor name '{}' (tensor info {i})", t.name),
                });
            }
            raw_tensors.push(t);
        }
        Ok(raw_tensors)
    }
    pub(super) fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// Take `n` bytes, or say why not (past the file: truncated; past the prefix: load more).
    pub(super) fn bytes(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let offset = self.offset();
        let end = offset.saturating_add(n);
        if end > self.file_size {
            return Err(GgufError::Truncated {
                offset,
                what: what.to_string(),
                needed_end: end,
                file_size: self.file_size,
            });
        }
        if end > self.limits.max_header_len {
            return Err(GgufError::LimitExceeded {
                offset,
                what: format!("the header length (reading {what})"),
                value: end,
                limit: self.limits.max_header_len,
            });
        }
        if end > self.buf.len() as u64 {
            return Err(GgufError::PrefixTooShort {
                offset,
                what: what.to_string(),
                needed_end: end,
                prefix_len: self.buf.len() as u64,
            });
        }
        let start = self.pos;
        // end <= buf.len(), so it fits in usize.
        self.pos = end as usize;
        Ok(&self.buf[start..self.pos])
    }

    pub(super) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let b = self.bytes(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub(super) fn limit(&self, at: u64, what: &str, value: u64, limit: u64) -> Result<()> {
        if value > limit {
            return Err(GgufError::LimitExceeded {
                offset: at,
                what: what.to_string(),
                value,
                limit,
            });
        }
        Ok(())
    }

    /// Check that `count` items of at least `min_size` bytes each can fit in the rest of the
    /// file (so a huge count fails here, before any allocation).
    pub(super) fn fits(&self, at: u64, count: u64, min_size: u64, what: &str) -> Result<()> {
        let rest = self.file_size.saturating_sub(self.offset());
        match count.checked_mul(min_size) {
            Some(n) if n <= rest => Ok(()),
            _ => Err(GgufError::Truncated {
                offset: at,
                what: format!("{what} ({count} items of at least {min_size} bytes)"),
                needed_end: count.saturating_mul(min_size).saturating_add(self.offset()),
                file_size: self.file_size,
            }),
        }
    }

    /// A GGUF string: u64 length, then bytes. Returns the text and whether it was valid UTF-8
    /// (invalid sequences are replaced).
    pub(super) fn string(&mut self, max_len: u64, what: &str) -> Result<(String, bool)> {
        let mut out = String::new();
        let valid = self.string_into(max_len, what, |s| {
            out = s.to_owned();
            true
        })?;
        Ok((out, valid.unwrap_or(true)))
    }

    /// Like [`Reader::string`], but hands the text to `put` instead of allocating a `String`
    /// (borrowed when valid UTF-8). Returns `Some(valid)`, or `None` when `put` refused it.
    pub(super) fn string_into(
        &mut self,
        max_len: u64,
        what: &str,
        put: impl FnOnce(&str) -> bool,
    ) -> Result<Option<bool>> {
        let at = self.offset();
        let len = self.u64(what)?;
        if len > max_len {
            return Err(GgufError::LimitExceeded {
                offset: at,
                what: format!("the length of {what}"),
                value: len,
                limit: max_len,
            });
        }
        let bytes = self.bytes(len, what)?;
        Ok(match std::str::from_utf8(bytes) {
            Ok(s) => put(s).then_some(true),
            Err(_) => put(&String::from_utf8_lossy(bytes)).then_some(false),
        })
    }

    /// The `n` strings of an array starting here as a view of the owner buffer, in one walk,
    /// the cursor moved past them; `None` (cursor unmoved) without an owner, or when the walk
    /// meets anything the element reads would refuse or repair (an over-long or truncated
    /// string, invalid UTF-8, the header length limit): the copying path then reports or
    /// repairs it.
    pub(super) fn string_array_in_place(&mut self, n: u64) -> Option<StrArray> {
        let rest = self.owner?.slice(self.pos..self.buf.len())?;
        let n = usize::try_from(n).ok()?;
        let (v, used) = StrArray::in_place_prefix(&rest, n, self.limits.max_string_len)?;
        let end = self.pos + used;
        if end as u64 > self.limits.max_header_len {
            return None;
        }
        self.pos = end;
        Some(v)
    }

    /// Total text bytes of the `n` strings of an array starting here, read from their length
    /// fields without moving the cursor; stops early (with what it has) at the end of the
    /// prefix or at a length the element reads will refuse.
    pub(super) fn string_array_extent(&self, n: u64) -> usize {
        let mut pos = self.pos;
        let mut total = 0usize;
        let mut i = 0u64;
        while i < n {
            let Some(len_bytes) = self.buf.get(pos..pos + 8) else {
                break;
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(len_bytes);
            let len = u64::from_le_bytes(a);
            if len > self.limits.max_string_len {
                break;
            }
            let Some(next) = usize::try_from(len)
                .ok()
                .and_then(|l| (pos + 8).checked_add(l))
            else {
                break;
            };
            total = total.saturating_add(next - pos - 8);
            pos = next;
            i += 1;
        }
        total
    }

    pub(super) fn strict_utf8(&self, s: String, ok: bool, at: u64, what: &str) -> Result<String> {
        if ok {
            Ok(s)
        } else {
            Err(GgufError::Malformed {
                offset: at,
                what: format!("{what} is not valid UTF-8 ({s:?})"),
            })
        }
    }

    pub(super) fn value_type(&mut self, what: &str) -> Result<ValueType> {
        let at = self.offset();
        let id = self.u32(what)?;
        ValueType::from_id(id).ok_or_else(|| GgufError::Malformed {
            offset: at,
            what: format!("{what} has unknown value type id {id} (known: 0..=12)"),
        })
    }

    pub(super) fn value(&mut self, key: &str) -> Result<MetaValue> {
        let ty = self.value_type("the value type")?;
        let at = self.offset();
        let mut invalid_utf8 = false;
        let v = match ty {
            ValueType::Array => MetaValue::Array(self.array_value(1, &mut invalid_utf8)?),
            ValueType::String => {
                let (s, ok) = self.string(self.limits.max_string_len, "the string value")?;
                invalid_utf8 = !ok;
                MetaValue::String(s)
            }
            ValueType::Bool => MetaValue::Bool(self.bool()?),
            ValueType::U8 => MetaValue::U8(u8::from_le_bytes(self.array("a u8")?)),
            ValueType::I8 => MetaValue::I8(i8::from_le_bytes(self.array("an i8")?)),
            ValueType::U16 => MetaValue::U16(u16::from_le_bytes(self.array("a u16")?)),
            ValueType::I16 => MetaValue::I16(i16::from_le_bytes(self.array("an i16")?)),
            ValueType::U32 => MetaValue::U32(u32::from_le_bytes(self.array("a u32")?)),
            ValueType::I32 => MetaValue::I32(i32::from_le_bytes(self.array("an i32")?)),
            ValueType::U64 => MetaValue::U64(u64::from_le_bytes(self.array("a u64")?)),
            ValueType::I64 => MetaValue::I64(i64::from_le_bytes(self.array("an i64")?)),
            ValueType::F32 => MetaValue::F32(f32::from_le_bytes(self.array("an f32")?)),
            ValueType::F64 => MetaValue::F64(f64::from_le_bytes(self.array("an f64")?)),
        };
        if invalid_utf8 {
            log::warn!(
                "GGUF metadata '{key}' (offset {at}) holds invalid UTF-8; replaced with U+FFFD"
            );
        }
        Ok(v)
    }

    pub(super) fn bool(&mut self) -> Result<bool> {
        let at = self.offset();
        match self.array::<1>("a bool")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(GgufError::Malformed {
                offset: at,
                what: format!("a bool is stored as {b}, expected 0 or 1"),
            }),
        }
    }

    /// An array value (after its type id): element type, count, elements.
    pub(super) fn array_value(&mut self, depth: u32, invalid_utf8: &mut bool) -> Result<MetaArray> {
        let at = self.offset();
        self.limit(
            at,
            "the array nesting depth",
            u64::from(depth),
            u64::from(self.limits.max_array_depth),
        )?;
        let ty = self.value_type("the array element type")?;
        let count_at = self.offset();
        let n = self.u64("the array length")?;
        self.limit(count_at, "the array length", n, self.limits.max_array_len)?;
        // Smallest encoding of one element: fixed size, 8 (string length), 12 (array header).
        let min = ty.fixed_size().unwrap_or(match ty {
            ValueType::String => 8,
            _ => 12,
        });
        self.fits(count_at, n, min, "the array length")?;
        // n * min <= the rest of the file, so n fits in usize on any platform with the file
        // in memory; cap the preallocation by what the prefix holds anyway.
        let cap = usize::try_from(n).unwrap_or(usize::MAX);
        let cap_in_prefix = (self.buf.len() - self.pos) / (min as usize);
        let cap = cap.min(cap_in_prefix);

        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let size = <$t as LeNum>::SIZE;
                let start = self.pos;
                let bytes = self.bytes(n * size as u64, "the array elements")?;
                MetaArray::$variant(match self.owner.and_then(|o| o.slice(start..self.pos)) {
                    Some(view) => LeArray::in_place(view),
                    None => bytes
                        .chunks_exact(size)
                        .map(<$t as LeNum>::from_le)
                        .collect::<Vec<_>>()
                        .into(),
                })
            }};
        }

        Ok(match ty {
            ValueType::U8 => fixed!(U8, u8),
            ValueType::I8 => fixed!(I8, i8),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::Bool => {
                let bytes = self.bytes(n, "the array elements")?;
                let mut v = Vec::with_capacity(bytes.len());
                for (i, &b) in bytes.iter().enumerate() {
                    match b {
                        0 => v.push(false),
                        1 => v.push(true),
                        _ => {
                            return Err(GgufError::Malformed {
                                offset: count_at + 8 + i as u64,
                                what: format!("bool element {i} is stored as {b}, expected 0 or 1"),
                            })
                        }
                    }
                }
                MetaArray::Bool(v)
            }
            ValueType::String => {
                if let Some(v) = self.string_array_in_place(n) {
                    return Ok(MetaArray::String(v));
                }
                // Sized in a first pass over the lengths (each element is an 8-byte length and
                // its bytes), so the arena is allocated once at its final size.
                let n_bytes = self.string_array_extent(n);
                let mut v = StrArray::with_capacity(cap, n_bytes.min(self.buf.len()));
                for i in 0..n {
                    let at = self.offset();
                    let ok = self
                        .string_into(self.limits.max_string_len, "the string", |s| {
                            v.push(s).is_ok()
                        })
                        .map_err(|e| e.context(|| format!("array element {i}")))?;
                    match ok {
                        Some(valid) => *invalid_utf8 |= !valid,
                        None => {
                            return Err(GgufError::LimitExceeded {
                                offset: at,
                                what: format!("the text of a string array (element {i})"),
                                value: v.text_len() as u64,
                                limit: u64::from(u32::MAX),
                            })
                        }
                    }
                }
                MetaArray::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(cap);
                for i in 0..n {
                    v.push(
                        self.array_value(depth + 1, invalid_utf8)
                            .map_err(|e| e.context(|| format!("array element {i}")))?,
                    );
                }
                MetaArray::Array(v)
            }
        })
    }

    pub(super) fn tensor_info(&mut self) -> Result<RawTensorInfo> {
        let info_offset = self.offset();
        let (name, ok) = self.string(self.limits.max_string_len, "the tensor name")?;
        let name = self.strict_utf8(name, ok, info_offset, "the tensor name")?;
        let dims_at = self.offset();
        let n_dims = self.u32("the number of dimensions")?;
        if n_dims as usize > MAX_DIMS {
            return Err(GgufError::Malformed {
                offset: dims_at,
                what: format!(
                    "tensor '{name}' has {n_dims} dimensions, at most {MAX_DIMS} allowed"
                ),
            });
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let at = self.offset();
            let v = self.u64("a dimension")?;
            if v > i64::MAX as u64 {
                return Err(GgufError::Malformed {
                    offset: at,
                    what: format!("tensor '{name}' dimension {d} is {v}, above 2^63-1"),
                });
            }
            shape.push(v);
        }
        let type_at = self.offset();
        let type_id = self.u32("the ggml type")?;
        let offset_at = self.offset();
        let offset = self.u64("the data offset")?;
        Ok(RawTensorInfo {
            name,
            shape,
            type_id,
            type_at,
            offset,
            offset_at,
            info_offset,
        })
    }
}
