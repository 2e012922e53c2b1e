//! `arenalm plan`: the arena an engine needs, item by item, and the
//! largest context a budget allows; with `--config`, what an architecture
//! described by a Hugging Face config.json needs (weights, KV cache,
//! scratch), from core's one sizing model.

use arenalm_core::gguf::GgmlType;
use arenalm_core::mem::arch::{ArchSpec, Footprint, WhatIf, WhatIfParams};
use arenalm_core::mem::plan::{self, MemoryPlan, ScratchPlan};
use arenalm_core::model::Model;
use arenalm_core::Error;
use serde_json::json;

use crate::common::{map_model, mib};
use crate::config;
use crate::opts::{PlanOpts, DEFAULT_CTX};

/// What the user asked for.
pub struct PlanArgs {
    /// Model path.
    pub model: String,
    /// The arena-deciding options (shared with run, chat, perplexity).
    pub plan: PlanOpts,
    /// Output rows.
    pub outputs: u32,
    /// JSON output.
    pub json: bool,
}

/// The plan's JSON object (keys documented in the README).
pub fn plan_json(p: &MemoryPlan) -> serde_json::Value {
    let s = &p.scratch;
    json!({
        "weights_in_place_bytes": p.weights_in_place_bytes,
        "weights_converted_bytes": p.weights_converted_bytes,
        "engine_state_bytes": p.engine_state_bytes,
        "model_index_bytes": p.model_index_bytes,
        "tokenizer_bytes": p.tokenizer_bytes,
        "kv_bytes_per_token": p.kv_bytes_per_token,
        "kv_page_tokens": p.kv_page_tokens,
        "kv_bytes_per_page": p.kv_bytes_per_page,
        "kv_pages": p.kv_pages,
        "kv_pool_bytes": p.kv_pool_bytes,
        "page_table_bytes": p.page_table_bytes,
        "ctx_tokens": p.ctx_tokens,
        "scratch": {
            "x": s.x, "xb": s.xb, "work": s.work, "act": s.act, "attn": s.attn,
            "rope": s.rope, "logits": s.logits, "candidates": s.candidates,
            "total": s.total(),
        },
        "total_bytes": p.total_bytes,
        "items": p.items.iter().map(|i| json!({
            "name": i.name, "group": i.group.name(), "offset": i.offset, "bytes": i.bytes,
        })).collect::<Vec<_>>(),
    })
}

/// Runs the subcommand.
pub fn run(a: &PlanArgs) -> Result<(), String> {
    let map = map_model(&a.model)?;
    let model = Model::from_bytes(map.bytes()).map_err(|e| format!("{}: {e}", a.model))?;
    let params = a.plan.params(model.hparams.ctx_train, a.outputs);
    let (p, max_ctx) = match a.plan.budget {
        Some(budget) => {
            let p = plan::plan_for_budget(&model, &params, budget).map_err(|e| e.to_string())?;
            let max =
                plan::max_context_for_budget(&model, &params, budget).map_err(|e| e.to_string())?;
            (p, Some(max))
        }
        None => (
            plan::plan(&model, &params).map_err(|e| e.to_string())?,
            None,
        ),
    };
    if a.json {
        let mut out = plan_json(&p);
        out["model"] = json!(a.model);
        out["params"] = json!({
            "ctx_tokens": params.ctx_tokens, "kv_type": params.kv_type.name(),
            "page_tokens": params.page_tokens, "max_batch": params.max_batch,
            "max_outputs": params.max_outputs, "threads": params.threads,
            "allow_ctx_beyond_train": params.allow_ctx_beyond_train,
        });
        out["budget_bytes"] = json!(a.plan.budget);
        out["max_context_tokens"] = json!(max_ctx);
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "plan for {} (context {} tokens, KV {} in pages of {}, batch {}, {} output rows, {} threads)",
        a.model,
        p.ctx_tokens,
        params.kv_type.name(),
        p.kv_page_tokens,
        params.max_batch,
        params.max_outputs,
        params.threads
    );
    println!(
        "{:<38} {:>14} {:>14} {:>10}",
        "item", "offset", "bytes", "MiB"
    );
    for i in p.items.iter() {
        println!(
            "{:<38} {:>14} {:>14} {:>10}",
            i.name,
            i.offset,
            i.bytes,
            mib(i.bytes as u64)
        );
    }
    println!(
        "{:<38} {:>14} {:>14} {:>10}",
        "total arena",
        "",
        p.total_bytes,
        mib(p.total_bytes as u64)
    );
    println!(
        "\nKV cache: {} bytes per token, {} bytes per page of {} tokens, {} pages",
        p.kv_bytes_per_token, p.kv_bytes_per_page, p.kv_page_tokens, p.kv_pages
    );
    println!(
        "weights read in place from the model file: {} bytes ({} MiB); converted into the arena: {}",
        p.weights_in_place_bytes,
        mib(p.weights_in_place_bytes),
        p.weights_converted_bytes
    );
    if let (Some(budget), Some(max)) = (a.plan.budget, max_ctx) {
        let cap = if params.allow_ctx_beyond_train {
            "beyond the training context"
        } else {
            "capped at the training context"
        };
        println!(
            "\nbudget {} bytes ({} MiB): largest context {} tokens ({cap} {})",
            budget,
            mib(budget as u64),
            max,
            model.hparams.ctx_train
        );
    }
    Ok(())
}

