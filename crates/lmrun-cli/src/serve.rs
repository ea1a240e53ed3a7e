//! `lmrun serve`: the OpenAI-compatible server (the `lmrun-server` crate) under the command's
//! usual model options — like llama-server, on loopback unless told otherwise.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use lmrun::LoadMode;

/// Arguments of `lmrun serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Model file (GGUF).
    #[arg(short = 'm', long = "model")]
    model: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 picks a free one; see --port-file).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests served at once (sequence slots, each with its own KV cache of --ctx-size).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Requests that may wait for a slot; more get 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Context of each slot in tokens [default: the model's training context, at most 4096].
    #[arg(long = "ctx-size", short = 'c')]
    ctx_size: Option<usize>,
    /// Allow a --ctx-size above the model's training context.
    #[arg(long)]
    allow_long_context: bool,
    /// Require this bearer token on every endpoint but /health.
    #[arg(long, conflicts_with = "api_key_file")]
    api_key: Option<String>,
    /// Read the bearer token from this file (first line).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// How the model file is loaded.
    #[arg(long, default_value_t = lmrun::DEFAULT_LOAD_MODE)]
    load_mode: LoadMode,
    /// Compute threads [default: the number of physical cores].
    #[arg(long)]
    threads: Option<usize>,
    /// A Jinja chat template file replacing the model's.
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    body_limit: usize,
    /// Seconds requests in flight may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 10)]
    shutdown_timeout: u64,
    /// Seconds a client may take to send a request's headers before its connection is closed.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Write the bound host:port to this file once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
}

/// Run `lmrun serve` until SIGTERM or Ctrl-C.
pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    let api_key = match (&a.api_key, &a.api_key_file) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(f)) => {
            let s = std::fs::read_to_string(f)
                .with_context(|| format!("{}: cannot read the API key file", f.display()))?;
            let k = s.lines().next().unwrap_or("").trim().to_string();
            anyhow::ensure!(!k.is_empty(), "{}: the API key file is empty", f.display());
            Some(k)
        }
        (None, None) => None,
    };
    let chat_template = match &a.chat_template {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("{}: cannot read the chat template", f.display()))?,
        ),
        None => None,
    };
    anyhow::ensure!(a.parallel >= 1, "--parallel must be at least 1");
    let opts = lmrun_server::ServerOptions {
        model: a.model,
        host: a.host,
        port: a.port,
        parallel: a.parallel,
        queue: a.queue,
        ctx_size: a.ctx_size,
        api_key,
        load_mode: a.load_mode,
        threads: a.threads.unwrap_or(0),
        chat_template,
        body_limit: a.body_limit,
        shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
        header_timeout: Duration::from_secs(a.header_timeout),
        allow_long_context: a.allow_long_context,
        port_file: a.port_file,
        ..Default::default()
    };
    lmrun_server::serve(opts)?;
    Ok(())
}
