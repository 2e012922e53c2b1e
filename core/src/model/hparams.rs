//! Hyperparameters of the `llama` architecture family, read from GGUF
//! metadata and checked for consistency before anything is sized from them.

use crate::error::{Error, ModelError, Name, Result};
use crate::gguf::{Gguf, Value};

/// Architectures of the llama family the engine knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `llama`: Llama 1/2/3, Mistral, SmolLM, TinyLlama … (normal RoPE pairing).
    Llama,
    /// `qwen2`: Llama layout plus q/k/v biases, NeoX RoPE pairing.
    Qwen2,
}

impl Arch {
    /// The architecture named by `general.architecture`.
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            _ => None,
        }
    }

    /// The GGUF name (also the metadata key prefix).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// How RoPE pairs the dimensions of a head.
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Arch::Llama => RopeStyle::Normal,
            Arch::Qwen2 => RopeStyle::NeoX,
        }
    }

    /// Whether q, k and v projections carry a bias.
    pub fn has_qkv_bias(self) -> bool {
        matches!(self, Arch::Qwen2)
    }
}

/// RoPE dimension pairing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i+1)` rotate together (GPT-J / llama style).
    Normal,
    /// Halves `(i, i + d/2)` rotate together (GPT-NeoX style).
    NeoX,
}

/// RoPE frequency scaling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// Positions are used as they are.
    None,
    /// Positions are divided by `factor` (linear interpolation).
    Linear {
        /// The scale factor (> 0).
        factor: f32,
    },
    /// YaRN: recorded so plans and `inspect` can show it; the forward pass
    /// refuses it until implemented.
    Yarn {
        /// The scale factor.
        factor: f32,
        /// Training context before extension.
        original_ctx: u32,
    },
}

/// Hyperparameters of a llama-family model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hparams {
    /// Architecture.
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layers: u32,
    /// Embedding (residual stream) width.
    pub dim: u32,
    /// Feed-forward hidden width.
    pub ffn_dim: u32,
    /// Query heads.
    pub n_heads: u32,
    /// Key/value heads (equal to `n_heads` for multi-head, 1 for multi-query).
    pub n_kv_heads: u32,
    /// Values per head (key and value length).
    pub head_dim: u32,
    /// Dimensions of each head that RoPE rotates.
    pub rope_dim: u32,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Context length the model was trained for.
    pub ctx_train: u32,
    /// Vocabulary size (rows of the embedding matrix).
    pub vocab: u32,
    /// Whether the output head reuses `token_embd.weight` (no `output.weight`).
    pub tied_embeddings: bool,
}

/// Most transformer blocks (`*.block_count`). Real models up to ~1T
/// parameters have at most ~130; the cap also bounds the model index and
/// the work of indexing the tensor table.
pub const MAX_LAYERS: u32 = 1 << 10;
/// Widest residual stream (`*.embedding_length`); real models: up to ~25k.
pub const MAX_EMBEDDING: u32 = 1 << 16;
/// Widest feed-forward block (`*.feed_forward_length`); real models: up to ~75k.
pub const MAX_FEED_FORWARD: u32 = 1 << 18;
/// Most query (or KV) heads (`*.attention.head_count[_kv]`); real models: up to 128.
pub const MAX_HEADS: u32 = 1 << 10;
/// Largest head (`*.attention.key_length`); real models: up to 256.
pub const MAX_HEAD_DIM: u32 = 1 << 10;
/// Largest vocabulary (`*.vocab_size`, or the token list); real models: up to 256k.
pub const MAX_VOCAB: u32 = 1 << 22;
/// Longest training context (`*.context_length`), the engine's context cap
/// ([`crate::mem::plan::MAX_CTX_TOKENS`]).
pub const MAX_CONTEXT: u32 = 1 << 24;

/// Every cap, by key suffix, for tools and tests.
pub const CAPS: [(&str, u32); 8] = [
    ("block_count", MAX_LAYERS),
    ("embedding_length", MAX_EMBEDDING),
    ("feed_forward_length", MAX_FEED_FORWARD),
    ("attention.head_count", MAX_HEADS),
    ("attention.head_count_kv", MAX_HEADS),
    ("attention.key_length", MAX_HEAD_DIM),
    ("vocab_size", MAX_VOCAB),
    ("context_length", MAX_CONTEXT),
];

