//! A GGUF v3 writer, mainly for building tiny synthetic models in tests. Tensors are laid
//! out in insertion order, each at an offset aligned to the file's alignment.

use super::{GgmlType, Value, DEFAULT_ALIGNMENT};
use half::f16;
use kernels::formats::{BlockQ4_1, QK};
use std::io::{self, Write};
use std::path::Path;

#[derive(Clone, Debug)]
struct PendingTensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

/// Builder: add metadata and tensors, then `write(path)` (atomic) or `to_bytes()`.
#[derive(Clone, Debug)]
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// GGUF version written in the header (2 or 3; the layout is the same).
    pub fn version(mut self, v: u32) -> Self {
        self.version = v;
        self
    }

    /// Data alignment; also recorded as `general.alignment` when it is not the default.
    pub fn alignment(mut self, a: u64) -> Self {
        assert!(a.is_power_of_two(), "alignment must be a power of two");
        self.alignment = a;
        self.metadata.retain(|(k, _)| k != "general.alignment");
        if a != DEFAULT_ALIGNMENT {
            self.metadata
                .push(("general.alignment".into(), Value::U32(a as u32)));
        }
        self
    }

    /// Sets (or replaces) a metadata key.
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key.into(), value));
        }
        self
    }

    pub fn set_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.set(key, Value::U32(v))
    }
    pub fn set_f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.set(key, Value::F32(v))
    }
    pub fn set_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.set(key, Value::String(v.into()))
    }
    pub fn set_bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.set(key, Value::Bool(v))
    }
    pub fn set_str_array<S: AsRef<str>>(&mut self, key: &str, v: &[S]) -> &mut Self {
        let items = v.iter().map(|s| Value::String(s.as_ref().into())).collect();
        self.set(key, Value::Array(super::ValueType::String, items))
    }
    pub fn set_i32_array(&mut self, key: &str, v: &[i32]) -> &mut Self {
        self.set(
            key,
            Value::Array(
                super::ValueType::I32,
                v.iter().map(|&x| Value::I32(x)).collect(),
            ),
        )
    }

    /// Removes a metadata key (no-op when absent).
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self
    }

    /// Removes a tensor (no-op when absent), e.g. to replace it with a different one.
    pub fn remove_tensor(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|t| t.name != name);
        self
    }

    /// Raw tensor bytes of any type; `dims` has ne0 first. The caller is responsible for the
    /// byte count (tests use this to build deliberately odd files).
    pub fn add_raw(&mut self, name: &str, ty: GgmlType, dims: &[u64], data: Vec<u8>) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.into(),
            ty,
            dims: dims.to_vec(),
            data,
        });
        self
    }

    pub fn add_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        check_len(name, dims, values.len(), 1);
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_raw(name, GgmlType::F32, dims, data)
    }

    pub fn add_f16(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        check_len(name, dims, values.len(), 1);
        let data = values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        self.add_raw(name, GgmlType::F16, dims, data)
    }

    /// Quantizes to Q8_0 (`d = amax / 127`, `q = round(x / d)`, as ggml does).
    pub fn add_q8_0(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        check_len(name, dims, values.len(), QK);
        let mut data = Vec::with_capacity(values.len() / QK * 34);
        for block in values.chunks_exact(QK) {
            let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            data.extend_from_slice(&f16::from_f32(d).to_le_bytes());
            data.extend(
                block
                    .iter()
                    .map(|v| (v * id).round().clamp(-127.0, 127.0) as i8 as u8),
            );
        }
        self.add_raw(name, GgmlType::Q8_0, dims, data)
    }

    /// Quantizes to Q4_1 with `kernels`' round-to-nearest quantizer.
    pub fn add_q4_1(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        check_len(name, dims, values.len(), QK);
        let blocks: Vec<BlockQ4_1> = values
            .chunks_exact(QK)
            .map(|b| BlockQ4_1::quantize(b.try_into().unwrap()))
            .collect();
        self.add_q4_1_blocks(name, dims, &blocks)
    }

    /// Q4_1 blocks as given (row-major, ne0/32 blocks per row).
    pub fn add_q4_1_blocks(&mut self, name: &str, dims: &[u64], blocks: &[BlockQ4_1]) -> &mut Self {
        check_len(name, dims, blocks.len() * QK, QK);
        let mut data = Vec::with_capacity(blocks.len() * 20);
        for b in blocks {
            data.extend_from_slice(&b.d.to_le_bytes());
            data.extend_from_slice(&b.m.to_le_bytes());
            data.extend_from_slice(&b.qs);
        }
        self.add_raw(name, GgmlType::Q4_1, dims, data)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend_from_slice(&v.value_type().id().to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = align(offset + t.data.len() as u64, self.alignment);
        }
        if !self.tensors.is_empty() {
            out.resize(align(out.len() as u64, self.alignment) as usize, 0);
        }
        let data_start = out.len();
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + off as usize, 0);
            out.extend_from_slice(&t.data);
        }
        out
    }

    /// Writes the file atomically (a temporary file beside it, then rename).
    pub fn write(&self, path: impl AsRef<Path>) -> io::Result<()> {
        write_atomic(path.as_ref(), &self.to_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// readers never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn check_len(name: &str, dims: &[u64], n: usize, block: usize) {
    let want: u64 = dims.iter().product();
    assert_eq!(
        want, n as u64,
        "tensor {name}: shape {dims:?} needs {want} values, got {n}"
    );
    assert!(
        dims.first()
            .is_some_and(|d| (*d as usize).is_multiple_of(block)),
        "tensor {name}: ne0 must be a multiple of {block}"
    );
}

fn align(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(t, items) => {
            out.extend_from_slice(&t.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                assert_eq!(
                    it.value_type(),
                    *t,
                    "array item type differs from the array's element type"
                );
                put_value(out, it);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}
