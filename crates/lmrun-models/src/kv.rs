//! The KV cache: allocated once for the context the runner asks for (not the model's training
//! context), in f16 (default: half the memory, and what llama.cpp uses) or f32.
//!
//! Layout per layer: keys row-major by position, `[pos][kv_head][head_dim]`, so a query's
//! scores are dot products over contiguous key rows; values transposed,
//! `[kv_head][head_dim_v][pos]`, so the weighted sum of values is one dot product per output
//! dimension over contiguous probabilities (llama.cpp's non-flash layout). Both are contiguous
//! slices, which lets the f16 cache reuse the kernels' F16·f32 dot product.
//!
//! Sliding-window layers keep a ring of `window + UBATCH - 1` positions instead of the whole
//! context (position `p` lives in row `p % ring`): a token attends to the `window` positions up
//! to its own, and a batched chunk of up to [`crate::UBATCH`] tokens writes all its keys before
//! its first token reads, so that many more rows keep the first token's window intact. For
//! Gemma 3 (window 512, five sliding layers in six) at a 32k context that is 1/6 + 5/6 · 1023/32768
//! of the full cache: 19 %.

use half::f16;
use lmrun_kernels::{dot4_fn, dot_fn, ops::dot_f32, Dot4Fn, DotFn, Isa, QType};

use crate::ModelError;

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvDtype {
    /// IEEE half: the default. Half the memory of f32, what llama.cpp uses, and no less
    /// accurate in measurement (gemma-3-270m, 83 teacher-forced positions: mean |diff| to
    /// llama.cpp 0.319 with f16 vs 0.324 with f32, to exact f32 math 0.283 vs 0.291) and
    /// slightly faster (decode at 512 tokens of context, 1 thread: 24.3 vs 22.8 tok/s).
    #[default]
    F16,
    /// 32-bit float.
    F32,
    /// 8-bit blocks of 32 values with an f16 scale (ggml's Q8_0 layout): 34 bytes per 32
    /// values, 53 % of f16. Values are stored by position (V too), so head sizes must be
    /// multiples of 32.
    Q8_0,
}

impl KvDtype {
    /// Bytes per element (Q8_0: 34/32, rounded up to 2 for a rough count; see
    /// [`KvDtype::bytes_for`]).
    pub fn size(self) -> usize {
        match self {
            KvDtype::F16 | KvDtype::Q8_0 => 2,
            KvDtype::F32 => 4,
        }
    }

    /// Bytes `n` elements take.
    pub fn bytes_for(self, n: u128) -> u128 {
        match self {
            KvDtype::F16 => 2 * n,
            KvDtype::F32 => 4 * n,
            KvDtype::Q8_0 => n.div_ceil(32) * 34,
        }
    }

    /// The name `--cache-type` takes.
    pub fn name(self) -> &'static str {
        match self {
            KvDtype::F16 => "f16",
            KvDtype::F32 => "f32",
            KvDtype::Q8_0 => "q8_0",
        }
    }
}

/// Q8_0 block: values per block and bytes per block.
const Q8_BLOCK: usize = 32;
const Q8_BYTES: usize = 34;

/// Quantize 32 values into one block.
fn q8_encode(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let dh = f16::from_f32(d);
    out[..2].copy_from_slice(&dh.to_le_bytes());
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (o, v) in out[2..Q8_BYTES].iter_mut().zip(x) {
        *o = ((v * inv).round().clamp(-127.0, 127.0) as i8) as u8;
    }
}

/// Scale and codes of one block.
#[inline]
fn q8_block(b: &[u8]) -> (f32, &[u8]) {
    (f16::from_le_bytes([b[0], b[1]]).to_f32(), &b[2..Q8_BYTES])
}

/// One flat buffer of cache elements.
#[derive(Debug)]
pub(crate) enum KvBuf {
    F32(Vec<f32>),
    /// Little-endian f16 bytes (the form the kernels' F16 dot reads).
    F16(Vec<u8>),
    /// Q8_0 blocks; every access is block-aligned (whole rows of heads of 32k values).
    Q8(Vec<u8>),
}

