//! The fixtures of `tests/data/`, written by `scripts/gguf_make_fixtures.py` with llama.cpp's
//! `gguf` Python package, parsed here and compared field by field with the JSON the script wrote.

use std::path::{Path, PathBuf};

use lmrun_gguf::{GgmlType, GgufError, GgufFile, LeArray, LoadMode, MetaArray, MetaValue};
use serde_json::{json, Value};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(data(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The script's typed encoding: `{"t": type, "v": value}`, arrays with `"et"`.
fn encode(v: &MetaValue) -> Value {
    use MetaValue as V;
    let (t, v) = match v {
        V::U8(x) => ("u8", json!(x)),
        V::I8(x) => ("i8", json!(x)),
        V::U16(x) => ("u16", json!(x)),
        V::I16(x) => ("i16", json!(x)),
        V::U32(x) => ("u32", json!(x)),
        V::I32(x) => ("i32", json!(x)),
        V::U64(x) => ("u64", json!(x)),
        V::I64(x) => ("i64", json!(x)),
        V::F32(x) => ("f32", json!(f64::from(*x))),
        V::F64(x) => ("f64", json!(x)),
        V::Bool(x) => ("bool", json!(x)),
        V::String(x) => ("string", json!(x)),
        V::Array(a) => return encode_array(a),
    };
    json!({"t": t, "v": v})
}

fn encode_array(a: &MetaArray) -> Value {
    let items: Vec<Value> = (0..a.len()).map(|i| encode(&a.get(i).unwrap())).collect();
    json!({"t": "array", "et": a.element_type().name(), "v": items})
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check(file: &GgufFile, exp: &Value) {
    assert_eq!(file.version(), exp["version"].as_u64().unwrap() as u32);
    assert_eq!(file.alignment(), exp["alignment"].as_u64().unwrap());
    assert_eq!(file.data_offset(), exp["data_offset"].as_u64().unwrap());
    assert_eq!(file.file_size(), exp["file_size"].as_u64().unwrap());

    let want_md = exp["metadata"].as_array().unwrap();
    let got_md: Vec<(&str, &MetaValue)> = file.metadata().iter().collect();
    assert_eq!(got_md.len(), want_md.len());
    for ((key, value), want) in got_md.iter().zip(want_md) {
        assert_eq!(*key, want["key"].as_str().unwrap());
        assert_eq!(encode(value), want["value"], "metadata '{key}'");
    }

    let want_t = exp["tensors"].as_array().unwrap();
    assert_eq!(file.tensors().len(), want_t.len());
    for (t, want) in file.tensors().iter().zip(want_t) {
        let name = want["name"].as_str().unwrap();
        assert_eq!(t.name, name);
        assert_eq!(
            t.ggml_type.name(),
            want["ggml_type"].as_str().unwrap(),
            "{name}"
        );
        let shape: Vec<u64> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(t.shape, shape, "{name}");
        assert_eq!(t.offset, want["offset"].as_u64().unwrap(), "{name}");
        assert_eq!(
            t.file_offset,
            want["file_offset"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(t.n_bytes, want["n_bytes"].as_u64().unwrap(), "{name}");
        assert_eq!(
            t.n_elements(),
            want["n_elements"].as_u64().unwrap(),
            "{name}"
        );
        let view = file.tensor(name).unwrap();
        assert_eq!(view.bytes.len() as u64, t.n_bytes);
        assert_eq!(
            hex(view.bytes),
            want["data_hex"].as_str().unwrap(),
            "{name}"
        );
        let owned = file.tensor_owned(name).unwrap();
        assert_eq!(&owned.bytes[..], view.bytes);
        // Zero copy: the view points into the data section buffer.
        let base = file.data().as_ptr() as usize;
        assert_eq!(view.bytes.as_ptr() as usize - base, t.offset as usize);
    }
}

const MODES: [LoadMode; 4] = [
    LoadMode::File,
    LoadMode::Mmap,
    LoadMode::MmapUseMlock,
    LoadMode::MmapUseMlockIgnoreErrors,
];

#[test]
fn fixtures_match_the_python_writer_in_every_mode() {
    for name in ["all_types", "aligned64", "v2", "no_tensors"] {
        let exp = expected(&format!("{name}.json"));
        let path = data(&format!("{name}.gguf"));
        let from_bytes = GgufFile::from_bytes(std::fs::read(&path).unwrap()).unwrap();
        check(&from_bytes, &exp);
        for mode in MODES {
            let file = match GgufFile::open(&path, mode) {
                Ok(f) => f,
                // mlock may be refused on a machine with a tiny RLIMIT_MEMLOCK and no privilege.
                Err(e) if mode == LoadMode::MmapUseMlock => {
                    eprintln!("skipping {mode} for {name}: {e}");
                    continue;
                }
                Err(e) => panic!("{name} {mode}: {e}"),
            };
            check(&file, &exp);
            let report = file.load_report();
            assert_eq!(report.mode, Some(mode));
            // A read of the magic and version, then one load of the whole file.
            assert_eq!(report.loads, 2, "{name} {mode}");
            assert_eq!(file.path(), Some(path.as_path()));
        }
    }
}

#[test]
fn typed_access() {
    let f = GgufFile::open(&data("all_types.gguf"), LoadMode::Mmap).unwrap();
    assert_eq!(f.architecture().unwrap(), "testarch");
    assert_eq!(f.arch_key("block_count").unwrap(), "testarch.block_count");
    assert_eq!(f.get_u32(&f.arch_key("block_count").unwrap()).unwrap(), 3);
    assert_eq!(f.get_u64("testarch.context_length").unwrap(), 4096);
    assert_eq!(f.get_u32("testarch.context_length").unwrap(), 4096); // u64 that fits
    assert_eq!(f.get::<u8>("test.u8").unwrap(), 200);
    assert_eq!(f.get::<i8>("test.i8").unwrap(), -100);
    assert_eq!(f.get::<u16>("test.u16").unwrap(), 60000);
    assert_eq!(f.get::<i16>("test.i16").unwrap(), -30000);
    assert_eq!(f.get_i32("test.i32").unwrap(), -2_000_000_000);
    assert_eq!(f.get_u64("test.u64").unwrap(), (1u64 << 63) + 5);
    assert_eq!(f.get_i64("test.i64").unwrap(), -(1i64 << 62) - 3);
    assert_eq!(f.get_f32("test.f32").unwrap(), -1.25);
    assert_eq!(f.get_f64("test.f64").unwrap(), -1.5e300);
    assert!(f.get_bool("test.bool_true").unwrap());
    assert!(!f.get_bool("test.bool_false").unwrap());
    assert_eq!(
        f.get_str("test.string").unwrap(),
        "h\u{e9}llo \u{2713} \u{1F600}"
    );
    assert_eq!(f.get_str("test.empty_string").unwrap(), "");
    assert_eq!(
        f.get_str_array("test.arr_str")
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        ["a", "", "\u{fc}\u{f1}\u{ee}", "with space"]
    );
    // Strings and numbers are read in place from the loaded file, not copied.
    let f32s = f.get_f32_array("test.arr_f32").unwrap();
    assert_eq!(f32s.to_vec(), [0.5, -2.0, 3.25]);
    assert!(f32s.is_in_place() && f32s.heap_bytes() == 0);
    assert!(f.get_str_array("test.arr_str").unwrap().is_in_place());
    let u64s = f.get::<&LeArray<u64>>("test.arr_u64").unwrap();
    assert_eq!(u64s.iter().collect::<Vec<_>>(), [0, u64::MAX]);
    assert_eq!(u64s, &LeArray::from(vec![0, u64::MAX]));
    assert_eq!(
        f.get::<&[bool]>("test.arr_bool").unwrap(),
        &[true, false, true]
    );
    let nested = f.get::<&[MetaArray]>("test.arr_nested").unwrap();
    assert_eq!(nested.len(), 4);
    assert_eq!(nested[2], MetaArray::String(["x", "y"].iter().collect()));
    assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 20);
    assert_eq!(f.get_opt::<u32>("no.such.key").unwrap(), None);

    // Errors name the key and the type found.
    let e = f.get_u32("test.string").unwrap_err();
    assert!(matches!(e, GgufError::TypeMismatch { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("test.string") && msg.contains("string") && msg.contains("u32"),
        "{msg}"
    );
    let msg = f.get_u32("test.i8").unwrap_err().to_string();
    assert!(msg.contains("test.i8") && msg.contains("-100"), "{msg}");
    let msg = f.get_str_array("test.arr_f32").unwrap_err().to_string();
    assert!(msg.contains("array<f32>[3]"), "{msg}");
    let msg = f.get_u32("missing.key").unwrap_err().to_string();
    assert!(msg.contains("missing.key"), "{msg}");
    let msg = f.tensor("nope").unwrap_err().to_string();
    assert!(msg.contains("nope"), "{msg}");
}

#[test]
fn tensors_and_types() {
    let f = GgufFile::open(&data("all_types.gguf"), LoadMode::File).unwrap();
    let t = f.tensor("q4_k.weight").unwrap();
    assert_eq!(t.ggml_type, GgmlType::Q4_K);
    assert_eq!(t.shape, &[256, 2]);
    assert_eq!(t.bytes.len(), 288);
    let per_type = f.bytes_per_type();
    let f32_row = per_type
        .iter()
        .find(|r| r.ggml_type == GgmlType::F32)
        .unwrap();
    assert_eq!(f32_row.tensors, 3);
    assert_eq!(f32_row.bytes, 5120 + 96 + 96);
    let total: u64 = f.tensors().iter().map(|t| t.n_elements()).sum();
    assert_eq!(f.parameter_count(), total);
    // Tensor data in File mode is 64-byte aligned at the data section start.
    assert_eq!(f.data().as_ptr() as usize % 32, 0);
}

#[test]
fn summary_and_text() {
    let f = GgufFile::open(&data("all_types.gguf"), LoadMode::Mmap).unwrap();
    let s = f.summary();
    assert_eq!(s.architecture.as_deref(), Some("testarch"));
    assert_eq!(s.name.as_deref(), Some("All Types Fixture"));
    assert_eq!(s.tensor_count, 17);
    assert_eq!(s.tokenizer.model.as_deref(), Some("gpt2"));
    assert_eq!(s.tokenizer.pre.as_deref(), Some("qwen2"));
    assert_eq!(s.tokenizer.vocab_size, Some(20));
    assert_eq!(s.tokenizer.merges, Some(2));
    assert_eq!(s.tokenizer.special_token_ids.get("bos"), Some(&1));
    assert_eq!(s.tokenizer.special_token_ids.get("eos"), Some(&2));
    assert_eq!(s.tokenizer.special_token_ids.get("padding"), Some(&0));
    assert_eq!(s.tokenizer.add_bos_token, Some(false));
    assert!(s.tokenizer.has_chat_template);
    assert_eq!(s.load.loads, 2);
    assert!(s.hyperparameters.contains_key("testarch.block_count"));
    assert!(!s.hyperparameters.contains_key("test.u8"));

    // Through text, as the CLI prints it (f32 values keep their shortest form there).
    let j: Value = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(j["hyperparameters"]["testarch.block_count"], json!(3));
    assert_eq!(
        j["hyperparameters"]["testarch.attention.layer_norm_rms_epsilon"],
        json!(1e-6)
    );
    assert_eq!(j["load"]["mode"], json!("mmap"));
    assert_eq!(j["tensors"][0]["ggml_type"], json!("F32"));
    let md = j["metadata"].as_array().unwrap();
    let long = md.iter().find(|m| m["key"] == "test.arr_long").unwrap();
    assert_eq!(long["value"], json!({"element_type": "i32", "len": 100}));
    assert_eq!(long["type"], json!("array<i32>[100]"));
    let short = md.iter().find(|m| m["key"] == "test.arr_u8").unwrap();
    assert_eq!(short["value"], json!([0, 1, 255]));
    let toks = md
        .iter()
        .find(|m| m["key"] == "tokenizer.ggml.tokens")
        .unwrap();
    assert_eq!(toks["value"]["len"], json!(20));

    let text = lmrun_gguf::render_text(&s);
    for needle in [
        "testarch",
        "All Types Fixture",
        "q4_k.weight",
        "Q4_K",
        "MXFP4",
        "TQ2_0",
        "[100 × i32]",
        "chat template: yes",
        "mode mmap",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let via_inspect = lmrun_gguf::inspect(&data("all_types.gguf"), LoadMode::File).unwrap();
    assert_eq!(via_inspect.tensors, s.tensors);
    assert_eq!(via_inspect.load.mode, Some(LoadMode::File));
}

#[test]
fn big_endian_is_refused_clearly() {
    let path = data("big_endian.gguf");
    let e = GgufFile::open(&path, LoadMode::File).unwrap_err();
    assert!(
        matches!(e.root(), GgufError::BigEndian { version: 3 }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("big-endian") && msg.contains("big_endian.gguf"),
        "{msg}"
    );
}

#[test]
fn version_1_is_refused_clearly() {
    let path = data("v1_header.gguf");
    let e = GgufFile::open(&path, LoadMode::Mmap).unwrap_err();
    assert!(
        matches!(e.root(), GgufError::UnsupportedVersion { version: 1 }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("version 1") && msg.contains("v1_header.gguf"),
        "{msg}"
    );
}

#[test]
fn unknown_version_and_bad_magic() {
    let mut b = std::fs::read(data("aligned64.gguf")).unwrap();
    b[4..8].copy_from_slice(&4u32.to_le_bytes());
    let e = GgufFile::from_bytes(b.clone()).unwrap_err();
    assert!(
        matches!(e, GgufError::UnsupportedVersion { version: 4 }),
        "{e:?}"
    );
    b[0] = b'X';
    let e = GgufFile::from_bytes(b).unwrap_err();
    assert!(matches!(e, GgufError::BadMagic { .. }), "{e:?}");
    assert!(e.to_string().contains("not a GGUF file"));
}
