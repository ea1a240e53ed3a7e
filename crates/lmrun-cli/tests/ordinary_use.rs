//! The ordinary ways a shell ends or disturbs a run, through the real binary: a reader that
//! closes the pipe early, a full disk on stdout, Ctrl-C during a long prompt, the model file
//! truncated under its mapping, a chat fed bad lines, prompts from files and stdin, and every
//! limit refused with the flag to change. None of them may panic or die without a message.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{gemma, qwen};

const BIN: &str = env!("CARGO_BIN_EXE_lmrun");

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn lmrun(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// No Rust panic, no abort: the things a crash would print.
fn assert_no_crash(what: &str, err: &str) {
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace", "Aborted"] {
        assert!(!err.contains(bad), "{what}: {err}");
    }
}

/// The value of `"key":N` in the `PyTorchObserver {...}` line on stderr.
fn observer_field(err: &str, key: &str) -> i64 {
    let line = err
        .lines()
        .find(|l| l.starts_with("PyTorchObserver "))
        .unwrap_or_else(|| panic!("no PyTorchObserver line in: {err}"));
    let v: serde_json::Value = serde_json::from_str(&line["PyTorchObserver ".len()..]).unwrap();
    v[key].as_i64().unwrap()
}

/// Wait for `child` at most `limit`; kill it and fail if it runs longer.
fn wait_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `lmrun ARGS` started with stdout and stderr piped.
fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn collect_stderr(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

#[test]
fn a_reader_that_closes_the_pipe_stops_generation_quietly() {
    let g = gemma();
    let mut child = spawn(&[
        "run",
        "-m",
        s(&g),
        "-p",
        "Once upon a time",
        "-n",
        "3000",
        "--ignore-eos",
        "--temperature",
        "0",
    ]);
    // Like `| head -c 20`: read 20 bytes, then close the pipe.
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 20];
    out.read_exact(&mut first).unwrap();
    drop(out);
    let err = collect_stderr(&mut child);
    let st = child.wait().unwrap();
    assert_no_crash("closed pipe", &err);
    assert_eq!(st.code(), Some(0), "{err}");
    assert!(
        !err.contains("lmrun: error"),
        "a closed reader is not an error: {err}"
    );
    // Generation stopped at once instead of running on to 3000 tokens.
    let generated = observer_field(&err, "generated_tokens");
    assert!(
        generated < 100,
        "kept generating after the pipe closed: {generated} tokens"
    );
}

#[test]
fn every_subcommand_survives_a_closed_pipe_and_a_full_disk() {
    let g = gemma();
    let tok_cases: Vec<Vec<&str>> = vec![
        vec![
            "run",
            "-m",
            s(&g),
            "-p",
            "Hello",
            "-n",
            "4",
            "--temperature",
            "0",
        ],
        vec![
            "run",
            "-m",
            s(&g),
            "-p",
            "Hello",
            "-n",
            "4",
            "--output",
            "json",
        ],
        vec!["inspect", s(&g)],
        vec!["inspect", "--json", s(&g)],
        vec!["tokenize", "-m", s(&g), "hello world"],
        vec!["load", "--load-mode", "mmap", s(&g)],
        vec!["bench", "-m", s(&g), "-p", "8", "-n", "4", "-r", "1"],
    ];
    for args in &tok_cases {
        // Stdout on a full disk: one clear line, status 1.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(BIN).args(args).stdout(full).output().unwrap();
        let err = stderr(&out);
        assert_no_crash(&format!("{args:?} > /dev/full"), &err);
        assert_eq!(out.status.code(), Some(1), "{args:?} > /dev/full: {err}");
        assert!(
            err.contains("cannot write to standard output") && err.contains("No space left"),
            "{args:?} > /dev/full: {err}"
        );

        // Stdout closed before anything is written: quiet, status 0.
        let mut child = spawn(args);
        drop(child.stdout.take());
        let err = collect_stderr(&mut child);
        let st = child.wait().unwrap();
        assert_no_crash(&format!("{args:?} | (closed)"), &err);
        assert_eq!(st.code(), Some(0), "{args:?} | (closed): {err}");
        assert!(!err.contains("lmrun: error"), "{args:?} | (closed): {err}");
    }
}

/// A prompt of about 3,000 Qwen tokens (about 20 KB of words).
fn long_prompt_file(dir: &Path) -> PathBuf {
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "while", "seven",
        "wizards", "judge", "boxing", "matches",
    ];
    let mut x = 12345u32;
    let mut text = String::new();
    for _ in 0..3000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        text.push_str(words[(x >> 16) as usize % words.len()]);
        text.push(' ');
    }
    let p = dir.join("long.txt");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn ctrl_c_during_a_long_prompt_stops_within_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = long_prompt_file(dir.path());
    let q = qwen();
    // One thread: the whole prefill takes tens of seconds, so finishing it before honouring
    // the signal would blow the bound below.
    let mut child = spawn(&[
        "run",
        "-m",
        s(&q),
        "-f",
        s(&prompt),
        "-n",
        "4",
        "--no-echo",
        "--threads",
        "1",
        "--ctx-size",
        "4096",
    ]);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "finished before the signal"
    );
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // Well under the time the rest of the prefill would take on one thread.
    let st = wait_within(&mut child, Duration::from_secs(8), "after SIGINT");
    let err = collect_stderr(&mut child);
    assert_no_crash("SIGINT in prefill", &err);
    assert_eq!(st.code(), Some(130), "{err}");
    // Stopped in the prompt: nothing was generated.
    assert_eq!(observer_field(&err, "generated_tokens"), 0, "{err}");
}

