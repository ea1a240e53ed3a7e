//! Fuzz the ExecuTorch `.pte` path: parse the program from memory, summarise it, read every
//! method's metadata, load each method (kernels, delegates) and run it on inputs shaped from
//! its metadata (and `forward` as an LLM step). Any input must give an error, never a panic.
//! Register it in `fuzz/Cargo.toml` with a `[[bin]] name = "pte_parse"` entry and an
//! `lmrun-pte = { path = "../crates/lmrun-pte" }` dependency.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrun_pte::{EValue, ScalarType, Tensor};

fuzz_target!(|data: &[u8]| {
    let loader = Box::new(lmrun_loader::BufferLoader::new(data.to_vec()));
    let path = std::path::Path::new("<fuzz>.pte");
    let Ok(mut m) = lmrun_pte::Module::from_loaders(path, loader, Vec::new()) else {
        return;
    };
    let _ = lmrun_pte::PteSummary::from_program(m.program()).to_text();
    let _ = m.metadata();
    let _ = m.forward_logits(&[1], 0);
    let Ok(names) = m.method_names() else {
        return;
    };
    for n in names.iter().take(4) {
        let Ok(meta) = m.method_meta(n) else {
            continue;
        };
        let mut inputs = Vec::new();
        for (k, t) in meta.input_kinds.iter().zip(&meta.input_tensors) {
            inputs.push(match (k.as_str(), t) {
                ("Tensor", Some(t)) if t.sizes.iter().product::<usize>() <= 4096 => {
                    let n: usize = t.sizes.iter().product();
                    Tensor {
                        dtype: t.dtype,
                        sizes: t.sizes.clone(),
                        data: vec![1u8; n * t.dtype.size()],
                    }
                    .into()
                }
                ("Int", _) => EValue::Int(1),
                ("Bool", _) => EValue::Bool(true),
                _ => EValue::Tensor(Tensor::from_f32(&[1], &[1.0])),
            });
        }
        let _ = m.execute(n, &inputs);
        let _ = m.execute(n, &inputs);
    }
    let _ = ScalarType::Float;
});
