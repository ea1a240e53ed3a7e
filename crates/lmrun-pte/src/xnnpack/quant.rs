//! XNNPACK's int8 arithmetic, emulated exactly: the dynamic per-row quantization of
//! activations (`Convert` fp32 → qdint8 with XNNPACK's qd8 parameters) and the
//! FullyConnected of int8 activations with int8/int4 weights (per-tensor, per-channel or
//! blockwise bf16 scales), exact i32 block dots split over the thread pool.

use half::bf16;

use super::graph::{Quant, ValueDef, DT_QBINT4, DT_QCINT4};
use lmrun_kernels::xnn_qb4::{self as qb4, Act, Scales};

/// Quantize each row of `k` values of `x` to int8 with its own (dequantization scale, zero
/// point), as XNNPACK's `Convert` to qdint8 does.
pub(super) fn quantize_rows(x: &[f32], k: usize) -> (Vec<i8>, Vec<(f32, i32)>) {
    // Pre-sized and written in place, so the per-value loop vectorizes.
    let mut q = vec![0i8; x.len()];
    let mut params = Vec::with_capacity(x.len().div_ceil(k.max(1)));
    for (row, qr) in x.chunks(k).zip(q.chunks_mut(k)) {
        let (scale, mult, zp) = qd8_params(row);
        let (lo, hi) = ((-128 - zp) as f32, (127 - zp) as f32);
        for (o, &v) in qr.iter_mut().zip(row) {
            let r = round_even((v * mult).max(lo).min(hi)) as i32 + zp;
            *o = r.clamp(-128, 127) as i8;
        }
        params.push((scale, zp));
    }
    (q, params)
}

/// `x.round_ties_even()` for |x| < 2^22 (the clamped activations are within ±255), by adding
/// and subtracting 1.5·2^23 in f32: the addition rounds to an integer, ties to even, as the
/// FPU's default mode does. Without SSE4.1 in the baseline target, `round_ties_even` is a libm
/// call per value (5 % of an 8da4w decode step); this is two vectorizable additions.
#[inline]
fn round_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// XNNPACK's asymmetric per-row int8 parameters (`xnn_f32_qd8_asymmetric_quantization_params`,
/// all in f32 exactly as XNNPACK rounds them): (dequantization scale, quantization multiplier,
/// zero point).
fn qd8_params(row: &[f32]) -> (f32, f32, i32) {
    let (mut mn, mut mx) = (0f32, 0f32);
    for &v in row {
        mn = mn.min(v);
        mx = mx.max(v);
    }
    let (qmin, qmax) = (-128f32, 127f32);
    let mult = if mn == mx {
        1.0
    } else {
        (qmax - qmin) / (mx - mn)
    };
    let dmin = mn * mult;
    let dmax = mx * mult;
    let zp = if (qmin + dmin) + (qmax + dmax) > 0.0 {
        qmin - dmin
    } else {
        qmax - dmax
    };
    let zp = zp.clamp(qmin, qmax).round_ties_even() as i32;
    let deq = 1.0 / mult;
    (deq, 1.0 / deq, zp)
}

/// Dot product of zero-point-corrected int8 activations (split into even and odd columns, as
/// i16) with packed int4 weights (low nibble = even column, stored with +8), as XNNPACK's
/// qb4w/qc4w kernels compute it: exact in i32. The even/odd split lets the loop vectorize.
fn dot_q4(xe: &[i16], xo: &[i16], w: &[u8]) -> i32 {
    let mut acc = 0i32;
    for ((&e, &o), &b) in xe.iter().zip(xo).zip(w) {
        acc += i32::from(e) * (i32::from(b & 15) - 8) + i32::from(o) * (i32::from(b >> 4) - 8);
    }
    acc
}

/// Dot product with int8 weights minus a weight zero point.
fn dot_q8(x: &[i16], w: &[u8], wzp: i32) -> i32 {
    x.iter()
        .zip(w)
        .map(|(&a, &b)| i32::from(a) * (i32::from(b as i8) - wzp))
        .sum()
}

