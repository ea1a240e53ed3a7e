//! The `XnnpackBackend` delegate, for the node kinds LLM exports lower to XNNPACK. At method
//! load a delegate blob is parsed (optional `XH00` header, then the `XN00`/`XN01` `XNNGraph`
//! flatbuffer of `backends/xnnpack/serialization/runtime_schema.fbs`), every constant is fetched
//! (named data in the `.pte` or a `.ptd`, or the blob's own constant area) and kept as a
//! read-only view, and every node is checked: an unsupported kind is an error at load. At
//! execute the graph runs node by node with shapes recomputed from the actual inputs (dynamic
//! shapes), emulating XNNPACK's numerics: fp32 FullyConnected, dynamic int8 quantization of
//! activations (`Convert` fp32 → qdint8, per-row asymmetric like XNNPACK's qd8 params) and
//! int8 × int4/int8 weight FullyConnected with per-channel or blockwise (bf16) scales.

use std::borrow::Cow;
use std::collections::BTreeMap;

use half::bf16;
use lmrun_loader::Buffer;

use crate::fb::{self, Table};
use crate::kernels::{self, Data};
use crate::method::Ctx;
use crate::module::ExternalData;
use crate::value::ScalarType;

/// Why a delegate failed to initialise.
pub(crate) enum XnnInitError {
    /// Named data that no file provides.
    Missing(String),
    /// Anything else.
    Other(String),
}

impl From<fb::FbError> for XnnInitError {
    fn from(e: fb::FbError) -> Self {
        XnnInitError::Other(format!("corrupt XNNGraph: {e}"))
    }
}

type IResult<T> = Result<T, XnnInitError>;

fn other<T>(s: impl Into<String>) -> IResult<T> {
    Err(XnnInitError::Other(s.into()))
}

const FLAG_EXTERNAL_INPUT: u32 = 1;
const FLAG_EXTERNAL_OUTPUT: u32 = 2;
const FLAG_TRANSPOSE_WEIGHTS: u32 = 1;

// XNNDatatype codes.
const DT_FP32: i16 = 1;
const DT_QINT8: i16 = 3;
const DT_QCINT8: i16 = 6;
const DT_QCINT4: i16 = 8;
const DT_QDINT8: i16 = 9;
const DT_QBINT4: i16 = 10;
const DT_INT32: i16 = 12;

/// Names of the `XNodeUnion` members, by discriminant - 1.
const NODE_NAMES: [&str; 47] = [
    "Add",
    "FullyConnected",
    "Softmax",
    "Sigmoid",
    "StaticTranspose",
    "Clamp",
    "Conv2d",
    "Div",
    "StaticResizeBilinear2D",
    "StaticConstantPad",
    "AvgPooling2d",
    "Minimum",
    "DepthwiseConv2d",
    "MaxPooling2d",
    "Multiply",
    "Subtract",
    "Floor",
    "Convert",
    "GlobalAvgPooling2d",
    "StaticReshape",
    "ArgMaxPooling2d",
    "SquareRoot",
    "Ceiling",
    "Hardswish",
    "LeakyReLU",
    "Maximum",
    "Negate",
    "Square",
    "ELU",
    "Abs",
    "PReLU",
    "Concatenate2",
    "Concatenate3",
    "Concatenate4",
    "StaticSlice",
    "ScaledDotProductAttention",
    "BatchMatrixMultiply",
    "Concatenate5",
    "ConvTranspose2d",
    "ReciprocalSquareRoot",
    "Log",
    "Gelu",
    "Tanh",
    "Exp",
    "Sin",
    "Cos",
    "Copy",
];

fn node_name(kind: u8) -> String {
    (kind as usize)
        .checked_sub(1)
        .and_then(|i| NODE_NAMES.get(i))
        .map_or_else(|| format!("<node kind {kind}>"), |s| (*s).to_string())
}

/// Quantization of a value.
#[derive(Clone)]
enum Quant {
    None,
    PerTensor {
        scale: f32,
        zero_point: i32,
    },
    /// Per output channel scales (f32 bytes).
    PerChannel {
        scales: Vec<f32>,
    },
    /// Dynamic per-row quantization.
    Dynamic,
    /// Blockwise scales, bf16 bytes, [channels, blocks].
    Blockwise {
        scales: Buffer,
        block: usize,
    },
}

#[derive(Clone)]
struct ValueDef {
    dtype: i16,
    dims: Vec<usize>,
    data: Option<Buffer>,
    quant: Quant,
}

#[derive(Clone, Copy, Debug)]
enum BinKind {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
}

#[derive(Clone, Copy, Debug)]
enum UnKind {
    Sigmoid,
    Rsqrt,
    Sqrt,
    Neg,
    Abs,
    Square,
    Exp,
    Log,
    Tanh,
    Clamp,
    Copy,
}

enum Node {
    Binary(BinKind, u32, u32, u32, (f32, f32)),
    Unary(UnKind, u32, u32, (f32, f32)),
    FullyConnected {
        input: u32,
        filter: u32,
        bias: Option<u32>,
        out: u32,
        flags: u32,
        minmax: (f32, f32),
    },
    Convert(u32, u32),
    Reshape(u32, u32, Vec<usize>),
    Concat(usize, Vec<u32>, u32),
    Transpose(u32, u32, Vec<usize>),
    Slice(u32, u32, Vec<usize>, Vec<usize>),
    Softmax(u32, u32),
    Bmm(u32, u32, u32),
}

/// A runtime value inside the graph.
#[derive(Clone)]
enum XVal {
    F32(Vec<usize>, Vec<f32>),
    /// Dynamically quantized int8 rows with (scale, zero point) per row.
    Qd8(Vec<usize>, Vec<i8>, Vec<(f32, i32)>),
}