impl KvBuf {
    /// A zeroed buffer of `n` elements, or `None` if the memory cannot be had.
    fn new(dtype: KvDtype, n: usize) -> Option<KvBuf> {
        // Probe with `try_reserve` (an error instead of an abort), then allocate with `vec!`,
        // which asks the allocator for zeroed memory: pages stay untouched (not resident)
        // until a position is written.
        fn zeroed<T: Clone>(n: usize, zero: T) -> Option<Vec<T>> {
            let mut probe: Vec<T> = Vec::new();
            probe.try_reserve_exact(n).ok()?;
            drop(probe);
            Some(vec![zero; n])
        }
        Some(match dtype {
            KvDtype::F32 => KvBuf::F32(zeroed(n, 0f32)?),
            KvDtype::F16 => KvBuf::F16(zeroed(n.checked_mul(2)?, 0u8)?),
            KvDtype::Q8_0 => KvBuf::Q8(zeroed(n.div_ceil(Q8_BLOCK).checked_mul(Q8_BYTES)?, 0u8)?),
        })
    }

    fn bytes(&self) -> usize {
        match self {
            KvBuf::F32(v) => v.len() * 4,
            KvBuf::F16(v) | KvBuf::Q8(v) => v.len(),
        }
    }

    /// Writes `vals` at element offset `off`.
    #[inline]
    pub(crate) fn write(&mut self, off: usize, vals: &[f32]) {
        match self {
            KvBuf::F32(v) => v[off..off + vals.len()].copy_from_slice(vals),
            KvBuf::F16(v) => {
                for (i, &x) in vals.iter().enumerate() {
                    let b = f16::from_f32(x).to_le_bytes();
                    v[2 * (off + i)] = b[0];
                    v[2 * (off + i) + 1] = b[1];
                }
            }
            KvBuf::Q8(v) => {
                debug_assert!(off % Q8_BLOCK == 0 && vals.len() % Q8_BLOCK == 0);
                let b0 = off / Q8_BLOCK;
                for (i, x) in vals.chunks_exact(Q8_BLOCK).enumerate() {
                    q8_encode(x, &mut v[(b0 + i) * Q8_BYTES..(b0 + i + 1) * Q8_BYTES]);
                }
            }
        }
    }

    /// Reads elements `off..off + out.len()`.
    pub(crate) fn read(&self, off: usize, out: &mut [f32]) {
        match self {
            KvBuf::F32(v) => out.copy_from_slice(&v[off..off + out.len()]),
            KvBuf::F16(v) => {
                for (i, o) in out.iter_mut().enumerate() {
                    let j = 2 * (off + i);
                    *o = f16::from_le_bytes([v[j], v[j + 1]]).to_f32();
                }
            }
            KvBuf::Q8(v) => {
                let b0 = off / Q8_BLOCK;
                for (i, os) in out.chunks_exact_mut(Q8_BLOCK).enumerate() {
                    let (d, q) = q8_block(&v[(b0 + i) * Q8_BYTES..]);
                    for (o, &c) in os.iter_mut().zip(q) {
                        *o = d * c as i8 as f32;
                    }
                }
            }
        }
    }

    /// Copies `n` elements from `src..` to `dst..` (the ranges may overlap).
    pub(crate) fn copy_within(&mut self, src: usize, dst: usize, n: usize) {
        match self {
            KvBuf::F32(v) => v.copy_within(src..src + n, dst),
            KvBuf::F16(v) => v.copy_within(2 * src..2 * (src + n), 2 * dst),
            KvBuf::Q8(v) => {
                let (s, d, nb) = (src / Q8_BLOCK, dst / Q8_BLOCK, n / Q8_BLOCK);
                v.copy_within(s * Q8_BYTES..(s + nb) * Q8_BYTES, d * Q8_BYTES);
            }
        }
    }

