//! Kernel semantics against hand-computed PyTorch results.
use std::sync::Arc;

use super::elementwise::*;
use super::index::*;
use super::linear::*;
use super::reduce::*;
use super::scalar::*;
use super::shape::*;
use crate::tensor::{f32s, i64s, sizes, write, Ctx, Data, RTensor, RValue, ScalarType, Storage};

fn ctx(values: Vec<RValue>) -> Ctx {
    Ctx {
        values,
        arenas: Vec::new(),
        pool: Arc::new(lmrun_kernels::ThreadPool::new(1).unwrap()),
        scratch: lmrun_kernels::Scratch::default(),
    }
}
fn ft(sizes: &[usize], v: &[f32]) -> RValue {
    RValue::Tensor(RTensor {
        dtype: ScalarType::Float,
        sizes: sizes.to_vec(),
        cap: usize::MAX,
        storage: Storage::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    })
}
fn lt(sizes: &[usize], v: &[i64]) -> RValue {
    RValue::Tensor(RTensor {
        dtype: ScalarType::Long,
        sizes: sizes.to_vec(),
        cap: usize::MAX,
        storage: Storage::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    })
}
fn out(dtype: ScalarType) -> RValue {
    RValue::Tensor(RTensor {
        dtype,
        sizes: vec![],
        cap: usize::MAX,
        storage: Storage::Unset,
    })
}
fn get(c: &Ctx, i: usize) -> (Vec<usize>, Vec<f32>) {
    (sizes(c, i).unwrap(), f32s(c, i).unwrap())
}

#[test]
fn add_broadcasts_with_alpha_and_sub() {
    let mut c = ctx(vec![
        ft(&[2, 3], &[1., 2., 3., 4., 5., 6.]),
        ft(&[3], &[10., 20., 30.]),
        RValue::Int(2),
        out(ScalarType::Float),
    ]);
    binary(&mut c, &[0, 1, 2, 3, 3], BinOp::Add, true).unwrap();
    assert_eq!(get(&c, 3), (vec![2, 3], vec![21., 42., 63., 24., 45., 66.]));
    binary(&mut c, &[1, 0, 2, 3, 3], BinOp::Sub, true).unwrap();
    assert_eq!(get(&c, 3).1, [8., 16., 24., 2., 10., 18.]);
    // incompatible shapes
    c.values[1] = ft(&[2], &[1., 2.]);
    assert!(binary(&mut c, &[0, 1, 2, 3, 3], BinOp::Add, true).is_err());
}

#[test]
fn slice_select_and_negative_indices() {
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let mut c = ctx(vec![
        ft(&[3, 4], &x),
        RValue::Int(1),
        RValue::Int(-3),
        RValue::None,
        RValue::Int(2),
        out(ScalarType::Float),
    ]);
    // x[:, -3::2]
    slice_copy(&mut c, &[0, 1, 2, 3, 4, 5, 5]).unwrap();
    assert_eq!(get(&c, 5), (vec![3, 2], vec![1., 3., 5., 7., 9., 11.]));
    // end clamped past the size, start past the end -> empty
    c.values[2] = RValue::Int(10);
    slice_copy(&mut c, &[0, 1, 2, 3, 4, 5, 5]).unwrap();
    assert_eq!(get(&c, 5).0, [3, 0]);
    // x.select(0, -1)
    c.values[1] = RValue::Int(0);
    c.values[2] = RValue::Int(-1);
    select_copy(&mut c, &[0, 1, 2, 5, 5]).unwrap();
    assert_eq!(get(&c, 5), (vec![4], vec![8., 9., 10., 11.]));
    c.values[2] = RValue::Int(3);
    assert!(select_copy(&mut c, &[0, 1, 2, 5, 5]).is_err());
}

