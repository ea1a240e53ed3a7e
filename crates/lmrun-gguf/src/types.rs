//! The ggml tensor types: every type id that llama.cpp defines (and the ids it has removed),
//! with name, block size and type size. A GGUF file names each tensor's type by id; this table
//! is what turns an id into a byte size, so a file whose quantization we cannot compute still
//! parses, and `inspect` can name every tensor's type.

use std::fmt;

/// A ggml tensor type (`enum ggml_type` in llama.cpp's `ggml.h`), identified by its id in GGUF
/// tensor infos.
///
/// Ids 4, 5 (`Q4_2`, `Q4_3`), 31–33 (`Q4_0_4_4`, `Q4_0_4_8`, `Q4_0_8_8`) and 36–38
/// (`IQ4_NL_4_4`, `IQ4_NL_4_8`, `IQ4_NL_8_8`) were removed from ggml; they are still known here
/// (with the block layout they had) so that a file using them is named precisely.
/// [`GgmlType::is_removed`] tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[allow(non_camel_case_types)]
#[repr(u32)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32 = 0,
    /// 16-bit IEEE float.
    F16 = 1,
    /// 4-bit, blocks of 32 with an f16 scale.
    Q4_0 = 2,
    /// 4-bit, blocks of 32 with f16 scale and minimum.
    Q4_1 = 3,
    /// Removed (2023): 4-bit, blocks of 16 with an f16 scale.
    Q4_2 = 4,
    /// Removed (2023): 4-bit, blocks of 16 with f16 scale and minimum.
    Q4_3 = 5,
    /// 5-bit, blocks of 32 with an f16 scale.
    Q5_0 = 6,
    /// 5-bit, blocks of 32 with f16 scale and minimum.
    Q5_1 = 7,
    /// 8-bit, blocks of 32 with an f16 scale.
    Q8_0 = 8,
    /// 8-bit, blocks of 32 with f16 scale and sum (an activation type).
    Q8_1 = 9,
    /// 2-bit k-quant, super-blocks of 256.
    Q2_K = 10,
    /// 3-bit k-quant, super-blocks of 256.
    Q3_K = 11,
    /// 4-bit k-quant, super-blocks of 256.
    Q4_K = 12,
    /// 5-bit k-quant, super-blocks of 256.
    Q5_K = 13,
    /// 6-bit k-quant, super-blocks of 256.
    Q6_K = 14,
    /// 8-bit k-quant, super-blocks of 256 (an activation type).
    Q8_K = 15,
    /// i-quant, 2.06 bits per weight.
    IQ2_XXS = 16,
    /// i-quant, 2.31 bits per weight.
    IQ2_XS = 17,
    /// i-quant, 3.06 bits per weight.
    IQ3_XXS = 18,
    /// i-quant, 1.56 bits per weight.
    IQ1_S = 19,
    /// 4-bit non-linear, blocks of 32.
    IQ4_NL = 20,
    /// i-quant, 3.44 bits per weight.
    IQ3_S = 21,
    /// i-quant, 2.5 bits per weight.
    IQ2_S = 22,
    /// 4-bit non-linear, super-blocks of 256.
    IQ4_XS = 23,
    /// 8-bit signed integer.
    I8 = 24,
    /// 16-bit signed integer.
    I16 = 25,
    /// 32-bit signed integer.
    I32 = 26,
    /// 64-bit signed integer.
    I64 = 27,
    /// 64-bit IEEE float.
    F64 = 28,
    /// i-quant, 1.75 bits per weight.
    IQ1_M = 29,
    /// bfloat16.
    BF16 = 30,
    /// Removed: Q4_0 repacked 4x4 for ARM (now repacked at load time instead).
    Q4_0_4_4 = 31,
    /// Removed: Q4_0 repacked 4x8 for ARM.
    Q4_0_4_8 = 32,
    /// Removed: Q4_0 repacked 8x8 for ARM.
    Q4_0_8_8 = 33,
    /// Ternary, 1.69 bits per weight.
    TQ1_0 = 34,
    /// Ternary, 2.06 bits per weight.
    TQ2_0 = 35,
    /// Removed: IQ4_NL repacked 4x4.
    IQ4_NL_4_4 = 36,
    /// Removed: IQ4_NL repacked 4x8.
    IQ4_NL_4_8 = 37,
    /// Removed: IQ4_NL repacked 8x8.
    IQ4_NL_8_8 = 38,
    /// OCP microscaling FP4 (E2M1 values, E8M0 scale per 32).
    MXFP4 = 39,
    /// NVIDIA FP4 (E2M1 values, UE4M3 scale per 16, blocks of 64).
    NVFP4 = 40,
    /// 1-bit, blocks of 128 with an f16 scale.
    Q1_0 = 41,
}

/// Name, block size (elements per block), type size (bytes per block) and removed flag.
struct Traits {
    name: &'static str,
    block_size: u32,
    type_size: u32,
    removed: bool,
}

const fn t(name: &'static str, block_size: u32, type_size: u32) -> Traits {
    Traits {
        name,
        block_size,
        type_size,
        removed: false,
    }
}

const fn removed(name: &'static str, block_size: u32, type_size: u32) -> Traits {
    Traits {
        name,
        block_size,
        type_size,
        removed: true,
    }
}

