//! Metadata values as zero-copy views over the file bytes.

use super::error::{GgufError, GgufErrorKind};
use super::reader::{Cursor, GgufLimits, MAX_DEPTH_CEILING};

/// A GGUF metadata value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The type with id `id`, if GGUF defines it.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Bytes of one value, for fixed-size types.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// GGUF's name for the type.
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

/// One metadata value. Strings and arrays borrow the file bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    /// Raw string bytes (GGUF says UTF-8; see [`Value::as_str`]).
    String(&'a [u8]),
    Array(ArrayView<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer value that is non-negative, widened to u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer value, as i64 (None if a u64 exceeds i64).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// An f32 or f64 value, as f32.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string value that is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::String(b) => core::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// A string value's raw bytes.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::String(b) => Some(b),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<ArrayView<'a>> {
        match *self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A metadata array: its element type, length and raw element bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrayView<'a> {
    elem: ValueType,
    len: usize,
    /// Exactly the bytes of the elements (not the type and length prefix).
    bytes: &'a [u8],
}

impl<'a> ArrayView<'a> {
    pub(crate) fn new(elem: ValueType, len: usize, bytes: &'a [u8]) -> Self {
        ArrayView { elem, len, bytes }
    }

    /// Element type.
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw element bytes as stored (for copying an array verbatim).
    pub fn raw_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Element `i`. O(1) for fixed-size element types, O(i) for strings
    /// and nested arrays.
    pub fn get(&self, i: usize) -> Option<Value<'a>> {
        if i >= self.len {
            return None;
        }
        match self.elem.fixed_size() {
            Some(size) => {
                let start = i.checked_mul(size)?;
                let raw = self.bytes.get(start..start.checked_add(size)?)?;
                let mut c = Cursor::new(raw);
                read_value(&mut c, self.elem, 0, &GgufLimits::UNLIMITED).ok()
            }
            None => self.iter().nth(i),
        }
    }

    /// Element `i` of a u32 (or non-negative i32) array.
    pub fn get_u32(&self, i: usize) -> Option<u32> {
        self.get(i)?.as_u64().and_then(|v| u32::try_from(v).ok())
    }

    /// Element `i` of an f32 array.
    pub fn get_f32(&self, i: usize) -> Option<f32> {
        self.get(i)?.as_f32()
    }

    /// Element `i` of an i32 array.
    pub fn get_i32(&self, i: usize) -> Option<i32> {
        self.get(i)?.as_i64().and_then(|v| i32::try_from(v).ok())
    }

    /// Iterates over the elements in order.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            cursor: Cursor::new(self.bytes),
            elem: self.elem,
            left: self.len,
        }
    }

    /// Iterates over the raw bytes of a string array's elements (empty if
    /// the elements are not strings).
    pub fn strings(&self) -> impl Iterator<Item = &'a [u8]> {
        let is_strings = self.elem == ValueType::String;
        self.iter()
            .take(if is_strings { self.len } else { 0 })
            .filter_map(|v| v.as_bytes())
    }
}

/// Iterator over an [`ArrayView`].
pub struct ArrayIter<'a> {
    cursor: Cursor<'a>,
    elem: ValueType,
    left: usize,
}

impl<'a> ArrayIter<'a> {
    /// Offset of the next element from the start of the array's element bytes.
    pub fn position(&self) -> usize {
        self.cursor.pos()
    }
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The array was validated when the file was parsed, so this read
        // cannot fail; if it somehow did, the iteration just ends.
        match read_value(&mut self.cursor, self.elem, 0, &GgufLimits::UNLIMITED) {
            Ok(v) => Some(v),
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// Reads one value of type `ty` at the cursor, checking every length against
/// the bytes left and against `limits`. `depth` is the array nesting level of
/// the value being read (0 for a top-level value).
pub(crate) fn read_value<'a>(
    c: &mut Cursor<'a>,
    ty: ValueType,
    depth: u32,
    limits: &GgufLimits,
) -> Result<Value<'a>, GgufError> {
    Ok(match ty {
        ValueType::U8 => Value::U8(c.u8()?),
        ValueType::I8 => Value::I8(c.u8()? as i8),
        ValueType::U16 => Value::U16(c.u16()?),
        ValueType::I16 => Value::I16(c.u16()? as i16),
        ValueType::U32 => Value::U32(c.u32()?),
        ValueType::I32 => Value::I32(c.u32()? as i32),
        ValueType::F32 => Value::F32(f32::from_bits(c.u32()?)),
        ValueType::U64 => Value::U64(c.u64()?),
        ValueType::I64 => Value::I64(c.u64()? as i64),
        ValueType::F64 => Value::F64(f64::from_bits(c.u64()?)),
        ValueType::Bool => {
            let at = c.pos();
            match c.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                value => return Err(c.error_at(at, GgufErrorKind::BadBool { value })),
            }
        }
        ValueType::String => Value::String(c.string(limits.max_string_len)?),
        ValueType::Array => {
            let at = c.pos();
            let max_depth = limits.max_depth.min(MAX_DEPTH_CEILING);
            if depth >= max_depth {
                return Err(c.error_at(at, GgufErrorKind::NestingTooDeep { cap: max_depth }));
            }
            let type_id = c.u32()?;
            let elem = ValueType::from_id(type_id)
                .ok_or_else(|| c.error_at(at, GgufErrorKind::BadValueType { id: type_id }))?;
            let len_at = c.pos();
            let len = c.u64()?;
            if len > limits.max_array_len {
                return Err(c.error_at(
                    len_at,
                    GgufErrorKind::ArrayTooLong {
                        len,
                        cap: limits.max_array_len,
                    },
                ));
            }
            let start = c.pos();
            match elem.fixed_size() {
                Some(size) => {
                    let total = len
                        .checked_mul(size as u64)
                        .ok_or_else(|| c.truncated(u64::MAX))?;
                    let raw = c.take(total)?;
                    if elem == ValueType::Bool {
                        if let Some(i) = raw.iter().position(|&b| b > 1) {
                            return Err(
                                c.error_at(start + i, GgufErrorKind::BadBool { value: raw[i] })
                            );
                        }
                    }
                }
                None => {
                    for _ in 0..len {
                        read_value(c, elem, depth + 1, limits)?;
                    }
                }
            }
            let bytes = c.slice_from(start);
            // Every element took at least one byte or the reads above failed,
            // so `len` fits in usize here; checked all the same.
            let len = usize::try_from(len).map_err(|_| c.truncated(len))?;
            Value::Array(ArrayView::new(elem, len, bytes))
        }
    })
}
