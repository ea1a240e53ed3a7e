//! The portable operators: one file per kind of op, and here the registry that maps an
//! operator's `name.overload` to its kernel (ExecuTorch's kernel registry). Every kernel reads
//! its arguments from the interpreter's values, computes into a fresh buffer (so aliasing
//! between inputs and the output is harmless) and writes the result into the output tensor,
//! resizing it within its planned capacity. Float math is done in f32 in the order ExecuTorch's
//! portable kernels use, except linear, which uses `lmrun-kernels`' SIMD matmul on the weights
//! in place. The XNNPACK delegate reuses the shared pieces ([`linear::batched_matmul`],
//! [`shape::permute`], [`shape::slice_box`], [`reduce::softmax_in_place`]).
//!
//! | file | ops |
//! |---|---|
//! | `scalar` | `executorch_prim::` scalar arithmetic, `sym_size`, `sym_numel`, `_local_scalar_dense` |
//! | `shape` | views, copies, squeeze/unsqueeze, select/slice, cat/stack/split/unbind, permute/transpose/expand, `copy_` |
//! | `elementwise` | binary and unary math, `where`, comparisons, `full`/`arange`, `masked_fill`, `tril`/`triu` |
//! | `reduce` | `mean`, `any`, `_softmax` |
//! | `linear` | `linear` (SIMD, weights in place), `mm`, `addmm`, `bmm` |
//! | `index` | `embedding` (plain and quantized), `index.Tensor`, `index_put`, `index_copy` |
//! | `llama` | `llama::update_cache`, `llama::custom_sdpa`, `llama::custom_quantized_sdpa` |
//! | `quant` | `quantized_decomposed::choose_qparams_per_token_asymmetric`, `quantize_per_token` |

use crate::tensor::{Ctx, KResult};
use elementwise::{binary, binary_scalar, tri, unary_f32, BinOp};
use index::embedding_xbit;
use scalar::{prim, PrimOp};

pub(crate) mod elementwise;
pub(crate) mod index;
pub(crate) mod linear;
pub(crate) mod llama;
pub(crate) mod quant;
pub(crate) mod reduce;
pub(crate) mod scalar;
pub(crate) mod shape;
#[cfg(test)]
mod tests;

/// A kernel: run on the values at `args` (the output is the last argument).
pub(crate) type KernelFn = fn(&mut Ctx, &[usize]) -> Result<(), String>;

