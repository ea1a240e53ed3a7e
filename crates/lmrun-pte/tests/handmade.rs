//! Programs built by hand with a small flatbuffer writer, for the container features the LLM
//! fixtures do not use: a `.pte` without the `eh00` header, the legacy inline
//! `constant_buffer`, a mutable-data segment with initial values that persist across
//! executes, Move/JumpFalse/Free instructions, an unknown operator, and an endless jump loop.

mod common;

use common::fbb::{finish, F, T};
use lmrun_loader::LoadMode;
use lmrun_pte::{EValue, Module, PteError, Tensor};

const FLOAT: i8 = 6;

fn ev(kind: u8, v: T) -> T {
    T(vec![(0, F::U8(kind)), (1, F::T(v))])
}
fn int(i: i64) -> T {
    ev(2, T(vec![(0, F::I64(i))]))
}
fn boolean(b: bool) -> T {
    ev(3, T(vec![(0, F::Bool(b))]))
}
fn tensor(sizes: Vec<i32>, buffer: u32, alloc: Option<(u32, u32)>) -> T {
    typed_tensor(FLOAT, sizes, buffer, alloc)
}
fn typed_tensor(dtype: i8, sizes: Vec<i32>, buffer: u32, alloc: Option<(u32, u32)>) -> T {
    let mut f = vec![
        (0, F::I8(dtype)),
        (2, F::I32s(sizes.clone())),
        (3, F::Bytes((0..sizes.len() as u8).collect())),
        (5, F::U32(buffer)),
    ];
    if let Some((mem, off)) = alloc {
        f.push((6, F::T(T(vec![(0, F::U32(mem)), (1, F::U32(off))]))));
    }
    ev(5, T(f))
}
fn kernel(op: i32, args: Vec<i32>) -> T {
    T(vec![
        (0, F::U8(1)),
        (1, F::T(T(vec![(0, F::I32(op)), (1, F::I32s(args))]))),
    ])
}
fn mov(from: i32, to: i32) -> T {
    T(vec![
        (0, F::U8(3)),
        (1, F::T(T(vec![(0, F::I32(from)), (1, F::I32(to))]))),
    ])
}
fn jump_false(cond: i32, dest: i32) -> T {
    T(vec![
        (0, F::U8(4)),
        (1, F::T(T(vec![(0, F::I32(cond)), (1, F::I32(dest))]))),
    ])
}
fn free(v: i32) -> T {
    T(vec![(0, F::U8(5)), (1, F::T(T(vec![(0, F::I32(v))])))])
}
fn op(name: &'static str, overload: &'static str) -> T {
    T(vec![(0, F::Str(name)), (1, F::Str(overload))])
}
#[allow(clippy::too_many_arguments)]
fn plan(
    name: &'static str,
    values: Vec<T>,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    instructions: Vec<T>,
    ops: Vec<T>,
    buffers: Vec<i64>,
) -> T {
    T(vec![
        (0, F::Str(name)),
        (2, F::Ts(values)),
        (3, F::I32s(inputs)),
        (4, F::I32s(outputs)),
        (5, F::Ts(vec![T(vec![(2, F::Ts(instructions))])])),
        (6, F::Ts(ops)),
        (8, F::I64s(buffers)),
    ])
}
fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// forward(x f32[1,3]) = linear(x, W, b) with W and b inline in `constant_buffer`, no header.
fn linear_program(op_name: &'static str) -> Vec<u8> {
    let w = [1.0f32, 2.0, 3.0, -1.0, 0.5, 0.25];
    let b = [0.5f32, -0.5];
    let forward = plan(
        "forward",
        vec![
            tensor(vec![1, 3], 0, None),
            tensor(vec![2, 3], 1, None),
            tensor(vec![2], 2, None),
            tensor(vec![1, 2], 0, Some((1, 0))),
        ],
        vec![0],
        vec![3],
        vec![kernel(0, vec![0, 1, 2, 3, 3])],
        vec![op(op_name, "out")],
        vec![0, 8],
    );
    let meta = plan(
        "get_answer",
        vec![int(42)],
        vec![],
        vec![0],
        vec![],
        vec![],
        vec![0],
    );
    let root = T(vec![
        (0, F::U32(0)),
        (1, F::Ts(vec![forward, meta])),
        (
            2,
            F::Ts(vec![
                T(vec![(0, F::Bytes(vec![]))]),
                T(vec![(0, F::Bytes(f32_bytes(&w)))]),
                T(vec![(0, F::Bytes(f32_bytes(&b)))]),
            ]),
        ),
    ]);
    finish(&root, b"ET12", 0)
}

