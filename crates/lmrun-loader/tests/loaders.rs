//! Every load mode against the same file: aligned and unaligned ranges, the last partial page,
//! overlapping and zero-length loads, out-of-range and overflowing requests, bad paths, and
//! the mlock branches (real success as root with CAP_IPC_LOCK; failure injected via a locker).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use lmrun_loader::*;

fn pattern(n: usize) -> Vec<u8> {
    // Not periodic in the page size, so a wrong offset cannot match by accident.
    (0..n)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i / 251) as u8)
        .collect()
}

fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    f
}

const SIZE: usize = 3 * 4096 * 5 + 1234; // ends in a partial page

fn ranges() -> Vec<(u64, usize)> {
    vec![
        (0, SIZE),
        (0, 1),
        (0, 4096),
        (4096, 4096),
        (1, 4095),
        (4095, 2),
        (12345, 6789),
        (SIZE as u64 - 1, 1),
        (SIZE as u64 - 1234, 1234), // exactly the last partial page
        (SIZE as u64 - 5000, 5000), // straddles into it
        (100, 0),
        (SIZE as u64, 0), // empty at the very end is fine
    ]
}

#[test]
fn every_mode_returns_the_files_bytes() {
    let data = pattern(SIZE);
    let f = temp_file(&data);
    for mode in LoadMode::ALL {
        let loader = open_loader(f.path(), mode).unwrap();
        assert_eq!(loader.size(), SIZE as u64);
        let mut kept = Vec::new();
        for (off, len) in ranges() {
            let b = loader.load(off, len).unwrap();
            assert_eq!(b.len(), len, "{mode} {off}+{len}");
            assert_eq!(
                &*b,
                &data[off as usize..off as usize + len],
                "{mode} {off}+{len}"
            );
            kept.push((off, b)); // overlapping loads stay valid together
            let mut dst = vec![0xAAu8; len + 3];
            loader.load_into(off, len, &mut dst).unwrap();
            assert_eq!(&dst[..len], &data[off as usize..off as usize + len]);
            assert_eq!(&dst[len..], &[0xAA; 3]);
        }
        for (off, b) in &kept {
            assert_eq!(&**b, &data[*off as usize..*off as usize + b.len()]);
        }
        let r = loader.report();
        assert_eq!(r.mode, Some(mode));
        assert_eq!(r.loads as usize, 2 * ranges().len());
        if mode.is_mmap() {
            assert!(r.bytes_mapped > 0);
            assert!(kept
                .iter()
                .filter(|(_, b)| !b.is_empty())
                .all(|(_, b)| b.is_mapped()));
        } else {
            assert_eq!(r.bytes_mapped, 0);
            assert!(kept.iter().all(|(_, b)| !b.is_mapped()));
        }
    }
}

#[test]
fn heap_loads_are_64_byte_aligned() {
    let f = temp_file(&pattern(SIZE));
    let loader = open_loader(f.path(), LoadMode::File).unwrap();
    for (off, len) in ranges() {
        let b = loader.load(off, len).unwrap();
        if len > 0 {
            assert_eq!(b.as_ptr() as usize % HEAP_ALIGN, 0);
        }
    }
}

#[test]
fn mapped_buffers_start_exactly_at_the_offset() {
    let data = pattern(SIZE);
    let f = temp_file(&data);
    let loader = open_loader(f.path(), LoadMode::Mmap).unwrap();
    let b = loader.load(4097, 10).unwrap();
    assert_eq!(b.as_ptr() as usize % 4096, 1);
    assert_eq!(&*b, &data[4097..4107]);
    // One page mapped for a range inside one page.
    assert_eq!(loader.report().bytes_mapped, 4096);
}

#[test]
fn out_of_range_and_overflow_are_errors() {
    let f = temp_file(&pattern(SIZE));
    for mode in LoadMode::ALL {
        let loader = open_loader(f.path(), mode).unwrap();
        for (off, len) in [
            (0, SIZE + 1),
            (SIZE as u64, 1),
            (SIZE as u64 + 1, 0),
            (u64::MAX, 1),
            (u64::MAX, usize::MAX),
            (1, usize::MAX),
        ] {
            let e = loader.load(off, len).unwrap_err();
            assert!(matches!(e, LoadError::OutOfRange { .. }), "{mode}: {e}");
            assert!(e.to_string().contains(&f.path().display().to_string()));
            let mut dst = [0u8; 4];
            assert!(loader.load_into(off, len, &mut dst).is_err());
        }
        let mut small = [0u8; 4];
        let e = loader.load_into(0, 5, &mut small).unwrap_err();
        assert!(matches!(e, LoadError::DestinationTooSmall { .. }), "{e}");
    }
}

