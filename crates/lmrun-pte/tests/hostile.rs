//! Hostile and broken inputs: truncated and corrupted `.pte`/`.ptd` files, a program that
//! feeds int8 weights to a float kernel (the negative fixture ExecuTorch itself fails), and
//! missing files. Every one must end in an error, never a panic.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use lmrun_loader::LoadMode;
use lmrun_pte::{Module, PteError};

/// Open, list, load `forward` and run one step; any error is fine, a panic is not.
fn exercise(pte: &Path, data_files: &[PathBuf], mode: LoadMode) -> Result<(), PteError> {
    let mut m = Module::from_path(pte, data_files, mode)?;
    let names = m.method_names()?;
    for n in &names {
        let _ = m.method_meta(n);
    }
    let _ = lmrun_pte::inspect_pte(pte);
    m.load_method("forward")?;
    m.forward_logits(&[325], 0)?;
    Ok(())
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn program_size(bytes: &[u8]) -> usize {
    if &bytes[8..12] == b"eh00" {
        u64::from_le_bytes(bytes[16..24].try_into().unwrap()) as usize
    } else {
        bytes.len()
    }
}

#[test]
fn truncated_pte_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tiny_portable_sdpa.pte", "tiny_xnnpack_8da4w.pte"] {
        let bytes = std::fs::read(data(name)).unwrap();
        let ps = program_size(&bytes);
        let mut cuts = vec![
            1,
            4,
            7,
            8,
            12,
            20,
            31,
            40,
            63,
            64,
            100,
            ps / 2,
            ps - 1,
            ps,
            ps + 1,
        ];
        cuts.extend([bytes.len() / 2, bytes.len() - 1]);
        for cut in cuts {
            let p = dir.path().join(format!("cut_{cut}_{name}"));
            std::fs::write(&p, &bytes[..cut.min(bytes.len())]).unwrap();
            for mode in [LoadMode::File, LoadMode::Mmap] {
                let r = exercise(&p, &[], mode);
                assert!(r.is_err(), "{name} cut at {cut} loaded in {mode:?}");
            }
        }
    }
}

#[test]
fn truncated_ptd_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let name = "tiny_xnnpack_fp32_ptd";
    let bytes = std::fs::read(data(&format!("{name}.ptd"))).unwrap();
    for cut in [
        1,
        8,
        16,
        40,
        47,
        48,
        100,
        1000,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let p = dir.path().join(format!("cut_{cut}.ptd"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let r = exercise(&data(&format!("{name}.pte")), &[p], LoadMode::File);
        let e = r.expect_err("truncated .ptd loaded");
        eprintln!("cut {cut}: {e}");
    }
}

#[test]
fn corrupted_program_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for name in [
        "tiny_portable_nosdpa_static.pte",
        "tiny_portable_sdpa.pte",
        "tiny_xnnpack_8da4w.pte",
    ] {
        let orig = std::fs::read(data(name)).unwrap();
        let ps = program_size(&orig);
        let (mut ok, mut err) = (0, 0);
        for i in 0..150 {
            let mut bytes = orig.clone();
            // Flip 1-4 bytes inside the flatbuffer (header included).
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(ps);
                bytes[at] ^= 1 << rng.below(8);
                if rng.below(4) == 0 {
                    bytes[at] = 0xff;
                }
            }
            let p = dir.path().join(format!("corrupt_{i}_{name}"));
            std::fs::write(&p, &bytes).unwrap();
            match exercise(&p, &[], LoadMode::Mmap) {
                Ok(()) => ok += 1,
                Err(_) => err += 1,
            }
        }
        eprintln!("{name}: {ok} corrupted files still ran, {err} gave errors");
    }
}

#[test]
fn corrupted_xnnpack_blobs_and_ptd_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(12345);
    let pte = std::fs::read(data("tiny_xnnpack_fp32_ptd.pte")).unwrap();
    let ptd = std::fs::read(data("tiny_xnnpack_fp32_ptd.ptd")).unwrap();
    let ps = program_size(&pte);
    for i in 0..40 {
        let (mut a, mut b) = (pte.clone(), ptd.clone());
        if i % 2 == 0 {
            // delegate blobs live in the segments after the program
            let at = ps + rng.below(a.len() - ps);
            a[at] ^= 1 << rng.below(8);
        } else {
            let at = rng.below(4096.min(b.len()));
            b[at] ^= 1 << rng.below(8);
        }
        let (pa, pb) = (
            dir.path().join(format!("c{i}.pte")),
            dir.path().join(format!("c{i}.ptd")),
        );
        std::fs::write(&pa, &a).unwrap();
        std::fs::write(&pb, &b).unwrap();
        let _ = exercise(&pa, &[pb], LoadMode::File);
    }
}

