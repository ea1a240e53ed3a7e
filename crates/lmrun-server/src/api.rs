//! OpenAI's request and response shapes: the fields `/v1/chat/completions` and
//! `/v1/completions` accept, checked one by one so a wrong type or value is a 400 naming the
//! field (never a panic, never silently ignored), and the error body
//! (`{"error": {"message", "type", "code"}}`) every failure uses.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lmrun::chat::Message;
use lmrun::sampler::SamplerParams;
use serde_json::{json, Map, Value};

/// An error answered with OpenAI's error body.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What was wrong, in words.
    pub message: String,
    /// Seconds a client should wait before retrying (503 when the queue is full).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable_error",
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST => "invalid_request_error",
            StatusCode::REQUEST_TIMEOUT => "timeout_error",
            _ => "server_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind(), "code": self.status.as_u16()}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert("retry-after", v);
            }
        }
        r
    }
}

/// The part of a request both endpoints share: sampling, limits, stop strings, streaming.
#[derive(Debug, Clone)]
pub struct Common {
    /// Sampling parameters.
    pub params: SamplerParams,
    /// Sampler seed.
    pub seed: Option<u64>,
    /// Most tokens to generate (None: as many as the context allows).
    pub max_tokens: Option<usize>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// OpenAI presence penalty.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty.
    pub frequency_penalty: f32,
    /// Server-sent events.
    pub stream: bool,
    /// A last chunk with `usage` when streaming.
    pub include_usage: bool,
    /// Keep generating past end-of-generation tokens (llama-server's extension; benchmarks).
    pub ignore_eos: bool,
    /// A GBNF grammar the output must follow (from `response_format`, or llama-server's
    /// `grammar` extension).
    pub grammar: Option<String>,
    /// Log-probabilities of the generated tokens, with this many alternatives each (chat:
    /// `logprobs` + `top_logprobs`; completions: the legacy integer `logprobs`).
    pub logprobs: Option<usize>,
}

/// OpenAI's `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (default when tools are given): calls are parsed from its answer.
    Auto,
    /// No tools: the template is rendered without them and nothing is parsed.
    None,
    /// The answer must be a tool call (grammar-enforced).
    Required,
    /// The answer must call this function (grammar-enforced).
    Function(String),
}

/// What a chat request asks for.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// OpenAI's `tools` array (checked), handed to the chat template.
    pub tools: Option<Value>,
    /// Whether and which tool must be called.
    pub tool_choice: ToolChoice,
    /// Everything else.
    pub common: Common,
}

/// What a completion request asks for.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    /// The prompt.
    pub prompt: String,
    /// Everything else.
    pub common: Common,
}

/// Parse a request body as a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the request body is not valid JSON: {e}")))?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad("the request body must be a JSON object")),
    }
}

fn number(m: &Map<String, Value>, k: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if !(lo..=hi).contains(&v) {
                return Err(ApiError::bad(format!(
                    "'{k}' must be between {lo} and {hi}, got {v}"
                )));
            }
            Ok(Some(v))
        }
        Some(other) => Err(ApiError::bad(format!(
            "'{k}' must be a number, got {other}"
        ))),
    }
}

fn integer(m: &Map<String, Value>, k: &str, lo: i64) -> Result<Option<i64>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v >= lo => Ok(Some(v)),
            _ => Err(ApiError::bad(format!(
                "'{k}' must be an integer >= {lo}, got {n}"
            ))),
        },
        Some(other) => Err(ApiError::bad(format!(
            "'{k}' must be an integer, got {other}"
        ))),
    }
}

fn boolean(m: &Map<String, Value>, k: &str) -> Result<Option<bool>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad(format!(
            "'{k}' must be true or false, got {other}"
        ))),
    }
}

