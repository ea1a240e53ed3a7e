//! Run-time choice of the instruction set: the best available kernels are detected once
//! (`is_x86_feature_detected!`, cached) and looked up per weight type. The scalar kernels are
//! always available and are what aarch64 and other targets use today (no NEON yet).

use std::sync::OnceLock;

use crate::quant::{BlockQ8K, BlockQ8x32};
use crate::{scalar, KernelError, QType};

/// An instruction-set level for the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable scalar reference code.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX2 level plus AVX512F/BW/VL and AVX512_VNNI (256-bit registers): `vpdpbusd` /
    /// `vpdpwssd` kernels for Q4_0, Q5_0, Q8_0 and Q6_K, AVX2 kernels for the rest.
    Avx512Vnni,
}

impl Isa {
    /// Every level, lowest first (tests iterate it and skip what the CPU lacks).
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni];

    /// The best level this CPU supports (detected once, then cached). `LMRUN_ISA=scalar|avx2`
    /// caps it (to compare levels on one machine; any other value is warned about and
    /// ignored); a level the CPU lacks is never chosen.
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            let cap = match std::env::var("LMRUN_ISA").as_deref() {
                Ok("scalar") => Isa::Scalar,
                Ok("avx2") => Isa::Avx2,
                Ok("avx512-vnni") | Err(_) => Isa::Avx512Vnni,
                Ok(other) => {
                    log::warn!(
                        "LMRUN_ISA={other:?} is not one of scalar, avx2, avx512-vnni: using the \
                         best level this CPU has"
                    );
                    Isa::Avx512Vnni
                }
            };
            if cap == Isa::Avx512Vnni && Isa::Avx512Vnni.is_available() {
                Isa::Avx512Vnni
            } else if cap != Isa::Scalar && Isa::Avx2.is_available() {
                Isa::Avx2
            } else {
                Isa::Scalar
            }
        })
    }

    /// A short name for reports: `scalar`, `avx2` or `avx512-vnni` (what `LMRUN_ISA` takes,
    /// except that the AVX-512 level is the default and cannot be forced on a CPU without it).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512-vnni",
        }
    }

    /// Whether this level can run on this CPU.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => avx2_detected(),
            Isa::Avx512Vnni => avx2_detected() && avx512vnni_detected(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512vnni_detected() -> bool {
    static D: OnceLock<bool> = OnceLock::new();
    *D.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512vnni_detected() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn avx2_detected() -> bool {
    static D: OnceLock<bool> = OnceLock::new();
    *D.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_detected() -> bool {
    false
}

/// A dot product of one weight row (raw block bytes) with one activation row.
#[derive(Clone, Copy)]
pub enum DotFn {
    /// Against f32 activations.
    F32(fn(&[u8], &[f32]) -> f32),
    /// Against 32-wide quantized activations.
    Q8x32(fn(&[u8], &[BlockQ8x32]) -> f32),
    /// Against Q8_K activations.
    Q8K(fn(&[u8], &[BlockQ8K]) -> f32),
}

/// A dot product of one weight row with four activation rows at once (prefill): each weight
/// block is loaded and unpacked once for the four tokens.
#[derive(Clone, Copy)]
pub enum Dot4Fn {
    /// Against four rows of f32 activations (F32/F16/BF16 weights).
    F32(fn(&[u8], [&[f32]; 4]) -> [f32; 4]),
    /// Against four rows of 32-wide quantized activations.
    Q8x32(fn(&[u8], [&[BlockQ8x32]; 4]) -> [f32; 4]),
    /// Against four rows of Q8_K activations.
    Q8K(fn(&[u8], [&[BlockQ8K]; 4]) -> [f32; 4]),
}

/// The 4-token kernel for weight type `t` at level `isa`, if that level has one (AVX2: F32,
/// F16, BF16, Q4_0, Q5_0, Q8_0, IQ4_NL, Q4_K, Q5_K, Q6_K, IQ4_XS). `matmul` falls back to [`dot_fn`] per token otherwise.
pub fn dot4_fn(t: QType, isa: Isa) -> Option<Dot4Fn> {
    if !isa.is_available() {
        return None;
    }
    match isa {
        Isa::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => crate::simd::avx2::dot4_fn(t),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => {
            crate::simd::avx512::dot4_fn(t).or_else(|| crate::simd::avx2::dot4_fn(t))
        }
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512Vnni => None,
    }
}

/// Weight rows per tile of a [`TileFn`].
pub const TILE_ROWS: usize = 4;

/// A `TILE_ROWS`-row × 4-token kernel over activation blocks of type `A`: `out[r][n]` = weight
/// row `r` · activation row `n`.
pub type Tile<A> = fn([&[u8]; TILE_ROWS], [&[A]; 4]) -> [[f32; 4]; TILE_ROWS];

/// Dot products of [`TILE_ROWS`] weight rows with four activation rows at once (prefill on
/// levels with enough registers): each weight block is unpacked once for four tokens and each
/// activation block loaded once for all the rows.
#[derive(Clone, Copy)]
pub enum TileFn {
    /// Against four rows of 32-wide quantized activations.
    Q8x32(Tile<BlockQ8x32>),
    /// Against four rows of Q8_K activations.
    Q8K(Tile<BlockQ8K>),
}

/// The tile kernel for weight type `t` at level `isa`, if that level has one (AVX-512 VNNI:
/// Q4_0, Q5_0, Q8_0). `matmul` uses [`dot4_fn`] row by row otherwise.
pub fn tile_fn(t: QType, isa: Isa) -> Option<TileFn> {
    if !isa.is_available() {
        return None;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => crate::simd::avx512::tile_fn(t),
        _ => None,
    }
}

/// One activation row in the form a [`DotFn`] consumes.
#[derive(Debug, Clone, Copy)]
pub enum ActRow<'a> {
    /// Plain f32.
    F32(&'a [f32]),
    /// 32-wide int8 blocks.
    Q8x32(&'a [BlockQ8x32]),
    /// Q8_K blocks.
    Q8K(&'a [BlockQ8K]),
}

fn scalar_fn(t: QType) -> Option<DotFn> {
    Some(match t {
        QType::F32 => DotFn::F32(scalar::dot_f32w),
        QType::F16 => DotFn::F32(scalar::dot_f16w),
        QType::BF16 => DotFn::F32(scalar::dot_bf16w),
        QType::Q4_0 => DotFn::Q8x32(scalar::dot_q4_0),
        QType::Q4_1 => DotFn::Q8x32(scalar::dot_q4_1),
        QType::Q5_0 => DotFn::Q8x32(scalar::dot_q5_0),
        QType::Q5_1 => DotFn::Q8x32(scalar::dot_q5_1),
        QType::Q8_0 => DotFn::Q8x32(scalar::dot_q8_0),
        QType::IQ4NL => DotFn::Q8x32(scalar::dot_iq4nl),
        QType::Q2K => DotFn::Q8K(scalar::dot_q2k),
        QType::Q3K => DotFn::Q8K(scalar::dot_q3k),
        QType::Q4K => DotFn::Q8K(scalar::dot_q4k),
        QType::Q5K => DotFn::Q8K(scalar::dot_q5k),
        QType::Q6K => DotFn::Q8K(scalar::dot_q6k),
        QType::IQ4XS => DotFn::Q8K(scalar::dot_iq4xs),
        QType::Q8_1 | QType::Q8K => return None,
    })
}

/// The dot-product kernel for weight type `t` at level `isa` (falls back to scalar where the
/// level has no kernel for `t`). `None` for the activation-only types Q8_1 and Q8_K, or if
/// `isa` is not available on this CPU.
pub fn dot_fn(t: QType, isa: Isa) -> Option<DotFn> {
    if !isa.is_available() {
        return None;
    }
    match isa {
        Isa::Scalar => scalar_fn(t),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => crate::simd::avx2::dot_fn(t).or_else(|| scalar_fn(t)),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => crate::simd::avx512::dot_fn(t)
            .or_else(|| crate::simd::avx2::dot_fn(t))
            .or_else(|| scalar_fn(t)),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512Vnni => None,
    }
}

/// Dot product of one weight row `w` (raw bytes of `cols` values of type `t`) with one
/// activation row, at level `isa`. Length-checked.
pub fn vec_dot(
    isa: Isa,
    t: QType,
    cols: usize,
    w: &[u8],
    act: ActRow<'_>,
) -> Result<f32, KernelError> {
    let rb = t.row_bytes(cols).ok_or(KernelError::BadShape {
        qtype: t,
        cols,
        block: t.block_size(),
    })?;
    if w.len() != rb {
        return Err(KernelError::Length {
            what: "vec_dot weight row",
            expected: rb,
            got: w.len(),
        });
    }
    let f = dot_fn(t, isa).ok_or(KernelError::Unsupported {
        qtype: t,
        op: "vec_dot",
    })?;
    let mismatch = |expected, got| KernelError::Length {
        what: "vec_dot activation row",
        expected,
        got,
    };
    match (f, act) {
        (DotFn::F32(f), ActRow::F32(x)) if x.len() == cols => Ok(f(w, x)),
        (DotFn::Q8x32(f), ActRow::Q8x32(x)) if x.len() * 32 == cols => Ok(f(w, x)),
        (DotFn::Q8K(f), ActRow::Q8K(x)) if x.len() * 256 == cols => Ok(f(w, x)),
        (DotFn::F32(_), ActRow::F32(x)) => Err(mismatch(cols, x.len())),
        (DotFn::Q8x32(_), ActRow::Q8x32(x)) => Err(mismatch(cols, x.len() * 32)),
        (DotFn::Q8K(_), ActRow::Q8K(x)) => Err(mismatch(cols, x.len() * 256)),
        _ => Err(KernelError::Invalid(
            "activation format does not match the weight type (see quant::act_kind)",
        )),
    }
}
