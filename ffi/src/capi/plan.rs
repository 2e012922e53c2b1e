//! The memory planner: how many arena bytes an engine takes, and the
//! largest context a budget allows, before any arena exists. Plans take the
//! same `alm_engine_params` that `alm_engine_create` takes.

use std::ffi::c_char;

use arenalm_core::mem::plan::{self, MemoryPlan};

use super::handles::{Id, Kind};
use super::model::{alm_model, MODELS};
use super::params::alm_engine_params;
use super::versioned::{fill_out, read_params, versioned};
use super::{alm_status, guard, out_ptr, tri, ErrBuf};

/// The arena bytes an engine takes, item by item (all in bytes unless noted).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct alm_memory_plan {
    /// `sizeof(alm_memory_plan)`, set by the caller.
    pub size: u32,
    /// Tokens per KV page.
    pub kv_page_tokens: u32,
    /// Pages in the KV pool.
    pub kv_pages: u32,
    /// Context capacity in tokens.
    pub ctx_tokens: u32,
    /// Weights read in place from the model bytes (not in the arena).
    pub weights_in_place_bytes: u64,
    /// Weights converted into the arena (0: all read in place).
    pub weights_converted_bytes: u64,
    /// The engine's own state.
    pub engine_state_bytes: u64,
    /// Per-layer weight index.
    pub model_index_bytes: u64,
    /// Tokenizer tables.
    pub tokenizer_bytes: u64,
    /// KV cache bytes per token.
    pub kv_bytes_per_token: u64,
    /// Bytes of one KV page.
    pub kv_bytes_per_page: u64,
    /// The KV page pool.
    pub kv_pool_bytes: u64,
    /// The page table.
    pub page_table_bytes: u64,
    /// All scratch buffers.
    pub scratch_bytes: u64,
    /// Total arena bytes for a 64-byte-aligned arena (add 63 if yours may
    /// not be aligned).
    pub total_bytes: u64,
}

versioned!(alm_memory_plan {
    size: u32,
    kv_page_tokens: u32,
    kv_pages: u32,
    ctx_tokens: u32,
    weights_in_place_bytes: u64,
    weights_converted_bytes: u64,
    engine_state_bytes: u64,
    model_index_bytes: u64,
    tokenizer_bytes: u64,
    kv_bytes_per_token: u64,
    kv_bytes_per_page: u64,
    kv_pool_bytes: u64,
    page_table_bytes: u64,
    scratch_bytes: u64,
    total_bytes: u64,
});

pub(crate) fn plan_to_c(p: &MemoryPlan) -> alm_memory_plan {
    alm_memory_plan {
        size: 0,
        kv_page_tokens: p.kv_page_tokens,
        kv_pages: p.kv_pages,
        ctx_tokens: p.ctx_tokens,
        weights_in_place_bytes: p.weights_in_place_bytes,
        weights_converted_bytes: p.weights_converted_bytes as u64,
        engine_state_bytes: p.engine_state_bytes as u64,
        model_index_bytes: p.model_index_bytes as u64,
        tokenizer_bytes: p.tokenizer_bytes as u64,
        kv_bytes_per_token: p.kv_bytes_per_token as u64,
        kv_bytes_per_page: p.kv_bytes_per_page as u64,
        kv_pool_bytes: p.kv_pool_bytes as u64,
        page_table_bytes: p.page_table_bytes as u64,
        scratch_bytes: p.scratch.total() as u64,
        total_bytes: p.total_bytes as u64,
    }
}

/// Which question a plan call answers.
#[derive(Clone, Copy)]
enum Question {
    /// The plan for a fixed context.
    Fixed,
    /// The plan for a budget.
    Budget(usize),
}

/// Plans an engine for `model` with `params` (NULL = the defaults of
/// `alm_engine_default_params`) and fills `out` (whose `size` the caller
/// sets). Needs a fixed context (`params->ctx_tokens > 0`); to fill a
/// budget use `alm_plan_for_budget`. `ALM_ERR_INVALID_ARGUMENT` for a
/// context beyond the model's training context (unless
/// `params->allow_ctx_beyond_train`), a count above its `ALM_MAX_*` cap or
/// an enum value out of range; `ALM_ERR_BAD_HANDLE` for a stale model.
///
/// # Safety
///
/// `params` NULL or a valid struct; `out` writable for `out->size` bytes;
/// `err` NULL or `err_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_plan(
    model: *const alm_model,
    params: *const alm_engine_params,
    out: *mut alm_memory_plan,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    // SAFETY: forwarded contract.
    unsafe { plan_impl(model, params, Question::Fixed, out, err, err_len) }
}

