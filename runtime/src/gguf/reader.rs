//! Parsing of the GGUF header, metadata and tensor infos from a byte slice. Errors are
//! plain descriptions (with byte offsets); `Gguf::open` adds the file path.

use super::{GgmlType, TensorInfo, Value, ValueType, DEFAULT_ALIGNMENT};
use std::collections::HashSet;

/// magic + version + tensor count + metadata count.
pub(super) const HEADER_LEN: u64 = 4 + 4 + 8 + 8;
/// Arrays may nest; deeper than this is treated as hostile (it would only cost stack).
const MAX_ARRAY_DEPTH: usize = 8;
/// ggml's GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// Metadata arrays longer than this are refused: each element costs a 32-byte `Value` in
/// memory, so a file of 1-byte elements could otherwise make the reader allocate 32x its
/// size. Real vocabularies are < 1M entries.
const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Sanity bound on `general.alignment`.
const MAX_ALIGNMENT: u64 = 1 << 16;

pub(super) struct Parsed {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "{what} at byte {} needs {n} bytes but only {} remain (file is {} bytes; truncated?)",
                self.pos,
                self.remaining(),
                self.buf.len()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("take returns N bytes"))
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let at = self.pos;
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| {
            format!(
                "{what} at byte {at} is not valid UTF-8 (at byte {} of the string)",
                e.utf8_error().valid_up_to()
            )
        })
    }

    /// Checks that `count` items of at least `min_size` bytes each can still fit, so that
    /// allocations are bounded by the file size.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<usize, String> {
        match count.checked_mul(min_size) {
            Some(need) if need <= self.remaining() => Ok(count as usize),
            _ => Err(format!(
                "{what} count {count} at byte {} cannot fit in the {} bytes that remain (file is {} bytes; truncated or corrupt?)",
                self.pos,
                self.remaining(),
                self.buf.len()
            )),
        }
    }

    fn value(&mut self, ty: ValueType, depth: usize, what: &str) -> Result<Value, String> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.u8(what)?),
            ValueType::I8 => Value::I8(self.u8(what)? as i8),
            ValueType::U16 => Value::U16(self.u16(what)?),
            ValueType::I16 => Value::I16(self.u16(what)? as i16),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(self.u32(what)? as i32),
            ValueType::F32 => Value::F32(f32::from_bits(self.u32(what)?)),
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(self.u64(what)? as i64),
            ValueType::F64 => Value::F64(f64::from_bits(self.u64(what)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.u8(what)? {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(format!(
                            "{what} at byte {at}: bool byte is {b}, expected 0 or 1"
                        ))
                    }
                }
            }
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format!(
                        "{what} at byte {}: arrays nested deeper than {MAX_ARRAY_DEPTH}",
                        self.pos
                    ));
                }
                let at = self.pos;
                let elem_id = self.u32(what)?;
                let elem = ValueType::from_id(elem_id).ok_or_else(|| {
                    format!("{what} at byte {at}: unknown array element type id {elem_id}")
                })?;
                let count = self.u64(what)?;
                if count > MAX_ARRAY_LEN {
                    return Err(format!(
                        "{what} at byte {at}: array of {count} elements exceeds the limit of {MAX_ARRAY_LEN}"
                    ));
                }
                let n =
                    self.check_count(count, elem.min_encoded_size(), &format!("{what}: array"))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1, what)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

