//! The checked walk over GGUF bytes and the zero-copy lookups after it.

use super::error::{GgufError, GgufErrorKind};
use super::types::GgmlType;
use super::value::{read_value, Value, ValueType};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use crate::error::{Name, Shape};

/// Caps that bound what a file may declare. Each one turns a hostile size
/// into a distinct error before any work proportional to it is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgufLimits {
    /// Most tensors.
    pub max_tensors: u64,
    /// Most metadata entries.
    pub max_metadata: u64,
    /// Longest string (key, name or value), in bytes.
    pub max_string_len: u64,
    /// Longest array, in elements.
    pub max_array_len: u64,
    /// Deepest array nesting (1 allows arrays of scalars, 2 arrays of arrays).
    /// Values above [`MAX_DEPTH_CEILING`] act as that ceiling: values are read
    /// recursively, and the stack must stay bounded whatever the caller asks.
    pub max_depth: u32,
}

impl GgufLimits {
    /// Caps that admit every real model we know of with a wide margin:
    /// 65,536 tensors and metadata entries, 16 MiB strings, 64 Mi-element
    /// arrays, arrays nested four deep.
    pub const DEFAULT: GgufLimits = GgufLimits {
        max_tensors: 1 << 16,
        max_metadata: 1 << 16,
        max_string_len: 16 << 20,
        max_array_len: 64 << 20,
        max_depth: 4,
    };

    /// No caps beyond the bytes themselves (used to re-read validated data).
    pub(crate) const UNLIMITED: GgufLimits = GgufLimits {
        max_tensors: u64::MAX,
        max_metadata: u64::MAX,
        max_string_len: u64::MAX,
        max_array_len: u64::MAX,
        max_depth: u32::MAX,
    };
}

impl Default for GgufLimits {
    fn default() -> Self {
        GgufLimits::DEFAULT
    }
}

/// The deepest array nesting any [`GgufLimits`] allows (each level is a
/// stack frame of the reader).
pub const MAX_DEPTH_CEILING: u32 = 32;

/// A bounds-checked little-endian reader over a byte slice.
#[derive(Clone)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub(crate) fn at(bytes: &'a [u8], pos: usize) -> Self {
        Cursor {
            bytes,
            pos: pos.min(bytes.len()),
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn error_at(&self, offset: usize, kind: GgufErrorKind) -> GgufError {
        GgufError::at(offset, kind)
    }

    pub(crate) fn truncated(&self, needed: u64) -> GgufError {
        GgufError::at(
            self.pos,
            GgufErrorKind::Truncated {
                needed,
                available: self.bytes.len().saturating_sub(self.pos) as u64,
            },
        )
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: u64) -> Result<&'a [u8], GgufError> {
        let out = usize::try_from(n).ok().and_then(|n| {
            let end = self.pos.checked_add(n)?;
            Some((self.bytes.get(self.pos..end)?, end))
        });
        match out {
            Some((out, end)) => {
                self.pos = end;
                Ok(out)
            }
            None => Err(self.truncated(n)),
        }
    }

    /// The bytes from `start` to the current position.
    pub(crate) fn slice_from(&self, start: usize) -> &'a [u8] {
        self.bytes.get(start..self.pos).unwrap_or(&[])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let raw = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(raw);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, GgufError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A GGUF string: u64 length, then that many bytes.
    pub(crate) fn string(&mut self, cap: u64) -> Result<&'a [u8], GgufError> {
        let at = self.pos;
        let len = self.u64()?;
        if len > cap {
            return Err(self.error_at(at, GgufErrorKind::StringTooLong { len, cap }));
        }
        self.take(len)
    }

    /// A key or tensor name: a string that is non-empty UTF-8.
    fn name(&mut self, cap: u64) -> Result<&'a str, GgufError> {
        let at = self.pos;
        let raw = self.string(cap)?;
        if raw.is_empty() {
            return Err(self.error_at(at, GgufErrorKind::EmptyName));
        }
        core::str::from_utf8(raw).map_err(|_| self.error_at(at, GgufErrorKind::BadUtf8))
    }
}

