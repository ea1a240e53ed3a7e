//! Causal multi-head attention over the KV cache, for a chunk of `n` new tokens whose keys and
//! values are already in the cache. Grouped-query heads share a KV head; sliding-window layers
//! see only the last `window` positions. Work items are (up to [`HEADS_PER_ITEM`] heads of one
//! KV group, block of up to [`TOKEN_BLOCK`] tokens): each cached f16 key and value is converted
//! once for all heads of the item. Pool threads take items from a shared counter
//! ([`ThreadPool::run_dynamic`]: a worker that is descheduled takes fewer, or none, and the
//! caller never waits for it), each thread computing into its own scratch (allocated with the
//! model) and copying an item's result into the head-major output under a short lock: no
//! unsafe, no allocation per call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use lmrun_kernels::{ops::softmax_inplace, ThreadPool};

use crate::kv::{KvDots, LayerKv};

/// Largest value head a Q8_0 cache (values stored by position) supports.
pub(crate) const MAX_HEAD_DIM_V: usize = 512;

/// Tokens per work item in a batched pass.
pub(crate) const TOKEN_BLOCK: usize = 16;

/// The shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    /// Score scale.
    pub scale: f32,
    /// Soft-cap of the scaled scores, `c·tanh(s/c)` (gemma2).
    pub softcap: Option<f32>,
    /// Sliding window, if this layer has one.
    pub window: Option<usize>,
}

/// Query heads per work item: heads of one KV group are handled together, so each cached key
/// and value element is converted once for up to this many heads ([`KvBuf::dot4`]).
pub(crate) const HEADS_PER_ITEM: usize = 4;

/// Fewest work items for which heads are grouped (enough for the pool's threads to share).
const MIN_GROUPED_ITEMS: usize = 4;

/// Per-thread scratch of [`attend`], allocated once when the model is built: for each pool
/// thread, [`HEADS_PER_ITEM`] rows of attention scores over the whole context and the outputs
/// of one work item (up to [`HEADS_PER_ITEM`] heads × [`TOKEN_BLOCK`] tokens).
#[derive(Debug, Default)]
pub(crate) struct AttnScratch {
    rows: Vec<Mutex<Vec<f32>>>,
    capacity: usize,
}

impl AttnScratch {
    /// Scratch for `n_threads` threads, a context of `capacity` and values of `head_dim_v`.
    pub fn new(n_threads: usize, capacity: usize, head_dim_v: usize) -> AttnScratch {
        let per = HEADS_PER_ITEM * (capacity + TOKEN_BLOCK * head_dim_v);
        AttnScratch {
            rows: (0..n_threads).map(|_| Mutex::new(vec![0.0; per])).collect(),
            capacity,
        }
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.rows
            .iter()
            .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).capacity() * 4)
            .sum()
    }
}

