//! The memory planner: how many arena bytes an engine takes, and the
//! largest context a budget allows, before any arena exists.

use std::ffi::c_char;

use arenalm_core::kv::KvType;
use arenalm_core::mem::plan::{self, MemoryPlan, PlanParams};

use super::{alm_status, guard, out_ref, read_params, write_sized, ErrBuf};
use crate::capi::model::{alm_model, ModelHandle};

/// KV cache element types (values of `alm_plan_params.kv_type`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum alm_kv_type {
    /// IEEE half precision (default).
    ALM_KV_F16 = 0,
    /// ggml Q8_0 blocks (34 bytes per 32 values).
    ALM_KV_Q8_0 = 1,
    /// Single precision.
    ALM_KV_F32 = 2,
}

/// Parameters that decide the arena size.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct alm_plan_params {
    /// `sizeof(alm_plan_params)`.
    pub size: u32,
    /// Context in tokens; 0 = as large as the budget allows (capped at the
    /// model's training context).
    pub ctx_tokens: u32,
    /// One of `alm_kv_type`.
    pub kv_type: u32,
    /// Tokens per KV page (default 16).
    pub page_tokens: u32,
    /// Most tokens per micro-batch (default 64).
    pub max_batch: u32,
    /// Most rows of logits one evaluation returns (default 1).
    pub max_outputs: u32,
    /// Worker threads (default 1).
    pub threads: u32,
}

impl alm_plan_params {
    pub(crate) fn defaults() -> Self {
        let d = PlanParams::default();
        alm_plan_params {
            size: std::mem::size_of::<alm_plan_params>() as u32,
            ctx_tokens: d.ctx_tokens,
            kv_type: alm_kv_type::ALM_KV_F16 as u32,
            page_tokens: d.page_tokens,
            max_batch: d.max_batch,
            max_outputs: d.max_outputs,
            threads: d.threads,
        }
    }

    pub(crate) fn to_core(self, err: &ErrBuf) -> Result<PlanParams, alm_status> {
        let kv_type = match self.kv_type {
            0 => KvType::F16,
            1 => KvType::Q8_0,
            2 => KvType::F32,
            _ => {
                return Err(err.fail_with(
                    alm_status::ALM_ERR_INVALID_ARGUMENT,
                    "kv_type is not an alm_kv_type value",
                ))
            }
        };
        Ok(PlanParams {
            ctx_tokens: self.ctx_tokens,
            kv_type,
            page_tokens: self.page_tokens,
            max_batch: self.max_batch,
            max_outputs: self.max_outputs,
            threads: self.threads,
            ..PlanParams::default()
        })
    }
}

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

/// Fills `out` (`out_size` bytes, normally `sizeof(alm_plan_params)`) with
/// the defaults: context 0 (fill the budget), F16 KV, 16-token pages,
/// micro-batches of 64, 1 output row, 1 thread.
///
/// # Safety
///
/// `out` must be NULL or point to `out_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_plan_default_params(
    out: *mut alm_plan_params,
    out_size: usize,
) -> alm_status {
    // SAFETY: forwarded contract.
    unsafe { super::fill_defaults(out, out_size, alm_plan_params::defaults()) }
}

/// Plans an engine for `model` with `params` (NULL = defaults) and fills
/// `out` (whose `size` the caller sets). With `params->ctx_tokens == 0` the
/// plan needs a budget: use `alm_plan_for_budget`.
///
/// # Safety
///
/// `model` a live handle; `params` NULL or a valid struct; `out` writable for
/// `out->size` bytes; `err` NULL or `err_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_plan(
    model: *const alm_model,
    params: *const alm_plan_params,
    out: *mut alm_memory_plan,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    // SAFETY: forwarded contract; a budget of usize::MAX never limits.
    unsafe { plan_impl(model, params, None, out, err, err_len) }
}

/// Plans an engine for an arena of `budget_bytes`. With
/// `params->ctx_tokens == 0` the context is the largest that fits; with a
/// fixed context the plan must fit or `ALM_ERR_BUDGET` says needed and
/// available.
///
/// # Safety
///
/// As for `alm_plan`.
#[no_mangle]
pub unsafe extern "C" fn alm_plan_for_budget(
    model: *const alm_model,
    params: *const alm_plan_params,
    budget_bytes: usize,
    out: *mut alm_memory_plan,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    // SAFETY: forwarded contract.
    unsafe { plan_impl(model, params, Some(budget_bytes), out, err, err_len) }
}

unsafe fn plan_impl(
    model: *const alm_model,
    params: *const alm_plan_params,
    budget: Option<usize>,
    out: *mut alm_memory_plan,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: a live handle or NULL per the contract.
        let Some(h) = (unsafe { ModelHandle::from_ptr(model) }) else {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`model` is NULL");
        };
        let out = out_ref!(err, out, "out");
        let size = out.size as usize;
        if size < 4 {
            return err.fail_with(alm_status::ALM_ERR_INVALID_ARGUMENT, "`out->size` not set");
        }
        // SAFETY: `params` is NULL or a valid struct per the contract.
        let p = match unsafe { read_params(&err, params, alm_plan_params::defaults()) } {
            Ok(p) => p,
            Err(s) => return s,
        };
        let p = match p.to_core(&err) {
            Ok(p) => p,
            Err(s) => return s,
        };
        let result = match budget {
            None => plan::plan(&h.model, &p),
            Some(b) => plan::plan_for_budget(&h.model, &p, b),
        };
        match result {
            Ok(plan) => {
                // SAFETY: `out` has `size` writable bytes.
                unsafe { write_sized(plan_to_c(&plan), out, size) };
                alm_status::ALM_OK
            }
            Err(e) => err.fail(&e),
        }
    })
}

/// The largest context (tokens, whole pages, at most the training context)
/// an arena of `budget_bytes` allows with `params` (its `ctx_tokens` is
/// ignored), into `*out_ctx`.
///
/// # Safety
///
/// `model` a live handle; `params` NULL or valid; `out_ctx` writable; `err`
/// NULL or `err_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_plan_max_context(
    model: *const alm_model,
    params: *const alm_plan_params,
    budget_bytes: usize,
    out_ctx: *mut u32,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: a live handle or NULL per the contract.
        let Some(h) = (unsafe { ModelHandle::from_ptr(model) }) else {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`model` is NULL");
        };
        let out_ctx = out_ref!(err, out_ctx, "out_ctx");
        // SAFETY: `params` is NULL or a valid struct per the contract.
        let p = match unsafe { read_params(&err, params, alm_plan_params::defaults()) } {
            Ok(p) => p,
            Err(s) => return s,
        };
        let p = match p.to_core(&err) {
            Ok(p) => p,
            Err(s) => return s,
        };
        match plan::max_context_for_budget(&h.model, &p, budget_bytes) {
            Ok(ctx) => {
                *out_ctx = ctx;
                alm_status::ALM_OK
            }
            Err(e) => err.fail(&e),
        }
    })
}
