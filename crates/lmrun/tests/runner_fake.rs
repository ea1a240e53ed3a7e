//! The runner's bookkeeping against a fake decoder and a byte tokenizer: callbacks, positions
//! across calls, max-new-token budgets, EOS, stop from another thread, reset and warm-up.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lmrun::{GenerationConfig, LoadReport, RunnerError, StopReason, TextDecoder, TextLLMRunner};
use lmrun_tokenizers::{EncodeOptions, Tokenizer};

const BOS: u32 = 256;
const EOS: u32 = 257;
const VOCAB: usize = 258;

/// One token per byte, plus BOS and EOS; BOS is added by the model's rule.
struct ByteTokenizer;

impl Tokenizer for ByteTokenizer {
    fn encode_with(&self, text: &str, o: &EncodeOptions) -> lmrun_tokenizers::Result<Vec<u32>> {
        let mut v = vec![BOS; o.num_bos];
        v.extend(text.bytes().map(u32::from));
        v.extend(std::iter::repeat_n(EOS, o.num_eos));
        Ok(v)
    }
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn bos_id(&self) -> Option<u32> {
        Some(BOS)
    }
    fn eos_id(&self) -> Option<u32> {
        Some(EOS)
    }
    fn special_token_id(&self, _: &str) -> Option<u32> {
        None
    }
    fn is_special(&self, id: u32) -> bool {
        id >= 256
    }
    fn piece(&self, id: u32) -> Option<String> {
        Some(format!("<{id}>"))
    }
    fn token_bytes(&self, id: u32, _: bool) -> lmrun_tokenizers::Result<Cow<'_, [u8]>> {
        Ok(if id < 256 {
            Cow::Owned(vec![id as u8])
        } else {
            Cow::Borrowed(&[])
        })
    }
    fn kind(&self) -> &'static str {
        "bytes"
    }
}

/// Predicts "the next letter": after byte b it favours b+1 (z → EOS). Records every step.
struct Fake {
    calls: Calls,
    logits: Vec<f32>,
    ctx: i64,
    delay: Duration,
    loaded: bool,
}

impl TextDecoder for Fake {
    fn method_names(&self) -> Vec<String> {
        [
            "forward",
            "get_max_seq_len",
            "get_max_context_len",
            "enable_dynamic_shape",
        ]
        .map(String::from)
        .to_vec()
    }
    fn get_metadata(&mut self, name: &str) -> Result<Vec<i64>, RunnerError> {
        Ok(match name {
            "get_max_seq_len" => vec![16],
            "get_max_context_len" => vec![self.ctx],
            "enable_dynamic_shape" => vec![1],
            _ => return Err(RunnerError::MissingMethod(name.into())),
        })
    }
    fn load_method(&mut self, _: &str) -> Result<(), RunnerError> {
        self.loaded = true;
        Ok(())
    }
    fn is_method_loaded(&self, _: &str) -> bool {
        self.loaded
    }
    fn step(&mut self, tokens: &[u32], start_pos: usize) -> Result<&[f32], RunnerError> {
        assert!(start_pos + tokens.len() <= self.ctx as usize, "KV overflow");
        self.calls
            .lock()
            .unwrap()
            .push((tokens.to_vec(), start_pos));
        std::thread::sleep(self.delay);
        let last = *tokens.last().unwrap();
        let next = match last {
            b if b == u32::from(b'z') => EOS,
            b if b < 255 => b + 1,
            _ => u32::from(b'a'),
        };
        self.logits.iter_mut().for_each(|l| *l = 0.0);
        self.logits[next as usize] = 10.0;
        Ok(&self.logits)
    }
    fn load_report(&self) -> LoadReport {
        LoadReport::default()
    }
}

type Calls = Arc<Mutex<Vec<(Vec<u32>, usize)>>>;

