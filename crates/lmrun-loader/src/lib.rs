//! Loading model bytes, the way ExecuTorch's data loaders do, with the four load modes of
//! `Module::LoadMode`: `file` (pread into aligned heap memory), `mmap`, `mmap-mlock` and
//! `mmap-mlock-ignore-errors`. Every loader keeps a [`LoadReport`] of what it really did, so the
//! mode that took effect is always observable. An opt-in [`Prefetch`] (`Buffer::prefetch`),
//! separate from the load mode, asks the OS to read a mapping's pages ahead of use.
//!
//! Mapped files are assumed not to be truncated or rewritten while a model is loaded (as with
//! every mmap-based runner): a truncated mapping faults on access. The `fault` module makes
//! that fault explain itself (one line naming the file) instead of killing the process silently.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod buffer;
mod error;
#[cfg(unix)]
mod fault;
mod file;
mod headroom;
mod memstat;
#[cfg(unix)]
mod mmap;
mod mode;
mod prefetch;
mod report;

pub use buffer::{Buffer, HEAP_ALIGN};
pub use error::LoadError;
#[cfg(unix)]
pub use fault::{
    fault_message, install_fault_handler, is_model_mapping, FileStamp, FAULT_EXIT_CODE,
};
pub use file::{FileLoader, ProgressFn};
pub use headroom::{headroom_from, memory_headroom, LOCK_MARGIN_BYTES};
pub use memstat::{peak_rss_bytes, ProcessMemory};
#[cfg(unix)]
pub use mmap::{memlock_limits, MemoryLocker, SystemLocker};
#[cfg(unix)]
pub use mmap_loader::{HeadroomFn, MmapLoader};
pub use mode::{LoadMode, MlockPolicy, ParseLoadModeError, Strategy};
pub use prefetch::{ParsePrefetchError, Prefetch, PrefetchOutcome, PrefetchReport};
pub use report::{LoadReport, MlockOutcome};

