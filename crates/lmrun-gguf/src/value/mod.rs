//! Metadata values. GGUF metadata is a list of typed key/value pairs (integers of every width,
//! floats, bools, strings and arrays, arrays of arrays included); this module holds them in
//! Rust types and converts them for typed lookups, so model and tokenizer code asks for
//! `u32` or `&[String]` and gets an error naming the key and the type found instead of a guess.

use std::fmt;

mod le;
mod str_array;

pub use le::{LeArray, LeNum};
pub use str_array::{StrArray, StrArrayFull, StrIter, MARK_STRIDE};

/// The value type ids of GGUF metadata (`gguf_type` in llama.cpp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    /// `u8`
    U8 = 0,
    /// `i8`
    I8 = 1,
    /// `u16`
    U16 = 2,
    /// `i16`
    I16 = 3,
    /// `u32`
    U32 = 4,
    /// `i32`
    I32 = 5,
    /// `f32`
    F32 = 6,
    /// `bool` (one byte, 0 or 1)
    Bool = 7,
    /// UTF-8 string (u64 length, then bytes)
    String = 8,
    /// Array (u32 element type, u64 count, then elements)
    Array = 9,
    /// `u64`
    U64 = 10,
    /// `i64`
    I64 = 11,
    /// `f64`
    F64 = 12,
}

