//! ExecuTorch's custom LLM ops: `llama::update_cache` (write new keys/values into a planned
//! KV-cache buffer in place), `llama::custom_sdpa` (causal scaled dot-product attention over
//! the cache, grouped-query heads) and `llama::custom_quantized_sdpa` (the same over int8
//! caches with per-row scales and zero points, from exports with `quantize_kv_cache`).

use super::{need, out_idx};
use crate::tensor::{
    boolean, bytes, bytes_to_f32, dtype, f32s, i64s, int, sizes, tensor, tensor_bytes, write, Ctx,
    Data, KResult, RValue, ScalarType, Storage,
};

pub(super) fn update_cache(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 4)?;
    let vs = sizes(ctx, a[0])?;
    let cs = sizes(ctx, a[1])?;
    if vs.len() != 4 || cs.len() != 4 || vs[0] != cs[0] || vs[2] != cs[2] || vs[3] != cs[3] {
        return Err(format!("update_cache: value {vs:?}, cache {cs:?}"));
    }
    let pos = int(ctx, a[2])?;
    if pos < 0 || pos as usize + vs[1] > cs[1] {
        return Err(format!(
            "update_cache: start_pos {pos} + {} tokens exceeds the cache length {}",
            vs[1], cs[1]
        ));
    }
    if dtype(ctx, a[0])? != dtype(ctx, a[1])? {
        return Err("update_cache: value and cache dtypes differ".into());
    }
    let es = dtype(ctx, a[0])?.size();
    let val = bytes(ctx, a[0])?.to_vec();
    let row = vs[2] * vs[3] * es;
    let Some(RValue::Tensor(t)) = ctx.values.get(a[1]) else {
        return Err("cache is not a tensor".into());
    };
    let (id, off) = match t.storage {
        Storage::Arena { id, off } => (id, off),
        _ => return Err("update_cache: the cache is not a planned mutable buffer".into()),
    };
    let arena = ctx.arenas.get_mut(id).ok_or("arena")?;
    for b in 0..vs[0] {
        for s in 0..vs[1] {
            let dst = off + ((b * cs[1] + pos as usize + s) * row);
            let src = (b * vs[1] + s) * row;
            arena
                .get_mut(dst..dst + row)
                .ok_or("cache slot out of range")?
                .copy_from_slice(&val[src..src + row]);
        }
    }
    Ok(())
}

/// The shape facts of an SDPA call: batch, query length, heads, head size, cache length, KV
/// heads, start position, causal flag and softmax scale.
struct Sdpa {
    b: usize,
    s: usize,
    h: usize,
    d: usize,
    smax: usize,
    hkv: usize,
    pos: usize,
    causal: bool,
    scale: f32,
}

impl Sdpa {
    /// Read and check q/k/v sizes, `start_pos`, mask, `is_causal` and `scale` (arguments 0-7
    /// of both `custom_sdpa` and `custom_quantized_sdpa`).
    fn parse(ctx: &Ctx, a: &[usize], op: &str) -> KResult<Sdpa> {
        let (qs, ks, vs) = (sizes(ctx, a[0])?, sizes(ctx, a[1])?, sizes(ctx, a[2])?);
        if qs.len() != 4 || ks.len() != 4 || ks != vs || qs[0] != ks[0] || qs[3] != ks[3] {
            return Err(format!("{op}: q {qs:?}, k {ks:?}, v {vs:?}"));
        }
        let (b, s, h, d) = (qs[0], qs[1], qs[2], qs[3]);
        let (smax, hkv) = (ks[1], ks[2]);
        if hkv == 0 || h % hkv != 0 {
            return Err(format!("{op}: {h} heads over {hkv} kv heads"));
        }
        let pos = int(ctx, a[3])?;
        if pos < 0 || pos as usize + s > smax {
            return Err(format!("{op}: start_pos {pos} + {s} exceeds {smax}"));
        }
        if !matches!(ctx.values.get(a[4]), Some(RValue::None)) {
            return Err(format!("{op}: attention masks are not supported"));
        }
        let causal = boolean(ctx, a[6])?;
        let scale = match ctx.values.get(a[7]) {
            Some(RValue::Double(x)) => *x as f32,
            _ => 1.0 / (d as f32).sqrt(),
        };
        Ok(Sdpa {
            b,
            s,
            h,
            d,
            smax,
            hkv,
            pos: pos as usize,
            causal,
            scale,
        })
    }