impl XVal {
    fn dims(&self) -> &[usize] {
        match self {
            XVal::F32(d, _) | XVal::Qd8(d, _, _) => d,
        }
    }
}

/// An initialised XNNPACK graph.
pub(crate) struct XnnDelegate {
    values: BTreeMap<u32, ValueDef>,
    nodes: Vec<Node>,
    /// (external id, value id), sorted by external id.
    inputs: Vec<(u32, u32)>,
    outputs: Vec<(u32, u32)>,
}

struct Blob<'a> {
    fb: &'a [u8],
    constants: Option<Buffer>,
}

fn parse_blob(blob: &Buffer) -> IResult<Blob<'_>> {
    if blob.len() >= 30 && &blob[4..8] == b"XH00" {
        let u32at = |p: usize| {
            u32::from_le_bytes([blob[p], blob[p + 1], blob[p + 2], blob[p + 3]]) as usize
        };
        let fo = u32at(10);
        let fs = u32at(14);
        let co = u32at(18);
        let mut cs8 = [0u8; 8];
        cs8.copy_from_slice(&blob[22..30]);
        let cs = usize::try_from(u64::from_le_bytes(cs8)).unwrap_or(usize::MAX);
        let fb = fo
            .checked_add(fs)
            .and_then(|e| blob.get(fo..e))
            .ok_or_else(|| XnnInitError::Other("XH00 header: flatbuffer out of range".into()))?;
        let constants = if cs > 0 {
            Some(
                co.checked_add(cs)
                    .and_then(|e| blob.slice(co..e))
                    .ok_or_else(|| {
                        XnnInitError::Other("XH00 header: constant data out of range".into())
                    })?,
            )
        } else {
            None
        };
        Ok(Blob { fb, constants })
    } else {
        Ok(Blob {
            fb: blob,
            constants: None,
        })
    }
}

fn graph_root(fb: &[u8]) -> IResult<Table<'_>> {
    if fb.len() < 8 || (&fb[4..8] != b"XN00" && &fb[4..8] != b"XN01") {
        return other("XNNPACK blob: identifier is not XN00/XN01");
    }
    Ok(fb::root(fb, None)?)
}

/// Node kinds and counts of an XNNPACK blob, for `inspect`.
pub(crate) fn node_kinds(blob: &Buffer) -> Option<BTreeMap<String, usize>> {
    let b = parse_blob(blob).ok()?;
    let root = graph_root(b.fb).ok()?;
    let mut m = BTreeMap::new();
    for n in root.tables(1).ok()? {
        *m.entry(node_name(n.u8(0, 0).ok()?)).or_insert(0) += 1;
    }
    Some(m)
}

fn minmax(n: &Table<'_>) -> IResult<(f32, f32)> {
    Ok(match n.table(3)? {
        Some(t) => (t.f32(0, f32::NEG_INFINITY)?, t.f32(1, f32::INFINITY)?),
        None => (f32::NEG_INFINITY, f32::INFINITY),
    })
}

