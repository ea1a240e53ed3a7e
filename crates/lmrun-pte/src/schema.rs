//! The `.pte` container: the optional `eh00` extended header and the `ET12` flatbuffer program
//! (`schema/program.fbs`, field ids = declaration order), decoded once into plain owned Rust
//! structs. Decoding is verifying: every table, vector and string is bounds-checked by `fb`,
//! and every index between tables (value, operator, delegate, segment) is checked later, when
//! a method is loaded.

use crate::fb::{self, FbResult, Table};

/// `"eh00"` extended header, as found at byte 8 of a `.pte`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ExtendedHeader {
    /// Bytes of flatbuffer data from file offset 0, including the headers.
    pub program_size: u64,
    /// File offset of the first segment (0 if none).
    pub segment_base_offset: u64,
    /// Bytes of segment data (0 when the header is too short to hold it).
    pub segment_data_size: u64,
}

/// Result of looking for the extended header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderParse {
    /// A valid header.
    Found(ExtendedHeader),
    /// No `eh00` magic: the whole file is the program.
    NotFound,
    /// The magic is there but the header is invalid.
    Invalid(String),
}

/// Parse the extended header from the first bytes of a file (ExecuTorch reads 64).
pub fn parse_extended_header(data: &[u8]) -> HeaderParse {
    if data.len() < 40 {
        if data.get(8..12) == Some(b"eh00") {
            return HeaderParse::Invalid(format!(
                "{} bytes is too short for the header",
                data.len()
            ));
        }
        return HeaderParse::NotFound;
    }
    if &data[8..12] != b"eh00" {
        return HeaderParse::NotFound;
    }
    let u32at = |p: usize| u32::from_le_bytes([data[p], data[p + 1], data[p + 2], data[p + 3]]);
    let u64at = |p: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&data[p..p + 8]);
        u64::from_le_bytes(a)
    };
    let len = u32at(12);
    if len < 24 {
        return HeaderParse::Invalid(format!("extended header length {len} < 24"));
    }
    HeaderParse::Found(ExtendedHeader {
        program_size: u64at(16),
        segment_base_offset: u64at(24),
        segment_data_size: if len >= 32 { u64at(32) } else { 0 },
    })
}

/// `DataSegment`: a range relative to the segment base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DataSegment {
    /// Offset from the segment base.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// `SubsegmentOffsets`: offsets inside one segment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubsegmentOffsets {
    /// Index into `Program.segments`.
    pub segment_index: u32,
    /// Offsets inside the segment (index 0 reserved).
    pub offsets: Vec<u64>,
}

/// `NamedData`: a key naming a whole segment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NamedData {
    /// The key.
    pub key: String,
    /// Index into `segments`.
    pub segment_index: u32,
}

/// `AllocationDetails`: where a planned tensor lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// Memory id (1 = first planned buffer).
    pub memory_id: u32,
    /// Byte offset in that buffer.
    pub offset: u64,
}

/// `ExtraTensorInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtraTensorInfo {
    /// Which mutable data segment holds the initial value.
    pub mutable_data_segments_idx: u64,
    /// Fully qualified name (key in external data).
    pub fully_qualified_name: Option<String>,
    /// 0 = segment, 1 = external.
    pub location: i8,
}

/// A serialized `Tensor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDef {
    /// `ScalarType` code.
    pub scalar_type: i8,
    /// Sizes (upper bounds when dynamic).
    pub sizes: Vec<i32>,
    /// Dim order.
    pub dim_order: Vec<u8>,
    /// Index into the constant buffer / segment offsets (0 = none).
    pub data_buffer_idx: u32,
    /// Planned allocation, if any.
    pub allocation: Option<Allocation>,
    /// 0 static, 1 dynamic bound, 2 dynamic unbound.
    pub shape_dynamism: i8,
    /// Extra info.
    pub extra: Option<ExtraTensorInfo>,
}

