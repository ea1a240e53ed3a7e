//! A loaded GGUF file. After a read of its first bytes (magic and version, so a file that is
//! not GGUF fails before anything else is loaded) the whole file is loaded **once** with the
//! chosen load mode and the header is parsed where it lies: tensor views and the vocabulary's
//! strings and scores are views of that one buffer, nothing is copied. In the mmap modes the
//! weights and the tokenizer's tables are page cache (shared, evictable, not anonymous memory)
//! and `mlock` covers both; in `file` mode the buffer is one heap copy of the file. The file's
//! [`LoadReport`] is the sum of the probe read and the load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lmrun_loader::{open_loader, Buffer, BufferLoader, DataLoader, LoadMode, LoadReport};

use crate::error::{GgufError, Result};
use crate::parse::{
    parse_header_in, parse_header_prefix, GgufHeader, Limits, Metadata, TensorInfo,
};
use crate::types::GgmlType;
use crate::value::{FromMeta, LeArray, MetaArray, StrArray};

/// Bytes read to check the magic and version before the file is loaded.
const PROBE_LEN: usize = 8;

/// A GGUF file: its parsed header and its tensor data section, loaded once.
pub struct GgufFile {
    header: GgufHeader,
    tensor_index: HashMap<String, usize>,
    data: Buffer,
    loader: Box<dyn DataLoader>,
    path: Option<PathBuf>,
}

/// A borrowed view of one tensor: its info and its bytes inside the loaded data section.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// The tensor's name.
    pub name: &'a str,
    /// Its ggml type.
    pub ggml_type: GgmlType,
    /// Its shape in ggml order (`shape[0]` is the row length).
    pub shape: &'a [u64],
    /// Where its data starts in the file.
    pub file_offset: u64,
    /// Its data (points into the data section buffer; nothing is copied).
    pub bytes: &'a [u8],
}

impl TensorView<'_> {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.shape
            .iter()
            .fold(1u64, |acc, &d| acc.saturating_mul(d))
    }
}

/// A tensor whose bytes share ownership of the data section (a cheap [`Buffer`] slice), for
/// holders that cannot borrow from the [`GgufFile`].
#[derive(Debug, Clone)]
pub struct OwnedTensor {
    /// The tensor's info.
    pub info: TensorInfo,
    /// Its data.
    pub bytes: Buffer,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.header.version)
            .field("metadata", &self.header.metadata.len())
            .field("tensors", &self.header.tensors.len())
            .field("data_offset", &self.header.data_offset)
            .field("data", &self.data)
            .finish()
    }
}

impl GgufFile {
    /// Open and load a GGUF file with a load mode. Errors name the file.
    pub fn open(path: &Path, mode: LoadMode) -> Result<GgufFile> {
        let loader = open_loader(path, mode)?;
        GgufFile::from_loader(loader).map_err(|e| e.in_file(path))
    }

    /// Load from any [`DataLoader`] with the default limits.
    pub fn from_loader(loader: Box<dyn DataLoader>) -> Result<GgufFile> {
        GgufFile::from_loader_with(loader, &Limits::default())
    }

    /// Parse a GGUF file held in memory (tensor views share `bytes`).
    pub fn from_bytes(bytes: impl Into<Buffer>) -> Result<GgufFile> {
        GgufFile::from_loader(Box::new(BufferLoader::new(bytes.into())))
    }

    /// Load from any [`DataLoader`] with explicit limits.
    pub fn from_loader_with(loader: Box<dyn DataLoader>, limits: &Limits) -> Result<GgufFile> {
        let path = loader.path().map(Path::to_path_buf);
        let wrap = |e: GgufError| match &path {
            Some(p) => e.in_file(p),
            None => e,
        };
        let size = loader.size();
        // Magic and version first, from a read of a few bytes: a file that is not GGUF (or is
        // too short to say) fails before the whole of it is loaded.
        let mut probe = [0u8; PROBE_LEN];
        let probe_len = PROBE_LEN.min(usize::try_from(size).unwrap_or(PROBE_LEN));
        loader
            .load_into(0, probe_len, &mut probe[..probe_len])
            .map_err(|e| wrap(e.into()))?;
        match parse_header_prefix(&probe[..probe_len], size, limits) {
            Ok(_) | Err(GgufError::PrefixTooShort { .. }) => {}
            Err(e) => return Err(wrap(e)),
        }
        let len = usize::try_from(size).map_err(|_| {
            wrap(GgufError::Malformed {
                offset: 0,
                what: format!("the file ({size} bytes) does not fit in this platform's memory"),
            })
        })?;
        let file = loader.load(0, len).map_err(|e| wrap(e.into()))?;
        let header = parse_header_in(&file, limits).map_err(wrap)?;
        // The parse checked that every tensor lies inside the file, so the section does too.
        let data_start = usize::try_from(header.data_offset).unwrap_or(len).min(len);
        let data = match header.data_len {
            0 => Buffer::empty(),
            _ => file.slice(data_start..len).unwrap_or_default(),
        };
        drop(file);

        let tensor_index = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            header,
            tensor_index,
            data,
            loader,
            path,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// Data section alignment.
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Where the data section starts in the file.
    pub fn data_offset(&self) -> u64 {
        self.header.data_offset
    }

    /// The file's size.
    pub fn file_size(&self) -> u64 {
        self.header.file_size
    }

    /// The file's path, if it came from a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The info of a tensor.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index
            .get(name)
            .and_then(|&i| self.header.tensors.get(i))
    }

