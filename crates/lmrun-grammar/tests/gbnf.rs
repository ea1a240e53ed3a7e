//! GBNF parsing and matching: llama.cpp's grammar files, errors with positions, hostile
//! grammars, UTF-8 split across chunks, and masks checked against token-by-token matching.

use lmrun_grammar::{Constraint, ConstraintError, Grammar, Matcher, TokenSet, Vocab};
use std::path::PathBuf;
use std::sync::Arc;

fn data(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/grammars")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn grammar(src: &str) -> Arc<Grammar> {
    Arc::new(Grammar::parse(src).unwrap_or_else(|e| panic!("{e}")))
}

/// Whether the whole of `text` is a sentence of the grammar.
fn accepts(g: &Arc<Grammar>, text: &str) -> bool {
    let mut m = Matcher::new(Arc::clone(g)).unwrap();
    m.accept_bytes(text.as_bytes()).is_ok() && m.is_accepting()
}

fn err(src: &str) -> lmrun_grammar::GrammarError {
    match Grammar::parse(src) {
        Ok(_) => panic!("grammar parsed but should not: {src:?}"),
        Err(e) => e,
    }
}

#[test]
fn every_llama_cpp_grammar_parses() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/grammars");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "gbnf") {
            let src = std::fs::read_to_string(&p).unwrap();
            let g = Grammar::parse(&src).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(g.rule_names().any(|r| r == "root"));
            Matcher::new(Arc::new(g)).unwrap();
            n += 1;
        }
    }
    assert_eq!(n, 8, "expected the 8 grammars of llama.cpp's grammars/");
}

