//! Time to compute the allowed-token mask for json.gbnf over real vocabularies: Gemma 3
//! (262,144 SentencePiece tokens) and Qwen2.5 (151,936 byte-level BPE tokens), read from the
//! GGUFs in `~/.cache/lmrun/models/` (override with `LMRUN_GEMMA_GGUF` / `LMRUN_QWEN_GGUF`;
//! a missing file is skipped).
//!
//! Before the criterion runs it prints, per vocabulary: the trie size, the cold (first, cache
//! empty) and warm (cached) mask time at several grammar states, and the average mask time over
//! a seeded random JSON generation that starts with empty caches.
//! Run: `cargo bench -p lmrun-grammar --bench mask`.

use criterion::{criterion_group, criterion_main, Criterion};
use lmrun_gguf::{GgufFile, LeArray, LoadMode, StrArray};
use lmrun_grammar::{Constraint, Grammar, TokenSet, Vocab};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const JSON_GBNF: &str = include_str!("../tests/data/grammars/json.gbnf");

/// Grammar states to time: text already accepted.
const STATES: &[(&str, &str)] = &[
    ("start", ""),
    ("in key", "{\""),
    ("value", "{\"name\": "),
    ("in string value", "{\"name\": \"Al"),
    ("in number", "{\"a\": [1, 23"),
    ("after value", "{\"a\": [1, 23]"),
    ("deep value", "{\"a\": {\"b\": [{\"c\": [[\"x\", "),
    (
        "deep string",
        "{\"a\": {\"b\": [{\"c\": [[\"x\", \"hello wor",
    ),
];

fn model_path(env: &str, file: &str) -> Option<PathBuf> {
    let p = match std::env::var_os(env) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/lmrun/models")
            .join(file),
    };
    p.exists().then_some(p)
}

/// GPT-2's byte → printable character table, inverted.
fn gpt2_unicode_to_byte() -> std::collections::HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xA1u32..=0xAC);
    printable.extend(0xAEu32..=0xFF);
    let mut map = std::collections::HashMap::new();
    let mut extra = 0u32;
    for b in 0u32..256 {
        let c = if printable.contains(&b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        map.insert(char::from_u32(c).unwrap_or('\0'), b as u8);
    }
    map
}

/// Token bytes and end-of-generation ids of a GGUF vocabulary. Control tokens get no bytes.
fn load_vocab(path: &Path) -> (Vec<Vec<u8>>, Vec<u32>, String) {
    let g = GgufFile::open(path, LoadMode::Mmap).expect("open GGUF");
    let model: &str = g.get("tokenizer.ggml.model").expect("tokenizer.ggml.model");
    let tokens: &StrArray = g
        .get("tokenizer.ggml.tokens")
        .expect("tokenizer.ggml.tokens");
    let types: Option<&LeArray<i32>> = g.get_opt("tokenizer.ggml.token_type").expect("token_type");
    let byte_of = gpt2_unicode_to_byte();
    let mut out = Vec::with_capacity(tokens.len());
    let mut eog = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let ty = types.and_then(|a| a.get(i)).unwrap_or(1);
        if ty == 3 || ty == 2 {
            // control / unknown: no text
            if ["<eos>", "<end_of_turn>", "<|endoftext|>", "<|im_end|>"].contains(&t) {
                eog.push(i as u32);
            }
            out.push(Vec::new());
            continue;
        }
        let bytes = if model == "llama" {
            if ty == 6 && t.len() == 6 && t.starts_with("<0x") && t.ends_with('>') {
                vec![u8::from_str_radix(&t[3..5], 16).unwrap_or(0)]
            } else {
                t.replace('\u{2581}', " ").into_bytes()
            }
        } else if ty == 4 {
            t.as_bytes().to_vec() // user-defined: literal text
        } else {
            t.chars()
                .map(|c| byte_of.get(&c).copied().unwrap_or(b'?'))
                .collect()
        };
        out.push(bytes);
    }
    if let Ok(Some(id)) = g.get_opt::<u32>("tokenizer.ggml.eos_token_id") {
        if !eog.contains(&id) {
            eog.push(id);
        }
    }
    (out, eog, model.to_string())
}