/// A parsed GGUF file: offsets into the caller's bytes, nothing copied.
#[derive(Clone, Copy, Debug)]
pub struct Gguf<'a> {
    bytes: &'a [u8],
    version: u32,
    tensor_count: u64,
    metadata_count: u64,
    metadata_start: usize,
    tensors_start: usize,
    data_start: usize,
    alignment: u64,
}

/// One entry of the tensor table.
#[derive(Clone, Copy, Debug)]
pub struct TensorInfo<'a> {
    /// Position in the tensor table.
    pub index: u32,
    /// Tensor name.
    pub name: &'a str,
    /// Extents, innermost (row length) first.
    pub shape: Shape,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Offset of the data from the start of the file.
    pub file_offset: u64,
    /// The tensor's bytes.
    pub data: &'a [u8],
}

impl TensorInfo<'_> {
    /// Number of elements (checked for overflow when the file was parsed;
    /// saturates for a hand-made shape whose product does not fit).
    pub fn n_elements(&self) -> u64 {
        self.shape
            .as_slice()
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX)
    }

    /// Number of bytes.
    pub fn n_bytes(&self) -> u64 {
        self.data.len() as u64
    }
}

impl<'a> Gguf<'a> {
    /// Parses and validates `bytes` with [`GgufLimits::DEFAULT`].
    pub fn parse(bytes: &'a [u8]) -> Result<Gguf<'a>, GgufError> {
        Gguf::parse_with_limits(bytes, &GgufLimits::DEFAULT)
    }

    /// Parses and validates `bytes`: header, every metadata value, every
    /// tensor entry, and that every tensor's data lies in the file, aligned.
    pub fn parse_with_limits(bytes: &'a [u8], limits: &GgufLimits) -> Result<Gguf<'a>, GgufError> {
        let mut c = Cursor::new(bytes);
        let magic: [u8; 4] = c.array()?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::at(0, GgufErrorKind::BadMagic { found: magic }));
        }
        let version = c.u32()?;
        if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            return Err(GgufError::at(4, GgufErrorKind::BigEndian));
        }
        if version != 2 && version != 3 {
            return Err(GgufError::at(
                4,
                GgufErrorKind::UnsupportedVersion { version },
            ));
        }
        let tensor_count = c.u64()?;
        if tensor_count > limits.max_tensors {
            return Err(GgufError::at(
                8,
                GgufErrorKind::TooManyTensors {
                    count: tensor_count,
                    cap: limits.max_tensors,
                },
            ));
        }
        let metadata_count = c.u64()?;
        if metadata_count > limits.max_metadata {
            return Err(GgufError::at(
                16,
                GgufErrorKind::TooManyMetadata {
                    count: metadata_count,
                    cap: limits.max_metadata,
                },
            ));
        }
        let metadata_start = c.pos();

        // Metadata: validate every entry, pick up the alignment.
        let mut alignment = DEFAULT_ALIGNMENT;
        for _ in 0..metadata_count {
            let (key, value, at) = read_entry(&mut c, limits)?;
            if key == "general.alignment" {
                alignment = match value {
                    Value::U32(v) if v != 0 && v.is_power_of_two() => u64::from(v),
                    other => {
                        return Err(GgufError::at(
                            at,
                            GgufErrorKind::BadAlignment {
                                value: other.as_u64().unwrap_or(0),
                            },
                        ))
                    }
                };
            }
        }
        let tensors_start = c.pos();

        // Tensor table, first pass: shapes, types, sizes.
        for index in 0..tensor_count {
            read_tensor_entry(&mut c, tensor_index(index), limits)?;
        }
        let infos_end = c.pos() as u64;
        let data_start = infos_end
            .checked_add(alignment - 1)
            .map(|v| v & !(alignment - 1))
            .ok_or(GgufError::at(
                c.pos(),
                GgufErrorKind::DataPastEnd {
                    data_start: u64::MAX,
                },
            ))?;
        let file_len = bytes.len() as u64;
        if data_start > file_len && tensor_count > 0 {
            return Err(GgufError::at(
                c.pos(),
                GgufErrorKind::DataPastEnd { data_start },
            ));
        }
        let data_start = data_start.min(file_len) as usize;
        let data_len = file_len - data_start as u64;

