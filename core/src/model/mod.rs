//! Models of the llama family: hyperparameters, the weight index, and (in
//! the engine) the forward pass over them.

pub mod hparams;
pub mod index;
pub mod ops;

pub use hparams::{Arch, Hparams, RopeScaling, RopeStyle};
pub use index::{build_index, GlobalIndex, LayerIndex, TensorLoc};

use crate::error::Result;
use crate::gguf::Gguf;

/// A validated model: its GGUF view, hyperparameters and global weights.
/// Holds no copy of anything; the bytes stay the caller's.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    /// The parsed file.
    pub gguf: Gguf<'a>,
    /// Hyperparameters.
    pub hparams: Hparams,
    /// Global weights (per-layer weights are indexed into the arena at init).
    pub globals: GlobalIndex,
}

impl<'a> Model<'a> {
    /// Parses `bytes` and checks that every tensor the forward pass reads is
    /// present with the shape and a type the hyperparameters call for.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>> {
        Model::from_gguf(Gguf::parse(bytes)?)
    }

    /// As [`Model::from_bytes`], for an already parsed file.
    pub fn from_gguf(gguf: Gguf<'a>) -> Result<Model<'a>> {
        let hparams = Hparams::from_gguf(&gguf)?;
        let globals = build_index(&gguf, &hparams, |_, _| {})?;
        Ok(Model {
            gguf,
            hparams,
            globals,
        })
    }
}

#[cfg(test)]
mod tests;
