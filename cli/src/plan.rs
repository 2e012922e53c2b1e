//! `arenalm plan`: the arena an engine needs, item by item, and the
//! largest context a budget allows.

use arenalm_core::kv::KvType;
use arenalm_core::mem::plan::{self, MemoryPlan, PlanParams};
use arenalm_core::model::Model;
use serde_json::json;

use crate::common::{map_model, mib};

/// What the user asked for.
pub struct PlanArgs {
    /// Model path.
    pub model: String,
    /// Fixed context, if given.
    pub ctx: Option<u32>,
    /// Budget in bytes, if given.
    pub budget: Option<usize>,
    /// KV element type.
    pub kv: KvType,
    /// Micro-batch size.
    pub batch: u32,
    /// Output rows.
    pub outputs: u32,
    /// Threads.
    pub threads: u32,
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
    })
}

/// Runs the subcommand.
pub fn run(a: &PlanArgs) -> Result<(), String> {
    let map = map_model(&a.model)?;
    let model = Model::from_bytes(map.bytes()).map_err(|e| format!("{}: {e}", a.model))?;
    let params = PlanParams {
        ctx_tokens: a.ctx.unwrap_or(0),
        kv_type: a.kv,
        max_batch: a.batch,
        max_outputs: a.outputs,
        threads: a.threads,
        ..PlanParams::default()
    };
    let (p, max_ctx) = match (a.ctx, a.budget) {
        (_, Some(budget)) => {
            let p = plan::plan_for_budget(&model, &params, budget).map_err(|e| e.to_string())?;
            let max =
                plan::max_context_for_budget(&model, &params, budget).map_err(|e| e.to_string())?;
            (p, Some(max))
        }
        (Some(_), None) => (
            plan::plan(&model, &params).map_err(|e| e.to_string())?,
            None,
        ),
        (None, None) => {
            let p = PlanParams {
                ctx_tokens: model.hparams.ctx_train,
                ..params
            };
            (plan::plan(&model, &p).map_err(|e| e.to_string())?, None)
        }
    };
    if a.json {
        let mut out = plan_json(&p);
        out["model"] = json!(a.model);
        out["params"] = json!({
            "ctx_tokens": params.ctx_tokens, "kv_type": a.kv.name(),
            "page_tokens": params.page_tokens, "max_batch": a.batch,
            "max_outputs": a.outputs, "threads": a.threads,
        });
        out["budget_bytes"] = json!(a.budget);
        out["max_context_tokens"] = json!(max_ctx);
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "plan for {} (context {} tokens, KV {} in pages of {}, batch {}, {} output rows, {} threads)",
        a.model, p.ctx_tokens, a.kv.name(), p.kv_page_tokens, a.batch, a.outputs, a.threads
    );
    println!("{:<34} {:>14} {:>10}", "item", "bytes", "MiB");
    for (name, bytes) in p.items() {
        println!("{:<34} {:>14} {:>10}", name, bytes, mib(bytes as u64));
    }
    println!(
        "{:<34} {:>14} {:>10}",
        "total arena",
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
    if let (Some(budget), Some(max)) = (a.budget, max_ctx) {
        println!(
            "\nbudget {} bytes ({} MiB): largest context {} tokens (capped at the training context {})",
            budget,
            mib(budget as u64),
            max,
            model.hparams.ctx_train
        );
    }
    Ok(())
}
