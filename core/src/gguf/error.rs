//! What can be wrong with GGUF bytes; each violation is its own kind.

use core::fmt;

use crate::error::Name;

/// A GGUF parse or lookup failure: what, and at which byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgufError {
    /// What went wrong.
    pub kind: GgufErrorKind,
    /// Byte offset in the file where the offending item starts.
    pub offset: u64,
}

/// The distinct ways GGUF bytes can be rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GgufErrorKind {
    /// The file ends before an item that must be there.
    Truncated {
        /// Bytes the item needs.
        needed: u64,
        /// Bytes left in the file at that offset.
        available: u64,
    },
    /// The first four bytes are not `GGUF`.
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The file is a big-endian GGUF; only little-endian is read.
    BigEndian,
    /// Version other than 2 or 3.
    UnsupportedVersion {
        /// Version found.
        version: u32,
    },
    /// More tensors than [`GgufLimits::max_tensors`](super::GgufLimits).
    TooManyTensors {
        /// Count in the header.
        count: u64,
        /// The cap.
        cap: u64,
    },
    /// More metadata entries than [`GgufLimits::max_metadata`](super::GgufLimits).
    TooManyMetadata {
        /// Count in the header.
        count: u64,
        /// The cap.
        cap: u64,
    },
    /// A string longer than [`GgufLimits::max_string_len`](super::GgufLimits).
    StringTooLong {
        /// Declared length.
        len: u64,
        /// The cap.
        cap: u64,
    },
    /// An array longer than [`GgufLimits::max_array_len`](super::GgufLimits).
    ArrayTooLong {
        /// Declared length.
        len: u64,
        /// The cap.
        cap: u64,
    },
    /// Arrays nested deeper than [`GgufLimits::max_depth`](super::GgufLimits).
    NestingTooDeep {
        /// The cap.
        cap: u32,
    },
    /// A metadata value type id that GGUF does not define.
    BadValueType {
        /// The id.
        id: u32,
    },
    /// A boolean byte other than 0 or 1.
    BadBool {
        /// The byte.
        value: u8,
    },
    /// A key or tensor name that is not UTF-8.
    BadUtf8,
    /// An empty metadata key or tensor name.
    EmptyName,
    /// `general.alignment` is not a non-zero power of two held in a u32.
    BadAlignment {
        /// Value found (0 if the type was wrong).
        value: u64,
    },
    /// A tensor with more than four dimensions.
    TooManyDims {
        /// Tensor index.
        tensor: u32,
        /// Dimension count found.
        n_dims: u32,
    },
    /// A tensor dimension above `i64::MAX` (ggml stores extents as int64).
    DimTooLarge {
        /// Tensor index.
        tensor: u32,
        /// The extent.
        dim: u64,
    },
    /// The product of a tensor's dimensions, or its byte size, overflows.
    DimsOverflow {
        /// Tensor index.
        tensor: u32,
    },
    /// A tensor element type id that ggml does not define.
    UnknownTensorType {
        /// Tensor index.
        tensor: u32,
        /// The id.
        id: u32,
    },
    /// A tensor's row length is not a whole number of blocks of its type.
    RowNotBlockAligned {
        /// Tensor index.
        tensor: u32,
        /// Row length.
        ne0: u64,
        /// Block size of the type.
        block: u32,
    },
    /// A tensor's data offset is not a multiple of the alignment.
    TensorMisaligned {
        /// Tensor index.
        tensor: u32,
        /// Offset relative to the data section.
        offset: u64,
        /// Required alignment.
        alignment: u64,
    },
    /// A tensor's data extends past the end of the file.
    TensorOutOfBounds {
        /// Tensor index.
        tensor: u32,
        /// End of the tensor's bytes, relative to the data section.
        end: u64,
        /// Bytes in the data section.
        data_len: u64,
    },
    /// The data section would start past the end of the file.
    DataPastEnd {
        /// Where it would start.
        data_start: u64,
    },
    /// Two metadata entries share a key.
    DuplicateKey {
        /// The key.
        key: Name,
    },
    /// Two tensors share a name.
    DuplicateTensor {
        /// The name.
        name: Name,
    },
    /// A writer was used out of order or with sizes that do not match.
    WriterMisuse {
        /// What was wrong.
        what: &'static str,
    },
}

