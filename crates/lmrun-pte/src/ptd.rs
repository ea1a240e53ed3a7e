//! `.ptd` FlatTensor data files: the `FH01` header, the `FT01` flatbuffer (`FlatTensor {
//! version; segments; named_data }`), and lookup of named blobs. Loading follows ExecuTorch's
//! `FlatTensorDataMap::load`: the header and flatbuffer are small loads, each blob is loaded on
//! demand through the same `DataLoader` (so in the mmap modes it is a view into the mapping).

use std::path::{Path, PathBuf};

use lmrun_loader::{Buffer, DataLoader};

use crate::fb;
use crate::PteError;

/// `TensorLayout` of a named tensor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TensorLayout {
    /// `ScalarType` code.
    pub scalar_type: i8,
    /// Sizes.
    pub sizes: Vec<i32>,
    /// Dim order.
    pub dim_order: Vec<u8>,
}

/// One entry of a `.ptd`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PtdEntry {
    /// Key.
    pub key: String,
    /// Segment index.
    pub segment_index: u32,
    /// Layout, when the file records one.
    pub layout: Option<TensorLayout>,
    /// Absolute file offset of the data.
    pub file_offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// `FH01` header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FlatTensorHeader {
    /// Offset of the flatbuffer payload.
    pub flatbuffer_offset: u64,
    /// Size of the flatbuffer payload.
    pub flatbuffer_size: u64,
    /// File offset of the first segment.
    pub segment_base_offset: u64,
    /// Bytes of segment data.
    pub segment_data_size: u64,
}

/// A loaded `.ptd` file.
pub struct FlatTensorData {
    path: PathBuf,
    loader: Box<dyn DataLoader>,
    /// Header values.
    pub header: FlatTensorHeader,
    /// Entries, in file order.
    pub entries: Vec<PtdEntry>,
}

fn bad(path: &Path, what: impl Into<String>) -> PteError {
    PteError::InvalidExternalData {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Parse the `FH01` header from the first bytes of a file.
pub fn parse_flat_tensor_header(data: &[u8]) -> Result<FlatTensorHeader, String> {
    if data.len() < 48 {
        return Err(format!(
            "{} bytes is too short for a FlatTensor header",
            data.len()
        ));
    }
    if &data[4..8] != b"FT01" {
        return Err("file identifier is not FT01".into());
    }
    if &data[8..12] != b"FH01" {
        return Err("no FH01 header".into());
    }
    let len = u32::from_le_bytes([data[12], data[13], data[14], data[15]]);
    if len < 40 {
        return Err(format!("FlatTensor header length {len} < 40"));
    }
    let u64at = |p: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&data[p..p + 8]);
        u64::from_le_bytes(a)
    };
    Ok(FlatTensorHeader {
        flatbuffer_offset: u64at(16),
        flatbuffer_size: u64at(24),
        segment_base_offset: u64at(32),
        segment_data_size: u64at(40),
    })
}

impl FlatTensorData {
    /// Parse a `.ptd` through `loader`.
    pub fn load(path: &Path, loader: Box<dyn DataLoader>) -> Result<Self, PteError> {
        let size = loader.size();
        let head = loader.load(0, size.min(64) as usize)?;
        let header = parse_flat_tensor_header(&head).map_err(|w| bad(path, w))?;
        let data_end = header
            .segment_base_offset
            .checked_add(header.segment_data_size)
            .ok_or_else(|| bad(path, "segment range overflows"))?;
        if data_end > size {
            return Err(bad(
                path,
                format!("file is {size} bytes but its segments end at {data_end} (truncated?)"),
            ));
        }
        let fb_end = header
            .flatbuffer_offset
            .checked_add(header.flatbuffer_size)
            .filter(|&e| e <= size)
            .ok_or_else(|| bad(path, "flatbuffer extends past the end of the file"))?;
        let fbuf = loader.load(0, fb_end as usize)?;
        let parsed = parse_entries(&fbuf, &header).map_err(|e| bad(path, e.to_string()))?;
        let mut entries = Vec::new();
        for (key, segment_index, layout, seg) in parsed {
            let (off, sz) = seg.ok_or_else(|| {
                bad(
                    path,
                    format!("key '{key}': segment index {segment_index} out of range"),
                )
            })?;
            let end = off.checked_add(sz);
            if end.is_none_or(|e| e > header.segment_data_size) {
                return Err(bad(
                    path,
                    format!("key '{key}': data outside the segment area"),
                ));
            }
            entries.push(PtdEntry {
                key,
                segment_index,
                layout,
                file_offset: header.segment_base_offset + off,
                size: sz,
            });
        }
        Ok(FlatTensorData {
            path: path.to_path_buf(),
            loader,
            header,
            entries,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry for `key`.
    pub fn entry(&self, key: &str) -> Option<&PtdEntry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Load the bytes of `key` (a view in the mmap modes).
    pub fn get_data(&self, key: &str) -> Result<Option<Buffer>, PteError> {
        match self.entry(key) {
            Some(e) => Ok(Some(self.loader.load(e.file_offset, e.size as usize)?)),
            None => Ok(None),
        }
    }

    /// The loader's report.
    pub fn report(&self) -> lmrun_loader::LoadReport {
        self.loader.report()
    }
}

type RawEntry = (String, u32, Option<TensorLayout>, Option<(u64, u64)>);

fn parse_entries(buf: &[u8], _h: &FlatTensorHeader) -> fb::FbResult<Vec<RawEntry>> {
    let root = fb::root(buf, Some(b"FT01"))?;
    let segs = root
        .tables(1)?
        .into_iter()
        .map(|s| Ok((s.u64(0, 0)?, s.u64(1, 0)?)))
        .collect::<fb::FbResult<Vec<_>>>()?;
    let mut out = Vec::new();
    for n in root.tables(2)? {
        let idx = n.u32(1, 0)?;
        let layout = match n.table(2)? {
            Some(l) => Some(TensorLayout {
                scalar_type: l.i8(0, 0)?,
                sizes: l.i32_list(1)?,
                dim_order: l.u8_list(2)?,
            }),
            None => None,
        };
        out.push((n.string(0)?, idx, layout, segs.get(idx as usize).copied()));
    }
    Ok(out)
}
