//! Names of kernel variants and instruction sets, shared by the runtime and the profiler,
//! which pick kernels by these names.

use std::fmt;
use std::str::FromStr;

/// A matmul variant: the weight and activation formats it multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// f16 weights x f32 activations: the FP16 baseline.
    F16,
    /// Q4_1 weights x f32 activations: weight-only quantization.
    W4A16,
    /// Q8_0 weights x f32 activations: a matrix stored in GGUF Q8_0 (SmolLM2's tied
    /// embedding / LM head) used as stored.
    W8A16,
    /// Q4_1 weights x INT8 activations.
    W4A8,
    /// Q4_1 weights x INT4 activations, the paper's SIMD 4-bit multiplier.
    W4A4Packed,
    /// INT4 activations widened to INT8 through the w4a8 inner loop.
    W4A4Widen,
    /// INT4 activations by table lookup indexed by weight nibbles (T-MAC style).
    W4A4Lut,
}

impl Variant {
    pub const ALL: [Variant; 7] = [
        Variant::F16,
        Variant::W4A16,
        Variant::W8A16,
        Variant::W4A8,
        Variant::W4A4Packed,
        Variant::W4A4Widen,
        Variant::W4A4Lut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::F16 => "f16",
            Variant::W4A16 => "w4a16",
            Variant::W8A16 => "w8a16",
            Variant::W4A8 => "w4a8",
            Variant::W4A4Packed => "w4a4-packed",
            Variant::W4A4Widen => "w4a4-widen",
            Variant::W4A4Lut => "w4a4-lut",
        }
    }

    /// Whether the variant takes per-32-block activation scales
    /// (`QuantizedActivations::block_scales`) on every ISA it has.
    pub fn supports_block_scales(self) -> bool {
        matches!(self, Variant::W4A8 | Variant::W4A4Widen)
    }

    /// Activation bits this variant consumes (16 = float).
    pub fn activation_bits(self) -> u8 {
        match self {
            Variant::F16 | Variant::W4A16 | Variant::W8A16 => 16,
            Variant::W4A8 => 8,
            Variant::W4A4Packed | Variant::W4A4Widen | Variant::W4A4Lut => 4,
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Variant::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| {
            let names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
            format!("unknown kernel variant `{s}` (known: {})", names.join(", "))
        })
    }
}

/// Instruction set a kernel implementation uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Avx2,
    /// AVX-512 F/BW/VL with VNNI (`vpdpbusd`), on top of AVX2/FMA/F16C (Ice Lake, Sapphire /
    /// Emerald Rapids, Zen 4+). Variants without 512-bit code of their own are not listed.
    Avx512,
    Neon,
}

impl Isa {
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon];
    /// Fastest first: what `best` and `best_isa` try in order.
    const BY_SPEED: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Neon];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Whether this CPU can run the ISA (runtime feature detection).
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.is_available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The fastest ISA this CPU supports.
    pub fn best() -> Isa {
        Isa::BY_SPEED.into_iter().find(|i| i.is_available()).unwrap_or(Isa::Scalar)
    }
}

/// Every (variant, ISA) pair this build implements and this CPU can run, in `Variant::ALL`
/// order, scalar first within a variant.
pub fn available() -> Vec<(Variant, Isa)> {
    Variant::ALL
        .into_iter()
        .flat_map(|v| Isa::ALL.into_iter().map(move |i| (v, i)))
        .filter(|&(v, i)| crate::variants::implemented(v, i) && i.is_available())
        .collect()
}

/// The fastest ISA this CPU runs `variant` on (scalar when nothing else is implemented).
pub fn best_isa(variant: Variant) -> Isa {
    Isa::BY_SPEED
        .into_iter()
        .find(|&i| crate::variants::implemented(variant, i) && i.is_available())
        .unwrap_or(Isa::Scalar)
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| format!("unknown ISA `{s}` (known: scalar, avx2, avx512, neon)"))
    }
}
