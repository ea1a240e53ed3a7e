//! `Program::load`, as ExecuTorch's `runtime/executor/program.cpp` does it: read the first 64
//! bytes for the extended header, load `[0, program_size)` as the flatbuffer (kept for the
//! program's lifetime), check the identifier and alignment, then load the whole constant
//! segment once, as its own load in the chosen mode (a heap copy in `file` mode, a view into
//! the mapping otherwise). Delegate blobs, named data and mutable segments are loaded on
//! demand, each as its own load.

use std::path::{Path, PathBuf};

use lmrun_loader::{Buffer, DataLoader};

use crate::schema::{self, BackendDelegate, ExtendedHeader, HeaderParse, ProgramDef};
use crate::PteError;

/// A parsed `.pte` with its loader.
pub struct Program {
    path: PathBuf,
    loader: Box<dyn DataLoader>,
    /// The extended header, when the file has one.
    pub header: Option<ExtendedHeader>,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// The flatbuffer part (kept alive; inline constants point into it).
    program_buf: Buffer,
    /// The decoded flatbuffer.
    pub def: ProgramDef,
    /// The constant segment, when the program has one with data.
    constant_segment: Option<Buffer>,
    /// Test and fuzzing hook: (plan index, delegate index within the plan, its new data).
    delegate_override: Option<(usize, usize, Buffer)>,
}