impl XnnDelegate {
    /// Parse and check a delegate blob, fetching its constants.
    pub fn init(blob: &Buffer, ext: &ExternalData<'_>) -> IResult<Self> {
        let b = parse_blob(blob)?;
        let root = graph_root(b.fb)?;
        // constant_data table (index 0 reserved).
        let cdata = root.tables(8)?;
        let legacy = root.tables(6)?;
        let fetch = |idx: u32| -> IResult<Option<Buffer>> {
            if idx == 0 {
                return Ok(None);
            }
            if let Some(cd) = cdata.get(idx as usize) {
                let size = usize::try_from(cd.u64(1, 0)?).unwrap_or(usize::MAX);
                if let Some(key) = cd.str(2)? {
                    let buf = ext
                        .get(key)
                        .map_err(|e| XnnInitError::Other(e.to_string()))?
                        .ok_or_else(|| XnnInitError::Missing(key.to_string()))?;
                    return Ok(Some(buf));
                }
                let off = usize::try_from(cd.u64(0, 0)?).unwrap_or(usize::MAX);
                let c = b
                    .constants
                    .as_ref()
                    .ok_or_else(|| XnnInitError::Other("constant data without a header".into()))?;
                return off
                    .checked_add(size)
                    .and_then(|e| c.slice(off..e))
                    .map(Some)
                    .ok_or_else(|| XnnInitError::Other("constant data out of range".into()));
            }
            if let Some(lb) = legacy.get(idx as usize) {
                if let Some(r) = lb.bytes_range(0)? {
                    let start = b.fb.as_ptr() as usize - blob.as_ptr() as usize;
                    return Ok(blob.slice(start + r.start..start + r.end));
                }
            }
            other(format!("constant buffer index {idx} out of range"))
        };
        let mut values = BTreeMap::new();
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for v in root.tables(2)? {
            let kind = v.u8(0, 0)?;
            let Some(u) = v.table(1)? else {
                return other("XValue without a value");
            };
            let (t, quant) = match kind {
                1 => (u, None),
                2 => {
                    let t = u.table(0)?.ok_or_else(|| {
                        XnnInitError::Other("quantized value without tensor".into())
                    })?;
                    (t, Some((u.u8(1, 0)?, u.table(2)?)))
                }
                k => return other(format!("unknown XValue kind {k}")),
            };
            let dtype = t.i16(0, 0)?;
            let dims: Vec<usize> = t.u32_list(2)?.into_iter().map(|d| d as usize).collect();
            let data = fetch(t.u32(3, 0)?)?;
            let external_id = t.u32(4, 0)?;
            let flags = t.u32(5, 0)?;
            let id = t.u32(6, 0)?;
            if t.i16(7, 0)? != 0 {
                return other("legacy dq_datatype values are not supported");
            }
            let quant = match quant {
                None => Quant::None,
                Some((qk, qt)) => {
                    let qt =
                        qt.ok_or_else(|| XnnInitError::Other("missing quant params".into()))?;
                    match qk {
                        1 => {
                            let sbi = qt.u32(2, 0)?;
                            let scales = if sbi != 0 {
                                let b = fetch(sbi)?.unwrap_or_default();
                                kernels::bytes_to_f32(ScalarType::Float, &b)
                            } else {
                                qt.f32_list(0)?
                            };
                            Quant::PerChannel { scales }
                        }
                        2 => Quant::PerTensor {
                            scale: qt.f32(0, 1.0)?,
                            zero_point: qt.i32(1, 0)?,
                        },
                        3 => Quant::Dynamic,
                        4 => {
                            let block = usize::try_from(qt.i32(2, 0)?).unwrap_or(0);
                            let sbi = qt.u32(4, 0)?;
                            let scales = if sbi != 0 {
                                fetch(sbi)?.unwrap_or_default()
                            } else {
                                // fp32 scales in the flatbuffer: convert to bf16 like XNNPACK.
                                let f = qt.f32_list(0)?;
                                let v: Vec<u8> = f
                                    .iter()
                                    .flat_map(|&x| {
                                        let bits = (x * 1.003_891_1_f32).to_bits();
                                        ((bits >> 16) as u16).to_le_bytes()
                                    })
                                    .collect();
                                Buffer::from_vec(v)
                            };
                            if block == 0 || dims.len() != 2 || dims[1] % block != 0 {
                                return other(format!(
                                    "blockwise weights {dims:?} with block size {block}"
                                ));
                            }
                            if scales.len()
                                < dims[0].saturating_mul(dims[1] / block).saturating_mul(2)
                            {
                                return other("blockwise scales too short");
                            }
                            Quant::Blockwise { scales, block }
                        }
                        k => return other(format!("unknown quantization kind {k}")),
                    }
                }
            };
            if let Some(d) = &data {
                let n: usize = kernels::prod(&dims);
                let need = match dtype {
                    DT_FP32 | DT_INT32 => n.saturating_mul(4),
                    DT_QCINT4 | DT_QBINT4 => n.div_ceil(2),
                    _ => n,
                };
                if d.len() < need {
                    return other(format!(
                        "constant value {id}: {} bytes for dims {dims:?} (needs {need})",
                        d.len()
                    ));
                }
            }
            if flags & FLAG_EXTERNAL_INPUT != 0 {
                inputs.push((external_id, id));
            }
            if flags & FLAG_EXTERNAL_OUTPUT != 0 {
                outputs.push((external_id, id));
            }
            values.insert(
                id,
                ValueDef {
                    dtype,
                    dims,
                    data,
                    quant,
                },
            );
        }
        inputs.sort_unstable();
        outputs.sort_unstable();
        let has = |id: u32| -> IResult<u32> {
            if values.contains_key(&id) {
                Ok(id)
            } else {
                other(format!("node refers to undefined value {id}"))
            }
        };
        let mut nodes = Vec::new();
        for n in root.tables(1)? {
            let kind = n.u8(0, 0)?;
            let name = node_name(kind);
            let Some(t) = n.table(1)? else {
                return other(format!("{name} node without parameters"));
            };
            let mm = minmax(&n)?;
            let bin = |k: BinKind| -> IResult<Node> {
                Ok(Node::Binary(
                    k,
                    has(t.u32(0, 0)?)?,
                    has(t.u32(1, 0)?)?,
                    has(t.u32(2, 0)?)?,
                    mm,
                ))
            };
            let un = |k: UnKind| -> IResult<Node> {
                Ok(Node::Unary(k, has(t.u32(0, 0)?)?, has(t.u32(1, 0)?)?, mm))
            };
            let node = match kind {
                1 => bin(BinKind::Add)?,
                8 => bin(BinKind::Div)?,
                12 => bin(BinKind::Min)?,
                15 => bin(BinKind::Mul)?,
                16 => bin(BinKind::Sub)?,
                26 => bin(BinKind::Max)?,
                4 => un(UnKind::Sigmoid)?,
                6 => un(UnKind::Clamp)?,
                22 => un(UnKind::Sqrt)?,
                27 => un(UnKind::Neg)?,
                28 => un(UnKind::Square)?,
                30 => un(UnKind::Abs)?,
                40 => un(UnKind::Rsqrt)?,
                41 => un(UnKind::Log)?,
                43 => un(UnKind::Tanh)?,
                44 => un(UnKind::Exp)?,
                47 => un(UnKind::Copy)?,
                3 => Node::Softmax(has(t.u32(0, 0)?)?, has(t.u32(1, 0)?)?),
                37 => Node::Bmm(has(t.u32(0, 0)?)?, has(t.u32(1, 0)?)?, has(t.u32(2, 0)?)?),
                2 => {
                    let bias = t.u32(2, u32::MAX)?;
                    let filter = has(t.u32(1, 0)?)?;
                    let fv = &values[&filter];
                    if fv.data.is_none() {
                        return other("FullyConnected with a non-constant filter is not supported");
                    }
                    if !matches!(
                        fv.dtype,
                        DT_FP32 | DT_QCINT8 | DT_QCINT4 | DT_QBINT4 | DT_QINT8
                    ) {
                        return other(format!("FullyConnected filter datatype {}", fv.dtype));
                    }
                    if fv.dims.len() != 2 {
                        return other("FullyConnected filter must be 2-D");
                    }
                    Node::FullyConnected {
                        input: has(t.u32(0, 0)?)?,
                        filter,
                        bias: if bias == u32::MAX {
                            None
                        } else {
                            Some(has(bias)?)
                        },
                        out: has(t.u32(3, 0)?)?,
                        flags: t.u32(4, 0)?,
                        minmax: mm,
                    }
                }
                18 => {
                    let (i, o) = (has(t.u32(0, 0)?)?, has(t.u32(1, 0)?)?);
                    let (di, dout) = (values[&i].dtype, values[&o].dtype);
                    if di != DT_FP32 || dout != DT_QDINT8 {
                        return other(format!(
                            "Convert from datatype {di} to {dout} is not supported (only fp32 → qdint8)"
                        ));
                    }
                    Node::Convert(i, o)
                }
                20 => Node::Reshape(
                    has(t.u32(2, 0)?)?,
                    has(t.u32(3, 0)?)?,
                    t.u32_list(1)?.into_iter().map(|d| d as usize).collect(),
                ),
                5 => Node::Transpose(
                    has(t.u32(2, 0)?)?,
                    has(t.u32(3, 0)?)?,
                    t.u32_list(1)?.into_iter().map(|d| d as usize).collect(),
                ),
                35 => Node::Slice(
                    has(t.u32(3, 0)?)?,
                    has(t.u32(4, 0)?)?,
                    t.u32_list(1)?.into_iter().map(|d| d as usize).collect(),
                    t.u32_list(2)?.into_iter().map(|d| d as usize).collect(),
                ),
                32 | 33 | 34 | 38 => {
                    let n_in = match kind {
                        32 => 2,
                        33 => 3,
                        34 => 4,
                        _ => 5,
                    };
                    let ids = [1usize, 2, 3, 4, 7];
                    let mut ins = Vec::new();
                    for &f in ids.iter().take(n_in) {
                        ins.push(has(t.u32(f, 0)?)?);
                    }
                    Node::Concat(t.u32(0, 0)? as usize, ins, has(t.u32(5, 0)?)?)
                }
                _ => {
                    return other(format!(
                        "XNNPACK node kind {name} is not supported by lmrun"
                    ))
                }
            };
            nodes.push(node);
        }
        Ok(XnnDelegate {
            values,
            nodes,
            inputs,
            outputs,
        })
    }

