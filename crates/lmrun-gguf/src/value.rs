//! Metadata values. GGUF metadata is a list of typed key/value pairs (integers of every width,
//! floats, bools, strings and arrays, arrays of arrays included); this module holds them in
//! Rust types and converts them for typed lookups, so model and tokenizer code asks for
//! `u32` or `&[String]` and gets an error naming the key and the type found instead of a guess.

use std::fmt;

use lmrun_loader::Buffer;

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

/// A number type that GGUF arrays hold, little-endian.
pub trait LeNum: Copy + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// Bytes per element.
    const SIZE: usize;
    /// Decode one element from exactly `SIZE` bytes.
    fn from_le(bytes: &[u8]) -> Self;
}

macro_rules! le_num {
    ($($t:ty),*) => {$(
        impl LeNum for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline]
            fn from_le(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}
le_num!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// An array of numbers: in a `Vec`, or read in place from the loaded file (GGUF stores them
/// little-endian at any alignment, so elements are decoded on access, not borrowed as a
/// slice). In place under a mapping, a 262,144-entry score table is page cache, not heap.
#[derive(Clone)]
pub struct LeArray<T> {
    repr: LeRepr<T>,
}

#[derive(Clone)]
enum LeRepr<T> {
    Owned(Vec<T>),
    /// `len * T::SIZE` bytes.
    InPlace(Buffer),
}

impl<T: LeNum> LeArray<T> {
    /// View the elements encoded in `bytes` (whose length is a multiple of `T::SIZE`).
    pub(crate) fn in_place(bytes: Buffer) -> Self {
        debug_assert_eq!(bytes.len() % T::SIZE, 0);
        LeArray {
            repr: LeRepr::InPlace(bytes),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.repr {
            LeRepr::Owned(v) => v.len(),
            LeRepr::InPlace(b) => b.len() / T::SIZE,
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        match &self.repr {
            LeRepr::Owned(v) => v.get(i).copied(),
            LeRepr::InPlace(b) => {
                let start = i.checked_mul(T::SIZE)?;
                b.get(start..start + T::SIZE).map(T::from_le)
            }
        }
    }

    /// The elements in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = T> + '_ {
        (0..self.len()).map(move |i| match &self.repr {
            LeRepr::Owned(v) => v[i],
            LeRepr::InPlace(b) => T::from_le(&b[i * T::SIZE..(i + 1) * T::SIZE]),
        })
    }

    /// The elements copied into a `Vec`.
    pub fn to_vec(&self) -> Vec<T> {
        match &self.repr {
            LeRepr::Owned(v) => v.clone(),
            LeRepr::InPlace(_) => self.iter().collect(),
        }
    }

    /// The elements as a slice, when they are held in a `Vec` (not in place).
    pub fn as_slice(&self) -> Option<&[T]> {
        match &self.repr {
            LeRepr::Owned(v) => Some(v),
            LeRepr::InPlace(_) => None,
        }
    }

    /// Whether the elements are read in place from the loaded file.
    pub fn is_in_place(&self) -> bool {
        matches!(self.repr, LeRepr::InPlace(_))
    }

    /// Heap bytes held (none in place: the bytes belong to the file's buffer).
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            LeRepr::Owned(v) => v.capacity() * T::SIZE,
            LeRepr::InPlace(_) => 0,
        }
    }
}

impl<T> From<Vec<T>> for LeArray<T> {
    fn from(v: Vec<T>) -> Self {
        LeArray {
            repr: LeRepr::Owned(v),
        }
    }
}

impl<T: LeNum> Default for LeArray<T> {
    fn default() -> Self {
        Vec::new().into()
    }
}

impl<T: LeNum> PartialEq for LeArray<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: LeNum> fmt::Debug for LeArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> FromMeta<'a> for &'a StrArray {
    const EXPECTED: &'static str = "array<string>";
    fn from_meta(value: &'a MetaValue) -> Result<Self, Mismatch> {
        match value {
            MetaValue::Array(MetaArray::String(v)) => Ok(v),
            _ => Err(Mismatch::Type),
        }
    }
}

/// An array of strings, held compactly however many there are (a GGUF vocabulary has up to
/// hundreds of thousands).
///
/// Two layouts, chosen by the parser, with the same API:
/// - **In place**: a view of GGUF's own encoding in the loaded file (each element an 8-byte
///   little-endian length and its bytes), kept alive by a clone of the file's [`Buffer`].
///   Under a mapping the text is page cache — shared between processes, evictable, not
///   anonymous memory — and the only heap is one `u32` mark per [`MARK_STRIDE`] strings; a
///   string is found by walking at most `MARK_STRIDE - 1` length fields from its mark. Every
///   element was checked (bounds, UTF-8) when the array was parsed.
/// - **Arena**: the texts back to back in one `String` with one `u32` end offset each (arrays
///   built in memory, arrays with invalid UTF-8 that the parser repaired, `push`). About 4
///   bytes of overhead per string instead of a `String`'s 24 plus its own heap block; at most
///   4 GiB of text ([`StrArray::push`] refuses more).
#[derive(Clone)]
pub struct StrArray {
    repr: StrRepr,
}

/// Strings per mark of an in-place [`StrArray`]: a lookup reads at most this many length
/// fields (a few adjacent cache lines), and the marks cost `4 / MARK_STRIDE` bytes per string.
pub const MARK_STRIDE: usize = 16;

#[derive(Clone)]
enum StrRepr {
    Arena {
        text: String,
        ends: Vec<u32>,
    },
    InPlace {
        /// The array's elements as encoded in the file.
        bytes: Buffer,
        len: usize,
        text_len: usize,
        /// `marks[k]`: offset in `bytes` of element `k * MARK_STRIDE`'s length field.
        marks: Vec<u32>,
    },
}

impl Default for StrArray {
    fn default() -> Self {
        StrArray::with_capacity(0, 0)
    }
}

/// The 8-byte little-endian length at `pos` of `bytes` and the range of the text after it.
#[inline]
fn element_at(bytes: &[u8], pos: usize) -> Option<std::ops::Range<usize>> {
    let len: [u8; 8] = bytes.get(pos..pos.checked_add(8)?)?.try_into().ok()?;
    let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
    let start = pos + 8;
    let end = start.checked_add(len)?;
    (end <= bytes.len()).then_some(start..end)
}

impl StrArray {
    /// An empty array.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty array with room for `n` strings of `bytes` bytes in total.
    pub fn with_capacity(n: usize, bytes: usize) -> Self {
        StrArray {
            repr: StrRepr::Arena {
                text: String::with_capacity(bytes),
                ends: Vec::with_capacity(n),
            },
        }
    }

    /// View `len` GGUF-encoded strings (8-byte little-endian length, then the bytes) that fill
    /// `bytes` exactly, in place. `None` if they do not fit, do not fill it, are not all valid
    /// UTF-8, or span 4 GiB or more. (The parser uses [`StrArray::in_place_prefix`].)
    #[cfg(test)]
    pub(crate) fn in_place(bytes: Buffer, len: usize) -> Option<StrArray> {
        let full = bytes.len();
        StrArray::in_place_prefix(&bytes, len, u64::MAX)
            .filter(|(_, used)| *used == full)
            .map(|(a, _)| a)
    }

    /// View the `len` GGUF-encoded strings at the start of `rest`, in one walk: each length at
    /// most `max_len`, each text valid UTF-8, all of them within `rest` and under 4 GiB.
    /// Returns the array and the bytes it spans, or `None` (the caller copies, repairs or
    /// reports the error).
    pub(crate) fn in_place_prefix(
        rest: &Buffer,
        len: usize,
        max_len: u64,
    ) -> Option<(StrArray, usize)> {
        let mut marks = Vec::with_capacity(len.div_ceil(MARK_STRIDE).min(rest.len() / 8));
        let (mut pos, mut text_len) = (0usize, 0usize);
        for i in 0..len {
            if i % MARK_STRIDE == 0 {
                marks.push(u32::try_from(pos).ok()?);
            }
            let text = element_at(rest, pos)?;
            if text.len() as u64 > max_len {
                return None;
            }
            std::str::from_utf8(&rest[text.clone()]).ok()?;
            text_len += text.len();
            pos = text.end;
        }
        u32::try_from(pos).ok()?;
        let bytes = rest.slice(0..pos)?;
        let array = StrArray {
            repr: StrRepr::InPlace {
                bytes,
                len,
                text_len,
                marks,
            },
        };
        Some((array, pos))
    }

    /// Whether the strings are read in place from the loaded file (not copied to the heap).
    pub fn is_in_place(&self) -> bool {
        matches!(self.repr, StrRepr::InPlace { .. })
    }

    /// Append a string; an error (and nothing added) when the arena would pass 4 GiB. An
    /// in-place array is first copied into an arena.
    pub fn push(&mut self, s: &str) -> Result<(), StrArrayFull> {
        if self.is_in_place() {
            let mut arena = StrArray::with_capacity(self.len() + 1, self.text_len() + s.len());
            for t in self.iter() {
                arena.push(t)?;
            }
            *self = arena;
        }
        let StrRepr::Arena { text, ends } = &mut self.repr else {
            unreachable!("converted to an arena above")
        };
        let end = text
            .len()
            .checked_add(s.len())
            .and_then(|e| u32::try_from(e).ok())
            .ok_or(StrArrayFull)?;
        text.push_str(s);
        ends.push(end);
        Ok(())
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        match &self.repr {
            StrRepr::Arena { ends, .. } => ends.len(),
            StrRepr::InPlace { len, .. } => *len,
        }
    }

    /// Whether there are no strings.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// String `i`.
    pub fn get(&self, i: usize) -> Option<&str> {
        match &self.repr {
            StrRepr::Arena { text, ends } => {
                let end = *ends.get(i)? as usize;
                let start = match i {
                    0 => 0,
                    _ => ends[i - 1] as usize,
                };
                // Offsets are pushed at string boundaries, so the range is on char boundaries.
                text.get(start..end)
            }
            // Checked again (it was at parse time): a file changed under its mapping must not
            // yield a `&str` that is not UTF-8.
            StrRepr::InPlace { .. } => std::str::from_utf8(self.get_bytes(i)?).ok(),
        }
    }

    /// The bytes of string `i`, without the UTF-8 check of [`StrArray::get`] (for comparing
    /// against a `&str`, where equality implies validity).
    #[inline]
    pub fn get_bytes(&self, i: usize) -> Option<&[u8]> {
        match &self.repr {
            StrRepr::Arena { .. } => self.get(i).map(str::as_bytes),
            StrRepr::InPlace {
                bytes, len, marks, ..
            } => {
                if i >= *len {
                    return None;
                }
                let mut pos = marks[i / MARK_STRIDE] as usize;
                for _ in 0..i % MARK_STRIDE {
                    pos = element_at(bytes, pos)?.end;
                }
                bytes.get(element_at(bytes, pos)?)
            }
        }
    }

    /// The strings in order.
    pub fn iter(&self) -> StrIter<'_> {
        StrIter {
            array: self,
            next: 0,
            pos: 0,
        }
    }

    /// Bytes of text (without the lengths or offsets).
    pub fn text_len(&self) -> usize {
        match &self.repr {
            StrRepr::Arena { text, .. } => text.len(),
            StrRepr::InPlace { text_len, .. } => *text_len,
        }
    }

    /// Give back spare capacity.
    pub fn shrink_to_fit(&mut self) {
        match &mut self.repr {
            StrRepr::Arena { text, ends } => {
                text.shrink_to_fit();
                ends.shrink_to_fit();
            }
            StrRepr::InPlace { marks, .. } => marks.shrink_to_fit(),
        }
    }

    /// Heap bytes this array holds itself (arena and offsets, or the marks of an in-place
    /// array, whose text belongs to the file's buffer), with spare capacity.
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            StrRepr::Arena { text, ends } => text.capacity() + ends.capacity() * 4,
            StrRepr::InPlace { marks, .. } => marks.capacity() * 4,
        }
    }
}

