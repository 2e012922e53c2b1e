//! Engines: a model running inside a caller's arena.

use std::ffi::{c_char, c_void};

use arenalm_core::engine::{Engine, Outputs};
use arenalm_core::error::TokenizerError;
use arenalm_core::parallel::{Parallel, Serial};
use arenalm_core::sample::{Sampler, SamplerParams};
use arenalm_core::Error;

use super::handles::{HandleError, Handled, Id, Kind, Table, ALM_MAX_ENGINES};
use super::model::{alm_model, MODELS};
use super::params::{alm_engine_params, alm_kernel, alm_task_fn, Callback};
use super::plan::alm_memory_plan;
use super::versioned::{fill_defaults, fill_out, read_params, versioned};
use super::{alm_status, caller_slice, guard, out_ptr, tri, ErrBuf};
use crate::host::{detect_cpu, kernel_from_env, ThreadPool};

/// A running engine (opaque handle).
///
/// Its state (weights index, tokenizer tables, KV cache, scratch and the
/// engine struct itself) lives in the arena you pass to
/// `alm_engine_create`. The handle is a number naming a slot of the
/// library's handle table (never an address: do not dereference it); the
/// slot holds a pointer to the engine in your arena, the sampler
/// (about 1.1 KiB) and the thread pool, if any. Calls check the handle
/// first: a freed or foreign handle is `ALM_ERR_BAD_HANDLE`, and a second
/// call on the same engine while one runs (another thread) is
/// `ALM_ERR_BUSY`.
pub struct alm_engine {
    _private: [u8; 0],
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

/// A caller's parallel-for as a core `Parallel`.
struct CallbackParallel {
    callback: Callback,
    threads: usize,
}

// SAFETY: the header requires `parallel_for` to be callable from the thread
// that evaluates and to run tasks on threads of its choosing; the task
// closures themselves are `Sync`.
unsafe impl Sync for CallbackParallel {}
// SAFETY: as above; the handle may move between threads with its engine.
unsafe impl Send for CallbackParallel {}

/// The `alm_task_fn` handed to a caller's parallel-for: runs task `index`
/// of the job in `ctx`.
///
/// # Safety
///
/// `ctx` must be the context `CallbackParallel::run` passed with this
/// function, during that call.
unsafe extern "C" fn trampoline(ctx: *mut c_void, index: usize) {
    // SAFETY: `ctx` is the `&&dyn Fn` that `run` passed and keeps alive
    // until the caller's parallel-for returns.
    let task = unsafe { &*(ctx as *const &(dyn Fn(usize) + Sync)) };
    // Unwinding into C is undefined; core never panics, but make sure.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(index)));
}

// SAFETY: the header makes the caller's `alm_parallel_for_fn` promise
// exactly this: call `task(task_ctx, i)` once for every `i`, and return only
// when all calls returned. A C function that breaks it is undefined
// behaviour in the same way as passing a wrong pointer.
unsafe impl Parallel for CallbackParallel {
    fn threads(&self) -> usize {
        self.threads
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        let ctx: *const &(dyn Fn(usize) + Sync) = &task;
        // SAFETY: the caller's function was provided for exactly this use;
        // `ctx` outlives the call.
        unsafe {
            (self.callback.f)(
                self.callback.user,
                n_tasks,
                trampoline as alm_task_fn,
                ctx as *mut c_void,
            )
        };
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

/// What an engine slot holds.
pub(crate) struct EngineHandle {
    /// The engine, in the caller's arena.
    pub(crate) engine: &'static mut Engine<'static>,
    /// The model's slot (one of its dependents is this engine).
    model_slot: usize,
    par: Par,
    sampler: Sampler,
}

// SAFETY: an engine handle is only touched under its slot's exclusive lock
// (one thread at a time); the engine borrows caller memory that the header
// lets any thread use, and the parallel-for callback is `Send` per its
// contract.
unsafe impl Send for EngineHandle {}
// SAFETY: as above: no shared access ever happens (slots lock exclusively).
unsafe impl Sync for EngineHandle {}

impl Handled for EngineHandle {
    const KIND: Kind = Kind::Engine;
}

/// The engine table.
pub(crate) static ENGINES: Table<EngineHandle, { ALM_MAX_ENGINES as usize }> = Table::new();

/// Bytes of static memory of the engine table.
#[cfg(test)]
pub(crate) const fn table_bytes() -> usize {
    super::handles::table_bytes::<EngineHandle, { ALM_MAX_ENGINES as usize }>()
}

/// Runs `f` on the live engine `engine`, exclusively.
fn with_engine(
    err: &ErrBuf,
    engine: *const alm_engine,
    f: impl FnOnce(&mut EngineHandle) -> alm_status,
) -> alm_status {
    Id::expect(engine, Kind::Engine)
        .and_then(|id| ENGINES.with_mut(id, f))
        .unwrap_or_else(|e| e.report(err, "engine", Kind::Engine))
}

/// Creates an engine for `model` inside the caller's `arena` (`arena_len`
/// bytes, ideally 64-byte aligned; otherwise up to 63 leading bytes are
/// skipped). Every byte the engine writes is in the arena; nothing grows
/// later. `params` NULL means the defaults.
///
/// Checks run cheapest first, and nothing is started before they pass:
/// the params (`size`, enum values, every count against its `ALM_MAX_*`
/// cap), the model handle, the arena pointer, a free handle slot, then the
/// plan against the arena (`ALM_ERR_BUDGET` says how many bytes were
/// needed, alignment skip included, and how many there were), then the
/// engine is carved, and only then, last, the thread pool starts (when
/// `threads > 1` and `parallel_for` is NULL: the library's only heap use,
/// worker threads and their control block, released by `alm_engine_free`).
///
/// The model and the arena must outlive the engine; the arena must not
/// overlap the model bytes (refused with `ALM_ERR_INVALID_ARGUMENT`).
/// `*out` is NULL on failure.
///
/// # Safety
///
/// `arena` `arena_len` writable bytes, not touched by the caller until
/// `alm_engine_free`; `params` NULL or valid; `out` writable; `err` NULL or
/// `err_len` writable bytes.
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
        // SAFETY: writable per the contract.
        let out = tri!(unsafe { out_ptr(&err, out, "out") });
        *out = std::ptr::null_mut();
        // SAFETY: `params` is NULL or a valid struct per the contract.
        let p = tri!(unsafe { read_params(&err, params, alm_engine_params::defaults(), "params") });
        let mut p = tri!(p.resolve(&err));
        let model_id =
            tri!(Id::expect(model, Kind::Model).map_err(|e| e.report(&err, "model", Kind::Model)));
        if arena.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                format_args!("`arena` is NULL"),
            );
        }
        // SAFETY: the caller gives us `arena_len` writable bytes until
        // `alm_engine_free`; only the length is checked here.
        let arena: &'static mut [u8] =
            tri!(unsafe { super::caller_slice_mut(&err, arena.cast::<u8>(), arena_len, "arena") });
        if p.core.kernel.is_none() {
            p.core.kernel = match kernel_from_env() {
                Ok(k) => k,
                Err(e) => {
                    return err.fail_with(alm_status::ALM_ERR_INVALID_ARGUMENT, format_args!("{e}"))
                }
            };
        }
        let sampler = match Sampler::new(SamplerParams::default()) {
            Ok(s) => s,
            Err(e) => return err.fail(&e),
        };
        let result = MODELS.with_ref(model_id, |m, model_slot| {
            let (a, b) = (arena.as_ptr_range(), m.bytes.as_ptr_range());
            if a.start < b.end && b.start < a.end {
                return err.fail_with(
                    alm_status::ALM_ERR_INVALID_ARGUMENT,
                    format_args!("`arena` overlaps the model bytes"),
                );
            }
            let Some(slot) = ENGINES.reserve() else {
                return err.fail_with(
                    alm_status::ALM_ERR_FULL,
                    format_args!(
                        "all {ALM_MAX_ENGINES} engine handles (ALM_MAX_ENGINES) are in use; free one"
                    ),
                );
            };
            let engine = match Engine::new(m.bytes, arena, &p.core, &detect_cpu()) {
                Ok(e) => e,
                Err(e) => return err.fail(&e),
            };
            let threads = p.core.plan.threads as usize;
            // Last: the only step that starts anything.
            let par = match p.callback {
                Some(callback) => Par::Callback(CallbackParallel { callback, threads }),
                None if threads > 1 => match ThreadPool::new(threads) {
                    Ok(pool) => Par::Pool(pool),
                    Err(e) => {
                        return err.fail_with(
                            alm_status::ALM_ERR_IO,
                            format_args!("cannot start {threads} threads: {}", e.kind()),
                        )
                    }
                },
                None => Par::Serial,
            };
            model_slot.add_dependent();
            let id = slot.fill(EngineHandle {
                engine,
                model_slot: model_id.slot,
                par,
                sampler,
            });
            *out = id.to_ptr();
            alm_status::ALM_OK
        });
        result.unwrap_or_else(|e| e.report(&err, "model", Kind::Model))
    })
}

