//! The inspect summary against the dump ExecuTorch's own flatbuffer schema produced for every
//! fixture (`inspect_tiny.json`, `inspect_tiny_extra.json`): header, segments, constant and
//! named data, and per method the values, operators, instructions, delegates, tensor storage
//! and constant values. This validates the hand-written flatbuffer reader field by field.

mod common;

use std::collections::BTreeMap;

use common::data;
use serde_json::Value;

fn reference() -> Vec<Value> {
    let mut v = Vec::new();
    for f in ["inspect_tiny.json", "inspect_tiny_extra.json"] {
        let j: Value = serde_json::from_slice(&std::fs::read(data(f)).unwrap()).unwrap();
        v.extend(j.as_array().unwrap().iter().cloned());
    }
    v
}

fn counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

#[test]
fn pte_summaries_match_executorch_dump() {
    let mut checked = 0;
    for r in reference() {
        let file = r["file"].as_str().unwrap();
        if !file.ends_with(".pte") {
            continue;
        }
        let s = lmrun_pte::inspect_pte(&data(file)).unwrap();
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(s.size, r["size"].as_u64().unwrap(), "{file}");
        assert_eq!(j["extended_header"], r["extended_header"], "{file}");
        assert_eq!(j["segments"], r["segments"], "{file}");
        assert_eq!(
            s.constant_segment.map(|c| c.1 as u64),
            r["constant_segment"]["n_offsets"].as_u64(),
            "{file}"
        );
        assert_eq!(
            s.named_data.len(),
            r["named_data"].as_array().unwrap().len(),
            "{file}"
        );
        let plans = r["execution_plan"].as_array().unwrap();
        assert_eq!(s.methods.len(), plans.len(), "{file}");
        for (m, p) in s.methods.iter().zip(plans) {
            assert_eq!(m.name, p["name"].as_str().unwrap());
            assert_eq!(m.n_values as u64, p["n_values"].as_u64().unwrap());
            assert_eq!(serde_json::to_value(&m.inputs).unwrap(), p["inputs"]);
            assert_eq!(serde_json::to_value(&m.outputs).unwrap(), p["outputs"]);
            let vk: BTreeMap<String, u64> = m
                .value_kinds
                .iter()
                .map(|(k, v)| (k.clone(), *v as u64))
                .collect();
            assert_eq!(vk, counts(&p["value_kinds"]), "{file} {}", m.name);
            assert_eq!(serde_json::to_value(&m.operators).unwrap(), p["operators"]);
            let ik: BTreeMap<String, u64> = m
                .instruction_kinds
                .iter()
                .map(|(k, v)| (k.clone(), *v as u64))
                .collect();
            assert_eq!(ik, counts(&p["instruction_kinds"]));
            let kc: BTreeMap<String, u64> = m
                .kernel_call_counts
                .iter()
                .map(|(k, v)| (k.clone(), *v as u64))
                .collect();
            assert_eq!(kc, counts(&p["kernel_call_counts"]));
            // storage classes, under the dump's names
            let mut tl: BTreeMap<String, u64> = BTreeMap::new();
            for (k, v) in &m.tensor_locations {
                let name = match k.as_str() {
                    "constant" => "constant_segment",
                    "planned" | "planned_with_initial_value" => "planned(mutable/activation)",
                    "unplanned" => "other(dynamic/unallocated)",
                    "external" => "external(.ptd) fqn=set",
                    o => o,
                };
                *tl.entry(name.to_string()).or_insert(0) += *v as u64;
            }
            assert_eq!(tl, counts(&p["tensor_locations"]), "{file} {}", m.name);
            let ds = p["delegates"].as_array().unwrap();
            assert_eq!(m.delegates.len(), ds.len());
            for (d, rd) in m.delegates.iter().zip(ds) {
                assert_eq!(d.id, rd["id"].as_str().unwrap());
                assert_eq!(u64::from(d.index), rd["index"].as_u64().unwrap());
                assert_eq!(d.size, rd["size"].as_u64().unwrap());
                assert!(
                    !d.node_kinds.is_empty(),
                    "{file}: XNNPACK nodes not decoded"
                );
            }
            if let Some(cv) = p.get("constant_value") {
                assert_eq!(m.constant_value.as_ref(), Some(cv), "{file} {}", m.name);
            }
        }
        assert_eq!(s.metadata["get_max_seq_len"], Value::from(128));
        assert!(!s.to_text().is_empty());
        checked += 1;
    }
    assert_eq!(checked, 8);
}

#[test]
fn ptd_summaries_match_executorch_dump() {
    let mut checked = 0;
    for r in reference() {
        let file = r["file"].as_str().unwrap();
        if !file.ends_with(".ptd") {
            continue;
        }
        let s = lmrun_pte::inspect_ptd(&data(file)).unwrap();
        assert_eq!(
            serde_json::to_value(s.header).unwrap(),
            r["header"],
            "{file}"
        );
        let nd = r["named_data"].as_array().unwrap();
        assert_eq!(s.entries.len(), nd.len());
        for (e, re) in s.entries.iter().zip(nd) {
            assert_eq!(e.key, re["key"].as_str().unwrap());
            assert_eq!(
                u64::from(e.segment_index),
                re["segment_index"].as_u64().unwrap()
            );
            assert_eq!(e.size, re["size"].as_u64().unwrap());
            match &e.layout {
                Some(l) => {
                    assert_eq!(
                        serde_json::to_value(&l.sizes).unwrap(),
                        re["layout"]["sizes"]
                    );
                    assert_eq!(
                        l.scalar_type.to_string(),
                        re["layout"]["dtype"].as_str().unwrap()
                    );
                }
                None => assert!(re["layout"].is_null(), "{}", e.key),
            }
        }
        assert!(s.to_text().contains("FT01"));
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn inspect_file_sniffs_the_kind() {
    match lmrun_pte::inspect_file(&data("tiny_xnnpack_fp32_ptd.ptd")).unwrap() {
        lmrun_pte::Summary::Ptd(s) => assert_eq!(s.entries.len(), 38.min(s.entries.len())),
        _ => panic!("a .ptd summarised as a .pte"),
    }
    let s = lmrun_pte::inspect_file(&data("tiny_portable_sdpa.pte")).unwrap();
    assert!(matches!(s, lmrun_pte::Summary::Pte(_)));
    let j = serde_json::to_value(&s).unwrap();
    assert_eq!(j["kind"], "pte");
    assert!(s.to_text().contains("llama::custom_sdpa.out"));
    assert_eq!(lmrun_pte::sniff(b"\0\0\0\0ET12"), Some("pte"));
    assert_eq!(lmrun_pte::sniff(b"GGUF\0\0\0\0"), None);
}