/// OpenAI's `response_format` (`{"type": "json_object"}`, or `{"type": "json_schema",
/// "json_schema": {"schema": …}}`) and llama-server's `grammar` / `json_schema` extensions, as
/// GBNF text. Unsupported schema features are errors naming them.
fn grammar(m: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let from_schema = |schema: &Value| {
        lmrun::grammar::json_schema_to_gbnf(schema)
            .map(Some)
            .map_err(|e| ApiError::bad(format!("'response_format' schema: {e}")))
    };
    if let Some(g) = m.get("grammar").filter(|v| !v.is_null()) {
        let Value::String(g) = g else {
            return Err(ApiError::bad("'grammar' must be a GBNF string"));
        };
        return Ok(Some(g.clone()));
    }
    if let Some(s) = m.get("json_schema").filter(|v| !v.is_null()) {
        return from_schema(s);
    }
    let Some(rf) = m.get("response_format").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => from_schema(&serde_json::json!({"type": "object"})),
        Some("json_schema") => match rf.get("json_schema").and_then(|j| j.get("schema")) {
            Some(schema) => from_schema(schema),
            None => Err(ApiError::bad(
                "'response_format' of type json_schema needs 'json_schema': {'schema': ...}",
            )),
        },
        _ => Err(ApiError::bad(format!(
            "'response_format' must have type text, json_object or json_schema, got {rf}"
        ))),
    }
}

/// OpenAI's `logit_bias`: token ids (as strings) to a bias in [-100, 100]; -100 bans the token.
fn logit_bias(m: &Map<String, Value>) -> Result<Vec<(u32, f32)>, ApiError> {
    let o = match m.get("logit_bias") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(o)) => o,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "'logit_bias' must be an object of token ids to biases, got {other}"
            )))
        }
    };
    if o.len() > 1024 {
        return Err(ApiError::bad("'logit_bias' may hold at most 1024 tokens"));
    }
    o.iter()
        .map(|(k, v)| {
            let id: u32 = k
                .parse()
                .map_err(|_| ApiError::bad(format!("'logit_bias' key '{k}' is not a token id")))?;
            let b = v
                .as_f64()
                .filter(|b| (-100.0..=100.0).contains(b))
                .ok_or_else(|| {
                    ApiError::bad(format!(
                        "'logit_bias' of token {id} must be a number in [-100, 100], got {v}"
                    ))
                })?;
            // OpenAI: -100 effectively bans the token.
            Ok((
                id,
                if b <= -100.0 {
                    f32::NEG_INFINITY
                } else {
                    b as f32
                },
            ))
        })
        .collect()
}

fn common(m: &Map<String, Value>) -> Result<Common, ApiError> {
    let max_tokens = match integer(m, "max_completion_tokens", 1)? {
        Some(v) => Some(v),
        None => integer(m, "max_tokens", 1)?,
    };
    let stop = match m.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(ApiError::bad(format!(
                    "'stop' must hold strings, got {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => Err(ApiError::bad(format!(
            "'stop' must be a string or an array of strings, got {other}"
        )))?,
    };
    if stop.len() > 16 {
        return Err(ApiError::bad("'stop' may hold at most 16 strings"));
    }
    let include_usage = match m.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => boolean(o, "include_usage")?.unwrap_or(false),
        Some(other) => Err(ApiError::bad(format!(
            "'stream_options' must be an object, got {other}"
        )))?,
    };
    let defaults = lmrun::GenerationConfig::default();
    let params = SamplerParams {
        temperature: number(m, "temperature", 0.0, 2.0)?.unwrap_or(defaults.temperature as f64)
            as f32,
        top_k: integer(m, "top_k", 0)?.unwrap_or(defaults.top_k as i64) as usize,
        top_p: number(m, "top_p", 0.0, 1.0)?.unwrap_or(defaults.top_p as f64) as f32,
        min_p: number(m, "min_p", 0.0, 1.0)?.unwrap_or(0.0) as f32,
        repetition_penalty: number(m, "repeat_penalty", 0.0, 10.0)?.unwrap_or(1.0) as f32,
        repetition_window: defaults.repetition_window,
        ..SamplerParams::default()
    };
    let mut params = params;
    params.logit_bias = logit_bias(m)?;
    if params.top_p == 0.0 {
        return Err(ApiError::bad("'top_p' must be above 0"));
    }
    if params.repetition_penalty == 0.0 {
        return Err(ApiError::bad("'repeat_penalty' must be above 0"));
    }
    Ok(Common {
        params,
        seed: integer(m, "seed", 0)?.map(|s| s as u64),
        max_tokens: max_tokens.map(|v| v as usize),
        stop,
        presence_penalty: number(m, "presence_penalty", -2.0, 2.0)?.unwrap_or(0.0) as f32,
        frequency_penalty: number(m, "frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0) as f32,
        grammar: grammar(m)?,
        logprobs: None,
        stream: boolean(m, "stream")?.unwrap_or(false),
        include_usage,
        ignore_eos: boolean(m, "ignore_eos")?.unwrap_or(false),
    })
}

