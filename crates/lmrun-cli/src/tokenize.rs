//! `lmrun tokenize`: show how a text becomes token ids (and pieces), with the model's own
//! vocabulary or a given tokenizer file — like llama.cpp's `llama-tokenize`.

use std::path::PathBuf;

use lmrun::backend::{detect_format, gguf_vocab, Format};
use lmrun_tokenizers::{GgufTokenizer, Tokenizer};

/// Output format of `tokenize`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokOutput {
    /// One `id -> 'piece'` line per token.
    Text,
    /// `{"ids": [...], "pieces": [...]}`.
    Json,
}

/// Arguments of `lmrun tokenize`.
#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// Model file whose vocabulary is used (unless -t is given).
    #[arg(short = 'm', long)]
    model: Option<PathBuf>,
    /// A tokenizer file or directory instead of the model's vocabulary.
    #[arg(short = 't', long)]
    tokenizer: Option<PathBuf>,
    /// Turn control tokens written in the text into single tokens.
    #[arg(long)]
    special: bool,
    /// Do not add BOS even when the model's rule says so.
    #[arg(long)]
    no_bos: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TokOutput::Text)]
    output: TokOutput,
    /// How the model file is loaded (only its header is read, so a plain mapping is the
    /// default: nothing is locked or copied).
    #[arg(long, default_value_t = lmrun::LoadMode::Mmap)]
    load_mode: lmrun::LoadMode,
    /// The text.
    text: String,
}

/// Run `lmrun tokenize`.
pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    let tok: Box<dyn Tokenizer> = match (&args.tokenizer, &args.model) {
        (Some(t), _) => lmrun::load_tokenizer(t)?,
        (None, Some(m)) => match detect_format(m)? {
            Format::Gguf => {
                let g = lmrun_gguf::GgufFile::open(m, args.load_mode)?;
                Box::new(GgufTokenizer::from_vocab(gguf_vocab(&g)?)?)
            }
            Format::Pte => anyhow::bail!(
                "{}: a .pte carries no vocabulary; give the tokenizer with -t",
                m.display()
            ),
        },
        (None, None) => anyhow::bail!("give a model (-m) or a tokenizer (-t)"),
    };
    let mut opts = tok.default_options(args.special);
    if args.no_bos {
        opts.num_bos = 0;
    }
    let ids = tok.encode_with(&args.text, &opts)?;
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| tok.piece(id).unwrap_or_default())
        .collect();
    match args.output {
        TokOutput::Json => {
            crate::out::println(&serde_json::json!({ "ids": ids, "pieces": pieces }).to_string())?;
        }
        TokOutput::Text => {
            let mut text = String::new();
            for (id, p) in ids.iter().zip(&pieces) {
                text.push_str(&format!("{id:>7} -> {p:?}\n"));
            }
            crate::out::print(&text)?;
        }
    }
    Ok(())
}
