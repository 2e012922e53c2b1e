//! GGUF: a zero-copy reader that can never be tricked into reading outside
//! the caller's bytes, and a writer.
//!
//! [`Gguf::parse`] walks the whole header once — metadata, nested arrays,
//! tensor table — checking every length, count, offset and size against the
//! bytes that are there and against explicit caps ([`GgufLimits`]). After
//! that, lookups hand out slices of the original bytes: strings, arrays and
//! tensor data are never copied.
//!
//! File layout (little-endian):
//!
//! ```text
//! magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
//! kv_count x { key: string, value_type u32, value }
//! tensor_count x { name: string, n_dims u32, dims u64 x n_dims, type u32, offset u64 }
//! padding to general.alignment (default 32)
//! tensor data; each tensor at data_start + offset, offset a multiple of the alignment
//! string = len u64 + bytes; array = elem_type u32 + len u64 + elements
//! ```
//!
//! Version 1 (32-bit counts) is refused; versions 2 and 3 are read.
//! Big-endian files are recognised and refused with their own error.

mod error;
mod reader;
mod types;
mod value;
mod writer;

pub use error::{GgufError, GgufErrorKind};
pub use reader::{Gguf, GgufLimits, MetadataIter, TensorInfo, TensorIter, MAX_DEPTH_CEILING};
pub use types::GgmlType;
pub use value::{ArrayIter, ArrayView, Value, ValueType};
pub use writer::{tensor_bytes, CountingSink, GgufWriter, Sink, SliceSink};

/// The four magic bytes at the start of a GGUF file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// Tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

#[cfg(test)]
mod tests;
