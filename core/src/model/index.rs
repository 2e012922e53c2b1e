//! The model index: where every weight the forward pass reads lives in the
//! model bytes, with its type and shape checked against the hyperparameters.
//!
//! The index holds plain offsets ([`TensorLoc`]), not references, so it can
//! live in the arena; the forward pass turns a location into a slice with a
//! bounds-checked `get`.

use crate::error::{Error, ModelError, Name, Result, Shape};
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

    /// The location of `t`; `None` if its row count or row length does
    /// not fit in 32 bits (never for a tensor whose shape was checked
    /// against validated hyperparameters).
    fn of(t: &TensorInfo<'_>) -> Option<TensorLoc> {
        let [cols, d1, d2, d3] = t.shape.dims;
        let rows = d1.checked_mul(d2)?.checked_mul(d3)?;
        Some(TensorLoc {
            offset: t.file_offset,
            len: t.n_bytes(),
            ggml_type: t.ggml_type.id(),
            rows: u32::try_from(rows).ok()?,
            cols: u32::try_from(cols).ok()?,
            reserved: 0,
        })
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

/// Tensors outside the blocks, in [`GlobalIndex`] order, and whether each
/// is required.
const GLOBAL: [(&str, Role, bool); 4] = [
    ("token_embd.weight", Role::Matrix, true),
    ("output_norm.weight", Role::Vector, true),
    ("output.weight", Role::Matrix, false),
    ("rope_freqs.weight", Role::Vector, false),
];

/// Per-layer tensor suffixes, in [`LayerIndex`] field order; the last three
/// (biases) exist exactly when the architecture has q/k/v biases.
const LAYER: [(&str, Role); 12] = [
    ("attn_norm.weight", Role::Vector),
    ("attn_q.weight", Role::Matrix),
    ("attn_k.weight", Role::Matrix),
    ("attn_v.weight", Role::Matrix),
    ("attn_output.weight", Role::Matrix),
    ("ffn_norm.weight", Role::Vector),
    ("ffn_gate.weight", Role::Matrix),
    ("ffn_up.weight", Role::Matrix),
    ("ffn_down.weight", Role::Matrix),
    ("attn_q.bias", Role::Vector),
    ("attn_k.bias", Role::Vector),
    ("attn_v.bias", Role::Vector),
];
const N_ROLES: usize = LAYER.len();
/// Per-layer roles without the biases.
const N_PLAIN_ROLES: usize = 9;

/// Where a tensor belongs: a global slot, or a (layer, role) slot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slot {
    Global(usize),
    Layer(u32, usize),
}

impl Slot {
    /// Bit of this slot in a [`Seen`] set.
    fn bit(self) -> usize {
        match self {
            Slot::Global(g) => g,
            Slot::Layer(l, r) => GLOBAL.len() + l as usize * N_ROLES + r,
        }
    }
}

/// Which slots have a tensor: one bit each, on the stack (at most
/// 4 + 12 x [`super::hparams::MAX_LAYERS`] bits, about 1.5 KiB).
struct Seen([u64; (GLOBAL.len() + N_ROLES * super::hparams::MAX_LAYERS as usize) / 64 + 1]);

impl Seen {
    /// Marks `slot`; false if it was marked already.
    fn insert(&mut self, slot: Slot) -> bool {
        let bit = slot.bit();
        match self.0.get_mut(bit / 64) {
            Some(w) => {
                let m = 1u64 << (bit % 64);
                let fresh = *w & m == 0;
                *w |= m;
                fresh
            }
            None => false,
        }
    }

    fn contains(&self, slot: Slot) -> bool {
        let bit = slot.bit();
        self.0
            .get(bit / 64)
            .is_some_and(|w| w & (1u64 << (bit % 64)) != 0)
    }
}