/// Check and read a chat completion request.
pub fn chat_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let m = object(body)?;
    let msgs = match m.get("messages") {
        Some(Value::Array(a)) => a,
        None => return Err(ApiError::bad("'messages' is required")),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "'messages' must be an array, got {other}"
            )))
        }
    };
    if msgs.is_empty() {
        return Err(ApiError::bad(
            "'messages' is empty: give at least one message",
        ));
    }
    let mut messages = Vec::new();
    for (i, v) in msgs.iter().enumerate() {
        let Value::Object(o) = v else {
            return Err(ApiError::bad(format!("messages[{i}] must be an object")));
        };
        let role = match o.get("role") {
            Some(Value::String(r)) => r.clone(),
            _ => {
                return Err(ApiError::bad(format!(
                    "messages[{i}].role must be a string"
                )))
            }
        };
        let content = match o.get("content") {
            Some(Value::String(c)) => c.clone(),
            None | Some(Value::Null) => String::new(),
            // Content parts: the text parts, in order.
            Some(Value::Array(parts)) => {
                let mut s = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match p.get("type").and_then(Value::as_str) {
                        Some("text") => match p.get("text") {
                            Some(Value::String(t)) => s.push_str(t),
                            _ => {
                                return Err(ApiError::bad(format!(
                                    "messages[{i}].content[{j}].text must be a string"
                                )))
                            }
                        },
                        other => {
                            return Err(ApiError::bad(format!(
                                "messages[{i}].content[{j}]: only text parts are supported, \
                                 got type {other:?}"
                            )))
                        }
                    }
                }
                s
            }
            Some(other) => {
                return Err(ApiError::bad(format!(
                    "messages[{i}].content must be a string or an array of parts, got {other}"
                )))
            }
        };
        let mut msg = Message::new(&role, &content);
        match o.get("tool_calls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(calls)) => msg.tool_calls = Some(template_tool_calls(i, calls)?),
            Some(other) => {
                return Err(ApiError::bad(format!(
                    "messages[{i}].tool_calls must be an array, got {other}"
                )))
            }
        }
        for (k, slot) in [
            ("tool_call_id", &mut msg.tool_call_id),
            ("name", &mut msg.name),
        ] {
            match o.get(k) {
                None | Some(Value::Null) => {}
                Some(Value::String(v)) => *slot = Some(v.clone()),
                Some(other) => {
                    return Err(ApiError::bad(format!(
                        "messages[{i}].{k} must be a string, got {other}"
                    )))
                }
            }
        }
        messages.push(msg);
    }
    let mut common = common(&m)?;
    // Chat: `logprobs` is a boolean, `top_logprobs` (0–20) the alternatives per token.
    let top = integer(&m, "top_logprobs", 0)?;
    if top.is_some_and(|t| t > 20) {
        return Err(ApiError::bad("'top_logprobs' must be between 0 and 20"));
    }
    common.logprobs = match (boolean(&m, "logprobs")?, top) {
        (Some(true), t) => Some(t.unwrap_or(0) as usize),
        (_, Some(t)) if t > 0 => {
            return Err(ApiError::bad("'top_logprobs' needs 'logprobs': true"));
        }
        _ => None,
    };
    let tools = match m.get("tools") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(t) => {
            lmrun::tools::tool_names(t).map_err(ApiError::bad)?;
            Some(t.clone())
        }
    };
    let tool_choice = match m.get("tool_choice") {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::bad(format!(
                    "'tool_choice' must be auto, none, required or a function, got {other:?}"
                )))
            }
        },
        Some(v) => match v
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(n) => ToolChoice::Function(n.to_string()),
            None => {
                return Err(ApiError::bad(format!(
                    "'tool_choice' must be auto, none, required or \
                     {{\"type\": \"function\", \"function\": {{\"name\": …}}}}, got {v}"
                )))
            }
        },
    };
    let forced = match &tool_choice {
        ToolChoice::Required => Some(None),
        ToolChoice::Function(n) => Some(Some(n.as_str())),
        _ => None,
    };
    if let Some(only) = forced {
        let Some(t) = &tools else {
            return Err(ApiError::bad(
                "'tool_choice' asks for a tool call but 'tools' is empty",
            ));
        };
        if common.grammar.is_some() {
            return Err(ApiError::bad(
                "'tool_choice' required/function cannot be combined with a grammar or \
                 response_format",
            ));
        }
        let schema = lmrun::tools::call_schema(t, only).map_err(ApiError::bad)?;
        common.grammar = Some(
            lmrun::grammar::json_schema_to_gbnf(&schema)
                .map_err(|e| ApiError::bad(format!("'tools' parameters: {e}")))?,
        );
    }
    Ok(ChatRequest {
        messages,
        tools,
        tool_choice,
        common,
    })
}

