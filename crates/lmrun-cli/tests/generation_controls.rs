//! `lmrun run` generation controls through the binary on the real Gemma model: a stop string
//! cuts the text (and is never printed), logprobs come with `--output json`, a logit bias bans
//! a token, and bad values are clear errors.

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_lmrun");

fn gemma() -> PathBuf {
    let dir = std::env::var_os("LMRUN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/lmrun/models")
        });
    let p = dir.join("gemma-3-270m-q4_k_m.gguf");
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch_models.sh",
        p.display()
    );
    p
}

fn run(extra: &[&str]) -> std::process::Output {
    let m = gemma();
    let mut args = vec![
        "run",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "The capital of France is",
        "--temperature",
        "0",
        "-n",
        "12",
        "--threads",
        "2",
    ];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().unwrap()
}

fn json(extra: &[&str]) -> serde_json::Value {
    let mut a = vec!["--output", "json"];
    a.extend_from_slice(extra);
    let out = run(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn stop_strings_logprobs_and_logit_bias() {
    let free = json(&[]);
    let text = free["text"].as_str().unwrap().to_string();
    // Stop at the third word of the free run's text (a string that spans tokens is fine).
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.len() >= 4, "{text:?}");
    let stop = format!("{} {}", words[2], words[3]);
    let cut = &text[..text.find(&stop).unwrap()];
    let v = json(&["--stop", &stop]);
    assert_eq!(v["text"].as_str().unwrap(), cut);
    assert_eq!(v["stop_reason"], "stopstring");
    // Text mode prints the same cut text.
    let out = run(&["--stop", &stop]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(cut) && !shown.contains(&stop), "{shown:?}");

    // Logprobs: one entry per generated token, alternatives sorted, the greedy pick first.
    let v = json(&["--n-probs", "3"]);
    let ids = v["generated_token_ids"].as_array().unwrap();
    let lps = v["logprobs"].as_array().unwrap();
    assert_eq!(ids.len(), lps.len());
    for (id, lp) in ids.iter().zip(lps) {
        assert_eq!(&lp["id"], id);
        let top = lp["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(&top[0]["id"], id, "greedy takes the most likely token");
        let l: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(l[0] >= l[1] && l[1] >= l[2] && l[0] <= 0.0, "{l:?}");
    }

    // Banning the first greedy token changes the output.
    let first = free["generated_token_ids"][0].as_u64().unwrap();
    let v = json(&["--logit-bias", &format!("{first}=-inf")]);
    assert_ne!(v["generated_token_ids"][0].as_u64().unwrap(), first);

    // Bad values are errors with a non-zero exit.
    for (args, why) in [
        (vec!["--logit-bias", "99999999=1"], "outside the vocabulary"),
        (vec!["--logit-bias", "5"], "ID=BIAS"),
        (vec!["--typical-p", "0"], "--typical-p"),
        (vec!["--mirostat", "1"], "--mirostat 1"),
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

#[test]
fn a_chat_that_overflows_its_context_keeps_going_with_shift() {
    let dir = gemma().parent().unwrap().to_path_buf();
    let qwen = dir.join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    assert!(qwen.is_file(), "{} missing", qwen.display());
    let turns = "Write a Python function that reverses a string, with a docstring and two \
                 examples.\nNow write the same function in Rust, with a doc comment and a \
                 test.\nAnd now in Go, with a comment explaining it.\n";
    let chat = |overflow: &str| {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args([
                "chat",
                "-m",
                qwen.to_str().unwrap(),
                "-c",
                "256",
                "--temperature",
                "0",
                "-n",
                "100",
                "--threads",
                "2",
                "--context-overflow",
                overflow,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(turns.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Three answers of up to 100 tokens do not fit in 256 positions: without a shift the
    // last message is refused ...
    let (_, err) = chat("error");
    assert!(err.contains("it was not sent"), "{err}");
    // ... with one, every turn is answered (the Go answer is a func).
    let (out, err) = chat("shift");
    assert!(!err.contains("it was not sent"), "{err}");
    assert!(out.contains("def "), "{out}");
    assert!(out.contains("fn "), "{out}");
    assert!(out.contains("func "), "{out}");
}

#[test]
fn tools_reach_the_template_and_calls_are_parsed() {
    use std::io::Write;
    let dir = gemma().parent().unwrap().to_path_buf();
    let qwen = dir.join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    let tools = std::env::temp_dir().join(format!("lmrun-tools-{}.json", std::process::id()));
    std::fs::write(
        &tools,
        r#"[{"type": "function", "function": {"name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}]"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "run",
            "-m",
            qwen.to_str().unwrap(),
            "--tools",
            tools.to_str().unwrap(),
            "-p",
            "What is the weather in Paris right now?",
            "--temperature",
            "0",
            "-n",
            "60",
            "--threads",
            "2",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls = v["chat"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert!(calls[0]["arguments"]["city"]
        .as_str()
        .unwrap()
        .contains("Paris"));

    // `lmrun chat --tools`: the call is printed, `/tool` answers it and the model goes on.
    let mut child = Command::new(BIN)
        .args(["chat", "-m", qwen.to_str().unwrap(), "--tools"])
        .arg(&tools)
        .args(["--temperature", "0", "-n", "60", "--threads", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the weather in Paris right now?\n/tool {\"temperature_c\": 18}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("[tool call] get_weather {\"city\":\"Paris\"}"),
        "{text}"
    );
    // Two prompts answered, then the third "> " at end of input.
    assert_eq!(text.matches("> ").count(), 3, "{text}");

    // A tools file that is not an array of objects is an error naming the file.
    std::fs::write(&tools, "{\"name\": 1}").unwrap();
    let out = Command::new(BIN)
        .args([
            "run",
            "-m",
            qwen.to_str().unwrap(),
            "--tools",
            tools.to_str().unwrap(),
        ])
        .args(["-p", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("JSON array of tool objects"), "{err}");
    let _ = std::fs::remove_file(&tools);
}

#[test]
fn json_schema_and_grammar_files() {
    let dir = std::env::temp_dir().join(format!("lmrun-gbnf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = dir.join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
            "population": {"type": "integer"}}, "required": ["city", "population"]}"#,
    )
    .unwrap();
    let m = gemma();
    let out = Command::new(BIN)
        .args([
            "run",
            "-m",
            m.to_str().unwrap(),
            "--temperature",
            "0",
            "--threads",
            "2",
        ])
        .args([
            "-p",
            "The largest city of Japan, as JSON:",
            "-n",
            "60",
            "--no-echo",
        ])
        .args([
            "--output",
            "json",
            "--json-schema",
            schema.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let doc: serde_json::Value = serde_json::from_str(v["text"].as_str().unwrap()).unwrap();
    assert!(
        doc["city"].is_string() && doc["population"].is_i64(),
        "{doc}"
    );

    // Errors name the file, the line and column, or the unsupported feature.
    let bad = dir.join("bad.gbnf");
    std::fs::write(&bad, "root ::= \"a\" rest\nrest ::= (\"b\"\n").unwrap();
    let out = run(&["--grammar-file", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.gbnf") && err.contains("line 3, column 1"),
        "{err}"
    );
    let out = run(&["--json-schema", r#"{"type": "string", "pattern": "a+"}"#]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pattern"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
