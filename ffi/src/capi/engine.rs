//! Engines: a model running inside a caller's arena.

use std::ffi::{c_char, c_void};
use std::sync::atomic::Ordering;

use arenalm_core::engine::{Engine, EngineParams, Outputs};
use arenalm_core::kernels::KernelPath;
use arenalm_core::parallel::{Parallel, Serial};
use arenalm_core::sample::{Sampler, SamplerParams};

use super::plan::{alm_memory_plan, alm_plan_params};
use super::{alm_status, fill_out, guard, out_ref, read_params, ErrBuf};
use crate::capi::model::{alm_model, ModelHandle};
use crate::host::{detect_cpu, kernel_from_env, ThreadPool};

/// A running engine (opaque).
pub struct alm_engine {
    _private: [u8; 0],
}

/// A task the engine hands to a parallel-for: call it once per index.
pub type alm_task_fn = unsafe extern "C" fn(task_ctx: *mut c_void, task_index: usize);

/// A caller-provided parallel-for: call `task(task_ctx, i)` for every `i` in
/// `0..n_tasks`, on any threads, and return only when all calls returned.
pub type alm_parallel_for_fn = unsafe extern "C" fn(
    user_data: *mut c_void,
    n_tasks: usize,
    task: alm_task_fn,
    task_ctx: *mut c_void,
);

/// Kernel paths (values of `alm_engine_params.kernel`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum alm_kernel {
    /// The fastest the CPU supports (or the `ALM_KERNEL` environment variable).
    ALM_KERNEL_AUTO = 0,
    /// Portable scalar code.
    ALM_KERNEL_SCALAR = 1,
    /// x86_64 AVX2 + FMA + F16C.
    ALM_KERNEL_AVX2 = 2,
    /// aarch64 NEON.
    ALM_KERNEL_NEON = 3,
    /// aarch64 NEON with the dot-product extension.
    ALM_KERNEL_NEON_DOTPROD = 4,
    /// x86_64 AVX2 + FMA + F16C + AVX-VNNI (256-bit `vpdpbusd`).
    ALM_KERNEL_AVX_VNNI = 5,
    /// x86_64 AVX-512 F/BW/VL + VNNI (512-bit `vpdpbusd`).
    ALM_KERNEL_AVX512_VNNI = 6,
    /// aarch64 NEON with dotprod and the int8 matrix-multiply extension.
    ALM_KERNEL_NEON_I8MM = 7,
}

/// Every `alm_kernel` value but AUTO with its path: the one mapping both
/// directions use.
const KERNEL_PATHS: [(alm_kernel, KernelPath); 7] = [
    (alm_kernel::ALM_KERNEL_SCALAR, KernelPath::Scalar),
    (alm_kernel::ALM_KERNEL_AVX2, KernelPath::Avx2),
    (alm_kernel::ALM_KERNEL_NEON, KernelPath::Neon),
    (alm_kernel::ALM_KERNEL_NEON_DOTPROD, KernelPath::NeonDotprod),
    (alm_kernel::ALM_KERNEL_AVX_VNNI, KernelPath::AvxVnni),
    (alm_kernel::ALM_KERNEL_AVX512_VNNI, KernelPath::Avx512Vnni),
    (alm_kernel::ALM_KERNEL_NEON_I8MM, KernelPath::NeonI8mm),
];

impl alm_kernel {
    /// The value naming `path`.
    fn of(path: KernelPath) -> alm_kernel {
        KERNEL_PATHS
            .iter()
            .find(|(_, p)| *p == path)
            .map_or(alm_kernel::ALM_KERNEL_SCALAR, |(k, _)| *k)
    }

    /// The path a raw `kernel` field names (`None` for an unknown value).
    fn path_of(raw: u32) -> Option<KernelPath> {
        KERNEL_PATHS
            .iter()
            .find(|(k, _)| *k as u32 == raw)
            .map(|(_, p)| *p)
    }
}

/// Which rows of an evaluation produce logits (`alm_engine_eval`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum alm_outputs {
    /// The last token's row only.
    ALM_OUTPUTS_LAST = 0,
    /// Every token's row (at most `max_outputs`).
    ALM_OUTPUTS_ALL = 1,
}

