//! Loading model bytes. (Being written: issue 2.)

/// How a model file is brought into memory (ExecuTorch's `Module::LoadMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadMode {
    /// Read into owned heap buffers.
    File,
    /// Map read-only and shared.
    Mmap,
    /// Map, then `mlock`; failure to lock fails the load.
    MmapUseMlock,
    /// Map, then try to `mlock`; failure is logged at debug level and ignored.
    MmapUseMlockIgnoreErrors,
}
