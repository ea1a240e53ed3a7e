//! `lmrun bench`: llama-bench-style throughput — ppN (prefill) and tgN (decode) tokens/s as
//! median and min–max over repetitions, per thread count — as a markdown table or JSON.

use std::path::PathBuf;

use lmrun::bench::{self, BenchOptions};
use lmrun::LoadMode;

/// Output format of `bench`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchOutput {
    /// A markdown table.
    Md,
    /// A JSON array, one object per test and thread count.
    Json,
}

fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .map(|x| x.trim().parse::<usize>().map_err(|e| format!("'{x}': {e}")))
        .collect()
}

/// Arguments of `lmrun bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model file.
    #[arg(short = 'm', long)]
    model: PathBuf,
    /// Prompt lengths for the pp tests, comma separated (0 = none).
    #[arg(short = 'p', long = "n-prompt", default_value = "128,512", value_parser = parse_list)]
    prompt: Vec<Vec<usize>>,
    /// Tokens for the tg test (0 = none).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    gen: usize,
    /// Repetitions.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    reps: usize,
    /// Thread counts, comma separated [default: the number of physical cores].
    #[arg(long, value_parser = parse_list)]
    threads: Option<Vec<Vec<usize>>>,
    /// Load mode.
    #[arg(long, default_value_t = lmrun::DEFAULT_LOAD_MODE)]
    load_mode: LoadMode,
    /// Output format.
    #[arg(long, value_enum, default_value_t = BenchOutput::Md)]
    output: BenchOutput,
}

/// Run `lmrun bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let threads = match args.threads {
        Some(t) => t.into_iter().flatten().collect::<Vec<_>>(),
        None => vec![lmrun::default_threads()],
    };
    let opts = BenchOptions {
        prompt_lens: args.prompt.into_iter().flatten().collect(),
        gen_len: args.gen,
        repetitions: args.reps,
        threads,
        load_mode: args.load_mode,
    };
    for &t in &opts.threads {
        crate::args::warn_threads(t);
    }
    let results = bench::run(&args.model, &opts).map_err(|e| match e {
        lmrun::RunnerError::ContextTooLong {
            path,
            requested,
            trained,
        } => anyhow::anyhow!(
            "{}: a test of {requested} tokens is longer than the {trained}-token context the \
             model was trained for; use -p/-n sizes of at most {trained}",
            path.display()
        ),
        e => e.into(),
    })?;
    match args.output {
        BenchOutput::Json => crate::out::println(&serde_json::to_string_pretty(&results)?)?,
        BenchOutput::Md => crate::out::print(&bench::markdown(&args.model, &results))?,
    }
    Ok(())
}