impl ValueType {
    /// The type with this id.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The lower-case name used in messages and JSON (`"u32"`, `"string"`, `"array"`, …).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Bytes of one value of a fixed-size type (`None` for strings and arrays).
    pub fn fixed_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// `u8`
    U8(u8),
    /// `i8`
    I8(i8),
    /// `u16`
    U16(u16),
    /// `i16`
    I16(i16),
    /// `u32`
    U32(u32),
    /// `i32`
    I32(i32),
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f32`
    F32(f32),
    /// `f64`
    F64(f64),
    /// `bool`
    Bool(bool),
    /// A string (invalid UTF-8 is replaced with U+FFFD, with a warning in the log).
    String(String),
    /// An array.
    Array(MetaArray),
}

/// A metadata array: homogeneous, stored as a typed vector.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaArray {
    /// `u8[]`
    U8(LeArray<u8>),
    /// `i8[]`
    I8(LeArray<i8>),
    /// `u16[]`
    U16(LeArray<u16>),
    /// `i16[]`
    I16(LeArray<i16>),
    /// `u32[]`
    U32(LeArray<u32>),
    /// `i32[]`
    I32(LeArray<i32>),
    /// `u64[]`
    U64(LeArray<u64>),
    /// `i64[]`
    I64(LeArray<i64>),
    /// `f32[]`
    F32(LeArray<f32>),
    /// `f64[]`
    F64(LeArray<f64>),
    /// `bool[]`
    Bool(Vec<bool>),
    /// `string[]`, stored compactly (a 262,144-token vocabulary is one arena, not 262,144
    /// heap strings).
    String(StrArray),
    /// An array of arrays (each inner array has its own element type).
    Array(Vec<MetaArray>),
}

impl MetaValue {
    /// The GGUF type of this value.
    pub fn value_type(&self) -> ValueType {
        use MetaValue as V;
        match self {
            V::U8(_) => ValueType::U8,
            V::I8(_) => ValueType::I8,
            V::U16(_) => ValueType::U16,
            V::I16(_) => ValueType::I16,
            V::U32(_) => ValueType::U32,
            V::I32(_) => ValueType::I32,
            V::U64(_) => ValueType::U64,
            V::I64(_) => ValueType::I64,
            V::F32(_) => ValueType::F32,
            V::F64(_) => ValueType::F64,
            V::Bool(_) => ValueType::Bool,
            V::String(_) => ValueType::String,
            V::Array(_) => ValueType::Array,
        }
    }

    /// A description of the type for messages: `u32`, `string`, `array<f32>[262144]`, …
    pub fn type_description(&self) -> String {
        match self {
            MetaValue::Array(a) => a.type_description(),
            v => v.value_type().name().to_string(),
        }
    }

    /// The value as an `i128` if it is an integer of any width (bools are not integers).
    pub fn as_integer(&self) -> Option<i128> {
        use MetaValue as V;
        Some(match *self {
            V::U8(x) => x.into(),
            V::I8(x) => x.into(),
            V::U16(x) => x.into(),
            V::I16(x) => x.into(),
            V::U32(x) => x.into(),
            V::I32(x) => x.into(),
            V::U64(x) => x.into(),
            V::I64(x) => x.into(),
            _ => return None,
        })
    }

    /// The value as an `f64` if it is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(x) => Some(x.into()),
            MetaValue::F64(x) => Some(x),
            _ => self.as_integer().map(|i| i as f64),
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, if this is an array.
    pub fn as_array(&self) -> Option<&MetaArray> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl MetaArray {
    /// The element type.
    pub fn element_type(&self) -> ValueType {
        use MetaArray as A;
        match self {
            A::U8(_) => ValueType::U8,
            A::I8(_) => ValueType::I8,
            A::U16(_) => ValueType::U16,
            A::I16(_) => ValueType::I16,
            A::U32(_) => ValueType::U32,
            A::I32(_) => ValueType::I32,
            A::U64(_) => ValueType::U64,
            A::I64(_) => ValueType::I64,
            A::F32(_) => ValueType::F32,
            A::F64(_) => ValueType::F64,
            A::Bool(_) => ValueType::Bool,
            A::String(_) => ValueType::String,
            A::Array(_) => ValueType::Array,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        use MetaArray as A;
        match self {
            A::U8(v) => v.len(),
            A::I8(v) => v.len(),
            A::U16(v) => v.len(),
            A::I16(v) => v.len(),
            A::U32(v) => v.len(),
            A::I32(v) => v.len(),
            A::U64(v) => v.len(),
            A::I64(v) => v.len(),
            A::F32(v) => v.len(),
            A::F64(v) => v.len(),
            A::Bool(v) => v.len(),
            A::String(v) => v.len(),
            A::Array(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `array<f32>[262144]`, `array<array>[2]`, …
    pub fn type_description(&self) -> String {
        format!("array<{}>[{}]", self.element_type(), self.len())
    }

    /// Element `i` as a scalar [`MetaValue`] (nested arrays are cloned).
    pub fn get(&self, i: usize) -> Option<MetaValue> {
        use MetaArray as A;
        use MetaValue as V;
        Some(match self {
            A::U8(v) => V::U8(v.get(i)?),
            A::I8(v) => V::I8(v.get(i)?),
            A::U16(v) => V::U16(v.get(i)?),
            A::I16(v) => V::I16(v.get(i)?),
            A::U32(v) => V::U32(v.get(i)?),
            A::I32(v) => V::I32(v.get(i)?),
            A::U64(v) => V::U64(v.get(i)?),
            A::I64(v) => V::I64(v.get(i)?),
            A::F32(v) => V::F32(v.get(i)?),
            A::F64(v) => V::F64(v.get(i)?),
            A::Bool(v) => V::Bool(*v.get(i)?),
            A::String(v) => V::String(v.get(i)?.to_string()),
            A::Array(v) => V::Array(v.get(i)?.clone()),
        })
    }

    /// The integer elements widened to `i64`, if this is an array of integers that all fit.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        use MetaArray as A;
        Some(match self {
            A::U8(v) => v.iter().map(i64::from).collect(),
            A::I8(v) => v.iter().map(i64::from).collect(),
            A::U16(v) => v.iter().map(i64::from).collect(),
            A::I16(v) => v.iter().map(i64::from).collect(),
            A::U32(v) => v.iter().map(i64::from).collect(),
            A::I32(v) => v.iter().map(i64::from).collect(),
            A::I64(v) => v.to_vec(),
            A::U64(v) => v
                .iter()
                .map(|x| i64::try_from(x).ok())
                .collect::<Option<_>>()?,
            _ => return None,
        })
    }
}

/// A Rust type that a metadata value can be read as (see [`crate::Metadata::get`]).
///
/// Integer types accept a value of any integer width whose value fits (GGUF writers differ on
/// `u32` vs `i32` vs `u64` for counts); `f32`/`f64` accept either float width; everything else
/// needs the exact type.
pub trait FromMeta<'a>: Sized {
    /// The type name for error messages.
    const EXPECTED: &'static str;
    /// Convert, or say why not.
    fn from_meta(value: &'a MetaValue) -> Result<Self, Mismatch>;
}

/// Why a [`FromMeta`] conversion failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// The value has another type.
    Type,
    /// The value is an integer that does not fit.
    Range,
}

macro_rules! int_from_meta {
    ($($t:ty),*) => {$(
        impl<'a> FromMeta<'a> for $t {
            const EXPECTED: &'static str = stringify!($t);
            fn from_meta(value: &'a MetaValue) -> Result<Self, Mismatch> {
                let i = value.as_integer().ok_or(Mismatch::Type)?;
                <$t>::try_from(i).map_err(|_| Mismatch::Range)
            }
        }
    )*};
}
int_from_meta!(u8, i8, u16, i16, u32, i32, u64, i64, usize);

impl<'a> FromMeta<'a> for f32 {
    const EXPECTED: &'static str = "f32";
    fn from_meta(value: &'a MetaValue) -> Result<Self, Mismatch> {
        match *value {
            MetaValue::F32(x) => Ok(x),
            MetaValue::F64(x) => Ok(x as f32),
            _ => Err(Mismatch::Type),
        }
    }
}

impl<'a> FromMeta<'a> for f64 {
    const EXPECTED: &'static str = "f64";
    fn from_meta(value: &'a MetaValue) -> Result<Self, Mismatch> {
        match *value {
            MetaValue::F32(x) => Ok(x.into()),
            MetaValue::F64(x) => Ok(x),
            _ => Err(Mismatch::Type),
        }
    }
}

impl<'a> FromMeta<'a> for bool {
    const EXPECTED: &'static str = "bool";
    fn from_meta(value: &'a MetaValue) -> Result<Self, Mismatch> {
        match *value {
            MetaValue::Bool(b) => Ok(b),
            _ => Err(Mismatch::Type),
        }
    }
}

impl<'a> FromMeta<'a> for &'a str {
    const EXPECTED: &'static str = "string";
    fn from_meta(value: &'a MetaValue) -> Result<Self, Mismatch> {
        value.as_str().ok_or(Mismatch::Type)
    }
}

impl<'a> FromMeta<'a> for &'a MetaValue {
    const EXPECTED: &'static str = "any";
    fn from_meta(value: &'a MetaValue) -> Result<Self, Mismatch> {
        Ok(value)
    }
}

impl<'a> FromMeta<'a> for &'a MetaArray {
    const EXPECTED: &'static str = "array";
    fn from_meta(value: &'a MetaValue) -> Result<Self, Mismatch> {
        value.as_array().ok_or(Mismatch::Type)
    }
}

macro_rules! array_from_meta {
    ($($t:ty => $variant:ident, $name:literal);* $(;)?) => {$(
        impl<'a> FromMeta<'a> for $t {
            const EXPECTED: &'static str = $name;
            fn from_meta(value: &'a MetaValue) -> Result<Self, Mismatch> {
                match value {
                    MetaValue::Array(MetaArray::$variant(v)) => Ok(v),
                    _ => Err(Mismatch::Type),
                }
            }
        }
    )*};
}
array_from_meta! {
    &'a LeArray<u8> => U8, "array<u8>";
    &'a LeArray<i8> => I8, "array<i8>";
    &'a LeArray<u16> => U16, "array<u16>";
    &'a LeArray<i16> => I16, "array<i16>";
    &'a LeArray<u32> => U32, "array<u32>";
    &'a LeArray<i32> => I32, "array<i32>";
    &'a LeArray<u64> => U64, "array<u64>";
    &'a LeArray<i64> => I64, "array<i64>";
    &'a LeArray<f32> => F32, "array<f32>";
    &'a LeArray<f64> => F64, "array<f64>";
    &'a [bool] => Bool, "array<bool>";
    &'a [MetaArray] => Array, "array<array>";
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MetaValue as V;
        match self {
            V::U8(x) => write!(f, "{x}"),
            V::I8(x) => write!(f, "{x}"),
            V::U16(x) => write!(f, "{x}"),
            V::I16(x) => write!(f, "{x}"),
            V::U32(x) => write!(f, "{x}"),
            V::I32(x) => write!(f, "{x}"),
            V::U64(x) => write!(f, "{x}"),
            V::I64(x) => write!(f, "{x}"),
            V::F32(x) => write!(f, "{x}"),
            V::F64(x) => write!(f, "{x}"),
            V::Bool(x) => write!(f, "{x}"),
            V::String(s) => write!(f, "{s:?}"),
            V::Array(a) => write!(f, "{}", a.type_description()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmrun_loader::Buffer;

    #[test]
    fn integer_widening() {
        assert_eq!(u32::from_meta(&MetaValue::U64(7)), Ok(7));
        assert_eq!(u32::from_meta(&MetaValue::I32(-1)), Err(Mismatch::Range));
        assert_eq!(u32::from_meta(&MetaValue::F32(1.0)), Err(Mismatch::Type));
        assert_eq!(i64::from_meta(&MetaValue::U8(255)), Ok(255));
        assert_eq!(f32::from_meta(&MetaValue::F64(0.5)), Ok(0.5));
        assert_eq!(bool::from_meta(&MetaValue::U8(1)), Err(Mismatch::Type));
    }

    #[test]
    fn slices() {
        let v = MetaValue::Array(MetaArray::F32(vec![1.0, 2.0].into()));
        let strs = MetaValue::Array(MetaArray::String(["a", "", "ü"].iter().collect()));
        let got = <&StrArray>::from_meta(&strs).unwrap();
        assert_eq!(got.iter().collect::<Vec<_>>(), ["a", "", "ü"]);
        assert_eq!((got.len(), got.text_len(), &got[2]), (3, 3, "ü"));
        assert_eq!(got.get(3), None);
        assert_eq!(<&StrArray>::from_meta(&v), Err(Mismatch::Type));
        let f = <&LeArray<f32>>::from_meta(&v).unwrap();
        assert_eq!(
            (f.to_vec(), f.as_slice()),
            (vec![1.0, 2.0], Some(&[1.0f32, 2.0][..]))
        );
        assert_eq!(<&LeArray<i32>>::from_meta(&v), Err(Mismatch::Type));
        assert_eq!(v.type_description(), "array<f32>[2]");
    }
    /// GGUF's encoding of a string array's elements.
    fn encode(strs: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        for s in strs {
            b.extend_from_slice(&(s.len() as u64).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        b
    }

    #[test]
    fn in_place_strings_match_an_arena() {
        // More than two marks' worth, with empty and multi-byte strings.
        let words: Vec<String> = (0..2 * MARK_STRIDE + 5)
            .map(|i| match i % 4 {
                0 => String::new(),
                1 => format!("▁w{i}"),
                _ => "ü".repeat(i),
            })
            .collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let a = StrArray::in_place(Buffer::from_vec(encode(&refs)), refs.len()).unwrap();
        let arena: StrArray = refs.iter().collect();
        assert!(a.is_in_place() && !arena.is_in_place());
        assert_eq!(a, arena);
        assert_eq!((a.len(), a.text_len()), (arena.len(), arena.text_len()));
        for (i, w) in refs.iter().enumerate() {
            assert_eq!(a.get(i), Some(*w), "{i}");
        }
        assert_eq!(a.get(refs.len()), None);
        assert_eq!(a.iter().len(), refs.len());
        // Only the marks are heap: one u32 per MARK_STRIDE strings.
        assert_eq!(a.heap_bytes(), 4 * refs.len().div_ceil(MARK_STRIDE));
        // Pushing copies into an arena first.
        let mut b = a.clone();
        b.push("new").unwrap();
        assert!(!b.is_in_place());
        assert_eq!(
            (b.len(), &b[refs.len()], &b[3]),
            (refs.len() + 1, "new", refs[3])
        );
    }

    #[test]
    fn in_place_refuses_what_it_cannot_view() {
        let good = encode(&["ab", "c"]);
        let view = |b: &[u8], n| StrArray::in_place(Buffer::from_vec(b.to_vec()), n);
        assert!(view(&good, 2).is_some());
        assert!(view(&good, 3).is_none(), "more elements than bytes");
        assert!(view(&good, 1).is_none(), "bytes left over");
        assert!(view(&good[..good.len() - 1], 2).is_none(), "truncated");
        let mut bad = good.clone();
        bad[8] = 0xff;
        assert!(view(&bad, 2).is_none(), "invalid UTF-8");
        let mut huge = good;
        huge[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(view(&huge, 2).is_none(), "length past the end");
    }

    #[test]
    fn in_place_numbers_at_any_alignment() {
        let mut b = vec![0u8; 3];
        for x in [1.5f32, -0.25, f32::MAX] {
            b.extend_from_slice(&x.to_le_bytes());
        }
        let buf = Buffer::from_vec(b);
        let a = LeArray::<f32>::in_place(buf.slice(3..buf.len()).unwrap());
        assert!(a.is_in_place() && a.as_slice().is_none() && a.heap_bytes() == 0);
        assert_eq!(a.to_vec(), [1.5, -0.25, f32::MAX]);
        assert_eq!((a.len(), a.get(1), a.get(3)), (3, Some(-0.25), None));
        assert_eq!(a, LeArray::from(vec![1.5, -0.25, f32::MAX]));
    }
}