#[test]
fn headerless_program_with_inline_constants() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("linear.pte");
    std::fs::write(&p, linear_program("aten::linear")).unwrap();
    for mode in common::MODES {
        let mut m = Module::from_path(&p, &[], mode).unwrap();
        assert!(m.program().header.is_none());
        assert_eq!(m.method_names().unwrap(), ["forward", "get_answer"]);
        assert_eq!(m.get("get_answer").unwrap(), EValue::Int(42));
        let x = Tensor::from_f32(&[1, 3], &[1.0, 1.0, 2.0]);
        let out = m.execute("forward", &[EValue::Tensor(x)]).unwrap();
        let t = out[0].as_tensor().unwrap();
        assert_eq!(t.sizes, [1, 2]);
        assert_eq!(t.to_f32(), [1.0 + 2.0 + 6.0 + 0.5, -1.0 + 0.5 + 0.5 - 0.5]);
    }
    let s = lmrun_pte::inspect_pte(&p).unwrap();
    assert_eq!(s.constant_buffer_entries_inline, 3);
    assert!(s.to_text().contains("deprecated"));
}

#[test]
fn unknown_operator_is_reported_at_method_load() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.pte");
    std::fs::write(&p, linear_program("aten::frobnicate")).unwrap();
    let mut m = Module::from_path(&p, &[], LoadMode::File).unwrap();
    let e = m.load_method("forward").unwrap_err();
    assert!(
        matches!(&e, PteError::OperatorMissing { operator, .. } if operator == "aten::frobnicate.out"),
        "{e}"
    );
    assert!(e.to_string().contains("aten::frobnicate.out"));
    let s = lmrun_pte::inspect_pte(&p).unwrap();
    assert_eq!(s.methods[0].missing_operators, ["aten::frobnicate.out"]);
}

/// A stateful program with an `eh00` header and a mutable-data segment:
/// forward(x f32[2]): tmp = s + x; s.copy_(tmp); (skipped: tmp = tmp + tmp); out = tmp.
fn stateful_program() -> Vec<u8> {
    let forward = plan(
        "forward",
        vec![
            tensor(vec![2], 0, None),          // 0 x
            tensor(vec![2], 1, Some((1, 0))),  // 1 s, initial value in the mutable segment
            int(1),                            // 2 alpha
            tensor(vec![2], 0, Some((1, 16))), // 3 tmp
            boolean(false),                    // 4
            tensor(vec![2], 0, Some((1, 32))), // 5 out
        ],
        vec![0],
        vec![5],
        vec![
            kernel(0, vec![1, 0, 2, 3, 3]),
            kernel(1, vec![1, 3, 4, 1]),
            jump_false(4, 4),
            kernel(0, vec![3, 3, 2, 3, 3]),
            mov(3, 5),
            free(0),
        ],
        vec![op("aten::add", "out"), op("aten::copy_", "")],
        vec![0, 48],
    );
    let seg = f32_bytes(&[10.0, 20.0]);
    let root = T(vec![
        (1, F::Ts(vec![forward])),
        (
            4,
            F::Ts(vec![T(vec![(0, F::U64(0)), (1, F::U64(seg.len() as u64))])]),
        ),
        (
            6,
            F::Ts(vec![T(vec![(0, F::U32(0)), (1, F::U64s(vec![0, 0]))])]),
        ),
    ]);
    let mut buf = finish(&root, b"ET12", 32);
    let program_size = buf.len() as u64;
    let base = program_size.div_ceil(128) * 128;
    buf[8..12].copy_from_slice(b"eh00");
    buf[12..16].copy_from_slice(&32u32.to_le_bytes());
    buf[16..24].copy_from_slice(&program_size.to_le_bytes());
    buf[24..32].copy_from_slice(&base.to_le_bytes());
    buf[32..40].copy_from_slice(&(seg.len() as u64).to_le_bytes());
    buf.resize(base as usize, 0);
    buf.extend_from_slice(&seg);
    buf
}

