//! The four load modes, exactly ExecuTorch's `Module::LoadMode`, and the mlock policy each one
//! implies. The mapping mode → behaviour lives here and nowhere else, because ExecuTorch once
//! shipped `Mmap` wired to the wrong mlock setting (PR #4712).

use std::fmt;
use std::str::FromStr;

/// How a model file is brought into memory (ExecuTorch's `Module::LoadMode`).
///
/// The runner's default is [`LoadMode::MmapUseMlockIgnoreErrors`] (ExecuTorch PR #17613); that
/// choice lives in the `lmrun` crate as `DEFAULT_LOAD_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadMode {
    /// Read the bytes into owned, 64-byte-aligned heap buffers (a `pread` loop).
    File,
    /// Map read-only and shared; pages fault in lazily from the page cache.
    Mmap,
    /// Map, then `mlock` the mapped range; if locking fails the load fails.
    #[serde(rename = "mmap-mlock")]
    MmapUseMlock,
    /// Map, then try to `mlock`; if locking fails, log at debug level and go on unlocked.
    #[serde(rename = "mmap-mlock-ignore-errors")]
    MmapUseMlockIgnoreErrors,
}

/// What an mmap load does about pinning its pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MlockPolicy {
    /// Do not call `mlock`.
    None,
    /// Call `mlock`; a failure releases the mapping and fails the load.
    Required,
    /// Call `mlock`; a failure is logged at debug level and the plain mapping is kept.
    BestEffort,
}

impl MlockPolicy {
    /// The load mode that maps with this policy: the inverse of [`LoadMode::strategy`], read
    /// from it, so that one table says which mode does what.
    pub fn load_mode(self) -> LoadMode {
        LoadMode::ALL
            .into_iter()
            .find(|m| m.strategy() == Strategy::Map(self))
            .unwrap_or(LoadMode::Mmap)
    }
}

/// How a load mode reads the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Owned heap buffers filled by `pread`.
    Read,
    /// A shared read-only mapping with the given mlock policy.
    Map(MlockPolicy),
}

impl LoadMode {
    /// Every mode, in ExecuTorch's enum order.
    pub const ALL: [LoadMode; 4] = [
        LoadMode::File,
        LoadMode::Mmap,
        LoadMode::MmapUseMlock,
        LoadMode::MmapUseMlockIgnoreErrors,
    ];

    /// The name used on the command line and in reports.
    pub const fn cli_name(self) -> &'static str {
        match self {
            LoadMode::File => "file",
            LoadMode::Mmap => "mmap",
            LoadMode::MmapUseMlock => "mmap-mlock",
            LoadMode::MmapUseMlockIgnoreErrors => "mmap-mlock-ignore-errors",
        }
    }

    /// ExecuTorch's C++ enumerator name (`MmapUseMlockIgnoreErrors`, …).
    pub const fn executorch_name(self) -> &'static str {
        match self {
            LoadMode::File => "File",
            LoadMode::Mmap => "Mmap",
            LoadMode::MmapUseMlock => "MmapUseMlock",
            LoadMode::MmapUseMlockIgnoreErrors => "MmapUseMlockIgnoreErrors",
        }
    }

    /// How this mode reads the file: the single place the mode → behaviour mapping is decided.
    pub const fn strategy(self) -> Strategy {
        match self {
            LoadMode::File => Strategy::Read,
            LoadMode::Mmap => Strategy::Map(MlockPolicy::None),
            LoadMode::MmapUseMlock => Strategy::Map(MlockPolicy::Required),
            LoadMode::MmapUseMlockIgnoreErrors => Strategy::Map(MlockPolicy::BestEffort),
        }
    }

    /// Whether the mode maps the file (as opposed to reading it into heap memory).
    pub const fn is_mmap(self) -> bool {
        matches!(self.strategy(), Strategy::Map(_))
    }
}

impl fmt::Display for LoadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

/// The error for a load-mode name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown load mode '{given}' (expected one of: file, mmap, mmap-mlock, mmap-mlock-ignore-errors)")]
pub struct ParseLoadModeError {
    /// The text that was given.
    pub given: String,
}

impl FromStr for LoadMode {
    type Err = ParseLoadModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LoadMode::ALL
            .into_iter()
            .find(|m| m.cli_name() == s || m.executorch_name() == s)
            .ok_or_else(|| ParseLoadModeError {
                given: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_to_behaviour_is_exhaustive_and_exact() {
        // Written out in full on purpose: this table is the contract.
        let expected = [
            (LoadMode::File, "file", Strategy::Read),
            (LoadMode::Mmap, "mmap", Strategy::Map(MlockPolicy::None)),
            (
                LoadMode::MmapUseMlock,
                "mmap-mlock",
                Strategy::Map(MlockPolicy::Required),
            ),
            (
                LoadMode::MmapUseMlockIgnoreErrors,
                "mmap-mlock-ignore-errors",
                Strategy::Map(MlockPolicy::BestEffort),
            ),
        ];
        assert_eq!(LoadMode::ALL.len(), expected.len());
        for (mode, name, strategy) in expected {
            assert_eq!(mode.strategy(), strategy, "{mode:?}");
            assert_eq!(mode.cli_name(), name);
            assert_eq!(mode.to_string(), name);
            assert_eq!(name.parse::<LoadMode>().unwrap(), mode);
            assert_eq!(mode.executorch_name().parse::<LoadMode>().unwrap(), mode);
        }
    }

    #[test]
    fn policies_map_back_to_their_modes() {
        for m in LoadMode::ALL {
            if let Strategy::Map(p) = m.strategy() {
                assert_eq!(p.load_mode(), m);
            }
        }
    }

    #[test]
    fn unknown_names_are_errors() {
        for bad in ["", "MMAP", "mlock", "mmap_mlock", "file ", "auto"] {
            let err = bad.parse::<LoadMode>().unwrap_err();
            assert!(err.to_string().contains("mmap-mlock-ignore-errors"));
        }
    }

    #[test]
    fn serde_uses_cli_names() {
        for mode in LoadMode::ALL {
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{}\"", mode.cli_name()));
            assert_eq!(serde_json::from_str::<LoadMode>(&json).unwrap(), mode);
        }
    }
}
