//! The one sizing model: an architecture described by its sizes
//! ([`ArchSpec`]), from which come the weights (resident, and read per
//! token), the KV cache, and the engine's scratch, for the whole model and
//! for one tensor-parallel shard. The engine's own plan sizes its KV pages
//! and scratch from the same functions ([`ArchSpec::from_hparams`],
//! [`ArchSpec::scratch_shape`], [`KvGeometry`]); what-if questions about
//! architectures the engine cannot run yet (multi-head latent attention,
//! sliding windows, mixtures of experts) are answered by the same code.
//!
//! # Formulas
//!
//! With `e(n)` the bytes of `n` cached values in the KV type
//! ([`KvType::row_bytes`]: `2n` for F16, `4n` for F32, `34n/32` for Q8_0):
//!
//! * KV per token and layer: grouped-query attention caches K and V,
//!   `2 x n_kv_heads x e(head_dim)` ([`KvGeometry::layer_bytes_per_token`];
//!   multi-head: `n_kv_heads = n_heads`, multi-query: 1); multi-head latent
//!   attention caches the compressed latent and the shared RoPE key,
//!   `e(kv_lora_rank + qk_rope_head_dim)`.
//! * KV for a context of `ctx` tokens and `B` sequences: every layer holds
//!   `ctx` tokens, a sliding-window layer at most `window`:
//!   `B x per_layer x (n_full x ctx + n_sliding x min(ctx, window))`.
//! * Weights: every matrix `rows x cols` takes `rows x (cols / block) x
//!   block_bytes` in the weight type (rows must be whole blocks); norms,
//!   biases and expert routers stay f32, as llama.cpp stores them.
//!   Resident: every tensor. Read per token: all but the embedding table
//!   (a token reads one row of it), and of a mixture-of-experts layer only
//!   the router, the `n_active` routed experts and the shared experts; the
//!   output head is read whole (the embedding table, when tied).
//! * Scratch: the engine's formulas ([`super::scratch`]) over
//!   [`ArchSpec::scratch_shape`].
//!
//! # Tensors, per layer
//!
//! * attention, grouped-query: `q (n_heads hd x dim)`, `k, v (n_kv_heads hd
//!   x dim)`, `o (dim x n_heads hd)`; with `qkv_bias` f32 biases of q, k,
//!   v; with `qk_norm` two f32 norms of `head_dim`;
//! * attention, latent (DeepSeek): `q_a (q_lora x dim)`, its f32 norm,
//!   `q_b (n_heads (nope + rope) x q_lora)` (or one `q (n_heads (nope +
//!   rope) x dim)` when `q_lora_rank = 0`), `kv_a (kv_lora + rope x dim)`,
//!   its f32 norm of `kv_lora`, `kv_b (n_heads (nope + v) x kv_lora)`,
//!   `o (dim x n_heads v)`;
//! * `norms_per_layer` f32 norms of `dim`;
//! * feed-forward, dense: `gate, up (ffn x dim)`, `down (dim x ffn)`;
//!   mixture of experts: an f32 router `(n_experts x dim)` (and an f32
//!   bias of `n_experts` with `router_bias`), `n_experts` experts of
//!   `gate, up, down` with `expert_ffn_dim`, and the shared experts as one
//!   such block of `n_shared x expert_ffn_dim`. The first `n_dense_layers`
//!   layers are dense.
//!
//! Outside the layers: the embedding table `(vocab x dim)`, the output head
//! (the same size, unless tied) and the final f32 norm of `dim`.
//!
//! # Tensor parallelism over `S` shards
//!
//! A shard holds `ceil(n_heads / S)` query heads, `ceil(n_kv_heads / S)`
//! KV heads (heads are replicated when there are fewer than shards),
//! `ceil(1/S)` of every feed-forward width (each expert's too) and of the
//! vocabulary; the residual width, norms, routers and the MLA latent
//! projections and cache are replicated. The per-shard numbers are the
//! formulas above applied to that slice ([`ArchSpec::shard`]).

