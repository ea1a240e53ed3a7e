//! Instruction-set specific kernels, each module behind run-time detection in `dispatch`.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
