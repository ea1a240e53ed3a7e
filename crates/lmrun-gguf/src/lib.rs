//! The GGUF container: header, typed metadata, tensor infos and zero-copy tensor views over
//! [`lmrun_loader::Buffer`]s from any load mode. (Placeholder: the parser lands with issue 3.)
#![forbid(unsafe_code)]
