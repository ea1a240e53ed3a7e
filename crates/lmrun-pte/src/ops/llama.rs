//! ExecuTorch's custom LLM ops: `llama::update_cache` (write new keys/values into a planned
//! KV-cache buffer in place) and `llama::custom_sdpa` (causal scaled dot-product attention over
//! the cache, grouped-query heads).

use super::{need, out_idx};
use crate::tensor::{
    boolean, bytes, bytes_to_f32, dtype, f32s, int, sizes, tensor, tensor_bytes, write, Ctx, Data,
    KResult, RValue, Storage,
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

pub(super) fn custom_sdpa(ctx: &mut Ctx, a: &[usize]) -> KResult<()> {
    need(a, 9)?;
    let (qs, ks, vs) = (sizes(ctx, a[0])?, sizes(ctx, a[1])?, sizes(ctx, a[2])?);
    if qs.len() != 4 || ks.len() != 4 || ks != vs || qs[0] != ks[0] || qs[3] != ks[3] {
        return Err(format!("custom_sdpa: q {qs:?}, k {ks:?}, v {vs:?}"));
    }
    let (b, s, h, d) = (qs[0], qs[1], qs[2], qs[3]);
    let (smax, hkv) = (ks[1], ks[2]);
    if hkv == 0 || h % hkv != 0 {
        return Err(format!("custom_sdpa: {h} heads over {hkv} kv heads"));
    }
    let pos = int(ctx, a[3])?;
    if pos < 0 || pos as usize + s > smax {
        return Err(format!("custom_sdpa: start_pos {pos} + {s} exceeds {smax}"));
    }
    if !matches!(ctx.values.get(a[4]), Some(RValue::None)) {
        return Err("custom_sdpa: attention masks are not supported".into());
    }
    let causal = boolean(ctx, a[6])?;
    let scale = match ctx.values.get(a[7]) {
        Some(RValue::Double(x)) => *x as f32,
        _ => 1.0 / (d as f32).sqrt(),
    };
    let pos = pos as usize;
    // Only the cache rows in use are decoded (the cache holds `smax` positions; decoding all of
    // it per call made every decode step cost O(max context)).
    let used = pos + s;
    let prefix = |i: usize| -> KResult<Vec<Vec<f32>>> {
        let t = tensor(ctx, i)?;
        let raw = tensor_bytes(ctx, t)?;
        let es = t.dtype.size();
        let per_b = smax * hkv * d * es;
        (0..b)
            .map(|bi| {
                let start = bi * per_b;
                raw.get(start..start + used * hkv * d * es)
                    .map(|r| bytes_to_f32(t.dtype, r))
                    .ok_or_else(|| "custom_sdpa: cache shorter than its sizes".to_string())
            })
            .collect()
    };
    let (q, k, v) = (f32s(ctx, a[0])?, prefix(a[1])?, prefix(a[2])?);
    let group = h / hkv;
    let mut out = vec![0f32; b * s * h * d];
    let mut scores = vec![0f32; pos + s];
    for bi in 0..b {
        for si in 0..s {
            let nk = if causal { pos + si + 1 } else { pos + s };
            for hi in 0..h {
                let kh = hi / group;
                let qo = ((bi * s + si) * h + hi) * d;
                let qv = &q[qo..qo + d];
                let mut mx = f32::NEG_INFINITY;
                for (j, sc) in scores.iter_mut().enumerate().take(nk) {
                    let ko = (j * hkv + kh) * d;
                    let dot = lmrun_kernels::ops::dot_f32(qv, &k[bi][ko..ko + d]);
                    *sc = dot * scale;
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
    write(ctx, out_idx(a)?, vec![b, s, h, d], Data::F32(out))
}
