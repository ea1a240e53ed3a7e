//! The two real models (Gemma 3 270M and Qwen2.5-Coder 0.5B, Q4_K_M), compared with what
//! llama.cpp's Python reader saw (`tests/data/real_models.json`, written by
//! `scripts/gguf_real_model_expectations.py`). These tests FAIL when a model is missing:
//! run `scripts/fetch_models.sh` first (models live in `$LMRUN_MODELS_DIR`, default
//! `~/.cache/lmrun/models`).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use lmrun_gguf::{GgufFile, LoadMode, MetaValue};
use serde_json::Value;

const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

fn model_path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("LMRUN_MODELS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
            .join(".cache/lmrun/models"),
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "model {} is missing: run scripts/fetch_models.sh (or set LMRUN_MODELS_DIR)",
        path.display()
    );
    path
}

fn expectations(name: &str) -> Value {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/real_models.json"),
    )
    .unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all[name].clone()
}

fn type_name(v: &MetaValue) -> &'static str {
    match v {
        MetaValue::U8(_) => "UINT8",
        MetaValue::I8(_) => "INT8",
        MetaValue::U16(_) => "UINT16",
        MetaValue::I16(_) => "INT16",
        MetaValue::U32(_) => "UINT32",
        MetaValue::I32(_) => "INT32",
        MetaValue::U64(_) => "UINT64",
        MetaValue::I64(_) => "INT64",
        MetaValue::F32(_) => "FLOAT32",
        MetaValue::F64(_) => "FLOAT64",
        MetaValue::Bool(_) => "BOOL",
        MetaValue::String(_) => "STRING",
        MetaValue::Array(_) => "ARRAY",
    }
}