// With every dimension within its cap, every product the engine forms from
// two of them fits in u32, and any three in u64 (checked here, once).
const _: () = assert!((MAX_HEADS as u64) * (MAX_HEAD_DIM as u64) <= u32::MAX as u64);
const _: () = assert!((MAX_EMBEDDING as u64) * (MAX_VOCAB as u64) <= 1 << 40);
const _: () = assert!(MAX_CONTEXT == crate::mem::plan::MAX_CTX_TOKENS);

impl Hparams {
    /// Query width: `n_heads * head_dim` (at most `MAX_HEADS * MAX_HEAD_DIM`
    /// = 2^20 for hyperparameters that passed [`Hparams::validate`]; for
    /// others the product saturates instead of wrapping).
    pub fn q_dim(&self) -> u32 {
        self.n_heads.saturating_mul(self.head_dim)
    }

    /// Key (and value) width: `n_kv_heads * head_dim` (see [`Hparams::q_dim`]).
    pub fn kv_dim(&self) -> u32 {
        self.n_kv_heads.saturating_mul(self.head_dim)
    }

    /// Query heads per KV head (0 if `n_kv_heads` is 0, which
    /// [`Hparams::validate`] refuses).
    pub fn gqa_group(&self) -> u32 {
        self.n_heads.checked_div(self.n_kv_heads).unwrap_or(0)
    }