/// What `plan --config` was asked.
pub struct WhatIfArgs {
    /// The config.json path.
    pub config: String,
    /// The arena-deciding options (context, KV type, batch, threads).
    pub plan: PlanOpts,
    /// Output rows.
    pub outputs: u32,
    /// Type of the weight matrices.
    pub weights: GgmlType,
    /// Sequences held at once.
    pub sequences: u32,
    /// Tensor-parallel shards.
    pub tp: u32,
    /// JSON output.
    pub json: bool,
}

fn footprint_json(f: &Footprint) -> serde_json::Value {
    json!({
        "params_total": f.params_total,
        "params_active": f.params_active,
        "weights_resident_bytes": f.weights_resident_bytes,
        "weights_read_per_token_bytes": f.weights_read_per_token_bytes,
        "kv_bytes_per_token": f.kv_bytes_per_token,
        "kv_bytes": f.kv_bytes,
    })
}

fn scratch_json(s: &ScratchPlan) -> serde_json::Value {
    json!({
        "x": s.x, "xb": s.xb, "work": s.work, "act": s.act, "attn": s.attn,
        "rope": s.rope, "logits": s.logits, "candidates": s.candidates, "total": s.total(),
    })
}

/// The what-if report's JSON object (keys documented in the README).
pub fn whatif_json(
    model_type: &str,
    a: &ArchSpec,
    p: &WhatIfParams,
    w: &WhatIf,
) -> serde_json::Value {
    let mut shard = footprint_json(&w.shard);
    shard["scratch"] = scratch_json(&w.shard_scratch);
    shard["total_bytes"] = json!(w.shard_total_bytes);
    json!({
        "model_type": model_type,
        "arch": {
            "n_layers": a.n_layers, "dim": a.dim, "n_heads": a.n_heads,
            "n_kv_heads": a.n_kv_heads, "head_dim": a.head_dim, "ffn_dim": a.ffn_dim,
            "vocab": a.vocab, "tied_embeddings": a.tied_embeddings, "qkv_bias": a.qkv_bias,
            "norms_per_layer": a.norms_per_layer, "qk_norm": a.qk_norm,
            "sliding_window": a.sliding_window.map(|s| json!({
                "window": s.window, "n_sliding_layers": s.n_sliding_layers,
            })),
            "mla": a.mla.map(|m| json!({
                "q_lora_rank": m.q_lora_rank, "kv_lora_rank": m.kv_lora_rank,
                "qk_nope_head_dim": m.qk_nope_head_dim, "qk_rope_head_dim": m.qk_rope_head_dim,
                "v_head_dim": m.v_head_dim,
            })),
            "moe": a.moe.map(|m| json!({
                "n_experts": m.n_experts, "n_active": m.n_active,
                "expert_ffn_dim": m.expert_ffn_dim, "n_shared": m.n_shared,
                "n_dense_layers": m.n_dense_layers, "router_bias": m.router_bias,
            })),
        },
        "params": {
            "weights": p.weight_type.name().to_ascii_lowercase(),
            "kv_type": p.kv_type.name(),
            "ctx_tokens": p.ctx_tokens,
            "sequences": p.sequences,
            "tensor_parallel": p.shards,
            "max_batch": p.scratch.max_batch,
            "max_outputs": p.scratch.max_outputs,
            "threads": p.scratch.threads,
            "page_tokens": p.scratch.page_tokens,
        },
        "model": footprint_json(&w.model),
        "shard": shard,
    })
}

