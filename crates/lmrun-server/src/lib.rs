//! `lmrun serve`: an OpenAI-compatible HTTP server over one GGUF model, drop-in for
//! llama-server's `/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/health` and
//! `/metrics`. The network side is tokio + axum; the model runs on the engine's own thread
//! ([`engine`]), which serves `parallel` sequence slots with continuous batching from one
//! mapping of the file, loaded in the runner's default mode (`MmapUseMlockIgnoreErrors`) unless
//! asked otherwise. Channels connect the two: a request goes to the engine as a tokenized
//! [`engine::Job`], its text comes back as [`engine::Event`]s.

pub mod api;
pub mod engine;
pub mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use lmrun::chat::ChatTemplate;
use lmrun::{LoadMode, RunnerOptions};
use lmrun_tokenizers::{EncodeOptions, Tokenizer};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::api::{ApiError, Common};
use crate::engine::{Engine, Event, Job};
use crate::metrics::Metrics;
use lmrun::sampler::TokenLogprob;

/// How `lmrun serve` runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The GGUF model.
    pub model: PathBuf,
    /// Address to listen on (default loopback).
    pub host: String,
    /// Port (0 picks a free one; the address is logged and written to `port_file`).
    pub port: u16,
    /// Sequence slots served at once.
    pub parallel: usize,
    /// Requests that may wait for a slot; more get 503.
    pub queue: usize,
    /// Context per slot (None: the model's, at most 4096).
    pub ctx_size: Option<usize>,
    /// Bearer token every endpoint but `/health` requires.
    pub api_key: Option<String>,
    /// How the model file is loaded.
    pub load_mode: LoadMode,
    /// Compute threads (0 = physical cores).
    pub threads: usize,
    /// A Jinja chat template replacing the model's.
    pub chat_template: Option<String>,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// After SIGTERM/Ctrl-C, how long requests in flight may take before they are cancelled.
    pub shutdown_timeout: Duration,
    /// How long a client may take to send its request body.
    pub body_timeout: Duration,
    /// How long a client may take to send a request's headers (the connection is closed after
    /// that: a slow-loris client cannot hold connections open forever).
    pub header_timeout: Duration,
    /// Allow a context above the model's training context.
    pub allow_long_context: bool,
    /// Write the bound `host:port` here once listening (for scripts that pass port 0).
    pub port_file: Option<PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            model: PathBuf::new(),
            host: "127.0.0.1".into(),
            port: 8080,
            parallel: 4,
            queue: 64,
            ctx_size: None,
            api_key: None,
            load_mode: lmrun::DEFAULT_LOAD_MODE,
            threads: 0,
            chat_template: None,
            body_limit: 1 << 20,
            shutdown_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            allow_long_context: false,
            port_file: None,
        }
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The model could not be loaded.
    #[error("{0}")]
    Load(#[from] lmrun::RunnerError),
    /// A bad option.
    #[error("{0}")]
    Options(String),
    /// Binding or serving failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What the handlers need once the model is loaded.
struct Ready {
    tok: Arc<dyn Tokenizer>,
    template: ChatTemplate,
    ctx: usize,
    jobs: std::sync::mpsc::Sender<Job>,
    /// The vocabulary as grammar masks see it, built on the first request with a grammar.
    vocab: OnceLock<Arc<lmrun::grammar::Vocab>>,
}

struct AppState {
    ready: OnceLock<Ready>,
    metrics: Arc<Metrics>,
    opts: ServerOptions,
    model_name: String,
    created: u64,
    next_id: AtomicU64,
    /// Requests accepted and not finished (in a slot or waiting for one).
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

/// One accepted request: counted in [`AppState::in_flight`] until its response is finished or
/// its client is gone (the guard lives in the response future or stream).
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Run the server until SIGTERM or Ctrl-C (then drain and return `Ok`), or until the model
/// fails to load.
pub fn serve(opts: ServerOptions) -> Result<(), ServerError> {
    if opts.parallel == 0 {
        return Err(ServerError::Options("--parallel must be at least 1".into()));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lmrun-http")
        .enable_all()
        .build()
        .map_err(|e| ServerError::Io {
            what: "cannot start the HTTP runtime".into(),
            source: e,
        })?;
    rt.block_on(run(opts))
}

async fn run(opts: ServerOptions) -> Result<(), ServerError> {
    let addr = format!("{}:{}", opts.host, opts.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| ServerError::Io {
            what: format!("cannot listen on {addr}"),
            source: e,
        })?;
    let local: SocketAddr = listener.local_addr().map_err(|e| ServerError::Io {
        what: "cannot read the bound address".into(),
        source: e,
    })?;
    log::info!("listening on http://{local}");
    eprintln!(
        "lmrun serve: listening on http://{local} (loading {})",
        opts.model.display()
    );
    if let Some(f) = &opts.port_file {
        std::fs::write(f, local.to_string()).map_err(|e| ServerError::Io {
            what: format!("cannot write {}", f.display()),
            source: e,
        })?;
    }
    let metrics = Arc::new(Metrics::default());
    metrics.set_slots(opts.parallel);
    let state = Arc::new(AppState {
        ready: OnceLock::new(),
        metrics: metrics.clone(),
        model_name: opts
            .model
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
        created: now_secs(),
        next_id: AtomicU64::new(1),
        in_flight: Arc::default(),
        opts: opts.clone(),
    });

    // Load in the background so /health can answer 503 meanwhile.
    let cancel = Arc::new(AtomicBool::new(false));
    let (load_tx, mut load_rx) = tokio::sync::oneshot::channel::<Result<(), ServerError>>();
    let engine_thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
    {
        let (state, cancel, engine_thread) = (state.clone(), cancel.clone(), engine_thread.clone());
        std::thread::Builder::new()
            .name("lmrun-load".into())
            .spawn(move || {
                let r = load(&state, cancel, &engine_thread);
                let _ = load_tx.send(r);
            })
            .map_err(|e| ServerError::Io {
                what: "cannot start the loading thread".into(),
                source: e,
            })?;
    }

    let app = router(state.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(accept_loop(
        listener,
        app,
        stop_rx.clone(),
        opts.header_timeout,
    ));

    // Wait for a signal, or a failed load.
    let mut load_error = None;
    tokio::select! {
        _ = shutdown_signal() => {}
        r = &mut load_rx => {
            if let Ok(Err(e)) = r {
                load_error = Some(e);
            } else {
                shutdown_signal().await;
            }
        }
    }
    if let Some(e) = load_error {
        return Err(e);
    }
    eprintln!(
        "lmrun serve: stopping (requests in flight get {} s to finish)",
        opts.shutdown_timeout.as_secs()
    );
    let _ = stop_tx.send(true);
    // Past the deadline, the engine ends every request in flight.
    {
        let cancel = cancel.clone();
        let t = opts.shutdown_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(t).await;
            cancel.store(true, Ordering::SeqCst);
        });
    }
    let served = server.await;
    cancel.store(true, Ordering::SeqCst);
    let handle = engine_thread
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(h) = handle {
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
    match served {
        Ok(()) => Ok(()),
        Err(e) => Err(ServerError::Io {
            what: "serving failed".into(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Accepts connections until `stop` turns true, serving each with hyper's HTTP/1 connection
/// (headers must arrive within `header_timeout`, or the connection is closed), then waits for
/// the open connections to finish: idle keep-alive connections close at once, requests in
/// flight run to their end (the engine cancels them at the shutdown deadline).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    header_timeout: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let stream = match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // out of descriptors and the like: wait a little instead of spinning
                        log::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout);
                let conn = b.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        log::debug!("connection ended: {e}");
                    }
                });
            }
            // (the guard `wait_for` returns is dropped inside: it must not live across an await)
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Load the model, give it its slots, start the engine and publish the ready state.
fn load(
    state: &Arc<AppState>,
    cancel: Arc<AtomicBool>,
    engine_thread: &Mutex<Option<std::thread::JoinHandle<()>>>,
) -> Result<(), ServerError> {
    let o = &state.opts;
    let ropts = RunnerOptions {
        load_mode: o.load_mode,
        threads: o.threads,
        context_len: o.ctx_size,
        allow_long_context: o.allow_long_context,
        ..Default::default()
    };
    let mut g = lmrun::backend::open_gguf_model(&o.model, &ropts)?;
    let tok: Arc<dyn Tokenizer> = match g.tokenizer.take() {
        Some(t) => Arc::new(t),
        None => {
            return Err(ServerError::Options(format!(
                "{}: the model carries no vocabulary",
                o.model.display()
            )))
        }
    };
    g.model
        .set_slots(o.parallel)
        .map_err(lmrun::RunnerError::from)?;
    let piece = |id: Option<u32>| id.and_then(|i| tok.piece(i)).unwrap_or_default();
    let template_src = o.chat_template.clone().or(g.chat_template.clone());
    let template = ChatTemplate::for_model(
        template_src.as_deref(),
        &g.arch,
        &piece(tok.bos_id()),
        &piece(tok.eos_id()),
    );
    let ctx = g.model.context_len();
    let r = &g.report;
    let mode = r.mode.map(|m| m.cli_name()).unwrap_or("memory");
    state
        .metrics
        .set_load(mode, r.mlock.name(), r.mlock.errno());
    eprintln!(
        "lmrun serve: {} loaded ({}; mlock {}{}), {} slots of {} tokens, {} threads",
        o.model.display(),
        mode,
        r.mlock.name(),
        r.mlock
            .errno()
            .map(|e| format!(", errno {e}"))
            .unwrap_or_default(),
        o.parallel,
        ctx,
        g.model.n_threads()
    );
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let engine = Engine::new(g.model, tok.clone(), state.metrics.clone());
    let h = std::thread::Builder::new()
        .name("lmrun-engine".into())
        .spawn(move || engine.run(rx, cancel))
        .map_err(|e| ServerError::Io {
            what: "cannot start the engine thread".into(),
            source: e,
        })?;
    *engine_thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    let _ = state.ready.set(Ready {
        tok,
        template,
        ctx,
        jobs: tx,
        vocab: OnceLock::new(),
    });
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics_text))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn_with_state(state.clone(), count_status))
        .with_state(state)
}

