//! `StrArray`: a GGUF string array read in place — a view of GGUF's own encoding (u64 length,
//! bytes) with one mark per [`MARK_STRIDE`] strings for lookups, or an owned arena — so a
//! vocabulary's texts are not copied into the heap at load.

use std::fmt;

use lmrun_loader::Buffer;

use super::{FromMeta, MetaArray, MetaValue, Mismatch};

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
