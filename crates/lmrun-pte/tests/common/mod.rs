//! Shared helpers for the fixture tests: paths, the reference JSON, `.npy` logits, and the
//! greedy loop ExecuTorch's reference used (prompt ids, no BOS, 32 tokens).
#![allow(dead_code)]

pub mod fbb;

use std::path::{Path, PathBuf};

use lmrun_loader::LoadMode;
use lmrun_pte::{EValue, Module};

pub const PROMPT: [i64; 4] = [325, 259, 66, 337];
pub const N: usize = 32;

pub const MODES: [LoadMode; 4] = [
    LoadMode::File,
    LoadMode::Mmap,
    LoadMode::MmapUseMlock,
    LoadMode::MmapUseMlockIgnoreErrors,
];

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Read a little-endian f32 `.npy` (version 1 or 2 header): (shape, values).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let (hlen, start) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&b[start..start + hlen]).unwrap();
    assert!(header.contains("'<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"));
    let sh = &header[header.find("'shape': (").unwrap() + 10..];
    let sh = &sh[..sh.find(')').unwrap()];
    let shape: Vec<usize> = sh
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let v: Vec<f32> = b[start + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(v.len(), shape.iter().product::<usize>());
    (shape, v)
}

/// The reference ids of `run_<variant>.json` (`loop.ids`, falling back to `generated_ids`).
pub fn reference_ids(variant: &str) -> Vec<i64> {
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data(&format!("run_{variant}.json"))).unwrap())
            .unwrap();
    let l = &j["loop"];
    let ids = if l["ids"].is_array() {
        &l["ids"]
    } else {
        &l["generated_ids"]
    };
    ids.as_array()
        .unwrap_or_else(|| panic!("no ids in run_{variant}.json: {l}"))
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

pub fn argmax(v: &[f32]) -> i64 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as i64
}

/// Greedy generation as ExecuTorch's loop does it: prefill the prompt (all at once when the
/// program has dynamic shapes, else token by token), then one token per step. Returns the ids
/// and the logits of every step (step 0 = the prefill).
pub fn greedy(m: &mut Module, n: usize) -> (Vec<i64>, Vec<Vec<f32>>) {
    let dynamic = matches!(m.get("enable_dynamic_shape").unwrap(), EValue::Bool(true));
    let mut all = Vec::new();
    let mut logits = if dynamic {
        m.forward_logits(&PROMPT, 0).unwrap()
    } else {
        let mut l = Vec::new();
        for (i, &t) in PROMPT.iter().enumerate() {
            l = m.forward_logits(&[t], i as i64).unwrap();
        }
        l
    };
    let mut ids = Vec::new();
    for pos in (PROMPT.len() as i64..).take(n) {
        let t = argmax(&logits);
        ids.push(t);
        all.push(logits.clone());
        if ids.len() == n {
            break;
        }
        logits = m.forward_logits(&[t], pos).unwrap();
    }
    (ids, all)
}

/// Largest absolute difference between our logits and the reference `.npy`.
pub fn max_logit_diff(variant: &str, ours: &[Vec<f32>]) -> f32 {
    let (shape, r) = read_npy(&data(&format!("logits_{variant}.npy")));
    assert_eq!(shape[0], ours.len());
    let v = shape[1];
    let mut worst = 0f32;
    for (s, row) in ours.iter().enumerate() {
        assert_eq!(row.len(), v);
        for (a, b) in row.iter().zip(&r[s * v..(s + 1) * v]) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

/// Per step, the largest absolute difference between our logits and the reference `.npy`.
pub fn step_logit_diffs(variant: &str, ours: &[Vec<f32>]) -> Vec<f32> {
    let (shape, r) = read_npy(&data(&format!("logits_{variant}.npy")));
    let v = shape[1];
    ours.iter()
        .enumerate()
        .map(|(s, row)| {
            row.iter()
                .zip(&r[s * v..(s + 1) * v])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max)
        })
        .collect()
}