use super::plan::{in_range, MAX_BATCH, MAX_CTX_TOKENS, MAX_OUTPUTS, MAX_PAGE_TOKENS, MAX_THREADS};
use super::scratch::{
    scratch_plan, widest_act_bytes, ScratchParams, ScratchPlan, ScratchShape, WorkPhase,
};
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::kernels::{act_format, ActFormat};
use crate::kv::{KvGeometry, KvType};
use crate::model::Hparams;

/// Multi-head latent attention dimensions (DeepSeek-V2/V3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mla {
    /// Rank of the query compression (0: queries are not compressed).
    pub q_lora_rank: u32,
    /// Rank of the KV compression (the cached latent width).
    pub kv_lora_rank: u32,
    /// Per-head query/key dimensions without RoPE.
    pub qk_nope_head_dim: u32,
    /// Per-head RoPE dimensions (the RoPE key is shared and cached).
    pub qk_rope_head_dim: u32,
    /// Per-head value dimensions.
    pub v_head_dim: u32,
}

/// Sliding-window attention: `n_sliding_layers` layers see (and cache)
/// only the last `window` tokens; the others see everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindow {
    /// Tokens a sliding-window layer attends to.
    pub window: u32,
    /// How many layers slide.
    pub n_sliding_layers: u32,
}

/// Mixture-of-experts feed-forward blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moe {
    /// Routed experts per layer.
    pub n_experts: u32,
    /// Routed experts used per token.
    pub n_active: u32,
    /// Hidden width of one expert.
    pub expert_ffn_dim: u32,
    /// Always-active shared experts per layer (together one block of
    /// `n_shared x expert_ffn_dim`).
    pub n_shared: u32,
    /// Leading layers with a dense feed-forward block of `ffn_dim` instead.
    pub n_dense_layers: u32,
    /// Whether the router has a per-expert f32 bias (DeepSeek-V3's
    /// `e_score_correction_bias`).
    pub router_bias: bool,
}

/// An architecture described by its sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchSpec {
    /// Transformer blocks.
    pub n_layers: u32,
    /// Embedding (residual stream) width.
    pub dim: u32,
    /// Query heads.
    pub n_heads: u32,
    /// Key/value heads (ignored with MLA).
    pub n_kv_heads: u32,
    /// Values per head (ignored with MLA).
    pub head_dim: u32,
    /// Dense feed-forward width (unused when every layer is a mixture of experts).
    pub ffn_dim: u32,
    /// Vocabulary size.
    pub vocab: u32,
    /// Whether the output head reuses the embedding table.
    pub tied_embeddings: bool,
    /// Whether q, k and v projections have biases (Qwen2).
    pub qkv_bias: bool,
    /// Norms of `dim` per block (2 for Llama, 4 for Gemma 3).
    pub norms_per_layer: u32,
    /// Whether q and k get a norm of `head_dim` each (Gemma 3, Qwen3).
    pub qk_norm: bool,
    /// Dimensions of each head RoPE rotates (0: the whole head; ignored with MLA).
    pub rope_dim: u32,
    /// Multi-head latent attention instead of per-head K and V.
    pub mla: Option<Mla>,
    /// Sliding-window layers.
    pub sliding_window: Option<SlidingWindow>,
    /// Mixture-of-experts feed-forward blocks.
    pub moe: Option<Moe>,
}

/// Largest value accepted for any one size of an architecture planned
/// here. Looser than the engine's caps per dimension
/// ([`crate::model::hparams::CAPS`]): what-if sizing is for architectures
/// the engine may not run, and every product it forms is checked.
pub const MAX_DIM: u32 = 1 << 24;
/// Most routed (or shared) experts per layer accepted.
pub const MAX_EXPERTS: u32 = 1 << 16;
/// Most norms of `dim` per block accepted.
pub const MAX_NORMS_PER_LAYER: u32 = 8;
/// Most sequences a what-if question may hold.
pub const MAX_SEQUENCES: u32 = 1 << 16;
/// Most tensor-parallel shards a what-if question may use.
pub const MAX_SHARDS: u32 = 1 << 12;