/// A serialized `EValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueDef {
    /// None.
    Null,
    /// Integer.
    Int(i64),
    /// Boolean.
    Bool(bool),
    /// Double.
    Double(f64),
    /// Tensor.
    Tensor(TensorDef),
    /// String.
    String(String),
    /// List of value indices, each an Int.
    IntList(Vec<i64>),
    /// Doubles.
    DoubleList(Vec<f64>),
    /// Bools.
    BoolList(Vec<bool>),
    /// Value indices of tensors.
    TensorList(Vec<i32>),
    /// Value indices of tensors or Null (-1 also means None).
    OptionalTensorList(Vec<i32>),
}

impl ValueDef {
    /// The kind's name as in the schema.
    pub fn kind(&self) -> &'static str {
        match self {
            ValueDef::Null => "Null",
            ValueDef::Int(_) => "Int",
            ValueDef::Bool(_) => "Bool",
            ValueDef::Double(_) => "Double",
            ValueDef::Tensor(_) => "Tensor",
            ValueDef::String(_) => "String",
            ValueDef::IntList(_) => "IntList",
            ValueDef::DoubleList(_) => "DoubleList",
            ValueDef::BoolList(_) => "BoolList",
            ValueDef::TensorList(_) => "TensorList",
            ValueDef::OptionalTensorList(_) => "OptionalTensorList",
        }
    }
}

/// One instruction of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// Run `operators[op_index]` on these values.
    Kernel {
        /// Operator index.
        op_index: i32,
        /// Value indices.
        args: Vec<i32>,
    },
    /// Run `delegates[delegate_index]`.
    Delegate {
        /// Delegate index.
        delegate_index: i32,
        /// Value indices.
        args: Vec<i32>,
    },
    /// Copy a value.
    Move {
        /// From.
        from: i32,
        /// To.
        to: i32,
    },
    /// Jump when a Bool is false.
    JumpFalse {
        /// The Bool value.
        cond: i32,
        /// Target instruction.
        dest: i32,
    },
    /// Release a tensor's data.
    Free {
        /// The tensor value.
        value: i32,
    },
}

impl Instruction {
    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Instruction::Kernel { .. } => "KernelCall",
            Instruction::Delegate { .. } => "DelegateCall",
            Instruction::Move { .. } => "MoveCall",
            Instruction::JumpFalse { .. } => "JumpFalseCall",
            Instruction::Free { .. } => "FreeCall",
        }
    }
}

/// `Operator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// e.g. `aten::add`.
    pub name: String,
    /// e.g. `out`.
    pub overload: String,
}

impl Operator {
    /// `name.overload` (or just the name when the overload is empty).
    pub fn full_name(&self) -> String {
        if self.overload.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.name, self.overload)
        }
    }
}

/// `BackendDelegate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendDelegate {
    /// Backend id.
    pub id: String,
    /// 0 = inline data, 1 = segment.
    pub location: i8,
    /// Index in the inline table or the segment table.
    pub index: u32,
    /// Compile specs (key, value).
    pub compile_specs: Vec<(String, Vec<u8>)>,
}

/// `Chain`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// Instructions in order.
    pub instructions: Vec<Instruction>,
}

/// `ExecutionPlan`: one method.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionPlan {
    /// Method name.
    pub name: String,
    /// Values table.
    pub values: Vec<ValueDef>,
    /// Input value indices.
    pub inputs: Vec<i32>,
    /// Output value indices.
    pub outputs: Vec<i32>,
    /// Chains (one in practice).
    pub chains: Vec<Chain>,
    /// Operators.
    pub operators: Vec<Operator>,
    /// Delegates.
    pub delegates: Vec<BackendDelegate>,
    /// Planned buffer sizes; index 0 is reserved.
    pub non_const_buffer_sizes: Vec<i64>,
}

impl ExecutionPlan {
    /// Sizes of the memory-planned buffers (`non_const_buffer_sizes[1..]`).
    pub fn planned_buffer_sizes(&self) -> Vec<i64> {
        self.non_const_buffer_sizes
            .iter()
            .skip(1)
            .copied()
            .collect()
    }
}

