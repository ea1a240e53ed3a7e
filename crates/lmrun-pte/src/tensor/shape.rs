//! Shape arithmetic shared by the portable ops and the XNNPACK nodes: element counts with
//! overflow and size guards, dimension wrapping, `outer × n × inner` splits, broadcasting, and
//! the one N-d index walk ([`StridedWalk`]) behind broadcasts, permutes, slices and reductions.

use super::KResult;

/// `d` (negative counts from the end) as an index into `ndim` dimensions.
pub(crate) fn wrap_dim(d: i64, ndim: usize) -> KResult<usize> {
    let n = ndim.max(1) as i64;
    let w = if d < 0 { d + n } else { d };
    if w < 0 || w >= n {
        return Err(format!("dimension {d} out of range for rank {ndim}"));
    }
    Ok(w as usize)
}

/// Element count of sizes `s` (saturating, like [`prod`]).
pub(crate) fn numel(s: &[usize]) -> usize {
    prod(s)
}

/// Product of sizes, saturating at `usize::MAX` (sizes can come from a hostile file).
pub(crate) fn prod(s: &[usize]) -> usize {
    s.iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .unwrap_or(usize::MAX)
}

/// Most elements a kernel will materialise (guards allocations driven by hostile sizes:
/// 2^28 f32 = 1 GiB, far above any single activation of the models lmrun runs).
pub(crate) const MAX_ELEMENTS: usize = 1 << 28;

/// Refuse to materialise more than [`MAX_ELEMENTS`] elements.
pub(crate) fn check_numel(what: &str, dims: &[usize]) -> KResult<usize> {
    let n = prod(dims);
    if n > MAX_ELEMENTS {
        return Err(format!("{what}: output of shape {dims:?} is too large"));
    }
    Ok(n)
}

/// `outer, n, inner` around `dim`.
pub(crate) fn split(s: &[usize], dim: usize) -> (usize, usize, usize) {
    (
        numel(&s[..dim]),
        s.get(dim).copied().unwrap_or(1),
        numel(&s[(dim + 1).min(s.len())..]),
    )
}

/// The shape two shapes broadcast to (numpy rules).
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> KResult<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!("shapes {a:?} and {b:?} do not broadcast"));
        };
    }
    Ok(out)
}

/// For every element of `out` shape, the linear index into a tensor of shape `inp`
/// broadcast to it.
pub(crate) fn broadcast_map(inp: &[usize], out: &[usize]) -> KResult<Vec<usize>> {
    if inp.len() > out.len() {
        return Err(format!("cannot broadcast {inp:?} to {out:?}"));
    }
    let pad = out.len() - inp.len();
    let mut strides = vec![0usize; out.len()];
    let mut s = 1;
    for i in (0..inp.len()).rev() {
        let d = inp[i];
        if d != 1 && d != out[i + pad] {
            return Err(format!("cannot broadcast {inp:?} to {out:?}"));
        }
        strides[i + pad] = if d == 1 { 0 } else { s };
        s *= d;
    }
    let n = numel(out);
    if n > MAX_ELEMENTS {
        return Err(format!("shape {out:?} is too large"));
    }
    Ok(StridedWalk::new(out, &strides, 0).collect())
}

/// `f` over `x` (shape `sx`) and `y` (shape `sy`) broadcast to `shape`, in row-major order;
/// same-shape operands are zipped without index maps.
pub(crate) fn broadcast_zip<T: Copy, U>(
    (x, sx): (&[T], &[usize]),
    (y, sy): (&[T], &[usize]),
    shape: &[usize],
    f: impl Fn(T, T) -> U,
) -> KResult<Vec<U>> {
    if sx == shape && sy == shape {
        return Ok(x.iter().zip(y).map(|(&p, &q)| f(p, q)).collect());
    }
    let (mx, my) = (broadcast_map(sx, shape)?, broadcast_map(sy, shape)?);
    Ok(mx.iter().zip(&my).map(|(&i, &j)| f(x[i], y[j])).collect())
}

/// Row-major strides of a contiguous tensor of sizes `s` (in elements).
pub(crate) fn contiguous_strides(s: &[usize]) -> Vec<usize> {
    let mut st = vec![1usize; s.len()];
    for i in (0..s.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * s[i + 1];
    }
    st
}

/// The N-d index walk: for every index of `shape` in row-major order, the offset
/// `base + Σ index[d] × strides[d]`. Broadcasts (zero strides), permutes (permuted strides),
/// slices (a base offset) and reductions (output strides) are all this one loop.
pub(crate) struct StridedWalk {
    shape: Vec<usize>,
    strides: Vec<usize>,
    idx: Vec<usize>,
    lin: usize,
    left: usize,
}

impl StridedWalk {
    /// A walk over `shape` with `strides` (one per dimension), starting at offset `base`.
    pub(crate) fn new(shape: &[usize], strides: &[usize], base: usize) -> StridedWalk {
        StridedWalk {
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            idx: vec![0; shape.len()],
            lin: base,
            left: numel(shape),
        }
    }
}

impl Iterator for StridedWalk {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let here = self.lin;
        if self.left > 0 {
            for d in (0..self.shape.len()).rev() {
                self.idx[d] += 1;
                self.lin += self.strides[d];
                if self.idx[d] < self.shape[d] {
                    break;
                }
                self.lin -= self.strides[d] * self.idx[d];
                self.idx[d] = 0;
            }
        }
        Some(here)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}