/// What a what-if question is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WhatIfParams {
    /// Type of the weight matrices (norms, biases and routers stay f32).
    pub weight_type: GgmlType,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Context per sequence, in tokens.
    pub ctx_tokens: u32,
    /// Sequences held at once (each with its own KV cache).
    pub sequences: u32,
    /// Tensor-parallel shards.
    pub shards: u32,
    /// What sizes the scratch (the engine's parameters).
    pub scratch: ScratchParams,
}

/// The default context of a what-if question, in tokens.
pub const DEFAULT_WHATIF_CTX: u32 = 2048;

impl Default for WhatIfParams {
    /// F16 weights and KV cache, a context of [`DEFAULT_WHATIF_CTX`]
    /// tokens, one sequence, one shard, and the engine's default scratch
    /// parameters ([`PlanParams::default`](super::plan::PlanParams)).
    fn default() -> Self {
        WhatIfParams {
            weight_type: GgmlType::F16,
            kv_type: KvType::F16,
            ctx_tokens: DEFAULT_WHATIF_CTX,
            sequences: 1,
            shards: 1,
            scratch: super::plan::PlanParams::default().scratch(),
        }
    }
}

/// Sizes of a whole model or of one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Parameters stored.
    pub params_total: u64,
    /// Parameters read per token.
    pub params_active: u64,
    /// Bytes of the weights stored.
    pub weights_resident_bytes: u64,
    /// Bytes of the weights read per token.
    pub weights_read_per_token_bytes: u64,
    /// KV bytes one token of one sequence adds while every layer keeps it.
    pub kv_bytes_per_token: u64,
    /// KV bytes of every sequence at the full context (windows applied).
    pub kv_bytes: u64,
}

/// The answer to a what-if question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WhatIf {
    /// The whole model (all shards together).
    pub model: Footprint,
    /// One tensor-parallel shard (the whole model with one shard).
    pub shard: Footprint,
    /// The engine's scratch buffers on one shard.
    pub shard_scratch: ScratchPlan,
    /// Weights, KV cache and scratch of one shard.
    pub shard_total_bytes: u64,
}

fn overflow() -> Error {
    Error::Overflow {
        what: "what-if sizing",
    }
}

/// Checked product of all factors.
fn prod(factors: &[u64]) -> Result<u64> {
    factors
        .iter()
        .try_fold(1u64, |acc, &f| acc.checked_mul(f))
        .ok_or_else(overflow)
}

/// Checked sum of all terms.
fn sum(terms: &[u64]) -> Result<u64> {
    terms
        .iter()
        .try_fold(0u64, |acc, &t| acc.checked_add(t))
        .ok_or_else(overflow)
}

fn to_usize(v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| overflow())
}

/// How a tensor is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Storage {
    /// In the weight type: a matrix the forward pass multiplies by.
    Weights,
    /// In f32 (norms, biases, routers).
    F32,
}

/// One kind of tensor, `count` times in the model, `active` of them read per token.
#[derive(Clone, Copy, Debug)]
struct Tensor {
    rows: u64,
    cols: u64,
    count: u64,
    active: u64,
    storage: Storage,
    /// The error when a row is not whole blocks of the weight type.
    not_blocks: &'static str,
}

impl Tensor {
    fn matrix(rows: u64, cols: u64, count: u64, active: u64, not_blocks: &'static str) -> Tensor {
        Tensor {
            rows,
            cols,
            count,
            active,
            storage: Storage::Weights,
            not_blocks,
        }
    }

