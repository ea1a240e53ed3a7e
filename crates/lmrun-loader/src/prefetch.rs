//! Opt-in prefetch of a mapped model: a knob separate from the load mode. A lazily faulted
//! mapping reads a cold file one fault (one small read-ahead window) at a time, in the order the
//! first forward pass touches the weights; asking the kernel up front turns that into large
//! sequential reads. `willneed` is `madvise(MADV_WILLNEED)`: the kernel starts reading the file
//! into the page cache and returns at once, so the reads overlap with the rest of start-up.
//! `populate` is `madvise(MADV_POPULATE_READ)` (Linux 5.14+): the call returns when every page is
//! in the page cache and mapped, so the first token never waits on a page fault.
//!
//! On other Unix systems `populate` falls back to `willneed`; elsewhere (and on kernels without
//! `MADV_POPULATE_READ`) the fallback is reported, never an error. Heap buffers (the `file`
//! mode) have nothing to prefetch. Every call returns a [`PrefetchReport`] — what was asked,
//! what was done, and how much of the range was already resident before and after — so the
//! effect of the knob is as observable as the mlock outcome.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How to bring a mapping's pages in ahead of use (`--prefetch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Prefetch {
    /// Do nothing: pages fault in when the model first touches them (the default).
    #[default]
    None,
    /// `madvise(MADV_WILLNEED)`: start asynchronous read-ahead of the whole range.
    WillNeed,
    /// `madvise(MADV_POPULATE_READ)`: read and map every page before returning (Linux 5.14+;
    /// `willneed` elsewhere).
    Populate,
}

impl Prefetch {
    /// Every choice, in order of strength.
    pub const ALL: [Prefetch; 3] = [Prefetch::None, Prefetch::WillNeed, Prefetch::Populate];

    /// The name used on the command line and in reports.
    pub const fn cli_name(self) -> &'static str {
        match self {
            Prefetch::None => "none",
            Prefetch::WillNeed => "willneed",
            Prefetch::Populate => "populate",
        }
    }
}

impl fmt::Display for Prefetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

/// The error for a prefetch name that is not one of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown prefetch '{given}' (expected one of: none, willneed, populate)")]
pub struct ParsePrefetchError {
    /// The text that was given.
    pub given: String,
}

impl FromStr for Prefetch {
    type Err = ParsePrefetchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Prefetch::ALL
            .into_iter()
            .find(|p| p.cli_name() == s)
            .ok_or_else(|| ParsePrefetchError {
                given: s.to_string(),
            })
    }
}

/// What a prefetch request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrefetchOutcome {
    /// No prefetch was asked for.
    #[default]
    NotRequested,
    /// The bytes are not a mapping (the `file` mode's heap buffers): they are already in memory.
    NotMapped,
    /// `MADV_WILLNEED` was accepted: read-ahead of the range has started.
    Advised,
    /// `MADV_POPULATE_READ` returned: every page of the range is resident and mapped.
    Populated,
    /// The platform has no such advice; nothing was done.
    Unsupported,
    /// The advice failed with this errno; the mapping is unaffected (pages fault in on use).
    Failed {
        /// The OS error number.
        errno: i32,
    },
}

impl PrefetchOutcome {
    /// `not-requested`, `not-mapped`, `advised`, `populated`, `unsupported` or `failed`.
    pub fn name(self) -> &'static str {
        match self {
            PrefetchOutcome::NotRequested => "not-requested",
            PrefetchOutcome::NotMapped => "not-mapped",
            PrefetchOutcome::Advised => "advised",
            PrefetchOutcome::Populated => "populated",
            PrefetchOutcome::Unsupported => "unsupported",
            PrefetchOutcome::Failed { .. } => "failed",
        }
    }

    /// The errno of a failure, if any.
    pub fn errno(self) -> Option<i32> {
        match self {
            PrefetchOutcome::Failed { errno } => Some(errno),
            _ => None,
        }
    }

    /// Combine two outcomes (of two buffers of one model): a failure wins, then the weaker
    /// success, so a summary never claims more than every part achieved.
    pub fn merge(self, other: PrefetchOutcome) -> PrefetchOutcome {
        use PrefetchOutcome::*;
        let rank = |o: PrefetchOutcome| match o {
            Failed { .. } => 0,
            Unsupported => 1,
            Advised => 2,
            Populated => 3,
            NotMapped => 4,
            NotRequested => 5,
        };
        if rank(other) < rank(self) {
            other
        } else {
            self
        }
    }
}

/// What one prefetch call (or the sum of several over one model) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefetchReport {
    /// What was asked for.
    pub requested: Prefetch,
    /// What was actually issued (`populate` becomes `willneed` where it does not exist).
    pub applied: Prefetch,
    /// The result.
    pub outcome: PrefetchOutcome,
    /// Bytes of mapping the advice covered (page-rounded).
    pub bytes: u64,
    /// Bytes of the range already in the page cache before the call (`None` if unknown).
    pub resident_before_bytes: Option<u64>,
    /// Bytes of the range in the page cache when the call returned (`None` if unknown). For
    /// `willneed` this is a snapshot: read-ahead goes on after the call.
    pub resident_after_bytes: Option<u64>,
    /// Wall time of the call (for `populate`, the time to read the cold part of the file).
    pub elapsed: Duration,
}

impl PrefetchReport {
    /// The report of a call that was not asked to do anything.
    pub fn not_requested() -> Self {
        PrefetchReport::default()
    }

