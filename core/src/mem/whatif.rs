//! What-if sizing from a plain architecture description, no GGUF needed:
//! weights (resident and active per token), KV cache for a context, and the
//! share of each on one tensor-parallel shard.
//!
//! Formulas, per token and layer, with `e` the bytes of one cached value:
//!
//! * multi-head / grouped-query / multi-query attention caches K and V:
//!   `2 x n_kv_heads x head_dim x e` (MHA: `n_kv_heads = n_heads`; MQA: 1);
//! * multi-head latent attention (DeepSeek-V2/V3) caches the compressed KV
//!   latent and the decoupled RoPE key: `(kv_lora_rank + qk_rope_head_dim) x e`;
//! * a sliding-window layer never holds more than `window` tokens.
//!
//! Weights count the matrices (norms and biases are negligible and left
//! out): embeddings (and the output head unless tied), attention
//! projections, and dense or mixture-of-experts feed-forward blocks. A
//! mixture-of-experts layer keeps every expert resident; per token only
//! `n_active` experts (plus shared ones and the router) are read.
//!
//! Tensor parallelism over `S` shards splits every matrix `S` ways and the
//! KV heads `ceil(n_kv_heads / S)` per shard (heads are replicated when there
//! are fewer than shards); the MLA latent is not split by heads, so every
//! shard caches all of it.

use crate::error::{Error, Result};
use crate::gguf::GgmlType;

/// Multi-head latent attention dimensions (DeepSeek style).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mla {
    /// Rank of the query compression (0: queries are not compressed).
    pub q_lora_rank: u64,
    /// Rank of the KV compression (the cached latent width).
    pub kv_lora_rank: u64,
    /// Per-head query/key dimensions without RoPE.
    pub qk_nope_head_dim: u64,
    /// Per-head (shared) RoPE key dimensions, also cached.
    pub qk_rope_head_dim: u64,
    /// Per-head value dimensions.
    pub v_head_dim: u64,
}

/// Sliding-window attention: `n_layers - n_global_layers` layers see only
/// the last `window` tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindow {
    /// Tokens a sliding-window layer attends to (and caches).
    pub window: u64,
    /// Layers with full attention.
    pub n_global_layers: u64,
}

/// Mixture-of-experts feed-forward blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moe {
    /// Routed experts per layer.
    pub n_experts: u64,
    /// Routed experts used per token.
    pub n_active: u64,
    /// Hidden width of one expert.
    pub expert_ffn_dim: u64,
    /// Always-active shared experts per layer (each `expert_ffn_dim` wide).
    pub n_shared: u64,
    /// Leading layers with a dense feed-forward block of `ffn_dim` instead.
    pub n_dense_layers: u64,
}

/// An architecture described by its sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchSpec {
    /// Transformer blocks.
    pub n_layers: u64,
    /// Embedding width.
    pub dim: u64,
    /// Query heads.
    pub n_heads: u64,
    /// KV heads (ignored with MLA).
    pub n_kv_heads: u64,
    /// Head size (ignored with MLA).
    pub head_dim: u64,
    /// Dense feed-forward width.
    pub ffn_dim: u64,
    /// Vocabulary.
    pub vocab: u64,
    /// Whether the output head reuses the embeddings.
    pub tied_embeddings: bool,
    /// Multi-head latent attention instead of per-head K and V.
    pub mla: Option<Mla>,
    /// Sliding-window layers.
    pub sliding_window: Option<SlidingWindow>,
    /// Mixture-of-experts feed-forward blocks.
    pub moe: Option<Moe>,
}

/// What an architecture needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WhatIf {
    /// Cached bytes per token if every layer kept every token.
    pub kv_bytes_per_token: u64,
    /// Cached bytes for the whole context (sliding windows applied).
    pub kv_bytes: u64,
    /// Cached bytes per shard.
    pub kv_bytes_per_shard: u64,
    /// Parameters resident in memory.
    pub params_total: u64,
    /// Parameters read per token.
    pub params_active: u64,
    /// Resident weight bytes in the weight type.
    pub weight_bytes: u64,
    /// Weight bytes read per token.
    pub weight_bytes_active: u64,
    /// Resident weight bytes per shard.
    pub weight_bytes_per_shard: u64,
}

fn ovf() -> Error {
    Error::Overflow {
        what: "what-if sizing",
    }
}

/// Checked product of all factors.
fn prod(factors: &[u64]) -> Result<u64> {
    factors
        .iter()
        .try_fold(1u64, |acc, &f| acc.checked_mul(f))
        .ok_or_else(ovf)
}