    fn f32(rows: u64, cols: u64, count: u64, active: u64) -> Tensor {
        Tensor {
            rows,
            cols,
            count,
            active,
            storage: Storage::F32,
            not_blocks: "",
        }
    }

    /// Bytes of one such tensor.
    fn bytes(&self, ty: GgmlType) -> Result<u64> {
        match self.storage {
            Storage::F32 => prod(&[self.rows, self.cols, 4]),
            Storage::Weights => {
                let block = u64::from(ty.block_size());
                if block == 0 || !self.cols.is_multiple_of(block) {
                    return Err(Error::InvalidArgument {
                        what: self.not_blocks,
                    });
                }
                prod(&[self.rows, self.cols / block, u64::from(ty.type_size())])
            }
        }
    }
}

/// The activation format the engine would quantize a matmul input to for
/// weights of `ty`: the kernels' own choice where a kernel exists, else
/// the integer kernels' format for a block type and f32 for a float one.
fn planned_act_format(ty: GgmlType) -> ActFormat {
    act_format(ty).unwrap_or(if ty.block_size() > 1 {
        ActFormat::Q8
    } else {
        ActFormat::F32
    })
}

impl ArchSpec {
    /// The dense architecture of a GGUF model the engine runs: the
    /// description its plan sizes scratch from.
    pub fn from_hparams(hp: &Hparams) -> ArchSpec {
        ArchSpec {
            n_layers: hp.n_layers,
            dim: hp.dim,
            n_heads: hp.n_heads,
            n_kv_heads: hp.n_kv_heads,
            head_dim: hp.head_dim,
            ffn_dim: hp.ffn_dim,
            vocab: hp.vocab,
            tied_embeddings: hp.tied_embeddings,
            qkv_bias: hp.arch.has_qkv_bias(),
            norms_per_layer: 2,
            qk_norm: false,
            rope_dim: hp.rope_dim,
            mla: None,
            sliding_window: None,
            moe: None,
        }
    }

    /// Layers with a dense feed-forward block.
    fn n_dense_layers(&self) -> u32 {
        self.moe.map_or(self.n_layers, |m| m.n_dense_layers)
    }

    /// Checks every size against its cap and the sizes against each other;
    /// the error names the field.
    pub fn validate(&self) -> Result<()> {
        let dim = |what, v: u32, min| in_range(what, v, min, MAX_DIM);
        dim("n_layers", self.n_layers, 1)?;
        dim("dim", self.dim, 1)?;
        dim("n_heads", self.n_heads, 1)?;
        dim("vocab", self.vocab, 1)?;
        in_range(
            "norms_per_layer",
            self.norms_per_layer,
            0,
            MAX_NORMS_PER_LAYER,
        )?;
        if self.n_dense_layers() > 0 {
            dim("ffn_dim", self.ffn_dim, 1)?;
        } else {
            dim("ffn_dim", self.ffn_dim, 0)?;
        }
        match self.mla {
            None => {
                in_range("n_kv_heads", self.n_kv_heads, 1, self.n_heads)?;
                dim("head_dim", self.head_dim, 1)?;
                in_range("rope_dim", self.rope_dim, 0, self.head_dim)?;
                if !self.n_heads.is_multiple_of(self.n_kv_heads) {
                    return Err(Error::InvalidArgument {
                        what: "n_heads must be a multiple of n_kv_heads",
                    });
                }
            }
            Some(m) => {
                dim("q_lora_rank", m.q_lora_rank, 0)?;
                dim("kv_lora_rank", m.kv_lora_rank, 1)?;
                dim("qk_nope_head_dim", m.qk_nope_head_dim, 0)?;
                dim("qk_rope_head_dim", m.qk_rope_head_dim, 1)?;
                dim("v_head_dim", m.v_head_dim, 1)?;
            }
        }
        if let Some(w) = self.sliding_window {
            in_range("sliding_window", w.window, 1, MAX_CTX_TOKENS)?;
            in_range("n_sliding_layers", w.n_sliding_layers, 0, self.n_layers)?;
        }
        if let Some(m) = self.moe {
            in_range("n_experts", m.n_experts, 1, MAX_EXPERTS)?;
            in_range("n_active", m.n_active, 1, m.n_experts)?;
            dim("expert_ffn_dim", m.expert_ffn_dim, 1)?;
            in_range("n_shared", m.n_shared, 0, MAX_EXPERTS)?;
            in_range("n_dense_layers", m.n_dense_layers, 0, self.n_layers)?;
        }
        Ok(())
    }

