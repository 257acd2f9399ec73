//! A named matmul site holding its prepared kernel.

use crate::plan::Site;
use kernels::{Activations, Matmul};

/// One matmul site: `y (m x n) = x (m x k) · Wᵀ`.
pub struct Linear {
    pub site: Site,
    /// `None` for the LM head.
    pub layer: Option<usize>,
    pub mm: Matmul,
    /// Added to every output row (OPT/BLOOM linears); `None` for llama.
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    pub fn n(&self) -> usize {
        self.mm.n()
    }
    pub fn k(&self) -> usize {
        self.mm.k()
    }

    /// The float path: f32 activations into the kernel as they are.
    pub fn forward_f32(&self, x: &[f32], y: &mut [f32]) {
        let m = x.len() / self.k();
        self.mm.run(Activations::F32 { x, m }, y);
        self.add_bias(y);
    }

    /// Adds the bias, if any, to every output row (for plan hooks that call the kernel directly).
    pub fn add_bias(&self, y: &mut [f32]) {
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(b.len()) {
                super::ops::add_in_place(row, b);
            }
        }
    }
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Linear({:?} {} {:?})", self.layer, self.site, self.mm)
    }
}