async fn count_status(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    st.metrics.request(r.status().as_u16());
    r
}

async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.opts.api_key {
        if req.uri().path() != "/health" {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if given != Some(key.as_str()) {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong API key (send 'Authorization: Bearer KEY')",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {} {} (routes: POST /v1/chat/completions, POST /v1/completions, \
             GET /v1/models, GET /health, GET /metrics)",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    if st.ready.get().is_some() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading", "error": {"message": "the model is loading", "type": "unavailable_error", "code": 503}})),
        )
            .into_response()
    }
}

async fn models(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": st.model_name, "object": "model", "created": st.created, "owned_by": "lmrun"}]
    }))
}

async fn metrics_text(State(st): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

/// The request body, within the size limit and the time limit.
async fn read_body(st: &AppState, body: Body) -> Result<Vec<u8>, ApiError> {
    let limit = st.opts.body_limit;
    match tokio::time::timeout(st.opts.body_timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )),
        Ok(Ok(b)) => Ok(b.to_vec()),
    }
}

fn ready(st: &AppState) -> Result<&Ready, ApiError> {
    st.ready.get().ok_or_else(|| {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model is loading");
        e.retry_after = Some(1);
        e
    })
}

/// Tokenize, check the length, queue the job; the receiver of its events.
fn submit(
    st: &AppState,
    r: &Ready,
    prompt: &str,
    c: &Common,
) -> Result<(UnboundedReceiver<Event>, InFlight), ApiError> {
    let rule = r.tok.default_options(true);
    let ids = r
        .tok
        .encode_with(
            prompt,
            &EncodeOptions {
                num_bos: rule.num_bos,
                num_eos: 0,
                parse_special: true,
            },
        )
        .map_err(|e| ApiError::bad(format!("the prompt cannot be tokenized: {e}")))?;
    let n_vocab = r.tok.vocab_size();
    if let Some((id, _)) = c
        .params
        .logit_bias
        .iter()
        .find(|(id, _)| *id as usize >= n_vocab)
    {
        return Err(ApiError::bad(format!(
            "'logit_bias' names token {id}, outside the vocabulary of {n_vocab} tokens"
        )));
    }
    let constraint = match &c.grammar {
        None => None,
        Some(text) => {
            let g = lmrun::grammar::Grammar::parse(text)
                .map_err(|e| ApiError::bad(format!("grammar: {e}")))?;
            let vocab = r
                .vocab
                .get_or_init(|| Arc::new(lmrun::grammar_vocab(r.tok.as_ref(), &r.tok.eog_ids())));
            Some(
                lmrun::grammar::Constraint::new(Arc::new(g), Arc::clone(vocab))
                    .map_err(|e| ApiError::bad(format!("grammar: {e}")))?,
            )
        }
    };
    if ids.is_empty() {
        return Err(ApiError::bad("the prompt is empty"));
    }
    if ids.len() >= r.ctx {
        return Err(ApiError::bad(format!(
            "the prompt has {} tokens but the context holds {} (one is needed for the answer); \
             shorten the prompt or start the server with a larger --ctx-size",
            ids.len(),
            r.ctx
        )));
    }
    let room = r.ctx - ids.len();
    let max_tokens = c.max_tokens.unwrap_or(room).min(room);
    // Admission: at most `parallel` requests in slots and `queue` waiting.
    let cap = st.opts.parallel + st.opts.queue;
    let admitted = st
        .in_flight
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < cap).then_some(n + 1)
        });
    if admitted.is_err() {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server is busy: {} slots serving and {} requests waiting (--parallel {}, \
                 --queue {}); retry later",
                st.opts.parallel, st.opts.queue, st.opts.parallel, st.opts.queue
            ),
        );
        e.retry_after = Some(1);
        return Err(e);
    }
    let guard = InFlight(st.in_flight.clone());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let job = Job {
        constraint,
        prompt: ids,
        max_tokens,
        params: c.params.clone(),
        seed: c.seed,
        stop: c.stop.clone(),
        presence_penalty: c.presence_penalty,
        frequency_penalty: c.frequency_penalty,
        ignore_eos: c.ignore_eos,
        logprobs: c.logprobs,
        events: tx,
    };
    st.metrics.queued();
    if r.jobs.send(job).is_err() {
        st.metrics.queue_left();
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ));
    }
    Ok((rx, guard))
}

