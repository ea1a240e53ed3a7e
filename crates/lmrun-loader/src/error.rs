//! The loader's error type. Every variant names the file and says what was wrong, so the CLI can
//! print one clear line; `executorch_code` maps each to ExecuTorch's `Error` class.

use std::path::PathBuf;

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// The path names a directory.
    #[error("{}: is a directory, not a model file", path.display())]
    IsDirectory {
        /// The path asked for.
        path: PathBuf,
    },
    /// The path names a pipe, a device or a socket: a model must be a regular file (it is
    /// mapped or read at offsets).
    #[error(
        "{}: is {kind}, not a regular file; lmrun reads models at offsets and maps them, so \
         save the model to a file first",
        path.display()
    )]
    NotRegularFile {
        /// The path asked for.
        path: PathBuf,
        /// What it is instead ("a pipe (FIFO)", "a character device", …).
        kind: &'static str,
    },
    /// The file has no bytes.
    #[error("{}: the file is empty", path.display())]
    EmptyFile {
        /// The path asked for.
        path: PathBuf,
    },
    /// The process may not read the file.
    #[error("{}: permission denied", path.display())]
    PermissionDenied {
        /// The path asked for.
        path: PathBuf,
    },
    /// A range outside the file (or one whose end overflows) was asked for.
    #[error("{}: cannot load {len} bytes at offset {offset}: the file has {size} bytes", path.display())]
    OutOfRange {
        /// The file (or `<memory>` for a buffer loader).
        path: PathBuf,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// Size of the file.
        size: u64,
    },
    /// The destination of `load_into` is smaller than the range.
    #[error("{}: destination holds {dst_len} bytes but {len} were asked for", path.display())]
    DestinationTooSmall {
        /// The file.
        path: PathBuf,
        /// Bytes asked for.
        len: usize,
        /// Bytes the destination holds.
        dst_len: usize,
    },
    /// `mlock` failed under the `mmap-mlock` mode; the mapping has been released.
    #[error(
        "{}: mlock of {bytes} bytes (file offset {offset}) failed: {} (errno {errno}); \
         RLIMIT_MEMLOCK soft {}, hard {}. Raise the limit (`ulimit -l`), or load with \
         --load-mode mmap-mlock-ignore-errors (the default) or --load-mode mmap",
        path.display(),
        crate::strerror(*errno),
        fmt_limit(*rlimit_soft),
        fmt_limit(*rlimit_hard)
    )]
    MlockFailed {
        /// The file.
        path: PathBuf,
        /// Page-aligned file offset of the mapping that could not be locked.
        offset: u64,
        /// Bytes that `mlock` was asked to lock.
        bytes: usize,
        /// The OS error number.
        errno: i32,
        /// RLIMIT_MEMLOCK soft limit in bytes (`None` = unlimited or unknown).
        rlimit_soft: Option<u64>,
        /// RLIMIT_MEMLOCK hard limit in bytes (`None` = unlimited or unknown).
        rlimit_hard: Option<u64>,
    },
    /// The `mmap-mlock` mode was asked to lock more than the memory limit leaves: locking would
    /// not fail but get the process OOM-killed, so the load fails first (mapping released).
    #[error(
        "{}: will not mlock {bytes} bytes: only {headroom} bytes of memory are left under this \
         process's memory limit (cgroup or MemAvailable), and locking past it gets the process \
         OOM-killed. Load with --load-mode mmap-mlock-ignore-errors (the default) or \
         --load-mode mmap, which let the kernel page the weights in and out",
        path.display()
    )]
    MlockExceedsMemory {
        /// The file.
        path: PathBuf,
        /// Bytes that would have been locked.
        bytes: usize,
        /// Bytes of memory left under the tightest limit.
        headroom: u64,
    },
    /// `mmap` itself failed.
    #[error("{}: mmap of {len} bytes at offset {offset} failed: {source}", path.display())]
    MapFailed {
        /// The file.
        path: PathBuf,
        /// Page-aligned offset of the mapping.
        offset: u64,
        /// Length of the mapping.
        len: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// Heap memory for a `file` load could not be allocated.
    #[error("{}: could not allocate {bytes} bytes to read the file into", path.display())]
    OutOfMemory {
        /// The file.
        path: PathBuf,
        /// Bytes asked for.
        bytes: usize,
    },
    /// The file ended before the bytes its size promised (it shrank while being read).
    #[error("{}: unexpected end of file at offset {offset} (the file changed while loading?)", path.display())]
    UnexpectedEof {
        /// The file.
        path: PathBuf,
        /// Where the read found the end.
        offset: u64,
    },
    /// Another I/O error.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`open`, `read`, `stat`).
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The mode is not available on this platform.
    #[error("{}: load mode {mode} is not supported on this platform", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The mode asked for.
        mode: crate::LoadMode,
    },
}

fn fmt_limit(v: Option<u64>) -> String {
    match v {
        Some(b) => format!("{b} bytes"),
        None => "unlimited".to_string(),
    }
}

impl LoadError {
    /// The error for an I/O failure while doing `what` (`open`, `stat`, `read`) on `path`:
    /// a missing file and a refused permission get their own variants.
    pub fn from_io(path: &std::path::Path, what: &'static str, e: std::io::Error) -> LoadError {
        let path = path.to_path_buf();
        match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::NotFound { path },
            std::io::ErrorKind::PermissionDenied => LoadError::PermissionDenied { path },
            _ => LoadError::Io {
                path,
                what,
                source: e,
            },
        }
    }

    /// The ExecuTorch `Error` code this failure corresponds to (`NotSupported` = 0x10 for a failed
    /// required mlock, `AccessFailed` = 0x22 for open/read/map failures, `InvalidArgument` = 0x12
    /// for bad ranges, `MemoryAllocationFailed` = 0x21).
    pub fn executorch_code(&self) -> u32 {
        match self {
            LoadError::MlockFailed { .. }
            | LoadError::MlockExceedsMemory { .. }
            | LoadError::Unsupported { .. } => 0x10,
            LoadError::OutOfRange { .. } | LoadError::DestinationTooSmall { .. } => 0x12,
            LoadError::OutOfMemory { .. } => 0x21,
            LoadError::NotFound { .. }
            | LoadError::IsDirectory { .. }
            | LoadError::NotRegularFile { .. }
            | LoadError::EmptyFile { .. }
            | LoadError::PermissionDenied { .. }
            | LoadError::MapFailed { .. }
            | LoadError::UnexpectedEof { .. }
            | LoadError::Io { .. } => 0x22,
        }
    }

    /// Whether this is a `NotSupported`-class error (ExecuTorch's class for a failed mlock).
    pub fn is_not_supported(&self) -> bool {
        self.executorch_code() == 0x10
    }
}