    /// The slice of this architecture one of `shards` tensor-parallel
    /// shards holds (see the module doc).
    pub fn shard(&self, shards: u32) -> ArchSpec {
        let s = shards.max(1);
        let part = |v: u32| v.div_ceil(s);
        ArchSpec {
            n_heads: part(self.n_heads),
            n_kv_heads: part(self.n_kv_heads),
            ffn_dim: part(self.ffn_dim),
            vocab: part(self.vocab),
            moe: self.moe.map(|m| Moe {
                expert_ffn_dim: part(m.expert_ffn_dim),
                ..m
            }),
            ..*self
        }
    }

    /// Calls `f` for every kind of tensor (see the module doc).
    fn for_each_tensor(&self, mut f: impl FnMut(Tensor) -> Result<()>) -> Result<()> {
        let l = u64::from(self.n_layers);
        let d = u64::from(self.dim);
        let h = u64::from(self.n_heads);
        let vocab = u64::from(self.vocab);
        // Outside the layers.
        let tied = u64::from(self.tied_embeddings);
        f(Tensor::matrix(vocab, d, 1, tied, DIM_BLOCKS))?;
        f(Tensor::matrix(vocab, d, 1 - tied, 1 - tied, DIM_BLOCKS))?;
        f(Tensor::f32(1, d, 1, 1))?;
        // Attention.
        match self.mla {
            None => {
                let hd = u64::from(self.head_dim);
                let q = prod(&[h, hd])?;
                let kv = prod(&[u64::from(self.n_kv_heads), hd])?;
                f(Tensor::matrix(q, d, l, l, DIM_BLOCKS))?;
                f(Tensor::matrix(
                    kv,
                    d,
                    prod(&[2, l])?,
                    prod(&[2, l])?,
                    DIM_BLOCKS,
                ))?;
                f(Tensor::matrix(d, q, l, l, Q_BLOCKS))?;
                if self.qkv_bias {
                    f(Tensor::f32(1, sum(&[q, kv, kv])?, l, l))?;
                }
                if self.qk_norm {
                    f(Tensor::f32(1, hd, prod(&[2, l])?, prod(&[2, l])?))?;
                }
            }
            Some(m) => {
                let nope = u64::from(m.qk_nope_head_dim);
                let rope = u64::from(m.qk_rope_head_dim);
                let kv_lora = u64::from(m.kv_lora_rank);
                let q_lora = u64::from(m.q_lora_rank);
                let v = u64::from(m.v_head_dim);
                let q_rows = prod(&[h, sum(&[nope, rope])?])?;
                if q_lora > 0 {
                    f(Tensor::matrix(q_lora, d, l, l, DIM_BLOCKS))?;
                    f(Tensor::f32(1, q_lora, l, l))?;
                    f(Tensor::matrix(q_rows, q_lora, l, l, Q_LORA_BLOCKS))?;
                } else {
                    f(Tensor::matrix(q_rows, d, l, l, DIM_BLOCKS))?;
                }
                f(Tensor::matrix(sum(&[kv_lora, rope])?, d, l, l, DIM_BLOCKS))?;
                f(Tensor::f32(1, kv_lora, l, l))?;
                let kv_b_rows = prod(&[h, sum(&[nope, v])?])?;
                f(Tensor::matrix(kv_b_rows, kv_lora, l, l, KV_LORA_BLOCKS))?;
                f(Tensor::matrix(d, prod(&[h, v])?, l, l, V_BLOCKS))?;
            }
        }
        let norms = prod(&[l, u64::from(self.norms_per_layer)])?;
        f(Tensor::f32(1, d, norms, norms))?;
        // Feed-forward.
        let dense = u64::from(self.n_dense_layers());
        let ffn = u64::from(self.ffn_dim);
        f(Tensor::matrix(
            ffn,
            d,
            prod(&[2, dense])?,
            prod(&[2, dense])?,
            DIM_BLOCKS,
        ))?;
        f(Tensor::matrix(d, ffn, dense, dense, FFN_BLOCKS))?;
        if let Some(m) = self.moe {
            let moe_layers = l.saturating_sub(dense);
            let experts = u64::from(m.n_experts);
            let expert_ffn = u64::from(m.expert_ffn_dim);
            f(Tensor::f32(experts, d, moe_layers, moe_layers))?;
            if m.router_bias {
                f(Tensor::f32(1, experts, moe_layers, moe_layers))?;
            }
            let all = prod(&[moe_layers, experts])?;
            let active = prod(&[moe_layers, u64::from(m.n_active)])?;
            f(Tensor::matrix(
                expert_ffn,
                d,
                prod(&[2, all])?,
                prod(&[2, active])?,
                DIM_BLOCKS,
            ))?;
            f(Tensor::matrix(d, expert_ffn, all, active, EXPERT_BLOCKS))?;
            if m.n_shared > 0 {
                let shared = prod(&[u64::from(m.n_shared), expert_ffn])?;
                f(Tensor::matrix(
                    shared,
                    d,
                    prod(&[2, moe_layers])?,
                    prod(&[2, moe_layers])?,
                    DIM_BLOCKS,
                ))?;
                f(Tensor::matrix(
                    d,
                    shared,
                    moe_layers,
                    moe_layers,
                    SHARED_BLOCKS,
                ))?;
            }
        }
        Ok(())
    }

