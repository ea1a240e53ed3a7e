//! Shared helpers for the integration tests: a tiny PRNG and random weight rows.
#![allow(dead_code)]

use lmrun_kernels::QType;

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn normalish(&mut self) -> f32 {
        (self.f32() + self.f32() + self.f32()) * 0.8
    }
}

/// Byte offsets of f16 scale fields in each block type (from the format's own file).
pub fn f16_fields(t: QType) -> &'static [usize] {
    t.f16_scale_offsets()
}

/// A random row of `cols` values of weight type `t` (random block bytes, sane scales).
pub fn random_row(t: QType, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let rb = t.row_bytes(cols).unwrap();
    let mut v: Vec<u8> = (0..rb).map(|_| rng.next_u64() as u8).collect();
    match t {
        QType::F32 => {
            for c in v.chunks_exact_mut(4) {
                c.copy_from_slice(&rng.normalish().to_le_bytes());
            }
        }
        QType::F16 => {
            for c in v.chunks_exact_mut(2) {
                c.copy_from_slice(&half::f16::from_f32(rng.normalish()).to_le_bytes());
            }
        }
        QType::BF16 => {
            for c in v.chunks_exact_mut(2) {
                c.copy_from_slice(&half::bf16::from_f32(rng.normalish()).to_le_bytes());
            }
        }
        _ => {
            let ts = t.type_size();
            for b in v.chunks_exact_mut(ts) {
                for &off in f16_fields(t) {
                    let d = 0.001 + 0.01 * rng.f32().abs();
                    b[off..off + 2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
                }
            }
        }
    }
    v
}

pub const WEIGHT_TYPES: [QType; 15] = [
    QType::F32,
    QType::F16,
    QType::BF16,
    QType::Q4_0,
    QType::Q4_1,
    QType::Q5_0,
    QType::Q5_1,
    QType::Q8_0,
    QType::Q2K,
    QType::Q3K,
    QType::Q4K,
    QType::Q5K,
    QType::Q6K,
    QType::IQ4NL,
    QType::IQ4XS,
];