/// The slot of tensor `name` in a model of `hp`, or `None` if the
/// architecture has no such tensor. Layer numbers are canonical decimals
/// (`blk.7`, not `blk.07` or `blk.+7`) below `n_layers`.
fn classify(name: &str, hp: &Hparams) -> Option<Slot> {
    if let Some(g) = GLOBAL.iter().position(|(n, _, _)| *n == name) {
        return Some(Slot::Global(g));
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let canonical = !layer.is_empty()
        && layer.len() <= 10
        && layer.bytes().all(|b| b.is_ascii_digit())
        && (layer == "0" || !layer.starts_with('0'));
    if !canonical {
        return None;
    }
    let layer: u32 = layer.parse().ok().filter(|&l| l < hp.n_layers)?;
    let roles = if hp.arch.has_qkv_bias() {
        N_ROLES
    } else {
        N_PLAIN_ROLES
    };
    let role = LAYER.iter().take(roles).position(|(s, _)| *s == suffix)?;
    Some(Slot::Layer(layer, role))
}

/// The shape (innermost first) and role `slot` calls for under `hp`.
/// `hp` passed [`Hparams::validate`], so every extent is small and exact.
fn expected(slot: Slot, hp: &Hparams) -> (Shape, Role) {
    let dim = u64::from(hp.dim);
    let q_dim = u64::from(hp.q_dim());
    let kv_dim = u64::from(hp.kv_dim());
    let ffn = u64::from(hp.ffn_dim);
    let vocab = u64::from(hp.vocab);
    match slot {
        Slot::Global(g) => {
            let shape = match g {
                0 | 2 => Shape::new(&[dim, vocab]),
                1 => Shape::new(&[dim]),
                _ => Shape::new(&[u64::from(hp.rope_dim / 2)]),
            };
            (shape, GLOBAL.get(g).map_or(Role::Vector, |r| r.1))
        }
        Slot::Layer(_, r) => {
            let shape = match r {
                0 | 5 => Shape::new(&[dim]),
                1 => Shape::new(&[dim, q_dim]),
                2 | 3 => Shape::new(&[dim, kv_dim]),
                4 => Shape::new(&[q_dim, dim]),
                6 | 7 => Shape::new(&[dim, ffn]),
                8 => Shape::new(&[ffn, dim]),
                9 => Shape::new(&[q_dim]),
                _ => Shape::new(&[kv_dim]),
            };
            (shape, LAYER.get(r).map_or(Role::Vector, |r| r.1))
        }
    }
}

/// The tensor's location after checking its shape and type against `slot`.
fn check(info: &TensorInfo<'_>, slot: Slot, hp: &Hparams) -> Result<TensorLoc> {
    let (expected_shape, role) = expected(slot, hp);
    // Trailing extents of 1 do not change a shape.
    if info.shape.dims != expected_shape.dims {
        return Err(ModelError::ShapeMismatch {
            name: Name::new(info.name),
            expected: expected_shape,
            found: info.shape,
        }
        .into());
    }
    let ok_type = match role {
        Role::Matrix => info.ggml_type.computable(),
        Role::Vector => info.ggml_type == GgmlType::F32,
    };
    if !ok_type {
        return Err(ModelError::UnsupportedType {
            name: Name::new(info.name),
            ggml_type: info.ggml_type.id(),
        }
        .into());
    }
    TensorLoc::of(info).ok_or(
        ModelError::BadValue {
            key: Name::new(info.name),
            why: "tensor extent does not fit in 32 bits",
        }
        .into(),
    )
}

/// The field of `index` for role `r` (in [`LAYER`] order).
fn field(index: &mut LayerIndex, r: usize) -> Option<&mut TensorLoc> {
    Some(match r {
        0 => &mut index.attn_norm,
        1 => &mut index.wq,
        2 => &mut index.wk,
        3 => &mut index.wv,
        4 => &mut index.wo,
        5 => &mut index.ffn_norm,
        6 => &mut index.w_gate,
        7 => &mut index.w_up,
        8 => &mut index.w_down,
        9 => &mut index.bq,
        10 => &mut index.bk,
        11 => &mut index.bv,
        _ => return None,
    })
}

/// Formats a per-layer tensor name (`blk.{i}.{suffix}`) into `buf`.
fn layer_name<'b>(buf: &'b mut [u8; 64], layer: u32, suffix: &str) -> &'b str {
    crate::fmt_util::write_to(buf, format_args!("blk.{layer}.{suffix}"))
}