/// Engine parameters: the plan's, plus kernel and threading choices.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct alm_engine_params {
    /// `sizeof(alm_engine_params)`.
    pub size: u32,
    /// Context in tokens; 0 = as large as the arena allows.
    pub ctx_tokens: u32,
    /// One of `alm_kv_type`.
    pub kv_type: u32,
    /// Tokens per KV page.
    pub page_tokens: u32,
    /// Most tokens per micro-batch.
    pub max_batch: u32,
    /// Most rows of logits per evaluation.
    pub max_outputs: u32,
    /// Threads (the built-in pool's size, or the task count handed to
    /// `parallel_for`).
    pub threads: u32,
    /// One of `alm_kernel`.
    pub kernel: u32,
    /// Your own parallel-for (see `alm_parallel_for_fn`), or NULL for the
    /// built-in thread pool.
    pub parallel_for: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            n_tasks: usize,
            task: alm_task_fn,
            task_ctx: *mut c_void,
        ),
    >,
    /// Passed to `parallel_for` as `user_data`.
    pub parallel_user_data: *mut c_void,
}

impl alm_engine_params {
    fn defaults() -> Self {
        let p = alm_plan_params::defaults();
        alm_engine_params {
            size: std::mem::size_of::<alm_engine_params>() as u32,
            ctx_tokens: p.ctx_tokens,
            kv_type: p.kv_type,
            page_tokens: p.page_tokens,
            max_batch: p.max_batch,
            max_outputs: p.max_outputs,
            threads: p.threads,
            kernel: alm_kernel::ALM_KERNEL_AUTO as u32,
            parallel_for: None,
            parallel_user_data: std::ptr::null_mut(),
        }
    }
}

/// A caller's parallel-for as a core `Parallel`.
struct CallbackParallel {
    f: alm_parallel_for_fn,
    user: *mut c_void,
    threads: usize,
}

// SAFETY: the header requires `parallel_for` to be callable from the thread
// that evaluates and to run tasks on threads of its choosing; the task
// closures themselves are `Sync`.
unsafe impl Sync for CallbackParallel {}
// SAFETY: as above; the handle may move between threads with its engine.
unsafe impl Send for CallbackParallel {}

unsafe extern "C" fn trampoline(ctx: *mut c_void, index: usize) {
    // SAFETY: `ctx` is the `&&dyn Fn` that `run` passed and keeps alive
    // until the caller's parallel-for returns.
    let task = unsafe { &*(ctx as *const &(dyn Fn(usize) + Sync)) };
    // Unwinding into C is undefined; core never panics, but make sure.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(index)));
}

impl Parallel for CallbackParallel {
    fn threads(&self) -> usize {
        self.threads
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        let ctx: *const &(dyn Fn(usize) + Sync) = &task;
        // SAFETY: the caller's function was provided for exactly this use;
        // `ctx` outlives the call.
        unsafe { (self.f)(self.user, n_tasks, trampoline, ctx as *mut c_void) };
    }
}

enum Par {
    Serial,
    Pool(ThreadPool),
    Callback(CallbackParallel),
}

impl Par {
    fn get(&self) -> &dyn Parallel {
        match self {
            Par::Serial => &Serial,
            Par::Pool(p) => p,
            Par::Callback(c) => c,
        }
    }
}

struct EngineHandle {
    engine: &'static mut Engine<'static>,
    model: *const ModelHandle,
    par: Par,
    sampler: Sampler,
}

impl EngineHandle {
    /// # Safety
    ///
    /// `e` must be NULL or a live pointer from `alm_engine_create`, not
    /// used concurrently.
    unsafe fn from_ptr<'h>(e: *mut alm_engine) -> Option<&'h mut EngineHandle> {
        // SAFETY: per the contract.
        unsafe { e.cast::<EngineHandle>().as_mut() }
    }
}

/// The tokenizer of a live engine, if its model has one.
///
/// # Safety
///
/// `e` must be a live engine handle, not used concurrently.
pub(crate) unsafe fn engine_tokenizer<'h>(
    e: *mut alm_engine,
) -> Option<&'h mut arenalm_core::tokenizer::Tokenizer<'static>> {
    // SAFETY: per the contract.
    let h = unsafe { EngineHandle::from_ptr(e) }?;
    h.engine.tokenizer_mut()
}

/// Fills `out` (`out_size` bytes) with the engine defaults: the plan
/// defaults, automatic kernel choice, the built-in thread pool.
///
/// # Safety
///
/// `out` NULL or `out_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_default_params(
    out: *mut alm_engine_params,
    out_size: usize,
) -> alm_status {
    // SAFETY: forwarded contract.
    unsafe { super::fill_defaults(out, out_size, alm_engine_params::defaults()) }
}