    /// Checks every dimension against its cap (`MAX_*`, a
    /// [`ModelError::TooLarge`] naming the key and the cap) and the
    /// relations between them: KV heads divide query heads, an even head
    /// size, RoPE over an even part of the head. [`Hparams::from_gguf`]
    /// calls it, so the sizes of a parsed [`crate::model::Model`] can be
    /// multiplied without further checks: every product of two fits in u32.
    pub fn validate(&self) -> Result<()> {
        let p = self.arch.name();
        let dims = [
            ("block_count", self.n_layers, MAX_LAYERS),
            ("embedding_length", self.dim, MAX_EMBEDDING),
            ("feed_forward_length", self.ffn_dim, MAX_FEED_FORWARD),
            ("attention.head_count", self.n_heads, MAX_HEADS),
            ("attention.head_count_kv", self.n_kv_heads, MAX_HEADS),
            ("attention.key_length", self.head_dim, MAX_HEAD_DIM),
            ("vocab_size", self.vocab, MAX_VOCAB),
            ("context_length", self.ctx_train, MAX_CONTEXT),
        ];
        for (suffix, value, cap) in dims {
            check_dim(p, suffix, value, cap)?;
        }
        let bad = |suffix: &str, why: &'static str| -> Error {
            ModelError::BadValue {
                key: key_name(p, suffix),
                why,
            }
            .into()
        };
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(bad(
                "attention.head_count_kv",
                "query heads are not a multiple of KV heads",
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(bad(
                "attention.key_length",
                "head size must be even for RoPE",
            ));
        }
        if self.rope_dim == 0 || self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return Err(bad(
                "rope.dimension_count",
                "must be even, non-zero and at most the head size",
            ));
        }
        // The products the engine sizes buffers with, checked once.
        for (what, a, b) in [
            (
                "query width (head_count x key_length)",
                self.n_heads,
                self.head_dim,
            ),
            (
                "KV width (head_count_kv x key_length)",
                self.n_kv_heads,
                self.head_dim,
            ),
        ] {
            if a.checked_mul(b).is_none() {
                return Err(Error::Overflow { what });
            }
        }
        if let RopeScaling::Yarn { original_ctx, .. } = self.rope_scaling {
            check_dim(
                p,
                "rope.scaling.original_context_length",
                original_ctx.max(1),
                MAX_CONTEXT,
            )?;
        }
        Ok(())
    }

    /// Reads and checks the hyperparameters of `gguf`.
    pub fn from_gguf(gguf: &Gguf<'_>) -> Result<Hparams> {
        let arch_key = "general.architecture";
        let arch_name = gguf
            .get(arch_key)?
            .ok_or(ModelError::MissingKey {
                key: Name::new(arch_key),
            })?
            .as_str()
            .ok_or(ModelError::BadValue {
                key: Name::new(arch_key),
                why: "not a UTF-8 string",
            })?;
        let arch = Arch::from_name(arch_name).ok_or(ModelError::UnsupportedArchitecture {
            name: Name::new(arch_name),
        })?;
        let p = arch.name();
        let reader = Keys { gguf, prefix: p };

        // Each dimension against its cap first, so nothing below computes
        // with an absurd value.
        let n_layers = reader.dim("block_count", MAX_LAYERS)?;
        let dim = reader.dim("embedding_length", MAX_EMBEDDING)?;
        let ffn_dim = reader.dim("feed_forward_length", MAX_FEED_FORWARD)?;
        let n_heads = reader.dim("attention.head_count", MAX_HEADS)?;
        let n_kv_heads = reader
            .opt_dim("attention.head_count_kv", MAX_HEADS)?
            .unwrap_or(n_heads);
        let head_dim = match reader.opt_dim("attention.key_length", MAX_HEAD_DIM)? {
            Some(v) => v,
            None => {
                if !dim.is_multiple_of(n_heads) {
                    return Err(reader.bad(
                        "attention.head_count",
                        "embedding width is not a multiple of the head count",
                    ));
                }
                check_dim(p, "attention.key_length", dim / n_heads, MAX_HEAD_DIM)?
            }
        };
        if let Some(v) = reader.opt_u32("attention.value_length")? {
            if v != head_dim {
                return Err(reader.bad(
                    "attention.value_length",
                    "value length differs from key length",
                ));
            }
        }
        let rope_dim = reader.opt_u32("rope.dimension_count")?.unwrap_or(head_dim);
        let rope_base = reader.opt_f32("rope.freq_base")?.unwrap_or(10_000.0);
        if !(rope_base.is_finite() && rope_base > 1.0) {
            return Err(reader.bad("rope.freq_base", "must be finite and above 1"));
        }
        let rope_scaling = read_rope_scaling(&reader)?;
        let rms_eps =
            reader
                .opt_f32("attention.layer_norm_rms_epsilon")?
                .ok_or(ModelError::MissingKey {
                    key: key_name(p, "attention.layer_norm_rms_epsilon"),
                })?;
        if !(rms_eps.is_finite() && rms_eps > 0.0 && rms_eps < 1.0) {
            return Err(reader.bad("attention.layer_norm_rms_epsilon", "must be in (0, 1)"));
        }
        let ctx_train = reader.dim("context_length", MAX_CONTEXT)?;

        // Vocabulary: the metadata count if present, else the token list, and
        // in any case the embedding matrix's rows (checked by the tensor index).
        let vocab = match reader.opt_dim("vocab_size", MAX_VOCAB)? {
            Some(v) => v,
            None => match gguf.get("tokenizer.ggml.tokens")? {
                Some(Value::Array(a)) => {
                    let n = u64::try_from(a.len()).unwrap_or(u64::MAX);
                    check_value(Name::new("tokenizer.ggml.tokens"), n, MAX_VOCAB)?
                }
                _ => {
                    return Err(ModelError::MissingKey {
                        key: key_name(p, "vocab_size"),
                    }
                    .into())
                }
            },
        };
        let tied_embeddings = gguf.tensor("output.weight")?.is_none();

        let hp = Hparams {
            arch,
            n_layers,
            dim,
            ffn_dim,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_dim,
            rope_base,
            rope_scaling,
            rms_eps,
            ctx_train,
            vocab,
            tied_embeddings,
        };
        hp.validate()?;
        Ok(hp)
    }
}

