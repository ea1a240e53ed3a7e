//! JSON schema → GBNF: documents generated under the mask (seeded random walks over a toy
//! vocabulary) parse with serde_json and validate against their schema; unsupported features
//! are errors that name the feature and where it is.

use lmrun_grammar::{
    json_schema_str_to_gbnf, json_schema_to_gbnf, Constraint, Grammar, SchemaError, TokenSet, Vocab,
};
use serde_json::{json, Value};
use std::sync::Arc;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const EOS: u32 = 0;

/// A few hundred byte strings: every printable ASCII character, newline and tab, JSON pieces
/// of several characters, the property names used below, and some non-ASCII text (one split
/// across two tokens).
fn toy_vocab() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![b"</s>".to_vec()];
    for b in 0x20u8..0x7F {
        v.push(vec![b]);
    }
    v.push(b"\n".to_vec());
    v.push(b"\t".to_vec());
    for s in [
        "{\"",
        "\":",
        "\": ",
        "\",",
        "\", \"",
        "\"}",
        "\"]",
        "\"},",
        "}}",
        "]]",
        "}]",
        "],",
        "},",
        "{}",
        "[]",
        " {",
        " [",
        " \"",
        ", ",
        ",\n",
        "\n ",
        "\n  ",
        "  ",
        "true",
        "false",
        "null",
        " true",
        " false",
        " null",
        "tr",
        "ue",
        "12",
        "345",
        "-1",
        "0.",
        ".5",
        "e+",
        "e-",
        "1e",
        "00",
        "42",
        "2024-",
        "01-",
        "-15",
        "T12:",
        "30:",
        "00Z",
        "abc",
        " the",
        "value",
        "\\n",
        "\\\"",
        "\\u00",
        "\\u",
        "é",
        "日本",
        "😀",
        "ü",
        "a\"",
        "x\": 1",
        "\": [",
        "\": {",
        "\": \"",
        "\"\n",
        "name",
        "\"name\"",
        "age",
        "\"age\"",
        "email",
        "tags",
        "street",
        "city",
        "zip",
        "address",
        "id",
        "children",
        "kind",
        "color",
        "red",
        "green",
        "blue",
        "\"red\"",
        "\"green\"",
        "label",
        "count",
        "settings",
        "enabled",
        "level",
        "nick",
        "score",
        "meta",
        "x",
        "y",
        "z",
        "point",
        "uuid",
        "date",
        "when",
        "items",
        "\"items\": [",
        "\"value\"",
        "deadbeef",
        "-4a2b-",
        "0123",
        "aaaa",
        "aBcD",
        "ff",
        "\\\\",
        "\\/",
        "\\t",
        "hello",
        " world",
        "foo",
        "bar",
        "1.5",
        "3.14",
        "100",
        "-0",
        "0",
        "9",
        "7",
    ] {
        v.push(s.as_bytes().to_vec());
    }
    v.push(vec![0xE6, 0x97]); // first bytes of 日
    v.push(vec![0xA5]); // its last byte
    v.push(vec![0xC3]); // first byte of é
    v.push(vec![0xA9]);
    v
}

