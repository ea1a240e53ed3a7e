//! Run-time choice of the instruction set: the best available kernels are detected once
//! (`is_x86_feature_detected!`, cached) and looked up per weight type. The scalar kernels are
//! always available and are what aarch64 and other targets use today (no NEON yet).

use std::sync::OnceLock;

use crate::fn_types::{ActRow, Dot4Fn, DotFn, Partner, TileFn};
use crate::formats::{self, with_formats, QuantFormat};
use crate::partner::{BlockQ8K, BlockQ8x32};
use crate::{KernelError, QType};

/// An instruction-set level for the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable scalar reference code.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX2 level plus AVX512F/BW/VL and AVX512_VNNI (256-bit registers): `vpdpbusd` /
    /// `vpdpwssd` kernels for Q4_0, Q5_0, Q8_0, Q4_K and Q6_K, AVX2 kernels for the rest.
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

/// The 8-row × 4-token tile kernel for weight type `t` at level `isa`, if that level has one (AVX-512 VNNI:
/// Q4_0, Q5_0, Q8_0, Q4_K, Q6_K). `matmul` uses [`dot4_fn`] row by row otherwise (and, at that
/// level, a GEMM for batches of 16+ tokens of Q4_0/Q5_0/Q8_0/Q4_K/Q5_K/Q6_K/IQ4_XS, and for
/// fewer tokens of Q4_0/Q5_0/Q8_0/Q4_K/Q6_K its batch-invariant eight-row kernels instead of
/// these tiles).
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

/// The scalar reference kernel of every weight type, from the format list.
fn scalar_fn(t: QType) -> Option<DotFn> {
    macro_rules! by_type {
        ($($(#[$doc:meta])* $v:ident,)*) => {
            match t {
                $(QType::$v => {
                    <<formats::$v as QuantFormat>::Act as Partner>::dot_fn(
                        <formats::$v as QuantFormat>::dot,
                    )
                })*
            }
        };
    }
    with_formats!(by_type)
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
    const Q8X32: usize = <BlockQ8x32 as Partner>::VALUES;
    const Q8K: usize = <BlockQ8K as Partner>::VALUES;
    let mismatch = |expected, got| KernelError::Length {
        what: "vec_dot activation row",
        expected,
        got,
    };
    match (f, act) {
        (DotFn::F32(f), ActRow::F32(x)) if x.len() == cols => Ok(f(w, x)),
        (DotFn::Q8x32(f), ActRow::Q8x32(x)) if x.len() * Q8X32 == cols => Ok(f(w, x)),
        (DotFn::Q8K(f), ActRow::Q8K(x)) if x.len() * Q8K == cols => Ok(f(w, x)),
        (DotFn::F32(_), ActRow::F32(x)) => Err(mismatch(cols, x.len())),
        (DotFn::Q8x32(_), ActRow::Q8x32(x)) => Err(mismatch(cols, x.len() * Q8X32)),
        (DotFn::Q8K(_), ActRow::Q8K(x)) => Err(mismatch(cols, x.len() * Q8K)),
        _ => Err(KernelError::Invalid(
            "activation format does not match the weight type (see quant::act_kind)",
        )),
    }
}

/// Dequantizes a row of blocks `src` of type `t` into `dst`.
///
/// `dst.len()` must be a multiple of the block size and `src.len()` must equal
/// `t.row_bytes(dst.len())`; otherwise an error is returned.
pub fn dequantize_row(t: QType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    let expected = t.row_bytes(dst.len()).ok_or(KernelError::BadShape {
        qtype: t,
        cols: dst.len(),
        block: t.block_size(),
    })?;
    if src.len() != expected {
        return Err(KernelError::Length {
            what: "dequantize_row src",
            expected,
            got: src.len(),
        });
    }
    macro_rules! by_type {
        ($($(#[$doc:meta])* $v:ident,)*) => {
            match t {
                $(QType::$v => <formats::$v as QuantFormat>::dequantize(src, dst),)*
            }
        };
    }
    with_formats!(by_type);
    Ok(())
}
