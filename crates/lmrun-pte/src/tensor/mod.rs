//! The bottom of the crate: values and the helpers every kernel uses. It holds the public
//! values ([`EValue`], [`Tensor`], [`ScalarType`]), the interpreter's runtime values and their
//! storage ([`RValue`], [`RTensor`], [`Storage`], [`Ctx`]), element encoding, and shape
//! arithmetic. It imports nothing else from the crate, so the portable ops, the XNNPACK
//! delegate and the interpreter can all build on it without reaching into each other.

mod convert;
mod runtime;
mod shape;
mod value;

pub(crate) use convert::{bytes_to_f32, bytes_to_i64, encode, Data};
pub(crate) use runtime::{
    boolean, bytes, dtype, f32s, i64s, int, int_list, opt_int, scalar, sizes, tensor, tensor_bytes,
    write, Ctx, RTensor, RValue, Scalar, Storage,
};
pub(crate) use shape::{
    broadcast_map, broadcast_shape, broadcast_zip, check_numel, contiguous_strides, numel, prod,
    split, wrap_dim, StridedWalk, MAX_ELEMENTS,
};
pub use value::{EValue, ScalarType, Tensor};

/// What a kernel returns: a value, or a message the interpreter wraps with its context.
pub(crate) type KResult<T> = Result<T, String>;
