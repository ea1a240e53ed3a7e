//! The table of GGUF/ggml tensor element types this crate understands: ids, names, block sizes,
//! bytes per block and activation partners. Everything here is generated from the one list in
//! [`crate::formats`] (`with_formats!`) and each format's [`QuantFormat`] constants, so a
//! format's numbers are written once, in its own file.

use std::fmt;

use crate::fn_types::Partner;
use crate::formats::{self, with_formats, QuantFormat};
use crate::partner::ActKind;

/// Generates [`QType`] and its tables from the format list.
macro_rules! qtype_tables {
    ($($(#[$doc:meta])* $v:ident,)*) => {
        /// A ggml tensor element type (plain or block-quantized).
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum QType {
            $($(#[$doc])* $v,)*
        }

        /// Number of formats in the list.
        const COUNT: usize = [$(stringify!($v)),*].len();

        impl QType {
            /// All supported types.
            pub const ALL: [QType; COUNT] = [$(QType::$v),*];

            /// The type for a ggml type id (as stored in GGUF tensor infos).
            pub fn from_ggml_id(id: u32) -> Option<QType> {
                $(if id == <formats::$v as QuantFormat>::GGML_ID {
                    return Some(QType::$v);
                })*
                None
            }

            /// The ggml type id.
            pub fn ggml_id(self) -> u32 {
                match self {
                    $(QType::$v => <formats::$v as QuantFormat>::GGML_ID,)*
                }
            }

            /// Number of values per block (1 for the float types).
            pub fn block_size(self) -> usize {
                match self {
                    $(QType::$v => <formats::$v as QuantFormat>::BLOCK,)*
                }
            }

            /// Bytes per block.
            pub fn type_size(self) -> usize {
                match self {
                    $(QType::$v => <formats::$v as QuantFormat>::BYTES,)*
                }
            }

            /// The ggml name, e.g. `"Q4_K"`.
            pub fn name(self) -> &'static str {
                match self {
                    $(QType::$v => <formats::$v as QuantFormat>::NAME,)*
                }
            }

            /// Byte offsets of the f16 scale fields in one block (empty for the float types
            /// and Q8_K), for making random blocks with sane scales.
            pub fn f16_scale_offsets(self) -> &'static [usize] {
                match self {
                    $(QType::$v => <formats::$v as QuantFormat>::F16_SCALES,)*
                }
            }

            /// Which activation format this type's dot product consumes.
            pub fn act_kind(self) -> ActKind {
                match self {
                    $(QType::$v => <<formats::$v as QuantFormat>::Act as Partner>::KIND,)*
                }
            }

            /// Whether `matmul` accepts this type as a weight (all but the activation-only
            /// Q8_K/Q8_1).
            pub fn is_weight_type(self) -> bool {
                match self {
                    $(QType::$v => <<formats::$v as QuantFormat>::Act as Partner>::HAS_DOT,)*
                }
            }
        }
    };
}

with_formats!(qtype_tables);

impl QType {
    /// Bytes of one row of `n_cols` values; `None` if `n_cols` is not a multiple of the block
    /// size or the size overflows.
    pub fn row_bytes(self, n_cols: usize) -> Option<usize> {
        let bs = self.block_size();
        if !n_cols.is_multiple_of(bs) {
            return None;
        }
        (n_cols / bs).checked_mul(self.type_size())
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
