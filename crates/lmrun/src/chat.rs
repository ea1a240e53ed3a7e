//! Chat templates: a model's Jinja template (from the GGUF's `tokenizer.chat_template`) rendered
//! with minijinja plus Python-style string methods, or a built-in format when the file carries
//! none (Gemma 3 270M ships without one). `Conversation` turns the growing message list into
//! only the new text each turn, so a multi-turn chat prefills each turn once.

use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

use crate::RunnerError;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
    /// An assistant message's tool calls, in OpenAI's shape (`[{"id", "type": "function",
    /// "function": {"name", "arguments"}}]`), as chat templates read them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// A `tool` message: the id of the call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A `tool` message: the function's name (some templates print it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.to_string(),
            content: content.to_string(),
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }
}

/// Built-in formats for models whose file has no template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinFormat {
    /// `<start_of_turn>user … <end_of_turn>` (Gemma; system text is folded into the first user
    /// turn, as Gemma's own template does).
    Gemma,
    /// `<|im_start|>role … <|im_end|>` (ChatML).
    ChatMl,
}

/// A renderable chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: Source,
    bos_token: String,
    eos_token: String,
}

#[derive(Debug, Clone)]
enum Source {
    Jinja(String),
    Builtin(BuiltinFormat),
}

impl ChatTemplate {
    /// Use the model's template if it has one, else the built-in format for its architecture
    /// (Gemma for `gemma*`, ChatML otherwise).
    pub fn for_model(template: Option<&str>, arch: &str, bos_token: &str, eos_token: &str) -> Self {
        let source = match template {
            Some(t) if !t.trim().is_empty() => Source::Jinja(t.to_string()),
            _ if arch.starts_with("gemma") => Source::Builtin(BuiltinFormat::Gemma),
            _ => Source::Builtin(BuiltinFormat::ChatMl),
        };
        ChatTemplate {
            source,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        }
    }

    /// Whether the model's own Jinja template is used.
    pub fn is_model_template(&self) -> bool {
        matches!(self.source, Source::Jinja(_))
    }

    /// Render `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// answer begins.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, RunnerError> {
        self.render_with_tools(messages, add_generation_prompt, None)
    }

    /// [`ChatTemplate::render`] with the tools the model may call (OpenAI's `tools` array:
    /// `[{"type": "function", "function": {"name", "description", "parameters"}}]`) handed to
    /// the template as `tools`, as Qwen, Llama 3.x and Mistral templates expect. Built-in
    /// formats have no tool syntax: asking them for tools is an error.
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
    ) -> Result<String, RunnerError> {
        match &self.source {
            Source::Builtin(_) if tools.is_some() => Err(RunnerError::InvalidArgument(
                "this model's file has no chat template, so it has no format for tools".into(),
            )),
            Source::Builtin(f) => Ok(render_builtin(*f, messages, add_generation_prompt)),
            Source::Jinja(t) => {
                let mut env = Environment::new();
                // A template from a model file is untrusted code: bound its work as well as its
                // output, so two nested `range(99999)` loops end in an error, not hours of CPU.
                env.set_fuel(Some(TEMPLATE_FUEL));
                minijinja_contrib::add_to_environment(&mut env);
                env.set_unknown_method_callback(
                    minijinja_contrib::pycompat::unknown_method_callback,
                );
                env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
                    Err(Error::new(ErrorKind::InvalidOperation, msg))
                });
                env.add_filter("tojson", python_tojson);
                env.add_template("chat", t).map_err(template_error)?;
                let tmpl = env.get_template("chat").map_err(template_error)?;
                let mut out = CappedOutput::default();
                let tools = tools.map(minijinja::Value::from_serialize);
                let ctx = context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => self.bos_token,
                    eos_token => self.eos_token,
                    tools => tools,
                };
                let rendered = tmpl.render_captured_to(ctx, &mut out).map(drop);
                match rendered {
                    Ok(()) => String::from_utf8(out.buf).map_err(|_| {
                        RunnerError::InvalidArgument("chat template: output is not UTF-8".into())
                    }),
                    Err(_) if out.overflow => Err(RunnerError::InvalidArgument(format!(
                        "chat template: rendered text exceeds {} MiB",
                        MAX_RENDERED >> 20
                    ))),
                    Err(e) if e.kind() == ErrorKind::OutOfFuel => {
                        Err(RunnerError::InvalidArgument(format!(
                            "chat template: rendering takes more than {TEMPLATE_FUEL} steps (a \
                             loop that does not end in time?)"
                        )))
                    }
                    Err(e) => Err(template_error(e)),
                }
            }
        }
    }
}

/// The most text a template may render. A prompt is far shorter (a 128k-token context is about
/// half a MiB of text); the cap stops a template in a model file from looping output into all
/// of memory (`{% for i in range(100000) %}{{ 'x' * 100000000 }}{% endfor %}`).
const MAX_RENDERED: usize = 16 << 20;

