//! Malformed input: truncated copies (cut at every offset of a fixture, and at many offsets of a
//! real model's header), corrupted copies (every header byte flipped), and hand-built files
//! with one bad field each (counts, lengths, type ids, offsets, dims, alignment, nesting). Each
//! must give a `GgufError` naming what and where, never a panic.

use std::path::{Path, PathBuf};

use lmrun_gguf::{parse_header, GgufError, GgufFile, Limits};
use lmrun_loader::{Buffer, BufferLoader};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

/// Parse through the loader path (in place, arrays as views of the loaded bytes) and the
/// direct path (copying); they must agree.
fn parse_both(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    let loader = BufferLoader::new(Buffer::from_vec(bytes.to_vec()));
    let a = GgufFile::from_loader_with(Box::new(loader), &Limits::default());
    let b = parse_header(bytes);
    assert_eq!(
        a.is_ok(),
        b.is_ok(),
        "{:?} / {:?}",
        a.as_ref().err(),
        b.as_ref().err()
    );
    if let (Ok(a), Ok(b)) = (&a, &b) {
        assert_eq!(a.header(), b, "in-place and copying parses differ");
    }
    a
}

#[test]
fn every_truncation_of_a_fixture_is_an_error() {
    for name in ["all_types.gguf", "aligned64.gguf", "no_tensors.gguf"] {
        let full = data(name);
        // The file may end anywhere after the tensor infos and the last tensor's data (the
        // padding after it is optional).
        let h = parse_header(&full).unwrap();
        let min_ok = h
            .tensors
            .iter()
            .map(|t| t.file_offset + t.n_bytes)
            .max()
            .unwrap_or(h.header_len) as usize;
        for cut in 0..full.len() {
            let r = parse_both(&full[..cut]);
            if cut < min_ok {
                let e = r
                    .err()
                    .unwrap_or_else(|| panic!("{name} cut at {cut} parsed"));
                assert!(
                    e.offset().is_some(),
                    "{name} cut at {cut}: {e} has no offset"
                );
            }
        }
    }
}

#[test]
fn truncation_messages_name_offset_and_item() {
    let full = data("all_types.gguf");
    let e = parse_both(&full[..100]).unwrap_err();
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("truncated") && msg.contains("offset") && msg.contains("100 bytes"),
        "{msg}"
    );
    // Cut inside the data section: the last tensor does not fit.
    let e = parse_both(&full[..full.len() - 1]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("four_d") && msg.contains("data section"),
        "{msg}"
    );
}

#[test]
fn every_flipped_header_byte_gives_a_result() {
    for name in ["all_types.gguf", "aligned64.gguf"] {
        let full = data(name);
        let header_end = parse_header(&full).unwrap().data_offset as usize;
        let mut errors = 0;
        for pos in 0..header_end {
            for mask in [0xffu8, 0x80, 0x01, 0x10] {
                let mut b = full.clone();
                b[pos] ^= mask;
                if parse_both(&b).is_err() {
                    errors += 1;
                }
            }
        }
        assert!(
            errors > header_end,
            "{name}: only {errors} corruptions were caught"
        );
    }
}

#[test]
fn truncated_and_corrupted_real_model_headers() {
    let dir = match std::env::var_os("LMRUN_MODELS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/lmrun/models"),
    };
    let path = dir.join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch_models.sh",
        path.display()
    );
    // The header plus a little data: enough to reach every tensor info, too short for the data.
    let mut head = vec![0u8; 6 << 20];
    {
        use std::io::Read;
        std::fs::File::open(&path)
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
    }
    let e = parse_header(&head).unwrap_err();
    assert!(e.to_string().contains("data section"), "{e}");
    let mut cut = 1usize;
    let mut n = 0;
    while cut < head.len() {
        assert!(parse_header(&head[..cut]).is_err());
        cut = cut * 5 / 4 + 7;
        n += 1;
    }
    assert!(n > 50);
    // Flip bytes at spread-out positions of the header (lengths, type ids, counts, offsets).
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..60 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let pos = (seed % head.len() as u64) as usize;
        let mut b = head.clone();
        b[pos] ^= 0xff;
        let _ = parse_header(&b);
    }
}

