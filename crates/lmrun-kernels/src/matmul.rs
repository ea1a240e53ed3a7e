//! Matrix × vector (decode) and matrix × matrix (prefill) over a weight used in place: the
//! weight is a `&[u8]` into the model mapping, never copied or repacked. Activations are
//! quantized once per call into the caller's [`Scratch`]; the pool's threads then take chunks
//! of weight rows from a shared counter (dynamic split: robust when cores are shared). For
//! several tokens, a chunk of weight rows small enough to stay in cache is multiplied with
//! every token before moving on, so each weight byte comes from DRAM once per call.
//!
//! On AVX-512 VNNI, calls of fewer than 16 tokens on Q4_0/Q5_0/Q8_0/Q4_K/Q6_K weights go to the
//! eight-row kernels of `simd::rows8` (one token too for the 32-wide types), and 16 or more to
//! the GEMM of `simd::gemm_k`; both, and the one-row k-quant kernels, sum each output in the
//! same order, so an output does not depend on the batch it was computed in (what lets a
//! server batch sequences without changing any of them).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::dispatch::{dot4_fn, dot_fn, tile_fn, Isa};
use crate::fn_types::{Dot4Fn, DotFn, Partner, TileFn, TILE_ROWS};
use crate::pool::{DisjointOut, ThreadPool};
use crate::quant::{quantize_q8k, quantize_q8x32, ActKind, BlockQ8K, BlockQ8x32};
use crate::{KernelError, QType};

/// A weight matrix in place: `rows` rows of `cols` values of `qtype`, row-major, each row
/// `qtype.row_bytes(cols)` bytes (a GGUF tensor of shape `[cols, rows]`, ggml `ne0 = cols`).
#[derive(Debug, Clone, Copy)]
pub struct WeightRef<'a> {
    /// Element type.
    pub qtype: QType,
    /// Raw bytes, exactly `rows * row_bytes(cols)` long.
    pub data: &'a [u8],
    /// Number of rows (outputs).
    pub rows: usize,
    /// Number of columns (inputs).
    pub cols: usize,
}

impl<'a> WeightRef<'a> {
    /// Checks the shape against the data length and the type's block size.
    pub fn new(
        qtype: QType,
        data: &'a [u8],
        rows: usize,
        cols: usize,
    ) -> Result<WeightRef<'a>, KernelError> {
        let w = WeightRef {
            qtype,
            data,
            rows,
            cols,
        };
        w.validate()?;
        Ok(w)
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> Result<usize, KernelError> {
        self.qtype
            .row_bytes(self.cols)
            .ok_or(KernelError::BadShape {
                qtype: self.qtype,
                cols: self.cols,
                block: self.qtype.block_size(),
            })
    }

    /// Raw bytes of row `r`.
    pub fn row(&self, r: usize) -> Result<&'a [u8], KernelError> {
        let rb = self.row_bytes()?;
        if r >= self.rows {
            return Err(KernelError::OutOfRange {
                what: "weight row",
                index: r,
                len: self.rows,
            });
        }
        self.data
            .get(r * rb..(r + 1) * rb)
            .ok_or(KernelError::Length {
                what: "weight data",
                expected: (r + 1) * rb,
                got: self.data.len(),
            })
    }

    fn validate(&self) -> Result<usize, KernelError> {
        let rb = self.row_bytes()?;
        let total = rb
            .checked_mul(self.rows)
            .ok_or(KernelError::Overflow("weight size"))?;
        if self.data.len() != total {
            return Err(KernelError::Length {
                what: "weight data",
                expected: total,
                got: self.data.len(),
            });
        }
        Ok(rb)
    }
}

/// Reusable per-caller buffers for quantized activations (grow once, then reused).
#[derive(Debug, Default)]
pub struct Scratch {
    q32: Vec<BlockQ8x32>,
    qk: Vec<BlockQ8K>,
}

impl Scratch {
    /// An empty scratch; it grows on first use.
    pub fn new() -> Scratch {
        Scratch::default()
    }

    /// Heap bytes held: the quantized activations of the largest input so far, plus the prefill
    /// GEMM's per-thread buffers (process-wide: shared by every `Scratch` of the process).
    pub fn heap_bytes(&self) -> usize {
        let gemm = {
            #[cfg(target_arch = "x86_64")]
            {
                crate::simd::gemm_k::held_bytes()
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                0
            }
        };
        self.q32.capacity() * std::mem::size_of::<BlockQ8x32>()
            + self.qk.capacity() * std::mem::size_of::<BlockQ8K>()
            + gemm
    }