/// The most template instructions one render may run. Real chat templates render a long
/// conversation with tools in well under a million; this is about a second of work.
const TEMPLATE_FUEL: u64 = 20_000_000;

/// The render target: fails the render once the text would pass [`MAX_RENDERED`].
#[derive(Default)]
struct CappedOutput {
    buf: Vec<u8>,
    overflow: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > MAX_RENDERED {
            self.overflow = true;
            return Err(std::io::Error::other("chat template output too large"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn template_error(e: Error) -> RunnerError {
    RunnerError::InvalidArgument(format!("chat template: {e}"))
}

fn render_builtin(f: BuiltinFormat, messages: &[Message], gen: bool) -> String {
    let mut out = String::new();
    match f {
        BuiltinFormat::Gemma => {
            let mut system: Option<&str> = None;
            for m in messages {
                match m.role.as_str() {
                    "system" => system = Some(&m.content),
                    role => {
                        let role = if role == "assistant" { "model" } else { role };
                        out.push_str("<start_of_turn>");
                        out.push_str(role);
                        out.push('\n');
                        if let Some(s) = system.take() {
                            out.push_str(s);
                            out.push_str("\n\n");
                        }
                        out.push_str(m.content.trim());
                        out.push_str("<end_of_turn>\n");
                    }
                }
            }
            if gen {
                out.push_str("<start_of_turn>model\n");
            }
        }
        BuiltinFormat::ChatMl => {
            for m in messages {
                out.push_str("<|im_start|>");
                out.push_str(&m.role);
                out.push('\n');
                out.push_str(&m.content);
                out.push_str("<|im_end|>\n");
            }
            if gen {
                out.push_str("<|im_start|>assistant\n");
            }
        }
    }
    out
}

/// Jinja's `tojson` as Hugging Face renders chat templates (Python's `json.dumps` with
/// `ensure_ascii=False`): `", "` and `": "` separators, keys in their given order, no HTML
/// escaping, and `indent=N` for pretty output. minijinja's own filter writes compact JSON with
/// `<` and `>` escaped, which is not the text models were trained on.
fn python_tojson(
    value: minijinja::Value,
    kwargs: minijinja::value::Kwargs,
) -> Result<minijinja::Value, Error> {
    use serde::Serialize;
    let indent: Option<usize> = kwargs.get("indent")?;
    // Accepted and ignored: Hugging Face passes these through to json.dumps.
    let _: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    let res = match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            let f = serde_json::ser::PrettyFormatter::with_indent(&pad);
            value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, f))
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            PySeparators,
        )),
    };
    res.map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let text = String::from_utf8(out)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "tojson: not UTF-8"))?;
    Ok(minijinja::Value::from_safe_string(text))
}

/// serde_json output with Python's default separators.
struct PySeparators;

impl serde_json::ser::Formatter for PySeparators {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// A conversation that knows which text the model has already seen.
#[derive(Debug, Clone)]
pub struct Conversation {
    template: ChatTemplate,
    /// OpenAI's `tools` array, handed to the template every turn.
    tools: Option<serde_json::Value>,
    messages: Vec<Message>,
    /// The text already fed to the model (prompts and replies).
    seen: String,
}

impl Conversation {
    /// A conversation, optionally opened with a system message.
    pub fn new(template: ChatTemplate, system: Option<&str>) -> Self {
        let messages = system
            .map(|s| vec![Message::new("system", s)])
            .unwrap_or_default();
        Conversation {
            template,
            tools: None,
            messages,
            seen: String::new(),
        }
    }

    /// Offer the model these tools (OpenAI's `tools` array) from now on; its replies are then
    /// parsed for tool calls (see [`Conversation::assistant_reply`]).
    pub fn with_tools(mut self, tools: Option<serde_json::Value>) -> Self {
        self.tools = tools;
        self
    }

    /// Add a user turn and return `(text to feed, restart)`: the part of the rendered
    /// conversation the model has not seen yet, and whether the model must be reset first
    /// (when the template rewrote earlier text, everything is fed again).
    pub fn user_turn(&mut self, text: &str) -> Result<(String, bool), RunnerError> {
        self.turn(Message::new("user", text))
    }

    /// Add the result of the last tool call (a `tool` message answering the assistant's most
    /// recent call) and return what [`Conversation::user_turn`] returns.
    pub fn tool_result(&mut self, text: &str) -> Result<(String, bool), RunnerError> {
        let mut m = Message::new("tool", text);
        let last_call = self
            .messages
            .iter()
            .rev()
            .find_map(|m| m.tool_calls.as_ref()?.as_array()?.last().cloned());
        if let Some(c) = last_call {
            m.tool_call_id = c.get("id").and_then(|v| v.as_str()).map(str::to_string);
            m.name = c
                .pointer("/function/name")
                .and_then(|v| v.as_str())
                .map(str::to_string);
        }
        self.turn(m)
    }

