//! Shared read-only mappings and page locking (POSIX). `Mapping` owns one `mmap` and unmaps it
//! on drop (which also unlocks it). Locking goes through the [`MemoryLocker`] trait so tests can
//! inject failures without privileges; [`SystemLocker`] calls `mlock` for real.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::LoadError;

/// One `mmap` of part of a file, unmapped on drop.
pub(crate) struct Mapping {
    base: *mut libc::c_void,
    len: usize,
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
        Ok(Mapping { base, len })
    }

    pub(crate) fn addr(&self) -> *const u8 {
        self.base as *const u8
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `base` maps `len` readable bytes for as long as `self` lives. The file is
        // assumed not to be truncated or rewritten while mapped (documented on the loader).
        unsafe { std::slice::from_raw_parts(self.base as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
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
