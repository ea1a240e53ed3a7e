//! What a chat model's answer contains besides text: tool calls in the formats the popular chat
//! templates teach (Qwen2.5/Qwen3 and Hermes `<tool_call>{…}</tool_call>`, Llama 3.x's bare JSON
//! object, optionally after `<|python_tag|>`, and Mistral's `[TOOL_CALLS]`), and `<think>`
//! reasoning blocks (Qwen3, DeepSeek-R1 distills). Parsing is lenient where models are (extra
//! whitespace, `parameters` for `arguments`) and strict about JSON: a call whose JSON does not
//! parse stays in the text.

use serde_json::Value;

/// One parsed tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The function's name.
    pub name: String,
    /// Its arguments (a JSON object, as the model wrote it).
    pub arguments: Value,
}

/// An answer split into reasoning, text and tool calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedAnswer {
    /// The `<think>` block's text, if the answer had one.
    pub reasoning: Option<String>,
    /// The answer's text without the reasoning and the tool calls.
    pub content: String,
    /// The tool calls, in order.
    pub tool_calls: Vec<ToolCall>,
}

/// Split `text` (a whole answer) into reasoning, content and tool calls.
pub fn parse_answer(text: &str) -> ParsedAnswer {
    let (reasoning, rest) = split_reasoning(text);
    let (content, tool_calls) = parse_tool_calls(&rest);
    ParsedAnswer {
        reasoning,
        content,
        tool_calls,
    }
}

/// Separate a `<think>…</think>` block from the answer. A template may open the block itself
/// (the answer then starts inside it and has only `</think>`); an unclosed block is all
/// reasoning.
pub fn split_reasoning(text: &str) -> (Option<String>, String) {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let t = text.trim_start();
    let (inner_start, opened) = match t.strip_prefix(OPEN) {
        Some(rest) => (rest, true),
        None => (t, false),
    };
    match inner_start.find(CLOSE) {
        Some(end) => {
            let reasoning = inner_start[..end].trim().to_string();
            let rest = inner_start[end + CLOSE.len()..].trim_start().to_string();
            (Some(reasoning), rest)
        }
        None if opened => (Some(inner_start.trim().to_string()), String::new()),
        None => (None, text.to_string()),
    }
}

/// Find tool calls in `text`; returns the text without them and the calls.
pub fn parse_tool_calls(text: &str) -> (String, Vec<ToolCall>) {
    // Qwen / Hermes: any number of <tool_call> blocks.
    if text.contains("<tool_call>") {
        let mut calls = Vec::new();
        let mut content = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("<tool_call>") {
            let after = &rest[start + "<tool_call>".len()..];
            let (body, next) = match after.find("</tool_call>") {
                Some(end) => (&after[..end], &after[end + "</tool_call>".len()..]),
                None => (after, ""),
            };
            match call_from_json(body.trim()) {
                Some(c) => {
                    content.push_str(&rest[..start]);
                    calls.push(c);
                }
                None => content.push_str(&rest[..start + "<tool_call>".len() + body.len()]),
            }
            rest = next;
        }
        content.push_str(rest);
        return (content.trim().to_string(), calls);
    }
    // Mistral: [TOOL_CALLS] followed by a JSON array, or by name[ARGS]{json} (v11 templates).
    if let Some(at) = text.find("[TOOL_CALLS]") {
        let body = text[at + "[TOOL_CALLS]".len()..].trim();
        let mut calls = Vec::new();
        if let Ok(Value::Array(items)) = first_json(body) {
            calls.extend(items.iter().filter_map(call_from_value));
        } else {
            for part in body.split("[TOOL_CALLS]") {
                if let Some((name, args)) = part.split_once("[ARGS]") {
                    if let Ok(a) = first_json(args.trim()) {
                        calls.push(ToolCall {
                            name: name.trim().to_string(),
                            arguments: a,
                        });
                    }
                }
            }
        }
        if !calls.is_empty() {
            return (text[..at].trim().to_string(), calls);
        }
    }
    // Llama 3.x: the answer is a JSON object {"name": …, "parameters": {…}} (or several,
    // one after the other; also what Qwen's answer looks like when its <tool_call> markers are
    // special tokens that decoding leaves out).
    let t = text.trim();
    let t = t.strip_prefix("<|python_tag|>").unwrap_or(t).trim();
    // Small models often wrap the call in a Markdown code fence.
    let t = strip_fence(t);
    if t.starts_with('{') {
        let mut calls = Vec::new();
        let mut it = serde_json::Deserializer::from_str(t).into_iter::<Value>();
        for v in it.by_ref() {
            match v.ok().as_ref().and_then(call_from_value) {
                Some(c) => calls.push(c),
                None => return (text.to_string(), Vec::new()),
            }
        }
        if !calls.is_empty() && it.byte_offset() == t.len() {
            return (String::new(), calls);
        }
    }
    (text.to_string(), Vec::new())
}

