//! The one error type of the engine.
//!
//! [`Error`] is `Copy`, holds no heap string and carries the context a caller
//! needs to act on it: how many bytes were needed and how many were there, at
//! which file offset a GGUF file went wrong, which tensor had which shape.
//! Names from the model file are copied into a fixed-size [`Name`] so an error
//! never borrows from the bytes it complains about.

use core::fmt;

/// A short, fixed-capacity copy of a name (a tensor name, a metadata key).
///
/// Names longer than [`Name::CAPACITY`] bytes are truncated on a UTF-8
/// character boundary and marked with a trailing `…` when displayed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; Name::CAPACITY],
    len: u8,
    truncated: bool,
}

impl Name {
    /// Bytes a [`Name`] keeps.
    pub const CAPACITY: usize = 56;

    /// The empty name.
    pub const EMPTY: Name = Name {
        bytes: [0; Name::CAPACITY],
        len: 0,
        truncated: false,
    };

    /// Copies up to [`Name::CAPACITY`] bytes of `s`.
    pub fn new(s: &str) -> Name {
        Name::from_bytes(s.as_bytes())
    }

    /// Copies up to [`Name::CAPACITY`] bytes of `raw`; bytes that are not
    /// UTF-8 are kept up to the first invalid sequence.
    pub fn from_bytes(raw: &[u8]) -> Name {
        let valid = match core::str::from_utf8(raw) {
            Ok(s) => s,
            Err(e) => {
                let (head, _) = raw.split_at(e.valid_up_to());
                // `valid_up_to` marks a prefix that is valid UTF-8.
                core::str::from_utf8(head).unwrap_or("")
            }
        };
        let mut end = valid.len().min(Name::CAPACITY);
        while end > 0 && !valid.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; Name::CAPACITY];
        bytes[..end].copy_from_slice(&valid.as_bytes()[..end]);
        Name {
            bytes,
            len: end as u8,
            truncated: end < raw.len(),
        }
    }

    /// The kept text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())?;
        if self.truncated {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        if self.truncated {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// A tensor shape as stored in GGUF: `dims[0]` is the fastest-varying
/// (row length), unused trailing dimensions are 1.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Number of meaningful dimensions (1..=4).
    pub n_dims: u8,
    /// Extents, innermost first.
    pub dims: [u64; 4],
}

impl Shape {
    /// A shape from up to four extents, innermost first.
    pub fn new(dims: &[u64]) -> Shape {
        let mut out = Shape {
            n_dims: dims.len().min(4) as u8,
            dims: [1; 4],
        };
        for (slot, d) in out.dims.iter_mut().zip(dims) {
            *slot = *d;
        }
        out
    }

    /// The meaningful extents.
    pub fn as_slice(&self) -> &[u64] {
        &self.dims[..usize::from(self.n_dims.min(4))]
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Everything that can go wrong inside the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The arena (or another caller buffer) is too small.
    Budget {
        /// What was being allocated.
        what: &'static str,
        /// Bytes the request needs, padding included.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A size or offset computation would overflow.
    Overflow {
        /// Which computation.
        what: &'static str,
    },
    /// A caller-supplied argument is out of range.
    InvalidArgument {
        /// Which argument, and why.
        what: &'static str,
    },
    /// A count is outside the range the engine accepts (a documented cap).
    OutOfRange {
        /// Which count.
        what: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// The requested context is longer than the model was trained for, and
    /// the caller did not allow that explicitly.
    ContextBeyondTraining {
        /// Context requested, in tokens.
        requested: u32,
        /// The model's training context (`*.context_length`), in tokens.
        trained: u32,
    },
    /// A slab operation was refused.
    Slab(SlabError),
    /// The GGUF bytes are malformed or exceed a cap.
    Gguf(crate::gguf::GgufError),
    /// The model's metadata or tensors do not describe a runnable model.
    Model(ModelError),
    /// The tokenizer refused an input or its tables.
    Tokenizer(TokenizerError),
    /// A capacity fixed at init has been reached (KV cache, sequence length).
    Full {
        /// What is full.
        what: &'static str,
        /// Its capacity, in its own units.
        capacity: usize,
    },
}

/// Why a slab refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabError {
    /// Every block is taken.
    Exhausted {
        /// Number of blocks the slab holds.
        blocks: u32,
    },
    /// The block was given back although it is already free.
    DoubleFree {
        /// Block index.
        index: u32,
    },
    /// The block does not belong to this slab.
    Foreign {
        /// Block index as presented.
        index: u32,
    },
}

/// Why model metadata or tensors were rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// A required metadata key is missing.
    MissingKey {
        /// The key.
        key: Name,
    },
    /// A dimension (`*.block_count`, `*.attention.head_count`, …) exceeds
    /// the engine's cap for it (`crate::model::hparams::MAX_*`).
    TooLarge {
        /// The key.
        key: Name,
        /// The value in the file.
        value: u64,
        /// The largest value accepted.
        cap: u64,
    },
    /// A metadata value has a type or value the engine cannot use.
    BadValue {
        /// The key.
        key: Name,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The architecture is not one the engine knows.
    UnsupportedArchitecture {
        /// `general.architecture`.
        name: Name,
    },
    /// A required tensor is missing.
    MissingTensor {
        /// The tensor name.
        name: Name,
    },
    /// A tensor's shape differs from what the hyperparameters imply.
    ShapeMismatch {
        /// The tensor name.
        name: Name,
        /// The shape implied by the hyperparameters.
        expected: Shape,
        /// The shape stored in the file.
        found: Shape,
    },
    /// A tensor's element type cannot be used for its role.
    UnsupportedType {
        /// The tensor name.
        name: Name,
        /// The ggml type id.
        ggml_type: u32,
    },
    /// The file holds a tensor the architecture does not use; running the
    /// model without it would give wrong results.
    UnexpectedTensor {
        /// The tensor name.
        name: Name,
    },
    /// The model needs a feature the forward pass does not implement.
    Unsupported {
        /// What.
        what: &'static str,
    },
}

/// Why the tokenizer refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerError {
    /// The tokenizer model (`tokenizer.ggml.model`) is not supported.
    UnsupportedModel {
        /// Its name.
        name: Name,
    },
    /// The pre-tokenizer (`tokenizer.ggml.pre`) is not supported.
    UnsupportedPreTokenizer {
        /// Its name.
        name: Name,
    },
    /// A token id is outside the vocabulary.
    BadTokenId {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: u32,
    },
    /// The vocabulary tables are inconsistent.
    BadVocab {
        /// What is wrong.
        why: &'static str,
    },
    /// The chat template is not one of the recognised families.
    UnknownChatTemplate,
    /// An output buffer is too short; `needed` says how long it must be.
    BufferTooSmall {
        /// Elements needed.
        needed: usize,
    },
    /// A required `tokenizer.*` metadata key is missing.
    MissingKey {
        /// The key.
        key: Name,
    },
    /// A `tokenizer.*` metadata value has the wrong type or an impossible value.
    BadMetadata {
        /// The key.
        key: Name,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A pre-token (BPE word, SentencePiece chunk) is longer than the encode
    /// scratch allows; raise `TokenizerOptions::max_piece_bytes`.
    PieceTooLong {
        /// Bytes of the pre-token (at least).
        bytes: usize,
        /// The configured maximum.
        max: usize,
    },
    /// SentencePiece byte fallback needs a `<0xXX>` token the vocabulary lacks.
    MissingByteToken {
        /// The byte.
        byte: u8,
    },
    /// Special tokens in the vocabulary overlap each other so deeply that
    /// splitting this text would exceed the work cap (crafted vocabularies).
    SpecialTokenOverlap,
}

impl From<SlabError> for Error {
    fn from(e: SlabError) -> Self {
        Error::Slab(e)
    }
}

impl From<ModelError> for Error {
    fn from(e: ModelError) -> Self {
        Error::Model(e)
    }
}

impl From<TokenizerError> for Error {
    fn from(e: TokenizerError) -> Self {
        Error::Tokenizer(e)
    }
}

impl From<crate::gguf::GgufError> for Error {
    fn from(e: crate::gguf::GgufError) -> Self {
        Error::Gguf(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Budget {
                what,
                needed,
                available,
            } => write!(
                f,
                "not enough memory for {what}: needed {needed} bytes, available {available} \
                 (missing {})",
                needed.saturating_sub(*available)
            ),
            Error::Overflow { what } => write!(f, "size overflow computing {what}"),
            Error::InvalidArgument { what } => write!(f, "invalid argument: {what}"),
            Error::OutOfRange {
                what,
                value,
                min,
                max,
            } => write!(
                f,
                "{what} = {value} is out of range (accepted: {min} to {max})"
            ),
            Error::ContextBeyondTraining { requested, trained } => write!(
                f,
                "a context of {requested} tokens exceeds the model's training context of \
                 {trained} tokens; allow it explicitly (allow_ctx_beyond_train, \
                 --allow-ctx-beyond-train) to run beyond it anyway"
            ),
            Error::Slab(e) => write!(f, "{e}"),
            Error::Gguf(e) => write!(f, "{e}"),
            Error::Model(e) => write!(f, "{e}"),
            Error::Tokenizer(e) => write!(f, "{e}"),
            Error::Full { what, capacity } => write!(f, "{what} is full (capacity {capacity})"),
        }
    }
}

impl fmt::Display for SlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlabError::Exhausted { blocks } => {
                write!(f, "slab exhausted: all {blocks} blocks taken")
            }
            SlabError::DoubleFree { index } => write!(f, "slab block {index} given back twice"),
            SlabError::Foreign { index } => {
                write!(f, "block {index} does not belong to this slab")
            }
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::MissingKey { key } => write!(f, "missing metadata key {key}"),
            ModelError::TooLarge { key, value, cap } => {
                write!(f, "metadata {key} = {value} exceeds the cap of {cap}")
            }
            ModelError::BadValue { key, why } => write!(f, "metadata {key}: {why}"),
            ModelError::UnsupportedArchitecture { name } => {
                write!(f, "unsupported architecture {name:?}")
            }
            ModelError::MissingTensor { name } => write!(f, "missing tensor {name}"),
            ModelError::ShapeMismatch {
                name,
                expected,
                found,
            } => write!(f, "tensor {name}: expected shape {expected}, found {found}"),
            ModelError::UnsupportedType { name, ggml_type } => {
                let type_name = crate::gguf::GgmlType::from_id(*ggml_type)
                    .map(|t| t.name())
                    .unwrap_or("unknown");
                write!(
                    f,
                    "tensor {name}: element type {type_name} (id {ggml_type}) is not supported here"
                )
            }
            ModelError::UnexpectedTensor { name } => {
                write!(f, "tensor {name} is not used by this architecture")
            }
            ModelError::Unsupported { what } => write!(f, "not supported: {what}"),
        }
    }
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizerError::UnsupportedModel { name } => {
                write!(f, "unsupported tokenizer model {name:?}")
            }
            TokenizerError::UnsupportedPreTokenizer { name } => {
                write!(f, "unsupported pre-tokenizer {name:?}")
            }
            TokenizerError::BadTokenId { id, vocab } => {
                write!(f, "token id {id} is outside the vocabulary of {vocab}")
            }
            TokenizerError::BadVocab { why } => write!(f, "bad vocabulary: {why}"),
            TokenizerError::UnknownChatTemplate => {
                f.write_str("the chat template is not a recognised family; name one explicitly")
            }
            TokenizerError::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} needed")
            }
            TokenizerError::MissingKey { key } => write!(f, "missing tokenizer metadata {key}"),
            TokenizerError::BadMetadata { key, why } => {
                write!(f, "tokenizer metadata {key}: {why}")
            }
            TokenizerError::PieceTooLong { bytes, max } => write!(
                f,
                "a pre-token of {bytes} bytes exceeds the tokenizer scratch of {max} bytes \
                 (raise max_piece_bytes)"
            ),
            TokenizerError::MissingByteToken { byte } => {
                write!(f, "vocabulary has no byte token <0x{byte:02X}>")
            }
            TokenizerError::SpecialTokenOverlap => {
                f.write_str("special tokens overlap too deeply to split this text")
            }
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_truncates_on_char_boundary_and_marks_it() {
        let long = "é".repeat(40); // 80 bytes
        let n = Name::new(&long);
        assert_eq!(n.as_str().len(), 56);
        assert!(n.as_str().chars().all(|c| c == 'é'));
        let mut buf = [0u8; 128];
        let shown = crate::fmt_util::write_to(&mut buf, format_args!("{n}"));
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn name_keeps_valid_prefix_of_invalid_utf8() {
        let n = Name::from_bytes(b"blk.0\xff\xfe");
        assert_eq!(n.as_str(), "blk.0");
    }

    #[test]
    fn range_and_context_errors_name_both_numbers() {
        let mut buf = [0u8; 256];
        let e = Error::OutOfRange {
            what: "threads",
            value: 100_000,
            min: 1,
            max: 256,
        };
        let s = crate::fmt_util::write_to(&mut buf, format_args!("{e}"));
        assert_eq!(s, "threads = 100000 is out of range (accepted: 1 to 256)");
        let e = Error::ContextBeyondTraining {
            requested: 9000,
            trained: 8192,
        };
        let s = crate::fmt_util::write_to(&mut buf, format_args!("{e}"));
        assert!(
            s.starts_with(
                "a context of 9000 tokens exceeds the model's training context of 8192 tokens"
            ),
            "{s}"
        );
    }

    #[test]
    fn budget_error_says_needed_available_missing() {
        let e = Error::Budget {
            what: "KV pool",
            needed: 100,
            available: 60,
        };
        let mut buf = [0u8; 128];
        let s = crate::fmt_util::write_to(&mut buf, format_args!("{e}"));
        assert_eq!(
            s,
            "not enough memory for KV pool: needed 100 bytes, available 60 (missing 40)"
        );
    }
}
