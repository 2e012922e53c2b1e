//! A streaming GGUF (version 3) writer over any byte [`Sink`].
//!
//! The caller declares the counts up front, then writes, in order: every
//! metadata entry, every tensor entry (offsets are assigned by the writer,
//! each tensor padded to the alignment), then every tensor's bytes in the
//! same order. The writer checks the order, the counts and each tensor's
//! byte length, so it cannot produce a file its own reader would refuse.

use super::error::{GgufError, GgufErrorKind};
use super::types::GgmlType;
use super::value::{Value, ValueType};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};

/// Where written bytes go.
pub trait Sink {
    /// Appends `bytes`.
    fn write(&mut self, bytes: &[u8]) -> Result<(), GgufError>;
}

/// A sink that only counts bytes (to size a file before writing it).
#[derive(Debug, Default)]
pub struct CountingSink {
    /// Bytes written so far.
    pub bytes: u64,
}

impl Sink for CountingSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.bytes = self.bytes.saturating_add(bytes.len() as u64);
        Ok(())
    }
}

/// A sink over a caller buffer.
pub struct SliceSink<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> SliceSink<'b> {
    /// A sink writing from the start of `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        SliceSink { buf, len: 0 }
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Sink for SliceSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        let room = self.buf.len() - self.len;
        if bytes.len() > room {
            return Err(GgufError::at(
                self.len,
                GgufErrorKind::Truncated {
                    needed: bytes.len() as u64,
                    available: room as u64,
                },
            ));
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Metadata,
    Tensors,
    Data,
}

/// Writes a GGUF v3 file in one pass.
pub struct GgufWriter<S: Sink> {
    sink: S,
    written: u64,
    phase: Phase,
    alignment: u64,
    metadata_left: u64,
    tensors_declared: u64,
    infos_left: u64,
    /// Data bytes assigned to the tensor entries written so far (padded).
    data_assigned: u64,
    /// Data bytes written so far (padded).
    data_written: u64,
    /// Tensors whose data is still to come.
    data_tensors_left: u64,
}

fn misuse(at: u64, what: &'static str) -> GgufError {
    GgufError {
        kind: GgufErrorKind::WriterMisuse { what },
        offset: at,
    }
}

impl<S: Sink> GgufWriter<S> {
    /// Starts a file with `tensor_count` tensors and `metadata_count`
    /// metadata entries (include `general.alignment` in the count if you
    /// write it). Tensor data is aligned to `alignment` (a power of two; use
    /// [`DEFAULT_ALIGNMENT`] unless you also write `general.alignment`).
    pub fn new(
        sink: S,
        tensor_count: u64,
        metadata_count: u64,
        alignment: u64,
    ) -> Result<Self, GgufError> {
        if alignment == 0 || !alignment.is_power_of_two() || alignment > u64::from(u32::MAX) {
            return Err(misuse(
                0,
                "alignment must be a power of two that fits in u32",
            ));
        }
        let mut w = GgufWriter {
            sink,
            written: 0,
            phase: Phase::Metadata,
            alignment,
            metadata_left: metadata_count,
            tensors_declared: tensor_count,
            infos_left: tensor_count,
            data_assigned: 0,
            data_written: 0,
            data_tensors_left: tensor_count,
        };
        w.put(&GGUF_MAGIC)?;
        w.put(&3u32.to_le_bytes())?;
        w.put(&tensor_count.to_le_bytes())?;
        w.put(&metadata_count.to_le_bytes())?;
        Ok(w)
    }

    /// A writer with the default alignment.
    pub fn with_default_alignment(
        sink: S,
        tensor_count: u64,
        metadata_count: u64,
    ) -> Result<Self, GgufError> {
        Self::new(sink, tensor_count, metadata_count, DEFAULT_ALIGNMENT)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.sink.write(bytes)?;
        self.written = self.written.saturating_add(bytes.len() as u64);
        Ok(())
    }

    fn put_string(&mut self, s: &[u8]) -> Result<(), GgufError> {
        self.put(&(s.len() as u64).to_le_bytes())?;
        self.put(s)
    }