/// Runs `plan --config`: what an architecture needs, from its config.json.
pub fn run_config(a: &WhatIfArgs) -> Result<(), String> {
    let text =
        std::fs::read_to_string(&a.config).map_err(|e| format!("cannot read {}: {e}", a.config))?;
    let cfg = config::parse(&text).map_err(|e| format!("{}: {e}", a.config))?;
    if a.plan.budget.is_some() {
        return Err("--budget sizes a GGUF model's arena; with --config give --ctx".into());
    }
    let ctx_train = cfg.ctx_train.unwrap_or(DEFAULT_CTX);
    let pp = a.plan.params(ctx_train, a.outputs);
    if cfg.ctx_train.is_some() && pp.ctx_tokens > pp.ctx_limit(ctx_train) {
        return Err(Error::ContextBeyondTraining {
            requested: pp.ctx_tokens,
            trained: ctx_train,
        }
        .to_string()
            + " (max_position_embeddings)");
    }
    let p = WhatIfParams {
        weight_type: a.weights,
        kv_type: pp.kv_type,
        ctx_tokens: pp.ctx_tokens,
        sequences: a.sequences,
        shards: a.tp,
        scratch: pp.scratch(),
    };
    let w = cfg
        .arch
        .what_if(&p)
        .map_err(|e| format!("{}: {}", a.config, cfg.explain(&e)))?;
    if a.json {
        let mut out = whatif_json(&cfg.model_type, &cfg.arch, &p, &w);
        out["config"] = json!(a.config);
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    let arch = &cfg.arch;
    println!(
        "what-if for {} ({}): {} layers, width {}, {} heads, vocab {}{}{}{}",
        a.config,
        cfg.model_type,
        arch.n_layers,
        arch.dim,
        arch.n_heads,
        arch.vocab,
        match arch.mla {
            Some(m) => format!(
                ", latent attention (cache {} + {})",
                m.kv_lora_rank, m.qk_rope_head_dim
            ),
            None => format!(", {} KV heads of {}", arch.n_kv_heads, arch.head_dim),
        },
        match arch.sliding_window {
            Some(s) => format!(
                ", {} layers with a {}-token window",
                s.n_sliding_layers, s.window
            ),
            None => String::new(),
        },
        match arch.moe {
            Some(m) => format!(", {} of {} experts per token", m.n_active, m.n_experts),
            None => String::new(),
        },
    );
    println!(
        "weights {}, KV {}, context {} tokens x {} sequence(s), {} tensor-parallel shard(s); \
         scratch for batch {}, {} output row(s), {} thread(s)",
        p.weight_type.name(),
        p.kv_type.name(),
        p.ctx_tokens,
        p.sequences,
        p.shards,
        p.scratch.max_batch,
        p.scratch.max_outputs,
        p.scratch.threads
    );
    println!("\n{:<30} {:>20} {:>20}", "", "whole model", "one shard");
    type Row = (&'static str, fn(&Footprint) -> u64);
    let rows: [Row; 6] = [
        ("parameters", |f| f.params_total),
        ("parameters read per token", |f| f.params_active),
        ("weights resident (bytes)", |f| f.weights_resident_bytes),
        ("weights read per token", |f| f.weights_read_per_token_bytes),
        ("KV bytes per token", |f| f.kv_bytes_per_token),
        ("KV bytes (context)", |f| f.kv_bytes),
    ];
    for (name, get) in rows {
        println!("{:<30} {:>20} {:>20}", name, get(&w.model), get(&w.shard));
    }
    let s = &w.shard_scratch;
    println!("\nscratch on one shard (the engine's buffers):");
    for (name, bytes) in [
        ("x", s.x),
        ("xb", s.xb),
        ("work", s.work),
        ("act", s.act),
        ("attn", s.attn),
        ("rope", s.rope),
        ("logits", s.logits),
        ("candidates", s.candidates),
        ("total", s.total()),
    ] {
        println!("  {:<28} {:>20} {:>10} MiB", name, bytes, mib(bytes as u64));
    }
    println!(
        "\none shard needs {} bytes ({} MiB): weights + KV cache + scratch",
        w.shard_total_bytes,
        mib(w.shard_total_bytes)
    );
    Ok(())
}