    /// Parameters and weight bytes in `ty`: `(total, active, resident
    /// bytes, bytes read per token)`.
    fn weights(&self, ty: GgmlType) -> Result<(u64, u64, u64, u64)> {
        let (mut params, mut active, mut bytes, mut read) = (0u64, 0u64, 0u64, 0u64);
        self.for_each_tensor(|t| {
            let one = prod(&[t.rows, t.cols])?;
            let one_bytes = t.bytes(ty)?;
            params = sum(&[params, prod(&[t.count, one])?])?;
            active = sum(&[active, prod(&[t.active, one])?])?;
            bytes = sum(&[bytes, prod(&[t.count, one_bytes])?])?;
            read = sum(&[read, prod(&[t.active, one_bytes])?])?;
            Ok(())
        })?;
        Ok((params, active, bytes, read))
    }

    /// The widest quantized activation `rows` rows need for weights of `ty`.
    fn act_bytes(&self, ty: GgmlType, rows: usize) -> Result<usize> {
        let fmt = planned_act_format(ty);
        let mut widest = 0usize;
        self.for_each_tensor(|t| {
            if t.storage == Storage::Weights && t.count > 0 {
                widest = widest.max(widest_act_bytes(rows, [(fmt, to_usize(t.cols)?)])?);
            }
            Ok(())
        })?;
        Ok(widest)
    }

    /// Cached bytes per token in one layer.
    pub fn layer_kv_bytes_per_token(&self, kv_type: KvType) -> Result<u64> {
        let bytes = match self.mla {
            None => KvGeometry::new(
                1,
                self.n_kv_heads as usize,
                self.head_dim as usize,
                kv_type,
                1,
            )?
            .layer_bytes_per_token()
            .ok_or_else(overflow)?,
            Some(m) => {
                let latent = m.kv_lora_rank as usize + m.qk_rope_head_dim as usize;
                kv_type.row_bytes(latent).ok_or(Error::InvalidArgument {
                    what: "kv_lora_rank + qk_rope_head_dim does not fit the KV type (q8_0 needs a multiple of 32)",
                })?
            }
        };
        Ok(bytes as u64)
    }