    /// Quantizes the activation rows `x` into this scratch in the form `kind` (nothing for
    /// f32), growing it as needed.
    fn quantize(&mut self, kind: ActKind, x: &[f32]) {
        match kind {
            ActKind::F32 => {}
            ActKind::Q8x32 => {
                let n = x.len() / <BlockQ8x32 as Partner>::VALUES;
                if self.q32.len() < n {
                    self.q32.resize(n, BlockQ8x32::default());
                }
                quantize_q8x32(x, &mut self.q32[..n]);
            }
            ActKind::Q8K => {
                let n = x.len() / <BlockQ8K as Partner>::VALUES;
                if self.qk.len() < n {
                    self.qk.resize(n, BlockQ8K::default());
                }
                quantize_q8k(x, &mut self.qk[..n]);
            }
        }
    }
}

/// One weight row against token `t`'s activation row, in the form `f` consumes.
#[inline(always)]
fn dot_row(
    f: DotFn,
    wr: &[u8],
    t: usize,
    cols: usize,
    x: &[f32],
    q32: &[BlockQ8x32],
    qk: &[BlockQ8K],
) -> f32 {
    match f {
        DotFn::F32(f) => f(wr, &x[t * cols..(t + 1) * cols]),
        DotFn::Q8x32(f) => {
            let nb = cols / <BlockQ8x32 as Partner>::VALUES;
            f(wr, &q32[t * nb..(t + 1) * nb])
        }
        DotFn::Q8K(f) => {
            let nb = cols / <BlockQ8K as Partner>::VALUES;
            f(wr, &qk[t * nb..(t + 1) * nb])
        }
    }
}

/// `out[t * rows + r] = dot(W[r, :], x[t * cols ..][..cols])` for `t < n_tokens`, using the
/// best instruction set of this CPU and all threads of `pool`.
pub fn matmul(
    pool: &ThreadPool,
    w: &WeightRef<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    matmul_with_isa(Isa::best(), pool, w, x, n_tokens, out, scratch)
}

