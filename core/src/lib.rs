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
// `Error` carries its context (names, shapes, sizes) by value so that it never
// allocates; errors are the cold path, so a large `Err` variant costs nothing
// where it matters.
#![allow(clippy::result_large_err)]

#[cfg(test)]
extern crate std;

// Test helpers shared with the integration tests name the crate by its
// package name.
#[cfg(test)]
extern crate self as arenalm_core;

pub mod engine;
pub mod error;
pub mod fmt_util;
pub mod gguf;
pub mod kernels;
pub mod kv;
pub mod math;
pub mod mem;
pub mod model;
pub mod parallel;
pub mod quant;
pub mod sample;
pub mod tokenizer;

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod engine_fuzz;

pub use error::{Error, Name, Result, Shape};