/// The decoded `Program` root table. Byte ranges refer to the program buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramDef {
    /// Schema version.
    pub version: u32,
    /// Methods.
    pub plans: Vec<ExecutionPlan>,
    /// Legacy inline constant buffers (byte ranges in the program buffer).
    pub constant_buffer: Vec<std::ops::Range<usize>>,
    /// Inline delegate data (byte ranges in the program buffer).
    pub delegate_inline: Vec<std::ops::Range<usize>>,
    /// Segments.
    pub segments: Vec<DataSegment>,
    /// Constant segment offsets.
    pub constant_segment: Option<SubsegmentOffsets>,
    /// Mutable data segments.
    pub mutable_data_segments: Vec<SubsegmentOffsets>,
    /// Named data.
    pub named_data: Vec<NamedData>,
}

fn subsegment(t: Table<'_>) -> FbResult<SubsegmentOffsets> {
    Ok(SubsegmentOffsets {
        segment_index: t.u32(0, 0)?,
        offsets: t.u64_list(1)?,
    })
}

fn tensor(t: Table<'_>) -> FbResult<TensorDef> {
    let allocation = match t.table(6)? {
        Some(a) => Some(Allocation {
            memory_id: a.u32(0, 0)?,
            offset: u64::from(a.u32(1, 0)?) | (u64::from(a.u32(2, 0)?) << 32),
        }),
        None => None,
    };
    let extra = match t.table(9)? {
        Some(e) => Some(ExtraTensorInfo {
            mutable_data_segments_idx: e.u64(0, 0)?,
            fully_qualified_name: e.str(1)?.map(str::to_string),
            location: e.i8(2, 0)?,
        }),
        None => None,
    };
    Ok(TensorDef {
        scalar_type: t.i8(0, 0)?,
        sizes: t.i32_list(2)?,
        dim_order: t.u8_list(3)?,
        data_buffer_idx: t.u32(5, 0)?,
        allocation,
        shape_dynamism: t.i8(8, 0)?,
        extra,
    })
}

fn value(t: Table<'_>) -> FbResult<ValueDef> {
    let kind = t.u8(0, 0)?;
    let v = t.table(1)?;
    let Some(v) = v else {
        return Ok(ValueDef::Null);
    };
    Ok(match kind {
        1 => ValueDef::Null,
        2 => ValueDef::Int(v.i64(0, 0)?),
        3 => ValueDef::Bool(v.bool(0)?),
        4 => ValueDef::Double(v.f64(0, 0.0)?),
        5 => ValueDef::Tensor(tensor(v)?),
        6 => ValueDef::String(v.string(0)?),
        7 => ValueDef::IntList(v.i64_list(0)?),
        8 => ValueDef::DoubleList(v.f64_list(0)?),
        9 => ValueDef::BoolList(v.u8_list(0)?.into_iter().map(|b| b != 0).collect()),
        10 => ValueDef::TensorList(v.i32_list(0)?),
        11 => ValueDef::OptionalTensorList(v.i32_list(0)?),
        _ => ValueDef::Null,
    })
}

fn instruction(t: Table<'_>) -> FbResult<Option<Instruction>> {
    let kind = t.u8(0, 0)?;
    let Some(a) = t.table(1)? else {
        return Ok(None);
    };
    Ok(match kind {
        1 => Some(Instruction::Kernel {
            op_index: a.i32(0, 0)?,
            args: a.i32_list(1)?,
        }),
        2 => Some(Instruction::Delegate {
            delegate_index: a.i32(0, 0)?,
            args: a.i32_list(1)?,
        }),
        3 => Some(Instruction::Move {
            from: a.i32(0, 0)?,
            to: a.i32(1, 0)?,
        }),
        4 => Some(Instruction::JumpFalse {
            cond: a.i32(0, 0)?,
            dest: a.i32(1, 0)?,
        }),
        5 => Some(Instruction::Free {
            value: a.i32(0, 0)?,
        }),
        _ => None,
    })
}