/// Milliseconds since `t`.
fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A random JSON generation with the real vocabulary: each step computes the mask and picks an
/// allowed token (short tokens favoured, so that structures close). Returns per-step mask times.
fn generate(g: &Arc<Grammar>, vocab: &Arc<Vocab>, seed: u64, steps: usize) -> (Vec<f64>, String) {
    let mut c = Constraint::new(Arc::clone(g), Arc::clone(vocab)).expect("constraint");
    let mut mask = TokenSet::new(vocab.len());
    let mut rng = Rng(seed);
    let mut times = Vec::new();
    let mut text = Vec::new();
    let mut depth_bias = 0u64;
    for _ in 0..steps {
        let t = Instant::now();
        let n = match c.allowed(&mut mask) {
            Ok(n) => n,
            Err(_) => break,
        };
        times.push(ms(t));
        let allowed: Vec<u32> = mask.iter().collect();
        // Prefer tokens with structure characters as the text grows, to close the document.
        depth_bias += 1;
        let mut pick = allowed[(rng.next() % n as u64) as usize];
        for _ in 0..8 {
            let cand = allowed[(rng.next() % n as u64) as usize];
            let b = vocab.token(cand);
            let structural = b.iter().any(|c| b"{}[]\",:0123456789".contains(c));
            // Late in the run, insist on structure so that the document closes.
            if depth_bias > 150 && !structural && !vocab.is_eog(cand) {
                continue;
            }
            if vocab.is_eog(cand)
                || (b.len() <= 3 && (structural || rng.next() % 100 < depth_bias.min(90)))
            {
                pick = cand;
                break;
            }
        }
        if vocab.is_eog(pick) {
            break;
        }
        text.extend_from_slice(vocab.token(pick));
        c.accept_token(pick).expect("accept");
        if c.is_finished() {
            break;
        }
    }
    (times, String::from_utf8_lossy(&text).into_owned())
}

fn report(name: &str, vocab: &Arc<Vocab>, g: &Arc<Grammar>) {
    println!(
        "== {name}: {} tokens, {} trie nodes",
        vocab.len(),
        vocab.trie_nodes()
    );
    let mut mask = TokenSet::new(vocab.len());
    let mut shared = Constraint::new(Arc::clone(g), Arc::clone(vocab)).expect("constraint");
    for (label, text) in STATES {
        // Cold: a fresh constraint (empty caches) at this state.
        let mut c = Constraint::new(Arc::clone(g), Arc::clone(vocab)).expect("constraint");
        c.accept_text(text.as_bytes())
            .expect("state text must match json.gbnf");
        let t = Instant::now();
        let n = c.allowed(&mut mask).unwrap_or(0);
        let cold = ms(t);
        // Warm: the same constraint again (cache hits), averaged.
        let t = Instant::now();
        let reps = 50;
        for _ in 0..reps {
            c.allowed(&mut mask).ok();
        }
        let warm = ms(t) / f64::from(reps);
        // Warm with caches shared across states (as in a real generation).
        shared.restart();
        shared
            .accept_text(text.as_bytes())
            .expect("state text must match json.gbnf");
        shared.allowed(&mut mask).ok();
        // Cross-check against matching every token on its own (slow; a few states only).
        if ["value", "in string value", "deep string"].contains(label) {
            let brute = (0..vocab.len() as u32).filter(|&t| c.is_allowed(t)).count();
            assert_eq!(
                brute,
                mask.count(),
                "{name} {label}: mask differs from token-by-token matching"
            );
        }
        println!(
            "  {label:<16} {n:>7} allowed   cold {cold:>8.3} ms   warm {warm:>7.4} ms   ({:?})",
            c.stats()
        );
    }
    for seed in [1u64, 2, 3] {
        let (times, text) = generate(g, vocab, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 400);
        let n = times.len().max(1) as f64;
        let mean = times.iter().sum::<f64>() / n;
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let p99 = sorted.get(sorted.len() * 99 / 100).copied().unwrap_or(0.0);
        let max = sorted.last().copied().unwrap_or(0.0);
        let tail: f64 = times.iter().skip(times.len() / 2).sum::<f64>()
            / (times.len() - times.len() / 2).max(1) as f64;
        println!(
            "  generation seed {seed}: {} steps, mean {mean:.3} ms, p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms, \
             second-half mean {tail:.3} ms; {} bytes: {:?}",
            times.len(),
            text.len(),
            text.chars().take(120).collect::<String>()
        );
    }
}

fn bench(c: &mut Criterion) {
    let g = Arc::new(Grammar::parse(JSON_GBNF).expect("json.gbnf"));
    for (name, env, file) in [
        ("gemma3", "LMRUN_GEMMA_GGUF", "gemma-3-270m-q4_k_m.gguf"),
        (
            "qwen2.5",
            "LMRUN_QWEN_GGUF",
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
    ] {
        let Some(path) = model_path(env, file) else {
            eprintln!("{name}: {file} not found; skipped");
            continue;
        };
        let t = Instant::now();
        let (tokens, eog, model) = load_vocab(&path);
        let vocab = Arc::new(Vocab::new(tokens, &eog));
        println!(
            "{name} ({model}): vocabulary read and trie built in {:.1} ms, eog {eog:?}",
            ms(t)
        );
        report(name, &vocab, &g);
        let mut group = c.benchmark_group(format!("mask/{name}"));
        for (label, text) in STATES {
            let mut con = Constraint::new(Arc::clone(&g), Arc::clone(&vocab)).expect("constraint");
            con.accept_text(text.as_bytes())
                .expect("state text must match json.gbnf");
            let mut mask = TokenSet::new(vocab.len());
            con.allowed(&mut mask).ok();
            group.bench_function(*label, |b| b.iter(|| con.allowed(&mut mask).ok()));
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
