//! `alm_engine_params`: the one parameter struct that decides an engine's
//! arena, used both to plan (`alm_plan*`) and to create (`alm_engine_create`),
//! like Rust's `EngineParams` (which embeds `PlanParams`). Its enums and the
//! caps on its counts live here too.

use std::ffi::{c_char, c_void, CStr};

use arenalm_core::engine::EngineParams;
use arenalm_core::kernels::KernelPath;
use arenalm_core::kv::KvType;
use arenalm_core::mem::plan::{self, PlanParams};

use super::versioned::{fill_defaults, versioned};
use super::{alm_status, ErrBuf};

/// Largest `alm_engine_params.threads` (also the most tasks handed to a
/// `parallel_for` at once).
pub const ALM_MAX_THREADS: u32 = 256;
/// Largest `alm_engine_params.ctx_tokens`, even with `allow_ctx_beyond_train`.
pub const ALM_MAX_CTX_TOKENS: u32 = 16777216;
/// Largest `alm_engine_params.max_batch`.
pub const ALM_MAX_BATCH: u32 = 65536;
/// Largest `alm_engine_params.max_outputs`.
pub const ALM_MAX_OUTPUTS: u32 = 65536;
/// Largest `alm_engine_params.page_tokens`.
pub const ALM_MAX_PAGE_TOKENS: u32 = 65536;

// The header's caps are core's caps (cbindgen needs literals, so they are
// written twice and checked here).
const _: () = assert!(ALM_MAX_THREADS == plan::MAX_THREADS);
const _: () = assert!(ALM_MAX_CTX_TOKENS == plan::MAX_CTX_TOKENS);
const _: () = assert!(ALM_MAX_BATCH == plan::MAX_BATCH);
const _: () = assert!(ALM_MAX_OUTPUTS == plan::MAX_OUTPUTS);
const _: () = assert!(ALM_MAX_PAGE_TOKENS == plan::MAX_PAGE_TOKENS);

/// KV cache element types (values of `alm_engine_params.kv_type`).
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

/// Every `alm_kv_type` value with its core type: the one table both
/// directions read.
const KV_TYPES: [(alm_kv_type, KvType); 3] = [
    (alm_kv_type::ALM_KV_F16, KvType::F16),
    (alm_kv_type::ALM_KV_Q8_0, KvType::Q8_0),
    (alm_kv_type::ALM_KV_F32, KvType::F32),
];

impl alm_kv_type {
    /// The C value of a core type.
    pub(crate) fn of(t: KvType) -> u32 {
        KV_TYPES
            .iter()
            .find(|(_, k)| *k == t)
            .map_or(alm_kv_type::ALM_KV_F16, |(c, _)| *c) as u32
    }

    /// The core type of a C value; a value outside the enum is
    /// `ALM_ERR_INVALID_ARGUMENT` with a message.
    pub(crate) fn resolve(value: u32, err: &ErrBuf) -> Result<KvType, alm_status> {
        KV_TYPES
            .iter()
            .find(|(c, _)| *c as u32 == value)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                err.fail_with(
                    alm_status::ALM_ERR_INVALID_ARGUMENT,
                    format_args!("kv_type = {value} is not an alm_kv_type value (0 to 2)"),
                )
            })
    }
}

/// Kernel paths (values of `alm_engine_params.kernel`; names from
/// `alm_kernel_str`).
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

/// Every `alm_kernel` value but AUTO, with its core path and its name (the
/// path's name, NUL-terminated): the one table every mapping reads.
const KERNELS: [(alm_kernel, KernelPath, &CStr); 7] = [
    (alm_kernel::ALM_KERNEL_SCALAR, KernelPath::Scalar, c"scalar"),
    (alm_kernel::ALM_KERNEL_AVX2, KernelPath::Avx2, c"avx2"),
    (alm_kernel::ALM_KERNEL_NEON, KernelPath::Neon, c"neon"),
    (
        alm_kernel::ALM_KERNEL_NEON_DOTPROD,
        KernelPath::NeonDotprod,
        c"neon-dotprod",
    ),
    (
        alm_kernel::ALM_KERNEL_AVX_VNNI,
        KernelPath::AvxVnni,
        c"avx-vnni",
    ),
    (
        alm_kernel::ALM_KERNEL_AVX512_VNNI,
        KernelPath::Avx512Vnni,
        c"avx512-vnni",
    ),
    (
        alm_kernel::ALM_KERNEL_NEON_I8MM,
        KernelPath::NeonI8mm,
        c"neon-i8mm",
    ),
];