/// Creates an engine for `model` inside the caller's `arena` (`arena_len`
/// bytes, ideally 64-byte aligned). Every byte the engine writes is in the
/// arena; nothing grows later. The engine's state lives in the arena too,
/// so the caller keeps ownership of all memory; the model and the arena must
/// outlive the engine. `ALM_ERR_BUDGET` says how many bytes were needed.
///
/// # Safety
///
/// `model` a live handle; `arena` `arena_len` writable bytes, not touched by
/// the caller until `alm_engine_free`; `params` NULL or valid; `out`
/// writable; `err` NULL or `err_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_create(
    model: *const alm_model,
    arena: *mut c_void,
    arena_len: usize,
    params: *const alm_engine_params,
    out: *mut *mut alm_engine,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        let out = out_ref!(err, out, "out");
        *out = std::ptr::null_mut();
        // SAFETY: a live handle or NULL per the contract.
        let Some(h) = (unsafe { ModelHandle::from_ptr(model) }) else {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`model` is NULL");
        };
        if arena.is_null() {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`arena` is NULL");
        }
        // SAFETY: `params` is NULL or a valid struct per the contract.
        let p = match unsafe { read_params(&err, params, alm_engine_params::defaults()) } {
            Ok(p) => p,
            Err(s) => return s,
        };
        let plan = alm_plan_params {
            size: 0,
            ctx_tokens: p.ctx_tokens,
            kv_type: p.kv_type,
            page_tokens: p.page_tokens,
            max_batch: p.max_batch,
            max_outputs: p.max_outputs,
            threads: p.threads,
        };
        let plan = match plan.to_core(&err) {
            Ok(p) => p,
            Err(s) => return s,
        };
        let kernel = match p.kernel {
            0 => match kernel_from_env() {
                Ok(k) => k,
                Err(msg) => return err.fail_with(alm_status::ALM_ERR_INVALID_ARGUMENT, &msg),
            },
            raw => match alm_kernel::path_of(raw) {
                Some(path) => Some(path),
                None => {
                    return err.fail_with(
                        alm_status::ALM_ERR_INVALID_ARGUMENT,
                        "kernel is not an alm_kernel value",
                    )
                }
            },
        };
        let threads = plan.threads.max(1) as usize;
        let par = match p.parallel_for {
            Some(f) => Par::Callback(CallbackParallel {
                f,
                user: p.parallel_user_data,
                threads,
            }),
            None if threads > 1 => match ThreadPool::new(threads) {
                Ok(pool) => Par::Pool(pool),
                Err(e) => {
                    return err.fail_with(
                        alm_status::ALM_ERR_IO,
                        &format!("cannot start {threads} threads: {e}"),
                    )
                }
            },
            None => Par::Serial,
        };
        // SAFETY: the caller gives us `arena_len` writable bytes until
        // `alm_engine_free`, and the model outlives the engine (enforced by
        // the engine count that `alm_model_close` checks).
        let arena: &'static mut [u8] =
            unsafe { std::slice::from_raw_parts_mut(arena.cast::<u8>(), arena_len) };
        let params = EngineParams { plan, kernel };
        let engine = match Engine::new(h.bytes, arena, &params, &detect_cpu()) {
            Ok(e) => e,
            Err(e) => return err.fail(&e),
        };
        let sampler = match Sampler::new(SamplerParams::default()) {
            Ok(s) => s,
            Err(e) => return err.fail(&e),
        };
        h.engines.fetch_add(1, Ordering::AcqRel);
        let handle = Box::new(EngineHandle {
            engine,
            model: h,
            par,
            sampler,
        });
        *out = Box::into_raw(handle).cast::<alm_engine>();
        alm_status::ALM_OK
    })
}

/// Frees an engine (NULL is accepted): stops its threads and releases the
/// model. The arena is the caller's again afterwards.
///
/// # Safety
///
/// `engine` NULL or a live handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_free(engine: *mut alm_engine) {
    let _ = guard(ErrBuf::new(std::ptr::null_mut(), 0), || {
        if engine.is_null() {
            return alm_status::ALM_OK;
        }
        // SAFETY: the pointer came from `Box::into_raw` in `alm_engine_create`.
        let handle = unsafe { Box::from_raw(engine.cast::<EngineHandle>()) };
        // SAFETY: the model outlives its engines (close refuses otherwise).
        if let Some(m) = unsafe { handle.model.as_ref() } {
            m.engines.fetch_sub(1, Ordering::AcqRel);
        }
        drop(handle);
        alm_status::ALM_OK
    });
}

