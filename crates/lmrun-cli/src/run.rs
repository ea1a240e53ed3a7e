//! `lmrun run`: generate text from a prompt with `create_text_llm_runner`, streaming the text to
//! stdout and the stats (the `PyTorchObserver` line and a readable summary) to stderr, or one
//! JSON object with `--output json`. Ctrl-C stops generation (or the prompt's prefill) through
//! the runner's stop handle, prints the stats and exits with 130; a second Ctrl-C exits at once.
//! A closed stdout stops generation at once and exits quietly (see `out`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use lmrun::{GenerationConfig, LoadMode, LoadReport, Stats, TextLLMRunner};

use crate::args::{ModelArgs, SamplingArgs};

/// Output format of `run`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Stream the text to stdout; stats to stderr.
    Text,
    /// One JSON object on stdout at the end.
    Json,
}

/// Arguments of `lmrun run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,

    /// The prompt ("-" reads it from stdin).
    #[arg(
        short = 'p',
        long,
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    prompt: Option<String>,

    /// Read the prompt from a file ("-" = stdin).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,

    /// Most tokens to generate (-1 = until EOS or the context is full).
    #[arg(
        short = 'n',
        long = "max-new-tokens",
        default_value_t = 256,
        allow_negative_numbers = true
    )]
    max_new_tokens: i64,

    /// Cap on prompt + generated tokens (-1 = the context).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    seq_len: i64,

    #[command(flatten)]
    sampling: SamplingArgs,

    /// Print the prompt before the generated text (default).
    #[arg(long, overrides_with = "no_echo")]
    echo: bool,
    /// Do not print the prompt.
    #[arg(long)]
    no_echo: bool,

    /// BOS tokens before the prompt (default: the model's rule).
    #[arg(long)]
    num_bos: Option<usize>,
    /// EOS tokens after the prompt (default: the model's rule).
    #[arg(long)]
    num_eos: Option<usize>,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Treat control tokens written in the prompt as plain text.
    #[arg(long)]
    no_special: bool,

    /// Do a short warm-up generation first (not counted in the stats).
    #[arg(long)]
    warmup: bool,

    /// Send the prompt as a user message through the model's chat template (and parse the
    /// answer: `<think>` reasoning and tool calls go to their own JSON fields).
    #[arg(long)]
    chat: bool,
    /// With --chat: a system message.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Tools the model may call: a JSON file holding OpenAI's `tools` array (implies --chat);
    /// calls the model makes are parsed into `tool_calls` (`--output json`).
    #[arg(long)]
    tools: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// Also write the stats as JSON to this file.
    #[arg(long)]
    stats_json: Option<PathBuf>,
}

impl RunArgs {
    /// Whether the run prints one JSON object (no streamed text).
    pub fn json_output(&self) -> bool {
        self.output == Output::Json
    }
}

/// The load report as `lmrun run` and `lmrun load` print it: [`LoadReport`]'s own
/// serialisation, plus the file's path and size and the process's memory.
pub fn load_object(model: &Path, report: &LoadReport, mem: [Option<u64>; 3]) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    let [peak, anon, file] = mem;
    v["path"] = model.display().to_string().into();
    v["file_bytes"] = std::fs::metadata(model).map(|m| m.len()).ok().into();
    v["peak_rss_bytes"] = peak.into();
    v["rss_anon_bytes"] = anon.into();
    v["rss_file_bytes"] = file.into();
    v
}

/// Stats as JSON with the load object in `lmrun load` form.
pub fn stats_json(model: &Path, stats: &Stats) -> serde_json::Value {
    let mut v = stats.to_json();
    let mem = [
        stats.peak_rss_bytes,
        stats.rss_anon_bytes,
        stats.rss_file_bytes,
    ];
    v["load"] = load_object(model, &stats.load, mem);
    v
}

/// Install a Ctrl-C handler: the first Ctrl-C calls `stop` (generation, or the prompt's
/// prefill, ends within a layer of the model) and is remembered; a second one before the run
/// has ended exits at once with 130.
pub fn on_ctrl_c(runner: &TextLLMRunner) -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let handle = runner.stop_handle();
    if let Err(e) = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            crate::errln!("\nlmrun: interrupted twice; exiting");
            std::process::exit(130);
        }
        handle.stop();
    }) {
        log::warn!("cannot install the Ctrl-C handler: {e}");
    }
    interrupted
}

/// Largest prompt file read (far more text than any context holds).
const MAX_PROMPT_BYTES: u64 = 256 << 20;