/// Start `lmrun run` on `model` in `mode` for a long generation and wait for its first text.
fn start_long_run(model: &Path, mode: &str, n: &str) -> (Child, Vec<u8>) {
    let mut child = spawn(&[
        "run",
        "-m",
        s(model),
        "-p",
        "Once upon a time",
        "-n",
        n,
        "--ignore-eos",
        "--temperature",
        "0",
        "--load-mode",
        mode,
    ]);
    let mut out = child.stdout.take().unwrap();
    let mut got = vec![0u8; 64];
    out.read_exact(&mut got).unwrap();
    child.stdout = Some(out);
    (child, got)
}

#[test]
fn a_model_truncated_under_its_mapping_ends_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["mmap-mlock-ignore-errors", "mmap", "mmap-mlock"] {
        let copy = dir.path().join(format!("{mode}.gguf"));
        std::fs::copy(gemma(), &copy).unwrap();
        let (mut child, mut text) = start_long_run(&copy, mode, "4000");
        let f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
        f.set_len(f.metadata().unwrap().len() / 3).unwrap();
        drop(f);
        let st = wait_within(&mut child, Duration::from_secs(60), mode);
        child.stdout.take().unwrap().read_to_end(&mut text).unwrap();
        let err = collect_stderr(&mut child);
        assert_eq!(st.code(), Some(135), "{mode}: {st} {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{mode}: one line: {err}");
        assert!(err.contains(s(&copy)), "{mode}: names the file: {err}");
        assert!(
            err.contains("--load-mode file"),
            "{mode}: says the fix: {err}"
        );
        assert_eq!(text.last(), Some(&b'\n'), "{mode}: the text ends its line");
    }
}

#[test]
fn a_model_changed_under_a_file_load_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("file.gguf");
    std::fs::copy(gemma(), &copy).unwrap();
    let (mut child, _) = start_long_run(&copy, "file", "40");
    let f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
    f.set_len(1000).unwrap();
    drop(f);
    let st = wait_within(&mut child, Duration::from_secs(60), "file mode");
    let err = collect_stderr(&mut child);
    assert_no_crash("file mode", &err);
    assert_eq!(st.code(), Some(0), "file mode is immune: {err}");
    assert!(err.contains("changed while lmrun was using it"), "{err}");
    assert!(err.contains("from 253113024 to 1000 bytes"), "{err}");
}