    /// Check the delegate call's argument count against the graph's externals.
    pub fn check_args(&self, n: usize) -> Result<(), String> {
        let need = self
            .inputs
            .iter()
            .chain(&self.outputs)
            .map(|&(e, _)| e as usize + 1)
            .max()
            .unwrap_or(0);
        if n < need {
            return Err(format!(
                "delegate call has {n} arguments, the graph uses external ids up to {}",
                need.saturating_sub(1)
            ));
        }
        Ok(())
    }

    /// Run the graph: read inputs from `args[external_id]`, write outputs likewise.
    pub fn execute(&self, ctx: &mut Ctx, args: &[usize]) -> Result<(), String> {
        let mut vals: BTreeMap<u32, XVal> = BTreeMap::new();
        for &(ext, id) in &self.inputs {
            let a = *args.get(ext as usize).ok_or("argument missing")?;
            let t = kernels::tensor(ctx, a)?;
            if t.dtype != ScalarType::Float {
                return Err(format!(
                    "input {ext}: dtype {:?}, XNNPACK graph expects f32",
                    t.dtype
                ));
            }
            let mut dims = t.sizes.clone();
            let d = kernels::bytes_to_f32(t.dtype, kernels::tensor_bytes(ctx, t)?);
            let def = &self.values[&id];
            if def.dims.len() != dims.len() {
                // A 0-dim tensor is a [1] (or [1, 1, ...]) external value.
                if d.len() == kernels::prod(&def.dims) {
                    dims = def.dims.clone();
                } else {
                    return Err(format!(
                        "input {ext}: rank {} given, graph has {:?}",
                        dims.len(),
                        def.dims
                    ));
                }
            }
            vals.insert(id, XVal::F32(dims, d));
        }
        for (ni, node) in self.nodes.iter().enumerate() {
            self.run_node(ctx, node, &mut vals)
                .map_err(|e| format!("XNNPACK node {ni}: {e}"))?;
        }
        for &(ext, id) in &self.outputs {
            let a = *args.get(ext as usize).ok_or("argument missing")?;
            let v = vals
                .remove(&id)
                .ok_or_else(|| format!("output value {id} was never computed"))?;
            match v {
                XVal::F32(dims, d) => kernels::write(ctx, a, dims, Data::F32(d))?,
                XVal::Qd8(..) => return Err("quantized graph outputs are not supported".into()),
            }
        }
        Ok(())
    }