/// Checked sum.
fn sum(terms: &[u64]) -> Result<u64> {
    terms
        .iter()
        .try_fold(0u64, |acc, &t| acc.checked_add(t))
        .ok_or_else(ovf)
}

/// Bytes of `params` weights of type `ty` (whole blocks, rounded up).
fn type_bytes(params: u64, ty: GgmlType) -> Result<u64> {
    let block = u64::from(ty.block_size());
    params
        .div_ceil(block)
        .checked_mul(u64::from(ty.type_size()))
        .ok_or_else(ovf)
}

impl ArchSpec {
    /// Cached values per token for one layer.
    fn kv_values_per_layer(&self, kv_heads: u64) -> Result<u64> {
        match self.mla {
            Some(m) => sum(&[m.kv_lora_rank, m.qk_rope_head_dim]),
            None => prod(&[2, kv_heads, self.head_dim]),
        }
    }

    /// Attention parameters of one layer.
    fn attn_params(&self) -> Result<u64> {
        let (d, h) = (self.dim, self.n_heads);
        match self.mla {
            None => {
                let q = prod(&[d, h, self.head_dim])?;
                let kv = prod(&[2, d, self.n_kv_heads, self.head_dim])?;
                sum(&[q, kv, q])
            }
            Some(m) => {
                let qk_head = sum(&[m.qk_nope_head_dim, m.qk_rope_head_dim])?;
                let q = if m.q_lora_rank == 0 {
                    prod(&[d, h, qk_head])?
                } else {
                    sum(&[
                        prod(&[d, m.q_lora_rank])?,
                        prod(&[m.q_lora_rank, h, qk_head])?,
                    ])?
                };
                let kv_a = prod(&[d, sum(&[m.kv_lora_rank, m.qk_rope_head_dim])?])?;
                let kv_b = prod(&[m.kv_lora_rank, h, sum(&[m.qk_nope_head_dim, m.v_head_dim])?])?;
                let o = prod(&[h, m.v_head_dim, d])?;
                sum(&[q, kv_a, kv_b, o])
            }
        }
    }

    /// Feed-forward parameters of one layer: (resident, active).
    fn ffn_params(&self, layer: u64) -> Result<(u64, u64)> {
        let dense = prod(&[3, self.dim, self.ffn_dim])?;
        match self.moe {
            Some(m) if layer >= m.n_dense_layers => {
                let expert = prod(&[3, self.dim, m.expert_ffn_dim])?;
                let router = prod(&[self.dim, m.n_experts])?;
                let shared = prod(&[m.n_shared, expert])?;
                let resident = sum(&[prod(&[m.n_experts, expert])?, shared, router])?;
                let active = sum(&[prod(&[m.n_active, expert])?, shared, router])?;
                Ok((resident, active))
            }
            _ => Ok((dense, dense)),
        }
    }

    /// Sizes for a context of `ctx` tokens, cached values of `kv_value_bytes`
    /// bytes each, weights of type `weight_type`, over `shards` tensor-parallel shards.
    pub fn what_if(
        &self,
        ctx: u64,
        kv_value_bytes: u64,
        weight_type: GgmlType,
        shards: u64,
    ) -> Result<WhatIf> {
        if self.n_layers == 0 || self.dim == 0 || self.n_heads == 0 || shards == 0 {
            return Err(Error::InvalidArgument {
                what: "layers, width, heads and shards must be non-zero",
            });
        }
        if self.mla.is_none()
            && (self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads))
        {
            return Err(Error::InvalidArgument {
                what: "query heads must be a non-zero multiple of KV heads",
            });
        }
        if let Some(m) = self.moe {
            if m.n_active > m.n_experts {
                return Err(Error::InvalidArgument {
                    what: "more active experts than experts",
                });
            }
        }
        let per_layer = self.kv_values_per_layer(self.n_kv_heads)?;
        let kv_bytes_per_token = prod(&[self.n_layers, per_layer, kv_value_bytes])?;

        let (n_swa, window) = match self.sliding_window {
            Some(w) => (self.n_layers.saturating_sub(w.n_global_layers), w.window),
            None => (0, u64::MAX),
        };
        let n_global = self.n_layers - n_swa;
        let tokens = |swa: bool| if swa { ctx.min(window) } else { ctx };
        let kv_for = |values: u64| -> Result<u64> {
            sum(&[
                prod(&[n_global, tokens(false), values, kv_value_bytes])?,
                prod(&[n_swa, tokens(true), values, kv_value_bytes])?,
            ])
        };
        let kv_bytes = kv_for(per_layer)?;
        let kv_bytes_per_shard = match self.mla {
            Some(_) => kv_bytes,
            None => kv_for(self.kv_values_per_layer(self.n_kv_heads.div_ceil(shards))?)?,
        };