/// An assistant message's `tool_calls` as chat templates read them: `function.arguments` given
/// as a JSON string (OpenAI's shape) becomes the object it encodes, as Qwen, Llama 3 and
/// Hermes templates print it with `tojson`.
fn template_tool_calls(i: usize, calls: &[Value]) -> Result<Value, ApiError> {
    let mut out = Vec::with_capacity(calls.len());
    for (j, c) in calls.iter().enumerate() {
        let mut c = c.clone();
        let Some(f) = c.get_mut("function").filter(|f| f.is_object()) else {
            return Err(ApiError::bad(format!(
                "messages[{i}].tool_calls[{j}].function must be an object"
            )));
        };
        if !f.get("name").is_some_and(Value::is_string) {
            return Err(ApiError::bad(format!(
                "messages[{i}].tool_calls[{j}].function.name must be a string"
            )));
        }
        if let Some(Value::String(a)) = f.get("arguments") {
            if let Ok(v) = serde_json::from_str::<Value>(a) {
                f["arguments"] = v;
            }
        }
        out.push(c);
    }
    Ok(Value::Array(out))
}

/// Check and read a (legacy) completion request.
pub fn completion_request(body: &[u8]) -> Result<CompletionRequest, ApiError> {
    let m = object(body)?;
    let prompt = match m.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_string()
        }
        None => return Err(ApiError::bad("'prompt' is required")),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "'prompt' must be a string (or an array of one string), got {other}"
            )))
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::bad("'prompt' is empty"));
    }
    let mut common = common(&m)?;
    // Completions: the legacy integer `logprobs` (0–5 alternatives; 0 = the tokens' own).
    common.logprobs = match m.get("logprobs") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(0),
        Some(_) => match integer(&m, "logprobs", 0)? {
            Some(n) if n <= 5 => Some(n as usize),
            _ => {
                return Err(ApiError::bad(
                    "'logprobs' must be an integer between 0 and 5",
                ))
            }
        },
    };
    Ok(CompletionRequest { prompt, common })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_checked_by_name() {
        let e = chat_request(br#"{"messages": []}"#).unwrap_err();
        assert!(e.message.contains("empty"));
        let e = chat_request(br#"{"messages": "hi"}"#).unwrap_err();
        assert!(e.message.contains("must be an array"));
        let e =
            chat_request(br#"{"messages": [{"role":"user","content":"x"}], "temperature": "hot"}"#)
                .unwrap_err();
        assert!(e.message.contains("'temperature' must be a number"));
        let e = completion_request(br#"{"prompt": "x", "max_tokens": 0}"#).unwrap_err();
        assert!(e.message.contains("'max_tokens'"));
        let e = completion_request(b"{not json").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let r = chat_request(
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
                 "stop": ["x", "y"], "stream": true, "stream_options": {"include_usage": true}, "seed": 3}"#,
        )
        .unwrap();
        assert_eq!(r.messages[0].content, "ab");
        assert_eq!(r.common.stop, vec!["x", "y"]);
        assert!(r.common.stream && r.common.include_usage);
        assert_eq!(r.common.seed, Some(3));
    }
}