/// Frees an engine: stops its threads, releases its hold on the model and
/// its handle. The arena is the caller's again afterwards, and every handle
/// to the engine (and to its tokenizer) is refused from then on. NULL is
/// accepted (`ALM_OK`). Returns `ALM_ERR_BAD_HANDLE` for a handle already
/// freed (a double free) or not an engine, `ALM_ERR_BUSY` while another
/// thread is using it.
///
/// # Safety
///
/// None beyond the conventions: the handle is only a number.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_free(engine: *mut alm_engine) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        let id = match Id::expect(engine, Kind::Engine) {
            Ok(id) => id,
            Err(HandleError::Null) => return alm_status::ALM_OK,
            Err(e) => return e.report(&err, "engine", Kind::Engine),
        };
        match ENGINES.remove(id) {
            Ok(handle) => {
                MODELS.remove_dependent(handle.model_slot);
                // Joins the pool's threads, outside the slot's lock.
                drop(handle);
                alm_status::ALM_OK
            }
            Err(e) => e.report(&err, "engine", Kind::Engine),
        }
    })
}

/// Appends `n_tokens` tokens to the sequence and returns logits:
/// `*logits` points to `*rows x vocab` floats inside the arena, valid until
/// the next call that changes the engine. Nothing changes when the call
/// fails: `ALM_ERR_TOKENIZER` for an id outside the vocabulary,
/// `ALM_ERR_FULL` beyond the context (checked before `tokens` is read),
/// `ALM_ERR_INVALID_ARGUMENT` for `n_tokens == 0`, an `outputs` value that
/// is not an `alm_outputs`, or more rows than `max_outputs`.
///
/// # Safety
///
/// `tokens` `n_tokens` readable ids; `logits` and `rows` NULL or writable;
/// `err` NULL or `err_len` writable bytes.
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
        let outputs = match outputs {
            0 => Outputs::Last,
            1 => Outputs::All,
            v => {
                return err.fail_with(
                    alm_status::ALM_ERR_INVALID_ARGUMENT,
                    format_args!("outputs = {v} is not an alm_outputs value (0 or 1)"),
                )
            }
        };
        if tokens.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                format_args!("`tokens` is NULL"),
            );
        }
        if (!logits.is_null() && !logits.is_aligned()) || (!rows.is_null() && !rows.is_aligned()) {
            return err.fail_with(
                alm_status::ALM_ERR_INVALID_ARGUMENT,
                format_args!("`logits` or `rows` is misaligned"),
            );
        }
        with_engine(&err, engine, |h| {
            let room = h.engine.ctx_capacity().saturating_sub(h.engine.n_past());
            if n_tokens > room {
                return err.fail_with(
                    alm_status::ALM_ERR_FULL,
                    format_args!(
                        "{n_tokens} tokens do not fit: the context holds {} and {} are in use",
                        h.engine.ctx_capacity(),
                        h.engine.n_past()
                    ),
                );
            }
            // SAFETY: the caller provides `n_tokens` readable ids.
            let tokens = tri!(unsafe { caller_slice(&err, tokens, n_tokens, "tokens") });
            let vocab = h.engine.vocab();
            match h.engine.eval(h.par.get(), tokens, outputs) {
                Ok(l) => {
                    if !logits.is_null() {
                        // SAFETY: non-null, aligned and writable per the contract.
                        unsafe { *logits = l.as_ptr() };
                    }
                    if !rows.is_null() {
                        // SAFETY: non-null, aligned and writable per the contract.
                        unsafe { *rows = l.len() / vocab.max(1) };
                    }
                    alm_status::ALM_OK
                }
                Err(e) => err.fail(&e),
            }
        })
    })
}

