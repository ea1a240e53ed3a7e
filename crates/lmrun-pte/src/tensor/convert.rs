//! Element encoding: little-endian bytes of any [`ScalarType`] to f32 or i64 and back. Kernels
//! compute in f32 or i64 ([`Data`]) and [`encode`] writes the result in the output's dtype, so
//! no operator needs a case per dtype.

use half::{bf16, f16};

use super::{KResult, ScalarType};

/// Decode little-endian elements of `dtype` to f32.
pub(crate) fn bytes_to_f32(dtype: ScalarType, b: &[u8]) -> Vec<f32> {
    use ScalarType::*;
    match dtype {
        Float => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Half => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        BFloat16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Double => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        _ => bytes_to_i64(dtype, b)
            .into_iter()
            .map(|x| x as f32)
            .collect(),
    }
}

/// Decode little-endian elements of `dtype` to i64 (floats truncate).
pub(crate) fn bytes_to_i64(dtype: ScalarType, b: &[u8]) -> Vec<i64> {
    use ScalarType::*;
    match dtype {
        Byte | QUInt8 | QUInt4x2 | QUInt2x4 => b.iter().map(|&x| i64::from(x)).collect(),
        Bool => b.iter().map(|&x| i64::from(x != 0)).collect(),
        Char | QInt8 => b.iter().map(|&x| i64::from(x as i8)).collect(),
        Short => b
            .chunks_exact(2)
            .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        UInt16 | Bits16 => b
            .chunks_exact(2)
            .map(|c| i64::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Int | QInt32 => b
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        UInt32 => b
            .chunks_exact(4)
            .map(|c| i64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Long | UInt64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        Float | Half | BFloat16 | Double => bytes_to_f32(dtype, b)
            .into_iter()
            .map(|x| x as i64)
            .collect(),
    }
}

/// Computed data, before encoding into the output's dtype.
pub(crate) enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    /// Bytes already in the output's dtype.
    Raw(Vec<u8>),
}

pub(crate) fn encode(dtype: ScalarType, d: Data) -> KResult<Vec<u8>> {
    use ScalarType::*;
    if let Data::Raw(v) = d {
        return Ok(v);
    }
    let f = |v: f64| -> Vec<u8> {
        match dtype {
            Float => (v as f32).to_le_bytes().to_vec(),
            Double => v.to_le_bytes().to_vec(),
            Half => f16::from_f64(v).to_le_bytes().to_vec(),
            BFloat16 => bf16::from_f64(v).to_le_bytes().to_vec(),
            _ => Vec::new(),
        }
    };
    let i = |v: i64| -> Vec<u8> {
        match dtype {
            Byte | QUInt8 => vec![v as u8],
            Char | QInt8 => vec![v as i8 as u8],
            Bool => vec![u8::from(v != 0)],
            Short => (v as i16).to_le_bytes().to_vec(),
            UInt16 | Bits16 => (v as u16).to_le_bytes().to_vec(),
            Int | QInt32 => (v as i32).to_le_bytes().to_vec(),
            UInt32 => (v as u32).to_le_bytes().to_vec(),
            Long | UInt64 => v.to_le_bytes().to_vec(),
            _ => Vec::new(),
        }
    };
    if matches!(dtype, QUInt4x2 | QUInt2x4) {
        return Err(format!("cannot write {dtype:?} output"));
    }
    let mut out = Vec::new();
    match d {
        Data::F32(v) => {
            if dtype == Float {
                // Pre-sized and written in place: this is every f32 kernel's output, and the
                // fixed-size copies compile to vector stores.
                out = vec![0u8; v.len() * 4];
                for (o, x) in out.chunks_exact_mut(4).zip(&v) {
                    o.copy_from_slice(&x.to_le_bytes());
                }
            } else if dtype.is_float() {
                for x in v {
                    out.extend(f(f64::from(x)));
                }
            } else if dtype == Bool {
                out.extend(v.iter().map(|&x| u8::from(x != 0.0)));
            } else {
                for x in v {
                    out.extend(i(x as i64));
                }
            }
        }
        Data::I64(v) => {
            if dtype.is_float() {
                for x in v {
                    out.extend(f(x as f64));
                }
            } else if matches!(dtype, Char | QInt8 | Byte | QUInt8) {
                // One byte each (quantized activations): no per-element buffer.
                out.extend(v.iter().map(|&x| x as u8));
            } else if dtype == Long {
                out.reserve(v.len() * 8);
                for x in v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            } else {
                for x in v {
                    out.extend(i(x));
                }
            }
        }
        Data::Bool(v) => {
            for x in v {
                if dtype.is_float() {
                    out.extend(f(if x { 1.0 } else { 0.0 }));
                } else {
                    out.extend(i(i64::from(x)));
                }
            }
        }
        Data::Raw(_) => {}
    }
    Ok(out)
}