        // Second pass: every tensor's data is aligned and inside the file.
        let mut c = Cursor::at(bytes, tensors_start);
        for index in 0..tensor_count {
            let at = c.pos();
            let index = tensor_index(index);
            let entry = read_tensor_entry(&mut c, index, limits)?;
            if entry.offset % alignment != 0 {
                return Err(GgufError::at(
                    at,
                    GgufErrorKind::TensorMisaligned {
                        tensor: index,
                        offset: entry.offset,
                        alignment,
                    },
                ));
            }
            let end = entry.offset.checked_add(entry.n_bytes);
            match end {
                Some(end) if end <= data_len => {}
                _ => {
                    return Err(GgufError::at(
                        at,
                        GgufErrorKind::TensorOutOfBounds {
                            tensor: index,
                            end: end.unwrap_or(u64::MAX),
                            data_len,
                        },
                    ))
                }
            }
        }

        Ok(Gguf {
            bytes,
            version,
            tensor_count,
            metadata_count,
            metadata_start,
            tensors_start,
            data_start,
            alignment,
        })
    }

    /// The bytes the file was parsed from.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> u64 {
        self.tensor_count
    }

    /// Number of metadata entries.
    pub fn metadata_count(&self) -> u64 {
        self.metadata_count
    }

    /// Tensor data alignment.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset of the data section from the start of the file.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// Bytes before the data section (header, metadata, tensor table, padding).
    pub fn header_bytes(&self) -> usize {
        self.data_start
    }

    /// Iterates over metadata entries in file order.
    pub fn metadata(&self) -> MetadataIter<'a> {
        MetadataIter {
            cursor: Cursor::at(self.bytes, self.metadata_start),
            left: self.metadata_count,
        }
    }

    /// The value of metadata `key`; `Ok(None)` if absent, an error if the
    /// key occurs twice.
    pub fn get(&self, key: &str) -> Result<Option<Value<'a>>, GgufError> {
        self.find_metadata(|k| k == key)
    }

    /// The value of `"{prefix}.{suffix}"` without building the key.
    pub fn get_arch(&self, prefix: &str, suffix: &str) -> Result<Option<Value<'a>>, GgufError> {
        self.find_metadata(|k| {
            k.len() == prefix.len() + 1 + suffix.len()
                && k.starts_with(prefix)
                && k.as_bytes()[prefix.len()] == b'.'
                && k.ends_with(suffix)
        })
    }

    fn find_metadata(
        &self,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<Option<Value<'a>>, GgufError> {
        let mut found: Option<(Value<'a>, &'a str)> = None;
        let mut it = self.metadata();
        loop {
            let at = it.cursor.pos();
            let Some((key, value)) = it.next() else { break };
            if matches(key) {
                if let Some((_, first)) = found {
                    return Err(GgufError::at(
                        at,
                        GgufErrorKind::DuplicateKey {
                            key: Name::new(first),
                        },
                    ));
                }
                found = Some((value, key));
            }
        }
        Ok(found.map(|(v, _)| v))
    }

    /// Iterates over the tensor table in file order.
    pub fn tensors(&self) -> TensorIter<'a> {
        TensorIter {
            gguf: *self,
            cursor: Cursor::at(self.bytes, self.tensors_start),
            next_index: 0,
        }
    }

    /// The tensor named `name`; `Ok(None)` if absent, an error if two
    /// tensors share the name.
    pub fn tensor(&self, name: &str) -> Result<Option<TensorInfo<'a>>, GgufError> {
        let mut found: Option<TensorInfo<'a>> = None;
        let mut it = self.tensors();
        loop {
            let at = it.entry_offset();
            let Some(t) = it.next() else { break };
            if t.name == name {
                if found.is_some() {
                    return Err(GgufError::duplicate_tensor(at, name));
                }
                found = Some(t);
            }
        }
        Ok(found)
    }
}

/// A tensor's position as errors report it (saturating: a caller's
/// [`GgufLimits::max_tensors`] may exceed `u32`).
fn tensor_index(index: u64) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// Reads one metadata entry: key, type, value. Returns the start offset too.
fn read_entry<'a>(
    c: &mut Cursor<'a>,
    limits: &GgufLimits,
) -> Result<(&'a str, Value<'a>, usize), GgufError> {
    let at = c.pos();
    let key = c.name(limits.max_string_len)?;
    let type_at = c.pos();
    let type_id = c.u32()?;
    let ty = ValueType::from_id(type_id)
        .ok_or_else(|| c.error_at(type_at, GgufErrorKind::BadValueType { id: type_id }))?;
    let value = read_value(c, ty, 0, limits)?;
    Ok((key, value, at))
}

