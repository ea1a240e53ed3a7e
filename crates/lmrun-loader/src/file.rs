//! The `file` load mode: bytes are read with a `pread` loop (EINTR retried, short reads
//! continued, chunks of at most 1 GiB) into owned, 64-byte-aligned heap memory. Nothing is
//! shared with the page cache: this is the mode that costs anonymous memory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::buffer::{AlignedBlock, Storage};
use crate::{check_range, lock_report, open_model_file, Buffer, DataLoader, LoadError, LoadMode};
use crate::{LoadReport, MlockOutcome};

/// Largest single read: 1 GiB (macOS rejects reads of 2 GiB and more).
pub const MAX_READ_CHUNK: usize = 1 << 30;

/// Progress callback: (bytes done, bytes in this load).
pub type ProgressFn = Box<dyn Fn(u64, u64) + Send + Sync>;

/// Reads ranges of a file into heap buffers (ExecuTorch's `FileDataLoader`).
pub struct FileLoader {
    file: File,
    path: PathBuf,
    size: u64,
    progress: Option<ProgressFn>,
    report: Mutex<LoadReport>,
}

impl FileLoader {
    /// Open `path`; errors name the file (missing, a directory, empty, permission denied).
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let (file, size) = open_model_file(path)?;
        Ok(FileLoader {
            file,
            path: path.to_path_buf(),
            size,
            progress: None,
            report: Mutex::new(LoadReport::new(Some(LoadMode::File))),
        })
    }

    /// Call `f(done, total)` after every chunk read.
    pub fn with_progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }
}

/// Fill `dst` from `file` at `offset` with positioned reads.
pub(crate) fn pread_exact(
    file: &File,
    path: &Path,
    mut offset: u64,
    dst: &mut [u8],
    progress: Option<&ProgressFn>,
) -> Result<(), LoadError> {
    let total = dst.len() as u64;
    let mut done = 0usize;
    while done < dst.len() {
        let want = (dst.len() - done).min(MAX_READ_CHUNK);
        match read_at(file, &mut dst[done..done + want], offset) {
            Ok(0) => {
                log::error!(
                    "{}: unexpected end of file at offset {offset}",
                    path.display()
                );
                return Err(LoadError::UnexpectedEof {
                    path: path.to_path_buf(),
                    offset,
                });
            }
            Ok(n) => {
                done += n;
                offset += n as u64;
                if let Some(f) = progress {
                    f(done as u64, total);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("{}: read at offset {offset} failed: {e}", path.display());
                return Err(LoadError::Io {
                    path: path.to_path_buf(),
                    what: "read",
                    source: e,
                });
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// A file's identity for [`checked_load_into`]: the open file, its name and its size.
pub(crate) struct FileRef<'a> {
    pub(crate) file: &'a File,
    pub(crate) path: &'a Path,
    pub(crate) size: u64,
}

/// Copy into `dst` with range checks and add the read to `report`; shared by the file and mmap
/// loaders' `load_into`.
pub(crate) fn checked_load_into(
    f: FileRef<'_>,
    offset: u64,
    len: usize,
    dst: &mut [u8],
    progress: Option<&ProgressFn>,
    report: &Mutex<LoadReport>,
) -> Result<(), LoadError> {
    let t0 = Instant::now();
    check_range(f.path, f.size, offset, len)?;
    let dst_len = dst.len();
    let dst = dst
        .get_mut(..len)
        .ok_or_else(|| LoadError::DestinationTooSmall {
            path: f.path.to_path_buf(),
            len,
            dst_len,
        })?;
    pread_exact(f.file, f.path, offset, dst, progress)?;
    let mut r = lock_report(report);
    r.loads += 1;
    r.bytes_read += len as u64;
    r.elapsed += t0.elapsed();
    Ok(())
}

impl DataLoader for FileLoader {
    fn size(&self) -> u64 {
        self.size
    }

    fn load(&self, offset: u64, len: usize) -> Result<Buffer, LoadError> {
        check_range(&self.path, self.size, offset, len)?;
        let t0 = Instant::now();
        let out = if len == 0 {
            Buffer::empty()
        } else {
            let mut block = AlignedBlock::zeroed(len).ok_or_else(|| LoadError::OutOfMemory {
                path: self.path.clone(),
                bytes: len,
            })?;
            pread_exact(
                &self.file,
                &self.path,
                offset,
                block.as_mut_slice(),
                self.progress.as_ref(),
            )?;
            Buffer::from_storage(Storage::Heap(block), 0, len)
        };
        let mut r = lock_report(&self.report);
        r.loads += 1;
        r.bytes_read += len as u64;
        r.mlock = r.mlock.merge(MlockOutcome::NotAttempted);
        r.elapsed += t0.elapsed();
        Ok(out)
    }

    fn load_into(&self, offset: u64, len: usize, dst: &mut [u8]) -> Result<(), LoadError> {
        let f = FileRef {
            file: &self.file,
            path: &self.path,
            size: self.size,
        };
        checked_load_into(f, offset, len, dst, self.progress.as_ref(), &self.report)
    }

    fn report(&self) -> LoadReport {
        lock_report(&self.report).clone()
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}