impl alm_kernel {
    /// The C value of a core path.
    pub(crate) fn of(path: KernelPath) -> alm_kernel {
        KERNELS
            .iter()
            .find(|(_, p, _)| *p == path)
            .map_or(alm_kernel::ALM_KERNEL_SCALAR, |(k, _, _)| *k)
    }

    /// The core path of a C value: `Ok(None)` for AUTO, `Err` for a value
    /// that is not an `alm_kernel`.
    fn path(value: u32) -> Result<Option<KernelPath>, ()> {
        if value == alm_kernel::ALM_KERNEL_AUTO as u32 {
            return Ok(None);
        }
        KERNELS
            .iter()
            .find(|(k, _, _)| *k as u32 == value)
            .map(|(_, p, _)| Some(*p))
            .ok_or(())
    }
}

/// A task the engine hands to a parallel-for: call it once per index.
pub type alm_task_fn = unsafe extern "C" fn(task_ctx: *mut c_void, task_index: usize);

/// A caller-provided parallel-for: call `task(task_ctx, i)` exactly once for
/// every `i` in `0..n_tasks` (`n_tasks <= threads`), on any threads, and
/// return only when all calls returned. Do not call into the library on the
/// same engine from inside it (that call gets `ALM_ERR_BUSY`).
pub type alm_parallel_for_fn = unsafe extern "C" fn(
    user_data: *mut c_void,
    n_tasks: usize,
    task: alm_task_fn,
    task_ctx: *mut c_void,
);

/// Everything that decides an engine: the arena it needs (the same struct
/// plans it, with `alm_plan*`, and creates it, with `alm_engine_create`, so
/// a plan always fits the engine it describes), the kernel and the threads.
/// Fill it with `alm_engine_default_params(&p, sizeof p)` first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct alm_engine_params {
    /// `sizeof(alm_engine_params)`.
    pub size: u32,
    /// Context in tokens; 0 = as large as the arena allows (up to the
    /// training context). At most the model's training context unless
    /// `allow_ctx_beyond_train`, and at most `ALM_MAX_CTX_TOKENS`.
    pub ctx_tokens: u32,
    /// Non-zero: accept a context longer than the model's training context
    /// (its output degrades there); 0 (default): refuse it with
    /// `ALM_ERR_INVALID_ARGUMENT` and a message naming both numbers.
    pub allow_ctx_beyond_train: u32,
    /// One of `alm_kv_type`.
    pub kv_type: u32,
    /// Tokens per KV page (default 16; 1 to `ALM_MAX_PAGE_TOKENS`).
    pub page_tokens: u32,
    /// Most tokens per micro-batch (default 64; 1 to `ALM_MAX_BATCH`).
    pub max_batch: u32,
    /// Most rows of logits per evaluation (default 1; 1 to `ALM_MAX_OUTPUTS`).
    pub max_outputs: u32,
    /// Threads (default 1; 1 to `ALM_MAX_THREADS`): the built-in pool's
    /// size, or the task count handed to `parallel_for`. The arena depends
    /// on it (per-thread attention scratch).
    pub threads: u32,
    /// One of `alm_kernel` (the plan does not depend on it).
    pub kernel: u32,
    /// Your own parallel-for (see `alm_parallel_for_fn`), or NULL for the
    /// built-in thread pool (which the library starts when `threads > 1`).
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

versioned!(alm_engine_params {
    size: u32,
    ctx_tokens: u32,
    allow_ctx_beyond_train: u32,
    kv_type: u32,
    page_tokens: u32,
    max_batch: u32,
    max_outputs: u32,
    threads: u32,
    kernel: u32,
    parallel_for: Option<alm_parallel_for_fn>,
    parallel_user_data: *mut c_void,
});

/// A caller's parallel-for.
#[derive(Clone, Copy)]
pub(crate) struct Callback {
    pub(crate) f: alm_parallel_for_fn,
    pub(crate) user: *mut c_void,
}

/// `alm_engine_params` checked and converted.
pub(crate) struct Resolved {
    /// The core parameters (the kernel as given: AUTO is `None`).
    pub(crate) core: EngineParams,
    /// The caller's parallel-for, if any.
    pub(crate) callback: Option<Callback>,
}

impl alm_engine_params {
    pub(crate) fn defaults() -> Self {
        let d = PlanParams::default();
        alm_engine_params {
            size: std::mem::size_of::<alm_engine_params>() as u32,
            ctx_tokens: d.ctx_tokens,
            allow_ctx_beyond_train: u32::from(d.allow_ctx_beyond_train),
            kv_type: alm_kv_type::of(d.kv_type),
            page_tokens: d.page_tokens,
            max_batch: d.max_batch,
            max_outputs: d.max_outputs,
            threads: d.threads,
            kernel: alm_kernel::ALM_KERNEL_AUTO as u32,
            parallel_for: None,
            parallel_user_data: std::ptr::null_mut(),
        }
    }

