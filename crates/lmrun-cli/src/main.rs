//! The `lmrun` command: a thin layer over the library crates. Each subcommand lives in its own
//! module; this file parses the command line, sets up logging and turns errors into one clear
//! line on stderr and a non-zero exit code. Exit statuses: 0 success (also when stdout's reader
//! went away: `lmrun run … | head`), 1 an error (one line on stderr), 2 a bad command line,
//! 130 interrupted by Ctrl-C, 135 the model file failed under its mapping (SIGBUS, explained
//! in one line).

#![forbid(unsafe_code)]

mod args;
mod bench;
mod chat;
mod hints;
mod inspect;
mod load;
mod out;
mod run;
mod serve;
mod tokenize;

use clap::{Parser, Subcommand};

/// Run text LLMs on this machine's CPU (GGUF and ExecuTorch programs).
#[derive(Parser, Debug)]
#[command(name = "lmrun", version, about, propagate_version = true)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load a whole model file with a load mode, touch every page and report what it cost.
    Load(load::LoadArgs),
    /// Generate text from a prompt (ExecuTorch's text LLM runner).
    Run(run::RunArgs),
    /// Chat with a model, turn by turn, using its chat template.
    Chat(chat::ChatArgs),
    /// Describe a model file: architecture, tensors, tokenizer, load report.
    Inspect(inspect::InspectArgs),
    /// Measure prefill and decode speed (llama-bench style).
    Bench(bench::BenchArgs),
    /// Show the token ids of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (continuous batching).
    Serve(serve::ServeArgs),
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    // A model file truncated under its mapping ends the run with one line naming it, not a
    // silent SIGBUS. JSON output stays one object: no newline is added before the message.
    let json_out = matches!(&cli.command, Command::Run(a) if a.json_output());
    if let Err(e) = lmrun_loader::install_fault_handler(!json_out) {
        log::debug!("cannot install the SIGBUS handler: {e}");
    }
    let result = match cli.command {
        Command::Load(args) => load::run(args).map(|()| 0),
        Command::Run(args) => run::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Bench(args) => bench::run(args).map(|()| 0),
        Command::Inspect(args) => inspect::run(args).map(|()| 0),
        Command::Tokenize(args) => tokenize::run(args).map(|()| 0),
        Command::Serve(args) => serve::run(args).map(|()| 0),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) if err.is::<out::OutputClosed>() => std::process::exit(0),
        Err(err) => {
            errln!("lmrun: error: {}", one_line(&err));
            std::process::exit(1);
        }
    }
}

/// The error and its causes on one line (`outer: cause: root cause`), skipping causes whose
/// text the outer message already contains.
fn one_line(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
}