    /// A value as f32: borrowed when computed by an earlier node, decoded when constant.
    fn get_f32<'a>(
        &'a self,
        vals: &'a BTreeMap<u32, XVal>,
        id: u32,
    ) -> Result<(Vec<usize>, Cow<'a, [f32]>), String> {
        if let Some(v) = vals.get(&id) {
            return match v {
                XVal::F32(d, x) => Ok((d.clone(), Cow::Borrowed(x.as_slice()))),
                XVal::Qd8(..) => Err(format!("value {id} is quantized where f32 is needed")),
            };
        }
        let def = self
            .values
            .get(&id)
            .ok_or_else(|| format!("value {id} undefined"))?;
        match (&def.data, def.dtype) {
            (Some(b), DT_FP32) => Ok((
                def.dims.clone(),
                Cow::Owned(kernels::bytes_to_f32(ScalarType::Float, b)),
            )),
            (Some(b), DT_INT32) => Ok((
                def.dims.clone(),
                Cow::Owned(kernels::bytes_to_f32(ScalarType::Int, b)),
            )),
            (Some(_), dt) => Err(format!("constant value {id} of datatype {dt} used as f32")),
            (None, _) => Err(format!("value {id} used before it was computed")),
        }
    }

    fn run_node(
        &self,
        ctx: &mut Ctx,
        node: &Node,
        vals: &mut BTreeMap<u32, XVal>,
    ) -> Result<(), String> {
        match node {
            Node::Binary(k, a, b, o, mm) => {
                let (da, xa) = self.get_f32(vals, *a)?;
                let (db, xb) = self.get_f32(vals, *b)?;
                let shape = kernels::broadcast_shape(&da, &db)?;
                let f = |p: f32, q: f32| -> f32 {
                    let r = match k {
                        BinKind::Add => p + q,
                        BinKind::Sub => p - q,
                        BinKind::Mul => p * q,
                        BinKind::Div => p / q,
                        BinKind::Min => p.min(q),
                        BinKind::Max => p.max(q),
                    };
                    clamp(r, *mm)
                };
                let out = if da == shape && db == shape {
                    xa.iter().zip(xb.iter()).map(|(&p, &q)| f(p, q)).collect()
                } else {
                    let (ma, mb) = (
                        kernels::broadcast_map(&da, &shape)?,
                        kernels::broadcast_map(&db, &shape)?,
                    );
                    ma.iter().zip(&mb).map(|(&i, &j)| f(xa[i], xb[j])).collect()
                };
                vals.insert(*o, XVal::F32(shape, out));
            }
            Node::Unary(k, a, o, mm) => {
                let (d, x) = self.get_f32(vals, *a)?;
                let mut x = x.into_owned();
                for v in &mut x {
                    let r = match k {
                        UnKind::Sigmoid => 1.0 / (1.0 + (-*v).exp()),
                        UnKind::Rsqrt => 1.0 / v.sqrt(),
                        UnKind::Sqrt => v.sqrt(),
                        UnKind::Neg => -*v,
                        UnKind::Abs => v.abs(),
                        UnKind::Square => *v * *v,
                        UnKind::Exp => v.exp(),
                        UnKind::Log => v.ln(),
                        UnKind::Tanh => v.tanh(),
                        UnKind::Clamp | UnKind::Copy => *v,
                    };
                    *v = clamp(r, *mm);
                }
                vals.insert(*o, XVal::F32(d, x));
            }
            Node::Softmax(a, o) => {
                let (d, x) = self.get_f32(vals, *a)?;
                let mut x = x.into_owned();
                let n = d.last().copied().unwrap_or(1).max(1);
                for row in x.chunks_mut(n) {
                    let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut s = 0f32;
                    for v in row.iter_mut() {
                        *v = (*v - mx).exp();
                        s += *v;
                    }
                    for v in row.iter_mut() {
                        *v /= s;
                    }
                }
                vals.insert(*o, XVal::F32(d, x));
            }
            Node::Bmm(a, b, o) => {
                let (da, xa) = self.get_f32(vals, *a)?;
                let (db, xb) = self.get_f32(vals, *b)?;
                if da.len() < 2 || da.len() != db.len() || da[..da.len() - 2] != db[..db.len() - 2]
                {
                    return Err(format!("BatchMatrixMultiply shapes {da:?} x {db:?}"));
                }
                let r = da.len();
                let (n, k, m) = (da[r - 2], da[r - 1], db[r - 1]);
                if db[r - 2] != k {
                    return Err(format!("BatchMatrixMultiply shapes {da:?} x {db:?}"));
                }
                let batch: usize = kernels::prod(&da[..r - 2]);
                kernels::check_numel("BatchMatrixMultiply", &[batch, n, m])?;
                let mut out = vec![0f32; batch * n * m];
                for bi in 0..batch {
                    for i in 0..n {
                        for j in 0..m {
                            let mut s = 0f32;
                            for kk in 0..k {
                                s += xa[(bi * n + i) * k + kk] * xb[(bi * k + kk) * m + j];
                            }
                            out[(bi * n + i) * m + j] = s;
                        }
                    }
                }
                let mut od = da.clone();
                od[r - 1] = m;
                vals.insert(*o, XVal::F32(od, out));
            }
            Node::Convert(a, o) => {
                let (d, x) = self.get_f32(vals, *a)?;
                let k = d.last().copied().unwrap_or(1).max(1);
                let mut q = Vec::with_capacity(x.len());
                let mut params = Vec::new();
                for row in x.chunks(k) {
                    let (scale, mult, zp) = qd8_params(row);
                    let (lo, hi) = ((-128 - zp) as f32, (127 - zp) as f32);
                    for &v in row {
                        let r = (v * mult).clamp(lo, hi).round_ties_even() as i32 + zp;
                        q.push(r.clamp(-128, 127) as i8);
                    }
                    params.push((scale, zp));
                }
                vals.insert(*o, XVal::Qd8(d, q, params));
            }
            Node::FullyConnected {
                input,
                filter,
                bias,
                out,
                flags,
                minmax,
            } => {
                let fdef = &self.values[filter];
                let w = fdef.data.as_ref().ok_or("filter has no data")?;
                let (rows, cols) = if flags & FLAG_TRANSPOSE_WEIGHTS != 0 {
                    (fdef.dims[1], fdef.dims[0])
                } else {
                    (fdef.dims[0], fdef.dims[1])
                };
                let in_dims = vals
                    .get(input)
                    .map(|v| v.dims().to_vec())
                    .ok_or("FullyConnected input not computed")?;
                if in_dims.last() != Some(&cols) {
                    return Err(format!(
                        "FullyConnected input {in_dims:?} with {cols} input channels"
                    ));
                }
                let ntok = kernels::prod(&in_dims) / cols.max(1);
                kernels::check_numel("FullyConnected", &[ntok, rows])?;
                let mut o = vec![0f32; ntok * rows];
                match (&vals[input], fdef.dtype) {
                    (XVal::F32(_, x), DT_FP32) => {
                        if flags & FLAG_TRANSPOSE_WEIGHTS != 0 {
                            let wf = kernels::bytes_to_f32(ScalarType::Float, w);
                            if wf.len() < rows.saturating_mul(cols) {
                                return Err("filter data too short".into());
                            }
                            for t in 0..ntok {
                                for r in 0..rows {
                                    let mut s = 0f32;
                                    for c in 0..cols {
                                        s += x[t * cols + c] * wf[c * rows + r];
                                    }
                                    o[t * rows + r] = s;
                                }
                            }
                        } else {
                            let wbytes = w
                                .get(..rows.saturating_mul(cols).saturating_mul(4))
                                .ok_or("filter data too short")?;
                            let wr = lmrun_kernels::WeightRef::new(
                                lmrun_kernels::QType::F32,
                                wbytes,
                                rows,
                                cols,
                            )
                            .map_err(|e| e.to_string())?;
                            let mut scratch = std::mem::take(&mut ctx.scratch);
                            let r = lmrun_kernels::matmul(
                                &ctx.pool,
                                &wr,
                                x,
                                ntok,
                                &mut o,
                                &mut scratch,
                            );
                            ctx.scratch = scratch;
                            r.map_err(|e| e.to_string())?;
                        }
                    }
                    (XVal::Qd8(_, q, params), dt) => {
                        if flags & FLAG_TRANSPOSE_WEIGHTS != 0 {
                            return Err("transposed quantized weights are not supported".into());
                        }
                        qd8_fully_connected(&ctx.pool, fdef, dt, w, q, params, rows, cols, &mut o)?;
                    }
                    (_, dt) => {
                        return Err(format!(
                            "FullyConnected: f32 input with filter datatype {dt}"
                        ))
                    }
                }
                if let Some(b) = bias {
                    let (_, bv) = self.get_f32(vals, *b)?;
                    if bv.len() != rows {
                        return Err("bias length".into());
                    }
                    for row in o.chunks_mut(rows.max(1)) {
                        for (x, y) in row.iter_mut().zip(bv.iter()) {
                            *x += y;
                        }
                    }
                }
                for v in &mut o {
                    *v = clamp(*v, *minmax);
                }
                let mut od = in_dims;
                if let Some(l) = od.last_mut() {
                    *l = rows;
                }
                vals.insert(*out, XVal::F32(od, o));
            }
            Node::Reshape(a, o, shape) => {
                let (d, x) = self.get_f32(vals, *a)?;
                let n: usize = kernels::prod(&d);
                let nz: Vec<usize> = shape.iter().copied().filter(|&s| s != 0).collect();
                let known = kernels::prod(&nz);
                let zeros = shape.iter().filter(|&&s| s == 0).count();
                let new: Vec<usize> = if zeros == 0 {
                    shape.clone()
                } else if zeros == 1 && known > 0 && n % known == 0 {
                    shape
                        .iter()
                        .map(|&s| if s == 0 { n / known } else { s })
                        .collect()
                } else {
                    return Err(format!("cannot reshape {d:?} to {shape:?}"));
                };
                if kernels::prod(&new) != n {
                    return Err(format!("cannot reshape {d:?} to {shape:?}"));
                }
                let x = x.into_owned();
                vals.insert(*o, XVal::F32(new, x));
            }
            Node::Concat(axis, ins, o) => {
                let mut parts = Vec::new();
                for i in ins {
                    parts.push(self.get_f32(vals, *i)?);
                }
                let (d0, _) = &parts[0];
                if *axis >= d0.len() {
                    return Err(format!("concat axis {axis} for rank {}", d0.len()));
                }
                let mut nd = d0.clone();
                nd[*axis] = 0;
                for (d, _) in &parts {
                    if d.len() != d0.len()
                        || d.iter().enumerate().any(|(i, &x)| i != *axis && x != d0[i])
                    {
                        return Err(format!("concat shapes {d0:?} and {d:?}"));
                    }
                    nd[*axis] += d[*axis];
                }
                let outer: usize = kernels::prod(&d0[..*axis]);
                let inner: usize = kernels::prod(&d0[axis + 1..]);
                let mut out = Vec::with_capacity(kernels::prod(&nd));
                for oi in 0..outer {
                    for (d, x) in &parts {
                        let w = d[*axis] * inner;
                        out.extend_from_slice(&x[oi * w..(oi + 1) * w]);
                    }
                }
                vals.insert(*o, XVal::F32(nd, out));
            }
            Node::Transpose(a, o, perm) => {
                let (d, x) = self.get_f32(vals, *a)?;
                let mut seen = vec![false; d.len()];
                if perm.len() != d.len()
                    || perm
                        .iter()
                        .any(|&p| p >= d.len() || std::mem::replace(&mut seen[p], true))
                {
                    return Err(format!("transpose {d:?} by {perm:?}"));
                }
                let nd: Vec<usize> = perm.iter().map(|&p| d[p]).collect();
                let mut st = vec![1usize; d.len()];
                for i in (0..d.len().saturating_sub(1)).rev() {
                    st[i] = st[i + 1] * d[i + 1];
                }
                let n = x.len();
                let mut out = Vec::with_capacity(n);
                let mut idx = vec![0usize; nd.len()];
                for _ in 0..n {
                    let lin: usize = idx.iter().zip(perm).map(|(&i, &p)| i * st[p]).sum();
                    out.push(x[lin]);
                    for k in (0..nd.len()).rev() {
                        idx[k] += 1;
                        if idx[k] < nd[k] {
                            break;
                        }
                        idx[k] = 0;
                    }
                }
                vals.insert(*o, XVal::F32(nd, out));
            }
            Node::Slice(a, o, offs, sizes) => {
                let (d, x) = self.get_f32(vals, *a)?;
                if offs.len() != d.len() || sizes.len() != d.len() {
                    return Err("slice rank".into());
                }
                let nd: Vec<usize> = (0..d.len())
                    .map(|i| {
                        if sizes[i] == 0 {
                            d[i].saturating_sub(offs[i])
                        } else {
                            sizes[i]
                        }
                    })
                    .collect();
                if (0..d.len()).any(|i| offs[i] + nd[i] > d[i]) {
                    return Err(format!("slice {offs:?}+{nd:?} out of {d:?}"));
                }
                let mut st = vec![1usize; d.len()];
                for i in (0..d.len().saturating_sub(1)).rev() {
                    st[i] = st[i + 1] * d[i + 1];
                }
                let n: usize = kernels::prod(&nd);
                let mut out = Vec::with_capacity(n);
                let mut idx = vec![0usize; nd.len()];
                for _ in 0..n {
                    let lin: usize = (0..nd.len()).map(|i| (idx[i] + offs[i]) * st[i]).sum();
                    out.push(x[lin]);
                    for k in (0..nd.len()).rev() {
                        idx[k] += 1;
                        if idx[k] < nd[k] {
                            break;
                        }
                        idx[k] = 0;
                    }
                }
                vals.insert(*o, XVal::F32(nd, out));
            }
        }
        Ok(())
    }
}