#[test]
fn json_gbnf() {
    let g = grammar(&data("json.gbnf"));
    for ok in [
        r#"{}"#,
        r#"{"a": 1}"#,
        r#"{"a": [1, 2.5, -3e15, true, false, null], "b": {"c": "d\n\u00e9"}}"#,
        "{\n  \"key\": \"value with ünïcödé ✓\"\n}",
        r#"{"nested": [[[]], {}]} "#,
    ] {
        assert!(accepts(&g, ok), "should accept {ok:?}");
    }
    for bad in [
        r#"[]"#,             // root is an object
        r#"{"a": 1,}"#,      // trailing comma
        r#"{"a" 1}"#,        // missing colon
        r#"{'a': 1}"#,       // single quotes
        "{\"a\": \"x\ny\"}", // raw newline in a string
        r#"{"a": 01x}"#,
        r#"{"a": tru}"#,
    ] {
        assert!(!accepts(&g, bad), "should reject {bad:?}");
    }
    // A prefix is alive but not accepting.
    let mut m = Matcher::new(Arc::clone(&g)).unwrap();
    m.accept_bytes(br#"{"a": [1, "#).unwrap();
    assert!(!m.is_accepting() && !m.is_dead());
    // A refused chunk leaves the state as it was.
    assert!(m.accept_bytes(b"]]").is_err());
    m.accept_bytes(b"2]}").unwrap();
    assert!(m.is_accepting());
}

#[test]
fn json_arr_gbnf() {
    let g = grammar(&data("json_arr.gbnf"));
    assert!(accepts(&g, "[\n{\"a\": 1},\n{\"b\": [2]}]"));
    assert!(!accepts(&g, "[{\"a\": 1}]"));
}

#[test]
fn arithmetic_gbnf() {
    let g = grammar(&data("arithmetic.gbnf"));
    assert!(accepts(&g, "1+2=3\n"));
    assert!(accepts(&g, "(a +b)*c = x_1\nfoo=42\n"));
    assert!(!accepts(&g, "1+=3\n"));
    assert!(!accepts(&g, "1+2=3"));
}

#[test]
fn list_gbnf() {
    let g = grammar(&data("list.gbnf"));
    assert!(accepts(&g, "- apples\n- pears\n"));
    assert!(!accepts(&g, "apples\n"));
    assert!(!accepts(&g, "- \n"));
    assert!(!accepts(&g, "- a\u{2028}b\n"));
}

#[test]
fn chess_gbnf() {
    let g = grammar(&data("chess.gbnf"));
    assert!(accepts(&g, "1. e4 e5\n2. Nf3 Nc6\n3. Bb5 a6\n"));
    assert!(accepts(&g, "1. d4 d5\n2. O-O O-O-O\n"));
    assert!(!accepts(&g, "1. e4 e5\n"), "needs a second move line");
    assert!(!accepts(&g, "1. e9 e5\n2. d4 d5\n"));
}

#[test]
fn c_english_japanese_gbnf() {
    let c = grammar(&data("c.gbnf"));
    assert!(accepts(&c, "int main(){return 0;}"));
    assert!(accepts(&c, "int f(int x){x = x+1;return x;}float g(){}"));
    assert!(!accepts(&c, "int main({}"));
    let en = grammar(&data("english.gbnf"));
    assert!(accepts(&en, "Hello, world!\nBye."));
    assert!(!accepts(&en, "naïve"));
    let jp = grammar(&data("japanese.gbnf"));
    assert!(accepts(&jp, "こんにちは 世界"));
    assert!(!accepts(&jp, "hello"));
}

#[test]
fn syntax_features() {
    let g = grammar(
        r#"
# comment line
root ::= greeting " " name{1,3} tail? # trailing comment
greeting ::= "h\x69" | "\u00e9t\U0001F600"
name ::= [A-Z] [a-z]* ("-" [a-z]+)*
tail ::= "!"+ | [^a-z\n] "."
"#,
    );
    assert!(accepts(&g, "hi Ann"));
    assert!(accepts(&g, "ét😀 AnnBobCy!!!"));
    assert!(accepts(&g, "hi Mary-jane#."));
    assert!(!accepts(&g, "hi AnnBobCyDe"));
    assert!(!accepts(&g, "hi ann"));
    let g = grammar("root ::= \"a\"{2} \"b\"{2,} \"c\"{0,2} .\n");
    assert!(accepts(&g, "aabb\n"));
    assert!(accepts(&g, "aabbbbcc😀"));
    assert!(!accepts(&g, "abb."));
    assert!(!accepts(&g, "aabbccc."));
    // Newlines after `|` and inside groups continue the rule.
    let g = grammar("root ::= \"a\" |\n  \"b\" (\n \"c\"\n | \"d\" )\n");
    assert!(accepts(&g, "a") && accepts(&g, "bc") && accepts(&g, "bd"));
}

#[test]
fn errors_carry_line_and_column() {
    let e = err("root ::= \"a\"\nfoo ::= \"b\" )\n");
    assert_eq!((e.location.line, e.location.column), (2, 13), "{e}");
    assert!(e.to_string().contains("line 2, column 13"), "{e}");
    let e = err("root ::= item\n");
    assert_eq!((e.location.line, e.location.column), (1, 10));
    assert!(e.message.contains("undefined rule 'item'"), "{e}");
    let e = err("root ::= \"abc\n");
    assert!(e.message.contains("unterminated string"), "{e}");
    let e = err("root ::= [a-");
    assert!(e.message.contains("end of input"), "{e}");
    let e = err("root := \"a\"");
    assert!(e.message.contains("expected '::='"), "{e}");
    assert_eq!((e.location.line, e.location.column), (1, 6));
    let e = err("root ::= \"\\q\"");
    assert!(e.message.contains("unknown escape"), "{e}");
    let e = err("root ::= \"\\x4\"");
    assert!(e.message.contains("hex digits"), "{e}");
    let e = err("root ::= * \"a\"");
    assert!(e.message.contains("expected an item before '*'"), "{e}");
    let e = err("root ::= \"a\"{2,1}");
    assert!(e.message.contains("below its minimum"), "{e}");
    let e = err("item ::= \"a\"\n");
    assert!(e.message.contains("'root'"), "{e}");
    let e = err("root ::= \"a\"\nroot ::= \"b\"\n");
    assert!(e.message.contains("defined twice"), "{e}");
    assert_eq!(e.location.line, 2);
    let e = err("root ::= <[1000]> \"a\"");
    assert!(e.message.contains("token references"), "{e}");
    let e = err("root ::= !<think>");
    assert!(e.message.contains("not supported"), "{e}");
    // Non-ASCII before the error counts as one column per character.
    let e = err("root ::= \"日本\" ]");
    assert_eq!((e.location.line, e.location.column), (1, 15), "{e}");
}

#[test]
fn left_recursion_is_rejected() {
    let e = err("root ::= expr\nexpr ::= expr \"+\" term | term\nterm ::= [0-9]\n");
    assert!(e.message.contains("'expr' is left-recursive"), "{e}");
    assert_eq!(e.location.line, 2);
    // Through a nullable prefix.
    let e = err("root ::= opt root \"x\" | \"y\"\nopt ::= \"a\"?\n");
    assert!(e.message.contains("left-recursive"), "{e}");
    // A repetition of something that can be empty.
    let e = err("root ::= (\"a\"?)*\n");
    assert!(e.message.contains("left-recursive"), "{e}");
    // Right recursion is fine.
    let g = grammar("root ::= \"a\" root | \"b\"\n");
    assert!(accepts(&g, "aaab"));
}

#[test]
fn hostile_grammars_are_errors_not_crashes() {
    let deep = format!(
        "root ::= {}\"a\"{}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    assert!(err(&deep).message.contains("nested deeper"));
    let ops = format!("root ::= \"a\"{}", "?".repeat(100_000));
    assert!(err(&ops).message.contains("nested deeper"));
    assert!(err("root ::= \"a\"{100000}")
        .message
        .contains("exceeds the limit"));
    assert!(err("root ::= \"a\"{99999999999999999999999}")
        .message
        .contains("exceeds the limit"));
    assert!(err("root ::= ((\"a\"{2000}){2000}){2000}")
        .message
        .contains("more than"));
    // Garbage does not panic.
    for junk in [
        "",
        "\u{0}",
        "::=",
        "root ::= [",
        "root ::= (",
        "root ::= \"\\",
        "root ::= [\\u12]",
        "root ::= \"\\UFFFFFFFF\"",
    ] {
        let _ = Grammar::parse(junk);
    }
}

#[test]
fn utf8_split_across_chunks() {
    let g = grammar("root ::= \"é日\" [😀-😂]+ \"x\"\n");
    let text = "é日😀😂x".as_bytes();
    for split in 0..=text.len() {
        let mut m = Matcher::new(Arc::clone(&g)).unwrap();
        m.accept_bytes(&text[..split]).unwrap();
        assert_eq!(
            m.has_partial_char(),
            std::str::from_utf8(&text[..split]).is_err() && split < text.len()
        );
        m.accept_bytes(&text[split..]).unwrap();
        assert!(m.is_accepting());
    }
    // Byte by byte.
    let mut m = Matcher::new(Arc::clone(&g)).unwrap();
    for b in text {
        m.accept_bytes(std::slice::from_ref(b)).unwrap();
    }
    assert!(m.is_accepting());
    // A partial code point that cannot become an allowed one is refused at once.
    let mut m = Matcher::new(Arc::clone(&g)).unwrap();
    assert!(m.accept_bytes(&[0xC3]).is_ok()); // start of é
    let mut m2 = Matcher::new(Arc::clone(&g)).unwrap();
    assert!(m2.accept_bytes(&[0xC4]).is_err()); // Ā..  is not é
    assert!(m.accept_bytes(&[0xFF]).is_err()); // invalid UTF-8
                                               // Not accepting while a code point is incomplete.
    let g = grammar("root ::= \"a\" \"é\"?\n");
    let mut m = Matcher::new(g).unwrap();
    m.accept_bytes(b"a\xC3").unwrap();
    assert!(!m.is_accepting());
}

/// A tiny deterministic RNG (xorshift64*).
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

fn toy_vocab() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![b"<eos>".to_vec(), Vec::new()];
    for b in 0u8..128 {
        v.push(vec![b]);
    }
    for s in [
        "{", "}", "[", "]", "{\"", "\":", "\": ", "\",", "\", \"", "\"}", "\"]", "\"},", "}}",
        "]]", "}]", "],", " {", " [", " \"", ", ", ",\n", "\n ", "\n  ", "  ", "true", "false",
        "null", " true", " null", "tr", "ue", "12", "345", "-1", "0.", ".5", "e+", "1e", "name",
        "age", "id", "items", "abc", " the", "value", "\\n", "\\\"", "\\u00", "é", "日本", "😀",
        "a\"", "x\": 1", "\": [", "\": {", "\": \"", "\"\n", "=", "+", "a+", "1. ", " e4", "Nf3",
        "O-O", "\n2", "- ", "int", "main", "return", "();", "){", "){return", "é\"", "\u{2028}",
    ] {
        v.push(s.as_bytes().to_vec());
    }
    // Split UTF-8 pieces.
    v.push(vec![0xC3]);
    v.push(vec![0xA9]);
    v.push(vec![0xE6, 0x97]);
    v.push(vec![0xA5]);
    v
}

/// The mask must equal token-by-token matching at every state of random walks.
#[test]
fn mask_equals_brute_force() {
    let vocab = Arc::new(Vocab::new(toy_vocab(), &[0]));
    for (name, seed) in [
        ("json.gbnf", 1u64),
        ("json.gbnf", 2),
        ("json_arr.gbnf", 3),
        ("arithmetic.gbnf", 4),
        ("chess.gbnf", 5),
        ("list.gbnf", 6),
        ("c.gbnf", 7),
        ("japanese.gbnf", 8),
    ] {
        let g = grammar(&data(name));
        let mut c = Constraint::new(g, Arc::clone(&vocab)).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut mask = TokenSet::new(vocab.len());
        for _round in 0..3 {
            c.restart();
            for _step in 0..60 {
                let r = c.allowed(&mut mask);
                let brute: Vec<u32> = (0..vocab.len() as u32)
                    .filter(|&t| c.is_allowed(t))
                    .collect();
                let got: Vec<u32> = mask.iter().collect();
                assert_eq!(got, brute, "{name}: mask differs from brute force");
                match r {
                    Ok(n) => assert_eq!(n, got.len()),
                    Err(ConstraintError::NoTokenAllowed) => {
                        assert!(got.is_empty());
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
                let pick = got[rng.below(got.len())];
                c.accept_token(pick).unwrap();
                if c.is_finished() {
                    break;
                }
            }
        }
        assert!(c.stats().cache_hits > 0, "{name}: the cache never hit");
    }
}

#[test]
fn no_continuation_means_empty_mask() {
    // The grammar needs a character no token has.
    let vocab = Arc::new(Vocab::new(
        vec![b"a".to_vec(), b"b".to_vec(), b"</s>".to_vec()],
        &[2],
    ));
    let mut c = Constraint::new(grammar("root ::= \"a\" \"z\"\n"), Arc::clone(&vocab)).unwrap();
    let mut mask = TokenSet::new(3);
    assert_eq!(c.allowed(&mut mask), Ok(1));
    c.accept_token(0).unwrap();
    assert_eq!(c.allowed(&mut mask), Err(ConstraintError::NoTokenAllowed));
    assert!(mask.is_empty());
    assert!(!c.is_finished());
    assert_eq!(
        c.accept_token(1),
        Err(ConstraintError::NotAllowed { id: 1 })
    );
    assert_eq!(
        c.accept_token(2),
        Err(ConstraintError::NotAllowed { id: 2 })
    );
    assert!(matches!(
        c.accept_token(9),
        Err(ConstraintError::UnknownToken { .. })
    ));
    // A grammar that has ended allows only the end of generation, then nothing.
    let mut c = Constraint::new(grammar("root ::= \"a\"\n"), vocab).unwrap();
    c.accept_token(0).unwrap();
    assert!(c.is_finished(), "accepting and no byte can follow");
    assert_eq!(c.allowed(&mut mask), Ok(1));
    assert!(mask.contains(2));
    c.accept_token(2).unwrap();
    assert_eq!(c.allowed(&mut mask), Err(ConstraintError::Finished));
    // An empty grammar only allows the end.
    let vocab = Arc::new(Vocab::new(vec![b"a".to_vec()], &[]));
    let mut c = Constraint::new(grammar("root ::= \n"), vocab).unwrap();
    assert_eq!(
        c.allowed(&mut TokenSet::new(1)),
        Err(ConstraintError::NoTokenAllowed)
    );
}
