//! ExecuTorch `.pte` programs and `.ptd` FlatTensor data: the extended header, the flatbuffer
//! program, segments, named data, an interpreter for the instruction chain with portable
//! kernels for the operators LLM exports use, and the XNNPACK delegate subset those exports
//! lower to. The entry point is [`Module`], which mirrors ExecuTorch's `extension/module`.
#![forbid(unsafe_code)]

mod error;
mod fb;
pub mod inspect;
mod kernels;
mod method;
mod module;
pub mod program;
pub mod ptd;
pub mod schema;
mod value;
mod xnnpack;

pub use error::PteError;
pub use fb::FbError;
pub use inspect::{inspect_file, inspect_ptd, inspect_pte, sniff, PtdSummary, PteSummary, Summary};
pub(crate) use module::ExternalData;
pub use module::{MethodMeta, Module, TensorMeta};
pub use value::{EValue, ScalarType, Tensor};