    /// Checks every enum value and every count against its cap (cheap: no
    /// model needed) and converts.
    pub(crate) fn resolve(&self, err: &ErrBuf) -> Result<Resolved, alm_status> {
        let kv_type = alm_kv_type::resolve(self.kv_type, err)?;
        let Ok(kernel) = alm_kernel::path(self.kernel) else {
            return Err(err.fail_with(
                alm_status::ALM_ERR_INVALID_ARGUMENT,
                format_args!(
                    "kernel = {} is not an alm_kernel value (0 to 4)",
                    self.kernel
                ),
            ));
        };
        let plan = PlanParams {
            ctx_tokens: self.ctx_tokens,
            allow_ctx_beyond_train: self.allow_ctx_beyond_train != 0,
            kv_type,
            page_tokens: self.page_tokens,
            max_batch: self.max_batch,
            max_outputs: self.max_outputs,
            threads: self.threads,
            ..PlanParams::default()
        };
        if let Err(e) = plan.validate() {
            return Err(err.fail(&e));
        }
        Ok(Resolved {
            core: EngineParams { plan, kernel },
            callback: self.parallel_for.map(|f| Callback {
                f,
                user: self.parallel_user_data,
            }),
        })
    }
}

/// Fills `out` (`out_size` bytes, normally `sizeof(alm_engine_params)`)
/// with the defaults: context 0 (fill the arena, up to the training
/// context), F16 KV, 16-token pages, micro-batches of 64, 1 output row,
/// 1 thread, automatic kernel choice, the built-in thread pool.
///
/// Returns `ALM_ERR_NULL_ARGUMENT` for a NULL `out`, and
/// `ALM_ERR_INVALID_ARGUMENT` for an `out_size` that is neither at least
/// `sizeof(alm_engine_params)` nor the end of one of its fields.
///
/// # Safety
///
/// `out` must be NULL or point to `out_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_default_params(
    out: *mut alm_engine_params,
    out_size: usize,
) -> alm_status {
    // SAFETY: forwarded contract.
    unsafe { fill_defaults(out, out_size, alm_engine_params::defaults()) }
}

/// A static name for an `alm_kernel` value: "auto", "scalar", "avx2",
/// "avx-vnni", "avx512-vnni", "neon", "neon-dotprod", "neon-i8mm", or
/// "unknown kernel" for any other value (never NULL).
#[no_mangle]
pub extern "C" fn alm_kernel_str(kernel: u32) -> *const c_char {
    if kernel == alm_kernel::ALM_KERNEL_AUTO as u32 {
        return c"auto".as_ptr();
    }
    KERNELS
        .iter()
        .find(|(k, _, _)| *k as u32 == kernel)
        .map_or(c"unknown kernel".as_ptr(), |(_, _, name)| name.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::versioned::{assert_listing_matches, size_accepted};

    #[test]
    fn kernel_names_are_cores_and_unknown_values_have_one() {
        for path in KernelPath::ALL {
            let v = alm_kernel::of(path) as u32;
            // SAFETY: static NUL-terminated strings.
            let name = unsafe { std::ffi::CStr::from_ptr(alm_kernel_str(v)) };
            assert_eq!(name.to_str().unwrap(), path.name());
        }
        for v in [8u32, 99, u32::MAX] {
            // SAFETY: as above.
            let name = unsafe { std::ffi::CStr::from_ptr(alm_kernel_str(v)) };
            assert_eq!(name.to_bytes(), b"unknown kernel");
        }
    }

    #[test]
    fn params_sizes_end_on_field_boundaries_only() {
        assert_listing_matches::<alm_engine_params>();
        let ptr = std::mem::size_of::<usize>();
        // Nine u32, then two pointers (aligned to the pointer size).
        let nine: usize = 36;
        let fp = nine.next_multiple_of(ptr);
        let full = std::mem::size_of::<alm_engine_params>();
        assert_eq!(full, fp + 2 * ptr);
        for size in 0..=full + 8 {
            let expect =
                (size >= 4 && size <= nine && size % 4 == 0) || size == fp + ptr || size >= full;
            assert_eq!(size_accepted::<alm_engine_params>(size), expect, "{size}");
        }
        // Half a function pointer is never accepted.
        assert!(!size_accepted::<alm_engine_params>(fp + ptr / 2));
    }
}
