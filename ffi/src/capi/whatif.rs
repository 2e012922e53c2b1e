//! What-if sizing from C: an architecture described by its sizes (what a
//! Hugging Face config.json says), sized by core's one sizing model, the
//! same numbers `arenalm plan --config` reports. No model file is needed.

use std::ffi::c_char;

use arenalm_core::gguf::GgmlType;
use arenalm_core::mem::arch::{ArchSpec, Footprint, Mla, Moe, SlidingWindow, WhatIf, WhatIfParams};
use arenalm_core::mem::scratch::ScratchParams;

use super::params::alm_kv_type;
use super::versioned::{fill_defaults, fill_out, read_params, versioned};
use super::{alm_status, guard, tri, ErrBuf};

/// An architecture described by its sizes. Fill it with
/// `alm_arch_default_params(&a, sizeof a)` (every size 0, two norms per
/// layer), then set the sizes. A zero `sliding_window`, `kv_lora_rank` or
/// `n_experts` leaves that feature out. Boolean fields: 0 or non-zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct alm_arch {
    /// `sizeof(alm_arch)`.
    pub size: u32,
    /// Transformer blocks (`num_hidden_layers`).
    pub n_layers: u32,
    /// Residual width (`hidden_size`).
    pub dim: u32,
    /// Query heads (`num_attention_heads`).
    pub n_heads: u32,
    /// Key/value heads (`num_key_value_heads`; ignored with latent attention).
    pub n_kv_heads: u32,
    /// Values per head (`head_dim`; ignored with latent attention).
    pub head_dim: u32,
    /// Dense feed-forward width (`intermediate_size`).
    pub ffn_dim: u32,
    /// Vocabulary (`vocab_size`).
    pub vocab: u32,
    /// Non-zero: the output head is the embedding table (`tie_word_embeddings`).
    pub tied_embeddings: u32,
    /// Non-zero: q, k and v have biases (Qwen2).
    pub qkv_bias: u32,
    /// Norms of `dim` per block (2 for Llama, 4 for Gemma 3).
    pub norms_per_layer: u32,
    /// Non-zero: q and k have norms of `head_dim` (Gemma 3, Qwen3).
    pub qk_norm: u32,
    /// Dimensions of a head RoPE rotates (0: all).
    pub rope_dim: u32,
    /// Tokens a sliding-window layer sees (0: no sliding window).
    pub sliding_window: u32,
    /// Layers that slide (the others see every token).
    pub n_sliding_layers: u32,
    /// Latent attention (DeepSeek): rank of the KV compression (0: none).
    pub kv_lora_rank: u32,
    /// Latent attention: rank of the query compression (0: none).
    pub q_lora_rank: u32,
    /// Latent attention: per-head query/key dimensions without RoPE.
    pub qk_nope_head_dim: u32,
    /// Latent attention: per-head RoPE dimensions.
    pub qk_rope_head_dim: u32,
    /// Latent attention: per-head value dimensions.
    pub v_head_dim: u32,
    /// Mixture of experts: routed experts per layer (0: dense).
    pub n_experts: u32,
    /// Mixture of experts: routed experts per token (`num_experts_per_tok`).
    pub n_active: u32,
    /// Mixture of experts: hidden width of one expert (`moe_intermediate_size`).
    pub expert_ffn_dim: u32,
    /// Mixture of experts: shared experts per layer (`n_shared_experts`).
    pub n_shared: u32,
    /// Mixture of experts: leading dense layers (`first_k_dense_replace`).
    pub n_dense_layers: u32,
    /// Mixture of experts: non-zero if the router has a per-expert bias.
    pub router_bias: u32,
}

versioned!(alm_arch {
    size: u32,
    n_layers: u32,
    dim: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    ffn_dim: u32,
    vocab: u32,
    tied_embeddings: u32,
    qkv_bias: u32,
    norms_per_layer: u32,
    qk_norm: u32,
    rope_dim: u32,
    sliding_window: u32,
    n_sliding_layers: u32,
    kv_lora_rank: u32,
    q_lora_rank: u32,
    qk_nope_head_dim: u32,
    qk_rope_head_dim: u32,
    v_head_dim: u32,
    n_experts: u32,
    n_active: u32,
    expert_ffn_dim: u32,
    n_shared: u32,
    n_dense_layers: u32,
    router_bias: u32,
});

impl alm_arch {
    fn defaults() -> Self {
        alm_arch {
            size: std::mem::size_of::<alm_arch>() as u32,
            norms_per_layer: 2,
            ..alm_arch::default()
        }
    }

