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

/// Largest value accepted for any one dimension. Keeps every product of two
/// dimensions far inside u64 and rejects files that try to size the arena
/// into the exabytes.
pub const MAX_DIM: u32 = 1 << 24;

impl Hparams {
    /// Query width: `n_heads * head_dim`.
    pub fn q_dim(&self) -> u32 {
        self.n_heads * self.head_dim
    }

    /// Key (and value) width: `n_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> u32 {
        self.n_kv_heads * self.head_dim
    }

    /// Query heads per KV head.
    pub fn gqa_group(&self) -> u32 {
        self.n_heads / self.n_kv_heads.max(1)
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

        let n_layers = reader.dim("block_count")?;
        let dim = reader.dim("embedding_length")?;
        let ffn_dim = reader.dim("feed_forward_length")?;
        let n_heads = reader.dim("attention.head_count")?;
        let n_kv_heads = match reader.opt_u32("attention.head_count_kv")? {
            Some(v) => check_dim(p, "attention.head_count_kv", v)?,
            None => n_heads,
        };
        if n_heads % n_kv_heads != 0 {
            return Err(reader.bad(
                "attention.head_count_kv",
                "query heads are not a multiple of KV heads",
            ));
        }
        let head_dim = match reader.opt_u32("attention.key_length")? {
            Some(v) => check_dim(p, "attention.key_length", v)?,
            None => {
                if dim % n_heads != 0 {
                    return Err(reader.bad(
                        "attention.head_count",
                        "embedding width is not a multiple of the head count",
                    ));
                }
                dim / n_heads
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
        if head_dim % 2 != 0 {
            return Err(reader.bad("attention.key_length", "head size must be even for RoPE"));
        }
        let rope_dim = match reader.opt_u32("rope.dimension_count")? {
            Some(v) => v,
            None => head_dim,
        };
        if rope_dim == 0 || rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(reader.bad(
                "rope.dimension_count",
                "must be even, non-zero and at most the head size",
            ));
        }
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
        let ctx_train = reader.dim("context_length")?;

        // Vocabulary: the metadata count if present, else the token list, and
        // in any case the embedding matrix's rows (checked by the tensor index).
        let vocab = match reader.opt_u32("vocab_size")? {
            Some(v) => check_dim(p, "vocab_size", v)?,
            None => match gguf.get("tokenizer.ggml.tokens")? {
                Some(Value::Array(a)) => u32::try_from(a.len())
                    .ok()
                    .filter(|&n| n > 0 && n <= MAX_DIM)
                    .ok_or(ModelError::BadValue {
                        key: Name::new("tokenizer.ggml.tokens"),
                        why: "vocabulary size out of range",
                    })?,
                _ => {
                    return Err(ModelError::MissingKey {
                        key: key_name(p, "vocab_size"),
                    }
                    .into())
                }
            },
        };
        let tied_embeddings = gguf.tensor("output.weight")?.is_none();

        Ok(Hparams {
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
        })
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

fn check_dim(prefix: &str, suffix: &str, v: u32) -> Result<u32> {
    if v == 0 || v > MAX_DIM {
        return Err(ModelError::BadValue {
            key: key_name(prefix, suffix),
            why: "must be between 1 and 2^24",
        }
        .into());
    }
    Ok(v)
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

    /// A required dimension in `1..=MAX_DIM`.
    fn dim(&self, suffix: &str) -> Result<u32> {
        let v = self.opt_u32(suffix)?.ok_or(ModelError::MissingKey {
            key: key_name(self.prefix, suffix),
        })?;
        check_dim(self.prefix, suffix, v)
    }
}