/// Forgets the sequence (the KV cache) and resets the sampler's history.
///
/// # Safety
///
/// None beyond the conventions.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_reset(engine: *mut alm_engine) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        with_engine(&err, engine, |h| {
            h.sampler.reset();
            match h.engine.reset() {
                Ok(()) => alm_status::ALM_OK,
                Err(e) => err.fail(&e),
            }
        })
    })
}

/// Keeps the first `n_tokens` tokens of the sequence (a larger count keeps
/// them all).
///
/// # Safety
///
/// None beyond the conventions.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_truncate(
    engine: *mut alm_engine,
    n_tokens: usize,
) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        with_engine(&err, engine, |h| match h.engine.truncate(n_tokens) {
            Ok(()) => alm_status::ALM_OK,
            Err(e) => err.fail(&e),
        })
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

versioned!(alm_engine_state {
    size: u32,
    kernel: u32,
    n_past: u64,
    ctx_capacity: u64,
    vocab: u64,
    arena_used: u64,
});

/// Describes the engine into `out` (whose `size` the caller sets).
///
/// # Safety
///
/// `out` writable for `out->size` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_get_state(
    engine: *mut alm_engine,
    out: *mut alm_engine_state,
) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        if out.is_null() {
            return alm_status::ALM_ERR_NULL_ARGUMENT;
        }
        with_engine(&err, engine, |h| {
            let state = alm_engine_state {
                size: 0,
                kernel: alm_kernel::of(h.engine.kernel_path()) as u32,
                n_past: h.engine.n_past() as u64,
                ctx_capacity: h.engine.ctx_capacity() as u64,
                vocab: h.engine.vocab() as u64,
                arena_used: h.engine.arena_used() as u64,
            };
            // SAFETY: `out` is non-null with `out->size` writable bytes.
            unsafe { fill_out(&err, out, state, "out") }
        })
    })
}