    /// Core's description (checked by core when sized).
    fn to_core(self) -> ArchSpec {
        ArchSpec {
            n_layers: self.n_layers,
            dim: self.dim,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            ffn_dim: self.ffn_dim,
            vocab: self.vocab,
            tied_embeddings: self.tied_embeddings != 0,
            qkv_bias: self.qkv_bias != 0,
            norms_per_layer: self.norms_per_layer,
            qk_norm: self.qk_norm != 0,
            rope_dim: self.rope_dim,
            mla: (self.kv_lora_rank > 0).then_some(Mla {
                q_lora_rank: self.q_lora_rank,
                kv_lora_rank: self.kv_lora_rank,
                qk_nope_head_dim: self.qk_nope_head_dim,
                qk_rope_head_dim: self.qk_rope_head_dim,
                v_head_dim: self.v_head_dim,
            }),
            sliding_window: (self.sliding_window > 0).then_some(SlidingWindow {
                window: self.sliding_window,
                n_sliding_layers: self.n_sliding_layers,
            }),
            moe: (self.n_experts > 0).then_some(Moe {
                n_experts: self.n_experts,
                n_active: self.n_active,
                expert_ffn_dim: self.expert_ffn_dim,
                n_shared: self.n_shared,
                n_dense_layers: self.n_dense_layers,
                router_bias: self.router_bias != 0,
            }),
        }
    }
}

/// What a what-if question is about. Fill it with
/// `alm_whatif_default_params(&p, sizeof p)` first.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct alm_whatif_params {
    /// `sizeof(alm_whatif_params)`.
    pub size: u32,
    /// Type of the weight matrices as a GGUF tensor type id (ggml's
    /// numbering: 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0, 12 Q4_K, 14 Q6_K,
    /// 30 BF16, ...); norms, biases and routers stay f32. Default 1 (F16).
    pub weight_type: u32,
    /// One of `alm_kv_type` (default F16).
    pub kv_type: u32,
    /// Context per sequence in tokens (default 2048; 1 to `ALM_MAX_CTX_TOKENS`).
    pub ctx_tokens: u32,
    /// Sequences held at once, each with its own KV cache (default 1).
    pub sequences: u32,
    /// Tensor-parallel shards (default 1); the `shard_*` results are one shard's.
    pub tensor_parallel: u32,
    /// Scratch: most tokens per micro-batch (default 64).
    pub max_batch: u32,
    /// Scratch: most rows of logits per evaluation (default 1).
    pub max_outputs: u32,
    /// Scratch: threads, each with its own attention state (default 1).
    pub threads: u32,
    /// Scratch: tokens per KV page (default 16).
    pub page_tokens: u32,
}

versioned!(alm_whatif_params {
    size: u32,
    weight_type: u32,
    kv_type: u32,
    ctx_tokens: u32,
    sequences: u32,
    tensor_parallel: u32,
    max_batch: u32,
    max_outputs: u32,
    threads: u32,
    page_tokens: u32,
});

impl alm_whatif_params {
    fn defaults() -> Self {
        let d = WhatIfParams::default();
        alm_whatif_params {
            size: std::mem::size_of::<alm_whatif_params>() as u32,
            weight_type: d.weight_type.id(),
            kv_type: alm_kv_type::of(d.kv_type),
            ctx_tokens: d.ctx_tokens,
            sequences: d.sequences,
            tensor_parallel: d.shards,
            max_batch: d.scratch.max_batch,
            max_outputs: d.scratch.max_outputs,
            threads: d.scratch.threads,
            page_tokens: d.scratch.page_tokens,
        }
    }

    /// Checks the enum-like values and converts (counts are checked by core).
    fn resolve(&self, err: &ErrBuf) -> Result<WhatIfParams, alm_status> {
        let weight_type = GgmlType::from_id(self.weight_type).ok_or_else(|| {
            err.fail_with(
                alm_status::ALM_ERR_INVALID_ARGUMENT,
                format_args!(
                    "weight_type = {} is not a GGUF tensor type id (1 F16, 8 Q8_0, 12 Q4_K, 30 BF16, ...)",
                    self.weight_type
                ),
            )
        })?;
        Ok(WhatIfParams {
            weight_type,
            kv_type: alm_kv_type::resolve(self.kv_type, err)?,
            ctx_tokens: self.ctx_tokens,
            sequences: self.sequences,
            shards: self.tensor_parallel,
            scratch: ScratchParams {
                max_batch: self.max_batch,
                max_outputs: self.max_outputs,
                threads: self.threads,
                page_tokens: self.page_tokens,
            },
        })
    }
}