/// The prompt from `-p TEXT`, `-p -` (stdin), `-f FILE` or `-f -` (stdin): valid UTF-8, or an
/// error naming the source and the byte where it stops being valid.
pub fn read_prompt(prompt: Option<&str>, file: Option<&Path>) -> anyhow::Result<String> {
    let from_stdin = prompt == Some("-") || file.is_some_and(|f| f == Path::new("-"));
    let (name, bytes) = if from_stdin {
        let mut b = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_PROMPT_BYTES + 1)
            .read_to_end(&mut b)
            .context("cannot read the prompt from standard input")?;
        ("standard input".to_string(), b)
    } else if let Some(p) = prompt {
        return Ok(p.to_string());
    } else if let Some(f) = file {
        let name = format!("prompt file {}", f.display());
        if std::fs::metadata(f).is_ok_and(|m| m.is_dir()) {
            bail!("{name}: is a directory");
        }
        let mut b = Vec::new();
        std::fs::File::open(f)
            .and_then(|h| h.take(MAX_PROMPT_BYTES + 1).read_to_end(&mut b))
            .with_context(|| name.clone())?;
        (name, b)
    } else {
        bail!("give a prompt with -p TEXT or -f FILE");
    };
    if bytes.len() as u64 > MAX_PROMPT_BYTES {
        bail!(
            "{name}: more than {} MiB of prompt; no context holds that much text",
            MAX_PROMPT_BYTES >> 20
        );
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{name}: not valid UTF-8 text (at byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Run `lmrun run`; returns the process exit code.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let prompt = read_prompt(args.prompt.as_deref(), args.file.as_deref())?;
    if prompt.is_empty() {
        bail!("the prompt is empty (give one with -p TEXT or -f FILE)");
    }
    if args.max_new_tokens == 0 {
        bail!(
            "-n/--max-new-tokens 0 asks for nothing to generate; give at least 1, or -1 for as \
             many as the context holds"
        );
    }
    let mut cfg = GenerationConfig {
        echo: !args.no_echo,
        max_new_tokens: args.max_new_tokens,
        seq_len: args.seq_len,
        num_bos: args.num_bos,
        num_eos: args.num_eos,
        ignore_eos: args.ignore_eos,
        parse_special: !args.no_special,
        ..Default::default()
    };
    if cfg.max_new_tokens < -1 || cfg.seq_len < -1 {
        bail!("--max-new-tokens and --seq-len take -1 or a count");
    }
    args.sampling.apply(&mut cfg)?;
    let mut runner = args.model.runner(None)?;
    let chat = args.chat || args.tools.is_some();
    let tools = args.tools.as_deref().map(read_tools).transpose()?;
    let prompt = if chat {
        let mut msgs = Vec::new();
        if let Some(s) = &args.system {
            msgs.push(lmrun::chat::Message::new("system", s));
        }
        msgs.push(lmrun::chat::Message::new("user", &prompt));
        cfg.echo = false;
        runner
            .chat_template()
            .render_with_tools(&msgs, true, tools.as_ref())?
    } else {
        prompt
    };
    let interrupted = on_ctrl_c(&runner);
    if args.warmup {
        runner.warmup(&prompt, 4).context("warm-up run failed")?;
    }
    let text_mode = args.output == Output::Text;
    // The first write error ends generation (through the stop handle) and is reported after.
    let mut write_err: Option<std::io::Error> = None;
    let stop = runner.stop_handle();
    let mut on_token = |piece: &str| {
        if text_mode && write_err.is_none() {
            if let Err(e) = crate::out::write_raw(piece) {
                write_err = Some(e);
                stop.stop();
            }
        }
    };
    let gen = runner
        .generate(&prompt, &cfg, &mut on_token, &mut |_| {})
        .map_err(|e| crate::hints::runner_error(e, &args.model.model, args.model.ctx_size))?;
    let stats = stats_json(&args.model.model, &gen.stats);
    if text_mode {
        if write_err.is_none() {
            if let Err(e) = crate::out::write_raw("\n") {
                write_err = Some(e);
            }
        }
        crate::out::eprintln(&gen.stats.observer_line());
        crate::out::eprintln(&gen.stats.report_text());
    } else {
        let obj = serde_json::json!({
            "text": gen.text,
            "prompt_token_ids": gen.prompt_token_ids,
            "generated_token_ids": gen.generated_token_ids,
            "stop_reason": format!("{:?}", gen.stop_reason).to_lowercase(),
            "chat": chat.then(|| {
                let p = lmrun::tools::parse_answer(&gen.text);
                serde_json::json!({
                    "reasoning": p.reasoning,
                    "content": p.content,
                    "tool_calls": p.tool_calls.iter().map(|c| serde_json::json!({
                        "name": c.name,
                        "arguments": c.arguments,
                    })).collect::<Vec<_>>(),
                })
            }),
            "logprobs": gen.logprobs.iter().map(|l| serde_json::json!({
                "id": l.id,
                "logprob": finite_or_null(l.logprob),
                "top": l.top.iter().map(|&(id, lp)| serde_json::json!({
                    "id": id,
                    "logprob": finite_or_null(lp),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "stats": stats,
        });
        if let Err(e) = crate::out::write_raw(&format!("{obj}\n")) {
            write_err = Some(e);
        }
    }
    warn_changed_files(&runner);
    if let Some(path) = &args.stats_json {
        std::fs::write(path, format!("{stats}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(e) = write_err {
        return Err(crate::out::write_error(e));
    }
    Ok(if interrupted.load(Ordering::SeqCst) {
        130
    } else {
        0
    })
}

/// Warn when a model file changed while it was in use (a mapping then sees other weights).
pub fn warn_changed_files(runner: &TextLLMRunner) {
    let mapped = runner.stats().load.mode != Some(LoadMode::File);
    for (path, what) in runner.changed_model_files() {
        let effect = if mapped {
            "the mapping sees the new bytes, so this run's output may be garbage"
        } else {
            "this run used the copy it read into memory at load"
        };
        log::warn!(
            "{}: the model file changed while lmrun was using it ({what}); {effect}. Do not \
             modify a model file while it is in use; use --load-mode file for files that may \
             change",
            path.display()
        );
    }
}

/// A log-probability for JSON (`-inf`, a banned token, as null).
fn finite_or_null(v: f32) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else {
        serde_json::Value::Null
    }
}

/// Read a `--tools` file: OpenAI's `tools` array (`[{"type": "function", "function": {"name",
/// "description", "parameters"}}]`), checked item by item.
pub fn read_tools(p: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("cannot read --tools file {}", p.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", p.display()))?;
    if let Err(e) = lmrun::tools::tool_names(&v) {
        bail!(
            "{}: {e}; --tools takes a JSON array of tool objects ({{\"type\": \"function\", \
             \"function\": {{\"name\": ..., \"parameters\": ...}}}})",
            p.display()
        );
    }
    Ok(v)
}
