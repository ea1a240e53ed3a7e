//! Sliding-window layers keep a ring of `window + UBATCH - 1` positions instead of the whole
//! context. A ring model must compute what a model that keeps every position computes
//! (`swa_full`, llama.cpp's `--swa-full`) through long prefills and decodes that wrap the ring
//! several times, hold less KV memory, and refuse (with a clear error) restarts further back
//! than its rings remember, while allowing the shallow ones a runner uses.

use std::path::PathBuf;

use lmrun_gguf::{GgufFile, LoadMode};
use lmrun_models::{Model, ModelError, ModelOptions, UBATCH};

fn open(name: &str) -> GgufFile {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    GgufFile::open(&p, LoadMode::Mmap).unwrap()
}

fn model(g: &GgufFile, ctx: usize, swa_full: bool) -> Model {
    Model::from_gguf(
        g,
        &ModelOptions {
            context_len: ctx,
            n_threads: 2,
            swa_full,
            ..ModelOptions::default()
        },
    )
    .unwrap()
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % vocab as u64) as u32
        })
        .collect()
}

fn close(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn ring_equals_full(file: &str) {
    let g = open(file);
    let ctx = 2 * UBATCH + 300;
    let mut ring = model(&g, ctx, false);
    let mut full = model(&g, ctx, true);
    let (rb, fb) = (ring.kv_cache_bytes(), full.kv_cache_bytes());
    let (_, ring_swa) = ring.kv_cache_bytes_by_kind();
    assert!(ring_swa > 0, "{file}: no ring layers");
    assert!(
        rb < fb,
        "{file}: ring cache {rb} B is not smaller than the full {fb} B"
    );
    let vocab = ring.config().n_vocab;
    let seq = tokens(ctx, vocab, 7);
    // Chunks of several sizes (one a whole UBATCH), then single-token decode: the rings wrap
    // around more than once.
    let mut pos = 0;
    for len in [UBATCH, 37, UBATCH - 5, 1, 1, 1, 100] {
        let a = ring
            .step(&seq[pos..pos + len], pos, false)
            .unwrap()
            .to_vec();
        let b = full
            .step(&seq[pos..pos + len], pos, false)
            .unwrap()
            .to_vec();
        let d = close(&a, &b);
        assert!(
            d < 1e-4,
            "{file}: at {pos}+{len} ring and full differ by {d}"
        );
        pos += len;
    }
    while pos < ctx {
        let a = ring.step(&seq[pos..pos + 1], pos, false).unwrap().to_vec();
        let b = full.step(&seq[pos..pos + 1], pos, false).unwrap().to_vec();
        let d = close(&a, &b);
        assert!(
            d < 1e-4,
            "{file}: decode at {pos} ring and full differ by {d}"
        );
        pos += 1;
    }

    // A restart a little way back (a runner rewinding after a stop) works and agrees.
    let back = pos - 50;
    let a = ring
        .step(&seq[back..back + 10], back, false)
        .unwrap()
        .to_vec();
    let b = full
        .step(&seq[back..back + 10], back, false)
        .unwrap()
        .to_vec();
    assert!(close(&a, &b) < 1e-4, "{file}: rewind by 50");

    // Further back than the rings remember: a clear error, and nothing is lost.
    let n_past = ring.n_past();
    let max = ring.max_rewind();
    assert_eq!(max, UBATCH, "{file}");
    match ring.step(&seq[..1], n_past - max - 1, false) {
        Err(ModelError::RewindTooFar { max_rewind, .. }) => assert_eq!(max_rewind, max),
        other => panic!("{file}: expected RewindTooFar, got {other:?}"),
    }
    assert_eq!(ring.n_past(), n_past);
    // The full-cache model goes back anywhere.
    full.step(&seq[..1], 0, false).unwrap();

    // A slot cut deeper than that forgets everything instead of keeping a broken window.
    ring.truncate_slot(0, n_past - max - 1);
    assert_eq!(ring.n_past(), 0);
    ring.step(&seq[..4], 0, false).unwrap();
    ring.truncate_slot(0, 2);
    assert_eq!(ring.n_past(), 2);
}

#[test]
fn gemma2_ring_cache_matches_the_full_cache() {
    ring_equals_full("archs/gemma2.gguf");
}

#[test]
fn gemma3_ring_cache_matches_the_full_cache() {
    ring_equals_full("tiny-gemma3.gguf");
}

#[test]
fn a_context_within_the_window_keeps_every_position() {
    let g = open("archs/gemma2.gguf");
    let m = model(&g, 256, false);
    assert_eq!(m.kv_cache_bytes_by_kind().1, 0);
    assert_eq!(m.max_rewind(), usize::MAX);
}