pub(super) fn parse(buf: &[u8]) -> Result<Parsed, String> {
    let mut c = Cursor { buf, pos: 0 };
    let magic = c.array::<4>("magic")?;
    if &magic != b"GGUF" {
        return Err(format!(
            "bad magic \"{}\" (expected \"GGUF\"; not a GGUF file)",
            magic.escape_ascii()
        ));
    }
    let version = c.u32("version")?;
    if version == 1 {
        return Err(
            "GGUF version 1 is not supported (re-convert the model; versions 2 and 3 are)".into(),
        );
    }
    if version != 2 && version != 3 {
        let hint = if version.swap_bytes() <= 3 {
            " (a big-endian GGUF? only little-endian is supported)"
        } else {
            ""
        };
        return Err(format!(
            "unsupported GGUF version {version}{hint}; versions 2 and 3 are supported"
        ));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    // A key-value needs at least a key length (8), a type (4) and a 1-byte value.
    let n_kv = c.check_count(n_kv, 8 + 4 + 1, "metadata")?;
    // A tensor info needs at least a name length (8), n_dims (4), one dim (8), type (4), offset (8).
    let n_tensors = c.check_count(n_tensors, 8 + 4 + 8 + 4 + 8, "tensor")?;

    let mut metadata = Vec::with_capacity(n_kv);
    let mut keys = HashSet::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = c.string(&format!("metadata key #{i}"))?;
        let at = c.pos;
        let ty_id = c.u32(&format!("type of `{key}`"))?;
        let ty = ValueType::from_id(ty_id).ok_or_else(|| {
            format!("metadata `{key}` at byte {at}: unknown value type id {ty_id}")
        })?;
        let value = c.value(ty, 0, &format!("value of `{key}`"))?;
        if !keys.insert(key.clone()) {
            return Err(format!("duplicate metadata key `{key}`"));
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_i128() {
            Some(a) if a > 0 && (a as u128).is_power_of_two() && a as u64 <= MAX_ALIGNMENT => {
                a as u64
            }
            _ => {
                return Err(format!(
                    "general.alignment is {}, expected a power of two <= {MAX_ALIGNMENT}",
                    v.summary(30)
                ))
            }
        },
    };

    let mut infos = Vec::with_capacity(n_tensors);
    let mut names = HashSet::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = c.string(&format!("name of tensor #{i}"))?;
        let what = format!("tensor `{name}`");
        let n_dims = c.u32(&what)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(format!(
                "{what}: {n_dims} dimensions, expected 1 to {MAX_DIMS}"
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64(&what)?);
        }
        let ty = GgmlType::from_id(c.u32(&what)?);
        let offset = c.u64(&what)?;
        if !names.insert(name.clone()) {
            return Err(format!("duplicate tensor name `{name}`"));
        }
        infos.push((name, ty, dims, offset));
    }

    let header_end = c.pos as u64;
    let data_offset = header_end
        .checked_add(alignment - 1)
        .map(|x| x / alignment * alignment)
        .ok_or("data offset overflows")?;
    let file_len = buf.len() as u64;
    if n_tensors > 0 && data_offset > file_len {
        return Err(format!(
            "tensor data section would start at byte {data_offset}, past the end of the file ({file_len} bytes; truncated?)"
        ));
    }
    let data_len = file_len.saturating_sub(data_offset);

    let mut tensors = Vec::with_capacity(n_tensors);
    for (name, ty, dims, offset) in infos {
        let shape = format!("{dims:?}");
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor `{name}`: element count of shape {shape} overflows"))?;
        if !offset.is_multiple_of(alignment) {
            return Err(format!("tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}"));
        }
        let n_bytes = match ty.block_geometry() {
            None => {
                if offset > data_len {
                    return Err(format!(
                        "tensor `{name}`: data offset {offset} is past the end of the data section ({data_len} bytes)"
                    ));
                }
                None
            }
            Some((block, size)) => {
                if !dims[0].is_multiple_of(block) {
                    return Err(format!(
                        "tensor `{name}`: first dimension {} is not a multiple of {ty}'s block size {block}",
                        dims[0]
                    ));
                }
                let n_bytes = (n_elements / block).checked_mul(size).ok_or_else(|| {
                    format!("tensor `{name}`: byte size of shape {shape} overflows")
                })?;
                let end = offset.checked_add(n_bytes);
                if end.is_none_or(|e| e > data_len) {
                    return Err(format!(
                        "tensor `{name}` ({ty} {shape}): data at offset {offset}, {n_bytes} bytes, extends past the end \
                         of the file (data section holds {data_len} bytes; truncated?)"
                    ));
                }
                Some(n_bytes)
            }
        };
        tensors.push(TensorInfo {
            name,
            ty,
            dims,
            offset,
            n_bytes,
        });
    }

    Ok(Parsed {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}
