//! The prefetch knob against every load mode: it never changes the bytes, it reports what it
//! did (advised, populated, or nothing to do for heap buffers), and on Linux `populate` leaves
//! the whole range resident, even for a view that starts mid-page.

use std::io::Write;

use lmrun_loader::*;

fn temp_file(n: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
    let data: Vec<u8> = (0..n).map(|i| (i * 7 + i / 4096) as u8).collect();
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&data).unwrap();
    f.flush().unwrap();
    (f, data)
}

const SIZE: usize = 64 * 4096 + 777;

#[test]
fn prefetch_reports_and_never_changes_bytes() {
    let (f, data) = temp_file(SIZE);
    for mode in LoadMode::ALL {
        let loader = open_loader(f.path(), mode).unwrap();
        for how in Prefetch::ALL {
            for (off, len) in [(0u64, SIZE), (4097, 3 * 4096), (SIZE as u64 - 10, 10)] {
                let b = loader.load(off, len).unwrap();
                let r = b.prefetch(how);
                assert_eq!(r.requested, how, "{mode} {how}");
                assert_eq!(&*b, &data[off as usize..off as usize + len]);
                let expected = match (how, mode.is_mmap()) {
                    (Prefetch::None, _) => PrefetchOutcome::NotRequested,
                    (_, false) => PrefetchOutcome::NotMapped,
                    (Prefetch::WillNeed, true) => PrefetchOutcome::Advised,
                    (Prefetch::Populate, true) if cfg!(target_os = "linux") => {
                        // Populate, or WILLNEED on a kernel older than 5.14.
                        if r.applied == Prefetch::Populate {
                            PrefetchOutcome::Populated
                        } else {
                            PrefetchOutcome::Advised
                        }
                    }
                    (Prefetch::Populate, true) => PrefetchOutcome::Advised,
                };
                assert_eq!(r.outcome, expected, "{mode} {how} {off}+{len}");
                if r.outcome == PrefetchOutcome::Advised || r.outcome == PrefetchOutcome::Populated
                {
                    // The advice covers the page-rounded view and nothing past the file.
                    assert!(r.bytes >= len as u64, "{mode} {how}: {r:?}");
                    assert!(r.bytes <= len as u64 + 2 * 4096, "{mode} {how}: {r:?}");
                    assert_eq!(r.bytes % 4096, 0);
                } else {
                    assert_eq!(r.bytes, 0);
                }
                if r.outcome == PrefetchOutcome::Populated {
                    let after = r.resident_after_bytes.unwrap();
                    assert!(after >= len as u64, "{mode}: {r:?}");
                }
            }
        }
    }
}

#[test]
fn empty_buffers_have_nothing_to_prefetch() {
    let r = Buffer::empty().prefetch(Prefetch::Populate);
    assert_eq!(r.outcome, PrefetchOutcome::NotRequested);
    let r = Buffer::from_vec(vec![1, 2, 3]).prefetch(Prefetch::WillNeed);
    assert_eq!(r.outcome, PrefetchOutcome::NotMapped);
    assert!(r.summary().contains("not mapped"), "{}", r.summary());
}

#[test]
fn load_report_carries_the_prefetch() {
    let (f, _) = temp_file(SIZE);
    let loader = open_loader(f.path(), LoadMode::Mmap).unwrap();
    let b = loader.load(0, SIZE).unwrap();
    let mut report = loader.report();
    assert_eq!(report.prefetch.outcome, PrefetchOutcome::NotRequested);
    report.prefetch = b.prefetch(Prefetch::WillNeed);
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["prefetch"]["requested"], "willneed");
    assert_eq!(v["prefetch"]["outcome"], "advised");
    assert!(v["prefetch"]["bytes"].as_u64().unwrap() >= SIZE as u64);
    let mut total = LoadReport::new(Some(LoadMode::Mmap));
    total.merge(&report);
    assert_eq!(total.prefetch.outcome, PrefetchOutcome::Advised);
}

/// A cold file: after `posix_fadvise(DONTNEED)` (which a tmpfs ignores, so only "after" is
/// checked), `populate` makes the whole range resident before it returns.
#[cfg(target_os = "linux")]
#[test]
fn populate_makes_a_cold_mapping_resident() {
    use std::os::unix::io::AsRawFd;
    let (f, data) = temp_file(4 << 20);
    let file = std::fs::File::open(f.path()).unwrap();
    // SAFETY: posix_fadvise on a valid open fd only drops clean page-cache pages.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
    let loader = open_loader(f.path(), LoadMode::Mmap).unwrap();
    let b = loader.load(0, data.len()).unwrap();
    let r = b.prefetch(Prefetch::Populate);
    if r.applied == Prefetch::Populate {
        assert_eq!(r.outcome, PrefetchOutcome::Populated);
        assert_eq!(r.resident_after_bytes, Some(data.len() as u64));
        assert!(r.resident_before_bytes.unwrap() <= data.len() as u64);
    }
    assert_eq!(&*b, &data[..]);
}