/// The kernel registered for `name.overload`.
pub(crate) fn lookup(op: &str) -> Option<KernelFn> {
    let f: KernelFn = match op {
        "aten::sym_size.int" => scalar::sym_size,
        "aten::sym_numel" => scalar::sym_numel,
        "aten::_local_scalar_dense" => scalar::local_scalar_dense,
        "aten::embedding.out" => index::embedding,
        "aten::select_copy.int_out" => shape::select_copy,
        "aten::slice_copy.Tensor_out" => shape::slice_copy,
        "aten::mul.out" => |c, a| binary(c, a, BinOp::Mul, false),
        "aten::add.out" => |c, a| binary(c, a, BinOp::Add, true),
        "aten::sub.out" => |c, a| binary(c, a, BinOp::Sub, true),
        "aten::div.out" => |c, a| binary(c, a, BinOp::Div, false),
        "aten::mul.Scalar_out" => |c, a| binary_scalar(c, a, BinOp::Mul),
        "aten::add.Scalar_out" => |c, a| binary_scalar(c, a, BinOp::Add),
        "aten::eq.Scalar_out" => |c, a| binary_scalar(c, a, BinOp::Eq),
        "aten::mean.out" => reduce::mean,
        "aten::rsqrt.out" => |c, a| unary_f32(c, a, |x| 1.0 / x.sqrt()),
        "aten::sigmoid.out" => |c, a| unary_f32(c, a, |x| 1.0 / (1.0 + (-x).exp())),
        "aten::silu.out" => |c, a| unary_f32(c, a, |x| x / (1.0 + (-x).exp())),
        "aten::neg.out" => |c, a| unary_f32(c, a, |x| -x),
        "aten::linear.out" => linear::linear,
        "executorch_prim::et_view.default" => shape::et_view,
        "aten::view_copy.out" => shape::view_copy,
        "aten::squeeze_copy.dims_out" => shape::squeeze_copy,
        "aten::unsqueeze_copy.out" => shape::unsqueeze_copy,
        "aten::cat.out" => shape::cat,
        "aten::permute_copy.out" => shape::permute_copy,
        "aten::arange.start_out" => elementwise::arange_start,
        "aten::scalar_tensor.out" => elementwise::scalar_tensor,
        "aten::_to_copy.out" | "aten::clone.out" | "dim_order_ops::_to_dim_order_copy.out" => {
            shape::to_copy
        }
        "aten::index_put.out" => index::index_put,
        "aten::index.Tensor_out" => index::index_tensor,
        "aten::expand_copy.out" => shape::expand_copy,
        "aten::where.self_out" => elementwise::where_self,
        "aten::bmm.out" => linear::bmm,
        "aten::_softmax.out" => reduce::softmax,
        "aten::logical_not.out" => elementwise::logical_not,
        "aten::any.out" | "aten::any.dims_out" => reduce::any_dim,
        "aten::full_like.out" => elementwise::full_like,
        "aten::copy_" => shape::copy_inplace,
        "llama::update_cache.out" => llama::update_cache,
        "llama::custom_sdpa.out" => llama::custom_sdpa,
        "llama::custom_quantized_sdpa.out" => llama::custom_quantized_sdpa,
        "quantized_decomposed::choose_qparams_per_token_asymmetric.out" => {
            quant::choose_qparams_per_token
        }
        "quantized_decomposed::quantize_per_token.out" => quant::quantize_per_token,
        "executorch_prim::add.Scalar" => |c, a| prim(c, a, PrimOp::Add),
        "executorch_prim::sub.Scalar" => |c, a| prim(c, a, PrimOp::Sub),
        "executorch_prim::mul.Scalar" => |c, a| prim(c, a, PrimOp::Mul),
        "executorch_prim::floordiv.Scalar" | "executorch_prim::floordiv.int" => {
            |c, a| prim(c, a, PrimOp::FloorDiv)
        }
        "executorch_prim::truediv.Scalar" => |c, a| prim(c, a, PrimOp::TrueDiv),
        "executorch_prim::mod.Scalar" | "executorch_prim::mod.int" => {
            |c, a| prim(c, a, PrimOp::Mod)
        }
        "executorch_prim::eq.Scalar" => |c, a| prim(c, a, PrimOp::Eq),
        "executorch_prim::gt.Scalar" => |c, a| prim(c, a, PrimOp::Gt),
        "executorch_prim::lt.Scalar" => |c, a| prim(c, a, PrimOp::Lt),
        "executorch_prim::ge.Scalar" => |c, a| prim(c, a, PrimOp::Ge),
        "executorch_prim::le.Scalar" => |c, a| prim(c, a, PrimOp::Le),
        "executorch_prim::sym_max.Scalar" => |c, a| prim(c, a, PrimOp::Max),
        "executorch_prim::sym_min.Scalar" => |c, a| prim(c, a, PrimOp::Min),
        "executorch_prim::neg.Scalar" => scalar::prim_neg,
        "aten::mm.out" => linear::mm,
        "quantized_decomposed::embedding_byte.out"
        | "quantized_decomposed::embedding_byte.dtype_out" => |c, a| embedding_xbit(c, a, 8),
        "quantized_decomposed::embedding_4bit.out"
        | "quantized_decomposed::embedding_4bit.dtype_out" => |c, a| embedding_xbit(c, a, 4),
        "quantized_decomposed::embedding_2bit.out"
        | "quantized_decomposed::embedding_2bit.dtype_out" => |c, a| embedding_xbit(c, a, 2),
        "aten::addmm.out" => linear::addmm,
        "aten::pow.Tensor_Scalar_out" => elementwise::pow_scalar,
        "aten::transpose_copy.int_out" => shape::transpose_copy,
        "aten::t_copy.out" => shape::t_copy,
        "aten::stack.out" => shape::stack,
        "aten::exp.out" => |c, a| unary_f32(c, a, f32::exp),
        "aten::cos.out" => |c, a| unary_f32(c, a, f32::cos),
        "aten::sin.out" => |c, a| unary_f32(c, a, f32::sin),
        "aten::tanh.out" => |c, a| unary_f32(c, a, f32::tanh),
        "aten::sqrt.out" => |c, a| unary_f32(c, a, f32::sqrt),
        "aten::relu.out" => |c, a| unary_f32(c, a, |x| x.max(0.0)),
        "aten::alias_copy.out" => shape::to_copy,
        "aten::index_copy.out" => index::index_copy,
        "aten::unbind_copy.int_out" => shape::unbind_copy,
        "aten::split_with_sizes_copy.out" => shape::split_with_sizes_copy,
        "aten::full.out" => elementwise::full,
        "aten::masked_fill.Scalar_out" => elementwise::masked_fill,
        "aten::tril.out" => |c, a| tri(c, a, true),
        "aten::triu.out" => |c, a| tri(c, a, false),
        _ => return None,
    };
    Some(f)
}

/// The output of a call: its last argument.
pub(crate) fn out_idx(args: &[usize]) -> KResult<usize> {
    args.last()
        .copied()
        .ok_or_else(|| "no arguments".to_string())
}

/// Refuse a call with fewer than `n` arguments.
pub(crate) fn need(args: &[usize], n: usize) -> KResult<()> {
    if args.len() < n {
        return Err(format!(
            "expected at least {n} arguments, got {}",
            args.len()
        ));
    }
    Ok(())
}