impl GgmlType {
    /// Every known type, in id order.
    pub const ALL: [GgmlType; 42] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q4_2,
        GgmlType::Q4_3,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::Q4_0_4_4,
        GgmlType::Q4_0_4_8,
        GgmlType::Q4_0_8_8,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::IQ4_NL_4_4,
        GgmlType::IQ4_NL_4_8,
        GgmlType::IQ4_NL_8_8,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
    ];

    /// The type with this id, or `None` for an id no ggml version defined.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.get(usize::try_from(id).ok()?).copied()
    }

    /// The id stored in GGUF tensor infos.
    pub fn id(self) -> u32 {
        self as u32
    }

    fn traits(self) -> Traits {
        use GgmlType::*;
        match self {
            F32 => t("F32", 1, 4),
            F16 => t("F16", 1, 2),
            Q4_0 => t("Q4_0", 32, 18),
            Q4_1 => t("Q4_1", 32, 20),
            Q4_2 => removed("Q4_2", 16, 10),
            Q4_3 => removed("Q4_3", 16, 12),
            Q5_0 => t("Q5_0", 32, 22),
            Q5_1 => t("Q5_1", 32, 24),
            Q8_0 => t("Q8_0", 32, 34),
            // ggml's block_q8_1 is two f16 and 32 bytes (36); gguf-py's table still says 40,
            // from the days of f32 scales. llama.cpp sizes tensors with ggml's 36.
            Q8_1 => t("Q8_1", 32, 36),
            Q2_K => t("Q2_K", 256, 84),
            Q3_K => t("Q3_K", 256, 110),
            Q4_K => t("Q4_K", 256, 144),
            Q5_K => t("Q5_K", 256, 176),
            Q6_K => t("Q6_K", 256, 210),
            Q8_K => t("Q8_K", 256, 292),
            IQ2_XXS => t("IQ2_XXS", 256, 66),
            IQ2_XS => t("IQ2_XS", 256, 74),
            IQ3_XXS => t("IQ3_XXS", 256, 98),
            IQ1_S => t("IQ1_S", 256, 50),
            IQ4_NL => t("IQ4_NL", 32, 18),
            IQ3_S => t("IQ3_S", 256, 110),
            IQ2_S => t("IQ2_S", 256, 82),
            IQ4_XS => t("IQ4_XS", 256, 136),
            I8 => t("I8", 1, 1),
            I16 => t("I16", 1, 2),
            I32 => t("I32", 1, 4),
            I64 => t("I64", 1, 8),
            F64 => t("F64", 1, 8),
            IQ1_M => t("IQ1_M", 256, 56),
            BF16 => t("BF16", 1, 2),
            Q4_0_4_4 => removed("Q4_0_4_4", 32, 18),
            Q4_0_4_8 => removed("Q4_0_4_8", 32, 18),
            Q4_0_8_8 => removed("Q4_0_8_8", 32, 18),
            TQ1_0 => t("TQ1_0", 256, 54),
            TQ2_0 => t("TQ2_0", 256, 66),
            IQ4_NL_4_4 => removed("IQ4_NL_4_4", 32, 18),
            IQ4_NL_4_8 => removed("IQ4_NL_4_8", 32, 18),
            IQ4_NL_8_8 => removed("IQ4_NL_8_8", 32, 18),
            MXFP4 => t("MXFP4", 32, 17),
            NVFP4 => t("NVFP4", 64, 36),
            Q1_0 => t("Q1_0", 128, 18),
        }
    }

    /// The name llama.cpp uses (`"Q4_K"`, `"BF16"`, …).
    pub fn name(self) -> &'static str {
        self.traits().name
    }

    /// The type with this name (as [`GgmlType::name`] spells it, case-insensitive).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        GgmlType::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Elements per block (1 for the plain float and integer types).
    pub fn block_size(self) -> u32 {
        self.traits().block_size
    }

    /// Bytes per block.
    pub fn type_size(self) -> u32 {
        self.traits().type_size
    }

    /// Whether ggml has removed this type (files using it are refused by current llama.cpp).
    pub fn is_removed(self) -> bool {
        self.traits().removed
    }

    /// Whether the type is block-quantized (block size above 1).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes of one row of `n` elements, or `None` if `n` is not a multiple of the block size
    /// or the size overflows `u64`.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let bs = u64::from(self.block_size());
        if n % bs != 0 {
            return None;
        }
        (n / bs).checked_mul(u64::from(self.type_size()))
    }

    /// Bytes of a tensor with this shape (ggml order: `shape[0]` is the row length), or `None`
    /// if the row length is not a multiple of the block size or the size overflows `u64`.
    /// An empty shape is a single element.
    pub fn tensor_bytes(self, shape: &[u64]) -> Option<u64> {
        let (&row, rest) = match shape.split_first() {
            Some(x) => x,
            None => return self.row_bytes(1),
        };
        let rows = rest.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        self.row_bytes(row)?.checked_mul(rows)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for GgmlType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for (i, t) in GgmlType::ALL.iter().enumerate() {
            assert_eq!(t.id() as usize, i, "{t}");
            assert_eq!(GgmlType::from_id(t.id()), Some(*t));
            assert_eq!(GgmlType::from_name(t.name()), Some(*t));
        }
        assert_eq!(GgmlType::from_id(42), None);
        assert_eq!(GgmlType::from_id(u32::MAX), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(GgmlType::Q4_K.tensor_bytes(&[256, 2]), Some(288));
        assert_eq!(GgmlType::Q4_K.tensor_bytes(&[255, 2]), None);
        assert_eq!(GgmlType::F32.tensor_bytes(&[]), Some(4));
        assert_eq!(GgmlType::F32.tensor_bytes(&[u64::MAX, 2]), None);
        assert_eq!(GgmlType::Q8_0.row_bytes(64), Some(68));
        assert!(GgmlType::Q4_0_4_4.is_removed());
        assert!(!GgmlType::MXFP4.is_removed());
    }
}
