//! The types kernels are called through: function pointers for one row ([`DotFn`]), four tokens
//! ([`Dot4Fn`]) and row × token tiles ([`TileFn`]), the activation row a [`DotFn`] consumes
//! ([`ActRow`]), and the [`Partner`] trait that ties each activation partner type to its
//! variants. It exists as a leaf so that `dispatch` (which picks kernels) and the `simd`
//! modules (which provide them) both depend on it instead of on each other: it imports only the
//! plain data types of `formats::partner`.

use crate::partner::{ActKind, BlockQ8K, BlockQ8x32, NoPartner};

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

/// A one-row kernel over activation elements of type `A` (what [`DotFn`] holds).
pub type Dot<A> = fn(&[u8], &[A]) -> f32;

/// A 4-token kernel over activation elements of type `A` (what [`Dot4Fn`] holds).
pub type Dot4<A> = fn(&[u8], [&[A]; 4]) -> [f32; 4];

/// Weight rows per tile of a [`TileFn`].
pub const TILE_ROWS: usize = 8;

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

/// An activation partner type: what one element of an activation row is for a weight format
/// (`f32`, [`BlockQ8x32`], [`BlockQ8K`], or [`NoPartner`] for the activation-only formats), and
/// how its kernels are wrapped into the enums above.
pub trait Partner: Copy + 'static {
    /// The enum tag of this partner (see [`crate::quant::act_kind`]).
    const KIND: ActKind;
    /// Whether weights paired with this type have a dot product (false for [`NoPartner`]).
    const HAS_DOT: bool;
    /// Activation values per element (1 for f32, the block size for quantized blocks).
    const VALUES: usize;
    /// A one-row kernel as a [`DotFn`].
    fn dot_fn(f: Dot<Self>) -> Option<DotFn>;
    /// A 4-token kernel as a [`Dot4Fn`].
    fn dot4_fn(f: Dot4<Self>) -> Option<Dot4Fn>;
    /// A tile kernel as a [`TileFn`] (`None` where the enum has no such variant).
    fn tile_fn(f: Tile<Self>) -> Option<TileFn>;
    /// The one-row kernel inside `f`, if it takes this activation type.
    fn of_dot(f: DotFn) -> Option<Dot<Self>>;
    /// The 4-token kernel inside `f`, if it takes this activation type.
    fn of_dot4(f: Dot4Fn) -> Option<Dot4<Self>>;
    /// The tile kernel inside `f`, if it takes this activation type.
    fn of_tile(f: TileFn) -> Option<Tile<Self>>;
}

impl Partner for f32 {
    const KIND: ActKind = ActKind::F32;
    const HAS_DOT: bool = true;
    const VALUES: usize = 1;
    fn dot_fn(f: Dot<f32>) -> Option<DotFn> {
        Some(DotFn::F32(f))
    }
    fn dot4_fn(f: Dot4<f32>) -> Option<Dot4Fn> {
        Some(Dot4Fn::F32(f))
    }
    fn tile_fn(_: Tile<f32>) -> Option<TileFn> {
        None
    }
    fn of_dot(f: DotFn) -> Option<Dot<f32>> {
        match f {
            DotFn::F32(f) => Some(f),
            _ => None,
        }
    }
    fn of_dot4(f: Dot4Fn) -> Option<Dot4<f32>> {
        match f {
            Dot4Fn::F32(f) => Some(f),
            _ => None,
        }
    }
    fn of_tile(_: TileFn) -> Option<Tile<f32>> {
        None
    }
}

impl Partner for BlockQ8x32 {
    const KIND: ActKind = ActKind::Q8x32;
    const HAS_DOT: bool = true;
    const VALUES: usize = crate::partner::QK32;
    fn dot_fn(f: Dot<BlockQ8x32>) -> Option<DotFn> {
        Some(DotFn::Q8x32(f))
    }
    fn dot4_fn(f: Dot4<BlockQ8x32>) -> Option<Dot4Fn> {
        Some(Dot4Fn::Q8x32(f))
    }
    fn tile_fn(f: Tile<BlockQ8x32>) -> Option<TileFn> {
        Some(TileFn::Q8x32(f))
    }
    fn of_dot(f: DotFn) -> Option<Dot<BlockQ8x32>> {
        match f {
            DotFn::Q8x32(f) => Some(f),
            _ => None,
        }
    }
    fn of_dot4(f: Dot4Fn) -> Option<Dot4<BlockQ8x32>> {
        match f {
            Dot4Fn::Q8x32(f) => Some(f),
            _ => None,
        }
    }
    fn of_tile(f: TileFn) -> Option<Tile<BlockQ8x32>> {
        match f {
            TileFn::Q8x32(f) => Some(f),
            _ => None,
        }
    }
}

impl Partner for BlockQ8K {
    const KIND: ActKind = ActKind::Q8K;
    const HAS_DOT: bool = true;
    const VALUES: usize = crate::partner::QK_K;
    fn dot_fn(f: Dot<BlockQ8K>) -> Option<DotFn> {
        Some(DotFn::Q8K(f))
    }
    fn dot4_fn(f: Dot4<BlockQ8K>) -> Option<Dot4Fn> {
        Some(Dot4Fn::Q8K(f))
    }
    fn tile_fn(f: Tile<BlockQ8K>) -> Option<TileFn> {
        Some(TileFn::Q8K(f))
    }
    fn of_dot(f: DotFn) -> Option<Dot<BlockQ8K>> {
        match f {
            DotFn::Q8K(f) => Some(f),
            _ => None,
        }
    }
    fn of_dot4(f: Dot4Fn) -> Option<Dot4<BlockQ8K>> {
        match f {
            Dot4Fn::Q8K(f) => Some(f),
            _ => None,
        }
    }
    fn of_tile(f: TileFn) -> Option<Tile<BlockQ8K>> {
        match f {
            TileFn::Q8K(f) => Some(f),
            _ => None,
        }
    }
}

impl Partner for NoPartner {
    // What `act_kind` has always answered for the activation-only types; nothing uses it, as
    // they have no dot product.
    const KIND: ActKind = ActKind::Q8x32;
    const HAS_DOT: bool = false;
    const VALUES: usize = 1;
    fn dot_fn(_: Dot<NoPartner>) -> Option<DotFn> {
        None
    }
    fn dot4_fn(_: Dot4<NoPartner>) -> Option<Dot4Fn> {
        None
    }
    fn tile_fn(_: Tile<NoPartner>) -> Option<TileFn> {
        None
    }
    fn of_dot(_: DotFn) -> Option<Dot<NoPartner>> {
        None
    }
    fn of_dot4(_: Dot4Fn) -> Option<Dot4<NoPartner>> {
        None
    }
    fn of_tile(_: TileFn) -> Option<Tile<NoPartner>> {
        None
    }
}
