//! Every input in `tests/fuzz_regressions/` (inputs that once crashed the `gguf_parse` fuzz
//! target, `fuzz/fuzz_targets/gguf_parse.rs`, plus a few hand-made seeds) must parse to a result
//! without a panic, exactly as the fuzz target drives the parser.

use std::path::Path;

use lmrun_gguf::{parse_header, render_text, GgufFile, Limits};
use lmrun_loader::{Buffer, BufferLoader};

fn drive(data: &[u8]) {
    let loader = BufferLoader::new(Buffer::from_vec(data.to_vec()));
    let parsed = GgufFile::from_loader_with(Box::new(loader), &Limits::default());
    assert_eq!(parsed.is_ok(), parse_header(data).is_ok());
    let Ok(file) = parsed else { return };
    let _ = render_text(&file.summary());
    for t in file.tensors() {
        assert_eq!(file.tensor(&t.name).unwrap().bytes.len() as u64, t.n_bytes);
    }
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        drive(&data);
        n += 1;
    }
    assert!(n >= 2, "no inputs in {}", dir.display());
}

#[test]
fn gguf_file_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GgufFile>();
}