impl Program {
    /// Load a program through `loader` (whose file is `path`, used in messages).
    pub fn load(path: &Path, loader: Box<dyn DataLoader>) -> Result<Program, PteError> {
        let bad = |what: String| PteError::InvalidProgram {
            path: path.to_path_buf(),
            what,
        };
        let file_size = loader.size();
        let head = loader.load(0, file_size.min(64) as usize)?;
        if head.len() < 8 {
            return Err(bad(format!("file is only {} bytes", head.len())));
        }
        let (header, program_size) = match schema::parse_extended_header(&head) {
            HeaderParse::Found(h) => {
                let (base, data) = (h.segment_base_offset, h.segment_data_size);
                if (data == 0 && base == 0) || data > 0 {
                    let need = if base == 0 {
                        Some(h.program_size)
                    } else {
                        base.checked_add(data)
                    };
                    match need {
                        Some(n) if n <= file_size => {}
                        _ => {
                            return Err(bad(format!(
                                "file is {file_size} bytes, header says at least {} (truncated?)",
                                need.map_or("overflow".to_string(), |n| n.to_string())
                            )))
                        }
                    }
                }
                if h.program_size > file_size || h.program_size < 8 {
                    return Err(bad(format!(
                        "program size {} does not fit the {file_size}-byte file",
                        h.program_size
                    )));
                }
                if base != 0 && base < h.program_size {
                    return Err(bad(format!(
                        "segment base {base} lies inside the program data ({})",
                        h.program_size
                    )));
                }
                (Some(h), h.program_size)
            }
            HeaderParse::NotFound => (None, file_size),
            HeaderParse::Invalid(w) => return Err(bad(w)),
        };
        if &head[4..8] != b"ET12" {
            let id = String::from_utf8_lossy(&head[4..8]).to_string();
            if id.starts_with("ET") {
                return Err(bad(format!(
                    "incompatible program version '{id}' (lmrun reads ET12)"
                )));
            }
            return Err(bad(format!(
                "not an ExecuTorch program: identifier {id:?} is not \"ET12\""
            )));
        }
        let program_len = usize::try_from(program_size).map_err(|_| bad("too large".into()))?;
        let program_buf = loader.load(0, program_len)?;
        let def = schema::parse_program(&program_buf).map_err(|source| PteError::Flatbuffer {
            path: path.to_path_buf(),
            source,
        })?;
        let mut p = Program {
            path: path.to_path_buf(),
            loader,
            header,
            file_size,
            program_buf,
            def,
            constant_segment: None,
            delegate_override: None,
        };
        if let Some(cs) = p.def.constant_segment.clone() {
            if cs.offsets.len() > 1 {
                if !p.def.constant_buffer.is_empty() {
                    return Err(bad(
                        "both constant_buffer and constant_segment hold data".into()
                    ));
                }
                let seg = p.segment(cs.segment_index as usize)?;
                for (i, &o) in cs.offsets.iter().enumerate() {
                    if o > seg.len() as u64 {
                        return Err(bad(format!(
                            "constant offset {i} ({o}) is past the constant segment ({} bytes)",
                            seg.len()
                        )));
                    }
                }
                p.constant_segment = Some(seg);
            }
        }
        if !p.def.constant_buffer.is_empty() {
            log::warn!(
                "{}: !!DEPRECATED!! constants are inline in the flatbuffer (constant_buffer)",
                path.display()
            );
        }
        Ok(p)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The loader's report so far.
    pub fn report(&self) -> lmrun_loader::LoadReport {
        self.loader.report()
    }

    /// Absolute file range of segment `index`.
    pub fn segment_range(&self, index: usize) -> Result<(u64, u64), PteError> {
        let bad = |what: String| PteError::InvalidProgram {
            path: self.path.clone(),
            what,
        };
        let seg = self
            .def
            .segments
            .get(index)
            .ok_or_else(|| bad(format!("segment index {index} out of range")))?;
        let base = self.header.map_or(0, |h| h.segment_base_offset);
        if base == 0 {
            return Err(bad(format!(
                "segment {index} referenced but the file has no segment base offset"
            )));
        }
        let start = base
            .checked_add(seg.offset)
            .ok_or_else(|| bad("segment offset overflows".into()))?;
        match start.checked_add(seg.size) {
            Some(end) if end <= self.file_size => Ok((start, seg.size)),
            _ => Err(bad(format!(
                "segment {index} ({} bytes at {start}) runs past the end of the {}-byte file",
                seg.size, self.file_size
            ))),
        }
    }

    /// Load segment `index` as its own load.
    pub fn segment(&self, index: usize) -> Result<Buffer, PteError> {
        let (off, size) = self.segment_range(index)?;
        Ok(self.loader.load(off, size as usize)?)
    }

    /// Bytes of constant `data_buffer_idx` (`nbytes` long), from the constant segment or the
    /// legacy inline `constant_buffer`.
    pub fn constant_data(&self, idx: u32, nbytes: usize) -> Result<Buffer, String> {
        let idx = idx as usize;
        if let Some(seg) = &self.constant_segment {
            let offs = &self
                .def
                .constant_segment
                .as_ref()
                .map_or(&[][..], |c| &c.offsets);
            let o = *offs
                .get(idx)
                .ok_or_else(|| format!("constant index {idx} out of range"))?
                as usize;
            return seg.slice(o..o.saturating_add(nbytes)).ok_or_else(|| {
                format!("constant {idx}: {nbytes} bytes at {o} exceed the constant segment")
            });
        }
        if let Some(r) = self.def.constant_buffer.get(idx) {
            if r.len() < nbytes {
                return Err(format!(
                    "inline constant {idx} holds {} bytes, tensor needs {nbytes}",
                    r.len()
                ));
            }
            return self
                .program_buf
                .slice(r.start..r.start + nbytes)
                .ok_or_else(|| "inline constant out of range".to_string());
        }
        Err(format!(
            "constant index {idx}: the program has no constant data"
        ))
    }

    /// Initial bytes of a mutable tensor from `mutable_data_segments[seg_idx]`.
    pub fn mutable_data(&self, seg_idx: u64, idx: u32, nbytes: usize) -> Result<Buffer, String> {
        let ss = self
            .def
            .mutable_data_segments
            .get(seg_idx as usize)
            .ok_or_else(|| format!("mutable data segment {seg_idx} out of range"))?;
        let o = *ss
            .offsets
            .get(idx as usize)
            .ok_or_else(|| format!("mutable data index {idx} out of range"))?;
        let (start, size) = self
            .segment_range(ss.segment_index as usize)
            .map_err(|e| e.to_string())?;
        if o.checked_add(nbytes as u64).is_none_or(|e| e > size) {
            return Err(format!("mutable data {idx} exceeds its segment"));
        }
        self.loader
            .load(start + o, nbytes)
            .map_err(|e| e.to_string())
    }

    /// The processed blob of a delegate.
    pub fn delegate_data(&self, d: &BackendDelegate) -> Result<Buffer, PteError> {
        if let Some((pi, di, b)) = &self.delegate_override {
            let target = self.def.plans.get(*pi).and_then(|p| p.delegates.get(*di));
            if target.is_some_and(|t| std::ptr::eq(t, d)) {
                return Ok(b.clone());
            }
        }
        match d.location {
            0 => {
                let r = self
                    .def
                    .delegate_inline
                    .get(d.index as usize)
                    .ok_or_else(|| PteError::InvalidProgram {
                        path: self.path.clone(),
                        what: format!("inline delegate data {} out of range", d.index),
                    })?;
                self.program_buf
                    .slice(r.clone())
                    .ok_or_else(|| PteError::InvalidProgram {
                        path: self.path.clone(),
                        what: "inline delegate data out of range".into(),
                    })
            }
            1 => self.segment(d.index as usize),
            l => Err(PteError::InvalidProgram {
                path: self.path.clone(),
                what: format!("delegate data location {l} unknown"),
            }),
        }
    }

    /// Make delegate `delegate` of execution plan `plan` read `blob` instead of its own data
    /// (the `xnnpack_graph` fuzz target drives the XNNPACK graph reader this way, with a real
    /// program around the blob). Not for normal use.
    #[doc(hidden)]
    pub fn override_delegate_data(&mut self, plan: usize, delegate: usize, blob: Buffer) {
        self.delegate_override = Some((plan, delegate, blob));
    }

    /// Named data stored in the `.pte` itself.
    pub fn named_data(&self, key: &str) -> Result<Option<Buffer>, PteError> {
        match self.def.named_data.iter().find(|n| n.key == key) {
            Some(n) => Ok(Some(self.segment(n.segment_index as usize)?)),
            None => Ok(None),
        }
    }
}
