//! The mlock policies against a simulated memory limit: a range that does not fit in what the
//! limit leaves is never locked (best effort goes on unlocked and says ENOMEM; required fails
//! with an error naming the file and the figures), because locking past a memory cgroup's limit
//! gets the process OOM-killed instead of failing.

use std::io::Write;
use std::sync::Arc;

use lmrun_loader::*;

const SIZE: usize = 5 * 4096 + 10;

fn temp_file() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&vec![7u8; SIZE]).unwrap();
    f.flush().unwrap();
    f
}

/// A locker that always succeeds (so the test does not depend on privileges).
struct Yes;
impl MemoryLocker for Yes {
    fn lock(&self, _: *const u8, _: usize) -> Result<(), i32> {
        Ok(())
    }
}

fn loader(f: &tempfile::NamedTempFile, policy: MlockPolicy, headroom: Option<u64>) -> MmapLoader {
    MmapLoader::open(f.path(), policy)
        .unwrap()
        .with_locker(Arc::new(Yes))
        .with_headroom(Arc::new(move || headroom))
}

#[test]
fn best_effort_skips_a_lock_that_does_not_fit() {
    let f = temp_file();
    let l = loader(&f, MlockPolicy::BestEffort, Some(LOCK_MARGIN_BYTES + 4096));
    let b = l.load(0, SIZE).unwrap();
    assert_eq!(b.len(), SIZE);
    let r = l.report();
    assert_eq!(
        r.mlock,
        MlockOutcome::Failed {
            errno: libc::ENOMEM
        }
    );
    assert_eq!(r.bytes_locked, 0);
    // Enough room, or no known limit: locked.
    for h in [Some(LOCK_MARGIN_BYTES + (1 << 20)), None] {
        let l = loader(&f, MlockPolicy::BestEffort, h);
        l.load(0, SIZE).unwrap();
        assert_eq!(l.report().mlock, MlockOutcome::Locked, "{h:?}");
    }
}

#[test]
fn required_fails_clearly_when_the_lock_does_not_fit() {
    let f = temp_file();
    let l = loader(&f, MlockPolicy::Required, Some(1000));
    let e = l.load(0, SIZE).unwrap_err();
    assert!(e.is_not_supported());
    let msg = e.to_string();
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    assert!(msg.contains("1000 bytes") && msg.contains("OOM"), "{msg}");
    assert_eq!(l.report().bytes_locked, 0);
}

#[test]
fn plain_mmap_ignores_the_headroom() {
    let f = temp_file();
    let l = loader(&f, MlockPolicy::None, Some(0));
    l.load(0, SIZE).unwrap();
    assert_eq!(l.report().mlock, MlockOutcome::NotAttempted);
}
