//! `lmrun inspect` for ExecuTorch files: a serializable summary of a `.pte` (header, segments,
//! constant/mutable/named data, and per method its values, operators, instruction kinds,
//! delegates, tensor storage classes and constant metadata values) or of a `.ptd`, with a text
//! rendering. Reading it parses the flatbuffer only; no method is loaded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use lmrun_loader::{open_loader, LoadMode};
use serde::Serialize;

use crate::program::Program;
use crate::ptd::{FlatTensorData, FlatTensorHeader, PtdEntry};
use crate::schema::{
    BackendDelegate, DataSegment, ExecutionPlan, ExtendedHeader, Instruction, TensorDef, ValueDef,
};
use crate::PteError;

/// One delegate of a method.
#[derive(Debug, Clone, Serialize)]
pub struct DelegateSummary {
    /// Backend id.
    pub id: String,
    /// `inline` or `segment`.
    pub location: String,
    /// Index into the inline table or the segments.
    pub index: u32,
    /// Compile spec keys.
    pub compile_specs: Vec<String>,
    /// Size of the processed blob in bytes.
    pub size: u64,
    /// XNNPACK node kinds and counts (XNNPACK delegates only).
    pub node_kinds: BTreeMap<String, usize>,
}

/// One method.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    /// Name.
    pub name: String,
    /// Number of values.
    pub n_values: usize,
    /// Input value indices.
    pub inputs: Vec<i32>,
    /// Output value indices.
    pub outputs: Vec<i32>,
    /// Count of values per kind.
    pub value_kinds: BTreeMap<String, usize>,
    /// Operators, in table order (`name.overload`).
    pub operators: Vec<String>,
    /// Operators lmrun has no kernel for.
    pub missing_operators: Vec<String>,
    /// Count of instructions per kind.
    pub instruction_kinds: BTreeMap<String, usize>,
    /// Kernel calls per operator.
    pub kernel_call_counts: BTreeMap<String, usize>,
    /// Delegates.
    pub delegates: Vec<DelegateSummary>,
    /// Tensors per storage class.
    pub tensor_locations: BTreeMap<String, usize>,
    /// Planned buffer sizes (`non_const_buffer_sizes[1..]`).
    pub planned_buffer_sizes: Vec<i64>,
    /// For constant methods: the value(s) as JSON.
    pub constant_value: Option<serde_json::Value>,
}