    /// Cache rows in use (only those are decoded: the cache holds `smax` positions, and
    /// decoding all of it per call made every decode step cost O(max context)).
    fn used(&self) -> usize {
        self.pos + self.s
    }

    /// The used prefix of cache tensor `i`, per batch, as raw bytes (`width` values per
    /// position and KV head).
    fn prefix<'c>(&self, ctx: &'c Ctx, i: usize, width: usize) -> KResult<Vec<&'c [u8]>> {
        let t = tensor(ctx, i)?;
        let raw = tensor_bytes(ctx, t)?;
        let es = t.dtype.size();
        let per_b = self.smax * self.hkv * width * es;
        let n = self.used() * self.hkv * width * es;
        (0..self.b)
            .map(|bi| {
                raw.get(bi * per_b..bi * per_b + n)
                    .ok_or_else(|| "sdpa: cache shorter than its sizes".to_string())
            })
            .collect()
    }

    /// Causal attention over the cache prefix. `q`: `[b, s, h, d]`; `k`, `v`: per batch,
    /// `[used, hkv, d]`. `qmul` (per query row, `[b, s, h]`) and `kmul` (per batch, `[used,
    /// hkv]`) multiply the raw dot products (the quantization scales of centred int8 rows, whose
    /// f32 dot products are exact integers); `None` is 1.
    fn attend(
        &self,
        q: &[f32],
        qmul: Option<&[f32]>,
        k: &[Vec<f32>],
        kmul: Option<&[Vec<f32>]>,
        v: &[Vec<f32>],
    ) -> Vec<f32> {
        let Sdpa {
            b,
            s,
            h,
            d,
            hkv,
            pos,
            ..
        } = *self;
        let group = h / hkv;
        let mut out = vec![0f32; b * s * h * d];
        let mut scores = vec![0f32; pos + s];
        for bi in 0..b {
            for si in 0..s {
                let nk = if self.causal { pos + si + 1 } else { pos + s };
                for hi in 0..h {
                    let kh = hi / group;
                    let row = (bi * s + si) * h + hi;
                    let qo = row * d;
                    let qv = &q[qo..qo + d];
                    let qm = qmul.map_or(1.0, |m| m[row]);
                    let mut mx = f32::NEG_INFINITY;
                    for (j, sc) in scores.iter_mut().enumerate().take(nk) {
                        let ko = (j * hkv + kh) * d;
                        let mut dot = lmrun_kernels::ops::dot_f32(qv, &k[bi][ko..ko + d]);
                        if let Some(km) = kmul {
                            dot = dot * qm * km[bi][j * hkv + kh];
                        }
                        *sc = dot * self.scale;
                        mx = mx.max(*sc);
                    }
                    let mut sum = 0f32;
                    for sc in scores.iter_mut().take(nk) {
                        *sc = (*sc - mx).exp();
                        sum += *sc;
                    }
                    let o = &mut out[qo..qo + d];
                    for (j, &sc) in scores.iter().enumerate().take(nk) {
                        let vo = (j * hkv + kh) * d;
                        let p = sc / sum;
                        for (x, &y) in o.iter_mut().zip(&v[bi][vo..vo + d]) {
                            *x += p * y;
                        }
                    }
                }
            }
        }
        out
    }
}

pub(super) fn custom_sdpa(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 9)?;
    let p = Sdpa::parse(ctx, a, "custom_sdpa")?;
    let decode = |i: usize| -> KResult<Vec<Vec<f32>>> {
        let dt = tensor(ctx, i)?.dtype;
        Ok(p.prefix(ctx, i, p.d)?
            .into_iter()
            .map(|r| bytes_to_f32(dt, r))
            .collect())
    };
    let (q, k, v) = (f32s(ctx, a[0])?, decode(a[1])?, decode(a[2])?);
    let out = p.attend(&q, None, &k, None, &v);
    write(ctx, out_idx(a)?, vec![p.b, p.s, p.h, p.d], Data::F32(out))
}

