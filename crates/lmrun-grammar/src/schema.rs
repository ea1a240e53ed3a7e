//! JSON schema → GBNF, so that a request's `response_format` schema becomes a grammar.
//!
//! This module exists to cover the part of JSON Schema that structured-output requests use,
//! with an explicit error (naming the keyword and the JSON pointer where it appears) for
//! everything else, rather than silently producing a grammar that allows documents the schema
//! forbids. The approach follows llama.cpp's `json_schema_to_grammar`: one rule per schema
//! node, shared primitive rules (`string`, `number`, `value` …), objects without extra
//! properties unless `additionalProperties` says so, and a bounded whitespace rule `space`
//! after every token. Properties are emitted in schema order (the order of the text for
//! [`json_schema_str_to_gbnf`]; the `serde_json::Value`'s map order for
//! [`json_schema_to_gbnf`], which is sorted by name unless serde_json's `preserve_order`
//! feature is on); optional properties may each be left out.
//!
//! Supported: `type` (one or a list), `properties`, `required`, `additionalProperties`
//! (`false`/absent; `true` or a schema only on objects without `properties`), `items`,
//! `minItems`, `maxItems`, `enum`, `const`, `minLength`, `maxLength`, `format` (`date`, `time`,
//! `date-time`, `uuid`), `anyOf`, `oneOf` (as `anyOf`), local `$ref` (`#/$defs/…`,
//! `#/definitions/…`, any `#/…` pointer, recursion included), `true`/`{}` (any value), and the
//! annotations `title`, `description`, `default`, `examples`, `$schema`, `$id`, `$comment`,
//! `readOnly`, `writeOnly`, `deprecated`. Numbers have at most 16 integer and 16 fraction digits
//! and a two-digit exponent, so that every number the grammar allows fits an `f64` (and every
//! integer an `i64`). `oneOf` is not exclusive: a document matching two branches is allowed.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};

/// Most nested schema levels (an error beyond, not a stack overflow).
const MAX_DEPTH: usize = 64;

/// A schema the converter cannot turn into a grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A keyword or value this converter does not support.
    #[error("unsupported JSON schema feature {feature} at {pointer}")]
    Unsupported {
        /// The keyword (with its value where that matters), e.g. `pattern`, `format: email`.
        feature: String,
        /// JSON pointer of the schema node that uses it (`#` is the root).
        pointer: String,
    },
    /// The schema is malformed (wrong types, dangling `$ref`, nesting too deep, bad JSON).
    #[error("invalid JSON schema at {pointer}: {message}")]
    Invalid {
        /// JSON pointer of the offending node.
        pointer: String,
        /// What is wrong.
        message: String,
    },
}

/// A JSON value that keeps object keys in document order.
#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn from_value(v: &serde_json::Value) -> J {
        use serde_json::Value as V;
        match v {
            V::Null => J::Null,
            V::Bool(b) => J::Bool(*b),
            V::Number(n) => J::Num(n.clone()),
            V::String(s) => J::Str(s.clone()),
            V::Array(a) => J::Arr(a.iter().map(J::from_value).collect()),
            V::Object(o) => J::Obj(
                o.iter()
                    .map(|(k, v)| (k.clone(), J::from_value(v)))
                    .collect(),
            ),
        }
    }

    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(o) => o.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Compact JSON text (as serde_json writes it).
    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => {
                let _ = write!(out, "{n}");
            }
            J::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
            J::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            J::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap_or_default());
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

struct JVisitor;

