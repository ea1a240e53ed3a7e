//! The one error type of this crate. A malformed file must never panic the process: every
//! problem the parser finds becomes a [`GgufError`] that says where in the file (byte offset) and
//! what was wrong, and [`GgufError::InFile`] adds the file's path on the way out of `open`.

use std::path::PathBuf;

use lmrun_loader::LoadError;

/// Everything that can go wrong reading a GGUF file or looking things up in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file does not start with the bytes `GGUF`.
    #[error(
        "not a GGUF file: the first 4 bytes are {found:02x?} ({}), expected \"GGUF\"",
        String::from_utf8_lossy(found)
    )]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },

    /// The version field only makes sense byte-swapped: a big-endian file.
    #[error(
        "big-endian GGUF file (version {version} when byte-swapped): only little-endian GGUF \
         files are supported; use a little-endian conversion of the model"
    )]
    BigEndian {
        /// The version read big-endian.
        version: u32,
    },

    /// A GGUF version this crate does not read (1, or one newer than 3).
    #[error("unsupported GGUF version {version}: {}", version_hint(*version))]
    UnsupportedVersion {
        /// The version found in the header.
        version: u32,
    },

    /// The file ends before the structure it describes does.
    #[error("truncated GGUF file: {what} at offset {offset} needs bytes up to {needed_end}, but the file has {file_size} bytes")]
    Truncated {
        /// Where the item that does not fit starts.
        offset: u64,
        /// What was being read.
        what: String,
        /// The end offset the item needs.
        needed_end: u64,
        /// The file's size.
        file_size: u64,
    },

    /// The prefix handed to [`crate::parse_header`] ends before the header does. Load at least
    /// `needed_end` bytes and parse again. (`GgufFile::open` does this itself and never returns
    /// this variant.)
    #[error("the loaded prefix ({prefix_len} bytes) ends before the GGUF header does: {what} at offset {offset} needs bytes up to {needed_end}")]
    PrefixTooShort {
        /// Where the item that does not fit starts.
        offset: u64,
        /// What was being read.
        what: String,
        /// The end offset the item needs.
        needed_end: u64,
        /// The prefix length.
        prefix_len: u64,
    },

    /// A structural problem: a bad value type, a bad tensor type, a misaligned offset, …
    #[error("malformed GGUF file at offset {offset}: {what}")]
    Malformed {
        /// Where the offending item starts.
        offset: u64,
        /// What was wrong.
        what: String,
    },

    /// A count or length beyond this crate's defensive limits (see [`crate::Limits`]).
    #[error(
        "malformed GGUF file at offset {offset}: {what} is {value}, above the limit of {limit}"
    )]
    LimitExceeded {
        /// Where the count or length is stored.
        offset: u64,
        /// What it counts.
        what: String,
        /// The value found.
        value: u64,
        /// The limit.
        limit: u64,
    },

    /// A metadata key that is not in the file.
    #[error("metadata key '{key}' not found")]
    MissingKey {
        /// The key looked up.
        key: String,
    },

    /// A metadata key whose value has another type than the one asked for.
    #[error("metadata key '{key}' has type {found}, expected {expected}")]
    TypeMismatch {
        /// The key looked up.
        key: String,
        /// The type asked for.
        expected: &'static str,
        /// The type in the file.
        found: String,
    },

    /// A metadata integer that does not fit the integer type asked for.
    #[error("metadata key '{key}' has value {value}, which does not fit in {expected}")]
    OutOfRange {
        /// The key looked up.
        key: String,
        /// The value in the file.
        value: String,
        /// The type asked for.
        expected: &'static str,
    },

    /// A tensor name that is not in the file.
    #[error("tensor '{name}' not found")]
    MissingTensor {
        /// The name looked up.
        name: String,
    },

    /// The loader failed.
    #[error(transparent)]
    Load(#[from] LoadError),

    /// An error from a named file.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<GgufError>,
    },
}

fn version_hint(version: u32) -> &'static str {
    match version {
        1 => "version 1 (2023, 32-bit counts) is obsolete; re-convert the model with a current llama.cpp",
        0 => "not a valid version",
        _ => "only versions 2 and 3 are supported; this file is newer than this lmrun",
    }
}

impl GgufError {
    /// Wrap this error with the path of the file it came from (once; loader errors already
    /// name their file and stay as they are).
    pub fn in_file(self, path: impl Into<PathBuf>) -> GgufError {
        match self {
            e @ (GgufError::InFile { .. } | GgufError::Load(_)) => e,
            e => GgufError::InFile {
                path: path.into(),
                source: Box::new(e),
            },
        }
    }

    /// The error without any [`GgufError::InFile`] wrapper.
    pub fn root(&self) -> &GgufError {
        match self {
            GgufError::InFile { source, .. } => source.root(),
            e => e,
        }
    }

    /// The file offset the error names, if any.
    pub fn offset(&self) -> Option<u64> {
        match self.root() {
            GgufError::Truncated { offset, .. }
            | GgufError::PrefixTooShort { offset, .. }
            | GgufError::Malformed { offset, .. }
            | GgufError::LimitExceeded { offset, .. } => Some(*offset),
            GgufError::BadMagic { .. }
            | GgufError::BigEndian { .. }
            | GgufError::UnsupportedVersion { .. } => Some(0),
            _ => None,
        }
    }

    /// Prefix the `what` of a positional error with context (e.g. the metadata key).
    pub(crate) fn context(self, ctx: impl FnOnce() -> String) -> GgufError {
        match self {
            GgufError::Truncated {
                offset,
                what,
                needed_end,
                file_size,
            } => GgufError::Truncated {
                offset,
                what: format!("{}: {what}", ctx()),
                needed_end,
                file_size,
            },
            GgufError::PrefixTooShort {
                offset,
                what,
                needed_end,
                prefix_len,
            } => GgufError::PrefixTooShort {
                offset,
                what: format!("{}: {what}", ctx()),
                needed_end,
                prefix_len,
            },
            GgufError::Malformed { offset, what } => GgufError::Malformed {
                offset,
                what: format!("{}: {what}", ctx()),
            },
            GgufError::LimitExceeded {
                offset,
                what,
                value,
                limit,
            } => GgufError::LimitExceeded {
                offset,
                what: format!("{}: {what}", ctx()),
                value,
                limit,
            },
            e => e,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;
