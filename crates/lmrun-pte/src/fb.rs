//! A small, verifying flatbuffer reader. Every offset, length and vtable entry read from the
//! file is bounds-checked before use, so a hostile or truncated buffer yields an error (with the
//! byte offset and what was being read), never a panic or an out-of-bounds read. The schema
//! modules (`schema`, `ptd`, `xnnpack`) walk tables through it by field id, which is the
//! declaration order in the `.fbs` files.
#![allow(dead_code)] // a general reader: not every accessor is used by every schema

use std::fmt;

/// A flatbuffer decoding error: where in the buffer, and what was being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FbError {
    /// Byte offset inside the flatbuffer where the problem was found.
    pub offset: usize,
    /// What was being read.
    pub what: String,
}

impl fmt::Display for FbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at flatbuffer offset {}", self.what, self.offset)
    }
}

impl std::error::Error for FbError {}

pub(crate) type FbResult<T> = Result<T, FbError>;

fn err<T>(offset: usize, what: impl Into<String>) -> FbResult<T> {
    Err(FbError {
        offset,
        what: what.into(),
    })
}

fn read<const N: usize>(buf: &[u8], pos: usize, what: &str) -> FbResult<[u8; N]> {
    match pos.checked_add(N).and_then(|end| buf.get(pos..end)) {
        Some(s) => {
            let mut a = [0u8; N];
            a.copy_from_slice(s);
            Ok(a)
        }
        None => err(pos, format!("{what}: {N} bytes past the end of the buffer")),
    }
}

pub(crate) fn rd_u32(buf: &[u8], pos: usize) -> FbResult<u32> {
    Ok(u32::from_le_bytes(read::<4>(buf, pos, "u32")?))
}

/// Root table of a flatbuffer whose identifier must equal `ident` (if given).
pub(crate) fn root<'a>(buf: &'a [u8], ident: Option<&[u8; 4]>) -> FbResult<Table<'a>> {
    if buf.len() < 8 {
        return err(0, "buffer shorter than a flatbuffer header (8 bytes)");
    }
    if let Some(id) = ident {
        if &buf[4..8] != id {
            return err(
                4,
                format!(
                    "file identifier {:?} is not {:?}",
                    String::from_utf8_lossy(&buf[4..8]),
                    String::from_utf8_lossy(id)
                ),
            );
        }
    }
    let off = rd_u32(buf, 0)? as usize;
    Table::at(buf, off)
}

/// A flatbuffer table.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vt: usize,
    vt_len: usize,
}