/// A hand GGUF writer whose fields can be set to anything.
#[derive(Default, Clone)]
struct Gguf {
    version: u32,
    tensor_count: Option<u64>,
    kv_count: Option<u64>,
    kvs: Vec<Vec<u8>>,
    tensors: Vec<Vec<u8>>,
    data: Vec<u8>,
    pad_to: u64,
}

fn gstr(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

fn kv(key: &str, ty: u32, value: &[u8]) -> Vec<u8> {
    let mut v = gstr(key.as_bytes());
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(value);
    v
}

fn tensor(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut v = gstr(name.as_bytes());
    v.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        v.extend_from_slice(&d.to_le_bytes());
    }
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(&offset.to_le_bytes());
    v
}

impl Gguf {
    fn new() -> Self {
        Gguf {
            version: 3,
            pad_to: 32,
            ..Default::default()
        }
    }
    fn kv(mut self, key: &str, ty: u32, value: &[u8]) -> Self {
        self.kvs.push(kv(key, ty, value));
        self
    }
    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        self.tensors.push(tensor(name, dims, ty, offset));
        self
    }
    fn data(mut self, n: usize) -> Self {
        self.data = vec![0xab; n];
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend_from_slice(&self.version.to_le_bytes());
        v.extend_from_slice(
            &self
                .tensor_count
                .unwrap_or(self.tensors.len() as u64)
                .to_le_bytes(),
        );
        v.extend_from_slice(&self.kv_count.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        for k in &self.kvs {
            v.extend_from_slice(k);
        }
        for t in &self.tensors {
            v.extend_from_slice(t);
        }
        while v.len() as u64 % self.pad_to != 0 {
            v.push(0);
        }
        v.extend_from_slice(&self.data);
        v
    }
    fn parse(&self) -> Result<GgufFile, GgufError> {
        parse_both(&self.bytes())
    }
    fn err(&self) -> String {
        match self.parse() {
            Ok(_) => panic!("parsed"),
            Err(e) => e.to_string(),
        }
    }
}

fn has(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "{n:?} not in: {msg}");
    }
}

