//! Loading goes through `lmrun-loader` like ExecuTorch's `Program::load`: the header and the
//! program as small loads, the constant segment as one load, each delegate blob and named-data
//! blob as its own load, the `.ptd` with the same mode; the summed report tells what happened.

mod common;

use common::*;
use lmrun_loader::{LoadMode, MlockOutcome};
use lmrun_pte::Module;

#[test]
fn program_load_is_header_program_and_constant_segment() {
    let p = data("tiny_portable_sdpa.pte");
    let size = std::fs::metadata(&p).unwrap().len();
    let s = lmrun_pte::inspect_pte(&p).unwrap();
    let h = s.extended_header.unwrap();
    let seg = s.segments[0].size;

    let m = Module::from_path(&p, &[], LoadMode::File).unwrap();
    let r = m.load_report();
    assert_eq!(r.loads, 3, "{r:?}");
    assert_eq!(r.bytes_read, 64 + h.program_size + seg);
    assert_eq!(r.bytes_mapped, 0);
    assert!(r.bytes_read < size + 64 + h.program_size);

    let m = Module::from_path(&p, &[], LoadMode::Mmap).unwrap();
    let r = m.load_report();
    assert_eq!(r.loads, 3);
    assert_eq!(r.bytes_read, 0);
    assert!(r.bytes_mapped >= h.program_size + seg, "{r:?}");
    assert_eq!(r.mlock, MlockOutcome::NotAttempted);
}

#[test]
fn delegate_and_named_data_blobs_are_loaded_one_by_one_in_the_same_mode() {
    let pte = data("tiny_xnnpack_fp32_ptd.pte");
    let ptd = data("tiny_xnnpack_fp32_ptd.ptd");
    for mode in MODES {
        let mut m = Module::from_path(&pte, std::slice::from_ref(&ptd), mode).unwrap();
        let before = m.load_report();
        // .pte: header, program, constant segment; .ptd: header, flatbuffer
        assert_eq!(before.loads, 5, "{mode:?} {before:?}");
        m.load_method("forward").unwrap();
        let after = m.load_report();
        let s = lmrun_pte::inspect_pte(&pte).unwrap();
        let delegates = s.methods[0].delegates.len() as u32;
        assert!(after.loads > before.loads + delegates, "{mode:?} {after:?}");
        match mode {
            LoadMode::File => {
                assert_eq!(after.bytes_mapped, 0);
                assert!(after.bytes_read > 1_000_000, "weights read from the .ptd");
            }
            _ => {
                assert_eq!(after.bytes_read, 0);
                assert!(
                    after.bytes_mapped > 1_000_000,
                    "weights mapped from the .ptd"
                );
            }
        }
        if mode == LoadMode::MmapUseMlock {
            assert_eq!(after.mlock, MlockOutcome::Locked);
            assert!(after.bytes_locked > 1_000_000);
        }
    }
}
