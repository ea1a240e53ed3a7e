//! The three mmap load modes (ExecuTorch's `MmapDataLoader` with its `MlockConfig`). Each load
//! maps the page-aligned range covering `[offset, offset + len)` read-only and shared (so other
//! processes share the page cache copy), returns a buffer starting exactly at `offset`, and
//! under an mlock policy locks exactly the mapped range.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::buffer::Storage;
use crate::file::{checked_load_into, FileRef};
use crate::mmap::{memlock_limits, page_size, Mapping, MemoryLocker, SystemLocker};
use crate::{check_range, lock_report, open_model_file, Buffer, DataLoader, LoadError};
use crate::{LoadReport, MlockOutcome, MlockPolicy};

/// Maps ranges of a file, with an mlock policy.
pub struct MmapLoader {
    file: File,
    path: PathBuf,
    size: u64,
    page: usize,
    policy: MlockPolicy,
    locker: Arc<dyn MemoryLocker>,
    headroom: HeadroomFn,
    report: Mutex<LoadReport>,
}

/// Where the loader asks how much memory is left before locking (see [`crate::memory_headroom`]).
pub type HeadroomFn = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

impl MmapLoader {
    /// Open `path` for mapping under `policy`.
    pub fn open(path: &Path, policy: MlockPolicy) -> Result<Self, LoadError> {
        let (file, size) = open_model_file(path)?;
        let mode = policy.load_mode();
        Ok(MmapLoader {
            file,
            path: path.to_path_buf(),
            size,
            page: page_size(),
            policy,
            locker: Arc::new(SystemLocker),
            headroom: Arc::new(crate::memory_headroom),
            report: Mutex::new(LoadReport::new(Some(mode))),
        })
    }

    /// Replace the page locker (tests use this to inject `mlock` failures).
    pub fn with_locker(mut self, locker: Arc<dyn MemoryLocker>) -> Self {
        self.locker = locker;
        self
    }

    /// Replace the memory-headroom probe (tests use this to simulate a memory limit).
    pub fn with_headroom(mut self, headroom: HeadroomFn) -> Self {
        self.headroom = headroom;
        self
    }

    /// The mlock policy of this loader.
    pub fn policy(&self) -> MlockPolicy {
        self.policy
    }
}

impl DataLoader for MmapLoader {
    fn size(&self) -> u64 {
        self.size
    }

    fn load(&self, offset: u64, len: usize) -> Result<Buffer, LoadError> {
        check_range(&self.path, self.size, offset, len)?;
        if len == 0 {
            lock_report(&self.report).loads += 1;
            return Ok(Buffer::empty());
        }
        let t0 = Instant::now();
        let page = self.page as u64;
        let map_start = offset & !(page - 1);
        // end <= size (checked), so the rounding below cannot overflow a u64 in practice;
        // clamp to the file end (the kernel maps the partial last page anyway).
        let end = offset + len as u64;
        let map_end = end.div_ceil(page).saturating_mul(page).min(self.size);
        let map_len = usize::try_from(map_end - map_start).map_err(|_| LoadError::OutOfRange {
            path: self.path.clone(),
            offset,
            len: len as u64,
            size: self.size,
        })?;
        let mapping = Mapping::map(&self.file, &self.path, map_start, map_len)?;

        let (outcome, locked) = match self.policy {
            MlockPolicy::None => (MlockOutcome::NotAttempted, 0),
            MlockPolicy::Required | MlockPolicy::BestEffort => {
                // Locking more than the memory limit leaves does not fail: the OOM killer ends
                // the process (root, in a memory cgroup). Do not lock what cannot fit.
                let headroom = (self.headroom)();
                let fits = headroom.is_none_or(|h| {
                    (mapping.len() as u64).saturating_add(crate::headroom::LOCK_MARGIN_BYTES) <= h
                });
                let locked = if fits {
                    self.locker.lock(mapping.addr(), mapping.len())
                } else if self.policy == MlockPolicy::Required {
                    let err = LoadError::MlockExceedsMemory {
                        path: self.path.clone(),
                        bytes: mapping.len(),
                        headroom: headroom.unwrap_or(0),
                    };
                    log::error!("{err}");
                    drop(mapping);
                    return Err(err);
                } else {
                    log::debug!(
                        "{}: not locking {} bytes: only {} bytes of memory are left under this \
                         process's memory limit; continuing with the plain mapping",
                        self.path.display(),
                        mapping.len(),
                        headroom.unwrap_or(0)
                    );
                    Err(libc::ENOMEM)
                };
                match locked {
                    Ok(()) => (MlockOutcome::Locked, mapping.len() as u64),
                    Err(errno) if self.policy == MlockPolicy::Required => {
                        let (soft, hard) = memlock_limits();
                        let err = LoadError::MlockFailed {
                            path: self.path.clone(),
                            offset: map_start,
                            bytes: mapping.len(),
                            errno,
                            rlimit_soft: soft,
                            rlimit_hard: hard,
                        };
                        log::error!(
                            "{}: mlock({} bytes) failed: {} (errno {errno}); releasing the mapping",
                            self.path.display(),
                            mapping.len(),
                            crate::strerror(errno)
                        );
                        drop(mapping); // release the mapping before failing
                        return Err(err);
                    }
                    Err(errno) => {
                        log::debug!(
                            "{}: ignoring mlock failure for {} bytes at offset {map_start}: {} \
                             (errno {errno}); continuing with the plain mapping",
                            self.path.display(),
                            mapping.len(),
                            crate::strerror(errno)
                        );
                        (MlockOutcome::Failed { errno }, 0)
                    }
                }
            }
        };

        let start_in_map = (offset - map_start) as usize;
        let buf = Buffer::from_storage(Storage::Map(mapping), start_in_map, len);
        let mut r = lock_report(&self.report);
        let first = r.loads == 0;
        r.loads += 1;
        r.bytes_mapped += map_len as u64;
        r.bytes_locked += locked;
        r.mlock = if first {
            outcome
        } else {
            r.mlock.merge(outcome)
        };
        r.elapsed += t0.elapsed();
        Ok(buf)
    }

    /// Copies with `pread` rather than through a temporary private mapping: the same bytes,
    /// without the mapping churn.
    fn load_into(&self, offset: u64, len: usize, dst: &mut [u8]) -> Result<(), LoadError> {
        let f = FileRef {
            file: &self.file,
            path: &self.path,
            size: self.size,
        };
        checked_load_into(f, offset, len, dst, None, &self.report)
    }

    fn report(&self) -> LoadReport {
        lock_report(&self.report).clone()
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}