/// Which endpoint a response is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `/v1/chat/completions`; with `tools`, the answer is parsed for tool calls.
    Chat { tools: bool },
    /// `/v1/completions`.
    Completion,
}

/// How a response is written: the endpoint and the tokenizer that names logprob tokens.
#[derive(Clone)]
struct Out {
    kind: Kind,
    tok: Arc<dyn Tokenizer>,
}

impl Out {
    /// A token's text and bytes (a byte-level token may hold part of a UTF-8 character).
    fn token(&self, id: u32) -> (String, Vec<u8>) {
        let b = self
            .tok
            .token_bytes(id, true)
            .map(|b| b.into_owned())
            .unwrap_or_default();
        (String::from_utf8_lossy(&b).into_owned(), b)
    }

    /// Log-probabilities in the endpoint's shape: chat's `{"content": [{token, logprob,
    /// bytes, top_logprobs}]}`, or the legacy completion `{tokens, token_logprobs,
    /// top_logprobs, text_offset}` with offsets counted from `offset` (bytes of text before).
    fn logprobs(&self, lps: &[TokenLogprob], offset: usize) -> Value {
        let lp = |v: f32| {
            if v.is_finite() {
                json!(v)
            } else {
                json!(-9999.0)
            }
        };
        match self.kind {
            Kind::Chat { .. } => {
                let content: Vec<Value> = lps
                    .iter()
                    .map(|t| {
                        let (text, bytes) = self.token(t.id);
                        let top: Vec<Value> = t
                            .top
                            .iter()
                            .map(|&(id, v)| {
                                let (text, bytes) = self.token(id);
                                json!({"token": text, "logprob": lp(v), "bytes": bytes})
                            })
                            .collect();
                        json!({"token": text, "logprob": lp(t.logprob), "bytes": bytes,
                               "top_logprobs": top})
                    })
                    .collect();
                json!({ "content": content })
            }
            Kind::Completion => {
                let mut tokens = Vec::new();
                let mut token_logprobs = Vec::new();
                let mut top = Vec::new();
                let mut offsets = Vec::new();
                let mut at = offset;
                for t in lps {
                    let (text, bytes) = self.token(t.id);
                    offsets.push(at);
                    at += bytes.len();
                    tokens.push(text);
                    token_logprobs.push(lp(t.logprob));
                    let m: serde_json::Map<String, Value> = t
                        .top
                        .iter()
                        .map(|&(id, v)| (self.token(id).0, lp(v)))
                        .collect();
                    top.push(Value::Object(m));
                }
                json!({"tokens": tokens, "token_logprobs": token_logprobs,
                       "top_logprobs": top, "text_offset": offsets})
            }
        }
    }
}

