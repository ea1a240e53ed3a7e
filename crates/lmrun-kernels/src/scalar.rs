//! Scalar reference dot products: one weight row (raw block bytes, in place) against the
//! row's quantized activation. Integer sums are exact; they are the reference every SIMD
//! kernel is tested against, and the path used where no SIMD kernel exists (e.g. aarch64).

use crate::blocks::*;
use crate::quant::{BlockQ8K, BlockQ8x32};

#[inline(always)]
fn idot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

#[inline(always)]
fn idot_u8(a: &[u8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// F32 weight row · f32 activations.
pub fn dot_f32w(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (c, xs) in w.chunks_exact(32).zip(x.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += f32_at(c, 4 * i) * xs[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    let done = (x.len() / 8) * 8;
    for i in done..x.len() {
        s += f32_at(w, 4 * i) * x[i];
    }
    s
}

/// F16 weight row · f32 activations.
pub fn dot_f16w(w: &[u8], x: &[f32]) -> f32 {
    let mut s = 0f32;
    for (i, &v) in x.iter().enumerate() {
        s += f16_at(w, 2 * i) * v;
    }
    s
}

/// BF16 weight row · f32 activations.
pub fn dot_bf16w(w: &[u8], x: &[f32]) -> f32 {
    let mut s = 0f32;
    for (i, &v) in x.iter().enumerate() {
        let b = f32::from_bits((u16::from_le_bytes([w[2 * i], w[2 * i + 1]]) as u32) << 16);
        s += b * v;
    }
    s
}

/// Q4_0 row · Q8x32 activations.
pub fn dot_q4_0(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(18).zip(a) {
        s += f16_at(b, 0) * y.d * idot_i8(&unpack_q4_0(b), &y.qs) as f32;
    }
    s
}

/// Q4_1 row · Q8x32 activations.
pub fn dot_q4_1(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(20).zip(a) {
        s += f16_at(b, 0) * y.d * idot_u8(&unpack_q4_1(b), &y.qs) as f32
            + f16_at(b, 2) * (y.d * y.sum as f32);
    }
    s
}

/// Q5_0 row · Q8x32 activations.
pub fn dot_q5_0(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(22).zip(a) {
        s += f16_at(b, 0) * y.d * idot_i8(&unpack_q5_0(b), &y.qs) as f32;
    }
    s
}

/// Q5_1 row · Q8x32 activations.
pub fn dot_q5_1(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(24).zip(a) {
        s += f16_at(b, 0) * y.d * idot_u8(&unpack_q5_1(b), &y.qs) as f32
            + f16_at(b, 2) * (y.d * y.sum as f32);
    }
    s
}

/// Q8_0 row · Q8x32 activations.
pub fn dot_q8_0(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(34).zip(a) {
        let mut q = [0i8; 32];
        for (o, &v) in q.iter_mut().zip(&b[2..34]) {
            *o = v as i8;
        }
        s += f16_at(b, 0) * y.d * idot_i8(&q, &y.qs) as f32;
    }
    s
}

/// IQ4_NL row · Q8x32 activations.
pub fn dot_iq4nl(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(18).zip(a) {
        s += f16_at(b, 0) * y.d * idot_i8(&unpack_iq4nl(b), &y.qs) as f32;
    }
    s
}

/// Q2_K row · Q8_K activations.
pub fn dot_q2k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(84).zip(a) {
        let (sc, mn, q) = unpack_q2k(b);
        let mut isum = 0i32;
        let mut msum = 0i32;
        for k in 0..16 {
            isum += sc[k] as i32 * idot_u8(&q[16 * k..16 * k + 16], &y.qs[16 * k..16 * k + 16]);
            msum += mn[k] as i32 * y.bsums[k] as i32;
        }
        s += y.d * (f16_at(b, 80) * isum as f32 - f16_at(b, 82) * msum as f32);
    }
    s
}

/// Q3_K row · Q8_K activations.
pub fn dot_q3k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(110).zip(a) {
        let (sc, q) = unpack_q3k(b);
        let mut isum = 0i32;
        for k in 0..16 {
            isum += sc[k] as i32 * idot_i8(&q[16 * k..16 * k + 16], &y.qs[16 * k..16 * k + 16]);
        }
        s += y.d * f16_at(b, 108) * isum as f32;
    }
    s
}

#[inline(always)]
fn dot_k45(b: &[u8], q: &[u8; 256], y: &BlockQ8K) -> f32 {
    let (sc, mn) = kscales(&b[4..16]);
    let mut isum = 0i32;
    let mut msum = 0i32;
    for j in 0..8 {
        isum += sc[j] as i32 * idot_u8(&q[32 * j..32 * j + 32], &y.qs[32 * j..32 * j + 32]);
        msum += mn[j] as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
    }
    y.d * (f16_at(b, 0) * isum as f32 - f16_at(b, 2) * msum as f32)
}

/// Q4_K row · Q8_K activations.
pub fn dot_q4k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(144).zip(a) {
        s += dot_k45(b, &unpack_q4k(b), y);
    }
    s
}

/// Q5_K row · Q8_K activations.
pub fn dot_q5k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(176).zip(a) {
        s += dot_k45(b, &unpack_q5k(b), y);
    }
    s
}

/// Q6_K row · Q8_K activations.
pub fn dot_q6k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(210).zip(a) {
        let q = unpack_q6k(b);
        let mut isum = 0i32;
        for k in 0..16 {
            let sc = b[192 + k] as i8 as i32;
            isum += sc * idot_i8(&q[16 * k..16 * k + 16], &y.qs[16 * k..16 * k + 16]);
        }
        s += y.d * f16_at(b, 208) * isum as f32;
    }
    s
}

/// IQ4_XS row · Q8_K activations.
pub fn dot_iq4xs(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut s = 0f32;
    for (b, y) in w.chunks_exact(136).zip(a) {
        let (sc, q) = unpack_iq4xs(b);
        let mut isum = 0i32;
        for j in 0..8 {
            isum += sc[j] as i32 * idot_i8(&q[32 * j..32 * j + 32], &y.qs[32 * j..32 * j + 32]);
        }
        s += y.d * f16_at(b, 0) * isum as f32;
    }
    s
}
