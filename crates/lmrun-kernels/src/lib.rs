//! Numerics for CPU inference: GGUF block formats, activation quantization, quantized dot
//! products, matrix-vector and matrix-matrix products over weights in place, the f32 operations
//! decoders need, and the persistent thread pool.
//!
//! Decode speed on a CPU is the speed of reading the weights once per token, so the weights are
//! computed on where they lie (a `&[u8]` into the model mapping, see [`WeightRef`]): nothing is
//! copied or repacked. Activations are quantized once per [`matmul`] into the weight type's
//! integer partner ([`quant`]), and each weight block meets its activation block in an integer
//! dot product. Every kernel has a scalar reference ([`Isa::Scalar`]); x86-64 CPUs with
//! AVX2+FMA+F16C get SIMD kernels chosen at run time ([`Isa::best`]), and those that also have
//! AVX-512 VNNI (Zen 4, Ice Lake and later) get `vpdpbusd`/`vpdpwssd` kernels, 8-row × 4-token
//! prefill tiles and, for batches of 16+ tokens, a prefill GEMM for the common types
//! ([`Isa::Avx512Vnni`], [`tile_fn`]). Other targets
//! (aarch64 included) use the scalar kernels: there is no NEON code yet.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Index loops read better than zipped iterators in block-format code.
#![allow(clippy::needless_range_loop)]

mod dispatch;
mod error;
mod fn_types;
pub mod formats;
mod matmul;
pub mod ops;
pub mod partner;
mod pool;
mod qtype;
pub mod quant;
pub mod scalar;
mod simd;
pub mod xnn_qb4;

pub use dispatch::{dequantize_row, dot4_fn, dot_fn, tile_fn, vec_dot, Isa};
pub use error::KernelError;
pub use fn_types::{ActRow, Dot, Dot4, Dot4Fn, DotFn, Partner, Tile, TileFn, TILE_ROWS};
pub use formats::{QuantFormat, KVALUES_IQ4NL, QK32, QK_K};
pub use matmul::{matmul, matmul_with_isa, matvec_many, Scratch, WeightRef};
pub use ops::RopeMode;
pub use pool::ThreadPool;
pub use qtype::QType;