#[test]
fn bad_paths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    for mode in LoadMode::ALL {
        let e = open_loader(&missing, mode).err().unwrap();
        assert!(matches!(e, LoadError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("nope.gguf"), "{e}");
        let e = open_loader(dir.path(), mode).err().unwrap();
        assert!(matches!(e, LoadError::IsDirectory { .. }), "{e}");
        let e = open_loader(&empty, mode).err().unwrap();
        assert!(matches!(e, LoadError::EmptyFile { .. }), "{e}");
        assert!(e.to_string().contains("empty"), "{e}");
    }
}

#[test]
fn pipes_and_devices_are_refused_by_kind_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for mode in LoadMode::ALL {
        // Opening a FIFO with no writer would block forever: the check must come first.
        let e = open_loader(&fifo, mode).err().unwrap();
        assert!(matches!(e, LoadError::NotRegularFile { .. }), "{e}");
        assert!(e.to_string().contains("pipe (FIFO)"), "{e}");
        assert!(e.to_string().contains("model.fifo"), "{e}");
        let e = open_loader(std::path::Path::new("/dev/null"), mode)
            .err()
            .unwrap();
        assert!(e.to_string().contains("character device"), "{e}");
    }
}

#[cfg(unix)]
#[test]
fn permission_denied_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    let f = temp_file(b"abc");
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root (CAP_DAC_OVERRIDE) can read anyway; only check the error when the open really fails.
    if std::fs::File::open(f.path()).is_ok() {
        return;
    }
    let e = open_loader(f.path(), LoadMode::File).err().unwrap();
    assert!(matches!(e, LoadError::PermissionDenied { .. }), "{e}");
}

#[test]
fn buffer_loader_views_caller_bytes() {
    let data = pattern(1000);
    let loader = BufferLoader::new(data.clone());
    assert_eq!(loader.size(), 1000);
    assert_eq!(&*loader.load(10, 20).unwrap(), &data[10..30]);
    assert!(loader.load(990, 11).is_err());
    assert!(loader.load(u64::MAX, 2).is_err());
    assert!(loader.load(1000, 0).unwrap().is_empty());
    let mut dst = [0u8; 5];
    loader.load_into(3, 5, &mut dst).unwrap();
    assert_eq!(&dst, &data[3..8]);
}

#[test]
fn progress_callback_reaches_the_total() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let f = temp_file(&pattern(SIZE));
    let last = Arc::new(AtomicU64::new(0));
    let l2 = last.clone();
    let loader = FileLoader::open(f.path())
        .unwrap()
        .with_progress(move |done, total| {
            assert!(done <= total);
            l2.store(done, Ordering::SeqCst);
        });
    loader.load(7, 50_000).unwrap();
    assert_eq!(last.load(Ordering::SeqCst), 50_000);
}

#[cfg(unix)]
mod mlock {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A locker that always fails with `errno` and counts its calls.
    struct Failing {
        errno: i32,
        calls: AtomicUsize,
    }

    impl MemoryLocker for Failing {
        fn lock(&self, addr: *const u8, len: usize) -> Result<(), i32> {
            assert_eq!(addr as usize % 4096, 0, "locks start on a page");
            assert!(len > 0);
            self.calls.fetch_add(1, Ordering::SeqCst);
            Err(self.errno)
        }
    }

    fn failing(errno: i32) -> Arc<Failing> {
        Arc::new(Failing {
            errno,
            calls: AtomicUsize::new(0),
        })
    }

