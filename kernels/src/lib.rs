//! Kernels: block formats, activation quantizers and every matmul variant (f16, w4a16,
//! w8a16, w4a8, w4a4-packed, w4a4-widen, w4a4-lut) per ISA, behind one registry with CPU-feature
//! dispatch and an always-available scalar path. Also the machine-ceiling microbenchmarks.
//!
//! This crate knows nothing of models, files or plans: it takes packed weights, quantized
//! activations and shapes.

mod arch;
pub mod ceilings;
pub mod formats;
pub mod matmul;
pub mod registry;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
pub mod variants;

pub use formats::{BlockQ4_0, BlockQ4_1, BlockQ8_0, QuantizedActivations, QK};
pub use matmul::{Activations, KernelError, Matmul, Q4Matrix, Q8Matrix};
pub use registry::{available, best_isa, Isa, Variant};
