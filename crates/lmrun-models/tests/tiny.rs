//! Tiny random-weight models of every architecture (written by `scripts/models_make_tiny.py`)
//! against the NumPy float64 forward pass of the same script: batched prefill with all logits,
//! token-by-token decode, split prefill, both KV cache types, 1 and 2 threads. Also the error
//! paths: bad tokens, positions past the context, gaps, missing/mis-shaped tensors, unknown
//! architectures.

use std::path::PathBuf;

use lmrun_gguf::{GgufFile, LoadMode};
use lmrun_models::{KvDtype, Model, ModelError, ModelOptions};

struct Reference {
    n_vocab: usize,
    tokens: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn reference(arch: &str) -> Reference {
    let text = std::fs::read_to_string(data(&format!("tiny-{arch}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    Reference {
        n_vocab: v["n_vocab"].as_u64().unwrap() as usize,
        tokens: v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect(),
        logits: v["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect(),
    }
}

fn open(arch: &str, mode: LoadMode) -> GgufFile {
    GgufFile::open(&data(&format!("tiny-{arch}.gguf")), mode).unwrap()
}

/// Max |a - b| over a row, relative to the row's largest reference magnitude.
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
    got.iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

const TOL: f32 = 0.04;

fn check_rows(what: &str, got: &[f32], want: &[Vec<f32>], n_vocab: usize) {
    assert_eq!(got.len(), want.len() * n_vocab, "{what}: length");
    for (t, row) in want.iter().enumerate() {
        let e = rel_err(&got[t * n_vocab..(t + 1) * n_vocab], row);
        if std::env::var("TINY_VERBOSE").is_ok() {
            eprintln!("{what} {t} {e}");
        }
        assert!(e < TOL, "{what}: position {t}: relative error {e}");
    }
}

fn run_all_ways(arch: &str) {
    let r = reference(arch);
    let n = r.tokens.len();
    for mode in [LoadMode::Mmap, LoadMode::File] {
        let gguf = open(arch, mode);
        for kv_dtype in [KvDtype::F16, KvDtype::F32] {
            for n_threads in [1, 2] {
                let opts = ModelOptions {
                    context_len: 64,
                    kv_dtype,
                    n_threads,
                    swa_full: false,
                };
                let tag = format!("{arch} {mode:?} {kv_dtype:?} {n_threads}t");
                let mut m = Model::from_gguf(&gguf, &opts).unwrap();
                assert_eq!(m.config().n_vocab, r.n_vocab);
                assert_eq!(m.config().arch, arch);
                // one batched prefill, all logits
                let all = m.step(&r.tokens, 0, true).unwrap().to_vec();
                check_rows(&format!("{tag} batched"), &all, &r.logits, r.n_vocab);
                // last logits only
                let last = m.step(&r.tokens, 0, false).unwrap().to_vec();
                check_rows(&format!("{tag} last"), &last, &r.logits[n - 1..], r.n_vocab);
                // token by token
                for (t, &tok) in r.tokens.iter().enumerate() {
                    let l = m.step(&[tok], t, false).unwrap();
                    check_rows(&format!("{tag} decode"), l, &r.logits[t..t + 1], r.n_vocab);
                }
                // split prefill 5 + rest, then rewind and recompute the tail
                m.step(&r.tokens[..5], 0, false).unwrap();
                let tail = m.step(&r.tokens[5..], 5, true).unwrap().to_vec();
                check_rows(&format!("{tag} split"), &tail, &r.logits[5..], r.n_vocab);
                let tail = m.step(&r.tokens[7..], 7, true).unwrap().to_vec();
                check_rows(&format!("{tag} rewind"), &tail, &r.logits[7..], r.n_vocab);
            }
        }
    }
}

#[test]
fn tiny_llama_matches_numpy() {
    run_all_ways("llama");
}

#[test]
fn tiny_qwen2_matches_numpy() {
    run_all_ways("qwen2");
}

#[test]
fn tiny_gemma3_matches_numpy() {
    run_all_ways("gemma3");
}

#[test]
fn config_reads_hyperparameters() {
    let g = open("gemma3", LoadMode::File);
    let m = Model::from_gguf(&g, &ModelOptions::default()).unwrap();
    let c = m.config();
    assert_eq!(
        (c.n_embd, c.n_head, c.n_head_kv, c.head_dim),
        (64, 2, 1, 32)
    );
    assert_eq!(c.sliding_window, Some(4));
    assert_eq!(c.swa_layers, vec![true, true, true, true, true, false]);
    assert_eq!(c.rope.freq_base_swa, 10000.0);
    assert_eq!(c.final_logit_softcap, Some(8.0));
    assert!(c.tied_output);
    // f16 KV, (32 + 32) values × 2 bytes per position: the global layer keeps 2048 positions,
    // the five sliding ones a ring of window + UBATCH - 1 = 515
    assert_eq!(m.kv_cache_bytes(), (2048 + 5 * 515) * 64 * 2);
    assert_eq!(m.kv_cache_bytes_by_kind(), (2048 * 128, 5 * 515 * 128));

    let g = open("llama", LoadMode::File);
    let m = Model::from_gguf(
        &g,
        &ModelOptions {
            context_len: 100,
            kv_dtype: KvDtype::F32,
            n_threads: 1,
            swa_full: false,
        },
    )
    .unwrap();
    assert!(m.config().rope.has_freq_factors);
    assert_eq!(m.config().rope.freq_scale, 0.5);
    assert!(!m.config().tied_output);
    assert_eq!(m.kv_cache_bytes(), 2 * 100 * (32 + 32) * 4);
    assert_eq!(m.context_len(), 100);
}

#[test]
fn bad_inputs_are_errors() {
    let g = open("qwen2", LoadMode::File);
    let opts = ModelOptions {
        context_len: 16,
        kv_dtype: KvDtype::F16,
        n_threads: 1,
        swa_full: false,
    };
    let mut m = Model::from_gguf(&g, &opts).unwrap();
    assert!(matches!(m.step(&[], 0, false), Err(ModelError::EmptyInput)));
    let e = m.step(&[1, 100], 0, false).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::TokenOutOfRange {
                token: 100,
                index: 1,
                n_vocab: 100
            }
        ),
        "{e}"
    );
    let e = m.step(&[1; 17], 0, false).unwrap_err();
    assert!(matches!(e, ModelError::ContextOverflow { .. }), "{e}");
    let e = m.step(&[1], usize::MAX, false).unwrap_err();
    assert!(matches!(e, ModelError::ContextOverflow { .. }), "{e}");
    let e = m.step(&[1], 3, false).unwrap_err();
    assert!(matches!(e, ModelError::PositionGap { .. }), "{e}");
    m.step(&[1; 16], 0, false).unwrap();
    assert_eq!(m.n_past(), 16);
    let e = Model::from_gguf(
        &g,
        &ModelOptions {
            context_len: 0,
            ..opts
        },
    )
    .unwrap_err();
    assert!(matches!(e, ModelError::BadOptions(_)));
}

#[test]
fn a_set_cancel_flag_stops_a_step_and_keeps_the_finished_positions() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let g = open("llama", LoadMode::Mmap);
    let opts = ModelOptions {
        context_len: 64,
        kv_dtype: KvDtype::F16,
        n_threads: 1,
        swa_full: false,
    };
    let mut m = Model::from_gguf(&g, &opts).unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    m.set_cancel_flag(Some(flag.clone()));
    let want = m.step(&[1, 2, 3], 0, false).unwrap().to_vec();
    assert_eq!(m.n_past(), 3);
    flag.store(true, Ordering::SeqCst);
    let e = m.step(&[4, 5], 3, false).unwrap_err();
    assert!(matches!(e, ModelError::Cancelled), "{e}");
    assert_eq!(m.n_past(), 3, "the cancelled positions are not kept");
    // Cleared, the model goes on from the finished positions as if nothing happened.
    flag.store(false, Ordering::SeqCst);
    m.reset();
    assert_eq!(m.step(&[1, 2, 3], 0, false).unwrap(), &want[..]);
}

fn load_err(file: &str) -> ModelError {
    let g = GgufFile::open(&data(file), LoadMode::File).unwrap();
    Model::from_gguf(&g, &ModelOptions::default()).unwrap_err()
}

#[test]
fn broken_files_name_the_culprit() {
    let e = load_err("broken-arch.gguf");
    assert!(
        matches!(&e, ModelError::UnknownArchitecture { arch, .. } if arch == "mamba"),
        "{e}"
    );
    assert!(e.to_string().contains("mamba") && e.to_string().contains("qwen2"));

    let e = load_err("broken-missing.gguf");
    assert!(
        matches!(&e, ModelError::MissingTensor { name, .. } if name == "blk.1.ffn_up.weight"),
        "{e}"
    );

    let e = load_err("broken-shape.gguf");
    assert!(
        matches!(&e, ModelError::BadShape { name, expected, found }
            if name == "blk.0.attn_k.weight" && expected == &[64, 16] && found == &[64, 15]),
        "{e}"
    );

    let e = load_err("broken-type.gguf");
    assert!(
        matches!(&e, ModelError::UnsupportedType { name, ggml_type, .. }
            if name == "blk.0.ffn_gate.weight" && ggml_type == "MXFP4"),
        "{e}"
    );
    eprintln!("{e}");
}

#[test]
fn thread_count_does_not_change_results_and_model_is_send() {
    fn is_send<T: Send>() {}
    is_send::<Model>();
    let r = reference("gemma3");
    let g = open("gemma3", LoadMode::Mmap);
    let run = |n_threads| {
        let mut m = Model::from_gguf(
            &g,
            &ModelOptions {
                context_len: 64,
                kv_dtype: KvDtype::F16,
                n_threads,
                swa_full: false,
            },
        )
        .unwrap();
        m.step(&r.tokens, 0, true).unwrap().to_vec()
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn long_batched_prefill_equals_decode_past_ubatch() {
    // More tokens than one internal batch (UBATCH = 512) and than Gemma's window (4 here):
    // one step with all logits must match token-by-token decoding. Not bit for bit: the
    // batched kernels sum in another order, and a 1e-7 change can flip the rounding of an
    // 8-bit activation (or an f16 cache value), which this random model amplifies to ~1% of
    // its logits; a position or cache-offset bug past the first batch would be of order 1.
    // The decode replays from position 0, further back than sliding-window rings remember:
    // this model keeps every position (tests/sliding.rs checks rings against that).
    let n = lmrun_models::UBATCH + 88;
    let g = open("gemma3", LoadMode::Mmap);
    let opts = ModelOptions {
        context_len: n,
        kv_dtype: KvDtype::F32,
        n_threads: 2,
        swa_full: true,
    };
    let mut m = Model::from_gguf(&g, &opts).unwrap();
    let nv = m.config().n_vocab;
    let tokens: Vec<u32> = (0..n as u32).map(|i| (i * 37 + 11) % nv as u32).collect();
    let all = m.step(&tokens, 0, true).unwrap().to_vec();
    assert_eq!(all.len(), n * nv);
    for (t, &tok) in tokens.iter().enumerate() {
        let l = m.step(&[tok], t, false).unwrap();
        let e = rel_err(l, &all[t * nv..(t + 1) * nv]);
        assert!(
            e < TOL,
            "position {t}: batched vs decode relative difference {e}"
        );
    }
    assert!(matches!(
        m.step(&[1], n, false),
        Err(ModelError::ContextOverflow { .. })
    ));
}

#[test]
fn impossible_kv_cache_is_an_error() {
    let g = open("qwen2", LoadMode::File);
    let e = Model::from_gguf(
        &g,
        &ModelOptions {
            context_len: 1 << 24,
            kv_dtype: KvDtype::F32,
            n_threads: 1,
            swa_full: false,
        },
    );
    // 2 layers × 2^24 positions × 32 values × 4 bytes = 4 GiB: either it fits (and is lazily
    // zeroed) or it is a clean error; what must not happen is an abort.
    if let Err(e) = e {
        assert!(matches!(e, ModelError::BadOptions(_)), "{e}");
    }
    let e = Model::from_gguf(
        &g,
        &ModelOptions {
            context_len: (1 << 24) + 1,
            kv_dtype: KvDtype::F32,
            n_threads: 1,
            swa_full: false,
        },
    )
    .unwrap_err();
    assert!(matches!(e, ModelError::BadOptions(_)), "{e}");
}