fn runner(ctx: i64, delay_ms: u64) -> (TextLLMRunner, Calls) {
    let calls: Calls = Arc::default();
    let fake = Fake {
        calls: calls.clone(),
        logits: vec![0.0; VOCAB],
        ctx,
        delay: Duration::from_millis(delay_ms),
        loaded: false,
    };
    let r = TextLLMRunner::from_parts(Box::new(ByteTokenizer), Box::new(fake), "forward", -1.0)
        .unwrap();
    (r, calls)
}

fn greedy(max_new: i64) -> GenerationConfig {
    GenerationConfig {
        temperature: 0.0,
        max_new_tokens: max_new,
        echo: false,
        ..Default::default()
    }
}

fn run(
    r: &mut TextLLMRunner,
    prompt: &str,
    cfg: &GenerationConfig,
) -> (lmrun::Generation, Vec<String>, usize) {
    let mut pieces = Vec::new();
    let mut stats_calls = 0;
    let g = r
        .generate(
            prompt,
            cfg,
            &mut |p| pieces.push(p.to_string()),
            &mut |_| stats_calls += 1,
        )
        .unwrap();
    (g, pieces, stats_calls)
}

#[test]
fn callbacks_positions_and_text() {
    let (mut r, calls) = runner(128, 0);
    assert!(!r.is_loaded());
    let cfg = GenerationConfig {
        echo: true,
        ..greedy(5)
    };
    let (g, pieces, stats_calls) = run(&mut r, "abc", &cfg);
    assert!(r.is_loaded());
    // BOS by the model's rule, then the bytes.
    assert_eq!(g.prompt_token_ids, vec![BOS, 97, 98, 99]);
    assert_eq!(g.generated_token_ids, b"defgh".map(u32::from).to_vec());
    assert_eq!(pieces, vec!["abc", "d", "e", "f", "g", "h"]); // echo + one per token
    assert_eq!(g.text, "defgh");
    assert_eq!(stats_calls, 1);
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    // 4 prompt tokens + 4 decode steps (the last token is not fed).
    assert_eq!(r.position(), 8);
    assert_eq!(g.stats.num_prompt_tokens, 4);
    // Every id produced counts as generated; the decode steps are one fewer.
    assert_eq!(g.stats.num_generated_tokens, 5);
    assert_eq!(g.stats.num_decode_steps, 4);
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls[0], (vec![BOS, 97, 98, 99], 0)); // one batched prefill
    assert_eq!(calls[1], (vec![100], 4));
    assert_eq!(calls.last().unwrap(), &(vec![103], 7));
}

#[test]
fn second_call_prefills_only_the_new_text_without_bos() {
    let (mut r, calls) = runner(128, 0);
    run(&mut r, "ab", &greedy(3)); // pos = 3 + 2
    assert_eq!(r.position(), 5);
    calls.lock().unwrap().clear();
    let (g, _, _) = run(&mut r, "xy", &greedy(2));
    assert_eq!(g.prompt_token_ids, vec![120, 121]);
    assert_eq!(calls.lock().unwrap()[0], (vec![120, 121], 5));
    assert_eq!(r.position(), 8);
    // An explicit num_bos always wins.
    let cfg = GenerationConfig {
        num_bos: Some(1),
        ..greedy(1)
    };
    let (g, _, _) = run(&mut r, "q", &cfg);
    assert_eq!(g.prompt_token_ids, vec![BOS, 113]);
    let cfg = GenerationConfig {
        num_bos: Some(0),
        ..greedy(1)
    };
    r.reset();
    let (g, _, _) = run(&mut r, "q", &cfg);
    assert_eq!(g.prompt_token_ids, vec![113]);
}

#[test]
fn long_prompts_are_prefilled_in_max_seq_len_chunks() {
    let (mut r, calls) = runner(128, 0);
    let prompt = "a".repeat(40); // 41 tokens with BOS; max_seq_len 16
    run(&mut r, &prompt, &greedy(1));
    let c = calls.lock().unwrap();
    let sizes: Vec<_> = c.iter().map(|(t, p)| (t.len(), *p)).collect();
    assert_eq!(sizes, vec![(16, 0), (16, 16), (9, 32)]);
}