/// `out_hm[h][t][..head_dim_v] = softmax(scale · q_t,h · K) · V` for the `n` tokens at
/// positions `p0..p0 + n`. `q` is `[n][n_head * head_dim]`; `scratch` was built for at least
/// `pool.n_threads()` threads and this context. Work items are numbered and decoded from their
/// index (no list is built), each thread computes an item into its own scratch and copies the
/// result into `out_hm` under a lock held only for that copy: nothing is allocated.
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
    scratch: &AttnScratch,
) {
    let hdv = s.head_dim_v;
    let qd = s.n_head * s.head_dim;
    let group = s.n_head / s.n_head_kv;
    let n_blocks = n.div_ceil(TOKEN_BLOCK);
    // Items of up to HEADS_PER_ITEM heads of one KV group and one token block. Grouping
    // shrinks the number of items: when that would leave threads idle (decode: one token, few
    // KV heads), every head is its own item instead. The rule does not look at the thread
    // count, so the kernels used (and the bits of the result) do not depend on it.
    let grouped_items = s.n_head_kv * group.div_ceil(HEADS_PER_ITEM) * n_blocks;
    let per_item = if grouped_items >= MIN_GROUPED_ITEMS {
        HEADS_PER_ITEM
    } else {
        1
    };
    let per_group = group.div_ceil(per_item) * n_blocks;
    let n_items = s.n_head_kv * per_group;
    let out = Mutex::new(&mut out_hm[..s.n_head * n * hdv]);
    let next = AtomicUsize::new(0);
    pool.run_dynamic(|ith, _| {
        let Some(cell) = scratch.rows.get(ith) else {
            return;
        };
        let mut guard = cell.lock().unwrap_or_else(|e| e.into_inner());
        let (sc_all, res) = guard.split_at_mut(HEADS_PER_ITEM * scratch.capacity);
        let mut sc_it = sc_all.chunks_exact_mut(scratch.capacity);
        let mut sc_rows: [&mut [f32]; HEADS_PER_ITEM] =
            std::array::from_fn(|_| sc_it.next().unwrap_or_default());
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n_items {
                break;
            }
            let (kvh, r) = (i / per_group, i % per_group);
            let (hc, b) = (r / n_blocks, r % n_blocks);
            let h0 = kvh * group + hc * per_item;
            let m = per_item.min((kvh + 1) * group - h0);
            let t0 = b * TOKEN_BLOCK;
            let block_len = TOKEN_BLOCK.min(n - t0);
            // This item's outputs: head j's rows at res[j * block_len * hdv..].
            let item_out = &mut res[..m * block_len * hdv];
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
                        let off = (kv.row(lo + j) * s.n_head_kv + kvh) * s.head_dim;
                        let v = kv.k.dot4(off, qs, dots);
                        for (r, vr) in sc.iter_mut().zip(v) {
                            r[j] = vr * s.scale;
                        }
                    }
                } else {
                    for (jh, r) in sc.iter_mut().enumerate() {
                        let qj = qh(jh);
                        for (j, v) in r[..nk].iter_mut().enumerate() {
                            let off = (kv.row(lo + j) * s.n_head_kv + kvh) * s.head_dim;
                            *v = kv.k.dot(off, qj, dots.f16dot) * s.scale;
                        }
                    }
                }
                for r in sc.iter_mut() {
                    if let Some(c) = s.softcap {
                        for v in r[..nk].iter_mut() {
                            *v = c * (*v / c).tanh();
                        }
                    }
                    softmax_inplace(&mut r[..nk]);
                }
                let at = |j: usize, d: usize| (j * block_len + k) * hdv + d;
                if kv.v_by_row {
                    // Values stored by position (Q8_0): each position's row, decoded once,
                    // weighted into every head of the item.
                    let vd = s.n_head_kv * hdv;
                    let mut row = [0f32; MAX_HEAD_DIM_V];
                    let row = &mut row[..hdv];
                    for j in 0..m {
                        item_out[at(j, 0)..at(j, 0) + hdv].fill(0.0);
                    }
                    for (jp, pos) in (lo..lo + nk).enumerate() {
                        kv.v.read(kv.row(pos) * vd + kvh * hdv, row);
                        for (j, r) in sc.iter().enumerate() {
                            let p = r[jp];
                            let out = &mut item_out[at(j, 0)..at(j, 0) + hdv];
                            for (o, &v) in out.iter_mut().zip(row.iter()) {
                                *o += p * v;
                            }
                        }
                    }
                    continue;
                }
                // The window's rows: one run, or two where a ring wraps around.
                let runs = kv.runs(lo, nk);
                if m > 1 && dots.f16dot4.is_some() {
                    for d in 0..hdv {
                        let base = (kvh * hdv + d) * kv.rows;
                        let mut acc = [0f32; 4];
                        let mut done = 0;
                        for &(row, len) in runs.iter().filter(|r| r.1 > 0) {
                            let r = |j: usize| &sc[j.min(m - 1)][done..done + len];
                            let v = kv.v.dot4(base + row, [r(0), r(1), r(2), r(3)], dots);
                            for (a, x) in acc.iter_mut().zip(v) {
                                *a += x;
                            }
                            done += len;
                        }
                        for (j, vo) in acc.into_iter().enumerate().take(m) {
                            item_out[at(j, d)] = vo;
                        }
                    }
                } else {
                    for (j, r) in sc.iter().enumerate() {
                        for d in 0..hdv {
                            let base = (kvh * hdv + d) * kv.rows;
                            let mut acc = 0f32;
                            let mut done = 0;
                            for &(row, len) in runs.iter().filter(|r| r.1 > 0) {
                                acc += kv.v.dot(base + row, &r[done..done + len], dots.f16dot);
                                done += len;
                            }
                            item_out[at(j, d)] = acc;
                        }
                    }
                }
            }
            // head-major output: head h's rows t0..t0 + block_len are contiguous
            let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
            for j in 0..m {
                let dst = ((h0 + j) * n + t0) * hdv;
                o[dst..dst + block_len * hdv]
                    .copy_from_slice(&item_out[j * block_len * hdv..][..block_len * hdv]);
            }
        }
    });
}
