//! Fuzz the ExecuTorch `.pte` path: parse the program from memory, summarise it, read every
//! method's metadata, load `forward` (kernels, delegates) and run one step. Any input must give
//! an error, never a panic. Register it in `fuzz/Cargo.toml` with a `[[bin]] name =
//! "pte_parse"` entry and an `lmrun-pte = { path = "../crates/lmrun-pte" }` dependency.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let loader = Box::new(lmrun_loader::BufferLoader::new(data.to_vec()));
    let path = std::path::Path::new("<fuzz>.pte");
    if let Ok(mut m) = lmrun_pte::Module::from_loaders(path, loader, Vec::new()) {
        let _ = lmrun_pte::PteSummary::from_program(m.program()).to_text();
        let _ = m.metadata();
        if let Ok(names) = m.method_names() {
            for n in names {
                let _ = m.method_meta(&n);
            }
        }
        let _ = m.forward_logits(&[1], 0);
    }
});
