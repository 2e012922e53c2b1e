//! `arenalm plan`: the arena an engine needs, item by item, and the
//! largest context a budget allows.

use arenalm_core::mem::plan::{self, MemoryPlan};
use arenalm_core::model::Model;
use serde_json::json;

use crate::common::{map_model, mib};
use crate::opts::PlanOpts;

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
