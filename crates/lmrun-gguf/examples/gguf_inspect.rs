//! `cargo run -p lmrun-gguf --example gguf_inspect -- MODEL.gguf [--json] [--load-mode MODE]`:
//! what `lmrun inspect` prints, without building the CLI.

use std::process::ExitCode;

use lmrun_gguf::{inspect, render_text, LoadMode};

fn main() -> ExitCode {
    let mut path = None;
    let mut json = false;
    let mut mode = LoadMode::MmapUseMlockIgnoreErrors;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--load-mode" => {
                match args.next().map(|m| m.parse()) {
                    Some(Ok(m)) => mode = m,
                    _ => {
                        eprintln!("--load-mode needs one of file, mmap, mmap-mlock, mmap-mlock-ignore-errors");
                        return ExitCode::from(2);
                    }
                }
            }
            _ => path = Some(a),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: gguf_inspect MODEL.gguf [--json] [--load-mode MODE]");
        return ExitCode::from(2);
    };
    match inspect(path.as_ref(), mode) {
        Ok(s) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&s).expect("summary serializes")
            );
            ExitCode::SUCCESS
        }
        Ok(s) => {
            print!("{}", render_text(&s));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