    /// Whether a tensor exists.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensor_index.contains_key(name)
    }

    /// A view of a tensor's bytes inside the data section.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                name: name.to_string(),
            })?;
        self.view(info)
    }

    fn range(&self, info: &TensorInfo) -> Result<std::ops::Range<usize>> {
        let start = usize::try_from(info.offset).ok();
        let end = start.and_then(|s| s.checked_add(usize::try_from(info.n_bytes).ok()?));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.data.len() => Ok(s..e),
            _ => Err(GgufError::Malformed {
                offset: info.info_offset,
                what: format!(
                    "tensor '{}' lies outside the loaded data section",
                    info.name
                ),
            }),
        }
    }

    fn view<'a>(&'a self, info: &'a TensorInfo) -> Result<TensorView<'a>> {
        let r = self.range(info)?;
        Ok(TensorView {
            name: &info.name,
            ggml_type: info.ggml_type,
            shape: &info.shape,
            file_offset: info.file_offset,
            bytes: &self.data[r],
        })
    }

    /// Views of every tensor, in file order.
    pub fn tensor_views(&self) -> impl Iterator<Item = Result<TensorView<'_>>> {
        self.header.tensors.iter().map(|t| self.view(t))
    }

    /// A tensor whose bytes share ownership of the data section.
    pub fn tensor_owned(&self, name: &str) -> Result<OwnedTensor> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                name: name.to_string(),
            })?;
        let r = self.range(info)?;
        let bytes = self.data.slice(r).ok_or_else(|| GgufError::Malformed {
            offset: info.info_offset,
            what: format!(
                "tensor '{}' lies outside the loaded data section",
                info.name
            ),
        })?;
        Ok(OwnedTensor {
            info: info.clone(),
            bytes,
        })
    }

    /// The whole tensor data section.
    pub fn data(&self) -> &Buffer {
        &self.data
    }

    /// The loader the file was read through.
    pub fn loader(&self) -> &dyn DataLoader {
        self.loader.as_ref()
    }

    /// The sum of the loads made for this file (header load(s) and the data section load).
    pub fn load_report(&self) -> LoadReport {
        self.loader.report()
    }

    /// Sum of the tensors' element counts.
    pub fn parameter_count(&self) -> u64 {
        self.header
            .tensors
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.n_elements()))
    }

    /// Sum of the tensors' byte sizes.
    pub fn tensor_bytes(&self) -> u64 {
        self.header
            .tensors
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.n_bytes))
    }

    /// The value of a metadata key as `T` (see [`Metadata::get`]).
    pub fn get<'a, T: FromMeta<'a>>(&'a self, key: &str) -> Result<T> {
        self.header.metadata.get(key)
    }

    /// The value of a metadata key as `T`, `None` if absent (see [`Metadata::get_opt`]).
    pub fn get_opt<'a, T: FromMeta<'a>>(&'a self, key: &str) -> Result<Option<T>> {
        self.header.metadata.get_opt(key)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.header.metadata.architecture()
    }

    /// `"<arch>.<suffix>"`, e.g. `arch_key("block_count")` is `"qwen2.block_count"`.
    pub fn arch_key(&self, suffix: &str) -> Result<String> {
        self.header.metadata.arch_key(suffix)
    }
}

macro_rules! forward_getters {
    ($($name:ident -> $t:ty;)*) => {
        impl GgufFile {
            $(
                #[doc = concat!("See [`Metadata::", stringify!($name), "`].")]
                pub fn $name(&self, key: &str) -> Result<$t> { self.header.metadata.$name(key) }
            )*
        }
    };
}
forward_getters! {
    get_u32 -> u32;
    get_u64 -> u64;
    get_i32 -> i32;
    get_i64 -> i64;
    get_usize -> usize;
    get_f32 -> f32;
    get_f64 -> f64;
    get_bool -> bool;
    get_str -> &str;
    get_array -> &MetaArray;
    get_str_array -> &StrArray;
    get_f32_array -> &LeArray<f32>;
    get_i32_array -> &LeArray<i32>;
    get_u32_array -> &LeArray<u32>;
}