fn check_model(name: &str, mode: LoadMode) -> GgufFile {
    let path = model_path(name);
    let exp = expectations(name);
    let f = GgufFile::open(&path, mode).unwrap_or_else(|e| panic!("{name} ({mode}): {e}"));

    assert_eq!(f.file_size(), exp["file_size"].as_u64().unwrap());
    assert_eq!(f.file_size(), std::fs::metadata(&path).unwrap().len());
    assert_eq!(u64::from(f.version()), exp["version"].as_u64().unwrap());
    assert_eq!(f.alignment(), exp["alignment"].as_u64().unwrap());
    assert_eq!(f.data_offset(), exp["data_offset"].as_u64().unwrap());
    assert_eq!(
        f.architecture().unwrap(),
        exp["architecture"].as_str().unwrap()
    );
    assert_eq!(
        f.metadata().len() as u64,
        exp["metadata_count"].as_u64().unwrap()
    );
    assert_eq!(
        f.parameter_count(),
        exp["parameter_count"].as_u64().unwrap()
    );

    for (key, want) in exp["scalars"].as_object().unwrap() {
        let v = f.metadata().value(key).unwrap_or_else(|| panic!("{key}"));
        assert_eq!(type_name(v), want["type"].as_str().unwrap(), "{key}");
        let w = &want["value"];
        match v {
            MetaValue::String(s) => assert_eq!(s, w.as_str().unwrap(), "{key}"),
            MetaValue::Bool(b) => assert_eq!(*b, w.as_bool().unwrap(), "{key}"),
            MetaValue::F32(x) => assert_eq!(f64::from(*x), w.as_f64().unwrap(), "{key}"),
            MetaValue::F64(x) => assert_eq!(*x, w.as_f64().unwrap(), "{key}"),
            v => assert_eq!(
                v.as_integer().unwrap(),
                i128::from(w.as_i64().unwrap()),
                "{key}"
            ),
        }
    }
    for (key, want) in exp["arrays"].as_object().unwrap() {
        let len = want["len"].as_u64().unwrap() as usize;
        match f.metadata().value(key).unwrap() {
            MetaValue::Array(a) => {
                assert_eq!(a.len(), len, "{key}");
                assert_eq!(
                    a.element_type().name(),
                    match want["element_type"].as_str().unwrap() {
                        "STRING" => "string",
                        "FLOAT32" => "f32",
                        "INT32" => "i32",
                        other => panic!("unexpected element type {other}"),
                    },
                    "{key}"
                );
            }
            MetaValue::String(s) => assert_eq!(s.len(), len, "{key}"),
            other => panic!("{key}: {other:?}"),
        }
    }

    // Every tensor: name, type, shape, byte range, all inside the file; the view's bytes are
    // the file's bytes at that offset.
    let tensors = exp["tensors"].as_array().unwrap();
    assert_eq!(
        f.tensors().len() as u64,
        exp["tensor_count"].as_u64().unwrap()
    );
    assert_eq!(f.tensors().len(), tensors.len());
    let mut file = std::fs::File::open(&path).unwrap();
    let base = f.data().as_ptr() as usize;
    for (t, w) in f.tensors().iter().zip(tensors) {
        let w = w.as_array().unwrap();
        assert_eq!(t.name, w[0].as_str().unwrap());
        assert_eq!(t.ggml_type.name(), w[1].as_str().unwrap(), "{}", t.name);
        let shape: Vec<u64> = w[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(t.shape, shape, "{}", t.name);
        assert_eq!(t.file_offset, w[3].as_u64().unwrap(), "{}", t.name);
        assert_eq!(t.n_bytes, w[4].as_u64().unwrap(), "{}", t.name);
        assert!(t.file_offset >= f.data_offset());
        assert!(t.file_offset + t.n_bytes <= f.file_size(), "{}", t.name);

        let view = f.tensor(&t.name).unwrap();
        assert_eq!(view.bytes.len() as u64, t.n_bytes);
        assert_eq!(view.bytes.as_ptr() as usize - base, t.offset as usize);
        let n = view.bytes.len().min(64);
        let mut head = vec![0u8; n];
        file.seek(SeekFrom::Start(t.file_offset)).unwrap();
        file.read_exact(&mut head).unwrap();
        assert_eq!(&view.bytes[..n], &head[..], "{}", t.name);
        let tail_at = t.file_offset + t.n_bytes - n as u64;
        file.seek(SeekFrom::Start(tail_at)).unwrap();
        file.read_exact(&mut head).unwrap();
        assert_eq!(&view.bytes[view.bytes.len() - n..], &head[..], "{}", t.name);
    }

    // A read of the magic and version, then one load of the whole file; the header is parsed
    // in place, so the vocabulary is a view of the loaded file, not a heap copy.
    let report = f.load_report();
    assert_eq!(report.mode, Some(mode));
    assert_eq!(report.loads, 2, "{report:?}");
    assert_eq!(f.data().len() as u64, f.file_size() - f.data_offset());
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert!(tokens.is_in_place(), "the vocabulary was copied");
    assert!(
        tokens.heap_bytes() * 16 <= tokens.len() * 4 + 64,
        "{}",
        tokens.heap_bytes()
    );
    if mode.is_mmap() {
        // The whole file is mapped (page-rounded); only the probe was read.
        assert!(report.bytes_mapped >= f.file_size(), "{report:?}");
        assert!(report.bytes_mapped < f.file_size() + 8192, "{report:?}");
        assert!(report.bytes_locked <= report.bytes_mapped, "{report:?}");
        assert!(report.bytes_read <= 8, "{report:?}");
    } else {
        assert_eq!(report.bytes_mapped, 0);
        assert!(report.bytes_read >= f.file_size());
    }
    f
}

#[test]
fn gemma3_270m() {
    let f = check_model(GEMMA, LoadMode::Mmap);
    assert_eq!(f.tensors().len(), 236);
    assert_eq!(f.architecture().unwrap(), "gemma3");
    assert_eq!(f.get_u32(&f.arch_key("block_count").unwrap()).unwrap(), 18);
    assert_eq!(f.get_u32("gemma3.embedding_length").unwrap(), 640);
    assert_eq!(f.get_u32("gemma3.attention.head_count_kv").unwrap(), 1);
    assert_eq!(f.get_f32("gemma3.rope.freq_base").unwrap(), 1_000_000.0);
    let s = f.summary();
    assert_eq!(s.tokenizer.vocab_size, Some(262_144));
    assert_eq!(s.tokenizer.model.as_deref(), Some("llama"));
    assert_eq!(s.tokenizer.special_token_ids["bos"], 2);
    assert_eq!(s.tokenizer.special_token_ids["eos"], 1);
    assert!(!s.tokenizer.has_chat_template);
    assert_eq!(s.tensor_count, 236);
    let text = lmrun_gguf::render_text(&s);
    assert!(text.contains("gemma3") && text.contains("blk.17.ffn_down.weight"));
    // The 6.5 MB header is parsed where the file was loaded: no retries.
    assert_eq!(s.load.loads, 2);
}

#[test]
fn qwen25_coder_05b() {
    let f = check_model(QWEN, LoadMode::MmapUseMlockIgnoreErrors);
    assert_eq!(f.tensors().len(), 291);
    assert_eq!(f.architecture().unwrap(), "qwen2");
    assert_eq!(f.get_u32(&f.arch_key("block_count").unwrap()).unwrap(), 24);
    assert_eq!(f.get_u32("qwen2.attention.head_count").unwrap(), 14);
    assert_eq!(f.get_u32("qwen2.attention.head_count_kv").unwrap(), 2);
    assert_eq!(f.get_u32("qwen2.feed_forward_length").unwrap(), 4864);
    let s = f.summary();
    assert_eq!(s.tokenizer.vocab_size, Some(151_936));
    assert_eq!(s.tokenizer.merges, Some(151_387));
    assert_eq!(s.tokenizer.pre.as_deref(), Some("qwen2"));
    assert_eq!(s.tokenizer.special_token_ids["eos"], 151_645);
    assert!(s.tokenizer.has_chat_template);
    assert_eq!(
        &f.get_str_array("tokenizer.ggml.tokens").unwrap()[151_643],
        "<|endoftext|>"
    );
}

#[test]
fn gemma3_in_file_mode_matches_mmap() {
    let a = check_model(GEMMA, LoadMode::File);
    let b = GgufFile::open(&model_path(GEMMA), LoadMode::Mmap).unwrap();
    assert_eq!(a.header(), b.header());
    assert_eq!(&a.data()[..], &b.data()[..]);
    let r = a.load_report();
    assert_eq!(r.bytes_mapped, 0);
    assert!(r.bytes_read >= a.file_size() - a.data_offset());
}
