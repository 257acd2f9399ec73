//! GGUF (v2/v3) model files: a hardened reader over a memory map, tensor access and
//! dequantization, and a writer for building small synthetic models in tests.
//!
//! Every count, length, offset and dimension in the file is checked against the file size
//! before it is used, so a truncated or hostile file is an error naming the file, never a
//! panic, an out-of-bounds read or a huge allocation.

mod reader;
pub mod synthetic;
mod tensor;
mod types;
mod value;
pub mod writer;

pub use tensor::{Tensor, TensorSource};
pub use types::GgmlType;
pub use value::{Value, ValueType};
pub use writer::GgufWriter;

use memmap2::Mmap;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Alignment of the tensor data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: malformed GGUF: {what}", .path.display())]
    Malformed { path: PathBuf, what: String },
    #[error("{}: metadata key `{key}` is missing", .path.display())]
    MissingKey { path: PathBuf, key: String },
    #[error("{}: metadata key `{key}` has {actual}, expected {expected}", .path.display())]
    WrongType {
        path: PathBuf,
        key: String,
        expected: String,
        actual: String,
    },
    #[error("{}: tensor `{name}` not found", .path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("{}: tensor `{name}`: {what}", .path.display())]
    Tensor {
        path: PathBuf,
        name: String,
        what: String,
    },
}

/// One tensor's header entry. `dims` has ne0 (the contiguous, innermost dimension) first,
/// as GGUF stores it: a matrix with `rows` outputs of `cols` inputs is `[cols, rows]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub ty: GgmlType,
    pub dims: Vec<u64>,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Bytes of data; `None` when the type is unknown (its size cannot be computed).
    pub n_bytes: Option<u64>,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        // Validated at open: the product fits in u64.
        self.dims.iter().product()
    }
}

/// An open GGUF file. Tensor data stays in the memory map; accessors borrow from it.
pub struct Gguf {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl Gguf {
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |error| GgufError::Io {
            path: path.clone(),
            error,
        };
        let file = File::open(&path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        if len < reader::HEADER_LEN {
            return Err(GgufError::Malformed {
                path,
                what: format!(
                    "file is {len} bytes, too short for a GGUF header ({} bytes)",
                    reader::HEADER_LEN
                ),
            });
        }
        // SAFETY: the map is read-only; the usual mmap caveat applies (another process
        // truncating the file while it is open can fault), as with every mmap-based loader.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        let parsed = reader::parse(&mmap).map_err(|what| GgufError::Malformed {
            path: path.clone(),
            what,
        })?;
        let key_index = parsed
            .metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let tensor_index = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Gguf {
            path,
            mmap,
            version: parsed.version,
            metadata: parsed.metadata,
            key_index,
            tensors: parsed.tensors,
            tensor_index,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// File offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn file_len(&self) -> u64 {
        self.mmap.len() as u64
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.into(),
        })
    }

    fn wrong_type(&self, key: &str, expected: &str, v: &Value) -> GgufError {
        let actual = match v {
            Value::Array(t, items) => format!("an array of {} {t}", items.len()),
            other => format!("{} {}", other.value_type(), other.summary(40)),
        };
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.into(),
            expected: expected.into(),
            actual,
        }
    }

    fn get_int<T: TryFrom<i128>>(&self, key: &str, expected: &str) -> Result<T, GgufError> {
        let v = self.require(key)?;
        v.as_i128()
            .and_then(|i| T::try_from(i).ok())
            .ok_or_else(|| self.wrong_type(key, expected, v))
    }

    /// Any integer type whose value fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get_int(key, "an integer fitting in u32")
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_int(key, "an integer fitting in u64")
    }

    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.get_int(key, "an integer fitting in i64")
    }

    /// F32, F64 or an integer, as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| self.wrong_type(key, "a number", v))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str()
            .ok_or_else(|| self.wrong_type(key, "a string", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.require(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(self.wrong_type(key, "a bool", v)),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<(ValueType, &[Value]), GgufError> {
        let v = self.require(key)?;
        v.as_array()
            .ok_or_else(|| self.wrong_type(key, "an array", v))
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let v = self.require(key)?;
        match v {
            Value::Array(ValueType::String, items) => Ok(items
                .iter()
                .map(|s| s.as_str().expect("reader checks element types"))
                .collect()),
            _ => Err(self.wrong_type(key, "an array of string", v)),
        }
    }

    /// An array of any integer type whose values fit in i64 (e.g. token types, stored as i32).
    pub fn get_int_array(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        let v = self.require(key)?;
        let bad = || self.wrong_type(key, "an array of integers", v);
        let (_, items) = v.as_array().ok_or_else(bad)?;
        items
            .iter()
            .map(|x| {
                x.as_i128()
                    .and_then(|i| i64::try_from(i).ok())
                    .ok_or_else(bad)
            })
            .collect()
    }

    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's type, shape and bytes. Errors when absent, or when its type is unknown
    /// (the data size cannot be known).
    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>, GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                name: name.into(),
            })?;
        let n_bytes = info.n_bytes.ok_or_else(|| GgufError::Tensor {
            path: self.path.clone(),
            name: name.into(),
            what: format!("unsupported tensor type id {}", info.ty.id()),
        })?;
        // Bounds were checked at open; the conversions cannot fail on a mapped file.
        let start = (self.data_offset + info.offset) as usize;
        let data = &self.mmap[start..start + n_bytes as usize];
        Ok(Tensor {
            path: &self.path,
            name: &info.name,
            ty: info.ty,
            dims: &info.dims,
            data,
        })
    }
}

impl TensorSource for Gguf {
    fn source_path(&self) -> &Path {
        self.path()
    }
    fn tensor_infos(&self) -> &[TensorInfo] {
        Gguf::tensor_infos(self)
    }
    fn tensor(&self, name: &str) -> Result<Tensor<'_>, GgufError> {
        Gguf::tensor(self, name)
    }
}
