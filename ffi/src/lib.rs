//! arenalm's C ABI and std host layer.
//!
//! * [`host`]: what a program on an operating system needs around the
//!   no_std core: model files mapped read-only, CPU feature detection and a
//!   persistent thread pool.
//! * [`capi`]: the `alm_*` functions of `include/arenalm.h`. Every one is
//!   wrapped in a panic guard, checks its pointers and lengths, returns an
//!   [`capi::alm_status`], and writes a readable message into the caller's
//!   buffer on failure.
//!
//! Rust programs (like the `arenalm` command-line tool) use [`host`] and
//! `arenalm_core` directly; C and C++ programs use the header.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![allow(clippy::result_large_err)]

pub mod capi;
pub mod host;

pub use arenalm_core as core;