    fn begin_kv(&mut self, key: &str, ty: ValueType) -> Result<(), GgufError> {
        if self.phase != Phase::Metadata || self.metadata_left == 0 {
            return Err(misuse(self.written, "more metadata entries than declared"));
        }
        if key.is_empty() {
            return Err(misuse(self.written, "empty metadata key"));
        }
        self.metadata_left -= 1;
        self.put_string(key.as_bytes())?;
        self.put(&(ty as u32).to_le_bytes())
    }

    /// Writes a metadata entry holding `value` (arrays are copied verbatim).
    pub fn kv(&mut self, key: &str, value: Value<'_>) -> Result<(), GgufError> {
        self.begin_kv(key, value.value_type())?;
        self.put_value(value)
    }

    fn put_value(&mut self, value: Value<'_>) -> Result<(), GgufError> {
        match value {
            Value::U8(v) => self.put(&[v]),
            Value::I8(v) => self.put(&v.to_le_bytes()),
            Value::U16(v) => self.put(&v.to_le_bytes()),
            Value::I16(v) => self.put(&v.to_le_bytes()),
            Value::U32(v) => self.put(&v.to_le_bytes()),
            Value::I32(v) => self.put(&v.to_le_bytes()),
            Value::F32(v) => self.put(&v.to_le_bytes()),
            Value::Bool(v) => self.put(&[u8::from(v)]),
            Value::String(s) => self.put_string(s),
            Value::U64(v) => self.put(&v.to_le_bytes()),
            Value::I64(v) => self.put(&v.to_le_bytes()),
            Value::F64(v) => self.put(&v.to_le_bytes()),
            Value::Array(a) => {
                self.put(&(a.elem_type() as u32).to_le_bytes())?;
                self.put(&(a.len() as u64).to_le_bytes())?;
                self.put(a.raw_bytes())
            }
        }
    }

    /// Writes a u32 entry.
    pub fn kv_u32(&mut self, key: &str, v: u32) -> Result<(), GgufError> {
        self.kv(key, Value::U32(v))
    }

    /// Writes an f32 entry.
    pub fn kv_f32(&mut self, key: &str, v: f32) -> Result<(), GgufError> {
        self.kv(key, Value::F32(v))
    }

    /// Writes a string entry.
    pub fn kv_str(&mut self, key: &str, v: &str) -> Result<(), GgufError> {
        self.kv(key, Value::String(v.as_bytes()))
    }

