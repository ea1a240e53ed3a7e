//! Fuzz the `.ptd` (FlatTensor) reader and a program's use of it. The input is a `.ptd` file:
//! it is parsed on its own (header, flatbuffer, segment table, named entries, every entry's
//! bytes), summarised as `lmrun inspect` does, then given as the data file of the two tiny
//! Llama exports that keep their weights in a `.ptd` (fp32 and 8da4w, from
//! `crates/lmrun-pte/tests/data`), which load `forward` (named tensors looked up by key, sizes
//! checked against the program's tensors) and run a prefill and a decode step. A `.ptd` that
//! is corrupt, truncated, or belongs to another program must give an error naming the file,
//! never a panic or an out-of-bounds read.
//!
//! An input whose header places its segments past its end is also tried padded with zeros to
//! that length (at most 4 MiB): the seeds are the real files cut after their flatbuffer, so the
//! fuzzer mutates structure rather than weights.
//!
//!     cargo +nightly fuzz run ptd_parse corpus/ptd_parse -- -max_len=8192
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use lmrun_loader::{Buffer, BufferLoader, DataLoader};

static HOSTS: [&[u8]; 2] = [
    include_bytes!("../../crates/lmrun-pte/tests/data/tiny_xnnpack_fp32_ptd.pte"),
    include_bytes!("../../crates/lmrun-pte/tests/data/tiny_xnnpack_8da4w_ptd.pte"),
];

fn run(ptd: &Buffer) {
    let path = Path::new("<fuzz>.ptd");
    if let Ok(d) = lmrun_pte::ptd::FlatTensorData::load(path, Box::new(BufferLoader::new(ptd.clone()))) {
        for e in &d.entries {
            let _ = d.get_data(&e.key);
        }
        let _ = d.report();
    }
    for host in HOSTS {
        let data: Vec<(PathBuf, Box<dyn DataLoader>)> =
            vec![(path.to_path_buf(), Box::new(BufferLoader::new(ptd.clone())))];
        let Ok(mut m) = lmrun_pte::Module::from_loaders(
            Path::new("<fuzz>.pte"),
            Box::new(BufferLoader::new(Buffer::from_static(host))),
            data,
        ) else {
            continue;
        };
        if m.forward_logits(&[1, 2, 3], 0).is_ok() {
            let _ = m.forward_logits(&[4], 3);
        }
        let _ = m.load_report();
    }
}

/// Where the FlatTensor header says the file ends (its segment data), if it parses.
fn claimed_len(b: &[u8]) -> Option<usize> {
    let h = lmrun_pte::ptd::parse_flat_tensor_header(b).ok()?;
    let end = h.segment_base_offset.checked_add(h.segment_data_size)?;
    usize::try_from(end.max(h.flatbuffer_offset.checked_add(h.flatbuffer_size)?)).ok()
}

fuzz_target!(|data: &[u8]| {
    run(&Buffer::from_vec(data.to_vec()));
    if let Some(want) = claimed_len(data) {
        if want > data.len() && want <= 4 << 20 {
            let mut padded = data.to_vec();
            padded.resize(want, 0);
            run(&Buffer::from_vec(padded));
        }
    }
});
