//! The portable (non-delegated) fixtures against ExecuTorch's own greedy runs: the same 32
//! token ids and logits within tolerance, in every load mode.

mod common;

use common::*;
use lmrun_pte::{EValue, Module};

/// fp32 logits tolerance against ExecuTorch (different summation orders in linear/sdpa).
const TOL: f32 = 1e-5;

fn check(variant: &str) {
    let want = reference_ids(variant);
    for mode in MODES {
        let mut m = Module::from_path(&data(&format!("tiny_{variant}.pte")), &[], mode).unwrap();
        let (ids, logits) = greedy(&mut m, N);
        assert_eq!(ids, want, "{variant} in {mode:?}");
        let d = max_logit_diff(variant, &logits);
        eprintln!("{variant} {mode:?}: max |logit diff| = {d:e}");
        assert!(d < TOL, "{variant} in {mode:?}: logits differ by {d}");
        let r = m.load_report();
        assert!(r.loads >= 2, "{r:?}");
    }
}

#[test]
fn portable_sdpa_matches_executorch() {
    check("portable_sdpa");
}

#[test]
fn portable_nosdpa_matches_executorch() {
    check("portable_nosdpa");
}

#[test]
fn portable_nosdpa_static_matches_executorch() {
    check("portable_nosdpa_static");
}

#[test]
fn constant_methods() {
    let mut m = Module::from_path(
        &data("tiny_portable_sdpa.pte"),
        &[],
        lmrun_loader::LoadMode::File,
    )
    .unwrap();
    let mut names = m.method_names().unwrap();
    names.sort();
    assert!(names.contains(&"forward".to_string()));
    assert_eq!(m.get("get_max_seq_len").unwrap(), EValue::Int(128));
    assert_eq!(m.get("get_max_context_len").unwrap(), EValue::Int(128));
    assert_eq!(m.get("get_vocab_size").unwrap(), EValue::Int(512));
    assert_eq!(m.get("get_n_layers").unwrap(), EValue::Int(2));
    assert_eq!(m.get("use_kv_cache").unwrap(), EValue::Bool(true));
    assert_eq!(m.get("get_bos_id").unwrap(), EValue::Int(0));
    assert_eq!(m.get("get_eos_ids").unwrap(), EValue::Int(1));
    assert_eq!(
        m.constant_values("get_max_seq_len"),
        Some(vec![EValue::Int(128)])
    );
    assert!(m.is_method_loaded("get_max_seq_len"));
    let md = m.metadata();
    assert_eq!(md.len(), 9);
    assert_eq!(md["get_max_context_len"], EValue::Int(128));
    assert_eq!(md["enable_dynamic_shape"], EValue::Bool(true));
    assert_eq!(md["use_sdpa_with_kv_cache"], EValue::Bool(true));
    let meta = m.method_meta("forward").unwrap();
    assert_eq!(meta.input_kinds, ["Tensor", "Tensor"]);
    let t0 = meta.input_tensors[0].as_ref().unwrap();
    assert_eq!(
        (t0.dtype, t0.sizes.clone()),
        (lmrun_pte::ScalarType::Long, vec![1, 127])
    );
    let o = meta.output_tensors[0].as_ref().unwrap();
    assert_eq!(
        (o.dtype, o.sizes.clone()),
        (lmrun_pte::ScalarType::Float, vec![1, 512])
    );
    assert!(!m.is_method_loaded("forward"));
}

#[test]
fn static_program_prefills_several_tokens_one_by_one() {
    let mut a = Module::from_path(
        &data("tiny_portable_nosdpa_static.pte"),
        &[],
        lmrun_loader::LoadMode::Mmap,
    )
    .unwrap();
    let all = a.forward_logits(&PROMPT, 0).unwrap();
    let (_, r) = read_npy(&data("logits_portable_nosdpa_static.npy"));
    let d = all
        .iter()
        .zip(&r[..512])
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(d < TOL, "{d}");
}