fn read_rope_scaling(reader: &Keys<'_, '_>) -> Result<RopeScaling> {
    let kind = match reader.gguf.get_arch(reader.prefix, "rope.scaling.type")? {
        Some(v) => v
            .as_str()
            .ok_or_else(|| reader.bad("rope.scaling.type", "not a string"))?,
        None => "",
    };
    let factor = match reader.opt_f32("rope.scaling.factor")? {
        Some(f) => Some(f),
        None => reader.opt_f32("rope.scale_linear")?,
    };
    let check = |f: f32| -> Result<f32> {
        if f.is_finite() && f > 0.0 {
            Ok(f)
        } else {
            Err(reader.bad("rope.scaling.factor", "must be finite and positive"))
        }
    };
    match (kind, factor) {
        ("" | "none", None) => Ok(RopeScaling::None),
        ("" | "none", Some(f)) if f == 1.0 || f == 0.0 => Ok(RopeScaling::None),
        ("" | "linear", Some(f)) => Ok(RopeScaling::Linear { factor: check(f)? }),
        ("linear", None) => {
            Err(reader.bad("rope.scaling.factor", "linear scaling without a factor"))
        }
        ("yarn", f) => Ok(RopeScaling::Yarn {
            factor: check(f.unwrap_or(1.0))?,
            original_ctx: reader
                .opt_u32("rope.scaling.original_context_length")?
                .unwrap_or(0),
        }),
        _ => Err(reader.bad("rope.scaling.type", "unknown RoPE scaling type")),
    }
}

fn key_name(prefix: &str, suffix: &str) -> Name {
    let mut buf = [0u8; Name::CAPACITY];
    let s = crate::fmt_util::write_to(&mut buf, format_args!("{prefix}.{suffix}"));
    Name::new(s)
}

/// `value` as a dimension in `1..=cap`: [`ModelError::BadValue`] for 0,
/// [`ModelError::TooLarge`] (naming the key and the cap) above the cap.
fn check_value(key: Name, value: u64, cap: u32) -> Result<u32> {
    if value == 0 {
        return Err(ModelError::BadValue {
            key,
            why: "must be at least 1",
        }
        .into());
    }
    if value > u64::from(cap) {
        return Err(ModelError::TooLarge {
            key,
            value,
            cap: u64::from(cap),
        }
        .into());
    }
    // `value <= cap <= u32::MAX`.
    Ok(u32::try_from(value).unwrap_or(cap))
}

fn check_dim(prefix: &str, suffix: &str, value: u32, cap: u32) -> Result<u32> {
    check_value(key_name(prefix, suffix), u64::from(value), cap)
}

/// Typed access to `"{prefix}.{suffix}"` keys.
struct Keys<'g, 'a> {
    gguf: &'g Gguf<'a>,
    prefix: &'g str,
}

impl Keys<'_, '_> {
    fn bad(&self, suffix: &str, why: &'static str) -> Error {
        ModelError::BadValue {
            key: key_name(self.prefix, suffix),
            why,
        }
        .into()
    }

    fn opt_u32(&self, suffix: &str) -> Result<Option<u32>> {
        match self.gguf.get_arch(self.prefix, suffix)? {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| self.bad(suffix, "not an unsigned 32-bit integer")),
        }
    }

    fn opt_f32(&self, suffix: &str) -> Result<Option<f32>> {
        match self.gguf.get_arch(self.prefix, suffix)? {
            None => Ok(None),
            Some(v) => v
                .as_f32()
                .map(Some)
                .ok_or_else(|| self.bad(suffix, "not a float")),
        }
    }

    /// An optional dimension in `1..=cap` (any unsigned integer type; a
    /// value above the cap is [`ModelError::TooLarge`] even if it does not
    /// fit in 32 bits).
    fn opt_dim(&self, suffix: &str, cap: u32) -> Result<Option<u32>> {
        match self.gguf.get_arch(self.prefix, suffix)? {
            None => Ok(None),
            Some(v) => {
                let v = v
                    .as_u64()
                    .ok_or_else(|| self.bad(suffix, "not a non-negative integer"))?;
                check_value(key_name(self.prefix, suffix), v, cap).map(Some)
            }
        }
    }

    /// A required dimension in `1..=cap`.
    fn dim(&self, suffix: &str, cap: u32) -> Result<u32> {
        self.opt_dim(suffix, cap)?.ok_or_else(|| {
            ModelError::MissingKey {
                key: key_name(self.prefix, suffix),
            }
            .into()
        })
    }
}
