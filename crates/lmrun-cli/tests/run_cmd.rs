//! `lmrun run` through the real binary on both real models: deterministic greedy output, the
//! same tokens in all four load modes, the mlock failure branch with the capability dropped, and
//! one-line errors for bad input. The models come from `scripts/fetch_models.sh`; a missing model
//! fails these tests.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{gemma, private_binary, qwen, set_mode, unprivileged};

const BIN: &str = env!("CARGO_BIN_EXE_lmrun");

fn lmrun(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn json_run(model: &Path, prompt: &str, extra: &[&str]) -> serde_json::Value {
    let m = model.to_str().unwrap();
    let mut args = vec![
        "run",
        "-m",
        m,
        "-p",
        prompt,
        "-n",
        "12",
        "--temperature",
        "0",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = lmrun(&args);
    common::success_json(&out, &format!("{args:?}"))
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v["generated_token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn greedy_is_deterministic_and_equal_in_every_load_mode() {
    for (m, prompt) in [
        (gemma(), "The capital of France is"),
        (qwen(), "def add(a, b):"),
    ] {
        let base = json_run(&m, prompt, &["--load-mode", "mmap"]);
        let base_ids = ids(&base);
        assert_eq!(base_ids.len(), 12, "{base}");
        assert!(!base["text"].as_str().unwrap().is_empty());
        for mode in ["file", "mmap", "mmap-mlock", "mmap-mlock-ignore-errors"] {
            let v = json_run(&m, prompt, &["--load-mode", mode]);
            assert_eq!(ids(&v), base_ids, "{mode} on {}", m.display());
            let load = &v["stats"]["load"];
            assert_eq!(load["mode"], mode);
            for key in [
                "path",
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
                assert!(load.get(key).is_some(), "missing load.{key}");
            }
            if mode == "file" {
                assert_eq!(load["bytes_mapped"], 0);
                assert!(load["bytes_read"].as_u64().unwrap() > 200_000_000);
            } else {
                assert!(load["bytes_mapped"].as_u64().unwrap() > 200_000_000);
            }
        }
        // Prompt ids start with BOS exactly when the model's rule says so.
        let first = base["prompt_token_ids"][0].as_u64().unwrap();
        if m == gemma() {
            assert_eq!(first, 2, "gemma adds <bos> (id 2)");
        } else {
            assert_ne!(first, 151643, "qwen adds no BOS");
        }
    }
}

#[test]
fn text_output_streams_and_stats_go_to_stderr() {
    let m = gemma();
    let out = lmrun(&[
        "run",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "Hello",
        "-n",
        "4",
        "--temperature",
        "0",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.starts_with("Hello"),
        "echo is on by default: {stdout}"
    );
    assert!(!stdout.contains("PyTorchObserver"));
    let line = stderr
        .lines()
        .find(|l| l.starts_with("PyTorchObserver {"))
        .expect("observer line on stderr");
    let json: serde_json::Value =
        serde_json::from_str(line.strip_prefix("PyTorchObserver ").unwrap()).unwrap();
    assert_eq!(json["prompt_tokens"], 2); // <bos> Hello
    assert_eq!(json["SCALING_FACTOR_UNITS_PER_SECOND"], 1000);
    let help = lmrun(&["run", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: mmap-mlock-ignore-errors]"));
}

#[test]
fn mlock_failure_branch_when_generating() {
    let Some(prefix) = unprivileged() else {
        eprintln!("SKIPPED: setpriv/prlimit not available; the loader's injected-failure tests cover this branch");
        return;
    };
    let (dir, bin) = private_binary(BIN, "lmrun-run-mlock");
    let m = dir.path().join("gemma.gguf");
    if std::fs::hard_link(gemma(), &m).is_err() {
        std::fs::copy(gemma(), &m).unwrap();
    }
    set_mode(&m, 0o644);
    let run = |mode: &str| {
        Command::new(&prefix[0])
            .args(&prefix[1..])
            .arg(&bin)
            .args([
                "run",
                "-m",
                m.to_str().unwrap(),
                "-p",
                "Hi",
                "-n",
                "3",
                "--temperature",
                "0",
            ])
            .args(["--output", "json", "--load-mode", mode])
            .output()
            .unwrap()
    };
    let out = run("mmap-mlock");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim().lines().last().unwrap();
    assert!(last.starts_with("lmrun: error:"), "{last}");
    for needle in [
        "mlock of",
        "RLIMIT_MEMLOCK soft 65536 bytes",
        "ulimit -l",
        "gemma.gguf",
    ] {
        assert!(last.contains(needle), "missing {needle:?}: {last}");
    }
    let out = run("mmap-mlock-ignore-errors");
    let v = common::success_json(&out, "run mmap-mlock-ignore-errors");
    assert_eq!(ids(&v).len(), 3);
    assert_eq!(v["stats"]["load"]["mlock"], "failed");
    assert!(v["stats"]["load"]["mlock_errno"].as_i64().unwrap() > 0);
    assert_eq!(v["stats"]["load"]["bytes_locked"], 0);
}

#[test]
fn bad_input_gives_one_line_and_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let not_model = dir.path().join("notes.txt");
    std::fs::write(&not_model, "just some text, not weights").unwrap();
    let g = gemma();
    let g = g.to_str().unwrap();
    let q = qwen();
    let q = q.to_str().unwrap();
    let tok512 = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tok512.json");
    let long_prompt = "word ".repeat(100);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "-m", "/no/such/model.gguf", "-p", "hi"],
            "no such file",
        ),
        (
            vec!["run", "-m", not_model.to_str().unwrap(), "-p", "hi"],
            "not a model",
        ),
        (
            vec!["run", "-m", q, "-t", tok512, "-p", "hi"],
            "tokenizer does not match",
        ),
        (vec!["run", "-m", g, "-p", ""], "prompt is empty"),
        (
            vec![
                "run",
                "-m",
                g,
                "-p",
                long_prompt.as_str(),
                "--ctx-size",
                "32",
            ],
            "--ctx-size 32",
        ),
        (
            vec!["run", "-m", g, "-p", "hi", "--threads", "0"],
            "--threads",
        ),
        (
            vec!["run", "-m", g, "-p", "hi", "--load-mode", "fast"],
            "unknown load mode",
        ),
        (vec!["run", "-m", g, "-p", "hi", "--top-p", "2"], "--top-p"),
    ];
    for (args, needle) in cases {
        let out = lmrun(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// The load modes' memory promise, from the stats of a run to ~512 positions: in the mmap modes
/// the process's anonymous memory is at most the KV cache + scratch + 2 % of the weight bytes
/// (weights and vocabulary stay page cache); `file` holds the weights in anonymous memory.
#[test]
fn mmap_modes_keep_anonymous_memory_within_kv_scratch_and_two_percent() {
    let prompt = "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(30);
    for m in [gemma(), qwen()] {
        for mode in ["mmap", "mmap-mlock-ignore-errors", "file"] {
            let args = [
                "run",
                "-m",
                m.to_str().unwrap(),
                "-p",
                &prompt,
                "-n",
                "100",
                "--temperature",
                "0",
                "--ignore-eos",
                "--no-echo",
                "--ctx-size",
                "640",
                "--threads",
                "2",
                "--load-mode",
                mode,
                "--output",
                "json",
            ];
            let out = lmrun(&args);
            let v = common::success_json(&out, mode);
            let s = &v["stats"];
            let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("stats.{k}: {s}"));
            assert!(n("prompt_tokens") + n("generated_tokens") >= 480, "{s}");
            let (anon, weights) = (n("rss_anon_bytes"), n("weight_bytes"));
            let budget = n("kv_cache_bytes") + n("scratch_bytes") + weights / 50;
            let mib = |b: u64| b as f64 / 1048576.0;
            let what = format!(
                "{} {mode}: RssAnon {:.1} MiB, budget {:.1} MiB (KV {:.1}, scratch {:.1})",
                m.display(),
                mib(anon),
                mib(budget),
                mib(n("kv_cache_bytes")),
                mib(n("scratch_bytes"))
            );
            eprintln!("{what}");
            if mode == "file" {
                assert!(anon > weights, "{what}");
            } else {
                assert!(anon <= budget, "{what}");
            }
        }
    }
}
