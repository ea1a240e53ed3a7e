//! ExecuTorch `.pte` programs and `.ptd` FlatTensor data: the extended header, the flatbuffer
//! program, segments, named data, an interpreter for the instruction chain and the XNNPACK
//! delegate subset LLM exports use. (Placeholder: lands with issue 9.)
#![forbid(unsafe_code)]