/// The strings of a [`StrArray`] in order (an in-place array is walked, not searched).
pub struct StrIter<'a> {
    array: &'a StrArray,
    next: usize,
    /// In place: offset of element `next`'s length field.
    pos: usize,
}

impl<'a> Iterator for StrIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.next >= self.array.len() {
            return None;
        }
        let s = match &self.array.repr {
            StrRepr::Arena { .. } => self.array.get(self.next),
            StrRepr::InPlace { bytes, .. } => element_at(bytes, self.pos).and_then(|r| {
                self.pos = r.end;
                std::str::from_utf8(&bytes[r]).ok()
            }),
        };
        self.next += 1;
        // Only a file changed under its mapping can fail here; it reads as "".
        Some(s.unwrap_or(""))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.array.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for StrIter<'_> {}

impl PartialEq for StrArray {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for StrArray {}

/// The texts of a [`StrArray`] would exceed its 4 GiB arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrArrayFull;

impl fmt::Display for StrArrayFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("more than 4 GiB of string text")
    }
}

impl std::error::Error for StrArrayFull {}

impl std::ops::Index<usize> for StrArray {
    type Output = str;

    /// String `i`; panics when `i` is out of range, like a slice. (An in-place string whose
    /// file changed under its mapping reads as "".)
    fn index(&self, i: usize) -> &str {
        match self.get(i) {
            Some(s) => s,
            None if i < self.len() => "",
            None => panic!("index {i} out of range for a StrArray of {}", self.len()),
        }
    }
}

impl fmt::Debug for StrArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for StrArray {
    /// Collect strings; panics past 4 GiB of text (use [`StrArray::push`] to handle that).
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut a = StrArray::new();
        for s in iter {
            assert!(
                a.push(s.as_ref()).is_ok(),
                "StrArray: more than 4 GiB of text"
            );
        }
        a
    }
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