#[test]
fn eos_stops_unless_ignored() {
    let (mut r, _) = runner(128, 0);
    let (g, _, _) = run(&mut r, "x", &greedy(20)); // y z EOS
    assert_eq!(g.generated_token_ids, vec![121, 122, EOS]);
    assert_eq!(g.stop_reason, StopReason::Eos);
    assert_eq!(g.text, "yz"); // control tokens are not rendered
    r.reset();
    let cfg = GenerationConfig {
        ignore_eos: true,
        ..greedy(5)
    };
    let (g, _, _) = run(&mut r, "x", &cfg);
    assert_eq!(g.generated_token_ids.len(), 5);
    assert_eq!(g.generated_token_ids[2], EOS);
}

#[test]
fn context_budgets_and_errors() {
    let (mut r, _) = runner(10, 0);
    // -1/-1: everything left: 10 - 4 prompt tokens = 6 new tokens
    let (g, _, _) = run(
        &mut r,
        "abc",
        &GenerationConfig {
            ignore_eos: true,
            ..greedy(-1)
        },
    );
    assert_eq!(g.generated_token_ids.len(), 6);
    assert_eq!(r.position(), 9);
    // 1 position left: a 1-token prompt does not fit (n_prompt must be < left)
    let e = r
        .generate("a", &greedy(1), &mut |_| {}, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(e, RunnerError::PromptTooLong { left: 1, .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("only 1 of the context's 10 positions are left"),
        "{e}"
    );
    r.reset();
    let e = r
        .generate("", &greedy(1), &mut |_| {}, &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, RunnerError::EmptyPrompt));
    let e = r
        .generate(&"a".repeat(20), &greedy(1), &mut |_| {}, &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, RunnerError::PromptTooLong { .. }), "{e}");
    // seq_len caps prompt + generated
    let cfg = GenerationConfig {
        seq_len: 6,
        ignore_eos: true,
        ..greedy(-1)
    };
    let (g, _, _) = run(&mut r, "ab", &cfg); // 3 prompt tokens → 3 new
    assert_eq!(g.generated_token_ids.len(), 3);
    r.reset();
    let cfg = GenerationConfig {
        seq_len: 3,
        ..greedy(-1)
    };
    let e = r
        .generate("ab", &cfg, &mut |_| {}, &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, RunnerError::NoRoom { .. }), "{e}");
}

#[test]
fn stop_from_another_thread() {
    let (mut r, _) = runner(100_000, 5);
    let handle = r.stop_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(60));
        handle.stop();
    });
    let cfg = GenerationConfig {
        ignore_eos: true,
        ..greedy(5000)
    };
    let (g, _, _) = run(&mut r, "a", &cfg);
    t.join().unwrap();
    assert_eq!(g.stop_reason, StopReason::Stopped);
    assert!(g.generated_token_ids.len() < 5000);
    // The next call is not cancelled by the old request.
    let (g, _, _) = run(&mut r, "b", &greedy(3));
    assert_eq!(g.generated_token_ids.len(), 3);
}

#[test]
fn reset_and_warmup_rewind_the_position() {
    let (mut r, calls) = runner(128, 0);
    run(&mut r, "abc", &greedy(4));
    assert!(r.position() > 0);
    r.reset();
    assert_eq!(r.position(), 0);
    r.warmup("hello", 3).unwrap();
    assert_eq!(r.position(), 0);
    calls.lock().unwrap().clear();
    let (g, _, _) = run(&mut r, "abc", &greedy(1));
    assert_eq!(g.prompt_token_ids[0], BOS);
    assert_eq!(calls.lock().unwrap()[0].1, 0);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let (mut r, _) = runner(1000, 0);
    let cfg = GenerationConfig {
        temperature: 5.0,
        top_p: 1.0,
        seed: Some(1234),
        ignore_eos: true,
        ..greedy(20)
    };
    let (a, _, _) = run(&mut r, "m", &cfg);
    r.reset();
    let (b, _, _) = run(&mut r, "m", &cfg);
    assert_eq!(a.generated_token_ids, b.generated_token_ids);
}

