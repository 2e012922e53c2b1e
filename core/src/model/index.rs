//! The model index: where every weight the forward pass reads lives in the
//! model bytes, with its type and shape checked against the hyperparameters.
//!
//! The index holds plain offsets ([`TensorLoc`]), not references, so it can
//! live in the arena; the forward pass turns a location into a slice with a
//! bounds-checked `get`.

use crate::error::{ModelError, Name, Result, Shape};
use crate::gguf::{GgmlType, Gguf, TensorInfo};
use crate::mem::Pod;

use super::hparams::Hparams;

/// Where a tensor's bytes are in the model file, and what they hold.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TensorLoc {
    /// Byte offset from the start of the model bytes.
    pub offset: u64,
    /// Byte length.
    pub len: u64,
    /// ggml type id.
    pub ggml_type: u32,
    /// Rows (output features; 1 for vectors).
    pub rows: u32,
    /// Values per row (input features).
    pub cols: u32,
    /// Padding, always zero.
    pub reserved: u32,
}

static_assertions::assert_eq_size!(TensorLoc, [u64; 4]);

// SAFETY: `repr(C)` with u64, u64, then four u32 fields: no padding, and
// every bit pattern is a valid value.
unsafe impl Pod for TensorLoc {}

impl TensorLoc {
    /// Whether this location is unset (an absent optional tensor).
    pub fn is_absent(&self) -> bool {
        self.len == 0
    }

    /// The element type.
    pub fn ty(&self) -> Option<GgmlType> {
        GgmlType::from_id(self.ggml_type)
    }

    /// The tensor's bytes within `model`, if they are there.
    pub fn bytes<'a>(&self, model: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.offset).ok()?;
        let end = start.checked_add(usize::try_from(self.len).ok()?)?;
        model.get(start..end)
    }

    fn of(t: &TensorInfo<'_>) -> TensorLoc {
        let dims = t.shape.dims;
        TensorLoc {
            offset: t.file_offset,
            len: t.n_bytes(),
            ggml_type: t.ggml_type.id(),
            rows: (dims[1] * dims[2] * dims[3]) as u32,
            cols: dims[0] as u32,
            reserved: 0,
        }
    }
}

/// The weights of one transformer block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerIndex {
    /// RMSNorm before attention, `(dim)`.
    pub attn_norm: TensorLoc,
    /// Query projection, `(q_dim rows, dim cols)`.
    pub wq: TensorLoc,
    /// Key projection, `(kv_dim, dim)`.
    pub wk: TensorLoc,
    /// Value projection, `(kv_dim, dim)`.
    pub wv: TensorLoc,
    /// Attention output projection, `(dim, q_dim)`.
    pub wo: TensorLoc,
    /// RMSNorm before the feed-forward block, `(dim)`.
    pub ffn_norm: TensorLoc,
    /// Gate projection, `(ffn_dim, dim)`.
    pub w_gate: TensorLoc,
    /// Up projection, `(ffn_dim, dim)`.
    pub w_up: TensorLoc,
    /// Down projection, `(dim, ffn_dim)`.
    pub w_down: TensorLoc,
    /// Query bias `(q_dim)`, absent unless the architecture has one.
    pub bq: TensorLoc,
    /// Key bias `(kv_dim)`.
    pub bk: TensorLoc,
    /// Value bias `(kv_dim)`.
    pub bv: TensorLoc,
}

// SAFETY: `repr(C)` array-like struct of `TensorLoc` (itself Pod), no padding.
unsafe impl Pod for LayerIndex {}

/// The weights outside the blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalIndex {
    /// Token embeddings, `(vocab rows, dim cols)`.
    pub token_embd: TensorLoc,
    /// Final RMSNorm, `(dim)`.
    pub output_norm: TensorLoc,
    /// Output head, `(vocab, dim)`; equal to `token_embd` when tied.
    pub output: TensorLoc,
    /// Per-pair RoPE frequency divisors `(rope_dim / 2)`, if present.
    pub rope_freqs: TensorLoc,
    /// Sum of the bytes of every tensor used in place.
    pub weights_bytes: u64,
}

/// What a tensor is for, which decides the types accepted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A matrix multiplied by activations.
    Matrix,
    /// A vector read as f32 (norm weights, biases, frequency factors).
    Vector,
}

fn check(
    gguf: &Gguf<'_>,
    name: &str,
    expected: &[u64],
    role: Role,
    required: bool,
) -> Result<Option<TensorLoc>> {
    let info = match gguf.tensor(name)? {
        Some(t) => t,
        None if required => {
            return Err(ModelError::MissingTensor {
                name: Name::new(name),
            }
            .into())
        }
        None => return Ok(None),
    };
    let expected_shape = Shape::new(expected);
    // Trailing extents of 1 do not change a shape.
    let found = info.shape;
    if found.dims != expected_shape.dims {
        return Err(ModelError::ShapeMismatch {
            name: Name::new(name),
            expected: expected_shape,
            found,
        }
        .into());
    }
    let ok_type = match role {
        Role::Matrix => info.ggml_type.computable(),
        Role::Vector => info.ggml_type == GgmlType::F32,
    };
    if !ok_type {
        return Err(ModelError::UnsupportedType {
            name: Name::new(name),
            ggml_type: info.ggml_type.id(),
        }
        .into());
    }
    Ok(Some(TensorLoc::of(&info)))
}

