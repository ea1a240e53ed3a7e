//! The table of GGUF/ggml tensor element types this crate understands: ids, block sizes and
//! bytes per block. Everything else (dequantization, dot products) dispatches on [`QType`].

use std::fmt;

/// A ggml tensor element type (plain or block-quantized).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 32 weights: f16 scale, 4-bit values centred at 8.
    Q4_0,
    /// 32 weights: f16 scale and min, 4-bit values.
    Q4_1,
    /// 32 weights: f16 scale, 5-bit values centred at 16.
    Q5_0,
    /// 32 weights: f16 scale and min, 5-bit values.
    Q5_1,
    /// 32 weights: f16 scale, int8 values.
    Q8_0,
    /// 32 weights: f16 scale, f16 sum, int8 values (activation type in ggml).
    Q8_1,
    /// 256 weights, 2-bit, 4-bit sub-block scales and mins.
    Q2K,
    /// 256 weights, 3-bit, 6-bit sub-block scales.
    Q3K,
    /// 256 weights, 4-bit, 6-bit sub-block scales and mins.
    Q4K,
    /// 256 weights, 5-bit, 6-bit sub-block scales and mins.
    Q5K,
    /// 256 weights, 6-bit, int8 sub-block scales.
    Q6K,
    /// 256 values: f32 scale, int8 values, 16 int16 block sums (activation type).
    Q8K,
    /// 32 weights: f16 scale, 4-bit indices into a non-linear table.
    IQ4NL,
    /// 256 weights: IQ4_NL values with 6-bit sub-block scales.
    IQ4XS,
}

impl QType {
    /// All supported types.
    pub const ALL: [QType; 17] = [
        QType::F32,
        QType::F16,
        QType::BF16,
        QType::Q4_0,
        QType::Q4_1,
        QType::Q5_0,
        QType::Q5_1,
        QType::Q8_0,
        QType::Q8_1,
        QType::Q2K,
        QType::Q3K,
        QType::Q4K,
        QType::Q5K,
        QType::Q6K,
        QType::Q8K,
        QType::IQ4NL,
        QType::IQ4XS,
    ];

    /// The type for a ggml type id (as stored in GGUF tensor infos).
    pub fn from_ggml_id(id: u32) -> Option<QType> {
        Some(match id {
            0 => QType::F32,
            1 => QType::F16,
            2 => QType::Q4_0,
            3 => QType::Q4_1,
            6 => QType::Q5_0,
            7 => QType::Q5_1,
            8 => QType::Q8_0,
            9 => QType::Q8_1,
            10 => QType::Q2K,
            11 => QType::Q3K,
            12 => QType::Q4K,
            13 => QType::Q5K,
            14 => QType::Q6K,
            15 => QType::Q8K,
            20 => QType::IQ4NL,
            23 => QType::IQ4XS,
            30 => QType::BF16,
            _ => return None,
        })
    }

    /// The ggml type id.
    pub fn ggml_id(self) -> u32 {
        match self {
            QType::F32 => 0,
            QType::F16 => 1,
            QType::Q4_0 => 2,
            QType::Q4_1 => 3,
            QType::Q5_0 => 6,
            QType::Q5_1 => 7,
            QType::Q8_0 => 8,
            QType::Q8_1 => 9,
            QType::Q2K => 10,
            QType::Q3K => 11,
            QType::Q4K => 12,
            QType::Q5K => 13,
            QType::Q6K => 14,
            QType::Q8K => 15,
            QType::IQ4NL => 20,
            QType::IQ4XS => 23,
            QType::BF16 => 30,
        }
    }

    /// Number of values per block (1 for the float types).
    pub fn block_size(self) -> usize {
        match self {
            QType::F32 | QType::F16 | QType::BF16 => 1,
            QType::Q4_0
            | QType::Q4_1
            | QType::Q5_0
            | QType::Q5_1
            | QType::Q8_0
            | QType::Q8_1
            | QType::IQ4NL => 32,
            QType::Q2K | QType::Q3K | QType::Q4K | QType::Q5K | QType::Q6K | QType::Q8K => 256,
            QType::IQ4XS => 256,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            QType::F32 => 4,
            QType::F16 | QType::BF16 => 2,
            QType::Q4_0 => 18,
            QType::Q4_1 => 20,
            QType::Q5_0 => 22,
            QType::Q5_1 => 24,
            QType::Q8_0 => 34,
            QType::Q8_1 => 36,
            QType::Q2K => 84,
            QType::Q3K => 110,
            QType::Q4K => 144,
            QType::Q5K => 176,
            QType::Q6K => 210,
            QType::Q8K => 292,
            QType::IQ4NL => 18,
            QType::IQ4XS => 136,
        }
    }

    /// Bytes of one row of `n_cols` values; `None` if `n_cols` is not a multiple of the block
    /// size or the size overflows.
    pub fn row_bytes(self, n_cols: usize) -> Option<usize> {
        let bs = self.block_size();
        if !n_cols.is_multiple_of(bs) {
            return None;
        }
        (n_cols / bs).checked_mul(self.type_size())
    }

    /// The ggml name, e.g. `"Q4_K"`.
    pub fn name(self) -> &'static str {
        match self {
            QType::F32 => "F32",
            QType::F16 => "F16",
            QType::BF16 => "BF16",
            QType::Q4_0 => "Q4_0",
            QType::Q4_1 => "Q4_1",
            QType::Q5_0 => "Q5_0",
            QType::Q5_1 => "Q5_1",
            QType::Q8_0 => "Q8_0",
            QType::Q8_1 => "Q8_1",
            QType::Q2K => "Q2_K",
            QType::Q3K => "Q3_K",
            QType::Q4K => "Q4_K",
            QType::Q5K => "Q5_K",
            QType::Q6K => "Q6_K",
            QType::Q8K => "Q8_K",
            QType::IQ4NL => "IQ4_NL",
            QType::IQ4XS => "IQ4_XS",
        }
    }

    /// Whether `matmul` accepts this type as a weight (all but the activation-only Q8_K/Q8_1).
    pub fn is_weight_type(self) -> bool {
        !matches!(self, QType::Q8K | QType::Q8_1)
    }
}

impl fmt::Display for QType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for t in QType::ALL {
            assert_eq!(QType::from_ggml_id(t.ggml_id()), Some(t));
        }
        assert_eq!(QType::from_ggml_id(4), None);
        assert_eq!(QType::Q4K.row_bytes(896), None);
        assert_eq!(QType::Q4K.row_bytes(1024), Some(576));
        assert_eq!(QType::F16.row_bytes(3), Some(6));
        assert_eq!(QType::Q8_0.row_bytes(usize::MAX - 31), None);
    }
}
