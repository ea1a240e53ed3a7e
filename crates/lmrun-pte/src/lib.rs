//! ExecuTorch `.pte` programs and `.ptd` FlatTensor data: the extended header, the flatbuffer
//! program, segments, named data, an interpreter for the instruction chain with portable
//! kernels for the operators LLM exports use, and the XNNPACK delegate subset those exports
//! lower to. The entry point is [`Module`], which mirrors ExecuTorch's `extension/module`.
//!
//! # Layers
//!
//! Modules are stacked; each uses only modules below it (no import loops):
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 5 | `module`, `inspect` | the public entry points: [`Module`], `lmrun inspect` summaries |
//! | 4 | `method` | storage wiring at load, the interpreter of chain 0 |
//! | 3 | `xnnpack` | the XNNPACK delegate: `graph` (decoding), `nodes` (interpreter), `quant` (int8) |
//! | 2 | `ops` | the portable operators and their registry; shared loops the delegate calls |
//! | 1 | `external`, `program`, `ptd` | the containers: program, segments, named data, `.ptd` |
//! | 0 | `tensor`, `schema`, `fb`, `error` | values and tensor helpers, flatbuffer schema and reader, [`PteError`] |
//!
//! `tensor` imports nothing from the crate; `ops` sees only `tensor`; `xnnpack` adds the
//! containers (for its constants) and `ops` (batched matmul, N-d walks, softmax).
#![forbid(unsafe_code)]

mod error;
mod external;
mod fb;
pub mod inspect;
mod method;
mod module;
mod ops;
pub mod program;
pub mod ptd;
pub mod schema;
mod tensor;
mod xnnpack;

pub use error::PteError;
pub use fb::FbError;
pub use inspect::{inspect_file, inspect_ptd, inspect_pte, sniff, PtdSummary, PteSummary, Summary};
pub use module::{MethodMeta, Module, TensorMeta};
pub use tensor::{EValue, ScalarType, Tensor};
