//! Decoding of a delegate blob: the optional `XH00` header, then the `XN00`/`XN01` `XNNGraph`
//! flatbuffer of `backends/xnnpack/serialization/runtime_schema.fbs` into owned definitions
//! ([`Graph`]: values with their constant bytes and quantization, and nodes). Constants are
//! fetched here (named data in the `.pte` or a `.ptd`, the blob's constant area, or legacy
//! inline buffers) and kept as read-only views; every node is checked, so an unsupported kind
//! is an error at method load, not at execute.

use std::collections::BTreeMap;

use lmrun_loader::Buffer;

use crate::external::ExternalData;
use crate::fb::{self, Table};
use crate::tensor::{bytes_to_f32, prod, ScalarType};

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

pub(super) const FLAG_EXTERNAL_INPUT: u32 = 1;
pub(super) const FLAG_EXTERNAL_OUTPUT: u32 = 2;
pub(super) const FLAG_TRANSPOSE_WEIGHTS: u32 = 1;

// XNNDatatype codes.
pub(super) const DT_FP32: i16 = 1;
pub(super) const DT_QINT8: i16 = 3;
pub(super) const DT_QCINT8: i16 = 6;
pub(super) const DT_QCINT4: i16 = 8;
pub(super) const DT_QDINT8: i16 = 9;
pub(super) const DT_QBINT4: i16 = 10;
pub(super) const DT_INT32: i16 = 12;

