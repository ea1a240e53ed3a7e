//! What a load did: the mode asked for, bytes mapped, read and locked, the mlock outcome and the
//! time taken. Reports add up over the loads of one model, so the runner can show which mode
//! really took effect (ExecuTorch's silent fallback becomes observable here).

use std::time::Duration;

use crate::{LoadMode, PrefetchReport};

/// The result of trying to `mlock` a load's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MlockOutcome {
    /// Every mapping of the load(s) was locked.
    Locked,
    /// The mode does not lock (or nothing was mapped).
    #[default]
    NotAttempted,
    /// At least one `mlock` failed with this errno (the load went on only under the best-effort
    /// policy).
    Failed {
        /// The OS error number of the first failure.
        errno: i32,
    },
}

impl MlockOutcome {
    /// `locked`, `not-attempted` or `failed`.
    pub fn name(self) -> &'static str {
        match self {
            MlockOutcome::Locked => "locked",
            MlockOutcome::NotAttempted => "not-attempted",
            MlockOutcome::Failed { .. } => "failed",
        }
    }

    /// The errno of a failure, if any.
    pub fn errno(self) -> Option<i32> {
        match self {
            MlockOutcome::Failed { errno } => Some(errno),
            _ => None,
        }
    }

    /// Combine the outcomes of two loads: a failure wins, then a lock.
    pub fn merge(self, other: MlockOutcome) -> MlockOutcome {
        match (self, other) {
            (f @ MlockOutcome::Failed { .. }, _) | (_, f @ MlockOutcome::Failed { .. }) => f,
            (MlockOutcome::Locked, _) | (_, MlockOutcome::Locked) => MlockOutcome::Locked,
            _ => MlockOutcome::NotAttempted,
        }
    }
}

/// What one load, or the sum of several loads of one model, did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// The mode asked for (`None` for a loader over bytes already in memory).
    pub mode: Option<LoadMode>,
    /// Number of loads summed into this report.
    pub loads: u32,
    /// Bytes mapped (page-rounded) by mmap loads.
    pub bytes_mapped: u64,
    /// Bytes read into heap memory by file loads (and `load_into`).
    pub bytes_read: u64,
    /// Bytes successfully locked with `mlock`.
    pub bytes_locked: u64,
    /// The combined mlock outcome.
    pub mlock: MlockOutcome,
    /// Wall time spent in the loads.
    pub elapsed: Duration,
    /// What the opt-in prefetch of the loaded bytes did (filled by whoever prefetches, e.g. the
    /// runner with `Buffer::prefetch`; `not-requested` by default).
    pub prefetch: PrefetchReport,
}

impl LoadReport {
    /// An empty report for a mode.
    pub fn new(mode: Option<LoadMode>) -> Self {
        LoadReport {
            mode,
            ..Default::default()
        }
    }

    /// Add another report (e.g. of the `.ptd` next to a `.pte`) into this one.
    pub fn merge(&mut self, other: &LoadReport) {
        if self.mode.is_none() {
            self.mode = other.mode;
        }
        let was_empty = self.loads == 0;
        self.loads += other.loads;
        self.bytes_mapped += other.bytes_mapped;
        self.bytes_read += other.bytes_read;
        self.bytes_locked += other.bytes_locked;
        self.mlock = if was_empty {
            other.mlock
        } else {
            self.mlock.merge(other.mlock)
        };
        self.elapsed += other.elapsed;
        self.prefetch.merge(&other.prefetch);
    }

    /// Elapsed time in milliseconds, as a float.
    pub fn elapsed_ms(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e3
    }
}

impl serde::Serialize for LoadReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("LoadReport", 9)?;
        st.serialize_field("mode", &self.mode.map(|m| m.cli_name()))?;
        st.serialize_field("loads", &self.loads)?;
        st.serialize_field("bytes_mapped", &self.bytes_mapped)?;
        st.serialize_field("bytes_read", &self.bytes_read)?;
        st.serialize_field("bytes_locked", &self.bytes_locked)?;
        st.serialize_field("mlock", self.mlock.name())?;
        st.serialize_field("mlock_errno", &self.mlock.errno())?;
        st.serialize_field("elapsed_ms", &self.elapsed_ms())?;
        st.serialize_field("prefetch", &self.prefetch)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_merge_failure_first() {
        use MlockOutcome::*;
        let f = Failed { errno: 12 };
        assert_eq!(Locked.merge(f), f);
        assert_eq!(f.merge(Locked), f);
        assert_eq!(NotAttempted.merge(Locked), Locked);
        assert_eq!(NotAttempted.merge(NotAttempted), NotAttempted);
        assert_eq!(
            Failed { errno: 1 }.merge(Failed { errno: 2 }),
            Failed { errno: 1 }
        );
    }

    #[test]
    fn reports_add_up() {
        let mut a = LoadReport::new(Some(LoadMode::MmapUseMlockIgnoreErrors));
        let b = LoadReport {
            mode: Some(LoadMode::MmapUseMlockIgnoreErrors),
            loads: 1,
            bytes_mapped: 4096,
            bytes_locked: 4096,
            mlock: MlockOutcome::Locked,
            elapsed: Duration::from_millis(2),
            ..Default::default()
        };
        let c = LoadReport {
            loads: 1,
            bytes_mapped: 8192,
            bytes_locked: 0,
            mlock: MlockOutcome::Failed { errno: 12 },
            elapsed: Duration::from_millis(3),
            ..b.clone()
        };
        a.merge(&b);
        assert_eq!(a.mlock, MlockOutcome::Locked);
        a.merge(&c);
        assert_eq!(a.loads, 2);
        assert_eq!(a.bytes_mapped, 12288);
        assert_eq!(a.bytes_locked, 4096);
        assert_eq!(a.mlock, MlockOutcome::Failed { errno: 12 });
        assert_eq!(a.elapsed, Duration::from_millis(5));
    }
}