/// Summary of a `.pte`.
#[derive(Debug, Clone, Serialize)]
pub struct PteSummary {
    /// File name.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// `ET12`.
    pub file_identifier: String,
    /// Extended header, when present.
    pub extended_header: Option<ExtendedHeader>,
    /// Schema version.
    pub schema_version: u32,
    /// Segments.
    pub segments: Vec<DataSegment>,
    /// Legacy inline constant buffers.
    pub constant_buffer_entries_inline: usize,
    /// Constant segment index and number of offsets.
    pub constant_segment: Option<(u32, usize)>,
    /// Mutable data segments: (segment index, number of offsets).
    pub mutable_data_segments: Vec<(u32, usize)>,
    /// Named data: (key, segment index, size).
    pub named_data: Vec<(String, u32, u64)>,
    /// Inline delegate blobs: sizes.
    pub backend_delegate_inline_data: Vec<usize>,
    /// Keys of tensors stored outside the file (in a `.ptd`).
    pub external_tensors: Vec<String>,
    /// Methods.
    pub methods: Vec<MethodSummary>,
    /// Constant-method values (metadata), by name.
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Summary of a `.ptd`.
#[derive(Debug, Clone, Serialize)]
pub struct PtdSummary {
    /// File name.
    pub file: String,
    /// Size.
    pub size: u64,
    /// Header.
    pub header: FlatTensorHeader,
    /// Entries.
    pub entries: Vec<PtdEntry>,
}

fn value_json(v: &ValueDef) -> Option<serde_json::Value> {
    Some(match v {
        ValueDef::Int(i) => (*i).into(),
        ValueDef::Bool(b) => (*b).into(),
        ValueDef::Double(d) => (*d).into(),
        ValueDef::String(s) => s.clone().into(),
        ValueDef::Null => serde_json::Value::Null,
        _ => return None,
    })
}

impl MethodSummary {
    /// Summarise `plan` of `p`; the keys of external tensors are appended to `external`.
    fn of(p: &Program, plan: &ExecutionPlan, external: &mut Vec<String>) -> MethodSummary {
        let mut value_kinds = BTreeMap::new();
        let mut tensor_locations = BTreeMap::new();
        for v in &plan.values {
            *value_kinds.entry(v.kind().to_string()).or_insert(0) += 1;
            if let ValueDef::Tensor(t) = v {
                let class = tensor_location(t, external);
                *tensor_locations.entry(class.to_string()).or_insert(0) += 1;
            }
        }
        let operators: Vec<String> = plan.operators.iter().map(|o| o.full_name()).collect();
        let missing_operators = operators
            .iter()
            .filter(|o| crate::ops::lookup(o).is_none())
            .cloned()
            .collect();
        let (instruction_kinds, kernel_call_counts) = instruction_counts(plan, &operators);
        MethodSummary {
            name: plan.name.clone(),
            n_values: plan.values.len(),
            inputs: plan.inputs.clone(),
            outputs: plan.outputs.clone(),
            value_kinds,
            operators,
            missing_operators,
            instruction_kinds,
            kernel_call_counts,
            delegates: plan
                .delegates
                .iter()
                .map(|dl| delegate_summary(p, dl))
                .collect(),
            tensor_locations,
            planned_buffer_sizes: plan.planned_buffer_sizes(),
            constant_value: constant_value(plan),
        }
    }
}

/// The storage class of a tensor (`external`, `unplanned`, `constant`, `planned`,
/// `planned_with_initial_value`); an external tensor's key is appended to `external`.
fn tensor_location(t: &TensorDef, external: &mut Vec<String>) -> &'static str {
    let ext = t.extra.as_ref().filter(|e| e.location == 1);
    match (&t.allocation, t.data_buffer_idx, ext) {
        (_, _, Some(e)) => {
            external.push(e.fully_qualified_name.clone().unwrap_or_default());
            "external"
        }
        (None, 0, _) => "unplanned",
        (None, _, _) => "constant",
        (Some(_), 0, _) => "planned",
        (Some(_), _, _) => "planned_with_initial_value",
    }
}

/// Instructions per kind, and kernel calls per operator, over every chain.
fn instruction_counts(
    plan: &ExecutionPlan,
    operators: &[String],
) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut instruction_kinds = BTreeMap::new();
    let mut kernel_call_counts = BTreeMap::new();
    for c in &plan.chains {
        for i in &c.instructions {
            *instruction_kinds.entry(i.kind().to_string()).or_insert(0) += 1;
            if let Instruction::Kernel { op_index, .. } = i {
                let n = usize::try_from(*op_index)
                    .ok()
                    .and_then(|o| operators.get(o))
                    .cloned()
                    .unwrap_or_else(|| format!("<bad index {op_index}>"));
                *kernel_call_counts.entry(n).or_insert(0) += 1;
            }
        }
    }
    (instruction_kinds, kernel_call_counts)
}

/// One delegate: where its blob is, its size and (XNNPACK) node kinds.
fn delegate_summary(p: &Program, dl: &BackendDelegate) -> DelegateSummary {
    DelegateSummary {
        id: dl.id.clone(),
        location: if dl.location == 0 {
            "inline"
        } else {
            "segment"
        }
        .into(),
        index: dl.index,
        compile_specs: dl.compile_specs.iter().map(|c| c.0.clone()).collect(),
        size: p.delegate_data(dl).map_or(0, |b| b.len() as u64),
        node_kinds: p
            .delegate_data(dl)
            .ok()
            .and_then(|b| crate::xnnpack::node_kinds(&b))
            .unwrap_or_default(),
    }
}