/// Log-probabilities gathered over a response (the whole answer, or one streamed chunk).
#[derive(Default)]
struct Gathered {
    lps: Vec<TokenLogprob>,
    /// Bytes of text before the first of `lps` (completion `text_offset`).
    offset: usize,
}

/// A chat answer as OpenAI's `message` (or a stream's last `delta`): reasoning split off as
/// `reasoning_content`, and with `tools` the calls parsed into `tool_calls`. Returns the
/// message and whether it calls tools.
fn chat_message(text: &str, tools: bool, id_base: &str, with_role: bool) -> (Value, bool) {
    let (reasoning, content, calls) = if tools {
        let p = lmrun::tools::parse_answer(text);
        (p.reasoning, p.content, p.tool_calls)
    } else {
        let (r, c) = lmrun::tools::split_reasoning(text);
        (r, c, Vec::new())
    };
    let mut m = serde_json::Map::new();
    if with_role {
        m.insert("role".into(), json!("assistant"));
    }
    let has_calls = !calls.is_empty();
    m.insert(
        "content".into(),
        if has_calls && content.is_empty() {
            Value::Null
        } else {
            json!(content)
        },
    );
    if let Some(r) = reasoning {
        m.insert("reasoning_content".into(), json!(r));
    }
    if has_calls {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut v = c.to_openai(&format!("call_{id_base}_{i}"));
                if !with_role {
                    v["index"] = json!(i);
                }
                v
            })
            .collect();
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    (Value::Object(m), has_calls)
}