    /// Elapsed time in milliseconds, as a float.
    pub fn elapsed_ms(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e3
    }

    /// Add another buffer's report into this one.
    pub fn merge(&mut self, other: &PrefetchReport) {
        if other.outcome == PrefetchOutcome::NotRequested {
            return;
        }
        if self.outcome == PrefetchOutcome::NotRequested {
            *self = *other;
            return;
        }
        self.requested = self.requested.max_by_strength(other.requested);
        self.applied = if self.outcome.merge(other.outcome) == self.outcome {
            self.applied
        } else {
            other.applied
        };
        self.outcome = self.outcome.merge(other.outcome);
        self.bytes += other.bytes;
        let add = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
        self.resident_before_bytes = add(self.resident_before_bytes, other.resident_before_bytes);
        self.resident_after_bytes = add(self.resident_after_bytes, other.resident_after_bytes);
        self.elapsed += other.elapsed;
    }

    /// One line for humans: `populate: populated 491.4 MiB in 812.3 ms (resident 0.0 → 491.4 MiB)`.
    pub fn summary(&self) -> String {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
        match self.outcome {
            PrefetchOutcome::NotRequested => "none".to_string(),
            PrefetchOutcome::NotMapped => format!(
                "{}: nothing to do (the bytes are in heap memory, not mapped)",
                self.requested
            ),
            PrefetchOutcome::Unsupported => {
                format!("{}: not supported on this platform", self.requested)
            }
            PrefetchOutcome::Failed { errno } => format!(
                "{}: madvise failed: {} (errno {errno}); pages fault in on use",
                self.applied,
                crate::strerror(errno)
            ),
            PrefetchOutcome::Advised | PrefetchOutcome::Populated => {
                let fallback = if self.applied != self.requested {
                    format!(" ({} unavailable, used {})", self.requested, self.applied)
                } else {
                    String::new()
                };
                let resident = match (self.resident_before_bytes, self.resident_after_bytes) {
                    (Some(b), Some(a)) => format!(" (resident {} → {})", mib(b), mib(a)),
                    _ => String::new(),
                };
                format!(
                    "{}: {} {} in {:.1} ms{resident}{fallback}",
                    self.requested,
                    self.outcome.name(),
                    mib(self.bytes),
                    self.elapsed_ms()
                )
            }
        }
    }
}

impl Prefetch {
    fn max_by_strength(self, other: Prefetch) -> Prefetch {
        let rank = |p: Prefetch| Prefetch::ALL.iter().position(|&q| q == p).unwrap_or(0);
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl serde::Serialize for PrefetchReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("PrefetchReport", 8)?;
        st.serialize_field("requested", self.requested.cli_name())?;
        st.serialize_field("applied", self.applied.cli_name())?;
        st.serialize_field("outcome", self.outcome.name())?;
        st.serialize_field("errno", &self.outcome.errno())?;
        st.serialize_field("bytes", &self.bytes)?;
        st.serialize_field("resident_before_bytes", &self.resident_before_bytes)?;
        st.serialize_field("resident_after_bytes", &self.resident_after_bytes)?;
        st.serialize_field("elapsed_ms", &self.elapsed_ms())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for p in Prefetch::ALL {
            assert_eq!(p.cli_name().parse::<Prefetch>().unwrap(), p);
            assert_eq!(p.to_string(), p.cli_name());
        }
        assert_eq!(Prefetch::default(), Prefetch::None);
        for bad in ["", "WILLNEED", "populate_read", "auto"] {
            let e = bad.parse::<Prefetch>().unwrap_err();
            assert!(e.to_string().contains("none, willneed, populate"), "{e}");
        }
    }

    #[test]
    fn outcomes_merge_weakest_first() {
        use PrefetchOutcome::*;
        let f = Failed { errno: 22 };
        assert_eq!(Populated.merge(f), f);
        assert_eq!(Populated.merge(Advised), Advised);
        assert_eq!(NotRequested.merge(Populated), Populated);
        assert_eq!(NotMapped.merge(Advised), Advised);
    }

    #[test]
    fn reports_add_up() {
        let a = PrefetchReport {
            requested: Prefetch::Populate,
            applied: Prefetch::Populate,
            outcome: PrefetchOutcome::Populated,
            bytes: 8192,
            resident_before_bytes: Some(0),
            resident_after_bytes: Some(8192),
            elapsed: Duration::from_millis(2),
        };
        let mut sum = PrefetchReport::not_requested();
        sum.merge(&PrefetchReport::not_requested());
        assert_eq!(sum.outcome, PrefetchOutcome::NotRequested);
        sum.merge(&a);
        assert_eq!(sum, a);
        let b = PrefetchReport {
            applied: Prefetch::WillNeed,
            outcome: PrefetchOutcome::Advised,
            bytes: 4096,
            resident_after_bytes: None,
            ..a
        };
        sum.merge(&b);
        assert_eq!(sum.bytes, 12288);
        assert_eq!(sum.outcome, PrefetchOutcome::Advised);
        assert_eq!(sum.applied, Prefetch::WillNeed);
        assert_eq!(sum.resident_before_bytes, Some(0));
        assert_eq!(sum.resident_after_bytes, None);
        assert_eq!(sum.elapsed, Duration::from_millis(4));
        assert!(sum.summary().contains("willneed"), "{}", sum.summary());
    }
}