/// What an architecture needs (all in bytes unless noted): the whole model,
/// and one tensor-parallel shard (the whole model with one shard).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct alm_arch_plan {
    /// `sizeof(alm_arch_plan)`, set by the caller.
    pub size: u32,
    /// The shards the `shard_*` fields are one of.
    pub tensor_parallel: u32,
    /// Parameters stored (count).
    pub params_total: u64,
    /// Parameters read per token (count): all but the embedding table, and
    /// of a mixture of experts only the router, active and shared experts.
    pub params_active: u64,
    /// Weights stored.
    pub weights_resident_bytes: u64,
    /// Weights read per token.
    pub weights_read_per_token_bytes: u64,
    /// KV cache one token of one sequence adds while every layer keeps it.
    pub kv_bytes_per_token: u64,
    /// KV cache of every sequence at the full context (windows applied).
    pub kv_bytes: u64,
    /// One shard: parameters stored (count).
    pub shard_params_total: u64,
    /// One shard: parameters read per token (count).
    pub shard_params_active: u64,
    /// One shard: weights stored.
    pub shard_weights_resident_bytes: u64,
    /// One shard: weights read per token.
    pub shard_weights_read_per_token_bytes: u64,
    /// One shard: KV cache per token.
    pub shard_kv_bytes_per_token: u64,
    /// One shard: KV cache at the full context.
    pub shard_kv_bytes: u64,
    /// One shard: the engine's scratch buffers.
    pub shard_scratch_bytes: u64,
    /// One shard: weights, KV cache and scratch.
    pub shard_total_bytes: u64,
}

versioned!(alm_arch_plan {
    size: u32,
    tensor_parallel: u32,
    params_total: u64,
    params_active: u64,
    weights_resident_bytes: u64,
    weights_read_per_token_bytes: u64,
    kv_bytes_per_token: u64,
    kv_bytes: u64,
    shard_params_total: u64,
    shard_params_active: u64,
    shard_weights_resident_bytes: u64,
    shard_weights_read_per_token_bytes: u64,
    shard_kv_bytes_per_token: u64,
    shard_kv_bytes: u64,
    shard_scratch_bytes: u64,
    shard_total_bytes: u64,
});

fn plan_to_c(p: &WhatIfParams, w: &WhatIf) -> alm_arch_plan {
    let (m, s): (&Footprint, &Footprint) = (&w.model, &w.shard);
    alm_arch_plan {
        size: 0,
        tensor_parallel: p.shards,
        params_total: m.params_total,
        params_active: m.params_active,
        weights_resident_bytes: m.weights_resident_bytes,
        weights_read_per_token_bytes: m.weights_read_per_token_bytes,
        kv_bytes_per_token: m.kv_bytes_per_token,
        kv_bytes: m.kv_bytes,
        shard_params_total: s.params_total,
        shard_params_active: s.params_active,
        shard_weights_resident_bytes: s.weights_resident_bytes,
        shard_weights_read_per_token_bytes: s.weights_read_per_token_bytes,
        shard_kv_bytes_per_token: s.kv_bytes_per_token,
        shard_kv_bytes: s.kv_bytes,
        shard_scratch_bytes: w.shard_scratch.total() as u64,
        shard_total_bytes: w.shard_total_bytes,
    }
}

/// Fills `out` (`out_size` bytes, normally `sizeof(alm_arch)`) with every
/// size 0 and two norms per layer; set the sizes before `alm_plan_arch`.
/// `ALM_ERR_NULL_ARGUMENT` for a NULL `out`, `ALM_ERR_INVALID_ARGUMENT` for
/// an `out_size` that is not a field boundary.
///
/// # Safety
///
/// `out` must be NULL or point to `out_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_arch_default_params(
    out: *mut alm_arch,
    out_size: usize,
) -> alm_status {
    // SAFETY: forwarded contract.
    unsafe { fill_defaults(out, out_size, alm_arch::defaults()) }
}

/// Fills `out` (`out_size` bytes) with the defaults: F16 weights and KV
/// cache, a 2048-token context, one sequence, one shard, and the engine's
/// default scratch parameters (batch 64, 1 output row, 1 thread, pages of 16).
///
/// # Safety
///
/// `out` must be NULL or point to `out_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_whatif_default_params(
    out: *mut alm_whatif_params,
    out_size: usize,
) -> alm_status {
    // SAFETY: forwarded contract.
    unsafe { fill_defaults(out, out_size, alm_whatif_params::defaults()) }
}