/// For a constant method (no inputs, no instructions, some outputs): its output value(s) as
/// JSON.
fn constant_value(plan: &ExecutionPlan) -> Option<serde_json::Value> {
    let is_const = plan.inputs.is_empty()
        && plan.chains.iter().all(|c| c.instructions.is_empty())
        && !plan.outputs.is_empty();
    if !is_const {
        return None;
    }
    let vals: Option<Vec<serde_json::Value>> = plan
        .outputs
        .iter()
        .map(|&o| {
            usize::try_from(o)
                .ok()
                .and_then(|o| plan.values.get(o))
                .and_then(value_json)
        })
        .collect();
    vals.map(|mut v| {
        if v.len() == 1 {
            v.remove(0)
        } else {
            serde_json::Value::Array(v)
        }
    })
}

impl PteSummary {
    /// Summarise a parsed program.
    pub fn from_program(p: &Program) -> PteSummary {
        let d = &p.def;
        let mut methods = Vec::new();
        let mut metadata = BTreeMap::new();
        let mut external = Vec::new();
        for plan in &d.plans {
            let m = MethodSummary::of(p, plan, &mut external);
            if let Some(v) = &m.constant_value {
                metadata.insert(plan.name.clone(), v.clone());
            }
            methods.push(m);
        }
        PteSummary {
            file: p
                .path()
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            size: p.file_size,
            file_identifier: "ET12".into(),
            extended_header: p.header,
            schema_version: d.version,
            segments: d.segments.clone(),
            constant_buffer_entries_inline: d.constant_buffer.len(),
            constant_segment: d
                .constant_segment
                .as_ref()
                .map(|c| (c.segment_index, c.offsets.len())),
            mutable_data_segments: d
                .mutable_data_segments
                .iter()
                .map(|c| (c.segment_index, c.offsets.len()))
                .collect(),
            named_data: d
                .named_data
                .iter()
                .map(|n| {
                    let size = d
                        .segments
                        .get(n.segment_index as usize)
                        .map_or(0, |s| s.size);
                    (n.key.clone(), n.segment_index, size)
                })
                .collect(),
            backend_delegate_inline_data: d.delegate_inline.iter().map(|r| r.len()).collect(),
            external_tensors: external,
            methods,
            metadata,
        }
    }

    /// A human-readable rendering.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: ExecuTorch program (ET12), {} bytes",
            self.file, self.size
        );
        match &self.extended_header {
            Some(h) => {
                let _ = writeln!(
                    s,
                    "  header: program {} bytes, segments at {} ({} bytes)",
                    h.program_size, h.segment_base_offset, h.segment_data_size
                );
            }
            None => {
                let _ = writeln!(s, "  header: none (no segments)");
            }
        }
        let _ = writeln!(s, "  segments: {}", self.segments.len());
        if let Some((i, n)) = self.constant_segment {
            let _ = writeln!(
                s,
                "  constant segment: segment {i}, {} tensors",
                n.saturating_sub(1)
            );
        }
        if self.constant_buffer_entries_inline > 0 {
            let _ = writeln!(
                s,
                "  inline constant buffers (deprecated): {}",
                self.constant_buffer_entries_inline
            );
        }
        if !self.mutable_data_segments.is_empty() {
            let _ = writeln!(
                s,
                "  mutable data segments: {}",
                self.mutable_data_segments.len()
            );
        }
        if !self.named_data.is_empty() {
            let total: u64 = self.named_data.iter().map(|n| n.2).sum();
            let _ = writeln!(
                s,
                "  named data: {} keys, {total} bytes",
                self.named_data.len()
            );
        }
        if !self.external_tensors.is_empty() {
            let _ = writeln!(
                s,
                "  external tensors (need a .ptd): {}",
                self.external_tensors.len()
            );
        }
        if !self.metadata.is_empty() {
            let _ = writeln!(s, "  metadata:");
            for (k, v) in &self.metadata {
                let _ = writeln!(s, "    {k} = {v}");
            }
        }
        for m in &self.methods {
            if m.constant_value.is_some() {
                continue;
            }
            let _ = writeln!(
                s,
                "  method {}: {} values, inputs {:?}, outputs {:?}, planned buffers {:?}",
                m.name, m.n_values, m.inputs, m.outputs, m.planned_buffer_sizes
            );
            let kinds: Vec<String> = m
                .instruction_kinds
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(s, "    instructions: {}", kinds.join(", "));
            let locs: Vec<String> = m
                .tensor_locations
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(s, "    tensors: {}", locs.join(", "));
            let _ = writeln!(s, "    operators ({}):", m.operators.len());
            for o in &m.operators {
                let n = m.kernel_call_counts.get(o).copied().unwrap_or(0);
                let miss = if m.missing_operators.contains(o) {
                    "  [no kernel in lmrun]"
                } else {
                    ""
                };
                let _ = writeln!(s, "      {o} x{n}{miss}");
            }
            if !m.delegates.is_empty() {
                let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
                for d in &m.delegates {
                    for (k, v) in &d.node_kinds {
                        *kinds.entry(k.clone()).or_insert(0) += v;
                    }
                }
                let ids: std::collections::BTreeSet<&str> =
                    m.delegates.iter().map(|d| d.id.as_str()).collect();
                let _ = writeln!(
                    s,
                    "    delegates: {} ({})",
                    m.delegates.len(),
                    ids.into_iter().collect::<Vec<_>>().join(", ")
                );
                if !kinds.is_empty() {
                    let k: Vec<String> = kinds.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    let _ = writeln!(s, "    delegate nodes: {}", k.join(", "));
                }
            }
        }
        s
    }
}