#[test]
fn metadata_defaults_and_tokenizer_values() {
    let (r, _) = runner(64, 0);
    let m = r.metadata();
    assert_eq!(m["get_max_seq_len"], 16);
    assert_eq!(m["get_max_context_len"], 64);
    assert_eq!(m["use_kv_cache"], 1); // default
    assert_eq!(m["use_sdpa_with_kv_cache"], 0); // default
    assert_eq!(m["get_bos_id"], i64::from(BOS));
    assert_eq!(m["get_vocab_size"], VOCAB as i64);
    assert_eq!(r.eos_ids().iter().copied().collect::<Vec<_>>(), vec![EOS]);
}

#[test]
fn stop_during_the_prompt_ends_the_call_and_keeps_the_conversation() {
    let (mut r, calls) = runner(100_000, 20);
    // A first turn that completes.
    let (g, _, _) = run(&mut r, "ab", &greedy(2));
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    let pos = r.position();
    // A long prompt (25 chunks of 16 at 20 ms each), stopped after ~100 ms.
    let handle = r.stop_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        handle.stop();
    });
    let long = "x".repeat(400);
    let n_before = calls.lock().unwrap().len();
    let (g, pieces, stats_calls) = run(&mut r, &long, &greedy(5));
    t.join().unwrap();
    assert_eq!(g.stop_reason, StopReason::Stopped);
    assert!(
        g.generated_token_ids.is_empty(),
        "{:?} {:?}",
        g.generated_token_ids,
        g.text
    );
    assert!(pieces.is_empty());
    assert_eq!(stats_calls, 1);
    assert_eq!(g.stats.num_generated_tokens, 0);
    let steps = calls.lock().unwrap().len() - n_before;
    assert!(
        steps < 20,
        "the prompt ran on after the stop: {steps} chunks"
    );
    // The position is where the interrupted prompt started: the next turn continues there.
    assert_eq!(r.position(), pos);
    let (g, _, _) = run(&mut r, "c", &greedy(2));
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    assert_eq!(calls.lock().unwrap().last().unwrap().1, pos + 1);
}

#[test]
fn zero_new_tokens_and_a_seq_len_cap_are_explained() {
    let (mut r, _) = runner(128, 0);
    let e = r
        .generate("ab", &greedy(0), &mut |_| {}, &mut |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("max_new_tokens is 0"), "{e}");
    let cfg = GenerationConfig {
        seq_len: 2,
        ..greedy(-1)
    };
    let e = r
        .generate("ab", &cfg, &mut |_| {}, &mut |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("seq_len caps"), "{e}");
}

#[test]
fn a_stop_string_across_tokens_ends_generation_and_is_never_shown() {
    // "abc" -> d e f g h ...: stop at "fg", which spans two tokens.
    let (mut r, _) = runner(128, 0);
    let cfg = GenerationConfig {
        stop: vec!["fg".into(), "zzz".into()],
        ..greedy(20)
    };
    let (g, pieces, _) = run(&mut r, "abc", &cfg);
    assert_eq!(g.stop_reason, StopReason::StopString);
    assert_eq!(g.text, "de");
    assert_eq!(pieces.concat(), "de");
    // "f" was held back (it could start "fg"), never shown and then taken back
    assert!(pieces.iter().all(|p| !p.contains('f')), "{pieces:?}");
    assert_eq!(g.generated_token_ids, b"defg".map(u32::from).to_vec());

    // A held prefix that does not become a stop string is shown in the end.
    let cfg = GenerationConfig {
        stop: vec!["fx".into()],
        ..greedy(4)
    };
    let (g, pieces, _) = run(&mut r, "abc", &cfg);
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    assert_eq!(
        (g.text.as_str(), pieces.concat()),
        ("defg", "defg".to_string())
    );
}

