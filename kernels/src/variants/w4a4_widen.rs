//! W4A4-widen: INT4 activation codes (in [-7, 7], stored one per i8 by the quantizer, i.e.
//! already widened to bytes) run through the W4A8 kernels unchanged. It is the baseline the
//! 4-bit-specific variants (packed multiplier, table lookup) have to beat. On AVX-512 VNNI
//! it is the W4A8 `vpdpbusd` kernel.

use crate::matmul::{KernelError, Q4Matrix};
use crate::registry::{Isa, Variant};
use crate::variants::w4a8::W4A8;
use crate::variants::Prepared;

pub fn implemented(isa: Isa) -> bool {
    crate::variants::w4a8::implemented(isa)
}

pub fn prepare(isa: Isa, w: &Q4Matrix) -> Result<Box<dyn Prepared>, KernelError> {
    Ok(Box::new(W4A8::new(Variant::W4A4Widen, isa, w)?))
}