/// Appends `n_tokens` tokens to the sequence and returns logits:
/// `*logits` points to `*rows x vocab` floats inside the arena, valid until
/// the next call that changes the engine. Nothing changes when the call
/// fails (`ALM_ERR_TOKENIZER` for an id outside the vocabulary,
/// `ALM_ERR_FULL` beyond the context, `ALM_ERR_INVALID_ARGUMENT` for more
/// rows than `max_outputs`).
///
/// # Safety
///
/// `engine` a live handle; `tokens` `n_tokens` readable ids; `logits` and
/// `rows` NULL or writable; `err` NULL or `err_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_eval(
    engine: *mut alm_engine,
    tokens: *const u32,
    n_tokens: usize,
    outputs: u32,
    logits: *mut *const f32,
    rows: *mut usize,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: a live handle per the contract.
        let Some(h) = (unsafe { EngineHandle::from_ptr(engine) }) else {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`engine` is NULL");
        };
        if tokens.is_null() {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`tokens` is NULL");
        }
        let outputs = match outputs {
            0 => Outputs::Last,
            1 => Outputs::All,
            _ => {
                return err.fail_with(
                    alm_status::ALM_ERR_INVALID_ARGUMENT,
                    "outputs is not an alm_outputs value",
                )
            }
        };
        // SAFETY: the caller provides `n_tokens` readable ids.
        let tokens = unsafe { std::slice::from_raw_parts(tokens, n_tokens) };
        let vocab = h.engine.vocab();
        match h.engine.eval(h.par.get(), tokens, outputs) {
            Ok(l) => {
                if !logits.is_null() {
                    // SAFETY: non-null and writable per the contract.
                    unsafe { *logits = l.as_ptr() };
                }
                if !rows.is_null() {
                    // SAFETY: non-null and writable per the contract.
                    unsafe { *rows = l.len() / vocab.max(1) };
                }
                alm_status::ALM_OK
            }
            Err(e) => err.fail(&e),
        }
    })
}

/// Forgets the sequence (the KV cache) and resets the sampler's history.
///
/// # Safety
///
/// `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_reset(engine: *mut alm_engine) -> alm_status {
    guard(ErrBuf::new(std::ptr::null_mut(), 0), || {
        // SAFETY: a live handle per the contract.
        let Some(h) = (unsafe { EngineHandle::from_ptr(engine) }) else {
            return alm_status::ALM_ERR_NULL_ARGUMENT;
        };
        h.sampler.reset();
        match h.engine.reset() {
            Ok(()) => alm_status::ALM_OK,
            Err(e) => super::status_of(&e),
        }
    })
}

/// Keeps the first `n_tokens` tokens of the sequence.
///
/// # Safety
///
/// `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_truncate(
    engine: *mut alm_engine,
    n_tokens: usize,
) -> alm_status {
    guard(ErrBuf::new(std::ptr::null_mut(), 0), || {
        // SAFETY: a live handle per the contract.
        let Some(h) = (unsafe { EngineHandle::from_ptr(engine) }) else {
            return alm_status::ALM_ERR_NULL_ARGUMENT;
        };
        match h.engine.truncate(n_tokens) {
            Ok(()) => alm_status::ALM_OK,
            Err(e) => super::status_of(&e),
        }
    })
}

/// An engine's current state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct alm_engine_state {
    /// `sizeof(alm_engine_state)`, set by the caller.
    pub size: u32,
    /// One of `alm_kernel` (never AUTO): the path in use.
    pub kernel: u32,
    /// Tokens in the sequence.
    pub n_past: u64,
    /// Context capacity in tokens.
    pub ctx_capacity: u64,
    /// Length of a logits row.
    pub vocab: u64,
    /// Arena bytes in use (the plan's total plus any alignment skip).
    pub arena_used: u64,
}

/// Describes the engine into `out` (whose `size` the caller sets).
///
/// # Safety
///
/// `engine` a live handle; `out` writable for `out->size` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_get_state(
    engine: *mut alm_engine,
    out: *mut alm_engine_state,
) -> alm_status {
    let err = ErrBuf::new(std::ptr::null_mut(), 0);
    guard(err, || {
        // SAFETY: a live handle per the contract.
        let Some(h) = (unsafe { EngineHandle::from_ptr(engine) }) else {
            return alm_status::ALM_ERR_NULL_ARGUMENT;
        };
        let kernel = alm_kernel::of(h.engine.kernel_path());
        let state = alm_engine_state {
            size: 0,
            kernel: kernel as u32,
            n_past: h.engine.n_past() as u64,
            ctx_capacity: h.engine.ctx_capacity() as u64,
            vocab: h.engine.vocab() as u64,
            arena_used: h.engine.arena_used() as u64,
        };
        // SAFETY: `out` is NULL or has `out->size` writable bytes.
        unsafe { fill_out(&err, out, state) }
    })
}