#[test]
fn mutable_segment_state_persists_across_executes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state.pte");
    std::fs::write(&p, stateful_program()).unwrap();
    for mode in common::MODES {
        let mut m = Module::from_path(&p, &[], mode).unwrap();
        assert!(m.program().header.is_some());
        let x = || EValue::Tensor(Tensor::from_f32(&[2], &[1.0, 2.0]));
        let run = |m: &mut Module| {
            m.execute("forward", &[x()]).unwrap()[0]
                .as_tensor()
                .unwrap()
                .to_f32()
        };
        assert_eq!(run(&mut m), [11.0, 22.0]);
        assert_eq!(run(&mut m), [12.0, 24.0]);
        assert!(m.unload_method("forward"));
        assert_eq!(
            run(&mut m),
            [11.0, 22.0],
            "reloading restores the initial value"
        );
        let meta = m.method_meta("forward").unwrap();
        assert_eq!(meta.planned_buffer_sizes, [48]);
        assert_eq!(meta.input_kinds, ["Tensor"]);
        // the input was freed by the Free instruction: running without it fails cleanly
        assert!(m.execute("forward", &[]).is_err());
    }
}

#[test]
fn endless_jump_loop_is_an_error() {
    let forward = plan(
        "forward",
        vec![boolean(false)],
        vec![],
        vec![0],
        vec![jump_false(0, 0)],
        vec![],
        vec![0],
    );
    let root = T(vec![(1, F::Ts(vec![forward]))]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("loop.pte");
    std::fs::write(&p, finish(&root, b"ET12", 0)).unwrap();
    let mut m = Module::from_path(&p, &[], LoadMode::File).unwrap();
    let e = m.execute("forward", &[]).unwrap_err();
    assert!(e.to_string().contains("budget"), "{e}");
}

/// forward(x bf16[1,4]) = linear(x, W bf16[2,4]) -> bf16[1,2], weights in the constant buffer.
#[test]
fn bf16_linear_program() {
    const BF16: i8 = 15;
    let bf = |v: &[f32]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
            .collect()
    };
    let forward = plan(
        "forward",
        vec![
            typed_tensor(BF16, vec![1, 4], 0, None),
            typed_tensor(BF16, vec![2, 4], 1, None),
            ev(1, T(vec![])),
            typed_tensor(BF16, vec![1, 2], 0, Some((1, 0))),
        ],
        vec![0],
        vec![3],
        vec![kernel(0, vec![0, 1, 2, 3, 3])],
        vec![op("aten::linear", "out")],
        vec![0, 4],
    );
    let root = T(vec![
        (1, F::Ts(vec![forward])),
        (
            2,
            F::Ts(vec![
                T(vec![(0, F::Bytes(vec![]))]),
                T(vec![(
                    0,
                    F::Bytes(bf(&[1.0, 2.0, 0.5, -1.0, 0.25, 0.25, 4.0, 8.0])),
                )]),
            ]),
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bf16.pte");
    std::fs::write(&p, finish(&root, b"ET12", 0)).unwrap();
    let mut m = Module::from_path(&p, &[], LoadMode::Mmap).unwrap();
    let x = Tensor {
        dtype: lmrun_pte::ScalarType::BFloat16,
        sizes: vec![1, 4],
        data: bf(&[1.0, 1.0, 2.0, 0.5]),
    };
    let out = m.execute("forward", &[EValue::Tensor(x)]).unwrap();
    let t = out[0].as_tensor().unwrap();
    assert_eq!(t.dtype, lmrun_pte::ScalarType::BFloat16);
    assert_eq!(t.to_f32(), [1.0 + 2.0 + 1.0 - 0.5, 0.25 + 0.25 + 8.0 + 4.0]);
}

#[test]
fn module_from_in_memory_loaders() {
    let bytes = std::fs::read(common::data("tiny_xnnpack_fp32_ptd.pte")).unwrap();
    let data = std::fs::read(common::data("tiny_xnnpack_fp32_ptd.ptd")).unwrap();
    let mut m = Module::from_loaders(
        std::path::Path::new("<memory>.pte"),
        Box::new(lmrun_loader::BufferLoader::new(bytes)),
        vec![(
            "<memory>.ptd".into(),
            Box::new(lmrun_loader::BufferLoader::new(data)) as Box<dyn lmrun_loader::DataLoader>,
        )],
    )
    .unwrap();
    let (ids, _) = common::greedy(&mut m, 8);
    assert_eq!(ids, common::reference_ids("xnnpack_fp32_ptd")[..8]);
}

/// Write the hand-built programs as fuzzing seeds (`LMRUN_PTE_SEED_DIR=dir cargo test -p
/// lmrun-pte --test handmade -- --ignored write_fuzz_seeds`).
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let Ok(dir) = std::env::var("LMRUN_PTE_SEED_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("linear.pte"), linear_program("aten::linear")).unwrap();
    std::fs::write(dir.join("state.pte"), stateful_program()).unwrap();
}