async fn chat_completions(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let r = async {
        let body = read_body(&st, req.into_body()).await?;
        let ready = ready(&st)?;
        let c = api::chat_request(&body)?;
        let tools = c
            .tools
            .as_ref()
            .filter(|_| c.tool_choice != api::ToolChoice::None);
        let prompt = ready
            .template
            .render_with_tools(&c.messages, true, tools)
            .map_err(|e| ApiError::bad(format!("the chat template failed: {e}")))?;
        let (rx, guard) = submit(&st, ready, &prompt, &c.common)?;
        let kind = Kind::Chat {
            tools: tools.is_some(),
        };
        let out = Out {
            kind,
            tok: Arc::clone(&ready.tok),
        };
        Ok::<_, ApiError>(respond(&st, out, c.common, rx, guard).await)
    };
    r.await.unwrap_or_else(IntoResponse::into_response)
}

async fn completions(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let r = async {
        let body = read_body(&st, req.into_body()).await?;
        let ready = ready(&st)?;
        let c = api::completion_request(&body)?;
        let (rx, guard) = submit(&st, ready, &c.prompt, &c.common)?;
        let out = Out {
            kind: Kind::Completion,
            tok: Arc::clone(&ready.tok),
        };
        Ok::<_, ApiError>(respond(&st, out, c.common, rx, guard).await)
    };
    r.await.unwrap_or_else(IntoResponse::into_response)
}