impl ToolCall {
    /// The call in OpenAI's response shape: `{"id", "type": "function", "function": {"name",
    /// "arguments"}}`, the arguments as a JSON string (as OpenAI sends them).
    pub fn to_openai(&self, id: &str) -> Value {
        serde_json::json!({
            "id": id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments.to_string()},
        })
    }
}

/// Check an OpenAI `tools` array: each item `{"type": "function", "function": {"name", …}}`
/// with a non-empty name and, if given, an object `parameters`. Returns the function names.
pub fn tool_names(tools: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = tools else {
        return Err(format!(
            "'tools' must be an array of tool objects, got {tools}"
        ));
    };
    let mut names = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(format!("tools[{i}].type must be \"function\""));
        }
        let f = t
            .get("function")
            .filter(|f| f.is_object())
            .ok_or_else(|| format!("tools[{i}].function must be an object"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("tools[{i}].function.name must be a non-empty string"))?;
        match f.get("parameters") {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(other) => {
                return Err(format!(
                    "tools[{i}].function.parameters must be a JSON schema object, got {other}"
                ))
            }
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// The JSON schema of one tool call, `{"name": …, "arguments": {…}}`, for a grammar that forces
/// the model to call a tool (OpenAI's `tool_choice: "required"`, or a named function): one
/// branch per tool (or only `only`), each with the tool's own `parameters` schema. The
/// output is the bare JSON object, which [`parse_tool_calls`] reads as a call in every format.
pub fn call_schema(tools: &Value, only: Option<&str>) -> Result<Value, String> {
    let names = tool_names(tools)?;
    if let Some(n) = only {
        if !names.iter().any(|m| m == n) {
            return Err(format!("tool_choice names '{n}', which is not in 'tools'"));
        }
    }
    let branches: Vec<Value> = tools
        .as_array()
        .into_iter()
        .flatten()
        .zip(&names)
        .filter(|(_, n)| only.is_none_or(|o| o == n.as_str()))
        .map(|(t, n)| {
            let params = t
                .get("function")
                .and_then(|f| f.get("parameters"))
                .filter(|p| p.is_object())
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object"}));
            serde_json::json!({
                "type": "object",
                "properties": {"name": {"const": n}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    match branches.len() {
        0 => Err("'tools' is empty".to_string()),
        1 => Ok(branches.into_iter().next().unwrap_or_default()),
        _ => Ok(serde_json::json!({"anyOf": branches})),
    }
}

/// The inside of a Markdown code block (```` ```json … ``` ````) that is the whole text, or the
/// text itself.
fn strip_fence(t: &str) -> &str {
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return t;
    };
    // The info string (`json`) runs to the end of the first line.
    match body.split_once('\n') {
        Some((info, inner)) if !info.contains('{') => inner.trim(),
        _ => body.trim(),
    }
}

/// The first JSON value at the start of `s` (trailing text ignored).
fn first_json(s: &str) -> serde_json::Result<Value> {
    let mut it = serde_json::Deserializer::from_str(s).into_iter::<Value>();
    it.next()
        .unwrap_or_else(|| serde_json::from_str::<Value>(""))
}

fn call_from_json(s: &str) -> Option<ToolCall> {
    call_from_value(&first_json(s).ok()?)
}

fn call_from_value(v: &Value) -> Option<ToolCall> {
    let o = v.as_object()?;
    let name = o.get("name")?.as_str()?.to_string();
    let arguments = match o.get("arguments").or_else(|| o.get("parameters")) {
        // Some models write the arguments as a JSON string.
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(a) => a.clone(),
        None => Value::Object(Default::default()),
    };
    Some(ToolCall { name, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_schemas_follow_the_tools() {
        let tools = json!([
            {"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}},
            {"type": "function", "function": {"name": "now"}},
        ]);
        assert_eq!(tool_names(&tools).unwrap(), vec!["get_weather", "now"]);
        let all = call_schema(&tools, None).unwrap();
        assert_eq!(all["anyOf"].as_array().unwrap().len(), 2);
        let one = call_schema(&tools, Some("now")).unwrap();
        assert_eq!(one["properties"]["name"]["const"], "now");
        assert!(call_schema(&tools, Some("other"))
            .unwrap_err()
            .contains("other"));
        assert!(tool_names(&json!([{"type": "function"}]))
            .unwrap_err()
            .contains("tools[0]"));
        assert!(tool_names(&json!({})).is_err());
        // The schema converts to a grammar, and a call written to it parses back.
        lmrun_grammar::json_schema_to_gbnf(&all).unwrap();
        let (_, calls) = parse_tool_calls(r#"{"name": "now", "arguments": {}}"#);
        assert_eq!(calls[0].to_openai("call_0")["function"]["arguments"], "{}");
    }

    #[test]
    fn fenced_calls_are_calls() {
        let t = "```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\"city\": \"Paris\"}\n}\n```";
        let (content, calls) = parse_tool_calls(t);
        assert_eq!(content, "");
        assert_eq!(calls[0].arguments, json!({"city": "Paris"}));
        // A fence holding anything else stays text.
        let t = "```python\nprint(1)\n```";
        assert_eq!(parse_tool_calls(t), (t.to_string(), Vec::new()));
    }

    #[test]
    fn qwen_tool_calls() {
        let t = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \
                 {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \
                 \"arguments\": {}}\n</tool_call>";
        let (content, calls) = parse_tool_calls(t);
        assert_eq!(content, "Let me check.");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(calls[0].arguments, json!({"city": "Paris"}));
        assert_eq!(calls[1].name, "now");
        // Broken JSON stays text.
        let (content, calls) = parse_tool_calls("<tool_call>{\"name\": </tool_call> ok");
        assert!(calls.is_empty());
        assert!(content.contains("<tool_call>"));
    }

    #[test]
    fn llama3_and_mistral_tool_calls() {
        let (c, calls) =
            parse_tool_calls("<|python_tag|>{\"name\": \"f\", \"parameters\": {\"x\": 1}}");
        assert_eq!(c, "");
        assert_eq!(calls[0].arguments, json!({"x": 1}));
        let (c, calls) = parse_tool_calls(
            "Sure. [TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"q\": \"s\"}}, {\"name\": \
             \"b\", \"arguments\": \"{\\\"n\\\": 2}\"}]",
        );
        assert_eq!(c, "Sure.");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].arguments, json!({"n": 2}));
        let (_, calls) = parse_tool_calls("[TOOL_CALLS]search[ARGS]{\"q\": \"rust\"}");
        assert_eq!(calls[0].name, "search");
        assert_eq!(calls[0].arguments, json!({"q": "rust"}));
        let (_, calls) = parse_tool_calls(
            "{\"name\": \"a\", \"arguments\": {}}\n{\"name\": \"b\", \"arguments\": {}}",
        );
        assert_eq!(calls.len(), 2);
        // Plain text and JSON that is not a call are left alone.
        assert!(parse_tool_calls("{\"answer\": 42}").1.is_empty());
        assert!(parse_tool_calls("hello").1.is_empty());
    }

    #[test]
    fn reasoning_blocks() {
        let p = parse_answer("<think>\nThe user wants 2+2.\n</think>\n\n4");
        assert_eq!(p.reasoning.as_deref(), Some("The user wants 2+2."));
        assert_eq!(p.content, "4");
        // The template opened the block: only the close tag is in the answer.
        let (r, rest) = split_reasoning("thinking...</think>answer");
        assert_eq!(
            (r.as_deref(), rest.as_str()),
            (Some("thinking..."), "answer")
        );
        let (r, rest) = split_reasoning("<think>never closed");
        assert_eq!((r.as_deref(), rest.as_str()), (Some("never closed"), ""));
        let (r, rest) = split_reasoning("no reasoning");
        assert_eq!((r, rest.as_str()), (None, "no reasoning"));
        let p = parse_answer(
            "<think>x</think><tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>",
        );
        assert_eq!(p.tool_calls.len(), 1);
        assert_eq!(p.content, "");
    }
}
