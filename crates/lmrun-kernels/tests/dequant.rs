//! Dequantization must equal the `gguf` Python package's `gguf.quants.dequantize` bit for bit
//! (vectors made by `scripts/kernels_make_vectors.py`).

use lmrun_kernels::{dequantize_row, ops::embedding_row, QType};

fn load(name: &str) -> (Vec<u8>, Vec<f32>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
    let raw = std::fs::read(format!("{dir}{name}.bin")).unwrap();
    let f = std::fs::read(format!("{dir}{name}.f32")).unwrap();
    let exp = f
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (raw, exp)
}

#[test]
fn dequantize_matches_gguf_py_for_every_type() {
    for t in QType::ALL {
        let (raw, exp) = load(t.name());
        let mut out = vec![0f32; exp.len()];
        dequantize_row(t, &raw, &mut out).unwrap();
        for (i, (a, b)) in out.iter().zip(&exp).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{t} value {i}: {a} vs {b}");
        }
        // embedding_row over the same bytes, one block-row at a time
        let cols = t.block_size().max(32);
        if exp.len() % cols == 0 {
            let mut row = vec![0f32; cols];
            for r in 0..exp.len() / cols {
                embedding_row(t, &raw, cols, r, &mut row).unwrap();
                assert_eq!(&row[..], &exp[r * cols..(r + 1) * cols], "{t} row {r}");
            }
            assert!(embedding_row(t, &raw, cols, exp.len() / cols, &mut row).is_err());
        }
    }
}

#[test]
fn dequantize_rejects_bad_lengths() {
    let (q4_0, q4k) = (QType::Q4_0.type_size(), vec![0u8; QType::Q4K.type_size()]);
    let mut out = vec![0f32; 2 * QType::Q4_0.block_size()];
    assert!(dequantize_row(QType::Q4_0, &vec![0u8; 2 * q4_0 - 1], &mut out).is_err());
    assert!(dequantize_row(QType::Q4_0, &vec![0u8; 2 * q4_0], &mut out).is_ok());
    assert!(dequantize_row(QType::Q4K, &q4k, &mut out).is_err());
    let mut out = vec![0f32; QType::Q4K.block_size()];
    assert!(dequantize_row(QType::Q4K, &q4k, &mut out).is_ok());
    assert!(dequantize_row(QType::Q4K, &[], &mut out).is_err());
}
