//! A tiny flatbuffer writer for building test programs by hand (tables are written front to
//! back: each table's vtable just before it, its children after it, so every uoffset is
//! positive). Field ids are declaration order, as in the `.fbs` files.
#![allow(dead_code)]

/// A field value.
pub enum F {
    U8(u8),
    I8(i8),
    Bool(bool),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(&'static str),
    /// `[ubyte]`, 16-byte aligned like `force_align: 16`.
    Bytes(Vec<u8>),
    I32s(Vec<i32>),
    I64s(Vec<i64>),
    U64s(Vec<u64>),
    T(T),
    Ts(Vec<T>),
}

/// A table: (field id, value).
pub struct T(pub Vec<(usize, F)>);

fn inline_size(f: &F) -> usize {
    match f {
        F::U8(_) | F::I8(_) | F::Bool(_) => 1,
        F::U32(_) | F::I32(_) => 4,
        F::U64(_) | F::I64(_) | F::F64(_) => 8,
        _ => 4,
    }
}

fn pad_to(buf: &mut Vec<u8>, align: usize, rem: usize) {
    while buf.len() % align != rem {
        buf.push(0);
    }
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn write_table(buf: &mut Vec<u8>, t: &T) -> usize {
    let n = t.0.iter().map(|(id, _)| id + 1).max().unwrap_or(0);
    pad_to(buf, 2, 0);
    let vt = buf.len();
    let vt_len = 4 + 2 * n;
    buf.resize(vt + vt_len, 0);
    pad_to(buf, 8, 0);
    let tp = buf.len();
    let mut offs = vec![0usize; n];
    let mut cur: usize = 4;
    for (id, f) in &t.0 {
        let a = inline_size(f);
        cur = cur.div_ceil(a) * a;
        offs[*id] = cur;
        cur += a;
    }
    buf.resize(tp + cur, 0);
    buf[vt..vt + 2].copy_from_slice(&(vt_len as u16).to_le_bytes());
    buf[vt + 2..vt + 4].copy_from_slice(&(cur as u16).to_le_bytes());
    for (i, &o) in offs.iter().enumerate() {
        buf[vt + 4 + 2 * i..vt + 6 + 2 * i].copy_from_slice(&(o as u16).to_le_bytes());
    }
    put_u32(buf, tp, (tp - vt) as u32);
    let mut children = Vec::new();
    for (id, f) in &t.0 {
        let at = tp + offs[*id];
        match f {
            F::U8(v) => buf[at] = *v,
            F::I8(v) => buf[at] = *v as u8,
            F::Bool(v) => buf[at] = u8::from(*v),
            F::U32(v) => put_u32(buf, at, *v),
            F::I32(v) => put_u32(buf, at, *v as u32),
            F::U64(v) => buf[at..at + 8].copy_from_slice(&v.to_le_bytes()),
            F::I64(v) => buf[at..at + 8].copy_from_slice(&v.to_le_bytes()),
            F::F64(v) => buf[at..at + 8].copy_from_slice(&v.to_le_bytes()),
            _ => children.push((at, f)),
        }
    }
    for (at, f) in children {
        let cp = write_child(buf, f);
        put_u32(buf, at, (cp - at) as u32);
    }
    tp
}

fn write_vec_header(buf: &mut Vec<u8>, n: usize, elem_align: usize) -> usize {
    pad_to(buf, elem_align.max(4), 4 % elem_align.max(4));
    let p = buf.len();
    buf.extend_from_slice(&(n as u32).to_le_bytes());
    p
}

fn write_child(buf: &mut Vec<u8>, f: &F) -> usize {
    match f {
        F::Str(s) => {
            pad_to(buf, 4, 0);
            let p = buf.len();
            buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
            buf.push(0);
            p
        }
        F::Bytes(b) => {
            let p = write_vec_header(buf, b.len(), 16);
            buf.extend_from_slice(b);
            p
        }
        F::I32s(v) => {
            let p = write_vec_header(buf, v.len(), 4);
            for x in v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            p
        }
        F::I64s(v) => {
            let p = write_vec_header(buf, v.len(), 8);
            for x in v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            p
        }
        F::U64s(v) => {
            let p = write_vec_header(buf, v.len(), 8);
            for x in v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            p
        }
        F::T(t) => write_table(buf, t),
        F::Ts(ts) => {
            let p = write_vec_header(buf, ts.len(), 4);
            let base = buf.len();
            buf.resize(base + 4 * ts.len(), 0);
            for (i, t) in ts.iter().enumerate() {
                let tp = write_table(buf, t);
                let at = base + 4 * i;
                put_u32(buf, at, (tp - at) as u32);
            }
            p
        }
        _ => unreachable!("scalar written as child"),
    }
}

/// Serialize `root` with file identifier `ident`, leaving `reserve` zero bytes after the
/// identifier (room for an extended header).
pub fn finish(root: &T, ident: &[u8; 4], reserve: usize) -> Vec<u8> {
    let mut buf = vec![0u8; 8 + reserve];
    buf[4..8].copy_from_slice(ident);
    let rp = write_table(&mut buf, root);
    put_u32(&mut buf, 0, rp as u32);
    buf
}