#[test]
fn permute_expand_cat_view() {
    let mut c = ctx(vec![
        ft(&[2, 3], &[1., 2., 3., 4., 5., 6.]),
        RValue::Int(1),
        RValue::Int(0),
        RValue::IntList(vec![1, 2]),
        out(ScalarType::Float),
        RValue::Int(-1),
        RValue::Int(2),
        RValue::IntList(vec![6, 5]),
        RValue::TensorList(vec![0, 0]),
    ]);
    permute_copy(&mut c, &[0, 3, 4, 4]).unwrap();
    assert_eq!(get(&c, 4), (vec![3, 2], vec![1., 4., 2., 5., 3., 6.]));
    // expand [2,3] -> [2, 2, 3] via (2, -1, -1)
    c.values[7] = RValue::IntList(vec![6, 5, 5]);
    expand_copy(&mut c, &[0, 7, 4]).unwrap();
    assert_eq!(get(&c, 4).0, [2, 2, 3]);
    assert_eq!(get(&c, 4).1[..6], [1., 2., 3., 4., 5., 6.]);
    // cat([x, x], dim=1)
    cat(&mut c, &[8, 1, 4, 4]).unwrap();
    assert_eq!(
        get(&c, 4),
        (
            vec![2, 6],
            vec![1., 2., 3., 1., 2., 3., 4., 5., 6., 4., 5., 6.]
        )
    );
    // view with -1
    assert_eq!(view_sizes(&[2, 3], &[-1]).unwrap(), [6]);
    assert_eq!(view_sizes(&[2, 3], &[3, -1]).unwrap(), [3, 2]);
    assert!(view_sizes(&[2, 3], &[4, -1]).is_err());
    assert!(view_sizes(&[2, 3], &[-1, -1]).is_err());
}

#[test]
fn index_put_and_index_with_leading_none() {
    // cache [1, 2, 4] (b, h, pos); cache[:, :, pos] = v with pos = [2]
    let mut c = ctx(vec![
        ft(&[1, 2, 4], &[0.0; 8]),
        RValue::OptTensorList(vec![None, None, Some(2)]),
        lt(&[1], &[2]),
        ft(&[1, 2, 1], &[7., 8.]),
        RValue::Bool(false),
        out(ScalarType::Float),
    ]);
    index_put(&mut c, &[0, 1, 3, 4, 5, 5]).unwrap();
    assert_eq!(
        get(&c, 5),
        (vec![1, 2, 4], vec![0., 0., 7., 0., 0., 0., 8., 0.])
    );
    // read it back: out[:, :, [2, 1]]
    c.values[0] = c.values[5].clone();
    c.values[2] = lt(&[2], &[2, -3]);
    c.values[5] = out(ScalarType::Float);
    index_tensor(&mut c, &[0, 1, 5, 5]).unwrap();
    assert_eq!(get(&c, 5), (vec![1, 2, 2], vec![7., 0., 8., 0.]));
    c.values[2] = lt(&[1], &[4]);
    assert!(index_tensor(&mut c, &[0, 1, 5, 5]).is_err());
}

#[test]
fn reductions_and_softmax() {
    let mut c = ctx(vec![
        ft(&[2, 3], &[1., 2., 3., 4., 5., 6.]),
        RValue::IntList(vec![2]),
        RValue::Int(-1),
        RValue::Bool(true),
        RValue::None,
        out(ScalarType::Float),
        RValue::Bool(false),
    ]);
    mean(&mut c, &[0, 1, 3, 4, 5, 5]).unwrap();
    assert_eq!(get(&c, 5), (vec![2, 1], vec![2., 5.]));
    softmax(&mut c, &[0, 2, 6, 5, 5]).unwrap();
    let (s, v) = get(&c, 5);
    assert_eq!(s, [2, 3]);
    assert!((v[0] + v[1] + v[2] - 1.0).abs() < 1e-6);
    assert!((v[2] - 0.665_240_9).abs() < 1e-6);
}

#[test]
fn prim_scalar_ops_follow_python() {
    let mut c = ctx(vec![RValue::Int(-7), RValue::Int(2), RValue::None]);
    prim(&mut c, &[0, 1, 2], PrimOp::FloorDiv).unwrap();
    assert!(matches!(c.values[2], RValue::Int(-4)));
    prim(&mut c, &[0, 1, 2], PrimOp::Mod).unwrap();
    assert!(matches!(c.values[2], RValue::Int(1)));
    c.values[1] = RValue::Int(-2);
    c.values[0] = RValue::Int(7);
    prim(&mut c, &[0, 1, 2], PrimOp::FloorDiv).unwrap();
    assert!(matches!(c.values[2], RValue::Int(-4)));
    prim(&mut c, &[0, 1, 2], PrimOp::Mod).unwrap();
    assert!(matches!(c.values[2], RValue::Int(-1)));
    c.values[1] = RValue::Int(0);
    assert!(prim(&mut c, &[0, 1, 2], PrimOp::FloorDiv).is_err());
    c.values[1] = RValue::Double(0.5);
    prim(&mut c, &[0, 1, 2], PrimOp::Mul).unwrap();
    assert!(matches!(c.values[2], RValue::Double(x) if x == 3.5));
}

