//! arenalm-core: run Llama-family transformers from GGUF bytes the caller
//! provides, entirely inside one byte buffer the caller owns.
//!
//! * No heap: the crate is `#![no_std]` and does not use `alloc`. Every byte
//!   written at run time comes from the caller's arena ([`mem::Arena`]);
//!   weights are read in place from the caller's model bytes.
//! * Know before you start: [`mem::plan`] says, from the GGUF header and the
//!   parameters alone, how many arena bytes init will carve, item by item.
//! * Never abort: every input — file bytes, token ids, sizes — is checked and
//!   refused with an [`Error`] that carries context; nothing here panics.

#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// `Error` is `Copy` and carries names and shapes inline by design: there is
// no heap to box a large error into, and only the error path moves it.
#![allow(clippy::result_large_err)]

#[cfg(test)]
extern crate std;

pub mod error;
pub mod fmt_util;
pub mod gguf;
pub mod kernels;
pub mod mem;
pub mod parallel;
pub mod quant;
pub mod tokenizer;

pub use error::{Error, Name, Result, Shape};