/// Formats a per-layer tensor name (`blk.{i}.{suffix}`) into `buf`.
fn layer_name<'b>(buf: &'b mut [u8; 64], layer: u32, suffix: &str) -> &'b str {
    crate::fmt_util::write_to(buf, format_args!("blk.{layer}.{suffix}"))
}

/// Checks every tensor the forward pass needs against `hp` and reports the
/// per-layer locations through `on_layer` (so the caller decides where the
/// index lives: in the arena for the engine, nowhere for the planner).
///
/// Fails on a missing tensor, a shape that differs from what the
/// hyperparameters imply (naming the tensor and both shapes), a type no
/// kernel reads, or a tensor the architecture does not use (a file with
/// tensors we would ignore is a model we would run wrongly).
pub fn build_index(
    gguf: &Gguf<'_>,
    hp: &Hparams,
    mut on_layer: impl FnMut(u32, LayerIndex),
) -> Result<GlobalIndex> {
    let dim = u64::from(hp.dim);
    let q_dim = u64::from(hp.q_dim());
    let kv_dim = u64::from(hp.kv_dim());
    let ffn = u64::from(hp.ffn_dim);
    let vocab = u64::from(hp.vocab);
    let mut used: u64 = 0;
    let mut weights_bytes: u64 = 0;
    let mut count = |loc: Option<TensorLoc>| -> TensorLoc {
        match loc {
            Some(l) => {
                used += 1;
                weights_bytes = weights_bytes.saturating_add(l.len);
                l
            }
            None => TensorLoc::default(),
        }
    };

    let token_embd = count(check(
        gguf,
        "token_embd.weight",
        &[dim, vocab],
        Role::Matrix,
        true,
    )?);
    let output_norm = count(check(
        gguf,
        "output_norm.weight",
        &[dim],
        Role::Vector,
        true,
    )?);
    let output = match check(gguf, "output.weight", &[dim, vocab], Role::Matrix, false)? {
        Some(l) => count(Some(l)),
        None => token_embd,
    };
    let rope_freqs = count(check(
        gguf,
        "rope_freqs.weight",
        &[u64::from(hp.rope_dim / 2)],
        Role::Vector,
        false,
    )?);

    let bias = hp.arch.has_qkv_bias();
    for layer in 0..hp.n_layers {
        let mut buf = [0u8; 64];
        let mut t = |suffix: &str, shape: &[u64], role: Role, required: bool| {
            let name = layer_name(&mut buf, layer, suffix);
            check(gguf, name, shape, role, required)
        };
        let index = LayerIndex {
            attn_norm: count(t("attn_norm.weight", &[dim], Role::Vector, true)?),
            wq: count(t("attn_q.weight", &[dim, q_dim], Role::Matrix, true)?),
            wk: count(t("attn_k.weight", &[dim, kv_dim], Role::Matrix, true)?),
            wv: count(t("attn_v.weight", &[dim, kv_dim], Role::Matrix, true)?),
            wo: count(t("attn_output.weight", &[q_dim, dim], Role::Matrix, true)?),
            ffn_norm: count(t("ffn_norm.weight", &[dim], Role::Vector, true)?),
            w_gate: count(t("ffn_gate.weight", &[dim, ffn], Role::Matrix, true)?),
            w_up: count(t("ffn_up.weight", &[dim, ffn], Role::Matrix, true)?),
            w_down: count(t("ffn_down.weight", &[ffn, dim], Role::Matrix, true)?),
            bq: count(t("attn_q.bias", &[q_dim], Role::Vector, bias)?),
            bk: count(t("attn_k.bias", &[kv_dim], Role::Vector, bias)?),
            bv: count(t("attn_v.bias", &[kv_dim], Role::Vector, bias)?),
        };
        on_layer(layer, index);
    }

    if used != gguf.tensor_count() {
        // Name the first tensor we did not account for.
        let unexpected = gguf.tensors().find(|t| !is_known_tensor(t.name, hp));
        return Err(ModelError::UnexpectedTensor {
            name: Name::new(unexpected.map(|t| t.name).unwrap_or("?")),
        }
        .into());
    }
    Ok(GlobalIndex {
        token_embd,
        output_norm,
        output,
        rope_freqs,
        weights_bytes,
    })
}

/// Whether `name` is a tensor the architecture uses.
fn is_known_tensor(name: &str, hp: &Hparams) -> bool {
    const GLOBAL: [&str; 4] = [
        "token_embd.weight",
        "output_norm.weight",
        "output.weight",
        "rope_freqs.weight",
    ];
    const LAYER: [&str; 12] = [
        "attn_norm.weight",
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_output.weight",
        "ffn_norm.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
        "attn_q.bias",
        "attn_k.bias",
        "attn_v.bias",
    ];
    if GLOBAL.contains(&name) {
        return true;
    }
    let Some(rest) = name.strip_prefix("blk.") else {
        return false;
    };
    let Some((layer, suffix)) = rest.split_once('.') else {
        return false;
    };
    let layer_ok = layer
        .parse::<u32>()
        .map(|l| l < hp.n_layers)
        .unwrap_or(false);
    let bias_ok = hp.arch.has_qkv_bias() || !suffix.ends_with(".bias");
    layer_ok && bias_ok && LAYER.contains(&suffix)
}