    /// Writes one value at element `idx`.
    #[inline]
    pub(crate) fn write_one(&mut self, idx: usize, x: f32) {
        match self {
            KvBuf::F32(v) => v[idx] = x,
            KvBuf::F16(v) => {
                let b = f16::from_f32(x).to_le_bytes();
                v[2 * idx] = b[0];
                v[2 * idx + 1] = b[1];
            }
            // Q8 caches store V by rows (`LayerKv::v_by_row`): never one element at a time.
            KvBuf::Q8(_) => unreachable!("a Q8_0 cache is written a block at a time"),
        }
    }

    /// Dot product of elements `off..off + x.len()` with `x`.
    #[inline]
    pub(crate) fn dot(&self, off: usize, x: &[f32], f16dot: fn(&[u8], &[f32]) -> f32) -> f32 {
        match self {
            KvBuf::F32(v) => dot_f32(&v[off..off + x.len()], x),
            KvBuf::F16(v) => f16dot(&v[2 * off..2 * (off + x.len())], x),
            KvBuf::Q8(v) => {
                let b0 = off / Q8_BLOCK;
                let mut acc = 0f32;
                for (i, xs) in x.chunks_exact(Q8_BLOCK).enumerate() {
                    let (d, q) = q8_block(&v[(b0 + i) * Q8_BYTES..]);
                    let s: f32 = q.iter().zip(xs).map(|(&c, &y)| c as i8 as f32 * y).sum();
                    acc += d * s;
                }
                acc
            }
        }
    }
}

impl KvBuf {
    /// Dot products of elements `off..off + n` with four vectors of length `n` (one conversion
    /// of each cached element feeds four query heads or four score rows).
    #[inline]
    pub(crate) fn dot4(&self, off: usize, x: [&[f32]; 4], dots: &KvDots) -> [f32; 4] {
        let n = x[0].len();
        match (self, dots.f16dot4) {
            (KvBuf::F16(v), Some(f4)) => f4(&v[2 * off..2 * (off + n)], x),
            _ => x.map(|xi| self.dot(off, xi, dots.f16dot)),
        }
    }
}

/// One f16 row against four f32 vectors.
pub(crate) type F16Dot4 = fn(&[u8], [&[f32]; 4]) -> [f32; 4];

/// The f16 dot-product kernels the attention uses, chosen once for this CPU.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KvDots {
    /// One cached row against one vector.
    pub(crate) f16dot: fn(&[u8], &[f32]) -> f32,
    /// One cached row against four vectors, if the instruction-set level has such a kernel.
    pub(crate) f16dot4: Option<F16Dot4>,
}

/// The K and V caches of one layer.
#[derive(Debug)]
pub(crate) struct LayerKv {
    pub(crate) k: KvBuf,
    pub(crate) v: KvBuf,
    /// Rows held (the context for a full layer, the ring size for a sliding one); also the
    /// stride of the transposed V rows.
    pub(crate) rows: usize,
    /// Whether position `p` lives in row `p % rows` (a ring) rather than row `p`.
    pub(crate) ring: bool,
    /// V is stored by position (`[row][kv_head][head_dim_v]`, like K) instead of transposed:
    /// the Q8_0 cache, whose blocks run along a row.
    pub(crate) v_by_row: bool,
}

impl LayerKv {
    /// The row holding position `pos`.
    #[inline]
    pub(crate) fn row(&self, pos: usize) -> usize {
        if self.ring {
            pos % self.rows
        } else {
            pos
        }
    }

    /// The rows of positions `lo..lo + n` as at most two contiguous runs `(row, len)`.
    #[inline]
    pub(crate) fn runs(&self, lo: usize, n: usize) -> [(usize, usize); 2] {
        let r = self.row(lo);
        let first = n.min(self.rows - r);
        [(r, first), (0, n - first)]
    }
}

/// How many rows each layer's cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerRows {
    /// Rows.
    pub(crate) rows: usize,
    /// Whether they form a ring (a sliding-window layer whose window is shorter than the
    /// context).
    pub(crate) ring: bool,
}