fn usage(prompt: usize, cached: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

async fn respond(
    st: &Arc<AppState>,
    out: Out,
    c: Common,
    mut rx: UnboundedReceiver<Event>,
    guard: InFlight,
) -> Response {
    let n = st.next_id.fetch_add(1, Ordering::Relaxed);
    let kind = out.kind;
    let want_lp = c.logprobs.is_some();
    let (id, object, chunk_object) = match kind {
        Kind::Chat { .. } => (
            format!("chatcmpl-{}-{n}", st.created),
            "chat.completion",
            "chat.completion.chunk",
        ),
        Kind::Completion => (
            format!("cmpl-{}-{n}", st.created),
            "text_completion",
            "text_completion",
        ),
    };
    let created = now_secs();
    let model = st.model_name.clone();
    if !c.stream {
        let mut text = String::new();
        let mut lps = Vec::new();
        let end = loop {
            match rx.recv().await {
                Some(Event::Text(t, l)) => {
                    text.push_str(&t);
                    lps.extend(l);
                }
                Some(Event::Done {
                    finish,
                    prompt_tokens,
                    cached_tokens,
                    completion_tokens,
                }) => break Ok((finish, prompt_tokens, cached_tokens, completion_tokens)),
                Some(Event::Error(e)) => break Err(e),
                None => break Err("the engine stopped".to_string()),
            }
        };
        drop(guard);
        let (finish, p, cached, g) = match end {
            Ok(v) => v,
            Err(e) => {
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e).into_response();
            }
        };
        let logprobs = if want_lp {
            out.logprobs(&lps, 0)
        } else {
            Value::Null
        };
        let choice = match kind {
            Kind::Chat { tools } => {
                let (message, calls) =
                    chat_message(&text, tools, &format!("{}_{n}", st.created), true);
                json!({
                    "index": 0,
                    "message": message,
                    "logprobs": logprobs,
                    "finish_reason": if calls { "tool_calls" } else { finish.name() },
                })
            }
            Kind::Completion => json!({
                "index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish.name(),
            }),
        };
        return Json(json!({
            "id": id, "object": object, "created": created, "model": model,
            "choices": [choice], "usage": usage(p, cached, g),
        }))
        .into_response();
    }
    // Streaming: one chunk per piece of text, a last chunk with the finish reason, the usage
    // chunk when asked for, then [DONE]. A chat with tools is parsed as a whole, so its text
    // comes in one delta (with its tool calls) at the end.
    let id_base = format!("{}_{n}", st.created);
    let chunk = move |delta: Value, lp: Option<&Gathered>, finish: Option<&str>| -> Value {
        let logprobs = match lp {
            Some(g) => out.logprobs(&g.lps, g.offset),
            None => Value::Null,
        };
        let choice = match kind {
            Kind::Chat { .. } => json!({
                "index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish,
            }),
            Kind::Completion => json!({
                "index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")),
                "logprobs": logprobs, "finish_reason": finish,
            }),
        };
        json!({"id": id, "object": chunk_object, "created": created, "model": model,
               "choices": [choice]})
    };
    let include_usage = c.include_usage;
    let first = match kind {
        Kind::Chat { .. } => vec![chunk(
            json!({"role": "assistant", "content": ""}),
            None,
            None,
        )],
        Kind::Completion => Vec::new(),
    };
    let buffered = kind == Kind::Chat { tools: true };
    // (receiver, chunk maker, guard, text held back for a tools answer, logprobs held back,
    // bytes of text streamed so far)
    let start = (rx, chunk, guard, String::new(), Gathered::default(), 0usize);
    let events = stream::unfold(Some(start), move |state| {
        let id_base = id_base.clone();
        async move {
            let (mut rx, chunk, guard, mut held, mut held_lp, mut sent) = state?;
            match rx.recv().await {
                Some(Event::Text(t, l)) if buffered => {
                    held.push_str(&t);
                    held_lp.lps.extend(l);
                    Some((Vec::new(), Some((rx, chunk, guard, held, held_lp, sent))))
                }
                Some(Event::Text(t, l)) => {
                    let g = Gathered {
                        lps: l,
                        offset: sent,
                    };
                    sent += t.len();
                    let v = chunk(json!({"content": t}), want_lp.then_some(&g), None);
                    Some((vec![v], Some((rx, chunk, guard, held, held_lp, sent))))
                }
                Some(Event::Done {
                    finish,
                    prompt_tokens,
                    cached_tokens,
                    completion_tokens,
                }) => {
                    let mut out = Vec::new();
                    let mut reason = finish.name();
                    if buffered {
                        let (delta, calls) = chat_message(&held, true, &id_base, false);
                        if calls {
                            reason = "tool_calls";
                        }
                        out.push(chunk(delta, want_lp.then_some(&held_lp), None));
                    }
                    out.push(chunk(json!({}), None, Some(reason)));
                    if include_usage {
                        let mut u = chunk(json!({}), None, None);
                        u["choices"] = json!([]);
                        u["usage"] = usage(prompt_tokens, cached_tokens, completion_tokens);
                        out.push(u);
                    }
                    Some((out, None))
                }
                Some(Event::Error(e)) => Some((
                    vec![ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e).body()],
                    None,
                )),
                None => None,
            }
        }
    });
    let body = stream::iter(vec![first])
        .chain(events)
        .flat_map(stream::iter)
        .map(|v| Ok::<_, Infallible>(SseEvent::default().data(v.to_string())))
        .chain(stream::once(async {
            Ok::<_, Infallible>(SseEvent::default().data("[DONE]"))
        }));
    sse(body)
}

fn sse(s: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static) -> Response {
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}
