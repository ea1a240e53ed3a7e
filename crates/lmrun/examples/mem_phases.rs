//! Where a GGUF run's anonymous memory goes, phase by phase: the load steps of
//! `backend::open_gguf` done one at a time (GGUF header parse, vocabulary read, tokenizer
//! build, model build, dropping the parsed file), then a prompt and a decode loop like
//! `lmrun run`. After each phase it prints the process's `RssAnon` (from `/proc/self/status`)
//! and the live and peak heap bytes seen by a counting global allocator, so the gap between
//! the two is memory that the allocator holds but the program has freed.
//!
//! Usage: `cargo run --release -p lmrun --example mem_phases -- MODEL.gguf [--ctx 640]
//! [--prompt 400] [--tokens 512] [--mode mmap] [--trim]` (`--trim` calls glibc's
//! `malloc_trim(0)` after the load, to show how much freed heap glibc kept).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use lmrun::backend::gguf_vocab;
use lmrun::LoadMode;
use lmrun_gguf::GgufFile;
use lmrun_loader::ProcessMemory;
use lmrun_models::{KvDtype, Model, ModelOptions};
use lmrun_tokenizers::{GgufTokenizer, Tokenizer};

/// The system allocator, counting live and peak bytes and the number of live blocks.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

fn add(n: usize) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            add(l.size());
            BLOCKS.fetch_add(1, Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            add(l.size());
            BLOCKS.fetch_add(1, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System` with this layout.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
        BLOCKS.fetch_sub(1, Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: `p` came from `System` with layout `l`.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Relaxed);
            add(new);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn mib(b: usize) -> String {
    format!("{:6.2}", b as f64 / (1 << 20) as f64)
}

/// Prints one phase line and resets the peak to the current live bytes.
fn phase(name: &str, last_live: &mut usize) {
    let m = ProcessMemory::read();
    let live = LIVE.load(Relaxed);
    let peak = PEAK.swap(live, Relaxed);
    let anon = m.rss_anon_bytes.unwrap_or(0) as usize;
    println!(
        "{name:<28} RssAnon {} | heap live {} ({:+8.1}) peak {} | blocks {:>8} | anon-live {}",
        mib(anon),
        mib(live),
        (live as f64 - *last_live as f64) / (1 << 20) as f64,
        mib(peak),
        BLOCKS.load(Relaxed),
        mib(anon.saturating_sub(live)),
    );
    *last_live = live;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut path: Option<PathBuf> = None;
    let (mut ctx, mut n_prompt, mut n_total) = (640usize, 400usize, 512usize);
    let mut mode = LoadMode::Mmap;
    let mut trim = false;
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--ctx" => ctx = val()?.parse()?,
            "--prompt" => n_prompt = val()?.parse()?,
            "--tokens" => n_total = val()?.parse()?,
            "--mode" => mode = val()?.parse()?,
            "--trim" => trim = true,
            p => path = Some(PathBuf::from(p)),
        }
    }
    let path = path.ok_or("usage: mem_phases MODEL.gguf [--ctx N] [--prompt N] [--tokens N]")?;
    let mut last = 0usize;
    phase("start", &mut last);

    let gguf = GgufFile::open(&path, mode)?;
    phase("gguf header parsed", &mut last);
    let vocab = gguf_vocab(&gguf)?;
    phase("vocab read from metadata", &mut last);
    let tok = GgufTokenizer::from_vocab(vocab)?;
    phase("tokenizer built", &mut last);
    let opts = ModelOptions {
        context_len: ctx,
        kv_dtype: KvDtype::default(),
        n_threads: 2,
        swa_full: false,
    };
    let mut model = Model::from_gguf(&gguf, &opts)?;
    phase("model built", &mut last);
    drop(gguf);
    phase("gguf file dropped", &mut last);
    if trim {
        // SAFETY: malloc_trim only returns free heap pages to the OS.
        unsafe { libc::malloc_trim(0) };
        phase("malloc_trim(0)", &mut last);
    }

    // A prompt of n_prompt tokens (repeated text), then decode to n_total positions.
    let text = "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(64);
    let mut ids = tok.encode(&text, 1, 0)?;
    ids.truncate(n_prompt);
    phase("prompt encoded", &mut last);
    let logits = model.step(&ids, 0, false)?;
    let mut next = argmax(logits);
    phase("prefill", &mut last);
    for pos in ids.len()..n_total {
        let logits = model.step(&[next], pos, false)?;
        next = argmax(logits);
        let _ = tok.token_bytes(next, false)?;
    }
    phase("decoded to n_total", &mut last);
    let m = tok.memory();
    println!(
        "kv cache {} MiB | model scratch {} MiB | tokenizer {} MiB (vocabulary {}, types {}, \
         model {}, specials {})",
        mib(model.kv_cache_bytes()),
        mib(model.scratch_bytes()),
        mib(m.total()),
        mib(m.vocab),
        mib(m.types),
        mib(m.model),
        mib(m.specials),
    );
    Ok(())
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}