/// Per batch, the zero points and scales of a quantized cache's rows in use.
type CacheParams = (Vec<Vec<i64>>, Vec<Vec<f32>>);

/// `llama::custom_quantized_sdpa.out(q, k, v, start_pos, attn_mask, drop_p, is_causal, scale,
/// q_zero_points, q_scales, k_zero_points, k_scales, v_zero_points, v_scales,
/// is_seq_at_dim_two, *, out)`: int8 query, int8 key/value caches with one (scale, zero point)
/// per position and head (`[b, s, h, 1]` / `[b, smax, hkv, 1]`). As ExecuTorch computes it:
/// `q·k` is the exact integer `Σ (q − zq)(k − zk)` times both scales; the value rows are
/// dequantized, `(v − zv)·sv`, and weighted in f32.
pub(super) fn custom_quantized_sdpa(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 16)?;
    let op = "custom_quantized_sdpa";
    let p = Sdpa::parse(ctx, a, op)?;
    if boolean(ctx, a[14])? {
        return Err(format!("{op}: is_seq_at_dim_two layouts are not supported"));
    }
    for &i in &a[..3] {
        if dtype(ctx, i)? != ScalarType::Char {
            return Err(format!("{op}: q, k and v must be int8"));
        }
    }
    let (q_rows, kv_rows) = (p.b * p.s * p.h, p.b * p.used() * p.hkv);
    // Query: centred integers, and its per-row scale.
    let qz = i64s(ctx, a[8])?;
    let qsc = f32s(ctx, a[9])?;
    if qz.len() != q_rows || qsc.len() != q_rows {
        return Err(format!(
            "{op}: query quantization parameters do not match its rows"
        ));
    }
    let q: Vec<f32> = bytes(ctx, a[0])?
        .chunks(p.d)
        .zip(&qz)
        .flat_map(|(r, &z)| r.iter().map(move |&x| (i64::from(x as i8) - z) as f32))
        .collect();
    // Per batch: the cache prefix's parameters.
    let params = |zi: usize, si: usize| -> KResult<CacheParams> {
        let (zdt, sdt) = (dtype(ctx, zi)?, dtype(ctx, si)?);
        let z: Vec<Vec<i64>> = p
            .prefix(ctx, zi, 1)?
            .into_iter()
            .map(|r| crate::tensor::bytes_to_i64(zdt, r))
            .collect();
        let s: Vec<Vec<f32>> = p
            .prefix(ctx, si, 1)?
            .into_iter()
            .map(|r| bytes_to_f32(sdt, r))
            .collect();
        if z.iter().map(Vec::len).sum::<usize>() != kv_rows
            || s.iter().map(Vec::len).sum::<usize>() != kv_rows
        {
            return Err(format!(
                "{op}: cache quantization parameters do not match the cache"
            ));
        }
        Ok((z, s))
    };
    let (kz, ksc) = params(a[10], a[11])?;
    let (vz, vsc) = params(a[12], a[13])?;
    let centred = |i: usize, z: &[Vec<i64>], mul: Option<&[Vec<f32>]>| -> KResult<Vec<Vec<f32>>> {
        Ok(p.prefix(ctx, i, p.d)?
            .into_iter()
            .enumerate()
            .map(|(bi, r)| {
                r.chunks(p.d)
                    .enumerate()
                    .flat_map(|(row, vals)| {
                        let zp = z[bi][row];
                        let m = mul.map_or(1.0, |m| m[bi][row]);
                        vals.iter().map(move |&x| {
                            let c = (i64::from(x as i8) - zp) as f32;
                            if mul.is_some() {
                                c * m
                            } else {
                                c
                            }
                        })
                    })
                    .collect()
            })
            .collect())
    };
    let k = centred(a[1], &kz, None)?;
    let v = centred(a[2], &vz, Some(&vsc))?;
    let out = p.attend(&q, Some(&qsc), &k, Some(&ksc), &v);
    write(ctx, out_idx(a)?, vec![p.b, p.s, p.h, p.d], Data::F32(out))
}