#[test]
fn logit_bias_and_logprobs() {
    let (mut r, _) = runner(128, 0);
    // Ban the favourite after 'c' ('d'): greedy takes the next best (all 0: token 0).
    let cfg = GenerationConfig {
        logit_bias: vec![
            (u32::from(b'd'), f32::NEG_INFINITY),
            (u32::from(b'x'), 20.0),
        ],
        n_probs: 3,
        ..greedy(2)
    };
    let (g, _, _) = run(&mut r, "abc", &cfg);
    // 'x' gets +20 over the fake's 10 for the favourite: chosen both times
    assert_eq!(g.generated_token_ids, vec![u32::from(b'x'); 2]);
    assert_eq!(g.logprobs.len(), 2);
    let lp = &g.logprobs[0];
    assert_eq!(lp.id, u32::from(b'x'));
    assert_eq!(lp.top.len(), 3);
    assert_eq!(lp.top[0].0, u32::from(b'x'));
    assert!(lp.logprob < 0.0 && lp.logprob > -1e-3, "{}", lp.logprob);
    assert!((lp.logprob - lp.top[0].1).abs() < 1e-6);
    // the banned token is not among the alternatives
    assert!(lp.top.iter().all(|t| t.0 != u32::from(b'd')));
    // Without n_probs, no logprobs.
    let (g, _, _) = run(&mut r, "abc", &greedy(2));
    assert!(g.logprobs.is_empty());

    // An id outside the vocabulary is an error before generation.
    let bad = GenerationConfig {
        logit_bias: vec![(VOCAB as u32, 1.0)],
        ..greedy(2)
    };
    let e = r
        .generate("abc", &bad, &mut |_| {}, &mut |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
}

#[test]
fn presence_penalty_steers_away_from_seen_tokens() {
    let (mut r, _) = runner(128, 0);
    // The favourite after 'c' is 'd' (logit 10); 'd' is in the prompt, so a presence penalty
    // of 11 puts it below the rest (0): greedy picks token 0.
    let cfg = GenerationConfig {
        presence_penalty: 11.0,
        ..greedy(1)
    };
    let (g, _, _) = run(&mut r, "abcd", &cfg);
    assert_eq!(
        g.generated_token_ids,
        vec![u32::from(b'e')],
        "'e' was not seen"
    );
    r.reset();
    let (g, _, _) = run(&mut r, "dc", &cfg);
    assert_eq!(
        g.generated_token_ids,
        vec![0],
        "'d' was seen: penalised below 0"
    );
}

#[test]
fn a_grammar_constrains_the_output_and_ends_it_cleanly() {
    let (mut r, _) = runner(128, 0);
    // The fake wants "defgh…"; the grammar allows "d" then one of "x"/"e", then the end.
    let cfg = GenerationConfig {
        grammar: Some(r#"root ::= "d" ("x" | "e")"#.into()),
        ..greedy(10)
    };
    let (g, _, _) = run(&mut r, "abc", &cfg);
    assert_eq!(g.text, "de");
    assert_eq!(
        g.stop_reason,
        StopReason::Eos,
        "only EOS was allowed after \"de\""
    );
    // A grammar whose only token is banned ends with the grammar reason, no panic, no loop.
    let cfg = GenerationConfig {
        grammar: Some(r#"root ::= "q"+"#.into()),
        logit_bias: vec![(u32::from(b'q'), f32::NEG_INFINITY)],
        ..greedy(10)
    };
    let (g, _, _) = run(&mut r, "abc", &cfg);
    assert_eq!(g.stop_reason, StopReason::Grammar);
    assert!(
        g.generated_token_ids.is_empty(),
        "{:?}",
        g.generated_token_ids
    );
    // A bad grammar is an error before generation, with its line and column.
    let bad = GenerationConfig {
        grammar: Some("root ::= \"a\"\nx ::= (".into()),
        ..greedy(10)
    };
    let e = r
        .generate("abc", &bad, &mut |_| {}, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("grammar") && e.contains('2'), "{e}");
}
