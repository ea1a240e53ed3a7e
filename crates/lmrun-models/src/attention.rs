//! Causal multi-head attention over the KV cache, for a chunk of `n` new tokens whose keys and
//! values are already in the cache. Grouped-query heads share a KV head; sliding-window layers
//! see only the last `window` positions. Work items are (head, block of up to [`TOKEN_BLOCK`]
//! tokens) in head-major order; pool threads take items from a shared counter
//! ([`ThreadPool::run_dynamic`]: a worker that is descheduled takes fewer, or none, and the
//! caller never waits for it), each item owning one contiguous slice of the head-major output,
//! each thread its own row of score scratch (no unsafe, no contention).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use lmrun_kernels::{ops::softmax_inplace, ThreadPool};

use crate::kv::LayerKv;

/// Tokens per work item in a batched pass.
pub(crate) const TOKEN_BLOCK: usize = 16;

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

/// `out_hm[h][t][..head_dim_v] = softmax(scale · q_t,h · K) · V` for the `n` tokens at
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
    let hdv = s.head_dim_v;
    let qd = s.n_head * s.head_dim;
    let group = s.n_head / s.n_head_kv;
    let n_blocks = n.div_ceil(TOKEN_BLOCK);
    // One output slice per (head, token block), in head-major order.
    let mut items = Vec::with_capacity(s.n_head * n_blocks);
    let mut rest = &mut out_hm[..s.n_head * n * hdv];
    for h in 0..s.n_head {
        for b in 0..n_blocks {
            let t0 = b * TOKEN_BLOCK;
            let t1 = (t0 + TOKEN_BLOCK).min(n);
            let (o, tail) = rest.split_at_mut((t1 - t0) * hdv);
            rest = tail;
            items.push(Mutex::new((h, t0, o)));
        }
    }
    let rows: Vec<Mutex<&mut [f32]>> = scores[..nth * s.capacity]
        .chunks_exact_mut(s.capacity)
        .map(Mutex::new)
        .collect();
    let next = AtomicUsize::new(0);
    pool.run_dynamic(|ith, _| {
        let Some(row) = rows.get(ith) else {
            return;
        };
        let mut sc_row = row.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                break;
            };
            let mut g = item.lock().unwrap_or_else(|e| e.into_inner());
            let (h, t0, ref mut out) = *g;
            let kvh = h / group;
            for (k, o) in out.chunks_exact_mut(hdv).enumerate() {
                let t = t0 + k;
                let pos = p0 + t;
                let lo = match s.window {
                    Some(w) => (pos + 1).saturating_sub(w),
                    None => 0,
                };
                let nk = pos + 1 - lo;
                let qh = &q[t * qd + h * s.head_dim..][..s.head_dim];
                let sc = &mut sc_row[..nk];
                for (j, v) in sc.iter_mut().enumerate() {
                    let off = ((lo + j) * s.n_head_kv + kvh) * s.head_dim;
                    *v = kv.k.dot(off, qh, f16dot) * s.scale;
                }
                softmax_inplace(sc);
                for (d, ov) in o.iter_mut().enumerate() {
                    let off = (kvh * hdv + d) * s.capacity + lo;
                    *ov = kv.v.dot(off, sc, f16dot);
                }
            }
        }
    });
}