    /// KV bytes of `sequences` sequences of `ctx` tokens (windows applied).
    fn kv_bytes(&self, kv_type: KvType, ctx: u32, sequences: u32) -> Result<u64> {
        let per_layer = self.layer_kv_bytes_per_token(kv_type)?;
        let (sliding, window) = match self.sliding_window {
            Some(w) => (w.n_sliding_layers, w.window),
            None => (0, ctx),
        };
        let full = self.n_layers.saturating_sub(sliding);
        let tokens = sum(&[
            prod(&[u64::from(full), u64::from(ctx)])?,
            prod(&[u64::from(sliding), u64::from(ctx.min(window))])?,
        ])?;
        prod(&[per_layer, tokens, u64::from(sequences)])
    }

    /// The sizes of this architecture (the whole model, or one shard's slice).
    fn footprint(&self, p: &WhatIfParams) -> Result<Footprint> {
        let (params_total, params_active, resident, read) = self.weights(p.weight_type)?;
        Ok(Footprint {
            params_total,
            params_active,
            weights_resident_bytes: resident,
            weights_read_per_token_bytes: read,
            kv_bytes_per_token: prod(&[
                u64::from(self.n_layers),
                self.layer_kv_bytes_per_token(p.kv_type)?,
            ])?,
            kv_bytes: self.kv_bytes(p.kv_type, p.ctx_tokens, p.sequences)?,
        })
    }

    /// The widths the engine's scratch is sized from (see [`super::scratch`]).
    ///
    /// Grouped-query attention: the `work` parts `q`, `k`, `v`, `att`
    /// (`n_heads hd`, `n_kv_heads hd`, `n_kv_heads hd`, `n_heads hd`), the
    /// heads of a KV head share a task, each accumulating `head_dim` values.
    /// Latent attention, run absorbed (as llama.cpp does: one cached
    /// "head" of `kv_lora + rope` values that every query head attends
    /// to): parts `q_a` (`q_lora`), `q_b` (`n_heads (nope + rope)`), `q`
    /// (absorbed queries, `n_heads (kv_lora + rope)`), `kv_a` (`kv_lora +
    /// rope`), `att` (outputs in latent space, `n_heads kv_lora`) and `v`
    /// (outputs after the value projection, `n_heads v`); all `n_heads`
    /// heads share a task, each accumulating `kv_lora_rank` values; RoPE
    /// covers `qk_rope_head_dim`. Feed-forward: `gate` and `up` of the
    /// widest block (dense `ffn_dim`, one expert, or the shared experts),
    /// and the `router` logits (`n_experts`) of a mixture of experts.
    pub fn scratch_shape(&self) -> Result<ScratchShape> {
        let u = |v: u32| v as usize;
        let m2 = |a: u32, b: u32| to_usize(u64::from(a) * u64::from(b));
        let h = self.n_heads;
        let (attn, heads_per_kv_head, rope_dim) = match self.mla {
            None => {
                let q = m2(h, self.head_dim)?;
                let kv = m2(self.n_kv_heads, self.head_dim)?;
                let rope = if self.rope_dim == 0 {
                    self.head_dim
                } else {
                    self.rope_dim
                };
                (
                    WorkPhase::new(&[("q", q), ("k", kv), ("v", kv), ("att", q)])?,
                    u(h / self.n_kv_heads.max(1)),
                    u(rope),
                )
            }
            Some(m) => {
                let latent = m.kv_lora_rank.saturating_add(m.qk_rope_head_dim);
                let qk = m.qk_nope_head_dim.saturating_add(m.qk_rope_head_dim);
                (
                    WorkPhase::new(&[
                        ("q_a", u(m.q_lora_rank)),
                        ("q_b", m2(h, qk)?),
                        ("q", m2(h, latent)?),
                        ("kv_a", u(latent)),
                        ("att", m2(h, m.kv_lora_rank)?),
                        ("v", m2(h, m.v_head_dim)?),
                    ])?,
                    u(h),
                    u(m.qk_rope_head_dim),
                )
            }
        };
        let dense = if self.n_dense_layers() > 0 {
            self.ffn_dim
        } else {
            0
        };
        let (hidden, router) = match self.moe {
            None => (u(dense), 0),
            Some(m) => (
                u(dense)
                    .max(u(m.expert_ffn_dim))
                    .max(m2(m.n_shared, m.expert_ffn_dim)?),
                u(m.n_experts),
            ),
        };
        Ok(ScratchShape {
            dim: u(self.dim),
            attn,
            ffn: WorkPhase::new(&[("gate", hidden), ("up", hidden), ("router", router)])?,
            heads_per_kv_head,
            rope_dim,
            vocab: u(self.vocab),
        })
    }