/// The layout of a quantized filter: how its rows are blocked and scaled.
struct Filter<'a> {
    quant: &'a Quant,
    w: &'a [u8],
    rows: usize,
    cols: usize,
    block: usize,
    nblocks: usize,
    four_bit: bool,
    /// Weight zero point (per-tensor int8 only).
    wzp: i32,
    row_bytes: usize,
}

impl Filter<'_> {
    /// The scale of block `b` of row `r`.
    fn scale(&self, r: usize, b: usize) -> f32 {
        match self.quant {
            Quant::Blockwise { scales, .. } => {
                let i = (r * self.nblocks + b) * 2;
                bf16::from_le_bytes([scales[i], scales[i + 1]]).to_f32()
            }
            Quant::PerChannel { scales } => scales[r],
            Quant::PerTensor { scale, .. } => *scale,
            _ => 0.0,
        }
    }

    /// Refuse a filter, activation or output too short, or scales that do not cover the rows.
    fn check(&self, q: &[i8], ntok: usize, out: &[f32]) -> Result<(), String> {
        if self.four_bit && self.block % 2 != 0 {
            return Err("odd int4 block size".into());
        }
        if self.w.len() < self.rows.saturating_mul(self.row_bytes)
            || q.len() < ntok.saturating_mul(self.cols)
            || out.len() < ntok.saturating_mul(self.rows)
        {
            return Err("filter, activation or output too short".into());
        }
        match self.quant {
            Quant::Blockwise { scales, .. } => {
                if scales.len() < self.rows.saturating_mul(self.nblocks).saturating_mul(2) {
                    return Err("blockwise scales too short".into());
                }
            }
            Quant::PerChannel { scales } if scales.len() < self.rows => {
                return Err("per-channel scales too short".into())
            }
            Quant::PerChannel { .. } | Quant::PerTensor { .. } => {}
            _ => return Err("quantized filter without scales".into()),
        }
        Ok(())
    }
}

/// Zero-point-corrected activations as i16 (|q - zp| <= 255): for int8 weights one vector of
/// `ntok × cols`; for int4 weights split into even and odd columns (each token's row being
/// cols/2 long), returned as (all, even, odd) with the unused ones empty.
fn centered(q: &[i8], params: &[(f32, i32)], cols: usize, four_bit: bool) -> [Vec<i16>; 3] {
    let mut xq: Vec<i16> = Vec::with_capacity(if four_bit { 0 } else { params.len() * cols });
    let mut xe: Vec<i16> = Vec::new();
    let mut xo: Vec<i16> = Vec::new();
    for (t, &(_, zp)) in params.iter().enumerate() {
        let row = q[t * cols..(t + 1) * cols]
            .iter()
            .map(|&v| (i32::from(v) - zp) as i16);
        if four_bit {
            for (c, v) in row.enumerate() {
                if c % 2 == 0 {
                    xe.push(v);
                } else {
                    xo.push(v);
                }
            }
        } else {
            xq.extend(row);
        }
    }
    [xq, xe, xo]
}

