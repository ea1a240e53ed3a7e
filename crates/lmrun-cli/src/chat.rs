//! `lmrun chat`: an interactive multi-turn chat with the model's chat template (or a built-in
//! one when the file has none). Only each new turn is prefilled: the KV cache keeps the
//! conversation. Ctrl-C stops the current answer (or the prompt being read); Ctrl-D (end of
//! input) or `/exit` quits; `/reset` starts a new conversation. With `--tools FILE` the model
//! is offered those tools: its calls are printed, and `/tool TEXT` answers the last one. A line that is not UTF-8 or a
//! message that does not fit in the context is reported and the conversation goes on.

use std::io::BufRead;
use std::sync::atomic::Ordering;

use anyhow::bail;

use crate::errln;
use lmrun::chat::Conversation;
use lmrun::{GenerationConfig, RunnerError};

use crate::args::{ModelArgs, SamplingArgs};

/// Arguments of `lmrun chat`.
#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,

    #[command(flatten)]
    sampling: SamplingArgs,

    /// A system message to open the conversation with.
    #[arg(long)]
    system: Option<String>,

    /// Tools the model may call: a JSON file holding OpenAI's `tools` array. Calls are printed
    /// as `[tool call] name {arguments}`; answer the last one with `/tool RESULT`.
    #[arg(long, value_name = "FILE")]
    tools: Option<std::path::PathBuf>,

    /// Most tokens per answer (-1 = until end of turn or the context is full).
    #[arg(
        short = 'n',
        long = "max-new-tokens",
        default_value_t = 512,
        allow_negative_numbers = true
    )]
    max_new_tokens: i64,

    /// Print the stats after every answer.
    #[arg(long)]
    stats: bool,
}

/// Run `lmrun chat`.
pub fn run(args: ChatArgs) -> anyhow::Result<i32> {
    let mut cfg = GenerationConfig {
        echo: false,
        max_new_tokens: args.max_new_tokens,
        parse_special: true,
        ..Default::default()
    };
    if cfg.max_new_tokens == 0 || cfg.max_new_tokens < -1 {
        bail!("-n/--max-new-tokens takes -1 (until the end of the turn) or a count of at least 1");
    }
    args.sampling.apply(&mut cfg)?;
    let mut runner = args.model.runner(None)?;
    let template = runner.chat_template();
    if !template.is_model_template() {
        log::warn!(
            "{}: the model has no chat template, so it is probably a base (pretrained) model, \
             not a chat model: its replies may be nonsense. Chat with an instruction-tuned \
             model (files named -it, -Instruct or -chat), or use `lmrun run` to continue text; \
             using a generic turn format",
            args.model.model.display()
        );
    }
    let tools = args
        .tools
        .as_deref()
        .map(crate::run::read_tools)
        .transpose()?;
    if tools.is_some() && !template.is_model_template() {
        bail!(
            "{}: the model has no chat template, so it has no format for tools",
            args.model.model.display()
        );
    }
    let new_conv =
        || Conversation::new(template.clone(), args.system.as_deref()).with_tools(tools.clone());
    let mut conv = new_conv();
    let interrupted = crate::run::on_ctrl_c(&runner);
    let stdin = std::io::stdin();
    let mut raw = Vec::new();
    loop {
        crate::out::print("> ")?;
        raw.clear();
        if stdin.lock().read_until(b'\n', &mut raw)? == 0 {
            crate::out::println("")?;
            crate::run::warn_changed_files(&runner);
            return Ok(0);
        }
        let line = match std::str::from_utf8(&raw) {
            Ok(l) => l.trim_end_matches(['\n', '\r']),
            Err(e) => {
                errln!(
                    "lmrun: that line is not valid UTF-8 text (at byte {}); it was skipped",
                    e.valid_up_to()
                );
                continue;
            }
        };
        match line.trim() {
            "/exit" | "/quit" => {
                crate::run::warn_changed_files(&runner);
                return Ok(0);
            }
            "/reset" => {
                runner.reset();
                conv = new_conv();
                errln!("(conversation cleared)");
                continue;
            }
            "" => continue,
            _ => {}
        }
        // A turn that fails leaves the conversation as it was before it.
        let before = conv.clone();
        let (text, restart) = match line.trim_start().strip_prefix("/tool") {
            Some(result) if tools.is_some() => conv.tool_result(result.trim())?,
            _ => conv.user_turn(line)?,
        };
        if restart {
            runner.reset();
        }
        interrupted.store(false, Ordering::SeqCst);
        let mut write_err: Option<std::io::Error> = None;
        let stop = runner.stop_handle();
        let mut on_token = |piece: &str| {
            if write_err.is_none() {
                if let Err(e) = crate::out::write_raw(piece) {
                    write_err = Some(e);
                    stop.stop();
                }
            }
        };
        let result = runner.generate(&text, &cfg, &mut on_token, &mut |_| {});
        if let Some(e) = write_err {
            return Err(crate::out::write_error(e));
        }
        let gen = match result {
            Ok(g) => g,
            Err(e) if is_turn_error(&e) => {
                conv = before;
                if restart {
                    // The cache was cleared for this turn: the next one feeds everything again.
                    conv.model_forgot();
                }
                errln!("lmrun: {}", turn_error_text(&e, &args.model));
                continue;
            }
            Err(e) => return Err(anyhow::Error::new(e).context("generation failed")),
        };
        if gen.generated_token_ids.is_empty() {
            // Stopped during the prompt: the model did not take the turn in.
            conv = before;
            if restart {
                conv.model_forgot();
            }
            crate::out::println("")?;
            errln!("(stopped before the answer; the message was dropped)");
            continue;
        }
        crate::out::println("")?;
        for c in conv.assistant_reply(&gen.text) {
            crate::out::println(&format!("[tool call] {} {}", c.name, c.arguments))?;
        }
        if args.stats {
            errln!("{}", gen.stats.report_text());
        }
    }
}

/// Errors of one turn that leave the conversation usable (the user can send another message).
fn is_turn_error(e: &RunnerError) -> bool {
    matches!(
        e,
        RunnerError::PromptTooLong { .. }
            | RunnerError::EmptyPrompt
            | RunnerError::NoRoom { .. }
            | RunnerError::Tokenizer(_)
            | RunnerError::InvalidArgument(_)
    )
}

/// A turn error in chat's words: a message that does not fit says how much room is left and
/// what to do.
fn turn_error_text(e: &RunnerError, model: &ModelArgs) -> String {
    match e {
        RunnerError::PromptTooLong {
            prompt_tokens,
            left,
            context,
        } => {
            let flag = match model.ctx_size {
                Some(c) => format!("--ctx-size {c}"),
                None => format!("the default of {context}"),
            };
            format!(
                "this message needs {prompt_tokens} tokens (with the turn markers) but only \
                 {left} of the context's {context} are left ({flag}); it was not sent. Send a \
                 shorter message, /reset to start a new conversation, or restart chat with a \
                 larger --ctx-size"
            )
        }
        e => format!("{e}; the message was not sent"),
    }
}