fn clamp(v: f32, (lo, hi): (f32, f32)) -> f32 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// XNNPACK's asymmetric per-row int8 parameters (`xnn_f32_qd8_asymmetric_quantization_params`,
/// all in f32 exactly as XNNPACK rounds them): (dequantization scale, quantization multiplier,
/// zero point).
fn qd8_params(row: &[f32]) -> (f32, f32, i32) {
    let (mut mn, mut mx) = (0f32, 0f32);
    for &v in row {
        mn = mn.min(v);
        mx = mx.max(v);
    }
    let (qmin, qmax) = (-128f32, 127f32);
    let mult = if mn == mx {
        1.0
    } else {
        (qmax - qmin) / (mx - mn)
    };
    let dmin = mn * mult;
    let dmax = mx * mult;
    let zp = if (qmin + dmin) + (qmax + dmax) > 0.0 {
        qmin - dmin
    } else {
        qmax - dmax
    };
    let zp = zp.clamp(qmin, qmax).round_ties_even() as i32;
    let deq = 1.0 / mult;
    (deq, 1.0 / deq, zp)
}

/// Dot product of zero-point-corrected int8 activations (split into even and odd columns, as
/// i16) with packed int4 weights (low nibble = even column, stored with +8), as XNNPACK's
/// qb4w/qc4w kernels compute it: exact in i32. The even/odd split lets the loop vectorize.
fn dot_q4(xe: &[i16], xo: &[i16], w: &[u8]) -> i32 {
    let mut acc = 0i32;
    for ((&e, &o), &b) in xe.iter().zip(xo).zip(w) {
        acc += i32::from(e) * (i32::from(b & 15) - 8) + i32::from(o) * (i32::from(b >> 4) - 8);
    }
    acc
}