    /// Writes an array-of-scalars entry from an iterator of values that all
    /// have type `elem` (checked).
    pub fn kv_array<'v>(
        &mut self,
        key: &str,
        elem: ValueType,
        values: impl ExactSizeIterator<Item = Value<'v>>,
    ) -> Result<(), GgufError> {
        self.begin_kv(key, ValueType::Array)?;
        self.put(&(elem as u32).to_le_bytes())?;
        let declared = values.len();
        self.put(&(declared as u64).to_le_bytes())?;
        let mut n = 0usize;
        for v in values {
            if v.value_type() != elem {
                return Err(misuse(self.written, "array element of the wrong type"));
            }
            n += 1;
            if n > declared {
                break;
            }
            self.put_value(v)?;
        }
        if n != declared {
            // An `ExactSizeIterator` whose `len` was wrong: the length is
            // already written, so the file would not parse.
            return Err(misuse(
                self.written,
                "array iterator yielded another count than its len",
            ));
        }
        Ok(())
    }

    /// Writes an array-of-strings entry.
    pub fn kv_strings<'v>(
        &mut self,
        key: &str,
        values: impl ExactSizeIterator<Item = &'v str>,
    ) -> Result<(), GgufError> {
        self.kv_array(
            key,
            ValueType::String,
            values.map(|s| Value::String(s.as_bytes())),
        )
    }

    /// Writes the next tensor entry. Its data offset is assigned here.
    pub fn tensor_info(
        &mut self,
        name: &str,
        dims: &[u64],
        ggml_type: GgmlType,
    ) -> Result<(), GgufError> {
        if self.phase == Phase::Metadata {
            if self.metadata_left != 0 {
                return Err(misuse(self.written, "fewer metadata entries than declared"));
            }
            self.phase = Phase::Tensors;
        }
        if self.phase != Phase::Tensors || self.infos_left == 0 {
            return Err(misuse(self.written, "more tensor entries than declared"));
        }
        if name.is_empty() || dims.is_empty() || dims.len() > MAX_DIMS as usize {
            return Err(misuse(
                self.written,
                "tensor needs a name and 1 to 4 dimensions",
            ));
        }
        let n_bytes = tensor_bytes(dims, ggml_type)
            .ok_or_else(|| misuse(self.written, "tensor shape does not fit its type"))?;
        self.infos_left -= 1;
        self.put_string(name.as_bytes())?;
        self.put(&(dims.len() as u32).to_le_bytes())?;
        for d in dims {
            self.put(&d.to_le_bytes())?;
        }
        self.put(&ggml_type.id().to_le_bytes())?;
        let offset = self.data_assigned;
        self.put(&offset.to_le_bytes())?;
        self.data_assigned = offset
            .checked_add(n_bytes)
            .and_then(|v| align_up(v, self.alignment))
            .ok_or_else(|| misuse(self.written, "data section too large"))?;
        Ok(())
    }

    /// Writes the next tensor's bytes (in the order of the entries), padded.
    /// `dims` and `ggml_type` repeat that tensor's entry (the writer keeps no
    /// list of entries); `data.len()` must be its size.
    pub fn tensor_data(
        &mut self,
        dims: &[u64],
        ggml_type: GgmlType,
        data: &[u8],
    ) -> Result<(), GgufError> {
        self.enter_data()?;
        if self.data_tensors_left == 0 {
            return Err(misuse(self.written, "more tensor data than tensors"));
        }
        if tensor_bytes(dims, ggml_type) != Some(data.len() as u64) {
            return Err(misuse(
                self.written,
                "tensor data length differs from its shape",
            ));
        }
        self.data_tensors_left -= 1;
        self.put(data)?;
        let end = self
            .data_written
            .checked_add(data.len() as u64)
            .ok_or_else(|| misuse(self.written, "data section too large"))?;
        let padded = align_up(end, self.alignment)
            .ok_or_else(|| misuse(self.written, "data section too large"))?;
        self.pad((padded - end) as usize)?;
        self.data_written = padded;
        if self.data_written > self.data_assigned {
            return Err(misuse(self.written, "tensor data longer than its shape"));
        }
        Ok(())
    }

    fn enter_data(&mut self) -> Result<(), GgufError> {
        if self.phase == Phase::Metadata && self.metadata_left == 0 && self.tensors_declared == 0 {
            self.phase = Phase::Tensors;
        }
        if self.phase == Phase::Tensors {
            if self.infos_left != 0 {
                return Err(misuse(self.written, "fewer tensor entries than declared"));
            }
            let padded = align_up(self.written, self.alignment)
                .ok_or_else(|| misuse(self.written, "file too large"))?;
            self.pad((padded - self.written) as usize)?;
            self.phase = Phase::Data;
        }
        if self.phase != Phase::Data {
            return Err(misuse(self.written, "tensor data before the tensor table"));
        }
        Ok(())
    }

    fn pad(&mut self, mut n: usize) -> Result<(), GgufError> {
        const ZEROS: [u8; 64] = [0; 64];
        while n > 0 {
            let k = n.min(ZEROS.len());
            self.put(&ZEROS[..k])?;
            n -= k;
        }
        Ok(())
    }

    /// Checks that everything declared was written and returns the sink.
    pub fn finish(mut self) -> Result<S, GgufError> {
        if self.tensors_declared == 0 {
            if self.metadata_left != 0 {
                return Err(misuse(self.written, "fewer metadata entries than declared"));
            }
        } else {
            self.enter_data()?;
            if self.data_tensors_left != 0 || self.data_written != self.data_assigned {
                return Err(misuse(self.written, "missing tensor data"));
            }
        }
        Ok(self.sink)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

fn align_up(v: u64, alignment: u64) -> Option<u64> {
    Some(v.checked_add(alignment - 1)? & !(alignment - 1))
}

/// Bytes of a tensor of shape `dims` (innermost first) and type `ty`;
/// `None` if the row is not whole blocks or the size overflows.
pub fn tensor_bytes(dims: &[u64], ty: GgmlType) -> Option<u64> {
    let (&row, rest) = dims.split_first()?;
    let mut rows: u64 = 1;
    for &d in rest {
        rows = rows.checked_mul(d)?;
    }
    ty.row_bytes(row)?.checked_mul(rows)
}