impl GgufError {
    pub(crate) fn at(offset: usize, kind: GgufErrorKind) -> GgufError {
        GgufError {
            kind,
            offset: u64::try_from(offset).unwrap_or(u64::MAX),
        }
    }

    /// Two tensors named `name`; the second entry starts at `offset`.
    pub(crate) fn duplicate_tensor(offset: usize, name: &str) -> GgufError {
        GgufError::at(
            offset,
            GgufErrorKind::DuplicateTensor {
                name: Name::new(name),
            },
        )
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GGUF error at byte {}: ", self.offset)?;
        use GgufErrorKind as K;
        match self.kind {
            K::Truncated { needed, available } => write!(
                f,
                "file truncated: item needs {needed} bytes, {available} left"
            ),
            K::BadMagic { found } => write!(f, "bad magic {found:02x?}, expected \"GGUF\""),
            K::BigEndian => f.write_str("big-endian GGUF files are not supported"),
            K::UnsupportedVersion { version } => {
                write!(f, "unsupported GGUF version {version} (2 and 3 are read)")
            }
            K::TooManyTensors { count, cap } => {
                write!(f, "{count} tensors exceed the cap of {cap}")
            }
            K::TooManyMetadata { count, cap } => {
                write!(f, "{count} metadata entries exceed the cap of {cap}")
            }
            K::StringTooLong { len, cap } => {
                write!(f, "string of {len} bytes exceeds the cap of {cap}")
            }
            K::ArrayTooLong { len, cap } => {
                write!(f, "array of {len} elements exceeds the cap of {cap}")
            }
            K::NestingTooDeep { cap } => write!(f, "arrays nested deeper than {cap}"),
            K::BadValueType { id } => write!(f, "unknown metadata value type {id}"),
            K::BadBool { value } => write!(f, "boolean byte {value} is neither 0 nor 1"),
            K::BadUtf8 => f.write_str("name is not valid UTF-8"),
            K::EmptyName => f.write_str("empty key or tensor name"),
            K::BadAlignment { value } => write!(
                f,
                "general.alignment {value} is not a non-zero power of two (u32)"
            ),
            K::TooManyDims { tensor, n_dims } => {
                write!(f, "tensor #{tensor} has {n_dims} dimensions (at most 4)")
            }
            K::DimTooLarge { tensor, dim } => {
                write!(f, "tensor #{tensor} has extent {dim} above int64 range")
            }
            K::DimsOverflow { tensor } => {
                write!(f, "tensor #{tensor}: element count or byte size overflows")
            }
            K::UnknownTensorType { tensor, id } => {
                write!(f, "tensor #{tensor} has unknown element type {id}")
            }
            K::RowNotBlockAligned { tensor, ne0, block } => write!(
                f,
                "tensor #{tensor}: row length {ne0} is not a multiple of the block size {block}"
            ),
            K::TensorMisaligned {
                tensor,
                offset,
                alignment,
            } => write!(
                f,
                "tensor #{tensor}: data offset {offset} is not a multiple of {alignment}"
            ),
            K::TensorOutOfBounds {
                tensor,
                end,
                data_len,
            } => write!(
                f,
                "tensor #{tensor}: data ends at {end}, past the data section of {data_len} bytes"
            ),
            K::DataPastEnd { data_start } => {
                write!(f, "data section would start at {data_start}, past the end")
            }
            K::DuplicateKey { key } => write!(f, "duplicate metadata key {key}"),
            K::DuplicateTensor { name } => write!(f, "duplicate tensor {name}"),
            K::WriterMisuse { what } => write!(f, "GGUF writer: {what}"),
        }
    }
}
