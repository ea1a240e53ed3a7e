//! Numerics for CPU inference: GGUF block formats, activation quantization, quantized dot
//! products, matrix-vector and matrix-matrix products over weights in place, the f32 operations
//! decoders need, and the persistent thread pool. (Placeholder: lands with issue 4.)
