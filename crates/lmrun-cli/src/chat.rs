//! `lmrun chat`: an interactive multi-turn chat with the model's chat template (or a built-in
//! one when the file has none). Only each new turn is prefilled: the KV cache keeps the
//! conversation. Ctrl-C stops the current answer; Ctrl-D (end of input) or `/exit` quits.

use std::io::{BufRead, Write};

use anyhow::Context;
use lmrun::chat::{ChatTemplate, Conversation};
use lmrun::GenerationConfig;

use crate::run::{ModelArgs, SamplingArgs};

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
    args.sampling.apply(&mut cfg)?;
    let mut runner = args.model.runner(None)?;
    let template = chat_template(&args.model.model, &runner)?;
    if !template.is_model_template() {
        log::info!("the model has no chat template; using a built-in format");
    }
    let mut conv = Conversation::new(template, args.system.as_deref());
    let _interrupted = crate::run::on_ctrl_c(&runner);
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        print!("> ");
        stdout.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            return Ok(0);
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line == "/exit" || line == "/quit" {
            return Ok(0);
        }
        if line.trim().is_empty() {
            continue;
        }
        let (text, restart) = conv.user_turn(line)?;
        if restart {
            runner.reset();
        }
        let mut on_token = |piece: &str| {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        };
        let gen = runner
            .generate(&text, &cfg, &mut on_token, &mut |_| {})
            .context("generation failed")?;
        println!();
        conv.assistant_reply(&gen.text);
        if args.stats {
            eprintln!("{}", gen.stats.report_text());
        }
    }
}

/// The chat template of the model at `path` (GGUF metadata), or a built-in one.
fn chat_template(
    path: &std::path::Path,
    runner: &lmrun::TextLLMRunner,
) -> anyhow::Result<ChatTemplate> {
    let tok = runner.tokenizer();
    let piece = |id: Option<u32>| id.and_then(|i| tok.piece(i)).unwrap_or_default();
    let (bos, eos) = (piece(tok.bos_id()), piece(tok.eos_id()));
    match lmrun::backend::detect_format(path)? {
        lmrun::backend::Format::Gguf => {
            let g = lmrun_gguf::GgufFile::open(path, lmrun::LoadMode::Mmap)?;
            let arch = g.architecture()?.to_string();
            let tmpl = g.get_opt::<&str>("tokenizer.chat_template")?;
            Ok(ChatTemplate::for_model(tmpl, &arch, &bos, &eos))
        }
        lmrun::backend::Format::Pte => Ok(ChatTemplate::for_model(None, "", &bos, &eos)),
    }
}
