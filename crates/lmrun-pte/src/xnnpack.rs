//! The `XnnpackBackend` delegate (placeholder until the XNNPACK graph runner lands).

use lmrun_loader::Buffer;

use crate::method::Ctx;
use crate::module::ExternalData;

/// Why a delegate failed to initialise.
#[allow(dead_code)]
pub(crate) enum XnnInitError {
    /// Named data that no file provides.
    Missing(String),
    /// Anything else.
    Other(String),
}

/// An initialised XNNPACK graph.
pub(crate) struct XnnDelegate {}

impl XnnDelegate {
    pub fn init(_blob: &Buffer, _ext: &ExternalData<'_>) -> Result<Self, XnnInitError> {
        Err(XnnInitError::Other(
            "XNNPACK delegate not supported yet".into(),
        ))
    }
    pub fn check_args(&self, _n: usize) -> Result<(), String> {
        Ok(())
    }
    pub fn execute(&self, _ctx: &mut Ctx, _args: &[usize]) -> Result<(), String> {
        Err("XNNPACK delegate not supported yet".into())
    }
}

/// Node kinds and counts of an XNNPACK blob, for `inspect`.
pub(crate) fn node_kinds(_blob: &[u8]) -> Option<std::collections::BTreeMap<String, usize>> {
    None
}