#[test]
fn garbage_and_missing_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("garbage.pte");
    std::fs::write(&p, vec![0xabu8; 4096]).unwrap();
    assert!(matches!(
        Module::from_path(&p, &[], LoadMode::File),
        Err(PteError::InvalidProgram { .. })
    ));
    let e = Module::from_path(&dir.path().join("nope.pte"), &[], LoadMode::Mmap);
    assert!(matches!(e, Err(PteError::Load(_))));
    // A GGUF is not a .pte.
    let mut g = b"GGUF".to_vec();
    g.extend([0u8; 60]);
    std::fs::write(&p, &g).unwrap();
    let e = Module::from_path(&p, &[], LoadMode::File).err().unwrap();
    assert!(e.to_string().contains("ET12"), "{e}");
    // A .pte given as a .ptd.
    let e = Module::from_path(
        &data("tiny_xnnpack_fp32_ptd.pte"),
        &[data("tiny_portable_sdpa.pte")],
        LoadMode::File,
    )
    .err()
    .unwrap();
    assert!(matches!(e, PteError::InvalidExternalData { .. }), "{e}");
}

#[test]
fn portable_8da4w_is_a_clear_error_not_garbage() {
    for mode in MODES {
        let mut m = Module::from_path(&data("tiny_portable_8da4w.pte"), &[], mode).unwrap();
        // Metadata is readable.
        assert_eq!(
            m.get("get_vocab_size").unwrap(),
            lmrun_pte::EValue::Int(512)
        );
        let e = m.load_method("forward").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, PteError::OperatorMissing { .. }), "{msg}");
        assert!(
            msg.contains("aten::linear.out") && msg.contains("Char"),
            "{msg}"
        );
        eprintln!("{msg}");
        let e = m.forward_logits(&PROMPT, 0).unwrap_err();
        assert!(matches!(e, PteError::OperatorMissing { .. }));
    }
}

#[test]
fn bad_inputs_are_errors() {
    let mut m = Module::from_path(&data("tiny_portable_sdpa.pte"), &[], LoadMode::File).unwrap();
    // too many tokens for the planned [1, 128] input bound
    let long: Vec<i64> = vec![3; 129];
    assert!(m.forward_logits(&long, 0).is_err());
    // a token outside the vocabulary
    assert!(m.forward_logits(&[600], 0).is_err());
    // a position past the cache
    assert!(m.forward_logits(&[3], 128).is_err());
    // wrong dtype
    let t = lmrun_pte::Tensor::from_f32(&[1, 1], &[1.0]);
    let pos = lmrun_pte::Tensor::from_i64(&[1], &[0]);
    assert!(m
        .execute(
            "forward",
            &[
                lmrun_pte::EValue::Tensor(t),
                lmrun_pte::EValue::Tensor(pos.clone())
            ]
        )
        .is_err());
    // too many inputs
    let tok = lmrun_pte::Tensor::from_i64(&[1, 1], &[3]);
    let three = [
        lmrun_pte::EValue::Tensor(tok.clone()),
        lmrun_pte::EValue::Tensor(pos.clone()),
        lmrun_pte::EValue::Int(0),
    ];
    assert!(m.execute("forward", &three).is_err());
    assert!(matches!(m.get("nope"), Err(PteError::MethodNotFound(_))));
    // still usable afterwards
    assert!(m.forward_logits(&[3], 0).is_ok());
}

#[test]
fn duplicate_keys_across_data_files_are_an_error() {
    let ptd = data("tiny_xnnpack_fp32_ptd.ptd");
    let e = Module::from_path(
        &data("tiny_xnnpack_fp32_ptd.pte"),
        &[ptd.clone(), ptd],
        LoadMode::Mmap,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("more than one data file"), "{e}");
}

#[test]
fn module_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Module>();
}

/// A longer corruption campaign (`LMRUN_PTE_FUZZ_ITERS=5000 cargo test --release -- --ignored`).
#[test]
#[ignore]
fn corruption_campaign() {
    let iters: usize = std::env::var("LMRUN_PTE_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let names = [
        "tiny_portable_nosdpa.pte",
        "tiny_portable_nosdpa_static.pte",
        "tiny_portable_sdpa.pte",
        "tiny_xnnpack_8da4w.pte",
        "tiny_xnnpack_fp32.pte",
        "tiny_portable_8da4w.pte",
    ];
    let files: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(data(n)).unwrap())
        .collect();
    let (mut ok, mut err) = (0, 0);
    for i in 0..iters {
        let f = rng.below(files.len());
        let mut bytes = files[f].clone();
        let ps = program_size(&bytes);
        let region = if rng.below(5) == 0 { bytes.len() } else { ps };
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(region);
            match rng.below(3) {
                0 => bytes[at] ^= 1 << rng.below(8),
                1 => bytes[at] = rng.next() as u8,
                _ => bytes[at] = [0, 0xff, 0x7f, 0x80][rng.below(4)],
            }
        }
        let p = dir.path().join(format!("c{}.pte", i % 8));
        std::fs::write(&p, &bytes).unwrap();
        let r = std::panic::catch_unwind(|| exercise(&p, &[], LoadMode::File));
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(_)) => err += 1,
            Err(_) => {
                let keep = std::env::temp_dir().join(format!("pte_panic_{i}_{}", names[f]));
                std::fs::write(&keep, &bytes).unwrap();
                panic!(
                    "panic on corrupted {} (kept at {})",
                    names[f],
                    keep.display()
                );
            }
        }
    }
    eprintln!("{iters} corrupted files: {ok} ran, {err} errors, 0 panics");
}
