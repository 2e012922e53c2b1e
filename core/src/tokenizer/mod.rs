//! Tokenizers read from GGUF metadata: byte-level BPE and SentencePiece.
//!
//! INTERIM: the full tokenizer replaces this placeholder.

use crate::error::Result;
use crate::gguf::Gguf;

/// Tokenizer options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenizerOptions {}

/// A tokenizer.
pub struct Tokenizer<'a> {
    _m: core::marker::PhantomData<&'a ()>,
}

impl<'a> Tokenizer<'a> {
    /// Builds the tables.
    pub fn new(
        _gguf: &Gguf<'a>,
        _arena: &mut crate::mem::Arena<'a>,
        _opts: &TokenizerOptions,
    ) -> Result<Tokenizer<'a>> {
        Ok(Tokenizer {
            _m: core::marker::PhantomData,
        })
    }

    /// Arena bytes `new` carves.
    pub fn arena_bytes(_gguf: &Gguf<'_>, _opts: &TokenizerOptions) -> Result<usize> {
        Ok(0)
    }
}