#[test]
fn chat_reports_a_bad_line_and_goes_on() {
    let q = qwen();
    let mut child = Command::new(BIN)
        .args([
            "chat",
            "-m",
            s(&q),
            "--ctx-size",
            "256",
            "-n",
            "6",
            "--temperature",
            "0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"bad \xff\xfe line\n").unwrap();
        stdin
            .write_all(format!("{}\n", "word ".repeat(400)).as_bytes())
            .unwrap();
        stdin.write_all(b"Say hello.\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_no_crash("chat", &err);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
    assert!(
        err.contains("only 256 of the context's 256 are left"),
        "{err}"
    );
    // Three prompts; the third got an answer.
    assert_eq!(text.matches("> ").count(), 4, "{text}");
    let answer = text.split("> ").nth(3).unwrap().trim();
    assert!(!answer.is_empty(), "no answer after the bad lines: {text}");
}

#[test]
fn chat_warns_about_a_model_without_a_chat_template() {
    let mut child = Command::new(BIN)
        .args(["chat", "-m", s(&gemma()), "-n", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = collect_stderr(&mut child);
    assert!(child.wait().unwrap().success(), "{err}");
    assert!(err.contains("no chat template"), "{err}");
}

#[test]
fn prompts_come_from_files_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = long_prompt_file(dir.path());
    let g = gemma();
    let args = |src: &[&str]| {
        let mut a = vec!["run", "-m", s(&g), "-n", "1", "--output", "json"];
        a.extend_from_slice(src);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let ids = |out: &Output| -> Vec<u64> {
        assert!(out.status.success(), "{}", stderr(out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["prompt_token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    let from_file = ids(&Command::new(BIN)
        .args(args(&["-f", s(&prompt)]))
        .output()
        .unwrap());
    assert!(from_file.len() > 2000, "{} tokens", from_file.len());
    for src in [["-f", "-"], ["-p", "-"]] {
        let mut child = Command::new(BIN)
            .args(args(&src))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let text = std::fs::read(&prompt).unwrap();
        child.stdin.take().unwrap().write_all(&text).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(ids(&out), from_file, "{src:?}");
    }

    // 300 KB: read and tokenized whole, then refused with the numbers.
    let big = dir.path().join("big.txt");
    std::fs::write(
        &big,
        "All work and no play makes Jack a dull boy. ".repeat(7000),
    )
    .unwrap();
    assert!(std::fs::metadata(&big).unwrap().len() > 300_000);
    let out = lmrun(&["run", "-m", s(&g), "-f", s(&big), "-n", "1"]);
    let err = stderr(&out);
    assert_no_crash("300 KB prompt", &err);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let n: usize = err
        .split("the prompt has ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(n > 60_000, "only {n} tokens: the file was not read whole");
    assert!(err.contains("--ctx-size"), "{err}");

    // Not UTF-8: named, with the byte.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"abc\xffdef").unwrap();
    let err = stderr(&lmrun(&["run", "-m", s(&g), "-f", s(&bad)]));
    assert!(
        err.contains("bad.txt: not valid UTF-8 text (at byte 3)"),
        "{err}"
    );
}

/// A copy of the tiny llama fixture whose `llama.context_length` is 0.
fn tiny_with_zero_context(dir: &Path) -> PathBuf {
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lmrun-models/tests/data/tiny-llama.gguf"
    );
    let mut b = std::fs::read(src).unwrap();
    let key = b"llama.context_length";
    let at = b
        .windows(key.len())
        .position(|w| w == key)
        .expect("key in fixture")
        + key.len();
    let ty = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    assert_eq!(ty, 4, "context_length is a u32 in the fixture");
    b[at + 4..at + 8].copy_from_slice(&0u32.to_le_bytes());
    let p = dir.join("zero-ctx.gguf");
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn limits_are_errors_that_name_the_flag_and_the_numbers() {
    let g = gemma();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let tok512 = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tok512.json");
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["run", "-m", s(&g), "-p", "hi", "--ctx-size", "10000000"],
            &["--ctx-size 10000000", "32768", "--allow-long-context"],
        ),
        (
            vec![
                "run",
                "-m",
                s(&g),
                "-p",
                "hi",
                "--ctx-size",
                "16000000",
                "--allow-long-context",
            ],
            &["KV cache", "memory is available", "smaller --ctx-size"],
        ),
        (
            vec!["bench", "-m", s(&g), "-p", "100000", "-n", "0"],
            &["100000 tokens", "32768", "-p/-n"],
        ),
        (
            vec!["run", "-m", s(&g), "-p", "hi", "-n", "0"],
            &["-n/--max-new-tokens 0", "at least 1"],
        ),
        (
            vec!["run", "-m", s(&g), "-p", "hi", "--temperature", "-1"],
            &["--temperature must be a number >= 0"],
        ),
        (
            vec!["run", "-m", s(&g), "-p", "hi", "--seq-len", "1"],
            &["--seq-len 1", "raise --seq-len"],
        ),
        (
            vec!["run", "-m", s(&fifo), "-p", "hi"],
            &["model.fifo", "pipe (FIFO)", "not a regular file"],
        ),
    ];
    for (args, needles) in cases {
        let out = lmrun(&args);
        let err = stderr(&out);
        assert_no_crash(&format!("{args:?}"), &err);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: missing {n:?} in: {err}");
        }
        assert!(
            !err.contains("--seq-len") || args.contains(&"--seq-len"),
            "{err}"
        );
    }

    // Too many threads: one warning, and the run still works.
    let out = lmrun(&[
        "run",
        "-m",
        s(&g),
        "-p",
        "hi",
        "-n",
        "2",
        "--threads",
        "64",
        "--no-echo",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("--threads 64 is more than").count(), 1, "{err}");

    // A file whose training context is 0 is not blamed on the options.
    let zero = tiny_with_zero_context(dir.path());
    let out = lmrun(&[
        "run",
        "-m",
        s(&zero),
        "-t",
        tok512,
        "-p",
        "hi",
        "-n",
        "2",
        "--no-echo",
    ]);
    let err = stderr(&out);
    assert_no_crash("context_length 0", &err);
    assert!(err.contains("llama.context_length is 0"), "{err}");
    assert!(!err.contains("model options"), "{err}");
}

#[test]
fn generated_token_counts_agree_everywhere() {
    let out = lmrun(&[
        "run",
        "-m",
        s(&gemma()),
        "-p",
        "Once upon a time",
        "-n",
        "16",
        "--ignore-eos",
        "--temperature",
        "0",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = v["generated_token_ids"].as_array().unwrap().len();
    assert_eq!(ids, 16);
    assert_eq!(v["stats"]["generated_tokens"], 16);
    assert_eq!(v["stats"]["decode_steps"], 15);

    let out = lmrun(&[
        "run",
        "-m",
        s(&gemma()),
        "-p",
        "Once",
        "-n",
        "16",
        "--ignore-eos",
    ]);
    let err = stderr(&out);
    assert_eq!(observer_field(&err, "generated_tokens"), 16);
    assert!(err.contains("generated tokens: 16"), "{err}");
}
