//! Fuzz the GGUF parser: any bytes must give a `GgufFile` or a `GgufError`, never a panic,
//! an overflow or an allocation blow-up. A parsed file is then walked the way `inspect` and a
//! model loader walk it (summary, text rendering, every tensor view, typed lookups).
//!
//!     cargo +nightly fuzz run gguf_parse -- -max_len=65536
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrun_gguf::{render_text, GgufFile, Limits};
use lmrun_loader::{Buffer, BufferLoader};

fuzz_target!(|data: &[u8]| {
    // The loader path parses in place (arrays as views of the loaded bytes).
    let loader = BufferLoader::new(Buffer::from_vec(data.to_vec()));
    let parsed = GgufFile::from_loader_with(Box::new(loader), &Limits::default());
    // The whole-buffer parser must agree on success or failure.
    let direct = lmrun_gguf::parse_header(data);
    assert_eq!(
        parsed.is_ok(),
        direct.is_ok(),
        "{:?} vs {:?}",
        parsed.as_ref().err(),
        direct.as_ref().err()
    );
    let Ok(file) = parsed else { return };
    let summary = file.summary();
    let _ = render_text(&summary);
    for t in file.tensors() {
        let v = file.tensor(&t.name).expect("listed tensor has a view");
        assert_eq!(v.bytes.len() as u64, t.n_bytes);
        let _ = file
            .tensor_owned(&t.name)
            .expect("listed tensor has an owned view");
    }
    for (k, _) in file.metadata().iter() {
        let _ = file.get_u32(k);
        let _ = file.get_f32(k);
        let _ = file.get_str(k);
        let _ = file.get_str_array(k);
    }
    let _ = file.arch_key("block_count").map(|k| file.get_u32(&k));
});
