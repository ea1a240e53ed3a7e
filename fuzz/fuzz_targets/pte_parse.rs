//! Fuzz the ExecuTorch `.pte` path: parse the program, read every method's metadata, load
//! `forward` (kernels, delegates) and run one step. Any input must give an error, never a panic.
//! Register it in `fuzz/Cargo.toml` with a `[[bin]] name = "pte_parse"` entry and an
//! `lmrun-pte = { path = "../crates/lmrun-pte" }` dependency.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("lmrun-fuzz-pte-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join("input.pte");
    if std::fs::write(&p, data).is_err() {
        return;
    }
    if let Ok(mut m) = lmrun_pte::Module::from_path(&p, &[], lmrun_loader::LoadMode::File) {
        let _ = lmrun_pte::PteSummary::from_program(m.program()).to_text();
        if let Ok(names) = m.method_names() {
            for n in names {
                let _ = m.method_meta(&n);
                let _ = m.metadata();
            }
        }
        let _ = m.forward_logits(&[1], 0);
    }
});
