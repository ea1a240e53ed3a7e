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
            let runs = lmrun::backend::check_gguf(&args.model);
            if args.json {
                let mut v = serde_json::to_value(&summary)?;
                if let Some(o) = v.as_object_mut() {
                    let r = match &runs {
                        Ok(()) => serde_json::json!({ "ok": true }),
                        Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
                    };
                    o.insert("runs".into(), r);
                }
                crate::out::println(&serde_json::to_string(&v)?)?;
            } else {
                let mut text = lmrun_gguf::render_text(&summary);
                let line = match &runs {
                    Ok(()) => "runs          yes: lmrun supports this architecture, its tensors \
                               and its tokenizer\n"
                        .to_string(),
                    Err(e) => format!("runs          no: {e}\n"),
                };
                // After the first block (file, format, architecture, ... load).
                let at = text.find("\n\n").map_or(text.len(), |i| i + 1);
                text.insert_str(at, &line);
                crate::out::print(&text)?;
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
