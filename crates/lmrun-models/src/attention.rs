//! Causal multi-head attention over the KV cache, for a chunk of `n` new tokens whose keys and
//! values are already in the cache. Grouped-query heads share a KV head; sliding-window layers
//! see only the last `window` positions. Work items are (head, token) pairs in head-major order,
//! split into one contiguous range per pool thread, so a thread writes one contiguous slice of
//! the head-major output and uses its own row of score scratch (no unsafe, no contention).

use std::sync::Mutex;

use lmrun_kernels::{ops::softmax_inplace, ThreadPool};

use crate::kv::LayerKv;

/// The shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    /// KV cache capacity (stride of the transposed V rows).
    pub capacity: usize,
    /// Score scale.
    pub scale: f32,
    /// Sliding window, if this layer has one.
    pub window: Option<usize>,
}

/// `out_hm[h][t][..head_dim_v] = softmax(q_t,h · K / scale) · V` for the `n` tokens at
/// positions `p0..p0 + n`. `q` is `[n][n_head * head_dim]`; `scores` holds at least
/// `pool.n_threads() * capacity` floats.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    pool: &ThreadPool,
    s: &AttnShape,
    kv: &LayerKv,
    f16dot: fn(&[u8], &[f32]) -> f32,
    q: &[f32],
    n: usize,
    p0: usize,
    out_hm: &mut [f32],
    scores: &mut [f32],
) {
    let nth = pool.n_threads();
    let items = s.n_head * n;
    let hdv = s.head_dim_v;
    let qd = s.n_head * s.head_dim;
    let group = s.n_head / s.n_head_kv;
    let mut parts = Vec::with_capacity(nth);
    let mut rest = &mut out_hm[..items * hdv];
    let mut srest = &mut scores[..nth * s.capacity];
    for i in 0..nth {
        let (a, b) = (i * items / nth, (i + 1) * items / nth);
        let (o, tail) = rest.split_at_mut((b - a) * hdv);
        rest = tail;
        let (sc, stail) = srest.split_at_mut(s.capacity);
        srest = stail;
        parts.push(Mutex::new((a, o, sc)));
    }
    pool.run(|ith, _| {
        let Some(part) = parts.get(ith) else {
            return;
        };
        let mut g = part.lock().unwrap_or_else(|e| e.into_inner());
        let (a, ref mut out, ref mut sc) = *g;
        let n_items = out.len() / hdv;
        for (k, item) in (a..a + n_items).enumerate() {
            let (h, t) = (item / n, item % n);
            let pos = p0 + t;
            let lo = match s.window {
                Some(w) => (pos + 1).saturating_sub(w),
                None => 0,
            };
            let nk = pos + 1 - lo;
            let kvh = h / group;
            let qh = &q[t * qd + h * s.head_dim..][..s.head_dim];
            let sc = &mut sc[..nk];
            for (j, v) in sc.iter_mut().enumerate() {
                let off = ((lo + j) * s.n_head_kv + kvh) * s.head_dim;
                *v = kv.k.dot(off, qh, f16dot) * s.scale;
            }
            softmax_inplace(sc);
            let o = &mut out[k * hdv..(k + 1) * hdv];
            for (d, ov) in o.iter_mut().enumerate() {
                let off = (kvh * hdv + d) * s.capacity + lo;
                *ov = kv.v.dot(off, sc, f16dot);
            }
        }
    });
}