/// int8 activations × int8/int4 weights with per-channel or blockwise scales, rows split over
/// the thread pool.
#[allow(clippy::too_many_arguments)]
pub(super) fn qd8_fully_connected(
    pool: &lmrun_kernels::ThreadPool,
    fdef: &ValueDef,
    dt: i16,
    w: &[u8],
    q: &[i8],
    params: &[(f32, i32)],
    rows: usize,
    cols: usize,
    out: &mut [f32],
) -> Result<(), String> {
    let (block, nblocks) = match &fdef.quant {
        Quant::Blockwise { block, .. } => (*block, cols / *block),
        _ => (cols, 1),
    };
    let four_bit = matches!(dt, DT_QCINT4 | DT_QBINT4);
    let f = Filter {
        quant: &fdef.quant,
        w,
        rows,
        cols,
        block,
        nblocks,
        four_bit,
        wzp: match (&fdef.quant, four_bit) {
            (Quant::PerTensor { zero_point, .. }, false) => *zero_point,
            _ => 0,
        },
        row_bytes: if four_bit { cols.div_ceil(2) } else { cols },
    };
    let ntok = params.len();
    f.check(q, ntok, out)?;
    // int4 weights in the layouts real exports use: the lane kernel (`qb4`).
    let lane_scales = match &fdef.quant {
        Quant::Blockwise { scales, .. } => Some(Scales::Blockwise {
            bytes: scales,
            block,
            nblocks,
        }),
        Quant::PerChannel { scales } => Some(Scales::PerChannel(scales)),
        _ => None,
    };
    if let Some(scales) = lane_scales.filter(|s| four_bit && s.supported(cols)) {
        let acts: Vec<Act> = params
            .iter()
            .enumerate()
            .map(|(t, &(_, zp))| Act::new(&q[t * cols..(t + 1) * cols], zp))
            .collect();
        let csum = fdef
            .zp_sums
            .get_or_init(|| qb4::zero_point_sums(w, cols, rows, scales));
        let range_out = |r0: usize, r1: usize, dst: &mut [f32]| {
            qb4::rows(w, cols, r0..r1, scales, csum, &acts, dst);
            for row in dst.chunks_mut(ntok.max(1)) {
                for (d, &(deq, _)) in row.iter_mut().zip(params) {
                    *d *= deq;
                }
            }
        };
        ranges_over_pool(pool, rows, ntok, out, range_out);
        return Ok(());
    }
    let [xq, xe, xo] = centered(q, params, cols, four_bit);
    let half = cols / 2;
    let row_out = |r: usize, dst: &mut [f32]| {
        let wr = &w[r * f.row_bytes..(r + 1) * f.row_bytes];
        for (t, d) in dst.iter_mut().enumerate() {
            let mut acc_f = 0f32;
            for b in 0..nblocks {
                let acc = if four_bit {
                    let (h0, h1) = (t * half + b * block / 2, t * half + (b + 1) * block / 2);
                    dot_q4(
                        &xe[h0..h1],
                        &xo[h0..h1],
                        &wr[b * block / 2..(b + 1) * block / 2],
                    )
                } else {
                    let x = &xq[t * cols..(t + 1) * cols];
                    dot_q8(
                        &x[b * block..(b + 1) * block],
                        &wr[b * block..(b + 1) * block],
                        f.wzp,
                    )
                };
                acc_f += acc as f32 * f.scale(r, b);
            }
            *d = acc_f * params[t].0;
        }
    };
    rows_over_pool(pool, rows, ntok, out, row_out);
    Ok(())
}

/// [`ranges_over_pool`] one row at a time.
fn rows_over_pool(
    pool: &lmrun_kernels::ThreadPool,
    rows: usize,
    ntok: usize,
    out: &mut [f32],
    row_out: impl Fn(usize, &mut [f32]) + Sync,
) {
    ranges_over_pool(pool, rows, ntok, out, |r0, r1, v| {
        for r in r0..r1 {
            row_out(r, &mut v[(r - r0) * ntok..(r - r0 + 1) * ntok]);
        }
    });
}

