//! Shared read-only mappings and page locking (POSIX). `Mapping` owns one `mmap` and unmaps it
//! on drop (which also unlocks it). Locking goes through the [`MemoryLocker`] trait so tests can
//! inject failures without privileges; [`SystemLocker`] calls `mlock` for real.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::{LoadError, Prefetch, PrefetchOutcome, PrefetchReport};

/// One `mmap` of part of a file, unmapped on drop.
pub(crate) struct Mapping {
    base: *mut libc::c_void,
    len: usize,
    /// The range's entry in the fault report table (taken out in `Drop` before the unmap).
    fault: Option<crate::fault::Registration>,
}

// SAFETY: the mapping is read-only (PROT_READ) and owned by this value; concurrent reads of
// immutable memory are safe, and munmap happens once, in Drop, when no reference remains.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map `len > 0` bytes of `file` at the page-aligned `offset`, read-only and shared.
    pub(crate) fn map(
        file: &File,
        path: &Path,
        offset: u64,
        len: usize,
    ) -> Result<Self, LoadError> {
        let off = libc::off_t::try_from(offset).map_err(|_| LoadError::MapFailed {
            path: path.to_path_buf(),
            offset,
            len,
            source: std::io::Error::from_raw_os_error(libc::EOVERFLOW),
        })?;
        // SAFETY: a fresh mapping (addr = null) of a valid open fd; the kernel checks the rest.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                off,
            )
        };
        if base == libc::MAP_FAILED {
            let source = std::io::Error::last_os_error();
            log::error!(
                "{}: mmap({len} bytes at offset {offset}) failed: {source}",
                path.display()
            );
            return Err(LoadError::MapFailed {
                path: path.to_path_buf(),
                offset,
                len,
                source,
            });
        }
        let fault = Some(crate::fault::register(base as *const u8, len, path));
        Ok(Mapping { base, len, fault })
    }

    pub(crate) fn addr(&self) -> *const u8 {
        self.base as *const u8
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Apply `how` to the page-aligned range covering `[start, start + len)` of this mapping
    /// (a [`crate::Buffer`]'s view), and say what happened. Never fails: a refused advice is
    /// reported, and the mapping keeps working with plain page faults.
    pub(crate) fn prefetch(&self, start: usize, len: usize, how: Prefetch) -> PrefetchReport {
        let mut report = PrefetchReport {
            requested: how,
            applied: how,
            ..Default::default()
        };
        if how == Prefetch::None || len == 0 {
            return report;
        }
        let page = page_size();
        let begin = start & !(page - 1);
        let end = start.saturating_add(len).min(self.len);
        if begin >= end {
            return report;
        }
        let range_len = end - begin;
        report.bytes = range_len.div_ceil(page).saturating_mul(page) as u64;
        // SAFETY: `begin < self.len`, so the pointer stays inside the mapping.
        let addr = unsafe { (self.base as *mut u8).add(begin) };
        report.resident_before_bytes = resident_bytes(addr, range_len, page);
        let t0 = std::time::Instant::now();
        let (applied, result) = advise(addr, range_len, how);
        report.elapsed = t0.elapsed();
        report.applied = applied;
        report.outcome = match result {
            Ok(o) => o,
            Err(errno) => {
                log::warn!(
                    "madvise({}, {range_len} bytes) failed: {} (errno {errno}); pages will fault \
                     in on use",
                    applied,
                    crate::strerror(errno)
                );
                PrefetchOutcome::Failed { errno }
            }
        };
        report.resident_after_bytes = resident_bytes(addr, range_len, page);
        report
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `base` maps `len` readable bytes for as long as `self` lives. The file is
        // assumed not to be truncated or rewritten while mapped (documented on the loader).
        unsafe { std::slice::from_raw_parts(self.base as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Unregister before unmapping: the range may be reused by another mapping.
        drop(self.fault.take());
        // SAFETY: base/len are exactly what mmap returned; unmapped once. munmap also unlocks.
        let rc = unsafe { libc::munmap(self.base, self.len) };
        if rc != 0 {
            log::error!(
                "munmap({:p}, {}) failed: {}",
                self.base,
                self.len,
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Issue the advice for `how` on `[addr, addr + len)` (page-aligned `addr`, inside one of our
/// mappings); returns what was actually issued and its result.
fn advise(addr: *mut u8, len: usize, how: Prefetch) -> (Prefetch, Result<PrefetchOutcome, i32>) {
    let call = |advice: libc::c_int| -> Result<(), i32> {
        // A populate interrupted by a signal is simply asked again (pages already read stay).
        for _ in 0..8 {
            // SAFETY: madvise with WILLNEED / POPULATE_READ only changes residency of pages of
            // our own read-only mapping; a bad range fails with an errno, never touches memory.
            let rc = unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
            if rc == 0 {
                return Ok(());
            }
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if errno != libc::EINTR && errno != libc::EAGAIN {
                return Err(errno);
            }
        }
        Err(libc::EINTR)
    };
    let willneed = || {
        (
            Prefetch::WillNeed,
            call(libc::MADV_WILLNEED).map(|()| PrefetchOutcome::Advised),
        )
    };
    match how {
        Prefetch::None => (Prefetch::None, Ok(PrefetchOutcome::NotRequested)),
        Prefetch::WillNeed => willneed(),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Prefetch::Populate => match call(libc::MADV_POPULATE_READ) {
            Ok(()) => (Prefetch::Populate, Ok(PrefetchOutcome::Populated)),
            // Kernels before 5.14 do not know the advice.
            Err(libc::EINVAL) => {
                log::debug!(
                    "MADV_POPULATE_READ is not supported by this kernel; using MADV_WILLNEED"
                );
                willneed()
            }
            Err(e) => (Prefetch::Populate, Err(e)),
        },
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Prefetch::Populate => willneed(),
    }
}

/// Bytes of `[addr, addr + len)` whose pages are in memory (`mincore`), or `None` if the OS
/// will not say.
fn resident_bytes(addr: *mut u8, len: usize, page: usize) -> Option<u64> {
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: `addr` is page-aligned and `[addr, addr + len)` lies in our mapping; `vec` has
    // one byte per page of the range, as mincore requires.
    let rc = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr() as *mut _) };
    if rc != 0 {
        return None;
    }
    let resident = vec.iter().filter(|&&b| b & 1 != 0).count();
    Some((resident * page).min(len) as u64)
}

/// Pins pages in RAM. The system implementation calls `mlock`; tests substitute failures.
pub trait MemoryLocker: Send + Sync {
    /// Lock `len` bytes starting at the page-aligned `addr`; on failure return the errno.
    fn lock(&self, addr: *const u8, len: usize) -> Result<(), i32>;
}

/// The real `mlock(2)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemLocker;

impl MemoryLocker for SystemLocker {
    fn lock(&self, addr: *const u8, len: usize) -> Result<(), i32> {
        // SAFETY: mlock only changes residency of pages of our own mapping; an invalid range
        // makes it fail with an errno rather than touching memory.
        let rc = unsafe { libc::mlock(addr as *const libc::c_void, len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO))
        }
    }
}

/// RLIMIT_MEMLOCK (soft, hard) in bytes; `None` means unlimited (or not readable).
pub fn memlock_limits() -> (Option<u64>, Option<u64>) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc != 0 {
        return (None, None);
    }
    let conv = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            None
        } else {
            #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
            Some(v as u64)
        }
    };
    (conv(lim.rlim_cur), conv(lim.rlim_max))
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 && (p as usize).is_power_of_two() {
        p as usize
    } else {
        4096
    }
}