#[test]
fn where_arange_and_dtype_conversion() {
    let mut c = ctx(vec![
        RValue::Tensor(RTensor {
            dtype: ScalarType::Bool,
            sizes: vec![3],
            cap: usize::MAX,
            storage: Storage::Owned(vec![1, 0, 1]),
        }),
        ft(&[3], &[1., 2., 3.]),
        ft(&[], &[-1.]),
        out(ScalarType::Float),
        RValue::Int(2),
        RValue::Int(9),
        RValue::Int(3),
        out(ScalarType::Long),
    ]);
    where_self(&mut c, &[0, 1, 2, 3, 3]).unwrap();
    assert_eq!(get(&c, 3), (vec![3], vec![1., -1., 3.]));
    arange_start(&mut c, &[4, 5, 6, 7, 7]).unwrap();
    assert_eq!(i64s(&c, 7).unwrap(), [2, 5, 8]);
    // float -> long truncates, like a C cast
    c.values[1] = ft(&[2], &[2.7, -1.5]);
    to_copy(&mut c, &[1, 2, 2, 7, 7]).unwrap();
    assert_eq!(i64s(&c, 7).unwrap(), [2, -1]);
}

#[test]
fn matmuls_transposes_and_stack() {
    let mut c = ctx(vec![
        ft(&[2, 3], &[1., 2., 3., 4., 5., 6.]),
        ft(&[3, 2], &[1., 0., 0., 1., 1., 1.]),
        out(ScalarType::Float),
        ft(&[2], &[10., 20.]),
        RValue::Int(1),
        RValue::Int(2),
        RValue::Int(0),
        RValue::TensorList(vec![0, 0]),
    ]);
    mm(&mut c, &[0, 1, 2, 2]).unwrap();
    assert_eq!(get(&c, 2), (vec![2, 2], vec![4., 5., 10., 11.]));
    // beta=1, alpha=2
    addmm(&mut c, &[3, 0, 1, 4, 5, 2, 2]).unwrap();
    assert_eq!(get(&c, 2).1, [18., 30., 30., 42.]);
    transpose_copy(&mut c, &[0, 6, 4, 2, 2]).unwrap();
    assert_eq!(get(&c, 2), (vec![3, 2], vec![1., 4., 2., 5., 3., 6.]));
    t_copy(&mut c, &[1, 2, 2]).unwrap();
    assert_eq!(get(&c, 2), (vec![2, 3], vec![1., 0., 1., 0., 1., 1.]));
    stack(&mut c, &[7, 4, 2, 2]).unwrap();
    assert_eq!(
        get(&c, 2),
        (
            vec![2, 2, 3],
            vec![1., 2., 3., 1., 2., 3., 4., 5., 6., 4., 5., 6.]
        )
    );
    stack(&mut c, &[7, 6, 2, 2]).unwrap();
    assert_eq!(get(&c, 2).0, [2, 2, 3]);
    assert_eq!(get(&c, 2).1[6..], [1., 2., 3., 4., 5., 6.]);
}

#[test]
fn index_copy_split_unbind_fill_tri() {
    let mut c = ctx(vec![
        ft(&[3, 2], &[0.; 6]),
        RValue::Int(0),
        lt(&[1], &[2]),
        ft(&[1, 2], &[7., 8.]),
        out(ScalarType::Float),
        out(ScalarType::Float),
        RValue::TensorList(vec![4, 5]),
        RValue::IntList(vec![8, 9]),
        RValue::Int(1),
        RValue::Int(2),
    ]);
    index_copy(&mut c, &[0, 1, 2, 3, 4, 4]).unwrap();
    assert_eq!(get(&c, 4), (vec![3, 2], vec![0., 0., 0., 0., 7., 8.]));
    c.values[0] = c.values[4].clone();
    split_with_sizes_copy(&mut c, &[0, 7, 1, 6]).unwrap();
    assert_eq!(get(&c, 4), (vec![1, 2], vec![0., 0.]));
    assert_eq!(get(&c, 5), (vec![2, 2], vec![0., 0., 7., 8.]));
    c.values[0] = ft(&[2, 2], &[1., 2., 3., 4.]);
    unbind_copy(&mut c, &[0, 8, 6]).unwrap();
    assert_eq!(get(&c, 4), (vec![2], vec![1., 3.]));
    assert_eq!(get(&c, 5), (vec![2], vec![2., 4.]));
    tri(&mut c, &[0, 1, 4, 4], true).unwrap();
    assert_eq!(get(&c, 4), (vec![2, 2], vec![1., 0., 3., 4.]));
    tri(&mut c, &[0, 8, 4, 4], false).unwrap();
    assert_eq!(get(&c, 4).1, [0., 2., 0., 0.]);
    c.values[7] = RValue::IntList(vec![9, 9]);
    c.values[8] = RValue::Double(0.5);
    full(&mut c, &[7, 8, 4, 4]).unwrap();
    assert_eq!(get(&c, 4), (vec![2, 2], vec![0.5; 4]));
}