/// A tensor table entry before its data is located.
struct TensorEntry<'a> {
    name: &'a str,
    shape: Shape,
    ggml_type: GgmlType,
    offset: u64,
    n_bytes: u64,
}

fn read_tensor_entry<'a>(
    c: &mut Cursor<'a>,
    tensor: u32,
    limits: &GgufLimits,
) -> Result<TensorEntry<'a>, GgufError> {
    let name = c.name(limits.max_string_len)?;
    let dims_at = c.pos();
    let n_dims = c.u32()?;
    if n_dims > MAX_DIMS {
        return Err(c.error_at(dims_at, GgufErrorKind::TooManyDims { tensor, n_dims }));
    }
    let mut dims = [1u64; 4];
    let mut n_elements: u64 = 1;
    for slot in dims.iter_mut().take(n_dims as usize) {
        let dim = c.u64()?;
        if dim > i64::MAX as u64 {
            return Err(c.error_at(dims_at, GgufErrorKind::DimTooLarge { tensor, dim }));
        }
        *slot = dim;
        n_elements = n_elements
            .checked_mul(dim)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| c.error_at(dims_at, GgufErrorKind::DimsOverflow { tensor }))?;
    }
    let type_at = c.pos();
    let type_id = c.u32()?;
    let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
        c.error_at(
            type_at,
            GgufErrorKind::UnknownTensorType {
                tensor,
                id: type_id,
            },
        )
    })?;
    let block = ggml_type.block_size();
    if dims[0] % u64::from(block) != 0 {
        return Err(c.error_at(
            dims_at,
            GgufErrorKind::RowNotBlockAligned {
                tensor,
                ne0: dims[0],
                block,
            },
        ));
    }
    let n_bytes = (n_elements / u64::from(block))
        .checked_mul(u64::from(ggml_type.type_size()))
        .ok_or_else(|| c.error_at(dims_at, GgufErrorKind::DimsOverflow { tensor }))?;
    let offset = c.u64()?;
    Ok(TensorEntry {
        name,
        shape: Shape {
            n_dims: n_dims as u8,
            dims,
        },
        ggml_type,
        offset,
        n_bytes,
    })
}

/// Iterator over metadata entries: `(key, value)`.
pub struct MetadataIter<'a> {
    cursor: Cursor<'a>,
    left: u64,
}

impl<'a> Iterator for MetadataIter<'a> {
    type Item = (&'a str, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated by `parse`; a failure here cannot happen and ends iteration.
        match read_entry(&mut self.cursor, &GgufLimits::UNLIMITED) {
            Ok((k, v, _)) => Some((k, v)),
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }
}

/// Iterator over the tensor table.
pub struct TensorIter<'a> {
    gguf: Gguf<'a>,
    cursor: Cursor<'a>,
    next_index: u64,
}

impl TensorIter<'_> {
    /// File offset of the next entry (where the one `next` returns starts).
    pub fn entry_offset(&self) -> usize {
        self.cursor.pos()
    }
}

impl<'a> Iterator for TensorIter<'a> {
    type Item = TensorInfo<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next_index >= self.gguf.tensor_count {
            return None;
        }
        let index = tensor_index(self.next_index);
        self.next_index += 1;
        // Validated by `parse`: the entry reads and its data is in bounds.
        let entry = read_tensor_entry(&mut self.cursor, index, &GgufLimits::UNLIMITED).ok()?;
        let start = (self.gguf.data_start as u64).checked_add(entry.offset)?;
        let end = start.checked_add(entry.n_bytes)?;
        let data = self
            .gguf
            .bytes
            .get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)?;
        Some(TensorInfo {
            index,
            name: entry.name,
            shape: entry.shape,
            ggml_type: entry.ggml_type,
            offset: entry.offset,
            file_offset: start,
            data,
        })
    }
}
