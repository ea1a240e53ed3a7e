//! `lmrun load` driven as a user would: every mode's JSON report, and the mlock failure branch
//! for real — the binary run as uid 65534 without capabilities and with RLIMIT_MEMLOCK = 64 KiB
//! on a 16 MiB file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{private_binary, set_mode, unprivileged};

const BIN: &str = env!("CARGO_BIN_EXE_lmrun");
const MODES: [&str; 4] = ["file", "mmap", "mmap-mlock", "mmap-mlock-ignore-errors"];

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "lmrun failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        text.trim().lines().count(),
        1,
        "exactly one JSON object: {text}"
    );
    serde_json::from_str(text.trim()).unwrap()
}

fn data_file(dir: &Path, size: usize) -> PathBuf {
    let p = dir.join("model.bin");
    let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn every_mode_reports_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let size = 3 << 20;
    let file = data_file(dir.path(), size);
    for mode in MODES {
        let out = Command::new(BIN)
            .args(["load", "--json", "--load-mode", mode])
            .arg(&file)
            .output()
            .unwrap();
        let v = json(&out);
        for key in [
            "path",
            "mode",
            "file_bytes",
            "bytes_mapped",
            "bytes_read",
            "bytes_locked",
            "mlock",
            "mlock_errno",
            "elapsed_ms",
            "peak_rss_bytes",
            "rss_anon_bytes",
            "rss_file_bytes",
        ] {
            assert!(v.get(key).is_some(), "{mode}: missing {key} in {v}");
        }
        assert_eq!(v["mode"], mode);
        assert_eq!(v["file_bytes"], size as u64);
        if mode == "file" {
            assert_eq!(v["bytes_read"], size as u64);
            assert_eq!(v["bytes_mapped"], 0);
            assert_eq!(v["mlock"], "not-attempted");
            // The bytes live in anonymous memory.
            assert!(v["rss_anon_bytes"].as_u64().unwrap() >= size as u64);
        } else {
            assert_eq!(v["bytes_mapped"], size as u64);
            assert_eq!(v["bytes_read"], 0);
            // Touched pages are file-backed, not anonymous.
            assert!(v["rss_file_bytes"].as_u64().unwrap() >= size as u64);
        }
        if mode == "mmap" {
            assert_eq!(v["mlock"], "not-attempted");
            assert_eq!(v["bytes_locked"], 0);
        }
    }
}

#[test]
fn default_mode_is_mmap_mlock_ignore_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = data_file(dir.path(), 10_000);
    let v = json(
        &Command::new(BIN)
            .args(["load", "--json"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    assert_eq!(v["mode"], "mmap-mlock-ignore-errors");
    let help = Command::new(BIN).args(["load", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: mmap-mlock-ignore-errors]"));
}

#[test]
fn bad_input_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["load".into(), "/no/such/model.gguf".into()],
            "no such file",
        ),
        (
            vec!["load".into(), dir.path().display().to_string()],
            "is a directory",
        ),
        (vec!["load".into(), empty.display().to_string()], "empty"),
        (
            vec![
                "load".into(),
                "--load-mode".into(),
                "mlock".into(),
                empty.display().to_string(),
            ],
            "unknown load mode",
        ),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn mlock_failure_branch_for_real() {
    let Some(prefix) = unprivileged() else {
        eprintln!("SKIPPED: setpriv/prlimit not available; the injected-failure unit tests cover this branch");
        return;
    };
    // uid 65534 must be able to read and run everything: use a world-readable directory.
    let (dir, bin) = private_binary(BIN, "lmrun-mlock");
    let file = data_file(dir.path(), 16 << 20);
    set_mode(&file, 0o644);

    let run = |mode: &str| {
        Command::new(&prefix[0])
            .args(&prefix[1..])
            .arg(&bin)
            .args(["load", "--json", "--load-mode", mode])
            .arg(&file)
            .output()
            .unwrap()
    };

    let out = run("mmap-mlock");
    assert_eq!(out.status.code(), Some(1), "mmap-mlock must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim().lines().last().unwrap();
    for needle in [
        "mlock of 16777216 bytes",
        "errno",
        "RLIMIT_MEMLOCK soft 65536 bytes",
        "ulimit -l",
        "mmap-mlock-ignore-errors",
        "model.bin",
    ] {
        assert!(last.contains(needle), "missing {needle:?} in {last}");
    }
    assert!(out.stdout.is_empty());

    let v = json(&run("mmap-mlock-ignore-errors"));
    assert_eq!(v["mlock"], "failed");
    assert!(v["mlock_errno"].as_i64().unwrap() > 0);
    assert_eq!(v["bytes_locked"], 0);
    assert_eq!(v["bytes_mapped"], 16u64 << 20);

    for mode in ["mmap", "file"] {
        let v = json(&run(mode));
        assert_eq!(v["mlock"], "not-attempted", "{mode}");
    }
}