/// The plan the engine's arena was carved by, into `out`.
///
/// # Safety
///
/// `engine` a live handle; `out` writable for `out->size` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_get_plan(
    engine: *mut alm_engine,
    out: *mut alm_memory_plan,
) -> alm_status {
    let err = ErrBuf::new(std::ptr::null_mut(), 0);
    guard(err, || {
        // SAFETY: a live handle per the contract.
        let Some(h) = (unsafe { EngineHandle::from_ptr(engine) }) else {
            return alm_status::ALM_ERR_NULL_ARGUMENT;
        };
        let plan = super::plan::plan_to_c(h.engine.plan());
        // SAFETY: `out` is NULL or has `out->size` writable bytes.
        unsafe { fill_out(&err, out, plan) }
    })
}

/// Sampling parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct alm_sampler_params {
    /// `sizeof(alm_sampler_params)`.
    pub size: u32,
    /// Temperature; 0 or below is greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = all).
    pub top_k: u32,
    /// Nucleus threshold in (0, 1].
    pub top_p: f32,
    /// Minimum probability relative to the best token, in [0, 1].
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    pub repeat_penalty: f32,
    /// Recent tokens the penalty looks at (at most 256).
    pub repeat_last_n: u32,
    /// Random seed.
    pub seed: u64,
}

impl alm_sampler_params {
    fn defaults() -> Self {
        let d = SamplerParams::default();
        alm_sampler_params {
            size: std::mem::size_of::<alm_sampler_params>() as u32,
            temperature: d.temperature,
            top_k: d.top_k,
            top_p: d.top_p,
            min_p: d.min_p,
            repeat_penalty: d.repeat_penalty,
            repeat_last_n: d.repeat_last_n,
            seed: d.seed,
        }
    }
}

/// Fills `out` with llama.cpp's sampling defaults (temperature 0.8, top-k
/// 40, top-p 0.95, min-p 0.05, no repetition penalty).
///
/// # Safety
///
/// `out` NULL or `out_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_sampler_default_params(
    out: *mut alm_sampler_params,
    out_size: usize,
) -> alm_status {
    // SAFETY: forwarded contract.
    unsafe { super::fill_defaults(out, out_size, alm_sampler_params::defaults()) }
}

/// Sets the engine's sampler (and reseeds it).
///
/// # Safety
///
/// `engine` a live handle; `params` NULL (defaults) or valid; `err` NULL or
/// `err_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_set_sampler(
    engine: *mut alm_engine,
    params: *const alm_sampler_params,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: a live handle per the contract.
        let Some(h) = (unsafe { EngineHandle::from_ptr(engine) }) else {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`engine` is NULL");
        };
        // SAFETY: `params` is NULL or valid per the contract.
        let p = match unsafe { read_params(&err, params, alm_sampler_params::defaults()) } {
            Ok(p) => p,
            Err(s) => return s,
        };
        let params = SamplerParams {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n,
            seed: p.seed,
        };
        match Sampler::new(params) {
            Ok(s) => {
                h.sampler = s;
                alm_status::ALM_OK
            }
            Err(e) => err.fail(&e),
        }
    })
}

/// Samples the next token from the last row of logits into `*token` and
/// records it in the sampler's history.
///
/// # Safety
///
/// `engine` a live handle; `token` writable; `err` NULL or `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_sample(
    engine: *mut alm_engine,
    token: *mut u32,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: a live handle per the contract.
        let Some(h) = (unsafe { EngineHandle::from_ptr(engine) }) else {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`engine` is NULL");
        };
        let token = out_ref!(err, token, "token");
        match h.engine.sample(&mut h.sampler) {
            Ok(t) => {
                h.sampler.accept(t);
                *token = t;
                alm_status::ALM_OK
            }
            Err(e) => err.fail(&e),
        }
    })
}

/// Records `token` in the sampler's history (for the repetition penalty),
/// e.g. for prompt tokens.
///
/// # Safety
///
/// `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_accept(engine: *mut alm_engine, token: u32) -> alm_status {
    guard(ErrBuf::new(std::ptr::null_mut(), 0), || {
        // SAFETY: a live handle per the contract.
        let Some(h) = (unsafe { EngineHandle::from_ptr(engine) }) else {
            return alm_status::ALM_ERR_NULL_ARGUMENT;
        };
        h.sampler.accept(token);
        alm_status::ALM_OK
    })
}
