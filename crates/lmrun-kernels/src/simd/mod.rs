//! Instruction-set specific kernels, each module behind run-time detection in `dispatch`.

/// Defines a safe one-row wrapper `$name(w, a) -> f32` around the kernel `unsafe fn $imp`.
/// The wrappers are private to their instruction-set module and handed out only by its
/// `dot_fn`, which `dispatch` calls after run-time detection of every feature the module's
/// kernels enable.
#[cfg(target_arch = "x86_64")]
macro_rules! wrap {
    ($name:ident, $imp:ident, $act:ty) => {
        fn $name(w: &[u8], a: &[$act]) -> f32 {
            // SAFETY: reachable only through the module's `dot_fn`, after run-time detection
            // of every feature the kernel enables; the kernel bounds every access by the
            // slice lengths.
            unsafe { $imp(w, a) }
        }
    };
}

/// [`wrap!`] for the four-token kernels, handed out only by the module's `dot4_fn`.
#[cfg(target_arch = "x86_64")]
macro_rules! wrap4 {
    ($name:ident, $imp:ident, $act:ty) => {
        fn $name(w: &[u8], a: [&[$act]; 4]) -> [f32; 4] {
            // SAFETY: reachable only through the module's `dot4_fn`, after run-time detection
            // of every feature the kernel enables; the kernel bounds every access by the
            // slice lengths.
            unsafe { $imp(w, a) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