/// What-if sizing: the weights (stored and read per token), KV cache and
/// the engine's scratch for the architecture `arch` with `params` (NULL =
/// the defaults of `alm_whatif_default_params`), into `out` (whose `size`
/// the caller sets). The numbers are `arenalm plan --config`'s.
/// `ALM_ERR_NULL_ARGUMENT` for a NULL `arch` or `out`;
/// `ALM_ERR_INVALID_ARGUMENT` for sizes out of range or inconsistent (the
/// message names the `alm_arch` or `alm_whatif_params` field), a weight
/// type whose blocks do not divide a row, or a KV type that does not fit
/// the head size; `ALM_ERR_OVERFLOW` if a size overflows 64 bits.
///
/// # Safety
///
/// `arch` NULL or a valid struct; `params` NULL or a valid struct; `out`
/// writable for `out->size` bytes; `err` NULL or `err_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_plan_arch(
    arch: *const alm_arch,
    params: *const alm_whatif_params,
    out: *mut alm_arch_plan,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        if arch.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                format_args!("`arch` is NULL"),
            );
        }
        if out.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                format_args!("`out` is NULL"),
            );
        }
        // SAFETY: `arch` is a valid struct per the contract (checked non-NULL).
        let a = tri!(unsafe { read_params(&err, arch, alm_arch::defaults(), "arch") });
        // SAFETY: `params` is NULL or a valid struct per the contract.
        let p = tri!(unsafe { read_params(&err, params, alm_whatif_params::defaults(), "params") });
        let p = tri!(p.resolve(&err));
        match a.to_core().what_if(&p) {
            // SAFETY: `out` is non-NULL with `out->size` writable bytes.
            Ok(w) => unsafe { fill_out(&err, out, plan_to_c(&p, &w), "out") },
            Err(e) => err.fail(&e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::versioned::assert_listing_matches;

    #[test]
    fn the_listings_match_the_structs() {
        assert_listing_matches::<alm_arch>();
        assert_listing_matches::<alm_whatif_params>();
        assert_listing_matches::<alm_arch_plan>();
    }

    #[test]
    fn deepseek_v3_from_c_is_the_cores_answer() {
        let mut a = alm_arch::defaults();
        (a.n_layers, a.dim, a.n_heads, a.ffn_dim, a.vocab) = (61, 7168, 128, 18_432, 129_280);
        (a.kv_lora_rank, a.q_lora_rank, a.qk_nope_head_dim) = (512, 1536, 128);
        (a.qk_rope_head_dim, a.v_head_dim) = (64, 128);
        (a.n_experts, a.n_active, a.expert_ffn_dim) = (256, 8, 2048);
        (a.n_shared, a.n_dense_layers, a.router_bias) = (1, 3, 1);
        let mut p = alm_whatif_params::defaults();
        (p.ctx_tokens, p.tensor_parallel) = (4096, 8);
        let mut out = alm_arch_plan {
            size: std::mem::size_of::<alm_arch_plan>() as u32,
            ..alm_arch_plan::default()
        };
        let mut msg = [0 as c_char; 128];
        // SAFETY: valid structs and buffers.
        let s = unsafe { alm_plan_arch(&a, &p, &mut out, msg.as_mut_ptr(), msg.len()) };
        assert_eq!(s, alm_status::ALM_OK);
        // The published count, worked out in core's arch_tests.rs.
        assert_eq!(out.params_total, 671_026_419_200);
        // 61 x (512 + 64) x 2 bytes a token; 4,096 tokens; replicated on each shard.
        assert_eq!(
            (out.kv_bytes_per_token, out.kv_bytes),
            (70_272, 287_834_112)
        );
        assert_eq!(out.shard_kv_bytes, 287_834_112);
        assert_eq!(out.tensor_parallel, 8);
        assert_eq!(out.shard_params_total, 84_780_357_120);
        assert_eq!(
            out.shard_total_bytes,
            out.shard_weights_resident_bytes + out.shard_kv_bytes + out.shard_scratch_bytes
        );
        // An inconsistent architecture names the field.
        a.n_active = 300;
        // SAFETY: as above.
        let s = unsafe { alm_plan_arch(&a, &p, &mut out, msg.as_mut_ptr(), msg.len()) };
        assert_eq!(s, alm_status::ALM_ERR_INVALID_ARGUMENT);
        // SAFETY: NUL-terminated by the call.
        let text = unsafe { std::ffi::CStr::from_ptr(msg.as_ptr()) };
        assert!(
            text.to_str().unwrap().starts_with("n_active = 300"),
            "{text:?}"
        );
    }
}