#[cfg(unix)]
mod mmap_loader;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A source of model bytes (ExecuTorch's `DataLoader`). Implementations are thread-safe.
pub trait DataLoader: Send + Sync {
    /// Size of the underlying file or buffer in bytes.
    fn size(&self) -> u64;

    /// Load `len` bytes at `offset`. A zero-length load returns an empty buffer; a range outside
    /// the file (or whose end overflows) is an error.
    fn load(&self, offset: u64, len: usize) -> Result<Buffer, LoadError>;

    /// Copy `len` bytes at `offset` into the start of `dst` (which must hold at least `len`).
    fn load_into(&self, offset: u64, len: usize, dst: &mut [u8]) -> Result<(), LoadError>;

    /// The sum of every load made through this loader so far.
    fn report(&self) -> LoadReport;

    /// The file behind the loader, if any.
    fn path(&self) -> Option<&Path>;
}

/// Open `path` with the loader that `mode` calls for.
pub fn open_loader(path: &Path, mode: LoadMode) -> Result<Box<dyn DataLoader>, LoadError> {
    match mode.strategy() {
        Strategy::Read => Ok(Box::new(FileLoader::open(path)?)),
        #[cfg(unix)]
        Strategy::Map(policy) => Ok(Box::new(MmapLoader::open(path, policy)?)),
        #[cfg(not(unix))]
        Strategy::Map(_) => Err(LoadError::Unsupported {
            path: path.to_path_buf(),
            mode,
        }),
    }
}

/// Open a model file for reading and check that it is a non-empty regular file.
pub(crate) fn open_model_file(path: &Path) -> Result<(File, u64), LoadError> {
    let p = || path.to_path_buf();
    check_regular_file(path)?;
    let file = File::open(path).map_err(|e| LoadError::from_io(path, "open", e))?;
    let meta = file.metadata().map_err(|e| LoadError::Io {
        path: p(),
        what: "stat",
        source: e,
    })?;
    // Again on the opened file: the path may have been replaced since it was checked.
    check_kind(path, &meta)?;
    if meta.len() == 0 {
        return Err(LoadError::EmptyFile { path: p() });
    }
    Ok((file, meta.len()))
}

/// What kind of non-regular file `meta` describes, in words.
pub fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a pipe (FIFO)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Check `path` before opening it: a directory or a non-regular file (a pipe, a device) is
/// refused by its metadata, so opening a FIFO never blocks and a pipe is never half-read.
pub fn check_regular_file(path: &Path) -> Result<(), LoadError> {
    let meta = std::fs::metadata(path).map_err(|e| LoadError::from_io(path, "stat", e))?;
    check_kind(path, &meta)
}

/// A directory or a non-regular file is an error naming what it is.
fn check_kind(path: &Path, meta: &std::fs::Metadata) -> Result<(), LoadError> {
    if meta.is_dir() {
        return Err(LoadError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_file() {
        return Err(LoadError::NotRegularFile {
            path: path.to_path_buf(),
            kind: file_kind(meta),
        });
    }
    Ok(())
}

/// Check that `[offset, offset + len)` lies inside a file of `size` bytes, without overflow.
pub(crate) fn check_range(
    path: &Path,
    size: u64,
    offset: u64,
    len: usize,
) -> Result<(), LoadError> {
    let end = u64::try_from(len).ok().and_then(|l| offset.checked_add(l));
    match end {
        Some(end) if end <= size => Ok(()),
        _ => Err(LoadError::OutOfRange {
            path: path.to_path_buf(),
            offset,
            len: len as u64,
            size,
        }),
    }
}

/// A [`DataLoader`] over bytes already in memory (ExecuTorch's `BufferDataLoader`): loads are
/// views sharing the buffer, nothing is copied.
pub struct BufferLoader {
    bytes: Buffer,
    report: Mutex<LoadReport>,
}

impl BufferLoader {
    /// A loader over `bytes`.
    pub fn new(bytes: impl Into<Buffer>) -> Self {
        BufferLoader {
            bytes: bytes.into(),
            report: Mutex::new(LoadReport::new(None)),
        }
    }
}

const MEMORY_PATH: &str = "<memory>";

impl DataLoader for BufferLoader {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn load(&self, offset: u64, len: usize) -> Result<Buffer, LoadError> {
        check_range(Path::new(MEMORY_PATH), self.size(), offset, len)?;
        let start = offset as usize; // fits: offset <= size = a usize
        let out = self
            .bytes
            .slice(start..start + len)
            .expect("range checked above");
        lock_report(&self.report).loads += 1;
        Ok(out)
    }

    fn load_into(&self, offset: u64, len: usize, dst: &mut [u8]) -> Result<(), LoadError> {
        let src = self.load(offset, len)?;
        let dst_len = dst.len();
        let dst = dst
            .get_mut(..len)
            .ok_or_else(|| LoadError::DestinationTooSmall {
                path: PathBuf::from(MEMORY_PATH),
                len,
                dst_len,
            })?;
        dst.copy_from_slice(&src);
        lock_report(&self.report).bytes_read += len as u64;
        Ok(())
    }

    fn report(&self) -> LoadReport {
        lock_report(&self.report).clone()
    }

    fn path(&self) -> Option<&Path> {
        None
    }
}

/// Lock a report mutex, recovering the data if a panicking thread poisoned it.
pub(crate) fn lock_report(m: &Mutex<LoadReport>) -> std::sync::MutexGuard<'_, LoadReport> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes in binary units with one decimal (`1.5 GiB`; plain bytes below 1 KiB), for messages.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The OS's text for an errno, without Rust's " (os error N)" suffix.
pub fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Read one byte of every page of `bytes` (so a mapping becomes resident) and return their sum
/// (so the reads cannot be optimised away).
pub fn touch_pages(bytes: &[u8]) -> u64 {
    let mut sum = 0u64;
    for b in bytes.iter().step_by(4096) {
        sum = sum.wrapping_add(u64::from(std::hint::black_box(*b)));
    }
    if let Some(&last) = bytes.last() {
        sum = sum.wrapping_add(u64::from(last));
    }
    sum
}