/// ExecuTorch's own `OpQuantizedEmbedding4bTest` / `2bTest` cases.
#[test]
fn quantized_embeddings_match_executorch_tests() {
    let byte = |sizes: &[usize], v: &[u8]| {
        RValue::Tensor(RTensor {
            dtype: ScalarType::Byte,
            sizes: sizes.to_vec(),
            cap: usize::MAX,
            storage: Storage::Owned(v.to_vec()),
        })
    };
    let mut c = ctx(vec![
        byte(&[3, 2], &[89, 239, 163, 72, 11, 126]),
        ft(&[3], &[0.5, 1.0, 1.5]),
        ft(&[3], &[1., -5., 0.]),
        RValue::Int(-8),
        RValue::Int(7),
        lt(&[3], &[0, 2, 1]),
        out(ScalarType::Float),
    ]);
    embedding_xbit(&mut c, &[0, 1, 2, 3, 4, 5, 6, 6], 4).unwrap();
    assert_eq!(
        get(&c, 6),
        (
            vec![3, 4],
            vec![-2.0, 0.0, 2.5, 3.0, -12.0, 4.5, -1.5, 9.0, 7.0, 0.0, 1.0, 5.0]
        )
    );
    // 2-bit (ExecuTorch's current test: first element in the lowest bits), per row and
    // then in groups of 2 (expected values computed by hand)
    c.values[0] = byte(&[3, 1], &[236, 134, 228]);
    c.values[2] = ft(&[3], &[1., -2., 0.]);
    c.values[3] = RValue::Int(-2);
    c.values[4] = RValue::Int(1);
    embedding_xbit(&mut c, &[0, 1, 2, 3, 4, 5, 6, 6], 2).unwrap();
    assert_eq!(
        get(&c, 6).1,
        [-1.5, 0.0, -0.5, 0.0, -3.0, -1.5, 0.0, 1.5, 2.0, 1.0, 0.0, 2.0]
    );
    c.values[1] = ft(&[3, 2], &[0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
    c.values[2] = ft(&[3, 2], &[1., -2., 0., 1., -2., -1.]);
    embedding_xbit(&mut c, &[0, 1, 2, 3, 4, 5, 6, 6], 2).unwrap();
    assert_eq!(
        get(&c, 6).1,
        [-1.5, 0.0, 2.0, 3.0, 0.0, 2.5, 3.0, 6.0, 0.0, -1.5, -6.0, -2.0]
    );
    // out-of-range id
    c.values[5] = lt(&[1], &[3]);
    assert!(embedding_xbit(&mut c, &[0, 1, 2, 3, 4, 5, 6, 6], 2).is_err());
}

#[test]
fn planned_capacity_is_enforced() {
    let mut c = ctx(vec![ft(&[4], &[1., 2., 3., 4.]), RValue::None]);
    c.arenas.push(vec![0u8; 8]);
    c.values[1] = RValue::Tensor(RTensor {
        dtype: ScalarType::Float,
        sizes: vec![2],
        cap: 8,
        storage: Storage::Arena { id: 0, off: 0 },
    });
    let e = write(&mut c, 1, vec![4], Data::F32(vec![0.0; 4])).unwrap_err();
    assert!(e.contains("capacity"), "{e}");
    write(&mut c, 1, vec![1], Data::F32(vec![5.0])).unwrap();
    assert_eq!(get(&c, 1), (vec![1], vec![5.0]));
    // a huge expand is refused, not allocated
    let mut c2 = ctx(vec![
        ft(&[1], &[1.0]),
        RValue::IntList(vec![2]),
        RValue::Int(1 << 40),
        out(ScalarType::Float),
    ]);
    assert!(expand_copy(&mut c2, &[0, 1, 3]).is_err());
}