    /// Answers a what-if question: the whole model, one shard, and the
    /// engine's scratch on one shard.
    pub fn what_if(&self, p: &WhatIfParams) -> Result<WhatIf> {
        self.validate()?;
        p.validate()?;
        let model = self.footprint(p)?;
        let slice = self.shard(p.shards);
        let shard = slice.footprint(p)?;
        let rows = p.scratch.max_batch as usize;
        let elems = slice
            .scratch_shape()?
            .elems(&p.scratch, slice.act_bytes(p.weight_type, rows)?)?;
        let shard_scratch = scratch_plan(&elems)?;
        let shard_total_bytes = sum(&[
            shard.weights_resident_bytes,
            shard.kv_bytes,
            shard_scratch.total() as u64,
        ])?;
        Ok(WhatIf {
            model,
            shard,
            shard_scratch,
            shard_total_bytes,
        })
    }
}

impl WhatIfParams {
    /// Checks every count against its cap; the error names it.
    pub fn validate(&self) -> Result<()> {
        in_range("ctx_tokens", self.ctx_tokens, 1, MAX_CTX_TOKENS)?;
        in_range("sequences", self.sequences, 1, MAX_SEQUENCES)?;
        in_range("shards", self.shards, 1, MAX_SHARDS)?;
        in_range("max_batch", self.scratch.max_batch, 1, MAX_BATCH)?;
        in_range("max_outputs", self.scratch.max_outputs, 1, MAX_OUTPUTS)?;
        in_range("threads", self.scratch.threads, 1, MAX_THREADS)?;
        in_range("page_tokens", self.scratch.page_tokens, 1, MAX_PAGE_TOKENS)?;
        Ok(())
    }
}

const DIM_BLOCKS: &str = "dim is not a whole number of blocks of the weight type";
const Q_BLOCKS: &str =
    "n_heads x head_dim (per shard) is not a whole number of blocks of the weight type";
const FFN_BLOCKS: &str = "ffn_dim (per shard) is not a whole number of blocks of the weight type";
const EXPERT_BLOCKS: &str =
    "expert_ffn_dim (per shard) is not a whole number of blocks of the weight type";
const SHARED_BLOCKS: &str =
    "n_shared x expert_ffn_dim (per shard) is not a whole number of blocks of the weight type";
const Q_LORA_BLOCKS: &str = "q_lora_rank is not a whole number of blocks of the weight type";
const KV_LORA_BLOCKS: &str = "kv_lora_rank is not a whole number of blocks of the weight type";
const V_BLOCKS: &str =
    "n_heads x v_head_dim (per shard) is not a whole number of blocks of the weight type";

#[cfg(test)]
#[path = "arch_tests.rs"]
mod tests;