/// [`matmul`] at a chosen instruction-set level (for tests and benchmarks).
pub fn matmul_with_isa(
    isa: Isa,
    pool: &ThreadPool,
    w: &WeightRef<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    let rb = w.validate()?;
    let (rows, cols) = (w.rows, w.cols);
    let xlen = n_tokens
        .checked_mul(cols)
        .ok_or(KernelError::Overflow("activation size"))?;
    if x.len() != xlen {
        return Err(KernelError::Length {
            what: "matmul x",
            expected: xlen,
            got: x.len(),
        });
    }
    let olen = n_tokens
        .checked_mul(rows)
        .ok_or(KernelError::Overflow("output size"))?;
    if out.len() != olen {
        return Err(KernelError::Length {
            what: "matmul out",
            expected: olen,
            got: out.len(),
        });
    }
    let f = dot_fn(w.qtype, isa).ok_or(KernelError::Unsupported {
        qtype: w.qtype,
        op: "matmul",
    })?;
    let f4 = if n_tokens >= 4 {
        dot4_fn(w.qtype, isa)
    } else {
        None
    };
    let ft = if n_tokens >= 4 {
        tile_fn(w.qtype, isa)
    } else {
        None
    };
    if rows == 0 || n_tokens == 0 {
        return Ok(());
    }
    scratch.quantize(w.qtype.act_kind(), x);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni && crate::simd::gemm_k::handles(w.qtype, n_tokens) {
        let nb = cols / <BlockQ8K as Partner>::VALUES;
        crate::simd::gemm_k::matmul(
            pool,
            w.qtype,
            w.data,
            rows,
            cols,
            rb,
            &scratch.qk[..n_tokens * nb],
            n_tokens,
            out,
        );
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni && crate::simd::gemm_k::handles32(w.qtype, n_tokens) {
        let nb = cols / <BlockQ8x32 as Partner>::VALUES;
        crate::simd::gemm_k::matmul32(
            pool,
            w.qtype,
            w.data,
            rows,
            cols,
            rb,
            &scratch.q32[..n_tokens * nb],
            n_tokens,
            out,
        );
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni
        && crate::simd::rows8::handles(w.qtype)
        && (n_tokens > 1 || crate::simd::rows8::handles_one(w.qtype))
    {
        // SAFETY: AVX-512 VNNI was detected (`isa` is available, checked by `dot_fn`); the
        // lengths were checked above and the activations quantized for this type.
        unsafe {
            match w.qtype.act_kind() {
                ActKind::Q8K => crate::simd::rows8::matmul(
                    pool,
                    w.qtype,
                    w.data,
                    rows,
                    cols,
                    rb,
                    &scratch.qk[..n_tokens * (cols / <BlockQ8K as Partner>::VALUES)],
                    n_tokens,
                    out,
                ),
                _ => crate::simd::rows8::matmul(
                    pool,
                    w.qtype,
                    w.data,
                    rows,
                    cols,
                    rb,
                    &scratch.q32[..n_tokens * (cols / <BlockQ8x32 as Partner>::VALUES)],
                    n_tokens,
                    out,
                ),
            }
        };
        return Ok(());
    }
    let job = Job {
        pool,
        data: w.data,
        rows,
        cols,
        rb,
        n_tokens,
        out,
    };
    match f {
        DotFn::F32(f) => job.run(x, f, f4, ft),
        DotFn::Q8x32(f) => job.run(&scratch.q32, f, f4, ft),
        DotFn::Q8K(f) => job.run(&scratch.qk, f, f4, ft),
    }
    Ok(())
}

/// One checked [`matmul_with_isa`] call: the weight, the sizes and the output.
struct Job<'p, 'w, 'o> {
    pool: &'p ThreadPool,
    data: &'w [u8],
    rows: usize,
    cols: usize,
    rb: usize,
    n_tokens: usize,
    out: &'o mut [f32],
}

impl Job<'_, '_, '_> {
    /// Runs the product over activation rows `acts` of partner type `A` (`n_tokens` rows of
    /// `cols / A::VALUES` elements) with the one-row kernel `f` and, where given, the 4-token
    /// and tile kernels.
    fn run<A: Partner + Sync>(
        self,
        acts: &[A],
        f: fn(&[u8], &[A]) -> f32,
        f4: Option<Dot4Fn>,
        ft: Option<TileFn>,
    ) {
        let (rows, rb, n_tokens, data) = (self.rows, self.rb, self.n_tokens, self.data);
        let per = self.cols / A::VALUES;
        let f4 = f4.and_then(A::of_dot4);
        let ft = ft.and_then(A::of_tile);
        let nth = self.pool.n_threads();
        let mut chunk = rows.div_ceil(nth * 8).max(1);
        if n_tokens > 1 {
            chunk = chunk.min((16 * 1024 / rb.max(1)).max(1));
        }
        if ft.is_some() {
            // whole tiles per chunk: no row falls back to the one-row kernel except at the end,
            // and which kernel computes a row does not depend on the thread count
            chunk = chunk.next_multiple_of(TILE_ROWS);
        }
        let n_chunks = rows.div_ceil(chunk);
        let next = AtomicUsize::new(0);
        let dst = DisjointOut::new(self.out);
        let act = |t: usize| &acts[t * per..(t + 1) * per];
        let row = |r: usize| &data[r * rb..(r + 1) * rb];
        self.pool.run_dynamic(|_ith, _nth| loop {
            let c = next.fetch_add(1, Ordering::Relaxed);
            if c >= n_chunks {
                break;
            }
            let r0 = c * chunk;
            let r1 = (r0 + chunk).min(rows);
            // groups of four tokens through the 4-token kernel, the rest one by one
            let mut t0 = 0;
            if let Some(f4) = f4 {
                while t0 + 4 <= n_tokens {
                    let a4 = [act(t0), act(t0 + 1), act(t0 + 2), act(t0 + 3)];
                    // tiles of TILE_ROWS rows where the level has a tile kernel
                    let mut r_single = r0;
                    if let Some(ft) = ft {
                        let mut r = r0;
                        while r + TILE_ROWS <= r1 {
                            let wr: [&[u8]; TILE_ROWS] = std::array::from_fn(|j| row(r + j));
                            for (j, vr) in ft(wr, a4).iter().enumerate() {
                                for (k, &vk) in vr.iter().enumerate() {
                                    // SAFETY: as below; rows of this chunk belong to this
                                    // thread.
                                    unsafe { dst.write((t0 + k) * rows + r + j, vk) };
                                }
                            }
                            r += TILE_ROWS;
                        }
                        r_single = r;
                    }
                    for r in r_single..r1 {
                        for (k, &vk) in f4(row(r), a4).iter().enumerate() {
                            // SAFETY: as below; rows of this chunk belong to this thread only.
                            unsafe { dst.write((t0 + k) * rows + r, vk) };
                        }
                    }
                    t0 += 4;
                }
            }
            for t in t0..n_tokens {
                for r in r0..r1 {
                    let v = f(row(r), act(t));
                    // SAFETY: each chunk index `c` is taken by exactly one thread, and the
                    // indices `t * rows + r` for `r` in that chunk's rows are disjoint across
                    // chunks.
                    unsafe { dst.write(t * rows + r, v) };
                }
            }
        });
    }
}

