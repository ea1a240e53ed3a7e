//! Inputs the `xnnpack_graph` and `ptd_parse` fuzz targets (`fuzz/fuzz_targets/`) found, replayed
//! the way each target drives them: every file in `tests/fuzz_regressions/` named
//! `<target>-<what>` must give results or errors, never a panic, and finish promptly.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::data;
use lmrun_loader::{Buffer, BufferLoader, DataLoader};
use lmrun_pte::Module;

fn host(pte: &str, ptd: &str, ptd_bytes: Option<Buffer>) -> Option<Module> {
    let ptd_buf = match ptd_bytes {
        Some(b) => b,
        None => Buffer::from_vec(std::fs::read(data(ptd)).unwrap()),
    };
    let loaders: Vec<(PathBuf, Box<dyn DataLoader>)> = vec![(
        PathBuf::from("<fuzz>.ptd"),
        Box::new(BufferLoader::new(ptd_buf)),
    )];
    Module::from_loaders(
        Path::new("<fuzz>.pte"),
        Box::new(BufferLoader::new(Buffer::from_vec(
            std::fs::read(data(pte)).unwrap(),
        ))),
        loaders,
    )
    .ok()
}

fn run_steps(m: &mut Module) {
    if m.forward_logits(&[1, 2, 3], 0).is_ok() {
        let _ = m.forward_logits(&[4], 3);
    }
}

/// As `fuzz/fuzz_targets/xnnpack_graph.rs`: byte 0 picks the delegate of the tiny 8da4w
/// program (weights in its `.ptd`) that the rest replaces.
fn xnnpack_graph(input: &[u8]) {
    let Some((&which, blob)) = input.split_first() else {
        return;
    };
    let Some(mut m) = host(
        "tiny_xnnpack_8da4w_ptd.pte",
        "tiny_xnnpack_8da4w_ptd.ptd",
        None,
    ) else {
        return;
    };
    let pi = m
        .program()
        .def
        .plans
        .iter()
        .position(|p| p.name == "forward")
        .unwrap();
    let n = m.program().def.plans[pi].delegates.len();
    m.program_mut()
        .override_delegate_data(pi, which as usize % n, Buffer::from_vec(blob.to_vec()));
    let _ = lmrun_pte::PteSummary::from_program(m.program()).to_text();
    run_steps(&mut m);
}

/// As `fuzz/fuzz_targets/ptd_parse.rs`: the input is the `.ptd` of the two tiny `.ptd` programs.
fn ptd_parse(input: &[u8]) {
    let b = Buffer::from_vec(input.to_vec());
    if let Ok(d) = lmrun_pte::ptd::FlatTensorData::load(
        Path::new("<fuzz>.ptd"),
        Box::new(BufferLoader::new(b.clone())),
    ) {
        for e in &d.entries {
            let _ = d.get_data(&e.key);
        }
    }
    for pte in ["tiny_xnnpack_fp32_ptd.pte", "tiny_xnnpack_8da4w_ptd.pte"] {
        if let Some(mut m) = host(pte, "", Some(b.clone())) {
            run_steps(&mut m);
        }
    }
}

#[test]
fn fuzz_findings_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let input = std::fs::read(&p).unwrap();
        let t = Instant::now();
        if name.starts_with("xnnpack_graph-") {
            xnnpack_graph(&input);
        } else if name.starts_with("ptd_parse-") {
            ptd_parse(&input);
        } else {
            continue;
        }
        n += 1;
        let el = t.elapsed();
        eprintln!("{name}: {el:?}");
        // A hang would be minutes; a debug build on a busy machine takes well under this.
        assert!(el < Duration::from_secs(20), "{name} took {el:?}");
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}