/// The plan the engine's arena was carved by, into `out`.
///
/// # Safety
///
/// `out` writable for `out->size` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_get_plan(
    engine: *mut alm_engine,
    out: *mut alm_memory_plan,
) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        if out.is_null() {
            return alm_status::ALM_ERR_NULL_ARGUMENT;
        }
        with_engine(&err, engine, |h| {
            let plan = super::plan::plan_to_c(h.engine.plan());
            // SAFETY: `out` is non-null with `out->size` writable bytes.
            unsafe { fill_out(&err, out, plan, "out") }
        })
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

versioned!(alm_sampler_params {
    size: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    repeat_last_n: u32,
    seed: u64,
});

/// Fills `out` with llama.cpp's sampling defaults (temperature 0.8, top-k
/// 40, top-p 0.95, min-p 0.05, no repetition penalty). Statuses as for
/// `alm_engine_default_params`.
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
    unsafe { fill_defaults(out, out_size, alm_sampler_params::defaults()) }
}

/// Sets the engine's sampler (and reseeds it). `params` NULL means the
/// defaults. `ALM_ERR_INVALID_ARGUMENT` for a value out of range (the
/// sampler is then unchanged).
///
/// # Safety
///
/// `params` NULL (defaults) or valid; `err` NULL or `err_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_set_sampler(
    engine: *mut alm_engine,
    params: *const alm_sampler_params,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: `params` is NULL or valid per the contract.
        let p =
            tri!(unsafe { read_params(&err, params, alm_sampler_params::defaults(), "params") });
        let params = SamplerParams {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n,
            seed: p.seed,
        };
        let sampler = match Sampler::new(params) {
            Ok(s) => s,
            Err(e) => return err.fail(&e),
        };
        with_engine(&err, engine, |h| {
            h.sampler = sampler;
            alm_status::ALM_OK
        })
    })
}

/// Samples the next token from the last row of logits into `*token` and
/// records it in the sampler's history. `ALM_ERR_INVALID_ARGUMENT` before
/// any evaluation.
///
/// # Safety
///
/// `token` writable; `err` NULL or `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_sample(
    engine: *mut alm_engine,
    token: *mut u32,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: writable per the contract.
        let token = tri!(unsafe { out_ptr(&err, token, "token") });
        with_engine(&err, engine, |h| match h.engine.sample(&mut h.sampler) {
            Ok(t) => {
                h.sampler.accept(t);
                *token = t;
                alm_status::ALM_OK
            }
            Err(e) => err.fail(&e),
        })
    })
}

/// Records `token` in the sampler's history (for the repetition penalty),
/// e.g. for prompt tokens. `ALM_ERR_TOKENIZER` (and nothing recorded) for
/// an id outside the vocabulary.
///
/// # Safety
///
/// None beyond the conventions.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_accept(engine: *mut alm_engine, token: u32) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        with_engine(&err, engine, |h| {
            let vocab = h.engine.vocab();
            if token as usize >= vocab {
                return err.fail(&Error::Tokenizer(TokenizerError::BadTokenId {
                    id: token,
                    vocab: vocab as u32,
                }));
            }
            h.sampler.accept(token);
            alm_status::ALM_OK
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::versioned::assert_listing_matches;

    #[test]
    fn the_listings_match_the_structs() {
        assert_listing_matches::<alm_engine_state>();
        assert_listing_matches::<alm_sampler_params>();
    }
}
