//! The values a caller passes to and gets from a method: [`EValue`] and the owned [`Tensor`]
//! (dtype, sizes, contiguous little-endian bytes), plus the [`ScalarType`] codes of
//! `scalar_type.fbs`.

use serde::Serialize;

/// ExecuTorch `ScalarType` (the codes of `scalar_type.fbs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ScalarType {
    /// u8.
    Byte,
    /// i8.
    Char,
    /// i16.
    Short,
    /// i32.
    Int,
    /// i64.
    Long,
    /// f16.
    Half,
    /// f32.
    Float,
    /// f64.
    Double,
    /// bool (one byte).
    Bool,
    /// Quantized i8.
    QInt8,
    /// Quantized u8.
    QUInt8,
    /// Quantized i32.
    QInt32,
    /// bf16.
    BFloat16,
    /// Two u4 per byte.
    QUInt4x2,
    /// Four u2 per byte.
    QUInt2x4,
    /// 16 raw bits.
    Bits16,
    /// u16.
    UInt16,
    /// u32.
    UInt32,
    /// u64.
    UInt64,
}

impl ScalarType {
    /// From the schema code.
    pub fn from_code(c: i8) -> Option<ScalarType> {
        use ScalarType::*;
        Some(match c {
            0 => Byte,
            1 => Char,
            2 => Short,
            3 => Int,
            4 => Long,
            5 => Half,
            6 => Float,
            7 => Double,
            11 => Bool,
            12 => QInt8,
            13 => QUInt8,
            14 => QInt32,
            15 => BFloat16,
            16 => QUInt4x2,
            17 => QUInt2x4,
            22 => Bits16,
            27 => UInt16,
            28 => UInt32,
            29 => UInt64,
            _ => return None,
        })
    }

    /// Bytes per element (packed sub-byte types count as 1).
    pub fn size(self) -> usize {
        use ScalarType::*;
        match self {
            Byte | Char | Bool | QInt8 | QUInt8 | QUInt4x2 | QUInt2x4 => 1,
            Short | Half | BFloat16 | Bits16 | UInt16 => 2,
            Int | Float | QInt32 | UInt32 => 4,
            Long | Double | UInt64 => 8,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            ScalarType::Half | ScalarType::Float | ScalarType::Double | ScalarType::BFloat16
        )
    }
}

/// An owned, contiguous tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub dtype: ScalarType,
    /// Sizes.
    pub sizes: Vec<usize>,
    /// Little-endian element bytes, `numel * dtype.size()` long.
    pub data: Vec<u8>,
}

impl Tensor {
    /// An f32 tensor.
    pub fn from_f32(sizes: &[usize], v: &[f32]) -> Tensor {
        Tensor {
            dtype: ScalarType::Float,
            sizes: sizes.to_vec(),
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// An i64 tensor.
    pub fn from_i64(sizes: &[usize], v: &[i64]) -> Tensor {
        Tensor {
            dtype: ScalarType::Long,
            sizes: sizes.to_vec(),
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        super::prod(&self.sizes)
    }

    /// The elements as f32 (converting from any numeric dtype).
    pub fn to_f32(&self) -> Vec<f32> {
        super::bytes_to_f32(self.dtype, &self.data)
    }

    /// The elements as i64 (converting from any numeric dtype).
    pub fn to_i64(&self) -> Vec<i64> {
        super::bytes_to_i64(self.dtype, &self.data)
    }
}

/// A value passed to or returned by a method (ExecuTorch's `EValue`).
#[derive(Debug, Clone, PartialEq)]
pub enum EValue {
    /// None.
    None,
    /// Integer.
    Int(i64),
    /// Double.
    Double(f64),
    /// Boolean.
    Bool(bool),
    /// Tensor.
    Tensor(Tensor),
    /// String.
    String(String),
    /// Integer list.
    IntList(Vec<i64>),
    /// Double list.
    DoubleList(Vec<f64>),
    /// Bool list.
    BoolList(Vec<bool>),
    /// Tensor list.
    TensorList(Vec<Tensor>),
}

impl From<Tensor> for EValue {
    fn from(t: Tensor) -> Self {
        EValue::Tensor(t)
    }
}

impl EValue {
    /// The integer, if this is an Int (or a Bool).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            EValue::Int(i) => Some(*i),
            EValue::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
    /// The bool, if this is a Bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            EValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// The tensor, if this is one.
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            EValue::Tensor(t) => Some(t),
            _ => None,
        }
    }
}