    fn turn(&mut self, m: Message) -> Result<(String, bool), RunnerError> {
        self.messages.push(m);
        let full = self
            .template
            .render_with_tools(&self.messages, true, self.tools.as_ref())?;
        Ok(match full.strip_prefix(self.seen.as_str()) {
            Some(rest) if !self.seen.is_empty() => {
                let rest = rest.to_string();
                self.seen = full;
                (rest, false)
            }
            _ => {
                self.seen = full.clone();
                (full, true)
            }
        })
    }

    /// Record the assistant's reply (the text the model generated, which it has seen). With
    /// tools, the reply is parsed: its tool calls are recorded in the message (as templates
    /// expect them) and returned.
    pub fn assistant_reply(&mut self, text: &str) -> Vec<crate::tools::ToolCall> {
        let mut m = Message::new("assistant", text);
        let mut calls = Vec::new();
        if self.tools.is_some() {
            let p = crate::tools::parse_answer(text);
            if !p.tool_calls.is_empty() {
                let n = self.messages.len();
                let shaped: Vec<serde_json::Value> = p
                    .tool_calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        serde_json::json!({"id": format!("call_{n}_{i}"), "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect();
                m.content = p.content;
                m.tool_calls = Some(serde_json::Value::Array(shaped));
                calls = p.tool_calls;
            }
        }
        self.messages.push(m);
        self.seen.push_str(text);
        calls
    }

    /// Say that the model no longer holds the conversation (its KV cache was reset): the next
    /// turn feeds the whole rendered conversation again.
    pub fn model_forgot(&mut self) {
        self.seen.clear();
    }

    /// The messages so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML_JINJA: &str = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content.strip() + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

    #[test]
    fn tojson_writes_what_hugging_face_renders() {
        // Python's json.dumps: ", " / ": " separators, keys in order, no HTML escaping.
        let t = ChatTemplate::for_model(
            Some("{{ tools[0] | tojson }}|{{ messages[0].tool_calls[0].function.arguments | tojson }}|{{ {'a': [1, 2]} | tojson(indent=2) }}"),
            "qwen2",
            "",
            "",
        );
        let tools = serde_json::json!([{"type": "function", "function": {"name": "f",
            "description": "x < y & z", "parameters": {"type": "object"}}}]);
        let mut m = Message::new("assistant", "");
        m.tool_calls = Some(serde_json::json!([{"type": "function",
            "function": {"name": "f", "arguments": {"city": "Paris", "n": 2}}}]));
        let out = t.render_with_tools(&[m], false, Some(&tools)).unwrap();
        assert_eq!(
            out,
            "{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \
             \"x < y & z\", \"parameters\": {\"type\": \"object\"}}}|{\"city\": \"Paris\", \
             \"n\": 2}|{\n  \"a\": [\n    1,\n    2\n  ]\n}"
        );
    }

    #[test]
    fn jinja_template_with_python_methods() {
        let t = ChatTemplate::for_model(Some(CHATML_JINJA), "qwen2", "", "<|im_end|>");
        assert!(t.is_model_template());
        let s = t.render(&[Message::new("user", "  hi  ")], true).unwrap();
        assert_eq!(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn gemma_builtin_and_incremental_turns() {
        let t = ChatTemplate::for_model(None, "gemma3", "<bos>", "<eos>");
        let mut c = Conversation::new(t, Some("Be brief."));
        let (first, restart) = c.user_turn("Hello").unwrap();
        assert!(restart);
        assert_eq!(
            first,
            "<start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n<start_of_turn>model\n"
        );
        c.assistant_reply("Hi!");
        let (second, restart) = c.user_turn("Bye").unwrap();
        assert!(!restart);
        assert_eq!(
            second,
            "<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn template_output_is_capped() {
        // Found by hand while fuzzing chat_template: one line asks for 10 TB of output.
        let src = "{% for i in range(100000) %}{{ 'x' * 100000000 }}{% endfor %}";
        let t = ChatTemplate::for_model(Some(src), "x", "", "");
        let e = t.render(&[], false).unwrap_err().to_string();
        assert!(e.contains("exceeds 16 MiB"), "{e}");
        // Exactly the cap still renders.
        let src = "{{ 'x' * 16777216 }}";
        let t = ChatTemplate::for_model(Some(src), "x", "", "");
        assert_eq!(t.render(&[], false).unwrap().len(), MAX_RENDERED);
    }

    #[test]
    fn template_errors_are_values() {
        let t = ChatTemplate::for_model(Some("{{ raise_exception('nope') }}"), "x", "", "");
        let e = t.render(&[], false).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let t = ChatTemplate::for_model(Some("{% for %}"), "x", "", "");
        assert!(t.render(&[], false).is_err());
    }

    #[test]
    fn endless_templates_run_out_of_fuel() {
        let t = ChatTemplate::for_model(
            Some("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"),
            "x",
            "",
            "",
        );
        let t0 = std::time::Instant::now();
        let e = t.render(&[], false).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        // Bounded: tens of seconds would mean the fuel did not apply (this takes about one).
        assert!(t0.elapsed().as_secs() < 30, "{:?}", t0.elapsed());
    }
}
