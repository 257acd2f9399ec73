//! Per-ISA building blocks shared by several variants (micro-kernels, blocked drivers,
//! conversions). Variant-specific inner loops live in the variant's own module.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;
