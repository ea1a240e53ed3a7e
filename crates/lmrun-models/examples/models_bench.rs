//! Speed and memory of one model: load (any mode), prefill of N tokens in one batched step,
//! then M decode steps; prints tokens/s and the resident set after load and after the context.
//! With `--greedy`, prints the greedy continuation as vocabulary pieces (a quick sanity check).
//!
//! ```text
//! cargo run --release -p lmrun-models --example models_bench -- MODEL.gguf \
//!     [--mode mmap|file|mmap-mlock|mmap-mlock-ignore-errors] [--threads N] [--prompt 512] \
//!     [--decode 64] [--kv f16|f32] [--greedy]
//! ```

use std::time::Instant;

use lmrun_gguf::{GgufFile, LoadMode};
use lmrun_loader::ProcessMemory;
use lmrun_models::{KvDtype, Model, ModelOptions};

fn mib(b: Option<u64>) -> String {
    b.map(|b| format!("{:.1}", b as f64 / (1 << 20) as f64))
        .unwrap_or_else(|| "?".into())
}

fn mem(tag: &str) {
    let m = ProcessMemory::read();
    println!(
        "{tag}: rss {} MiB (anon {}, file {}), peak {} MiB",
        mib(m.rss_bytes),
        mib(m.rss_anon_bytes),
        mib(m.rss_file_bytes),
        mib(m.peak_rss_bytes)
    );
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best as u32
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: models_bench MODEL.gguf [options]")?;
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mode: LoadMode = opt("--mode").unwrap_or("mmap".into()).parse()?;
    let threads: usize = opt("--threads").unwrap_or("0".into()).parse()?;
    let n_prompt: usize = opt("--prompt").unwrap_or("512".into()).parse()?;
    let n_decode: usize = opt("--decode").unwrap_or("64".into()).parse()?;
    let kv_dtype = match opt("--kv").as_deref() {
        Some("f32") => KvDtype::F32,
        _ => KvDtype::F16,
    };
    let greedy = args.iter().any(|a| a == "--greedy");

    mem("start");
    let t0 = Instant::now();
    let gguf = GgufFile::open(path.as_ref(), mode)?;
    let opts = ModelOptions {
        context_len: n_prompt + n_decode + 1,
        kv_dtype,
        n_threads: threads,
        swa_full: false,
    };
    let mut model = Model::from_gguf(&gguf, &opts)?;
    println!(
        "loaded {} ({:?}) in {:.0} ms: {} threads, kv {:?} {:.1} MiB, weights read per token {:.1} MiB",
        model.config().arch,
        mode,
        t0.elapsed().as_secs_f64() * 1e3,
        model.n_threads(),
        model.kv_dtype(),
        model.kv_cache_bytes() as f64 / (1 << 20) as f64,
        model.weight_bytes() as f64 / (1 << 20) as f64
    );
    mem("after load");
    let vocab: Vec<String> = gguf
        .get_str_array("tokenizer.ggml.tokens")
        .map(|v| v.iter().map(str::to_string).collect())
        .unwrap_or_default();
    let n_vocab = model.config().n_vocab as u32;
    // A deterministic prompt: BOS (if any) then ids spread over the vocabulary.
    let bos = gguf.get_u32("tokenizer.ggml.bos_token_id").unwrap_or(1);
    let mut prompt: Vec<u32> = (0..n_prompt)
        .map(|i| {
            if i == 0 {
                bos
            } else {
                (i as u32 * 7919 + 1000) % n_vocab.min(30000)
            }
        })
        .collect();
    if let Some(words) = opt("--words") {
        // Sanity prompt: BOS, then each word as one vocabulary piece (space-prefixed after the
        // first, in either the BPE `Ġ` or the SentencePiece `▁` spelling).
        let find = |s: &str| vocab.iter().position(|v| v == s).map(|i| i as u32);
        prompt = vec![bos];
        for (i, w) in words.split(' ').enumerate() {
            let id = if i == 0 {
                find(w)
            } else {
                find(&format!("Ġ{w}")).or_else(|| find(&format!("▁{w}")))
            };
            prompt.push(id.ok_or(format!("word '{w}' is not one token"))?);
        }
    }
    if let Some(ids) = opt("--tokens") {
        prompt = ids
            .split(',')
            .map(|t| t.trim().parse::<u32>())
            .collect::<Result<_, _>>()?;
    }
    let n_prompt = prompt.len();

    if let Some(dump) = opt("--dump-logits") {
        // All logits of the prompt (teacher-forced), raw little-endian f32, for comparisons.
        let all = model.step(&prompt, 0, true)?;
        let bytes: Vec<u8> = all.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&dump, bytes)?;
        println!("wrote {} x {} logits to {dump}", prompt.len(), n_vocab);
        return Ok(());
    }
    let t = Instant::now();
    let logits = model.step(&prompt, 0, false)?;
    let mut tok = argmax(logits);
    if greedy {
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let top: Vec<String> = idx[..5]
            .iter()
            .map(|&i| format!("({i}, {:.3})", logits[i]))
            .collect();
        println!("top-5 after the prompt: {}", top.join(", "));
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "prefill {n_prompt} tokens: {:.2} s, {:.1} tok/s",
        dt,
        n_prompt as f64 / dt
    );
    let t = Instant::now();
    let mut out = vec![tok];
    for i in 0..n_decode {
        let l = model.step(&[tok], n_prompt + i, false)?;
        tok = argmax(l);
        out.push(tok);
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "decode {n_decode} tokens: {:.2} s, {:.1} tok/s",
        dt,
        n_decode as f64 / dt
    );
    mem(&format!("after {} tokens of context", n_prompt + n_decode));
    if greedy {
        let text: String = out
            .iter()
            .map(|&t| vocab.get(t as usize).map(String::as_str).unwrap_or("?"))
            .collect::<Vec<_>>()
            .join("|");
        println!("greedy: {text}");
    }
    Ok(())
}
