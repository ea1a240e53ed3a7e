//! `lmrun bench --output json` on a tiny generated model: one object per test and thread count
//! with the documented keys. (Speed itself is judged by running the command, never by tests.)

use std::process::Command;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_lmrun");
const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../lmrun-models/tests/data/tiny-llama.gguf"
);

#[test]
fn json_has_one_object_per_test_and_thread_count() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "-m",
            TINY,
            "-p",
            "8,16",
            "-n",
            "4",
            "-r",
            "3",
            "--threads",
            "1,2",
        ])
        .args(["--load-mode", "mmap", "--output", "json"])
        .output()
        .unwrap();
    let v = common::success_json(&out, "lmrun bench");
    let rows = v.as_array().unwrap();
    let names: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["test"].as_str().unwrap().to_string(),
                r["threads"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [1, 2]
        .into_iter()
        .flat_map(|t| ["pp8", "pp16", "tg4"].map(|n| (n.to_string(), t)))
        .collect();
    assert_eq!(names, expected);
    for r in rows {
        assert_eq!(r["load_mode"], "mmap");
        assert_eq!(r["repetitions"], 3);
        // which kernels ran is part of the result (numbers from different levels differ)
        assert!(
            ["scalar", "avx2", "avx512-vnni"].contains(&r["isa"].as_str().unwrap_or("")),
            "isa: {}",
            r["isa"]
        );
        let med = r["tokens_per_s"].as_f64().unwrap();
        let lo = r["min_tokens_per_s"].as_f64().unwrap();
        let hi = r["max_tokens_per_s"].as_f64().unwrap();
        assert!(lo > 0.0 && lo <= med && med <= hi, "{r}");
    }
    let bad = Command::new(BIN)
        .args(["bench", "-m", TINY, "--threads", "0,1", "-r", "1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("at least 1"));
}