/// Compute `rows` output rows of `ntok` values each with `range_out(r0, r1, dst)` (`dst` laid
/// out `[row][token]`) in chunks over the pool, and scatter them into `out` laid out
/// `[token][row]`. Each chunk's results come back through a mutex.
fn ranges_over_pool(
    pool: &lmrun_kernels::ThreadPool,
    rows: usize,
    ntok: usize,
    out: &mut [f32],
    range_out: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    let chunk = rows.div_ceil(pool.n_threads() * 4).max(1);
    let n_chunks = rows.div_ceil(chunk);
    let next = std::sync::atomic::AtomicUsize::new(0);
    if ntok == 1 {
        // One token (decode): `[row][token]` is `[token][row]`, so each chunk computes into
        // its own piece of `out` (locked once, uncontended): no buffer, no scatter.
        let pieces: Vec<std::sync::Mutex<&mut [f32]>> = out[..rows]
            .chunks_mut(chunk)
            .map(std::sync::Mutex::new)
            .collect();
        pool.run_dynamic(|_, _| loop {
            let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if c >= n_chunks {
                break;
            }
            let mut piece = pieces[c].lock().unwrap_or_else(|e| e.into_inner());
            let r0 = c * chunk;
            range_out(r0, r0 + piece.len(), &mut piece);
        });
        return;
    }
    let results = std::sync::Mutex::new(Vec::with_capacity(n_chunks));
    pool.run_dynamic(|_, _| loop {
        let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if c >= n_chunks {
            break;
        }
        let (r0, r1) = (c * chunk, ((c + 1) * chunk).min(rows));
        let n = r1 - r0;
        let mut v = vec![0f32; n * ntok];
        range_out(r0, r1, &mut v);
        // Transpose to `[token][row]` here, in parallel, so that the serial pass below is one
        // contiguous copy per token and chunk.
        let mut vt = vec![0f32; n * ntok];
        for (i, row) in v.chunks_exact(ntok).enumerate() {
            for (t, &x) in row.iter().enumerate() {
                vt[t * n + i] = x;
            }
        }
        results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((r0, vt));
    });
    for (r0, vt) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let n = vt.len() / ntok.max(1);
        for (t, seg) in vt.chunks_exact(n.max(1)).enumerate() {
            out[t * rows + r0..t * rows + r0 + n].copy_from_slice(seg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_even_is_round_ties_even() {
        for i in -2_600_000..2_600_000 {
            let x = i as f32 / 10_000.0;
            assert_eq!(round_even(x), x.round_ties_even(), "{x}");
        }
        for x in [0.5f32, 1.5, 2.5, -0.5, -1.5, 254.5, -255.5, 0.49999997] {
            assert_eq!(round_even(x), x.round_ties_even(), "{x}");
        }
    }

    #[test]
    fn qd8_params_follow_xnnpack() {
        // all-zero row: scale 1; the formula lands on qmax (values are 0 either way)
        assert_eq!(qd8_params(&[0.0, 0.0]), (1.0, 1.0, 127));
        // symmetric-ish row: [-1, 1] -> multiplier 127.5, zero point rounds to 0 (ties to even)
        let (deq, mult, zp) = qd8_params(&[-1.0, 1.0]);
        // XNNPACK keeps 1/multiplier for the GEMM and re-inverts it for the conversion
        assert_eq!(deq, 1.0 / (255.0f32 / 2.0));
        assert_eq!(mult, 1.0 / deq);
        assert_eq!(zp, 0);
        // only positive values: min is clamped to 0, zero point at qmin
        let (_, _, zp) = qd8_params(&[0.5, 2.0]);
        assert_eq!(zp, -128);
        // only negative values: zero point at qmax
        let (_, _, zp) = qd8_params(&[-3.0, -0.5]);
        assert_eq!(zp, 127);
    }

    #[test]
    fn int4_dot_matches_naive() {
        let x: Vec<i16> = (0..32).map(|i| (i * 37 % 255) - 127).collect();
        let w: Vec<u8> = (0..16).map(|i| (i * 53 % 256) as u8).collect();
        let mut naive = 0i32;
        for (c, &xv) in x.iter().enumerate() {
            let b = w[c / 2];
            let nib = if c % 2 == 0 { b & 15 } else { b >> 4 };
            naive += i32::from(xv) * (i32::from(nib) - 8);
        }
        let xe: Vec<i16> = x.iter().step_by(2).copied().collect();
        let xo: Vec<i16> = x.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(dot_q4(&xe, &xo, &w), naive);
        let w8: Vec<u8> = (0..32).map(|i| (i * 91 % 256) as u8).collect();
        let naive8: i32 = x
            .iter()
            .zip(&w8)
            .map(|(&a, &b)| i32::from(a) * (i32::from(b as i8) - 3))
            .sum();
        assert_eq!(dot_q8(&x, &w8, 3), naive8);
    }
}