/// Plans an engine for an arena of `budget_bytes`. With
/// `params->ctx_tokens == 0` the context is the largest that fits (up to
/// the training context, or `ALM_MAX_CTX_TOKENS` with
/// `allow_ctx_beyond_train`); with a fixed context the plan must fit or
/// `ALM_ERR_BUDGET` says needed and available. The arena this plan
/// describes is exactly what `alm_engine_create` with the same `params`
/// takes from a 64-byte-aligned arena of `budget_bytes`.
///
/// # Safety
///
/// As for `alm_plan`.
#[no_mangle]
pub unsafe extern "C" fn alm_plan_for_budget(
    model: *const alm_model,
    params: *const alm_engine_params,
    budget_bytes: usize,
    out: *mut alm_memory_plan,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    // SAFETY: forwarded contract.
    unsafe {
        plan_impl(
            model,
            params,
            Question::Budget(budget_bytes),
            out,
            err,
            err_len,
        )
    }
}

/// The body of `alm_plan` and `alm_plan_for_budget`.
///
/// # Safety
///
/// `params` NULL or a valid struct; `out` NULL or writable for `out->size`
/// bytes; `err` NULL or `err_len` writable bytes.
unsafe fn plan_impl(
    model: *const alm_model,
    params: *const alm_engine_params,
    question: Question,
    out: *mut alm_memory_plan,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: `params` is NULL or a valid struct per the contract.
        let p = tri!(unsafe { read_params(&err, params, alm_engine_params::defaults(), "params") });
        let p = tri!(p.resolve(&err));
        if out.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                format_args!("`out` is NULL"),
            );
        }
        let id =
            tri!(Id::expect(model, Kind::Model).map_err(|e| e.report(&err, "model", Kind::Model)));
        let result = MODELS.with_ref(id, |h, _| match question {
            Question::Fixed => plan::plan(&h.model, &p.core.plan),
            Question::Budget(b) => plan::plan_for_budget(&h.model, &p.core.plan, b),
        });
        match result {
            Ok(Ok(plan)) => {
                // SAFETY: `out` is NULL-checked and has `out->size` writable bytes.
                unsafe { fill_out(&err, out, plan_to_c(&plan), "out") }
            }
            Ok(Err(e)) => err.fail(&e),
            Err(e) => e.report(&err, "model", Kind::Model),
        }
    })
}

/// The largest context (tokens, whole pages, up to the training context
/// unless `params->allow_ctx_beyond_train`) an arena of `budget_bytes`
/// allows with `params` (its `ctx_tokens` is ignored), into `*out_ctx`.
///
/// # Safety
///
/// `params` NULL or valid; `out_ctx` writable; `err` NULL or `err_len`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_plan_max_context(
    model: *const alm_model,
    params: *const alm_engine_params,
    budget_bytes: usize,
    out_ctx: *mut u32,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: `params` is NULL or a valid struct per the contract.
        let p = tri!(unsafe { read_params(&err, params, alm_engine_params::defaults(), "params") });
        let mut p = tri!(p.resolve(&err));
        p.core.plan.ctx_tokens = 0;
        // SAFETY: writable per the contract.
        let out_ctx = tri!(unsafe { out_ptr(&err, out_ctx, "out_ctx") });
        let id =
            tri!(Id::expect(model, Kind::Model).map_err(|e| e.report(&err, "model", Kind::Model)));
        let result = MODELS.with_ref(id, |h, _| {
            plan::max_context_for_budget(&h.model, &p.core.plan, budget_bytes)
        });
        match result {
            Ok(Ok(ctx)) => {
                *out_ctx = ctx;
                alm_status::ALM_OK
            }
            Ok(Err(e)) => err.fail(&e),
            Err(e) => e.report(&err, "model", Kind::Model),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::versioned::assert_listing_matches;

    #[test]
    fn the_plan_listing_matches_the_struct() {
        assert_listing_matches::<alm_memory_plan>();
    }
}
