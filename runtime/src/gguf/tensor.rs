//! A borrowed view of one tensor's bytes, and its conversion to f32 / f16 / typed blocks.
//! The block layouts and their dequantization live in `kernels::formats`.

use super::{GgmlType, GgufError, TensorInfo};
use half::{bf16, f16};
use kernels::formats::{BlockQ4_0, BlockQ4_1, BlockQ8_0, QK};
use std::path::Path;

/// Anything that hands out tensors by GGUF name: a GGUF file, or an HF safetensors
/// checkpoint whose names are mapped to GGUF's. Model code can be generic over it.
pub trait TensorSource {
    /// The file (or directory) the tensors come from, for error messages.
    fn source_path(&self) -> &Path;
    fn tensor_infos(&self) -> &[TensorInfo];
    fn tensor(&self, name: &str) -> Result<Tensor<'_>, GgufError>;
}

/// One tensor. `dims` has ne0 first (see [`TensorInfo`]); `data` is exactly the tensor's
/// bytes, little-endian, in ggml layout.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    pub path: &'a Path,
    pub name: &'a str,
    pub ty: GgmlType,
    pub dims: &'a [u64],
    pub data: &'a [u8],
}

impl<'a> Tensor<'a> {
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }

    fn err(&self, what: impl Into<String>) -> GgufError {
        GgufError::Tensor {
            path: self.path.to_path_buf(),
            name: self.name.into(),
            what: what.into(),
        }
    }

    /// `(cols, rows)` = `(ne0, ne1)` of a 2-D tensor: `rows` outputs of `cols` inputs.
    pub fn matrix_shape(&self) -> Result<(usize, usize), GgufError> {
        match *self.dims {
            [cols, rows] => Ok((cols as usize, rows as usize)),
            _ => Err(self.err(format!(
                "expected a 2-D tensor, found shape {:?}",
                self.dims
            ))),
        }
    }

    fn expect_type(&self, ty: GgmlType) -> Result<(), GgufError> {
        if self.ty == ty {
            Ok(())
        } else {
            Err(self.err(format!("expected type {ty}, found {}", self.ty)))
        }
    }

    /// All elements as f32 (F32, F16, BF16, Q8_0, Q4_0, Q4_1).
    pub fn to_f32(&self) -> Result<Vec<f32>, GgufError> {
        let n = self.n_elements();
        let mut out = Vec::with_capacity(n);
        let mut buf = [0f32; QK];
        match self.ty {
            GgmlType::F32 => out.extend(
                self.data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap())),
            ),
            GgmlType::F16 => out.extend(
                self.data
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes(b.try_into().unwrap()).to_f32()),
            ),
            GgmlType::BF16 => out.extend(
                self.data
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes(b.try_into().unwrap()).to_f32()),
            ),
            GgmlType::Q8_0 => {
                for b in self.data.chunks_exact(34) {
                    parse_q8_0(b).dequantize(&mut buf);
                    out.extend_from_slice(&buf);
                }
            }
            GgmlType::Q4_0 => {
                for b in self.data.chunks_exact(18) {
                    parse_q4_0(b).dequantize(&mut buf);
                    out.extend_from_slice(&buf);
                }
            }
            GgmlType::Q4_1 => {
                for b in self.data.chunks_exact(20) {
                    parse_q4_1(b).dequantize(&mut buf);
                    out.extend_from_slice(&buf);
                }
            }
            other => return Err(self.err(format!("dequantizing type {other} is not supported"))),
        }
        debug_assert_eq!(out.len(), n);
        Ok(out)
    }

    /// All elements as f16 (converted through f32 for quantized types).
    pub fn to_f16(&self) -> Result<Vec<f16>, GgufError> {
        if self.ty == GgmlType::F16 {
            return Ok(self
                .data
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes(b.try_into().unwrap()))
                .collect());
        }
        Ok(self.to_f32()?.into_iter().map(f16::from_f32).collect())
    }

    /// The Q4_1 blocks, copied (row-major: each row of ne0 values is ne0/32 blocks).
    pub fn q4_1_blocks(&self) -> Result<Vec<BlockQ4_1>, GgufError> {
        self.expect_type(GgmlType::Q4_1)?;
        Ok(self.data.chunks_exact(20).map(parse_q4_1).collect())
    }

    pub fn q4_0_blocks(&self) -> Result<Vec<BlockQ4_0>, GgufError> {
        self.expect_type(GgmlType::Q4_0)?;
        Ok(self.data.chunks_exact(18).map(parse_q4_0).collect())
    }

    pub fn q8_0_blocks(&self) -> Result<Vec<BlockQ8_0>, GgufError> {
        self.expect_type(GgmlType::Q8_0)?;
        Ok(self.data.chunks_exact(34).map(parse_q8_0).collect())
    }

    /// The Q4_1 blocks: borrowed in place when the data is aligned (every GGUF with an even
    /// alignment), copied otherwise.
    pub fn q4_1_cow(&self) -> Result<std::borrow::Cow<'a, [BlockQ4_1]>, GgufError> {
        match self.q4_1_slice() {
            Ok(s) => Ok(std::borrow::Cow::Borrowed(s)),
            Err(_) => Ok(std::borrow::Cow::Owned(self.q4_1_blocks()?)),
        }
    }

    /// The Q4_1 blocks in place, without copying. Needs the data 2-byte aligned (true for
    /// every GGUF with an even alignment) and a little-endian host.
    pub fn q4_1_slice(&self) -> Result<&'a [BlockQ4_1], GgufError> {
        self.expect_type(GgmlType::Q4_1)?;
        if cfg!(target_endian = "big")
            || !(self.data.as_ptr() as usize).is_multiple_of(std::mem::align_of::<BlockQ4_1>())
        {
            return Err(
                self.err("data is not aligned for in-place block access; use q4_1_blocks()")
            );
        }
        let n = self.data.len() / std::mem::size_of::<BlockQ4_1>();
        // SAFETY: BlockQ4_1 is repr(C), 20 bytes, made of f16/u8 fields for which every bit
        // pattern is valid; the pointer is aligned (checked) and n blocks lie within `data`.
        Ok(unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast::<BlockQ4_1>(), n) })
    }
}

fn parse_q4_1(b: &[u8]) -> BlockQ4_1 {
    BlockQ4_1 {
        d: f16::from_le_bytes([b[0], b[1]]),
        m: f16::from_le_bytes([b[2], b[3]]),
        qs: b[4..20].try_into().unwrap(),
    }
}

fn parse_q4_0(b: &[u8]) -> BlockQ4_0 {
    BlockQ4_0 {
        d: f16::from_le_bytes([b[0], b[1]]),
        qs: b[2..18].try_into().unwrap(),
    }
}

fn parse_q8_0(b: &[u8]) -> BlockQ8_0 {
    let mut qs = [0i8; QK];
    for (q, &x) in qs.iter_mut().zip(&b[2..34]) {
        *q = x as i8;
    }
    BlockQ8_0 {
        d: f16::from_le_bytes([b[0], b[1]]),
        qs,
    }
}
