//! Encode throughput of the GGUF tokenizers (Gemma 3 SPM, Qwen2.5 byte-level BPE) on English
//! prose and on source code, one thread. Needs the real models (`scripts/fetch_models.sh`).
//! Run: `cargo bench -p lmrun-tokenizers --bench encode`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lmrun_tokenizers::{EncodeOptions, Tokenizer};

#[path = "../tests/common/mod.rs"]
mod common;

const PARAGRAPHS: &[&str] = &[
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of \
     foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, \
     it was the season of Darkness, it was the spring of hope, it was the winter of despair.",
    "The committee met on Tuesday to review the proposal. After a long discussion about costs, \
     schedules and the risks of delay, the members agreed to fund a small pilot in three districts \
     before deciding whether to expand the programme to the whole region next year.",
    "Rain had fallen for most of the night, and by morning the river was higher than anyone in the \
     village could remember. Children stood on the bridge to watch branches and barrels float past, \
     while their parents carried furniture up to the first floor.",
    "Researchers reported that the new battery design retained 92 percent of its capacity after \
     1,500 charge cycles. The improvement comes from a thin coating that slows the growth of \
     crystals on the electrode, a problem that has limited earlier designs.",
    "She opened the letter slowly, already guessing what it would say. The handwriting was her \
     grandmother's, careful and slightly slanted, and the paper smelled faintly of lavender and old \
     books. \"Come home for the summer,\" it began, \"the garden misses you.\"",
];

fn prose(target: usize) -> String {
    let mut s = String::new();
    let mut i = 0usize;
    while s.len() < target {
        s.push_str(PARAGRAPHS[i % PARAGRAPHS.len()]);
        s.push_str(&format!(" ({i})\n\n"));
        i += 1;
    }
    s
}

fn code() -> String {
    [
        include_str!("../src/gguf.rs"),
        include_str!("../src/pretok.rs"),
        include_str!("../src/spm.rs"),
        include_str!("../src/sentencepiece.rs"),
        include_str!("../src/hf.rs"),
        include_str!("../src/tiktoken.rs"),
    ]
    .concat()
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (Linux). Wall-clock numbers
/// are misleading on a shared machine; this one counts only the time the encoder had a core.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Print throughput by CPU time, next to criterion's wall-clock figures.
fn cpu_time_report(name: &str, tok: &dyn Tokenizer, text: &str) {
    let opts = EncodeOptions {
        num_bos: 1,
        num_eos: 0,
        parse_special: false,
    };
    let _ = tok.encode_with(text, &opts);
    let (Some(t0), w0) = (thread_cpu_ns(), std::time::Instant::now()) else {
        return;
    };
    let mut n = 0u64;
    while w0.elapsed().as_secs_f64() < 3.0 {
        std::hint::black_box(tok.encode_with(text, &opts).unwrap());
        n += 1;
    }
    let Some(t1) = thread_cpu_ns() else { return };
    let cpu = (t1 - t0) as f64 / 1e9;
    let mb = (text.len() as u64 * n) as f64 / 1e6;
    println!(
        "cpu-time {}/{name}: {:.1} MB/s of CPU time ({:.1} MB/s wall, {n} runs of {} bytes)",
        tok.kind(),
        mb / cpu,
        mb / w0.elapsed().as_secs_f64(),
        text.len()
    );
}

fn bench(c: &mut Criterion) {
    let texts = [("prose", prose(100_000)), ("code", code())];
    for model in [common::GEMMA, common::QWEN] {
        let tok = common::gguf_tokenizer(model);
        for (name, text) in &texts {
            cpu_time_report(name, &tok, text);
        }
    }
    for model in [common::GEMMA, common::QWEN] {
        let tok = common::gguf_tokenizer(model);
        let mut g = c.benchmark_group(format!("encode/{}", tok.kind()));
        g.sample_size(10);
        g.measurement_time(std::time::Duration::from_secs(4));
        for (name, text) in &texts {
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_function(*name, |b| {
                b.iter(|| {
                    tok.encode_with(
                        text,
                        &EncodeOptions {
                            num_bos: 1,
                            num_eos: 0,
                            parse_special: false,
                        },
                    )
                    .unwrap()
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