impl<'de> Visitor<'de> for JVisitor {
    type Value = J;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<J, E> {
        Ok(J::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<J, E> {
        Ok(J::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<J, E> {
        Ok(J::Num(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<J, E> {
        Ok(J::Num(n.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<J, E> {
        serde_json::Number::from_f64(n)
            .map(J::Num)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, s: &str) -> Result<J, E> {
        Ok(J::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<J, E> {
        Ok(J::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element::<J>()? {
            v.push(x);
        }
        Ok(J::Arr(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut v: Vec<(String, J)> = Vec::new();
        while let Some((k, x)) = map.next_entry::<String, J>()? {
            // A repeated key replaces the earlier value in place (as serde_json does).
            match v.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = x,
                None => v.push((k, x)),
            }
        }
        Ok(J::Obj(v))
    }
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        d.deserialize_any(JVisitor)
    }
}

/// Convert a JSON schema (a `serde_json::Value`) to GBNF whose `root` matches the documents
/// the schema allows (within the supported subset; see the module documentation).
pub fn json_schema_to_gbnf(schema: &serde_json::Value) -> Result<String, SchemaError> {
    convert(&J::from_value(schema))
}

/// Like [`json_schema_to_gbnf`], from schema text: properties keep the order of the text
/// whatever serde_json's features.
pub fn json_schema_str_to_gbnf(schema: &str) -> Result<String, SchemaError> {
    let mut de = serde_json::Deserializer::from_str(schema);
    let j = J::deserialize(&mut de)
        .and_then(|j| de.end().map(|()| j))
        .map_err(|e| SchemaError::Invalid {
            pointer: "#".to_string(),
            message: format!("not JSON: {e}"),
        })?;
    convert(&j)
}

const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "readOnly",
    "writeOnly",
    "deprecated",
    "$defs",
    "definitions",
];

/// Shared rules, added when first used: (name, body, rules it needs).
const PRIMITIVES: &[(&str, &str, &[&str])] = &[
    ("space", "| \" \" | \"\\n\" [ \\t]{0,20}", &[]),
    ("char", "[^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})", &[]),
    ("string", "\"\\\"\" char* \"\\\"\" space", &["char", "space"]),
    ("integral-part", "\"0\" | [1-9] [0-9]{0,15}", &[]),
    (
        "number",
        "\"-\"? integral-part (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})? space",
        &["integral-part", "space"],
    ),
    ("integer", "(\"0\" | \"-\"? [1-9] [0-9]{0,15}) space", &["space"]),
    ("boolean", "(\"true\" | \"false\") space", &["space"]),
    ("null", "\"null\" space", &["space"]),
    (
        "value",
        "object | array | string | number | boolean | null",
        &["object", "array", "string", "number", "boolean", "null"],
    ),
    (
        "object",
        "\"{\" space ( string \":\" space value (\",\" space string \":\" space value)* )? \"}\" space",
        &["string", "value", "space"],
    ),
    (
        "array",
        "\"[\" space ( value (\",\" space value)* )? \"]\" space",
        &["value", "space"],
    ),
    ("date", "[0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [1-2] [0-9] | \"3\" [0-1] )", &[]),
    (
        "time",
        "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{3} )? ( \"Z\" | ( \"+\" | \"-\" ) ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )",
        &[],
    ),
    ("date-string", "\"\\\"\" date \"\\\"\" space", &["date", "space"]),
    ("time-string", "\"\\\"\" time \"\\\"\" space", &["time", "space"]),
    ("date-time-string", "\"\\\"\" date \"T\" time \"\\\"\" space", &["date", "time", "space"]),
    (
        "uuid-string",
        "\"\\\"\" [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12} \"\\\"\" space",
        &["space"],
    ),
];

struct Conv<'a> {
    root: &'a J,
    rules: Vec<(String, String)>,
    used: HashSet<String>,
    refs: HashMap<String, String>,
    depth: usize,
}

/// A GBNF string literal for `text` (as written, quotes included).
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// JSON pointer escaping of one reference token.
fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn unsupported<T>(feature: impl Into<String>, pointer: &str) -> Result<T, SchemaError> {
    Err(SchemaError::Unsupported {
        feature: feature.into(),
        pointer: pointer.to_string(),
    })
}

fn invalid<T>(message: impl Into<String>, pointer: &str) -> Result<T, SchemaError> {
    Err(SchemaError::Invalid {
        pointer: pointer.to_string(),
        message: message.into(),
    })
}

fn as_count(v: Option<&J>, key: &str, pointer: &str) -> Result<Option<u32>, SchemaError> {
    match v {
        None => Ok(None),
        Some(J::Num(n)) => match n.as_u64() {
            Some(x) if x <= u64::from(crate::parse::MAX_REPETITION) => Ok(Some(x as u32)),
            Some(x) => unsupported(
                format!("{key}: {x} (more than {})", crate::parse::MAX_REPETITION),
                pointer,
            ),
            None => invalid(format!("{key} must be a non-negative integer"), pointer),
        },
        Some(_) => invalid(format!("{key} must be a non-negative integer"), pointer),
    }
}

/// `{min,max}` suffix for a repetition (empty when exactly once is meant).
fn repeat(min: u32, max: Option<u32>) -> String {
    match max {
        Some(m) if m == min => format!("{{{min}}}"),
        Some(m) => format!("{{{min},{m}}}"),
        None => format!("{{{min},}}"),
    }
}

impl<'a> Conv<'a> {
    fn primitive(&mut self, name: &str) -> String {
        if self.used.insert(name.to_string()) {
            if let Some((_, body, deps)) = PRIMITIVES.iter().find(|(n, _, _)| *n == name) {
                for d in deps.iter() {
                    self.primitive(d);
                }
                self.rules.push((name.to_string(), body.to_string()));
            }
        }
        name.to_string()
    }

    /// A fresh rule name derived from `hint`.
    fn fresh(&mut self, hint: &str) -> String {
        let mut base: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if base.is_empty() {
            base = "rule".to_string();
        }
        let mut name = base.clone();
        let mut i = 1;
        while self.used.contains(&name) || PRIMITIVES.iter().any(|(n, _, _)| *n == name) {
            i += 1;
            name = format!("{base}-{i}");
        }
        self.used.insert(name.clone());
        name
    }

    fn add(&mut self, name: String, body: String) -> String {
        self.rules.push((name.clone(), body));
        name
    }

    /// Convert the schema `s` at `pointer`; returns a GBNF expression (often a rule name).
    fn visit(&mut self, s: &J, pointer: &str, hint: &str) -> Result<String, SchemaError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return invalid(
                format!("schema nested deeper than {MAX_DEPTH} levels"),
                pointer,
            );
        }
        let r = self.visit_inner(s, pointer, hint);
        self.depth -= 1;
        r
    }

    fn visit_inner(&mut self, s: &J, pointer: &str, hint: &str) -> Result<String, SchemaError> {
        let obj = match s {
            J::Bool(true) => return Ok(self.primitive("value")),
            J::Bool(false) => return unsupported("false (a schema that allows nothing)", pointer),
            J::Obj(o) => o,
            _ => return invalid("a schema must be an object or a boolean", pointer),
        };
        let keys: Vec<&str> = obj
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !ANNOTATIONS.contains(k))
            .collect();
        let only = |allowed: &[&str]| -> Result<(), SchemaError> {
            match keys.iter().find(|k| !allowed.contains(k)) {
                Some(k) => unsupported(format!("{k} (combined with {})", allowed[0]), pointer),
                None => Ok(()),
            }
        };

        if let Some(r) = s.get("$ref") {
            only(&["$ref"])?;
            let J::Str(r) = r else {
                return invalid("$ref must be a string", pointer);
            };
            return self.reference(r, pointer);
        }
        if let Some(c) = s.get("const") {
            only(&["const"])?;
            let mut text = String::new();
            c.write(&mut text);
            let space = self.primitive("space");
            return Ok(format!("{} {space}", literal(&text)));
        }
        if let Some(e) = s.get("enum") {
            only(&["enum", "type"])?;
            let J::Arr(values) = e else {
                return invalid("enum must be an array", pointer);
            };
            if values.is_empty() {
                return unsupported("enum: [] (allows nothing)", pointer);
            }
            let alts: Vec<String> = values
                .iter()
                .map(|v| {
                    let mut t = String::new();
                    v.write(&mut t);
                    literal(&t)
                })
                .collect();
            let space = self.primitive("space");
            let name = self.fresh(hint);
            return Ok(self.add(name, format!("({}) {space}", alts.join(" | "))));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(list) = s.get(key) {
                only(&[key])?;
                let J::Arr(list) = list else {
                    return invalid(format!("{key} must be an array"), pointer);
                };
                if list.is_empty() {
                    return invalid(format!("{key} must not be empty"), pointer);
                }
                let name = self.fresh(hint);
                let mut alts = Vec::new();
                for (i, sub) in list.iter().enumerate() {
                    alts.push(self.visit(
                        sub,
                        &format!("{pointer}/{key}/{i}"),
                        &format!("{name}-{i}"),
                    )?);
                }
                return Ok(self.add(name, alts.join(" | ")));
            }
        }
        for key in [
            "allOf",
            "not",
            "if",
            "then",
            "else",
            "dependentSchemas",
            "$dynamicRef",
            "unevaluatedProperties",
        ] {
            if s.get(key).is_some() {
                return unsupported(key, pointer);
            }
        }

        let ty: Vec<String> = match s.get("type") {
            None => {
                if s.get("properties").is_some()
                    || s.get("additionalProperties").is_some()
                    || s.get("required").is_some()
                {
                    vec!["object".into()]
                } else if s.get("items").is_some()
                    || s.get("minItems").is_some()
                    || s.get("maxItems").is_some()
                {
                    vec!["array".into()]
                } else if s.get("minLength").is_some()
                    || s.get("maxLength").is_some()
                    || s.get("format").is_some()
                {
                    vec!["string".into()]
                } else {
                    if let Some(k) = keys.first() {
                        return unsupported(*k, pointer);
                    }
                    return Ok(self.primitive("value"));
                }
            }
            Some(J::Str(t)) => vec![t.clone()],
            Some(J::Arr(ts)) => {
                let mut out = Vec::new();
                for t in ts {
                    match t {
                        J::Str(t) => out.push(t.clone()),
                        _ => {
                            return invalid("type must be a string or an array of strings", pointer)
                        }
                    }
                }
                if out.is_empty() {
                    return invalid("type must not be an empty array", pointer);
                }
                out
            }
            Some(_) => return invalid("type must be a string or an array of strings", pointer),
        };
        if ty.len() > 1 {
            let name = self.fresh(hint);
            let mut alts = Vec::new();
            for t in &ty {
                alts.push(self.typed(s, t, pointer, &format!("{name}-{t}"), &keys, false)?);
            }
            return Ok(self.add(name, alts.join(" | ")));
        }
        self.typed(s, &ty[0], pointer, hint, &keys, true)
    }

    fn reference(&mut self, r: &str, pointer: &str) -> Result<String, SchemaError> {
        if let Some(name) = self.refs.get(r) {
            return Ok(name.clone());
        }
        let Some(path) = r.strip_prefix('#') else {
            return unsupported(format!("$ref: {r} (remote reference)"), pointer);
        };
        let mut target = self.root;
        if !path.is_empty() {
            let Some(rest) = path.strip_prefix('/') else {
                return unsupported(format!("$ref: {r} (anchor)"), pointer);
            };
            for tok in rest.split('/') {
                let tok = tok.replace("~1", "/").replace("~0", "~");
                target = match target {
                    J::Obj(_) => target.get(&tok),
                    J::Arr(a) => tok.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                }
                .ok_or_else(|| SchemaError::Invalid {
                    pointer: pointer.to_string(),
                    message: format!("$ref {r} does not resolve"),
                })?;
            }
        }
        let hint = path
            .rsplit('/')
            .next()
            .filter(|h| !h.is_empty())
            .unwrap_or("root-ref");
        let name = self.fresh(&format!("ref-{hint}"));
        self.refs.insert(r.to_string(), name.clone());
        // Rule bodies are added after their dependencies; a placeholder keeps the order stable.
        let slot = self.rules.len();
        self.rules.push((name.clone(), String::new()));
        let body = self.visit(target, r, &name)?;
        self.rules[slot].1 = body;
        Ok(name)
    }

    fn typed(
        &mut self,
        s: &J,
        ty: &str,
        pointer: &str,
        hint: &str,
        keys: &[&str],
        check_keys: bool,
    ) -> Result<String, SchemaError> {
        let allowed: &[&str] = match ty {
            "object" => &["type", "properties", "required", "additionalProperties"],
            "array" => &["type", "items", "minItems", "maxItems", "uniqueItems"],
            "string" => &["type", "minLength", "maxLength", "format"],
            "number" | "integer" | "boolean" | "null" => &["type"],
            other => return invalid(format!("unknown type '{other}'"), pointer),
        };
        // With several types, a keyword belongs to one of them; only unknown ones are errors.
        let all_known = [
            "type",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "minItems",
            "maxItems",
            "uniqueItems",
            "minLength",
            "maxLength",
            "format",
        ];
        for k in keys {
            if (check_keys && !allowed.contains(k)) || !all_known.contains(k) {
                return unsupported(*k, pointer);
            }
        }
        match ty {
            "boolean" | "null" | "number" | "integer" => Ok(self.primitive(ty)),
            "string" => self.string(s, pointer, hint),
            "array" => self.array(s, pointer, hint),
            _ => self.object(s, pointer, hint),
        }
    }

    fn string(&mut self, s: &J, pointer: &str, hint: &str) -> Result<String, SchemaError> {
        let min = as_count(s.get("minLength"), "minLength", pointer)?;
        let max = as_count(s.get("maxLength"), "maxLength", pointer)?;
        if let Some(f) = s.get("format") {
            let J::Str(f) = f else {
                return invalid("format must be a string", pointer);
            };
            if min.is_some() || max.is_some() {
                return unsupported(format!("format: {f} with minLength/maxLength"), pointer);
            }
            return match f.as_str() {
                "date" | "time" | "date-time" | "uuid" => {
                    Ok(self.primitive(&format!("{f}-string")))
                }
                other => unsupported(format!("format: {other}"), pointer),
            };
        }
        if min.is_none() && max.is_none() {
            return Ok(self.primitive("string"));
        }
        let min = min.unwrap_or(0);
        if max.is_some_and(|m| m < min) {
            return invalid("maxLength is below minLength", pointer);
        }
        let ch = self.primitive("char");
        let space = self.primitive("space");
        let name = self.fresh(hint);
        Ok(self.add(
            name,
            format!("\"\\\"\" {ch}{} \"\\\"\" {space}", repeat(min, max)),
        ))
    }

    fn array(&mut self, s: &J, pointer: &str, hint: &str) -> Result<String, SchemaError> {
        if let Some(J::Bool(true)) = s.get("uniqueItems") {
            return unsupported("uniqueItems: true", pointer);
        }
        let min = as_count(s.get("minItems"), "minItems", pointer)?.unwrap_or(0);
        let max = as_count(s.get("maxItems"), "maxItems", pointer)?;
        if max.is_some_and(|m| m < min) {
            return invalid("maxItems is below minItems", pointer);
        }
        let items = match s.get("items") {
            None => None,
            Some(J::Arr(_)) => {
                return unsupported("items: [..] (tuple form; use prefixItems)", pointer)
            }
            Some(i) => Some(i),
        };
        if items.is_none() && min == 0 && max.is_none() {
            return Ok(self.primitive("array"));
        }
        let name = self.fresh(hint);
        let item = match items {
            Some(i) => self.visit(i, &format!("{pointer}/items"), &format!("{name}-item"))?,
            None => self.primitive("value"),
        };
        let space = self.primitive("space");
        let body = if max == Some(0) {
            format!("\"[\" {space} \"]\" {space}")
        } else {
            let more_min = min.saturating_sub(1);
            let more_max = max.map(|m| m - 1);
            let rest = if more_max == Some(0) {
                String::new()
            } else {
                format!(" (\",\" {space} {item}){}", repeat(more_min, more_max))
            };
            let list = format!("{item}{rest}");
            if min == 0 {
                format!("\"[\" {space} ({list})? \"]\" {space}")
            } else {
                format!("\"[\" {space} {list} \"]\" {space}")
            }
        };
        Ok(self.add(name, body))
    }

    fn object(&mut self, s: &J, pointer: &str, hint: &str) -> Result<String, SchemaError> {
        let props: &[(String, J)] = match s.get("properties") {
            None => &[],
            Some(J::Obj(p)) => p,
            Some(_) => return invalid("properties must be an object", pointer),
        };
        let required: Vec<&str> = match s.get("required") {
            None => Vec::new(),
            Some(J::Arr(r)) => {
                let mut out = Vec::new();
                for x in r {
                    match x {
                        J::Str(x) => out.push(x.as_str()),
                        _ => return invalid("required must be an array of strings", pointer),
                    }
                }
                out
            }
            Some(_) => return invalid("required must be an array of strings", pointer),
        };
        for r in &required {
            if !props.iter().any(|(k, _)| k == r) {
                return unsupported(format!("required: \"{r}\" (not in properties)"), pointer);
            }
        }
        let additional = s.get("additionalProperties");
        let space = self.primitive("space");
        if props.is_empty() {
            return match additional {
                None | Some(J::Bool(true)) => Ok(self.primitive("object")),
                Some(J::Bool(false)) => {
                    let name = self.fresh(hint);
                    Ok(self.add(name, format!("\"{{\" {space} \"}}\" {space}")))
                }
                Some(v) => {
                    let name = self.fresh(hint);
                    let value = self.visit(
                        v,
                        &format!("{pointer}/additionalProperties"),
                        &format!("{name}-value"),
                    )?;
                    let key = self.primitive("string");
                    let kv = format!("{key} \":\" {space} {value}");
                    Ok(self.add(
                        name,
                        format!("\"{{\" {space} ({kv} (\",\" {space} {kv})*)? \"}}\" {space}"),
                    ))
                }
            };
        }
        match additional {
            None | Some(J::Bool(false)) => {}
            Some(_) => {
                return unsupported(
                    "additionalProperties (other than false) together with properties",
                    pointer,
                )
            }
        }
        let name = self.fresh(hint);
        let mut kvs = Vec::new();
        for (k, sub) in props {
            let sub_pointer = format!("{pointer}/properties/{}", pointer_token(k));
            let value = self.visit(sub, &sub_pointer, &format!("{name}-{k}"))?;
            let kv_name = self.fresh(&format!("{name}-{k}-kv"));
            let kv = self.add(
                kv_name,
                format!(
                    "{} {space} \":\" {space} {value}",
                    literal(&serde_json::to_string(k).unwrap_or_default())
                ),
            );
            kvs.push((kv, required.contains(&k.as_str())));
        }
        // first[i]: properties i.. when none has been written yet; rest[i]: after one has.
        let n = kvs.len();
        let mut rest = vec![String::new(); n + 1];
        for i in (0..n).rev() {
            let (kv, req) = &kvs[i];
            let tail = if rest[i + 1].is_empty() {
                String::new()
            } else {
                format!(" {}", rest[i + 1])
            };
            let body = if *req {
                format!("\",\" {space} {kv}{tail}")
            } else {
                format!("(\",\" {space} {kv})?{tail}")
            };
            let rn = self.fresh(&format!("{name}-rest-{i}"));
            rest[i] = self.add(rn, body);
        }
        let mut first = vec![String::new(); n + 1];
        for i in (0..n).rev() {
            let (kv, req) = &kvs[i];
            let tail = if rest[i + 1].is_empty() {
                String::new()
            } else {
                format!(" {}", rest[i + 1])
            };
            let body = if *req {
                format!("{kv}{tail}")
            } else if first[i + 1].is_empty() {
                format!("({kv}{tail})?")
            } else {
                format!("{kv}{tail} | {}", first[i + 1])
            };
            let fname = self.fresh(&format!("{name}-first-{i}"));
            first[i] = self.add(fname, body);
        }
        Ok(self.add(name, format!("\"{{\" {space} {} \"}}\" {space}", first[0])))
    }
}

fn convert(schema: &J) -> Result<String, SchemaError> {
    let mut c = Conv {
        root: schema,
        rules: Vec::new(),
        used: HashSet::new(),
        refs: HashMap::new(),
        depth: 0,
    };
    c.used.insert("root".to_string());
    // The root document itself may be the target of `$ref: "#"`.
    let body = c.visit(schema, "#", "root-value")?;
    let mut out = format!("root ::= {body}\n");
    for (name, body) in &c.rules {
        let _ = writeln!(out, "{name} ::= {body}");
    }
    Ok(out)
}