impl PtdSummary {
    /// A human-readable rendering.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let total: u64 = self.entries.iter().map(|e| e.size).sum();
        let _ = writeln!(
            s,
            "{}: ExecuTorch FlatTensor data (FT01), {} bytes, {} tensors, {total} bytes of data",
            self.file,
            self.size,
            self.entries.len()
        );
        for e in &self.entries {
            let layout = e.layout.as_ref().map_or(String::new(), |l| {
                format!(
                    " {:?} {:?}",
                    crate::ScalarType::from_code(l.scalar_type),
                    l.sizes
                )
            });
            let _ = writeln!(
                s,
                "  {} {} bytes at {}{layout}",
                e.key, e.size, e.file_offset
            );
        }
        s
    }
}

/// The summary of either kind of ExecuTorch file.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Summary {
    /// A `.pte` program.
    Pte(Box<PteSummary>),
    /// A `.ptd` data file.
    Ptd(PtdSummary),
}

impl Summary {
    /// A human-readable rendering.
    pub fn to_text(&self) -> String {
        match self {
            Summary::Pte(s) => s.to_text(),
            Summary::Ptd(s) => s.to_text(),
        }
    }
}

/// Whether `head` (the first 8+ bytes of a file) looks like a `.pte` (`ET12` identifier) or a
/// `.ptd` (`FT01`): the CLI's format sniffing.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    match head.get(4..8) {
        Some(b"ET12") => Some("pte"),
        Some(b"FT01") => Some("ptd"),
        _ => None,
    }
}

/// Summarise a `.pte` or `.ptd`, chosen by the file's identifier.
pub fn inspect_file(path: &Path) -> Result<Summary, PteError> {
    let l = open_loader(path, LoadMode::Mmap)?;
    let head = l.load(0, l.size().min(8) as usize)?;
    if sniff(&head) == Some("ptd") {
        Ok(Summary::Ptd(inspect_ptd(path)?))
    } else {
        Ok(Summary::Pte(Box::new(inspect_pte(path)?)))
    }
}

/// Summarise a `.pte` file (mapped, not locked).
pub fn inspect_pte(path: &Path) -> Result<PteSummary, PteError> {
    let p = Program::load(path, open_loader(path, LoadMode::Mmap)?)?;
    Ok(PteSummary::from_program(&p))
}

/// Summarise a `.ptd` file.
pub fn inspect_ptd(path: &Path) -> Result<PtdSummary, PteError> {
    let l = open_loader(path, LoadMode::Mmap)?;
    let size = l.size();
    let d = FlatTensorData::load(path, l)?;
    Ok(PtdSummary {
        file: path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        size,
        header: d.header,
        entries: d.entries.clone(),
    })
}