        let embd = prod(&[self.vocab, self.dim])?;
        let head = if self.tied_embeddings { 0 } else { embd };
        let attn = prod(&[self.n_layers, self.attn_params()?])?;
        let (mut ffn_res, mut ffn_act) = (0u64, 0u64);
        for layer in 0..self.n_layers {
            let (r, a) = self.ffn_params(layer)?;
            ffn_res = sum(&[ffn_res, r])?;
            ffn_act = sum(&[ffn_act, a])?;
        }
        let params_total = sum(&[embd, head, attn, ffn_res])?;
        // Per token the embedding is one row lookup; the output head is read whole.
        let out_head = if self.tied_embeddings { embd } else { head };
        let params_active = sum(&[out_head, attn, ffn_act])?;
        let weight_bytes = type_bytes(params_total, weight_type)?;
        Ok(WhatIf {
            kv_bytes_per_token,
            kv_bytes,
            kv_bytes_per_shard,
            params_total,
            params_active,
            weight_bytes,
            weight_bytes_active: type_bytes(params_active, weight_type)?,
            weight_bytes_per_shard: weight_bytes.div_ceil(shards),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(n_layers: u64, dim: u64, n_heads: u64, n_kv_heads: u64, head_dim: u64) -> ArchSpec {
        ArchSpec {
            n_layers,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: dim.saturating_mul(4),
            vocab: 32_000,
            tied_embeddings: false,
            mla: None,
            sliding_window: None,
            moe: None,
        }
    }

    #[test]
    fn kv_per_token_for_mha_gqa_mqa() {
        // Llama-2-7B, multi-head: 32 layers x 2 x 32 heads x 128 x 2 bytes = 524,288.
        let w = dense(32, 4096, 32, 32, 128)
            .what_if(1, 2, GgmlType::F16, 1)
            .unwrap();
        assert_eq!(w.kv_bytes_per_token, 524_288);
        // Llama-3-8B, grouped-query (8 KV heads): 32 x 2 x 8 x 128 x 2 = 131,072.
        let w = dense(32, 4096, 32, 8, 128)
            .what_if(1, 2, GgmlType::F16, 1)
            .unwrap();
        assert_eq!(w.kv_bytes_per_token, 131_072);
        // Falcon-7B, multi-query (1 KV head of 64): 32 x 2 x 1 x 64 x 2 = 8,192.
        let w = dense(32, 4544, 71, 1, 64)
            .what_if(1, 2, GgmlType::F16, 1)
            .unwrap();
        assert_eq!(w.kv_bytes_per_token, 8_192);
        // SmolLM2-135M: 30 x 2 x 3 x 64 x 2 = 23,040 (not 30 x 2 x 576 x 2 = 69,120,
        // the figure one gets by wrongly using the hidden size for GQA).
        let w = dense(30, 576, 9, 3, 64)
            .what_if(2048, 2, GgmlType::F16, 1)
            .unwrap();
        assert_eq!(w.kv_bytes_per_token, 23_040);
        // 2048 tokens: 23,040 x 2,048 = 47,185,920.
        assert_eq!(w.kv_bytes, 47_185_920);
    }

    #[test]
    fn mla_caches_the_latent_and_rope_key() {
        // DeepSeek-V3: 61 layers x (512 + 64) values x 2 bytes = 70,272 per token.
        let v3 = ArchSpec {
            n_layers: 61,
            dim: 7168,
            n_heads: 128,
            n_kv_heads: 128,
            head_dim: 128,
            ffn_dim: 18_432,
            vocab: 129_280,
            tied_embeddings: false,
            mla: Some(Mla {
                q_lora_rank: 1536,
                kv_lora_rank: 512,
                qk_nope_head_dim: 128,
                qk_rope_head_dim: 64,
                v_head_dim: 128,
            }),
            sliding_window: None,
            moe: None,
        };
        let w = v3.what_if(4096, 2, GgmlType::F16, 8).unwrap();
        assert_eq!(w.kv_bytes_per_token, 70_272);
        // 4096 tokens: 70,272 x 4,096 = 287,834,112; the latent is not split by heads.
        assert_eq!(w.kv_bytes, 287_834_112);
        assert_eq!(w.kv_bytes_per_shard, 287_834_112);
    }

    #[test]
    fn sliding_window_layers_cap_their_cache() {
        // Gemma 3 270M: 18 layers, 1 KV head of 256, 3 global layers, window 512.
        // Per layer and token 2 x 1 x 256 x 2 = 1,024 bytes. At 32,768 tokens:
        // 3 x 32,768 x 1,024 + 15 x 512 x 1,024 = 100,663,296 + 7,864,320 = 108,527,616.
        let g = ArchSpec {
            n_layers: 18,
            dim: 640,
            n_heads: 4,
            n_kv_heads: 1,
            head_dim: 256,
            ffn_dim: 2048,
            vocab: 262_144,
            tied_embeddings: true,
            mla: None,
            sliding_window: Some(SlidingWindow {
                window: 512,
                n_global_layers: 3,
            }),
            moe: None,
        };
        let w = g.what_if(32_768, 2, GgmlType::F16, 1).unwrap();
        assert_eq!(w.kv_bytes_per_token, 18 * 1024);
        assert_eq!(w.kv_bytes, 108_527_616);
        // Below the window every layer holds the whole context: 18 x 100 x 1,024.
        assert_eq!(
            g.what_if(100, 2, GgmlType::F16, 1).unwrap().kv_bytes,
            1_843_200
        );
    }

    #[test]
    fn moe_keeps_all_experts_resident_and_reads_the_active_ones() {
        // Mixtral 8x7B: 32 layers, width 4096, 32 heads, 8 KV heads of 128,
        // 8 experts of 14,336, 2 active, vocab 32,000, untied.
        // Attention per layer: q and o 4096 x 4096 = 16,777,216 each, k and v
        // 4096 x 1024 = 4,194,304 each: 41,943,040; x 32 = 1,342,177,280.
        // One expert: 3 x 4096 x 14,336 = 176,160,768; router 4096 x 8 = 32,768.
        // Experts resident: 8 x 176,160,768 x 32 = 45,097,156,608; routers 1,048,576.
        // Embeddings + head: 2 x 32,000 x 4,096 = 262,144,000.
        // Total: 45,097,156,608 + 1,342,177,280 + 1,048,576 + 262,144,000 = 46,702,526,464.
        // Active: 2 x 176,160,768 x 32 = 11,274,289,152, plus attention, routers and
        // the output head (131,072,000): 12,748,587,008.
        let mut m = dense(32, 4096, 32, 8, 128);
        m.moe = Some(Moe {
            n_experts: 8,
            n_active: 2,
            expert_ffn_dim: 14_336,
            n_shared: 0,
            n_dense_layers: 0,
        });
        let w = m.what_if(1, 2, GgmlType::Q8_0, 1).unwrap();
        assert_eq!(w.params_total, 46_702_526_464);
        assert_eq!(w.params_active, 12_748_587_008);
        // Q8_0: 34 bytes per 32 weights: 46,702,526,464 / 32 x 34 = 49,621,434,368.
        assert_eq!(w.weight_bytes, 49_621_434_368);
    }

    #[test]
    fn tensor_parallel_splits_weights_and_kv_heads() {
        // Llama-3-8B on 4 shards: 8 KV heads -> 2 per shard:
        // 32 x 2 x 2 x 128 x 2 = 32,768 bytes per token and shard.
        let l3 = dense(32, 4096, 32, 8, 128);
        let w = l3.what_if(1, 2, GgmlType::F16, 4).unwrap();
        assert_eq!(w.kv_bytes_per_shard, 32_768);
        assert_eq!(w.weight_bytes_per_shard, w.weight_bytes.div_ceil(4));
        // On 16 shards the 8 heads are replicated: 1 head per shard, 16,384 bytes.
        let w = l3.what_if(1, 2, GgmlType::F16, 16).unwrap();
        assert_eq!(w.kv_bytes_per_shard, 16_384);
    }

    #[test]
    fn hostile_sizes_are_errors_not_overflows() {
        let mut huge = dense(u64::MAX, u64::MAX, 1, 1, u64::MAX);
        assert!(huge.what_if(u64::MAX, 8, GgmlType::F32, 1).is_err());
        huge = dense(2, 64, 3, 2, 16);
        assert!(huge.what_if(10, 2, GgmlType::F16, 1).is_err()); // 3 heads, 2 KV heads
        assert!(dense(2, 64, 4, 2, 16)
            .what_if(10, 2, GgmlType::F16, 0)
            .is_err());
    }
}
