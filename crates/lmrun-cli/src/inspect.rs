//! `lmrun inspect`: what is inside a model file — architecture, hyperparameters, tensors by type,
//! tokenizer, special tokens, chat template, and the load report — as text or one JSON object.

use std::path::PathBuf;

use lmrun::backend::{detect_format, Format};
use lmrun::LoadMode;

/// Arguments of `lmrun inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The model file.
    model: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// How the file is loaded.
    #[arg(long, default_value_t = lmrun::DEFAULT_LOAD_MODE)]
    load_mode: LoadMode,
}

/// Run `lmrun inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    match detect_format(&args.model)? {
        Format::Gguf => {
            let summary = lmrun_gguf::inspect(&args.model, args.load_mode)?;
            if args.json {
                crate::out::println(&serde_json::to_string(&summary)?)?;
            } else {
                crate::out::print(&lmrun_gguf::render_text(&summary))?;
            }
        }
        Format::Pte => {
            let summary = lmrun_pte::inspect_pte(&args.model)?;
            if args.json {
                crate::out::println(&serde_json::to_string(&summary)?)?;
            } else {
                crate::out::print(&summary.to_text())?;
            }
        }
    }
    Ok(())
}