/// Names of the `XNodeUnion` members, by discriminant - 1.
pub(super) const NODE_NAMES: [&str; 47] = [
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
pub(super) enum Quant {
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

/// A value of the graph: XNNPACK datatype, dims, constant bytes (if any) and quantization.
#[derive(Clone)]
pub(super) struct ValueDef {
    pub dtype: i16,
    pub dims: Vec<usize>,
    pub data: Option<Buffer>,
    pub quant: Quant,
    /// For an int4 filter: each row's zero-point factor (`xnn_qb4::zero_point_sums`),
    /// computed on first use (a pass over the weights) and kept, as the weights never change.
    pub zp_sums: std::sync::OnceLock<Vec<f32>>,
}

/// The binary node kinds.
#[derive(Clone, Copy, Debug)]
pub(super) enum BinKind {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
}

/// The unary node kinds (Clamp and Copy only apply the output range).
#[derive(Clone, Copy, Debug)]
pub(super) enum UnKind {
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

/// A checked node, with the value ids it reads and writes (and its output range).
pub(super) enum Node {
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

/// A decoded, checked XNNPACK graph.
pub(super) struct Graph {
    /// Value definitions by id.
    pub values: BTreeMap<u32, ValueDef>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// (external id, value id), sorted by external id.
    pub inputs: Vec<(u32, u32)>,
    /// (external id, value id), sorted by external id.
    pub outputs: Vec<(u32, u32)>,
}

/// Where a graph's constant buffers come from.
struct Constants<'a> {
    blob: &'a Buffer,
    parsed: &'a Blob<'a>,
    /// `constant_data` (index 0 reserved).
    cdata: Vec<Table<'a>>,
    /// Legacy inline `constant_buffer`.
    legacy: Vec<Table<'a>>,
    ext: &'a ExternalData<'a>,
}

impl Constants<'_> {
    /// The bytes of constant buffer `idx` (None for 0, "no data").
    fn fetch(&self, idx: u32) -> IResult<Option<Buffer>> {
        if idx == 0 {
            return Ok(None);
        }
        if let Some(cd) = self.cdata.get(idx as usize) {
            let size = usize::try_from(cd.u64(1, 0)?).unwrap_or(usize::MAX);
            if let Some(key) = cd.str(2)? {
                let buf = self
                    .ext
                    .get(key)
                    .map_err(|e| XnnInitError::Other(e.to_string()))?
                    .ok_or_else(|| XnnInitError::Missing(key.to_string()))?;
                return Ok(Some(buf));
            }
            let off = usize::try_from(cd.u64(0, 0)?).unwrap_or(usize::MAX);
            let c = self
                .parsed
                .constants
                .as_ref()
                .ok_or_else(|| XnnInitError::Other("constant data without a header".into()))?;
            return off
                .checked_add(size)
                .and_then(|e| c.slice(off..e))
                .map(Some)
                .ok_or_else(|| XnnInitError::Other("constant data out of range".into()));
        }
        if let Some(lb) = self.legacy.get(idx as usize) {
            if let Some(r) = lb.bytes_range(0)? {
                let start = self.parsed.fb.as_ptr() as usize - self.blob.as_ptr() as usize;
                return Ok(self.blob.slice(start + r.start..start + r.end));
            }
        }
        other(format!("constant buffer index {idx} out of range"))
    }
}

impl Graph {
    /// Parse and check a delegate blob, fetching its constants.
    pub fn decode(blob: &Buffer, ext: &ExternalData<'_>) -> IResult<Graph> {
        let b = parse_blob(blob)?;
        let root = graph_root(b.fb)?;
        let consts = Constants {
            blob,
            parsed: &b,
            cdata: root.tables(8)?,
            legacy: root.tables(6)?,
            ext,
        };
        let mut g = Graph {
            values: BTreeMap::new(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        for v in root.tables(2)? {
            g.add_value(&v, &consts)?;
        }
        g.inputs.sort_unstable();
        g.outputs.sort_unstable();
        for n in root.tables(1)? {
            let node = g.decode_node(&n)?;
            g.nodes.push(node);
        }
        Ok(g)
    }

    /// Decode one `XValue` into `values` (and the external input/output lists).
    fn add_value(&mut self, v: &Table<'_>, consts: &Constants<'_>) -> IResult<()> {
        let kind = v.u8(0, 0)?;
        let Some(u) = v.table(1)? else {
            return other("XValue without a value");
        };
        let (t, quant) = match kind {
            1 => (u, None),
            2 => {
                let t = u
                    .table(0)?
                    .ok_or_else(|| XnnInitError::Other("quantized value without tensor".into()))?;
                (t, Some((u.u8(1, 0)?, u.table(2)?)))
            }
            k => return other(format!("unknown XValue kind {k}")),
        };
        let dtype = t.i16(0, 0)?;
        let dims: Vec<usize> = t.u32_list(2)?.into_iter().map(|d| d as usize).collect();
        let data = consts.fetch(t.u32(3, 0)?)?;
        let external_id = t.u32(4, 0)?;
        let flags = t.u32(5, 0)?;
        let id = t.u32(6, 0)?;
        if t.i16(7, 0)? != 0 {
            return other("legacy dq_datatype values are not supported");
        }
        let quant = match quant {
            None => Quant::None,
            Some((qk, qt)) => {
                let qt = qt.ok_or_else(|| XnnInitError::Other("missing quant params".into()))?;
                decode_quant(qk, &qt, &dims, consts)?
            }
        };
        if let Some(d) = &data {
            check_constant_len(id, dtype, &dims, d)?;
        }
        if flags & FLAG_EXTERNAL_INPUT != 0 {
            self.inputs.push((external_id, id));
        }
        if flags & FLAG_EXTERNAL_OUTPUT != 0 {
            self.outputs.push((external_id, id));
        }
        self.values.insert(
            id,
            ValueDef {
                dtype,
                dims,
                data,
                quant,
                zp_sums: std::sync::OnceLock::new(),
            },
        );
        Ok(())
    }

    /// `id` if a value of that id is defined.
    fn has(&self, id: u32) -> IResult<u32> {
        if self.values.contains_key(&id) {
            Ok(id)
        } else {
            other(format!("node refers to undefined value {id}"))
        }
    }

    /// The value ids in fields `fields` of `t`, each checked to be defined.
    fn ids<const N: usize>(&self, t: &Table<'_>, fields: [usize; N]) -> IResult<[u32; N]> {
        let mut out = [0u32; N];
        for (o, f) in out.iter_mut().zip(fields) {
            *o = self.has(t.u32(f, 0)?)?;
        }
        Ok(out)
    }

    /// Decode and check one `XNode`.
    fn decode_node(&self, n: &Table<'_>) -> IResult<Node> {
        let kind = n.u8(0, 0)?;
        let name = node_name(kind);
        let Some(t) = n.table(1)? else {
            return other(format!("{name} node without parameters"));
        };
        let mm = minmax(n)?;
        let bin = |k: BinKind| -> IResult<Node> {
            let [a, b, o] = self.ids(&t, [0, 1, 2])?;
            Ok(Node::Binary(k, a, b, o, mm))
        };
        let un = |k: UnKind| -> IResult<Node> {
            let [a, o] = self.ids(&t, [0, 1])?;
            Ok(Node::Unary(k, a, o, mm))
        };
        let dims = |f: usize| -> IResult<Vec<usize>> {
            Ok(t.u32_list(f)?.into_iter().map(|d| d as usize).collect())
        };
        Ok(match kind {
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
            3 => {
                let [a, o] = self.ids(&t, [0, 1])?;
                Node::Softmax(a, o)
            }
            37 => {
                let [a, b, o] = self.ids(&t, [0, 1, 2])?;
                Node::Bmm(a, b, o)
            }
            2 => self.decode_fully_connected(&t, mm)?,
            18 => self.decode_convert(&t)?,
            20 => {
                let [a, o] = self.ids(&t, [2, 3])?;
                Node::Reshape(a, o, dims(1)?)
            }
            5 => {
                let [a, o] = self.ids(&t, [2, 3])?;
                Node::Transpose(a, o, dims(1)?)
            }
            35 => {
                let [a, o] = self.ids(&t, [3, 4])?;
                Node::Slice(a, o, dims(1)?, dims(2)?)
            }
            32 | 33 | 34 | 38 => self.decode_concat(kind, &t)?,
            _ => {
                return other(format!(
                    "XNNPACK node kind {name} is not supported by lmrun"
                ))
            }
        })
    }

    /// A FullyConnected node: its filter must be a 2-D constant of a supported datatype.
    fn decode_fully_connected(&self, t: &Table<'_>, mm: (f32, f32)) -> IResult<Node> {
        let bias = t.u32(2, u32::MAX)?;
        let filter = self.has(t.u32(1, 0)?)?;
        let fv = &self.values[&filter];
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
        Ok(Node::FullyConnected {
            input: self.has(t.u32(0, 0)?)?,
            filter,
            bias: if bias == u32::MAX {
                None
            } else {
                Some(self.has(bias)?)
            },
            out: self.has(t.u32(3, 0)?)?,
            flags: t.u32(4, 0)?,
            minmax: mm,
        })
    }

    /// A Convert node (only fp32 → qdint8, the dynamic activation quantization).
    fn decode_convert(&self, t: &Table<'_>) -> IResult<Node> {
        let [i, o] = self.ids(t, [0, 1])?;
        let (di, dout) = (self.values[&i].dtype, self.values[&o].dtype);
        if di != DT_FP32 || dout != DT_QDINT8 {
            return other(format!(
                "Convert from datatype {di} to {dout} is not supported (only fp32 → qdint8)"
            ));
        }
        Ok(Node::Convert(i, o))
    }

    /// A Concatenate2–5 node.
    fn decode_concat(&self, kind: u8, t: &Table<'_>) -> IResult<Node> {
        let n_in = match kind {
            32 => 2,
            33 => 3,
            34 => 4,
            _ => 5,
        };
        let ids = [1usize, 2, 3, 4, 7];
        let mut ins = Vec::new();
        for &f in ids.iter().take(n_in) {
            ins.push(self.has(t.u32(f, 0)?)?);
        }
        Ok(Node::Concat(
            t.u32(0, 0)? as usize,
            ins,
            self.has(t.u32(5, 0)?)?,
        ))
    }
}

/// Quantization parameters of kind `qk` (`XQuantParams` union member) from table `qt`.
fn decode_quant(qk: u8, qt: &Table<'_>, dims: &[usize], consts: &Constants<'_>) -> IResult<Quant> {
    Ok(match qk {
        1 => {
            let sbi = qt.u32(2, 0)?;
            let scales = if sbi != 0 {
                let b = consts.fetch(sbi)?.unwrap_or_default();
                bytes_to_f32(ScalarType::Float, &b)
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
        4 => decode_blockwise(qt, dims, consts)?,
        k => return other(format!("unknown quantization kind {k}")),
    })
}

/// Blockwise (bf16-scaled) quantization, with the scales checked against the weight's dims.
fn decode_blockwise(qt: &Table<'_>, dims: &[usize], consts: &Constants<'_>) -> IResult<Quant> {
    let block = usize::try_from(qt.i32(2, 0)?).unwrap_or(0);
    let sbi = qt.u32(4, 0)?;
    let scales = if sbi != 0 {
        consts.fetch(sbi)?.unwrap_or_default()
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
    if scales.len() < dims[0].saturating_mul(dims[1] / block).saturating_mul(2) {
        return other("blockwise scales too short");
    }
    Ok(Quant::Blockwise { scales, block })
}

/// Refuse a constant with fewer bytes than its datatype and dims need.
fn check_constant_len(id: u32, dtype: i16, dims: &[usize], d: &Buffer) -> IResult<()> {
    let n: usize = prod(dims);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
