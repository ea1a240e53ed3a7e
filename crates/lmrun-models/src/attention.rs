//! Causal multi-head attention over the KV cache, for a chunk of `n` new tokens whose keys and
//! values are already in the cache. Grouped-query heads share a KV head; sliding-window layers
//! see only the last `window` positions. Work items are (up to [`HEADS_PER_ITEM`] heads of one
//! KV group, block of up to [`TOKEN_BLOCK`] tokens): each cached f16 key and value is converted
//! once for all heads of the item. Pool threads take items from a shared counter
//! ([`ThreadPool::run_dynamic`]: a worker that is descheduled takes fewer, or none, and the
//! caller never waits for it), each item owning one contiguous slice of the head-major output
//! per head, each thread its own rows of score scratch (no unsafe, no contention).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use lmrun_kernels::{ops::softmax_inplace, ThreadPool};

use crate::kv::{KvDots, LayerKv};

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

/// Query heads per work item: heads of one KV group are handled together, so each cached key
/// and value element is converted once for up to this many heads ([`KvBuf::dot4`]).
pub(crate) const HEADS_PER_ITEM: usize = 4;

/// Fewest work items for which heads are grouped (enough for the pool's threads to share).
const MIN_GROUPED_ITEMS: usize = 4;

/// `out_hm[h][t][..head_dim_v] = softmax(scale · q_t,h · K) · V` for the `n` tokens at
/// positions `p0..p0 + n`. `q` is `[n][n_head * head_dim]`; `scores` holds at least
/// `pool.n_threads() * HEADS_PER_ITEM * capacity` floats.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    pool: &ThreadPool,
    s: &AttnShape,
    kv: &LayerKv,
    dots: &KvDots,
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
    // One output slice per (head, token block), in head-major order ...
    let mut parts: Vec<Option<&mut [f32]>> = Vec::with_capacity(s.n_head * n_blocks);
    let mut rest = &mut out_hm[..s.n_head * n * hdv];
    for _h in 0..s.n_head {
        for b in 0..n_blocks {
            let t0 = b * TOKEN_BLOCK;
            let t1 = (t0 + TOKEN_BLOCK).min(n);
            let (o, tail) = rest.split_at_mut((t1 - t0) * hdv);
            rest = tail;
            parts.push(Some(o));
        }
    }
    // ... gathered into items of up to HEADS_PER_ITEM heads of one KV group and one block.
    // Grouping shrinks the number of items: when that would leave threads idle (decode: one
    // token, few KV heads), every head is its own item instead. The rule does not look at the
    // thread count, so the kernels used (and the bits of the result) do not depend on it.
    let grouped_items = s.n_head_kv * group.div_ceil(HEADS_PER_ITEM) * n_blocks;
    let per_item = if grouped_items >= MIN_GROUPED_ITEMS {
        HEADS_PER_ITEM
    } else {
        1
    };
    let mut items = Vec::with_capacity(s.n_head.div_ceil(per_item) * n_blocks);
    for kvh in 0..s.n_head_kv {
        let mut h0 = kvh * group;
        while h0 < (kvh + 1) * group {
            let h1 = (h0 + per_item).min((kvh + 1) * group);
            for b in 0..n_blocks {
                let outs: Vec<&mut [f32]> = (h0..h1)
                    .filter_map(|h| parts[h * n_blocks + b].take())
                    .collect();
                items.push(Mutex::new((kvh, h0, b * TOKEN_BLOCK, outs)));
            }
            h0 = h1;
        }
    }
    let rows: Vec<Mutex<&mut [f32]>> = scores[..nth * HEADS_PER_ITEM * s.capacity]
        .chunks_exact_mut(HEADS_PER_ITEM * s.capacity)
        .map(Mutex::new)
        .collect();
    let next = AtomicUsize::new(0);
    pool.run_dynamic(|ith, _| {
        let Some(row) = rows.get(ith) else {
            return;
        };
        let mut sc_guard = row.lock().unwrap_or_else(|e| e.into_inner());
        let mut sc_it = sc_guard.chunks_exact_mut(s.capacity);
        let mut sc_rows: [&mut [f32]; HEADS_PER_ITEM] =
            std::array::from_fn(|_| sc_it.next().unwrap_or_default());
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                break;
            };
            let mut g = item.lock().unwrap_or_else(|e| e.into_inner());
            let (kvh, h0, t0, ref mut outs) = *g;
            let m = outs.len();
            let block_len = outs.first().map_or(0, |o| o.len() / hdv);
            for k in 0..block_len {
                let t = t0 + k;
                let pos = p0 + t;
                let lo = match s.window {
                    Some(w) => (pos + 1).saturating_sub(w),
                    None => 0,
                };
                let nk = pos + 1 - lo;
                let qh = |j: usize| &q[t * qd + (h0 + j) * s.head_dim..][..s.head_dim];
                let sc = &mut sc_rows[..m];
                if m > 1 && dots.f16dot4.is_some() {
                    // 2 or 3 heads go through the 4-head kernel with the last one repeated
                    let qs = [qh(0), qh(1.min(m - 1)), qh(2.min(m - 1)), qh(3.min(m - 1))];
                    for j in 0..nk {
                        let off = ((lo + j) * s.n_head_kv + kvh) * s.head_dim;
                        let v = kv.k.dot4(off, qs, dots);
                        for (r, vr) in sc.iter_mut().zip(v) {
                            r[j] = vr * s.scale;
                        }
                    }
                } else {
                    for (jh, r) in sc.iter_mut().enumerate() {
                        let qj = qh(jh);
                        for (j, v) in r[..nk].iter_mut().enumerate() {
                            let off = ((lo + j) * s.n_head_kv + kvh) * s.head_dim;
                            *v = kv.k.dot(off, qj, dots.f16dot) * s.scale;
                        }
                    }
                }
                for r in sc.iter_mut() {
                    softmax_inplace(&mut r[..nk]);
                }
                if m > 1 && dots.f16dot4.is_some() {
                    let r = |j: usize| &sc[j.min(m - 1)][..nk];
                    let ps = [r(0), r(1), r(2), r(3)];
                    for d in 0..hdv {
                        let off = (kvh * hdv + d) * s.capacity + lo;
                        let v = kv.v.dot4(off, ps, dots);
                        for (o, vo) in outs.iter_mut().zip(v) {
                            o[k * hdv + d] = vo;
                        }
                    }
                } else {
                    for (o, r) in outs.iter_mut().zip(sc.iter()) {
                        for d in 0..hdv {
                            let off = (kvh * hdv + d) * s.capacity + lo;
                            o[k * hdv + d] = kv.v.dot(off, &r[..nk], dots.f16dot);
                        }
                    }
                }
            }
        }
    });
}