/// Dot product with int8 weights minus a weight zero point.
fn dot_q8(x: &[i16], w: &[u8], wzp: i32) -> i32 {
    x.iter()
        .zip(w)
        .map(|(&a, &b)| i32::from(a) * (i32::from(b as i8) - wzp))
        .sum()
}

/// int8 activations × int8/int4 weights with per-channel or blockwise scales, rows split over
/// the thread pool.
#[allow(clippy::too_many_arguments)]
fn qd8_fully_connected(
    pool: &lmrun_kernels::ThreadPool,
    fdef: &ValueDef,
    dt: i16,
    w: &[u8],
    q: &[i8],
    params: &[(f32, i32)],
    rows: usize,
    cols: usize,
    out: &mut [f32],
) -> Result<(), String> {
    let (block, nblocks) = match &fdef.quant {
        Quant::Blockwise { block, .. } => (*block, cols / *block),
        _ => (cols, 1),
    };
    let four_bit = matches!(dt, DT_QCINT4 | DT_QBINT4);
    let wzp: i32 = match (&fdef.quant, four_bit) {
        (Quant::PerTensor { zero_point, .. }, false) => *zero_point,
        _ => 0,
    };
    if four_bit && block % 2 != 0 {
        return Err("odd int4 block size".into());
    }
    let row_bytes = if four_bit { cols.div_ceil(2) } else { cols };
    let ntok = params.len();
    if w.len() < rows.saturating_mul(row_bytes)
        || q.len() < ntok.saturating_mul(cols)
        || out.len() < ntok.saturating_mul(rows)
    {
        return Err("filter, activation or output too short".into());
    }
    match &fdef.quant {
        Quant::Blockwise { scales, .. } => {
            if scales.len() < rows.saturating_mul(nblocks).saturating_mul(2) {
                return Err("blockwise scales too short".into());
            }
        }
        Quant::PerChannel { scales } if scales.len() < rows => {
            return Err("per-channel scales too short".into())
        }
        Quant::PerChannel { .. } | Quant::PerTensor { .. } => {}
        _ => return Err("quantized filter without scales".into()),
    }
    // Zero-point-corrected activations as i16 (|q - zp| <= 255); for int4 weights split into
    // even and odd columns, each token's row being cols/2 long.
    let mut xq: Vec<i16> = Vec::with_capacity(ntok * cols);
    let mut xe: Vec<i16> = Vec::new();
    let mut xo: Vec<i16> = Vec::new();
    for (t, &(_, zp)) in params.iter().enumerate() {
        let row = q[t * cols..(t + 1) * cols]
            .iter()
            .map(|&v| (i32::from(v) - zp) as i16);
        if four_bit {
            for (c, v) in row.enumerate() {
                if c % 2 == 0 {
                    xe.push(v);
                } else {
                    xo.push(v);
                }
            }
        } else {
            xq.extend(row);
        }
    }
    let half = cols / 2;
    let scale_of = |r: usize, b: usize| -> f32 {
        match &fdef.quant {
            Quant::Blockwise { scales, .. } => {
                let i = (r * nblocks + b) * 2;
                bf16::from_le_bytes([scales[i], scales[i + 1]]).to_f32()
            }
            Quant::PerChannel { scales } => scales[r],
            Quant::PerTensor { scale, .. } => *scale,
            _ => 0.0,
        }
    };
    let row_out = |r: usize, dst: &mut [f32]| {
        let wr = &w[r * row_bytes..(r + 1) * row_bytes];
        for (t, d) in dst.iter_mut().enumerate() {
            let mut acc_f = 0f32;
            for b in 0..nblocks {
                let acc = if four_bit {
                    let (h0, h1) = (t * half + b * block / 2, t * half + (b + 1) * block / 2);
                    dot_q4(
                        &xe[h0..h1],
                        &xo[h0..h1],
                        &wr[b * block / 2..(b + 1) * block / 2],
                    )
                } else {
                    let x = &xq[t * cols..(t + 1) * cols];
                    dot_q8(
                        &x[b * block..(b + 1) * block],
                        &wr[b * block..(b + 1) * block],
                        wzp,
                    )
                };
                acc_f += acc as f32 * scale_of(r, b);
            }
            *d = acc_f * params[t].0;
        }
    };
    // Rows in chunks over the pool; each chunk's results [row][token] come back through a mutex.
    let chunk = rows.div_ceil(pool.n_threads() * 4).max(1);
    let n_chunks = rows.div_ceil(chunk);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(n_chunks));
    pool.run_dynamic(|_, _| loop {
        let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if c >= n_chunks {
            break;
        }
        let (r0, r1) = (c * chunk, ((c + 1) * chunk).min(rows));
        let mut v = vec![0f32; (r1 - r0) * ntok];
        for r in r0..r1 {
            row_out(r, &mut v[(r - r0) * ntok..(r - r0 + 1) * ntok]);
        }
        results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((r0, v));
    });
    for (r0, v) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let n = v.len() / ntok.max(1);
        for i in 0..n {
            for t in 0..ntok {
                out[t * rows + r0 + i] = v[i * ntok + t];
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qd8_params_follow_xnnpack() {
        // all-zero row: scale 1; the formula lands on qmax (values are 0 either way)
        assert_eq!(qd8_params(&[0.0, 0.0]), (1.0, 1.0, 127));
        // symmetric-ish row: [-1, 1] -> multiplier 127.5, zero point rounds to 0 (ties to even)
        let (deq, mult, zp) = qd8_params(&[-1.0, 1.0]);
        // XNNPACK keeps 1/multiplier for the GEMM and re-inverts it for the conversion
        assert_eq!(deq, 1.0 / (255.0f32 / 2.0));
        assert_eq!(mult, 1.0 / deq);
        assert_eq!(zp, 0);
        // only positive values: min is clamped to 0, zero point at qmin
        let (_, _, zp) = qd8_params(&[0.5, 2.0]);
        assert_eq!(zp, -128);
        // only negative values: zero point at qmax
        let (_, _, zp) = qd8_params(&[-3.0, -0.5]);
        assert_eq!(zp, 127);
    }

    #[test]
    fn int4_dot_matches_naive() {
        let x: Vec<i16> = (0..32).map(|i| (i * 37 % 255) - 127).collect();
        let w: Vec<u8> = (0..16).map(|i| (i * 53 % 256) as u8).collect();
        let mut naive = 0i32;
        for (c, &xv) in x.iter().enumerate() {
            let b = w[c / 2];
            let nib = if c % 2 == 0 { b & 15 } else { b >> 4 };
            naive += i32::from(xv) * (i32::from(nib) - 8);
        }
        let xe: Vec<i16> = x.iter().step_by(2).copied().collect();
        let xo: Vec<i16> = x.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(dot_q4(&xe, &xo, &w), naive);
        let w8: Vec<u8> = (0..32).map(|i| (i * 91 % 256) as u8).collect();
        let naive8: i32 = x
            .iter()
            .zip(&w8)
            .map(|(&a, &b)| i32::from(a) * (i32::from(b as i8) - 3))
            .sum();
        assert_eq!(dot_q8(&x, &w8, 3), naive8);
    }

    #[test]
    fn node_names_cover_the_union() {
        assert_eq!(node_name(1), "Add");
        assert_eq!(node_name(2), "FullyConnected");
        assert_eq!(node_name(18), "Convert");
        assert_eq!(node_name(20), "StaticReshape");
        assert_eq!(node_name(32), "Concatenate2");
        assert_eq!(node_name(40), "ReciprocalSquareRoot");
        assert_eq!(node_name(200), "<node kind 200>");
        assert!(node_kinds(&Buffer::from_vec(vec![0; 16])).is_none());
    }
}
