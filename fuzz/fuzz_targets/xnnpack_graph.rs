//! Fuzz the XNNPACK delegate reader and its node kernels with a real program around the blob.
//! The host is the tiny 8da4w Llama export (`crates/lmrun-pte/tests/data`, weights in its
//! `.ptd`); the first input byte picks which of the `forward` plan's delegates is replaced, the
//! rest is that delegate's blob (`XH00` header, `XN00`/`XN01` flatbuffer graph, constant data).
//! The program is then summarised (`inspect` decodes every delegate's node kinds), loaded
//! (graph decoding, value and node checks, constants by offset or by named key) and run for a
//! prefill of three tokens and one decode step. Any blob must give an error, never a panic or
//! an out-of-bounds read.
//!
//! A blob whose header claims constant data past its end is also tried padded with zeros to
//! that length (at most 4 MiB), so the seeds can leave their weights out and the fuzzer spends
//! its mutations on structure.
//!
//!     cargo +nightly fuzz run xnnpack_graph corpus/xnnpack_graph -- -max_len=8192
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrun_loader::{Buffer, BufferLoader};

static PTE: &[u8] = include_bytes!("../../crates/lmrun-pte/tests/data/tiny_xnnpack_8da4w_ptd.pte");
static PTD: &[u8] = include_bytes!("../../crates/lmrun-pte/tests/data/tiny_xnnpack_8da4w_ptd.ptd");

fn run(which: usize, blob: Buffer) {
    let path = std::path::Path::new("<fuzz>.pte");
    let ptd = Box::new(BufferLoader::new(Buffer::from_static(PTD)));
    let Ok(mut m) = lmrun_pte::Module::from_loaders(
        path,
        Box::new(BufferLoader::new(Buffer::from_static(PTE))),
        vec![(std::path::PathBuf::from("<fuzz>.ptd"), ptd as Box<dyn lmrun_loader::DataLoader>)],
    ) else {
        return;
    };
    let Some(pi) = m.program().def.plans.iter().position(|p| p.name == "forward") else {
        return;
    };
    let n = m.program().def.plans[pi].delegates.len();
    if n == 0 {
        return;
    }
    m.program_mut().override_delegate_data(pi, which % n, blob);
    let _ = lmrun_pte::PteSummary::from_program(m.program()).to_text();
    if m.forward_logits(&[1, 2, 3], 0).is_ok() {
        let _ = m.forward_logits(&[4], 3);
    }
}

/// The length the `XH00` header says the blob has (flatbuffer and constants), if it has one.
fn claimed_len(b: &[u8]) -> Option<usize> {
    if b.len() < 30 || &b[4..8] != b"XH00" {
        return None;
    }
    let u32at = |p: usize| u32::from_le_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]) as usize;
    let cs = u64::from_le_bytes(b[22..30].try_into().ok()?);
    let fb_end = u32at(10).checked_add(u32at(14))?;
    let c_end = u32at(18).checked_add(usize::try_from(cs).ok()?)?;
    Some(fb_end.max(c_end))
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, blob)) = data.split_first() else {
        return;
    };
    run(which as usize, Buffer::from_vec(blob.to_vec()));
    if let Some(want) = claimed_len(blob) {
        if want > blob.len() && want <= 4 << 20 {
            let mut padded = blob.to_vec();
            padded.resize(want, 0);
            run(which as usize, Buffer::from_vec(padded));
        }
    }
});