/// Checks every tensor the forward pass needs against `hp` and reports the
/// per-layer locations through `on_layer`, in layer order (so the caller
/// decides where the index lives: in the arena for the engine, nowhere for
/// the planner).
///
/// Fails on a tensor the architecture does not use (a file with tensors we
/// would ignore is a model we would run wrongly), two tensors with one name,
/// a shape that differs from what the hyperparameters imply (naming the
/// tensor and both shapes), a type no kernel reads, or a missing tensor.
///
/// Work is linear in the tensor table for files that store each layer's
/// tensors together (every writer we know), and at most tensors x layers
/// entry reads for any order: the table is read once to check every entry,
/// then once more, resuming where the previous layer was found, to gather
/// each layer. `hp` must have passed [`Hparams::validate`] (as every
/// [`Hparams::from_gguf`] result has).
pub fn build_index(
    gguf: &Gguf<'_>,
    hp: &Hparams,
    mut on_layer: impl FnMut(u32, LayerIndex),
) -> Result<GlobalIndex> {
    hp.validate()?;
    // Pass 1: every entry is known, unique, and of the right shape and type.
    let mut seen =
        Seen([0; (GLOBAL.len() + N_ROLES * super::hparams::MAX_LAYERS as usize) / 64 + 1]);
    let mut globals = [TensorLoc::default(); GLOBAL.len()];
    let mut weights_bytes: u64 = 0;
    let mut it = gguf.tensors();
    loop {
        let at = it.entry_offset();
        let Some(info) = it.next() else { break };
        let Some(slot) = classify(info.name, hp) else {
            return Err(ModelError::UnexpectedTensor {
                name: Name::new(info.name),
            }
            .into());
        };
        if !seen.insert(slot) {
            return Err(crate::gguf::GgufError::duplicate_tensor(at, info.name).into());
        }
        let loc = check(&info, slot, hp)?;
        weights_bytes = weights_bytes.saturating_add(loc.len);
        if let Slot::Global(g) = slot {
            if let Some(s) = globals.get_mut(g) {
                *s = loc;
            }
        }
    }
    // Then nothing required is missing (named in index order).
    for (g, (name, _, required)) in GLOBAL.iter().enumerate() {
        if *required && !seen.contains(Slot::Global(g)) {
            return Err(ModelError::MissingTensor {
                name: Name::new(name),
            }
            .into());
        }
    }
    let roles = if hp.arch.has_qkv_bias() {
        N_ROLES
    } else {
        N_PLAIN_ROLES
    };
    for layer in 0..hp.n_layers {
        for (r, (suffix, _)) in LAYER.iter().enumerate().take(roles) {
            if !seen.contains(Slot::Layer(layer, r)) {
                let mut buf = [0u8; 64];
                return Err(ModelError::MissingTensor {
                    name: Name::new(layer_name(&mut buf, layer, suffix)),
                }
                .into());
            }
        }
    }

    // Pass 2: gather each layer's locations, resuming the scan where the
    // previous layer's last tensor was found (wrapping around once).
    let total = gguf.tensor_count();
    let mut it = gguf.tensors();
    for layer in 0..hp.n_layers {
        let mut index = LayerIndex::default();
        let mut found = 0u16;
        let mut missing = roles;
        let mut scanned: u64 = 0;
        while missing > 0 && scanned < total.saturating_mul(2) {
            scanned += 1;
            let info = match it.next() {
                Some(info) => info,
                None => {
                    it = gguf.tensors();
                    continue;
                }
            };
            if let Some(Slot::Layer(l, r)) = classify(info.name, hp) {
                if l == layer && found & (1 << r) == 0 {
                    if let (Some(f), Some(loc)) = (field(&mut index, r), TensorLoc::of(&info)) {
                        *f = loc;
                        found |= 1 << r;
                        missing -= 1;
                    }
                }
            }
        }
        if missing > 0 {
            // Pass 1 saw every tensor; a table that reads differently now
            // is not one we index.
            return Err(Error::InvalidArgument {
                what: "internal: the tensor table changed between two reads",
            });
        }
        on_layer(layer, index);
    }

    let token_embd = globals[0];
    let output = if globals[2].is_absent() {
        token_embd
    } else {
        globals[2]
    };
    Ok(GlobalIndex {
        token_embd,
        output_norm: globals[1],
        output,
        rope_freqs: globals[3],
        weights_bytes,
    })
}