fn plan(t: Table<'_>) -> FbResult<ExecutionPlan> {
    let values = t
        .tables(2)?
        .into_iter()
        .map(value)
        .collect::<FbResult<Vec<_>>>()?;
    let mut chains = Vec::new();
    for c in t.tables(5)? {
        let mut instructions = Vec::new();
        for i in c.tables(2)? {
            match instruction(i)? {
                Some(x) => instructions.push(x),
                None => {
                    return Err(fb::FbError {
                        offset: 0,
                        what: "instruction with an unknown or missing kind".into(),
                    })
                }
            }
        }
        chains.push(Chain { instructions });
    }
    let operators = t
        .tables(6)?
        .into_iter()
        .map(|o| {
            Ok(Operator {
                name: o.string(0)?,
                overload: o.string(1)?,
            })
        })
        .collect::<FbResult<Vec<_>>>()?;
    let mut delegates = Vec::new();
    for d in t.tables(7)? {
        let (location, index) = match d.table(1)? {
            Some(p) => (p.i8(0, 0)?, p.u32(1, 0)?),
            None => (-1, 0),
        };
        let mut compile_specs = Vec::new();
        for cs in d.tables(2)? {
            compile_specs.push((cs.string(0)?, cs.u8_list(1)?));
        }
        delegates.push(BackendDelegate {
            id: d.string(0)?,
            location,
            index,
            compile_specs,
        });
    }
    Ok(ExecutionPlan {
        name: t.string(0)?,
        values,
        inputs: t.i32_list(3)?,
        outputs: t.i32_list(4)?,
        chains,
        operators,
        delegates,
        non_const_buffer_sizes: t.i64_list(8)?,
    })
}

/// Decode a whole `ET12` program flatbuffer.
pub fn parse_program(buf: &[u8]) -> FbResult<ProgramDef> {
    let root = fb::root(buf, Some(b"ET12"))?;
    let plans = root
        .tables(1)?
        .into_iter()
        .map(plan)
        .collect::<FbResult<Vec<_>>>()?;
    let mut constant_buffer = Vec::new();
    for b in root.tables(2)? {
        constant_buffer.push(b.bytes_range(0)?.unwrap_or(0..0));
    }
    let mut delegate_inline = Vec::new();
    for b in root.tables(3)? {
        delegate_inline.push(b.bytes_range(0)?.unwrap_or(0..0));
    }
    let segments = root
        .tables(4)?
        .into_iter()
        .map(|s| {
            Ok(DataSegment {
                offset: s.u64(0, 0)?,
                size: s.u64(1, 0)?,
            })
        })
        .collect::<FbResult<Vec<_>>>()?;
    let constant_segment = root.table(5)?.map(subsegment).transpose()?;
    let mutable_data_segments = root
        .tables(6)?
        .into_iter()
        .map(subsegment)
        .collect::<FbResult<Vec<_>>>()?;
    let named_data = root
        .tables(7)?
        .into_iter()
        .map(|n| {
            Ok(NamedData {
                key: n.string(0)?,
                segment_index: n.u32(1, 0)?,
            })
        })
        .collect::<FbResult<Vec<_>>>()?;
    Ok(ProgramDef {
        version: root.u32(0, 0)?,
        plans,
        constant_buffer,
        delegate_inline,
        segments,
        constant_segment,
        mutable_data_segments,
        named_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_variants() {
        let mut h = vec![0u8; 64];
        assert_eq!(parse_extended_header(&h), HeaderParse::NotFound);
        h[8..12].copy_from_slice(b"eh00");
        h[12..16].copy_from_slice(&20u32.to_le_bytes());
        assert!(matches!(parse_extended_header(&h), HeaderParse::Invalid(_)));
        h[12..16].copy_from_slice(&24u32.to_le_bytes());
        h[16..24].copy_from_slice(&100u64.to_le_bytes());
        h[24..32].copy_from_slice(&128u64.to_le_bytes());
        h[32..40].copy_from_slice(&7u64.to_le_bytes());
        assert_eq!(
            parse_extended_header(&h),
            HeaderParse::Found(ExtendedHeader {
                program_size: 100,
                segment_base_offset: 128,
                segment_data_size: 0
            })
        );
        h[12..16].copy_from_slice(&32u32.to_le_bytes());
        assert!(matches!(
            parse_extended_header(&h),
            HeaderParse::Found(ExtendedHeader {
                segment_data_size: 7,
                ..
            })
        ));
        assert!(matches!(
            parse_extended_header(&h[..20]),
            HeaderParse::Invalid(_)
        ));
    }
}
