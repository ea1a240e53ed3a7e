//! The named data a method can draw on while it loads: the `.pte`'s own `named_data`, then
//! each `.ptd` in order. It sits between the containers (`program`, `ptd`) and their users
//! (`method`, the XNNPACK delegate) so that neither has to reach up into `module`.

use lmrun_loader::Buffer;

use crate::program::Program;
use crate::ptd::FlatTensorData;
use crate::PteError;

/// Named data visible to a method: the `.pte`'s own `named_data`, then each `.ptd`.
pub(crate) struct ExternalData<'a> {
    pub(crate) program: &'a Program,
    pub(crate) ptds: &'a [FlatTensorData],
}

impl ExternalData<'_> {
    /// The bytes for `key`, or None when no file has it.
    pub fn get(&self, key: &str) -> Result<Option<Buffer>, PteError> {
        if let Some(b) = self.program.named_data(key)? {
            return Ok(Some(b));
        }
        for p in self.ptds {
            if let Some(b) = p.get_data(key)? {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }
}
