//! Decoding a token allocates nothing: every buffer, work list and scratch is allocated when the
//! model is built or grown by a longer chunk. A counting global allocator watches the process
//! (the pool's threads included) while tokens are decoded after a warm-up, for every tiny
//! architecture, on one thread and on several.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use lmrun_gguf::GgufFile;
use lmrun_loader::LoadMode;
use lmrun_models::{KvDtype, Model, ModelOptions};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn tiny(arch: &str) -> GgufFile {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("tiny-{arch}.gguf"));
    GgufFile::open(&p, LoadMode::Mmap).unwrap()
}

/// One test (not several in parallel threads), so nothing else runs while counting.
#[test]
fn decoding_a_token_allocates_nothing() {
    for arch in ["llama", "qwen2", "gemma3"] {
        for threads in [1, 2, 3] {
            let g = tiny(arch);
            let opts = ModelOptions {
                context_len: 96,
                kv_dtype: KvDtype::F16,
                n_threads: threads,
                swa_full: false,
            };
            let mut m = Model::from_gguf(&g, &opts).unwrap();
            let prompt: Vec<u32> = (1..20).collect();
            let mut next = *m.step(&prompt, 0, false).unwrap().first().unwrap() as u32 % 50;
            let mut pos = prompt.len();
            // Warm-up: the first decode steps may size the matmuls' activation scratch.
            for _ in 0..2 {
                m.step(&[next], pos, false).unwrap();
                pos += 1;
            }
            ALLOCS.store(0, Ordering::SeqCst);
            COUNTING.store(true, Ordering::SeqCst);
            for _ in 0..40 {
                let logits = m.step(&[next], pos, false).unwrap();
                next = logits[0].to_bits() % 50;
                pos += 1;
            }
            COUNTING.store(false, Ordering::SeqCst);
            let n = ALLOCS.load(Ordering::SeqCst);
            assert_eq!(
                n, 0,
                "{arch}, {threads} threads: {n} allocations in 40 decode steps"
            );
        }
    }
}