/// Generate a document under `gbnf` with a seeded walk over the toy vocabulary.
fn generate(gbnf: &str, vocab: &Arc<Vocab>, seed: u64) -> String {
    let g = Arc::new(Grammar::parse(gbnf).unwrap_or_else(|e| panic!("{e}\n{gbnf}")));
    let mut c = Constraint::new(g, Arc::clone(vocab)).unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut mask = TokenSet::new(vocab.len());
    let mut out = Vec::new();
    for step in 0..5000 {
        c.allowed(&mut mask)
            .unwrap_or_else(|e| panic!("{e} after {:?}\n{gbnf}", String::from_utf8_lossy(&out)));
        let allowed: Vec<u32> = mask.iter().collect();
        if mask.contains(EOS) && (step > 40 || rng.below(3) == 0) {
            c.accept_token(EOS).unwrap();
            break;
        }
        let closing: Vec<u32> = allowed
            .iter()
            .copied()
            .filter(|&t| t != EOS && vocab.token(t).iter().any(|b| b"\"]}".contains(b)))
            .collect();
        let pick = if step > 40 && !closing.is_empty() && rng.below(4) != 0 {
            closing[rng.below(closing.len())]
        } else {
            let non_eos: Vec<u32> = allowed.iter().copied().filter(|&t| t != EOS).collect();
            if non_eos.is_empty() {
                EOS
            } else {
                non_eos[rng.below(non_eos.len())]
            }
        };
        c.accept_token(pick).unwrap();
        if pick == EOS {
            break;
        }
        out.extend_from_slice(vocab.token(pick));
        if c.is_finished() {
            break;
        }
    }
    assert!(
        c.is_finished(),
        "generation did not finish: {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8(out).expect("generated text is UTF-8")
}

/// A validator for the subset the converter supports.
fn validate(v: &Value, s: &Value, root: &Value, at: &str) -> Result<(), String> {
    let fail = |m: &str| Err(format!("{at}: {m} (value {v}, schema {s})"));
    let o = match s {
        Value::Bool(true) => return Ok(()),
        Value::Object(o) => o,
        _ => return fail("bad schema"),
    };
    if let Some(Value::String(r)) = o.get("$ref") {
        let target = root.pointer(&r[1..]).ok_or("dangling ref")?;
        return validate(v, target, root, at);
    }
    if let Some(c) = o.get("const") {
        return if v == c { Ok(()) } else { fail("const") };
    }
    if let Some(Value::Array(e)) = o.get("enum") {
        return if e.contains(v) { Ok(()) } else { fail("enum") };
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = o.get(key) {
            return if list.iter().any(|sub| validate(v, sub, root, at).is_ok()) {
                Ok(())
            } else {
                fail(key)
            };
        }
    }
    let types: Vec<&str> = match o.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ if o.contains_key("properties") || o.contains_key("additionalProperties") => {
            vec!["object"]
        }
        _ if o.contains_key("items")
            || o.contains_key("minItems")
            || o.contains_key("maxItems") =>
        {
            vec!["array"]
        }
        _ if o.contains_key("minLength")
            || o.contains_key("maxLength")
            || o.contains_key("format") =>
        {
            vec!["string"]
        }
        _ => return Ok(()),
    };
    let mut errors = Vec::new();
    for t in types {
        let r = match t {
            "null" if v.is_null() => Ok(()),
            "boolean" if v.is_boolean() => Ok(()),
            "integer" if v.is_i64() || v.is_u64() => Ok(()),
            "number" if v.is_number() => Ok(()),
            "string" if v.is_string() => {
                let s = v.as_str().unwrap_or_default();
                let n = s.chars().count() as u64;
                let min = o.get("minLength").and_then(Value::as_u64).unwrap_or(0);
                let max = o
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                let fmt_ok = match o.get("format").and_then(Value::as_str) {
                    None => true,
                    Some("date") => {
                        s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-'
                    }
                    Some("uuid") => {
                        s.len() == 36
                            && s.split('-').map(str::len).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
                    }
                    Some("date-time") => s.len() >= 20 && s.as_bytes()[10] == b'T',
                    Some("time") => s.len() >= 9 && s.as_bytes()[2] == b':',
                    Some(_) => false,
                };
                if n < min || n > max || !fmt_ok {
                    Err(format!("{at}: string {v} breaks length/format"))
                } else {
                    Ok(())
                }
            }
            "array" if v.is_array() => {
                let a = v.as_array().map(Vec::as_slice).unwrap_or_default();
                let min = o.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                let max = o
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                if (a.len() as u64) < min || a.len() as u64 > max {
                    Err(format!("{at}: {} items", a.len()))
                } else {
                    let items = o.get("items").cloned().unwrap_or(Value::Bool(true));
                    a.iter()
                        .enumerate()
                        .try_for_each(|(i, x)| validate(x, &items, root, &format!("{at}/{i}")))
                }
            }
            "object" if v.is_object() => {
                let m = v.as_object().expect("object");
                let props = o.get("properties").and_then(Value::as_object);
                let required: Vec<&str> = o
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut r = Ok(());
                for k in &required {
                    if !m.contains_key(*k) {
                        r = Err(format!("{at}: missing required {k}"));
                    }
                }
                for (k, x) in m {
                    let sub = match props.and_then(|p| p.get(k)) {
                        Some(sub) => sub.clone(),
                        None => match (props, o.get("additionalProperties")) {
                            (Some(p), _) if !p.is_empty() => {
                                r = Err(format!("{at}: extra property {k}"));
                                continue;
                            }
                            (_, Some(Value::Bool(false))) => {
                                r = Err(format!("{at}: extra property {k}"));
                                continue;
                            }
                            (_, Some(a)) => a.clone(),
                            (_, None) => Value::Bool(true),
                        },
                    };
                    if let Err(e) = validate(x, &sub, root, &format!("{at}/{k}")) {
                        r = Err(e);
                    }
                }
                r
            }
            _ => Err(format!("{at}: not a {t}")),
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("; "))
}

fn schemas() -> Vec<Value> {
    vec![
        // 1. required and optional properties
        json!({"type": "object", "properties": {
            "name": {"type": "string"}, "age": {"type": "integer"}, "email": {"type": "string"}},
            "required": ["name", "age"]}),
        // 2. bounded array of numbers
        json!({"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 5}),
        // 3. enum and const
        json!({"type": "object", "properties": {
            "color": {"enum": ["red", "green", "blue", 7, null]}, "kind": {"const": "point"}},
            "required": ["color", "kind"]}),
        // 4. $defs reference
        json!({"$defs": {"address": {"type": "object", "properties": {
                "street": {"type": "string"}, "city": {"type": "string"}, "zip": {"type": "string", "maxLength": 5}},
                "required": ["city"]}},
            "type": "object", "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "required": ["address"]}),
        // 5. recursion through definitions
        json!({"definitions": {"node": {"type": "object", "properties": {
                "id": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/definitions/node"}, "maxItems": 2}},
                "required": ["id"]}},
            "$ref": "#/definitions/node"}),
        // 6. anyOf
        json!({"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}}),
        // 7. type list
        json!({"type": "object", "properties": {"nick": {"type": ["string", "null"]}, "score": {"type": ["number", "boolean"]}},
            "required": ["nick", "score"]}),
        // 8. empty schema: any JSON value
        json!({}),
        // 9. all optional
        json!({"type": "object", "properties": {
            "a": {"type": "boolean"}, "b": {"type": "null"}, "c": {"type": "integer"}, "d": {"type": "string"}}}),
        // 10. string lengths
        json!({"type": "array", "items": {"type": "string", "minLength": 2, "maxLength": 5}, "minItems": 1}),
        // 11. map of integers
        json!({"type": "object", "additionalProperties": {"type": "integer"}}),
        // 12. formats
        json!({"type": "object", "properties": {"uuid": {"type": "string", "format": "uuid"},
            "when": {"type": "string", "format": "date"}}, "required": ["uuid", "when"]}),
        // 13. oneOf of objects, nested arrays, exact item count
        json!({"oneOf": [
            {"type": "object", "properties": {"point": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}},
             "required": ["point"]},
            {"type": "object", "properties": {"label": {"type": "string"}, "meta": {"type": "object"}}, "required": ["label"]}]}),
        // 14. empty object only, and an any-array
        json!({"type": "object", "properties": {"settings": {"type": "object", "additionalProperties": false},
            "items": {"type": "array"}}, "required": ["settings", "items"]}),
    ]
}

#[test]
fn generated_documents_validate() {
    let vocab = Arc::new(Vocab::new(toy_vocab(), &[EOS]));
    assert!(vocab.len() > 200);
    for (i, schema) in schemas().iter().enumerate() {
        let gbnf = json_schema_to_gbnf(schema).unwrap_or_else(|e| panic!("schema {}: {e}", i + 1));
        let mut distinct = std::collections::HashSet::new();
        for seed in 0..12u64 {
            let text = generate(&gbnf, &vocab, seed * 31 + i as u64);
            let doc: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("schema {}: {e}: {text:?}\n{gbnf}", i + 1));
            validate(&doc, schema, schema, "#")
                .unwrap_or_else(|e| panic!("schema {}: {e}\ndocument {text}\n{gbnf}", i + 1));
            distinct.insert(text);
        }
        assert!(
            distinct.len() > 3,
            "schema {}: walks should differ: {distinct:?}",
            i + 1
        );
    }
}

#[test]
fn properties_follow_schema_order_and_optional_ones_may_go() {
    let gbnf = json_schema_str_to_gbnf(
        r#"{"type": "object", "properties": {"z": {"type": "integer"}, "a": {"type": "integer"}, "m": {"type": "integer"}},
            "required": ["m"]}"#,
    )
    .unwrap();
    let g = Arc::new(Grammar::parse(&gbnf).unwrap());
    let ok = |t: &str| {
        let mut m = lmrun_grammar::Matcher::new(Arc::clone(&g)).unwrap();
        m.accept_bytes(t.as_bytes()).is_ok() && m.is_accepting()
    };
    assert!(ok(r#"{"z": 1, "a": 2, "m": 3}"#));
    assert!(ok(r#"{"m": 3}"#));
    assert!(ok(r#"{"a":2,"m":3}"#));
    assert!(ok("{\n  \"z\": 1,\n  \"m\": 3\n}"));
    assert!(!ok(r#"{"a": 2, "z": 1, "m": 3}"#), "order is the schema's");
    assert!(!ok(r#"{"z": 1}"#), "m is required");
    assert!(!ok(r#"{"m": 3, "q": 1}"#), "no extra properties");
    assert!(!ok(r#"{"m": 3,}"#));
    assert!(!ok(r#"{, "m": 3}"#));
    // Whitespace is bounded.
    assert!(!ok(&format!("{{\"m\":\n{}3}}", " ".repeat(21))));
}

#[test]
fn unsupported_features_are_named_with_their_pointer() {
    let cases = [
        (json!({"type": "string", "pattern": "^a+$"}), "pattern", "#"),
        (
            json!({"type": "object", "properties": {"e": {"type": "string", "format": "email"}}}),
            "format: email",
            "#/properties/e",
        ),
        (
            json!({"$ref": "https://example.com/schema.json"}),
            "remote reference",
            "#",
        ),
        (json!({"type": "integer", "minimum": 0}), "minimum", "#"),
        (
            json!({"type": "array", "items": {"allOf": [{"type": "string"}]}}),
            "allOf",
            "#/items",
        ),
        (
            json!({"type": "object", "properties": {"a/b": {"type": "number", "multipleOf": 2}}}),
            "multipleOf",
            "#/properties/a~1b",
        ),
        (
            json!({"type": "array", "uniqueItems": true}),
            "uniqueItems",
            "#",
        ),
        (
            json!({"type": "object", "properties": {"a": {}}, "additionalProperties": true}),
            "additionalProperties",
            "#",
        ),
        (
            json!({"$defs": {"x": {"type": "string", "pattern": "x"}}, "$ref": "#/$defs/x"}),
            "pattern",
            "#/$defs/x",
        ),
        (json!(false), "false", "#"),
    ];
    for (schema, feature, pointer) in cases {
        match json_schema_to_gbnf(&schema) {
            Err(SchemaError::Unsupported {
                feature: f,
                pointer: p,
            }) => {
                assert!(
                    f.contains(feature),
                    "{schema}: feature {f:?} should name {feature:?}"
                );
                assert_eq!(p, pointer, "{schema}");
                let msg = SchemaError::Unsupported {
                    feature: f,
                    pointer: p,
                }
                .to_string();
                assert!(msg.contains(feature) && msg.contains(pointer), "{msg}");
            }
            other => panic!("{schema}: expected Unsupported, got {other:?}"),
        }
    }
    // Malformed schemas are Invalid, with where.
    assert!(matches!(
        json_schema_to_gbnf(&json!({"$ref": "#/$defs/missing"})),
        Err(SchemaError::Invalid { .. })
    ));
    assert!(matches!(
        json_schema_to_gbnf(&json!({"type": "array", "minItems": 3, "maxItems": 1})),
        Err(SchemaError::Invalid { .. })
    ));
    assert!(matches!(
        json_schema_to_gbnf(&json!({"type": "strin"})),
        Err(SchemaError::Invalid { .. })
    ));
    assert!(matches!(
        json_schema_str_to_gbnf("{"),
        Err(SchemaError::Invalid { .. })
    ));
    // Deep nesting is an error, not a crash.
    let mut deep = json!({"type": "string"});
    for _ in 0..100 {
        deep = json!({"type": "array", "items": deep});
    }
    assert!(matches!(
        json_schema_to_gbnf(&deep),
        Err(SchemaError::Invalid { .. })
    ));
}

#[test]
fn every_generated_grammar_compiles() {
    for s in schemas() {
        let gbnf = json_schema_to_gbnf(&s).unwrap();
        Grammar::parse(&gbnf).unwrap_or_else(|e| panic!("{e}\n{gbnf}"));
    }
}