impl<'a> Table<'a> {
    fn at(buf: &'a [u8], pos: usize) -> FbResult<Table<'a>> {
        if pos % 4 != 0 {
            return err(pos, "table not 4-byte aligned");
        }
        let soff = i32::from_le_bytes(read::<4>(buf, pos, "table vtable offset")?);
        let vt = (pos as i64) - i64::from(soff);
        if vt < 0 || vt as u64 > buf.len() as u64 {
            return err(pos, "vtable offset out of range");
        }
        let vt = vt as usize;
        let vt_len = u16::from_le_bytes(read::<2>(buf, vt, "vtable length")?) as usize;
        let tbl_len = u16::from_le_bytes(read::<2>(buf, vt + 2, "vtable table length")?) as usize;
        if vt_len < 4 || vt_len % 2 != 0 || vt.checked_add(vt_len).is_none_or(|e| e > buf.len()) {
            return err(vt, "bad vtable length");
        }
        if pos.checked_add(tbl_len).is_none_or(|e| e > buf.len()) {
            return err(pos, "table extends past the end of the buffer");
        }
        Ok(Table {
            buf,
            pos,
            vt,
            vt_len,
        })
    }

    /// Offset of field `id` in the buffer, or None when absent.
    fn field(&self, id: usize) -> FbResult<Option<usize>> {
        let e = 4 + 2 * id;
        if e + 2 > self.vt_len {
            return Ok(None);
        }
        let o = u16::from_le_bytes(read::<2>(self.buf, self.vt + e, "vtable entry")?) as usize;
        if o == 0 {
            return Ok(None);
        }
        Ok(Some(self.pos + o))
    }

    fn scalar<const N: usize>(&self, id: usize) -> FbResult<Option<[u8; N]>> {
        match self.field(id)? {
            Some(p) => Ok(Some(read::<N>(self.buf, p, "scalar field")?)),
            None => Ok(None),
        }
    }

    pub fn u8(&self, id: usize, d: u8) -> FbResult<u8> {
        Ok(self.scalar::<1>(id)?.map_or(d, |a| a[0]))
    }
    pub fn i8(&self, id: usize, d: i8) -> FbResult<i8> {
        Ok(self.scalar::<1>(id)?.map_or(d, |a| a[0] as i8))
    }
    pub fn bool(&self, id: usize) -> FbResult<bool> {
        Ok(self.u8(id, 0)? != 0)
    }
    pub fn i16(&self, id: usize, d: i16) -> FbResult<i16> {
        Ok(self.scalar::<2>(id)?.map_or(d, i16::from_le_bytes))
    }
    pub fn u32(&self, id: usize, d: u32) -> FbResult<u32> {
        Ok(self.scalar::<4>(id)?.map_or(d, u32::from_le_bytes))
    }
    pub fn i32(&self, id: usize, d: i32) -> FbResult<i32> {
        Ok(self.scalar::<4>(id)?.map_or(d, i32::from_le_bytes))
    }
    pub fn f32(&self, id: usize, d: f32) -> FbResult<f32> {
        Ok(self.scalar::<4>(id)?.map_or(d, f32::from_le_bytes))
    }
    pub fn u64(&self, id: usize, d: u64) -> FbResult<u64> {
        Ok(self.scalar::<8>(id)?.map_or(d, u64::from_le_bytes))
    }
    pub fn i64(&self, id: usize, d: i64) -> FbResult<i64> {
        Ok(self.scalar::<8>(id)?.map_or(d, i64::from_le_bytes))
    }
    pub fn f64(&self, id: usize, d: f64) -> FbResult<f64> {
        Ok(self.scalar::<8>(id)?.map_or(d, f64::from_le_bytes))
    }

    /// Follow a uoffset field.
    fn indirect(&self, id: usize) -> FbResult<Option<usize>> {
        match self.field(id)? {
            Some(p) => {
                let o = rd_u32(self.buf, p)? as usize;
                match p.checked_add(o) {
                    Some(t) if t < self.buf.len() => Ok(Some(t)),
                    _ => err(p, "offset field points past the end of the buffer"),
                }
            }
            None => Ok(None),
        }
    }

    pub fn table(&self, id: usize) -> FbResult<Option<Table<'a>>> {
        match self.indirect(id)? {
            Some(p) => Ok(Some(Table::at(self.buf, p)?)),
            None => Ok(None),
        }
    }

