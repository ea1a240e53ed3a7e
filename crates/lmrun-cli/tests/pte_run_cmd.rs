//! `lmrun run` on ExecuTorch programs: every working fixture, in every load mode, generates the
//! same 32 greedy tokens as ExecuTorch's own runner did (references exported with executorch
//! 1.5.1); a `.ptd` program without its data file and the fixture ExecuTorch itself cannot run
//! give clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_lmrun");

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lmrun-pte/tests/data")
}

fn tok() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tok512.json")
}

fn reference_ids(variant: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(data().join(format!("run_{variant}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["runner_matches_loop"], true);
    v["runner"]["piece_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn run(pte: &Path, ptd: Option<&Path>, mode: &str) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(["run", "-m"]).arg(pte).arg("-t").arg(tok());
    if let Some(d) = ptd {
        c.arg("--data-path").arg(d);
    }
    c.args(["-p", "Once upon a time", "-n", "32", "--temperature", "0"])
        .args(["--output", "json", "--load-mode", mode])
        .output()
        .unwrap()
}

#[test]
fn every_fixture_matches_executorch_in_every_load_mode() {
    let variants = [
        ("portable_sdpa", false),
        ("portable_nosdpa", false),
        ("portable_nosdpa_static", false),
        ("xnnpack_fp32", false),
        ("xnnpack_8da4w", false),
        ("xnnpack_fp32_ptd", true),
        ("xnnpack_8da4w_ptd", true),
    ];
    for (variant, has_ptd) in variants {
        let expected = reference_ids(variant);
        let pte = data().join(format!("tiny_{variant}.pte"));
        let ptd = has_ptd.then(|| data().join(format!("tiny_{variant}.ptd")));
        for mode in ["file", "mmap", "mmap-mlock", "mmap-mlock-ignore-errors"] {
            let out = run(&pte, ptd.as_deref(), mode);
            let v = common::success_json(&out, &format!("{variant} {mode}"));
            assert_eq!(
                v["prompt_token_ids"],
                serde_json::json!([325, 259, 66, 337])
            );
            let got: Vec<u64> = v["generated_token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            assert_eq!(got, expected, "{variant} in {mode}");
            assert_eq!(v["stats"]["load"]["mode"], mode);
        }
    }
}

#[test]
fn missing_data_file_and_unrunnable_program_are_clear_errors() {
    let out = run(&data().join("tiny_xnnpack_fp32_ptd.pte"), None, "mmap");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("external data"), "{err}");
    assert!(!err.contains("panicked"));

    let out = run(&data().join("tiny_portable_8da4w.pte"), None, "mmap");
    assert!(
        !out.status.success(),
        "ExecuTorch itself cannot run this program"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("lmrun: error:") || err.contains("lmrun: error:"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn inspect_describes_a_program() {
    let out = Command::new(BIN)
        .args(["inspect", "--json"])
        .arg(data().join("tiny_portable_sdpa.pte"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["forward", "get_max_seq_len", "llama::custom_sdpa"] {
        assert!(text.contains(needle), "missing {needle}");
    }
}
