//! `Buffer`: loaded bytes that are cheap to clone and share between threads, whatever their
//! origin (a shared mapping, a 64-byte-aligned heap block, a `Vec`, or static bytes). The last
//! clone dropped unmaps or frees. Sub-slices share ownership, so a tensor view can keep its
//! weights alive without copying them.

use std::alloc::Layout;
use std::fmt;
use std::ops::{Deref, Range};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::{Prefetch, PrefetchReport};

/// Alignment of heap buffers made by the `file` mode: a cache line, enough for any SIMD load.
pub const HEAP_ALIGN: usize = 64;

/// An owned, 64-byte-aligned, zero-initialised heap block that is filled before it becomes a
/// [`Buffer`].
pub(crate) struct AlignedBlock {
    ptr: NonNull<u8>,
    len: usize,
}

impl AlignedBlock {
    /// Allocate `len > 0` zeroed bytes; `None` if the allocator refuses (no abort).
    pub(crate) fn zeroed(len: usize) -> Option<AlignedBlock> {
        debug_assert!(len > 0);
        let layout = Layout::from_size_align(len, HEAP_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size (len > 0, checked by callers).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        NonNull::new(ptr).map(|ptr| AlignedBlock { ptr, len })
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr points to `len` initialised (zeroed) bytes we own exclusively.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: as above; shared access only.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this layout, freed once.
        unsafe {
            std::alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.len, HEAP_ALIGN),
            )
        }
    }
}

// SAFETY: the block is plain owned memory; after construction it is only read through `&`.
unsafe impl Send for AlignedBlock {}
// SAFETY: as above.
unsafe impl Sync for AlignedBlock {}

/// Where a buffer's bytes live.
pub(crate) enum Storage {
    Heap(AlignedBlock),
    Vec(Vec<u8>),
    Static(&'static [u8]),
    #[cfg(unix)]
    Map(crate::mmap::Mapping),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Heap(b) => b.as_slice(),
            Storage::Vec(v) => v,
            Storage::Static(s) => s,
            #[cfg(unix)]
            Storage::Map(m) => m.as_slice(),
        }
    }
}

/// Loaded bytes: `Send + Sync`, cheap to clone, derefs to `&[u8]`.
///
/// A buffer returned by a loader for `load(offset, len)` starts at `offset` in the file and is
/// exactly `len` bytes long, even when the underlying mapping starts earlier (page alignment).
#[derive(Clone)]
pub struct Buffer {
    storage: Option<Arc<Storage>>,
    start: usize,
    len: usize,
}

impl Buffer {
    /// An empty buffer (what a zero-length load returns).
    pub const fn empty() -> Buffer {
        Buffer {
            storage: None,
            start: 0,
            len: 0,
        }
    }

    pub(crate) fn from_storage(storage: Storage, start: usize, len: usize) -> Buffer {
        debug_assert!(start + len <= storage.bytes().len());
        Buffer {
            storage: Some(Arc::new(storage)),
            start,
            len,
        }
    }

    /// Take ownership of a vector's bytes.
    pub fn from_vec(v: Vec<u8>) -> Buffer {
        let len = v.len();
        if len == 0 {
            return Buffer::empty();
        }
        Buffer::from_storage(Storage::Vec(v), 0, len)
    }

    /// Wrap static bytes (e.g. `include_bytes!`).
    pub fn from_static(s: &'static [u8]) -> Buffer {
        Buffer::from_storage(Storage::Static(s), 0, s.len())
    }

    /// Bytes in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A view of `range` of this buffer sharing its ownership, or `None` if the range does not
    /// lie inside the buffer.
    pub fn slice(&self, range: Range<usize>) -> Option<Buffer> {
        if range.start > range.end || range.end > self.len {
            return None;
        }
        if range.start == range.end {
            return Some(Buffer::empty());
        }
        Some(Buffer {
            storage: self.storage.clone(),
            start: self.start + range.start,
            len: range.end - range.start,
        })
    }

    /// Whether the bytes live in a file mapping (as opposed to heap memory).
    pub fn is_mapped(&self) -> bool {
        #[cfg(unix)]
        if let Some(s) = &self.storage {
            return matches!(**s, Storage::Map(_));
        }
        false
    }

    /// Ask the OS to bring this buffer's pages in ahead of use (see [`Prefetch`]). Only a mapped
    /// buffer has anything to prefetch; a heap buffer reports
    /// [`PrefetchOutcome::NotMapped`](crate::PrefetchOutcome::NotMapped). Never fails: a
    /// refused advice is reported and the buffer works as before.
    pub fn prefetch(&self, how: Prefetch) -> PrefetchReport {
        if how == Prefetch::None || self.len == 0 {
            return PrefetchReport::not_requested();
        }
        #[cfg(unix)]
        if let Some(s) = &self.storage {
            if let Storage::Map(m) = &**s {
                return m.prefetch(self.start, self.len, how);
            }
        }
        PrefetchReport {
            requested: how,
            applied: Prefetch::None,
            outcome: crate::PrefetchOutcome::NotMapped,
            ..Default::default()
        }
    }

    /// Number of clones (including this one) sharing the underlying storage.
    pub fn owners(&self) -> usize {
        self.storage.as_ref().map_or(0, Arc::strong_count)
    }
}

impl Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.storage {
            Some(s) => &s.bytes()[self.start..self.start + self.len],
            None => &[],
        }
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer::empty()
    }
}

impl From<Vec<u8>> for Buffer {
    fn from(v: Vec<u8>) -> Self {
        Buffer::from_vec(v)
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.len)
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_is_send_sync_and_slices_share() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Buffer>();
        let b = Buffer::from_vec((0u8..100).collect());
        let s = b.slice(10..20).unwrap();
        assert_eq!(&*s, &(10u8..20).collect::<Vec<_>>()[..]);
        assert_eq!(b.owners(), 2);
        let ss = s.slice(5..10).unwrap();
        assert_eq!(&*ss, &[15, 16, 17, 18, 19]);
        assert!(b.slice(50..101).is_none());
        assert!(s.slice(0..11).is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let rev = b.slice(5..4);
        assert!(rev.is_none());
        assert!(b.slice(3..3).unwrap().is_empty());
        drop(b);
        assert_eq!(&*ss, &[15, 16, 17, 18, 19]);
    }

    #[test]
    fn heap_blocks_are_aligned() {
        for len in [1usize, 63, 64, 65, 4097] {
            let mut blk = AlignedBlock::zeroed(len).unwrap();
            assert_eq!(blk.as_mut_slice().as_ptr() as usize % HEAP_ALIGN, 0);
            assert!(blk.as_mut_slice().iter().all(|&b| b == 0));
        }
    }
}