    pub fn vector(&self, id: usize, elem: usize) -> FbResult<Option<Vector<'a>>> {
        match self.indirect(id)? {
            Some(p) => Ok(Some(Vector::at(self.buf, p, elem)?)),
            None => Ok(None),
        }
    }

    /// A vector field, or an empty vector when absent.
    pub fn vec_or_empty(&self, id: usize, elem: usize) -> FbResult<Vector<'a>> {
        Ok(self.vector(id, elem)?.unwrap_or(Vector {
            buf: self.buf,
            start: 0,
            len: 0,
            elem,
        }))
    }

    pub fn bytes(&self, id: usize) -> FbResult<Option<&'a [u8]>> {
        Ok(self.vector(id, 1)?.map(|v| v.as_bytes()))
    }

    /// Byte range (in the buffer) of a `[ubyte]` field.
    pub fn bytes_range(&self, id: usize) -> FbResult<Option<std::ops::Range<usize>>> {
        Ok(self.vector(id, 1)?.map(|v| v.start..v.start + v.len))
    }

    pub fn str(&self, id: usize) -> FbResult<Option<&'a str>> {
        match self.vector(id, 1)? {
            Some(v) => match std::str::from_utf8(v.as_bytes()) {
                Ok(s) => Ok(Some(s)),
                Err(_) => err(v.start, "string is not UTF-8"),
            },
            None => Ok(None),
        }
    }

    pub fn string(&self, id: usize) -> FbResult<String> {
        Ok(self.str(id)?.unwrap_or("").to_string())
    }

    pub fn i32_list(&self, id: usize) -> FbResult<Vec<i32>> {
        let v = self.vec_or_empty(id, 4)?;
        (0..v.len).map(|i| v.i32(i)).collect()
    }
    pub fn u32_list(&self, id: usize) -> FbResult<Vec<u32>> {
        let v = self.vec_or_empty(id, 4)?;
        (0..v.len).map(|i| v.u32(i)).collect()
    }
    pub fn i64_list(&self, id: usize) -> FbResult<Vec<i64>> {
        let v = self.vec_or_empty(id, 8)?;
        (0..v.len).map(|i| v.i64(i)).collect()
    }
    pub fn u64_list(&self, id: usize) -> FbResult<Vec<u64>> {
        let v = self.vec_or_empty(id, 8)?;
        (0..v.len).map(|i| v.i64(i).map(|x| x as u64)).collect()
    }
    pub fn f64_list(&self, id: usize) -> FbResult<Vec<f64>> {
        let v = self.vec_or_empty(id, 8)?;
        (0..v.len)
            .map(|i| v.i64(i).map(|x| f64::from_bits(x as u64)))
            .collect()
    }
    pub fn f32_list(&self, id: usize) -> FbResult<Vec<f32>> {
        let v = self.vec_or_empty(id, 4)?;
        (0..v.len).map(|i| v.u32(i).map(f32::from_bits)).collect()
    }
    pub fn u16_list(&self, id: usize) -> FbResult<Vec<u16>> {
        let v = self.vec_or_empty(id, 2)?;
        let b = v.as_bytes_elems();
        Ok(b.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    }
    pub fn u8_list(&self, id: usize) -> FbResult<Vec<u8>> {
        Ok(self.vec_or_empty(id, 1)?.as_bytes().to_vec())
    }

    /// Every table of a `[Table]` field (empty when absent).
    pub fn tables(&self, id: usize) -> FbResult<Vec<Table<'a>>> {
        let v = self.vec_or_empty(id, 4)?;
        (0..v.len).map(|i| v.table(i)).collect()
    }
}

/// A flatbuffer vector of fixed-size elements (or of offsets to tables).
#[derive(Clone, Copy)]
pub(crate) struct Vector<'a> {
    buf: &'a [u8],
    start: usize,
    /// Number of elements.
    pub len: usize,
    elem: usize,
}

impl<'a> Vector<'a> {
    fn at(buf: &'a [u8], pos: usize, elem: usize) -> FbResult<Vector<'a>> {
        let len = rd_u32(buf, pos)? as usize;
        let start = pos + 4;
        match len.checked_mul(elem).and_then(|b| start.checked_add(b)) {
            Some(end) if end <= buf.len() => Ok(Vector {
                buf,
                start,
                len,
                elem,
            }),
            _ => err(
                pos,
                format!("vector of {len} elements runs past the end of the buffer"),
            ),
        }
    }
    fn as_bytes(&self) -> &'a [u8] {
        &self.buf[self.start..self.start + self.len]
    }
    fn as_bytes_elems(&self) -> &'a [u8] {
        &self.buf[self.start..self.start + self.len * self.elem]
    }
    fn elem_pos(&self, i: usize) -> FbResult<usize> {
        if i >= self.len {
            return err(self.start, "vector index out of range");
        }
        Ok(self.start + i * self.elem)
    }
    pub fn u32(&self, i: usize) -> FbResult<u32> {
        rd_u32(self.buf, self.elem_pos(i)?)
    }
    pub fn i32(&self, i: usize) -> FbResult<i32> {
        Ok(self.u32(i)? as i32)
    }
    pub fn i64(&self, i: usize) -> FbResult<i64> {
        Ok(i64::from_le_bytes(read::<8>(
            self.buf,
            self.elem_pos(i)?,
            "i64",
        )?))
    }
    pub fn table(&self, i: usize) -> FbResult<Table<'a>> {
        let p = self.elem_pos(i)?;
        let o = rd_u32(self.buf, p)? as usize;
        match p.checked_add(o) {
            Some(t) if t < self.buf.len() => Table::at(self.buf, t),
            _ => err(p, "vector element offset out of range"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_garbage_buffers_are_errors() {
        assert!(root(&[], None).is_err());
        assert!(root(&[0; 7], None).is_err());
        assert!(root(&[0xff; 64], None).is_err());
        let mut b = vec![0u8; 64];
        b[0] = 60;
        assert!(root(&b, None).is_err());
    }
}