impl LayerRows {
    /// The rows of a layer: the whole context, or a ring for a sliding window that fits in it.
    pub(crate) fn for_layer(context_len: usize, window: Option<usize>) -> LayerRows {
        match window {
            Some(w) if w.saturating_add(crate::UBATCH - 1) < context_len => LayerRows {
                rows: w + crate::UBATCH - 1,
                ring: true,
            },
            _ => LayerRows {
                rows: context_len,
                ring: false,
            },
        }
    }
}

/// The cache of all layers.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) capacity: usize,
    pub(crate) dtype: KvDtype,
    pub(crate) dots: KvDots,
}

impl KvCache {
    /// Bytes a cache of these dimensions holds (computed without overflow).
    pub(crate) fn bytes_needed(
        dtype: KvDtype,
        layers: &[LayerRows],
        k_dim: usize,
        v_dim: usize,
    ) -> u128 {
        let rows: u128 = layers.iter().map(|l| l.rows as u128).sum();
        dtype.bytes_for(k_dim as u128 * rows) + dtype.bytes_for(v_dim as u128 * rows)
    }

    /// Allocates each layer's rows (`layers`, for a context of `capacity` positions) of
    /// `k_dim` key and `v_dim` value elements; an error (not an abort) if the size overflows
    /// or the memory cannot be allocated.
    pub(crate) fn new(
        dtype: KvDtype,
        capacity: usize,
        layer_rows: &[LayerRows],
        k_dim: usize,
        v_dim: usize,
    ) -> Result<KvCache, ModelError> {
        let too_big = || {
            let total = Self::bytes_needed(dtype, layer_rows, k_dim, v_dim);
            ModelError::BadOptions(format!(
                "a KV cache of {capacity} positions needs {total} bytes, which cannot be \
                 allocated; ask for a smaller context_len"
            ))
        };
        let mut layers = Vec::with_capacity(layer_rows.len());
        for lr in layer_rows {
            let k = lr
                .rows
                .checked_mul(k_dim)
                .and_then(|n| KvBuf::new(dtype, n));
            let v = lr
                .rows
                .checked_mul(v_dim)
                .and_then(|n| KvBuf::new(dtype, n));
            match (k, v) {
                (Some(k), Some(v)) => layers.push(LayerKv {
                    k,
                    v,
                    rows: lr.rows,
                    ring: lr.ring,
                    v_by_row: dtype == KvDtype::Q8_0,
                }),
                _ => return Err(too_big()),
            }
        }
        let f16dot = match dot_fn(QType::F16, Isa::best()) {
            Some(DotFn::F32(f)) => f,
            _ => lmrun_kernels::scalar::dot_f16w,
        };
        let f16dot4 = match dot4_fn(QType::F16, Isa::best()) {
            Some(Dot4Fn::F32(f)) => Some(f),
            _ => None,
        };
        Ok(KvCache {
            layers,
            capacity,
            dtype,
            dots: KvDots { f16dot, f16dot4 },
        })
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|l| l.k.bytes() + l.v.bytes()).sum()
    }

    /// Bytes held by the full-context layers and by the sliding-window (ring) layers.
    pub fn bytes_by_kind(&self) -> (usize, usize) {
        let mut r = (0, 0);
        for l in &self.layers {
            let b = l.k.bytes() + l.v.bytes();
            if l.ring {
                r.1 += b;
            } else {
                r.0 += b;
            }
        }
        r
    }

    /// How far back a continuation may start: `start_pos` may be as low as
    /// `n_past - max_rewind()` (the ring layers have overwritten older positions' windows).
    /// `usize::MAX` when no layer is a ring.
    pub(crate) fn max_rewind(&self, window: usize) -> usize {
        self.layers
            .iter()
            .filter(|l| l.ring)
            .map(|l| l.rows + 1 - window)
            .min()
            .unwrap_or(usize::MAX)
    }

    /// Positions the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Element type.
    pub fn dtype(&self) -> KvDtype {
        self.dtype
    }
}
