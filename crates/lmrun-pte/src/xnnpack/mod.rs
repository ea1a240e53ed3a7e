//! The `XnnpackBackend` delegate, for the node kinds LLM exports lower to XNNPACK. At method
//! load a delegate blob is decoded and checked ([`graph`]: an unsupported node kind is an error
//! at load); at execute the graph runs node by node ([`nodes`]) with shapes recomputed from the
//! actual inputs (dynamic shapes), emulating XNNPACK's numerics: fp32 FullyConnected, dynamic
//! int8 quantization of activations and int8 × int4/int8 weight FullyConnected with
//! per-channel or blockwise (bf16) scales ([`quant`]). The float nodes share their loops with
//! the portable ops (`crate::ops`).

mod graph;
mod nodes;
mod quant;

use lmrun_loader::Buffer;

use crate::external::ExternalData;
use crate::tensor::{bytes_to_f32, prod, tensor, tensor_bytes, write, Ctx, Data, ScalarType};
use graph::Graph;
pub(crate) use graph::{node_kinds, XnnInitError};
use nodes::{Vals, XVal};

/// An initialised XNNPACK graph.
pub(crate) struct XnnDelegate {
    graph: Graph,
}

impl XnnDelegate {
    /// Parse and check a delegate blob, fetching its constants.
    pub fn init(blob: &Buffer, ext: &ExternalData<'_>) -> Result<Self, XnnInitError> {
        Ok(XnnDelegate {
            graph: Graph::decode(blob, ext)?,
        })
    }

    /// Check the delegate call's argument count against the graph's externals.
    pub fn check_args(&self, n: usize) -> Result<(), String> {
        let need = self
            .graph
            .inputs
            .iter()
            .chain(&self.graph.outputs)
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
        let mut vals = Vals::new();
        for &(ext, id) in &self.graph.inputs {
            let a = *args.get(ext as usize).ok_or("argument missing")?;
            vals.insert(id, self.read_input(ctx, ext, a, id)?);
        }
        for (ni, node) in self.graph.nodes.iter().enumerate() {
            self.graph
                .run_node(ctx, node, &mut vals)
                .map_err(|e| format!("XNNPACK node {ni}: {e}"))?;
        }
        for &(ext, id) in &self.graph.outputs {
            let a = *args.get(ext as usize).ok_or("argument missing")?;
            let v = vals
                .remove(&id)
                .ok_or_else(|| format!("output value {id} was never computed"))?;
            match v {
                XVal::F32(dims, d) => write(ctx, a, dims, Data::F32(d))?,
                XVal::Qd8(..) => return Err("quantized graph outputs are not supported".into()),
            }
        }
        Ok(())
    }

    /// External input `ext` (interpreter value `a`) as the graph's value `id`: f32 only; a
    /// 0-dim tensor stands for a `[1]` (or `[1, 1, ...]`) external value.
    fn read_input(&self, ctx: &Ctx, ext: u32, a: usize, id: u32) -> Result<XVal, String> {
        let t = tensor(ctx, a)?;
        if t.dtype != ScalarType::Float {
            return Err(format!(
                "input {ext}: dtype {:?}, XNNPACK graph expects f32",
                t.dtype
            ));
        }
        let mut dims = t.sizes.clone();
        let d = bytes_to_f32(t.dtype, tensor_bytes(ctx, t)?);
        let def = &self.graph.values[&id];
        if def.dims.len() != dims.len() {
            if d.len() == prod(&def.dims) {
                dims = def.dims.clone();
            } else {
                return Err(format!(
                    "input {ext}: rank {} given, graph has {:?}",
                    dims.len(),
                    def.dims
                ));
            }
        }
        Ok(XVal::F32(dims, d))
    }
}