/// Several matrix × vector products over one input vector in a single pass of the pool: `x`
/// is quantized once (per activation kind) and the row chunks of all `N` weights go through one
/// work queue. For decode, where the Q/K/V (or gate/up) projections read the same normed input:
/// one wake-up and one barrier of the pool instead of `N`. Each output equals what
/// [`matmul`] with one token gives, bit for bit (the same kernel per row).
pub fn matvec_many<const N: usize>(
    pool: &ThreadPool,
    ws: [&WeightRef<'_>; N],
    x: &[f32],
    outs: [&mut [f32]; N],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    let isa = Isa::best();
    let mut rbs = [0usize; N];
    let mut fs = [None; N];
    let (mut need32, mut needk) = (false, false);
    for i in 0..N {
        let w = ws[i];
        rbs[i] = w.validate()?;
        if x.len() != w.cols {
            return Err(KernelError::Length {
                what: "matvec x",
                expected: w.cols,
                got: x.len(),
            });
        }
        if outs[i].len() != w.rows {
            return Err(KernelError::Length {
                what: "matvec out",
                expected: w.rows,
                got: outs[i].len(),
            });
        }
        fs[i] = Some(dot_fn(w.qtype, isa).ok_or(KernelError::Unsupported {
            qtype: w.qtype,
            op: "matmul",
        })?);
        match w.qtype.act_kind() {
            ActKind::F32 => {}
            ActKind::Q8x32 => need32 = true,
            ActKind::Q8K => needk = true,
        }
    }
    let cols = x.len();
    if need32 {
        scratch.quantize(ActKind::Q8x32, x);
    }
    if needk {
        scratch.quantize(ActKind::Q8K, x);
    }
    let nth = pool.n_threads();
    // the weights that take the batch-invariant eight-row kernels (as `matmul` does)
    #[cfg(target_arch = "x86_64")]
    let fast8: [bool; N] = std::array::from_fn(|i| {
        isa == Isa::Avx512Vnni && crate::simd::rows8::handles_one(ws[i].qtype)
    });
    #[cfg(not(target_arch = "x86_64"))]
    let fast8 = [false; N];
    // chunk sizes and the first work item of each weight
    let mut chunk = [1usize; N];
    let mut first = [0usize; N];
    let mut n_items = 0;
    for i in 0..N {
        chunk[i] = ws[i].rows.div_ceil(nth * 8).max(1);
        if fast8[i] {
            chunk[i] = chunk[i].next_multiple_of(8);
        }
        first[i] = n_items;
        n_items += ws[i].rows.div_ceil(chunk[i]);
    }
    let dsts = outs.map(DisjointOut::new);
    let (q32, qk) = (&scratch.q32[..], &scratch.qk[..]);
    let next = AtomicUsize::new(0);
    pool.run_dynamic(|_ith, _nth| loop {
        let item = next.fetch_add(1, Ordering::Relaxed);
        if item >= n_items {
            break;
        }
        let i = (0..N).rev().find(|&i| first[i] <= item).unwrap_or(0);
        let (w, rb) = (ws[i], rbs[i]);
        let r0 = (item - first[i]) * chunk[i];
        let r1 = (r0 + chunk[i]).min(w.rows);
        #[cfg(target_arch = "x86_64")]
        if fast8[i] {
            let rows8 = crate::simd::rows8::Rows {
                t: w.qtype,
                data: w.data,
                rows: w.rows,
                rb,
                per: cols / w.qtype.block_size(),
            };
            // SAFETY: AVX-512 VNNI was detected (`fast8`); the lengths were checked above and
            // the activations quantized for this type; this work item owns rows r0..r1 of
            // output `i`.
            unsafe {
                match w.qtype.act_kind() {
                    ActKind::Q8K => rows8.chunk(r0, r1, qk, 1, &dsts[i]),
                    _ => rows8.chunk(r0, r1, q32, 1, &dsts[i]),
                }
            };
            continue;
        }
        let Some(f) = fs[i] else { break };
        for r in r0..r1 {
            let v = dot_row(f, &w.data[r * rb..(r + 1) * rb], 0, cols, x, q32, qk);
            // SAFETY: each work item (weight `i`, row chunk) is taken by exactly one thread and
            // owns rows r0..r1 of output `i`.
            unsafe { dsts[i].write(r, v) };
        }
    });
    Ok(())
}
