//! Activation quantization as the plan asks for it: per-site quantizers (dynamic per-token,
//! static per-tensor with power-of-two channel factors), the factor search and its folding
//! into the weights, the 4-bit log2 softmax, and INT8 helpers for Q·Kᵀ and P·V.

pub mod act;
pub mod attn;
pub mod clip;
pub mod idot;
pub mod softmax;
pub mod trip;

pub use act::{ActQuantizer, MixedRows};
pub use trip::ChannelFactors;