#[test]
fn a_good_hand_built_file_parses() {
    let f = Gguf::new()
        .kv("a.u32", 4, &7u32.to_le_bytes())
        .kv("a.empty", 9, &[8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) // empty string array
        .tensor("t", &[4, 2], 0, 0)
        .tensor("empty", &[0], 0, 32)
        .tensor("scalar", &[], 0, 32)
        .data(64)
        .parse()
        .unwrap();
    assert_eq!(f.get_u32("a.u32").unwrap(), 7);
    assert!(f.get_str_array("a.empty").unwrap().is_empty());
    assert_eq!(f.tensor("t").unwrap().bytes.len(), 32);
    assert_eq!(f.tensor("empty").unwrap().bytes.len(), 0);
    assert_eq!(f.tensor("scalar").unwrap().bytes.len(), 4);
}

#[test]
fn bad_counts() {
    let mut g = Gguf::new().kv("a", 4, &[0; 4]);
    g.kv_count = Some(u64::MAX);
    has(&g.err(), &["metadata count", "offset 16"]);
    g.kv_count = Some(5);
    has(&g.err(), &["truncated"]);
    let mut g = Gguf::new();
    g.tensor_count = Some(1 << 40);
    has(&g.err(), &["tensor count", "offset 8", "limit"]);
    g.tensor_count = Some(1000);
    has(&g.err(), &["tensor count", "truncated"]);
}

#[test]
fn bad_lengths() {
    // A key length of 2^64-1.
    let mut g = Gguf::new().data(64);
    g.kvs.push(u64::MAX.to_le_bytes().to_vec());
    has(
        &g.err(),
        &["metadata entry 0", "the key", "offset 24", "limit"],
    );
    // A string value longer than the file.
    let mut big = 1000u64.to_le_bytes().to_vec();
    big.extend_from_slice(b"short");
    has(
        &Gguf::new().kv("s", 8, &big).err(),
        &["'s'", "string value", "truncated"],
    );
    // An array length of 2^60.
    let mut arr = 4u32.to_le_bytes().to_vec();
    arr.extend_from_slice(&(1u64 << 60).to_le_bytes());
    has(
        &Gguf::new().kv("arr", 9, &arr).err(),
        &["'arr'", "array length", "limit"],
    );
    // An array length that fits the limit but not the file.
    let mut arr = 4u32.to_le_bytes().to_vec();
    arr.extend_from_slice(&(1u64 << 20).to_le_bytes());
    has(
        &Gguf::new().kv("arr", 9, &arr).err(),
        &["'arr'", "array length", "truncated"],
    );
    // A string array of 2^20 strings.
    let mut arr = 8u32.to_le_bytes().to_vec();
    arr.extend_from_slice(&(1u64 << 20).to_le_bytes());
    has(
        &Gguf::new().kv("arr", 9, &arr).err(),
        &["'arr'", "truncated"],
    );
    // A tensor name of 2^40 bytes.
    let mut g = Gguf::new().data(64);
    g.tensors.push((1u64 << 40).to_le_bytes().to_vec());
    has(&g.err(), &["tensor info 0", "tensor name", "limit"]);
}

#[test]
fn bad_type_ids() {
    has(
        &Gguf::new().kv("k", 13, &[0; 8]).err(),
        &["'k'", "unknown value type id 13", "offset"],
    );
    let mut arr = 99u32.to_le_bytes().to_vec();
    arr.extend_from_slice(&1u64.to_le_bytes());
    has(
        &Gguf::new().kv("k", 9, &arr).err(),
        &["array element type", "unknown value type id 99"],
    );
    has(&Gguf::new().kv("b", 7, &[2]).err(), &["'b'", "bool", "2"]);
    let g = Gguf::new().tensor("t", &[32], 42, 0).data(64);
    has(&g.err(), &["tensor 't'", "unknown ggml type id 42"]);
    let g = Gguf::new().tensor("t", &[32], u32::MAX, 0).data(64);
    has(&g.err(), &["unknown ggml type id 4294967295"]);
    // A removed type still parses (with its historical block layout) and is named.
    let f = Gguf::new()
        .tensor("t", &[32], 31, 0)
        .data(64)
        .parse()
        .unwrap();
    assert_eq!(f.tensor("t").unwrap().ggml_type.name(), "Q4_0_4_4");
    assert!(f.tensor("t").unwrap().ggml_type.is_removed());
    let text = lmrun_gguf::render_text(&f.summary());
    assert!(
        text.contains("Q4_0_4_4") && text.contains("removed"),
        "{text}"
    );
}

#[test]
fn bad_tensor_infos() {
    has(
        &Gguf::new()
            .tensor("t", &[1, 1, 1, 1, 1], 0, 0)
            .data(32)
            .err(),
        &["tensor 't'", "5 dimensions", "at most 4"],
    );
    has(
        &Gguf::new().tensor("t", &[u64::MAX], 0, 0).data(32).err(),
        &["dimension 0", "2^63"],
    );
    has(
        &Gguf::new()
            .tensor("t", &[1 << 40, 1 << 40], 0, 0)
            .data(32)
            .err(),
        &["tensor 't'", "2^63 elements"],
    );
    has(
        &Gguf::new().tensor("t", &[1 << 62], 0, 0).data(32).err(),
        &["tensor 't'", "overflows"],
    );
    has(
        &Gguf::new().tensor("q", &[33], 2, 0).data(64).err(),
        &["tensor 'q'", "Q4_0", "33 elements", "block size 32"],
    );
    has(
        &Gguf::new().tensor("t", &[4], 0, 8).data(64).err(),
        &["tensor 't'", "data offset 8", "alignment 32"],
    );
    has(
        &Gguf::new().tensor("t", &[16], 0, 32).data(64).err(),
        &["tensor 't'", "past the end of the data section"],
    );
    has(
        &Gguf::new()
            .tensor("t", &[4], 0, u64::MAX - 31)
            .data(64)
            .err(),
        &["tensor 't'", "past the end"],
    );
    has(
        &Gguf::new()
            .tensor("a", &[16], 0, 0)
            .tensor("b", &[4], 0, 32)
            .data(64)
            .err(),
        &["'b'", "overlaps", "'a'"],
    );
    has(
        &Gguf::new()
            .tensor("a", &[4], 0, 0)
            .tensor("a", &[4], 0, 32)
            .data(64)
            .err(),
        &["duplicate tensor name 'a'"],
    );
    let mut g = Gguf::new().data(32);
    g.tensors.push(gstr(&[0xff, 0xfe]));
    has(&g.err(), &["tensor name", "UTF-8"]);
}

#[test]
fn bad_metadata() {
    has(
        &Gguf::new().kv("k", 4, &[0; 4]).kv("k", 4, &[0; 4]).err(),
        &["duplicate metadata key 'k'"],
    );
    for (ty, v) in [
        (4u32, 0u32.to_le_bytes().to_vec()),
        (4, 48u32.to_le_bytes().to_vec()),
        (10, 64u64.to_le_bytes().to_vec()),
    ] {
        has(
            &Gguf::new().kv("general.alignment", ty, &v).err(),
            &["general.alignment", "power of two"],
        );
    }
    // Nesting deeper than the limit.
    let mut v = Vec::new();
    for _ in 0..40 {
        v.extend_from_slice(&9u32.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
    }
    v.extend_from_slice(&4u32.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    has(
        &Gguf::new().kv("deep", 9, &v).err(),
        &["'deep'", "nesting depth", "limit of 8"],
    );
    // Invalid UTF-8 in a key is an error; in a value it is replaced (and logged).
    let mut g = Gguf::new();
    let mut k = gstr(&[0xc3, 0x28]);
    k.extend_from_slice(&4u32.to_le_bytes());
    k.extend_from_slice(&[0; 4]);
    g.kvs.push(k);
    has(&g.err(), &["the key", "UTF-8"]);
    let f = Gguf::new()
        .kv("s", 8, &gstr(&[b'a', 0xff]))
        .parse()
        .unwrap();
    assert_eq!(f.get_str("s").unwrap(), "a\u{fffd}");
}

#[test]
fn alignment_is_honoured() {
    let f = Gguf {
        pad_to: 128,
        ..Gguf::new()
    }
    .kv("general.alignment", 4, &128u32.to_le_bytes())
    .tensor("t", &[4], 0, 128)
    .data(256)
    .parse()
    .unwrap();
    assert_eq!(f.alignment(), 128);
    assert_eq!(f.data_offset() % 128, 0);
    assert_eq!(f.tensor("t").unwrap().file_offset, f.data_offset() + 128);
    let e = Gguf {
        pad_to: 128,
        ..Gguf::new()
    }
    .kv("general.alignment", 4, &128u32.to_le_bytes())
    .tensor("t", &[4], 0, 32)
    .data(256)
    .err();
    has(&e, &["alignment 128"]);
}

#[test]
fn header_limits_are_enforced() {
    let limits = Limits {
        max_kv_count: 1,
        ..Limits::default()
    };
    let b = Gguf::new().kv("a", 4, &[0; 4]).kv("b", 4, &[0; 4]).bytes();
    let loader = BufferLoader::new(Buffer::from_vec(b));
    let e = GgufFile::from_loader_with(Box::new(loader), &limits).unwrap_err();
    assert!(
        matches!(e, GgufError::LimitExceeded { limit: 1, .. }),
        "{e:?}"
    );
}