    #[test]
    fn required_policy_fails_hard_and_releases_the_mapping() {
        let f = temp_file(&pattern(SIZE));
        let locker = failing(libc::ENOMEM);
        let loader = MmapLoader::open(f.path(), MlockPolicy::Required)
            .unwrap()
            .with_locker(locker.clone());
        let before = count_maps_of(f.path());
        let e = loader.load(5, 20_000).unwrap_err();
        assert_eq!(locker.calls.load(Ordering::SeqCst), 1);
        assert!(e.is_not_supported(), "{e}");
        assert_eq!(e.executorch_code(), 0x10);
        match &e {
            LoadError::MlockFailed {
                errno,
                bytes,
                offset,
                ..
            } => {
                assert_eq!(*errno, libc::ENOMEM);
                assert_eq!(*bytes, 20480); // pages 0..5 cover [5, 20005)
                assert_eq!(*offset, 0);
            }
            other => panic!("wrong error {other}"),
        }
        let msg = e.to_string();
        for needle in [
            &f.path().display().to_string()[..],
            "20480 bytes",
            "errno 12",
            "RLIMIT_MEMLOCK",
            "ulimit -l",
            "mmap-mlock-ignore-errors",
            "--load-mode mmap",
        ] {
            assert!(msg.contains(needle), "missing {needle:?} in {msg}");
        }
        assert_eq!(count_maps_of(f.path()), before, "mapping released");
    }

    #[test]
    fn best_effort_policy_falls_back_to_the_plain_mapping() {
        let data = pattern(SIZE);
        let f = temp_file(&data);
        let locker = failing(libc::EPERM);
        let loader = MmapLoader::open(f.path(), MlockPolicy::BestEffort)
            .unwrap()
            .with_locker(locker.clone());
        let b = loader.load(0, SIZE).unwrap();
        assert_eq!(&*b, &data[..]);
        assert!(b.is_mapped());
        let r = loader.report();
        assert_eq!(r.mode, Some(LoadMode::MmapUseMlockIgnoreErrors));
        assert_eq!(r.mlock, MlockOutcome::Failed { errno: libc::EPERM });
        assert_eq!(r.bytes_locked, 0);
        // The mapping is clamped to the end of the file (as ExecuTorch does for Windows).
        assert_eq!(r.bytes_mapped, SIZE as u64);
    }

    #[test]
    fn no_policy_never_locks() {
        let f = temp_file(&pattern(SIZE));
        let locker = failing(libc::ENOMEM);
        let loader = MmapLoader::open(f.path(), MlockPolicy::None)
            .unwrap()
            .with_locker(locker.clone());
        loader.load(0, SIZE).unwrap();
        assert_eq!(locker.calls.load(Ordering::SeqCst), 0);
        assert_eq!(loader.report().mlock, MlockOutcome::NotAttempted);
    }

    /// Real mlock. Runs as root with CAP_IPC_LOCK in CI, where it succeeds past RLIMIT_MEMLOCK;
    /// elsewhere it may fail, and then the hard-failure path is what is checked.
    #[cfg(target_os = "linux")]
    #[test]
    fn real_mlock_raises_vmlck_and_drop_releases_it() {
        let size = 8 << 20;
        let data = pattern(size);
        let f = temp_file(&data);
        let locked_now = || ProcessMemory::read().locked_bytes.unwrap();
        let loader = open_loader(f.path(), LoadMode::MmapUseMlock).unwrap();
        let before = locked_now();
        match loader.load(0, size) {
            Ok(b) => {
                let during = locked_now();
                assert!(
                    during >= before + size as u64,
                    "VmLck {before} -> {during}, expected +{size}"
                );
                let r = loader.report();
                assert_eq!(r.mlock, MlockOutcome::Locked);
                assert_eq!(r.bytes_locked, size as u64);
                assert_eq!(&b[..4096], &data[..4096]);
                drop(b);
                // Other tests may lock concurrently; ours must be gone.
                assert!(locked_now() < during, "VmLck fell after drop");
            }
            Err(e) => {
                assert!(matches!(e, LoadError::MlockFailed { .. }), "{e}");
            }
        }
    }

    /// How many mappings of `path` this process has (Linux; 0 elsewhere).
    fn count_maps_of(path: &Path) -> usize {
        let name = path.display().to_string();
        std::fs::read_to_string("/proc/self/maps")
            .map(|m| m.lines().filter(|l| l.ends_with(&name)).count())
            .unwrap_or(0)
    }
}
