//! `LeArray`: a GGUF number array read in place — a view of the file's little-endian bytes
//! (GGUF does not align arrays, so elements are decoded on access) or an owned vector — so a
//! vocabulary's scores and token types stay page cache under a mapping instead of heap copies.

use std::fmt;

use lmrun_loader::Buffer;

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
