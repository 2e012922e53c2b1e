//! The C ABI. See `include/arenalm.h` (generated from this module).
//!
//! Conventions, for every function:
//!
//! * The return value is an [`alm_status`]; `ALM_OK` is 0.
//! * Pointers are checked: a NULL where an object is required gives
//!   `ALM_ERR_NULL_ARGUMENT`. Functions that free accept NULL.
//! * On failure a NUL-terminated message is written into `err` (at most
//!   `err_len` bytes, truncated on a UTF-8 boundary) when `err` is not NULL.
//! * A panic never crosses the boundary: it becomes `ALM_ERR_PANIC`.
//! * Parameter structs start with `uint32_t size`, which the caller sets to
//!   `sizeof` its struct (the `*_default_params` functions do it); fields
//!   beyond an older caller's size take their defaults.

#![allow(non_camel_case_types)]

mod model;
mod plan;
mod engine;
mod tokenizer;

pub use engine::*;
pub use model::*;
pub use plan::*;
pub use tokenizer::*;

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use arenalm_core::Error;

/// Result of every `alm_*` function.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum alm_status {
    /// Success.
    ALM_OK = 0,
    /// A required pointer argument was NULL.
    ALM_ERR_NULL_ARGUMENT = 1,
    /// An argument is out of range (a size, an enum value, a kernel the CPU lacks).
    ALM_ERR_INVALID_ARGUMENT = 2,
    /// The arena (or another buffer) is too small; the message says needed and available.
    ALM_ERR_BUDGET = 3,
    /// A size computation would overflow.
    ALM_ERR_OVERFLOW = 4,
    /// The model bytes are not a valid GGUF file (or exceed a safety cap).
    ALM_ERR_GGUF = 5,
    /// The model is valid GGUF but not a model the engine can run.
    ALM_ERR_MODEL = 6,
    /// The tokenizer refused its input or its tables.
    ALM_ERR_TOKENIZER = 7,
    /// A fixed capacity is reached (the context / KV cache).
    ALM_ERR_FULL = 8,
    /// An output buffer is too small; the needed size is reported where the
    /// function documents it.
    ALM_ERR_BUFFER_TOO_SMALL = 9,
    /// A file could not be opened or mapped.
    ALM_ERR_IO = 10,
    /// The object is still in use (a model with engines attached).
    ALM_ERR_IN_USE = 11,
    /// An internal error was caught at the boundary (a bug; please report it).
    ALM_ERR_PANIC = 12,
}

impl alm_status {
    fn name(self) -> &'static std::ffi::CStr {
        match self {
            alm_status::ALM_OK => c"ok",
            alm_status::ALM_ERR_NULL_ARGUMENT => c"null argument",
            alm_status::ALM_ERR_INVALID_ARGUMENT => c"invalid argument",
            alm_status::ALM_ERR_BUDGET => c"not enough memory in the arena",
            alm_status::ALM_ERR_OVERFLOW => c"size overflow",
            alm_status::ALM_ERR_GGUF => c"malformed GGUF file",
            alm_status::ALM_ERR_MODEL => c"unsupported or inconsistent model",
            alm_status::ALM_ERR_TOKENIZER => c"tokenizer error",
            alm_status::ALM_ERR_FULL => c"capacity reached",
            alm_status::ALM_ERR_BUFFER_TOO_SMALL => c"output buffer too small",
            alm_status::ALM_ERR_IO => c"I/O error",
            alm_status::ALM_ERR_IN_USE => c"object still in use",
            alm_status::ALM_ERR_PANIC => c"internal error",
        }
    }
}

/// The status for a core error.
pub(crate) fn status_of(e: &Error) -> alm_status {
    use arenalm_core::error::TokenizerError;
    match e {
        Error::Budget { .. } => alm_status::ALM_ERR_BUDGET,
        Error::Overflow { .. } => alm_status::ALM_ERR_OVERFLOW,
        Error::InvalidArgument { .. } | Error::Slab(_) => alm_status::ALM_ERR_INVALID_ARGUMENT,
        Error::Gguf(_) => alm_status::ALM_ERR_GGUF,
        Error::Model(_) => alm_status::ALM_ERR_MODEL,
        Error::Tokenizer(TokenizerError::BufferTooSmall { .. }) => {
            alm_status::ALM_ERR_BUFFER_TOO_SMALL
        }
        Error::Tokenizer(_) => alm_status::ALM_ERR_TOKENIZER,
        Error::Full { .. } => alm_status::ALM_ERR_FULL,
        _ => alm_status::ALM_ERR_INVALID_ARGUMENT,
    }
}

/// Where a failing call writes its message.
#[derive(Clone, Copy)]
pub(crate) struct ErrBuf {
    ptr: *mut c_char,
    len: usize,
}

impl ErrBuf {
    pub(crate) fn new(ptr: *mut c_char, len: usize) -> Self {
        ErrBuf { ptr, len }
    }

    /// Writes `msg`, truncated on a UTF-8 boundary, NUL-terminated.
    pub(crate) fn write(&self, msg: &str) {
        if self.ptr.is_null() || self.len == 0 {
            return;
        }
        let mut n = msg.len().min(self.len - 1);
        while n > 0 && !msg.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: the caller promised `ptr` points to `len` writable bytes;
        // we write `n + 1 <= len` of them.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), self.ptr.cast::<u8>(), n);
            *self.ptr.add(n) = 0;
        }
    }

    /// Writes the message of `e` and returns its status.
    pub(crate) fn fail(&self, e: &Error) -> alm_status {
        self.write(&e.to_string());
        status_of(e)
    }

    /// Writes `msg` and returns `status`.
    pub(crate) fn fail_with(&self, status: alm_status, msg: &str) -> alm_status {
        self.write(msg);
        status
    }
}

/// Runs `body` behind a panic guard; a panic becomes `ALM_ERR_PANIC`.
pub(crate) fn guard(err: ErrBuf, body: impl FnOnce() -> alm_status) -> alm_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(s) => s,
        Err(_) => err.fail_with(
            alm_status::ALM_ERR_PANIC,
            "internal error (a panic was caught at the C boundary); please report it",
        ),
    }
}

/// Returns `$ptr` as `&mut` or fails with `ALM_ERR_NULL_ARGUMENT` naming it.
macro_rules! out_ref {
    ($err:expr, $ptr:expr, $name:literal) => {
        match $ptr.is_null() {
            true => {
                return $err.fail_with(
                    $crate::capi::alm_status::ALM_ERR_NULL_ARGUMENT,
                    concat!("`", $name, "` is NULL"),
                )
            }
            // SAFETY: non-null, and the header requires a valid, writable,
            // properly aligned pointer to this type.
            false => unsafe { &mut *$ptr },
        }
    };
}
pub(crate) use out_ref;

/// Reads a versioned parameter struct: copies `min(size, sizeof(T))` bytes
/// from `p` over `defaults`. Refuses sizes below the `size` field itself or
/// above the struct this library knows.
///
/// # Safety
///
/// `p` must be NULL or point to at least `(*p).size` readable bytes, the
/// first four of which hold that size.
pub(crate) unsafe fn read_params<T: Copy>(
    err: &ErrBuf,
    p: *const T,
    defaults: T,
) -> Result<T, alm_status> {
    if p.is_null() {
        return Ok(defaults);
    }
    // SAFETY: every params struct begins with a `uint32_t size` (checked by
    // the tests of each struct), which the caller set.
    let size = unsafe { std::ptr::read_unaligned(p.cast::<u32>()) } as usize;
    if size < 4 || size > std::mem::size_of::<T>() {
        return Err(err.fail_with(
            alm_status::ALM_ERR_INVALID_ARGUMENT,
            "parameter struct `size` is not sizeof(struct) of this or an older header",
        ));
    }
    let mut out = defaults;
    // SAFETY: the caller's struct has `size` readable bytes and ours has at
    // least as many; both are plain C data.
    unsafe {
        std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut out as *mut T).cast::<u8>(), size)
    };
    Ok(out)
}

/// Writes `value` into a caller's versioned struct at `out`, at most
/// `out_size` bytes, and sets its `size` field to the bytes written.
///
/// # Safety
///
/// `out` must point to `out_size` writable bytes.
pub(crate) unsafe fn write_sized<T: Copy>(value: T, out: *mut T, out_size: usize) -> usize {
    let n = out_size.min(std::mem::size_of::<T>());
    // SAFETY: `out` has `out_size >= n` writable bytes; `value` has `n` readable.
    unsafe {
        std::ptr::copy_nonoverlapping((&value as *const T).cast::<u8>(), out.cast::<u8>(), n);
        if n >= 4 {
            std::ptr::write_unaligned(out.cast::<u32>(), n as u32);
        }
    }
    n
}

/// The body of every `alm_*_default_params`: writes `value` into the
/// caller's struct of `out_size` bytes and sets its `size`.
///
/// # Safety
///
/// `out` must be NULL or point to `out_size` writable bytes.
pub(crate) unsafe fn fill_defaults<T: Copy>(out: *mut T, out_size: usize, value: T) -> alm_status {
    guard(ErrBuf::new(std::ptr::null_mut(), 0), || {
        if out.is_null() {
            return alm_status::ALM_ERR_NULL_ARGUMENT;
        }
        if out_size < 4 {
            return alm_status::ALM_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: `out` has `out_size` writable bytes per the contract.
        unsafe { write_sized(value, out, out_size) };
        alm_status::ALM_OK
    })
}

/// Fills a caller's versioned out-struct, whose leading `size` field the
/// caller set to `sizeof` its struct.
///
/// # Safety
///
/// `out` must be NULL or point to `(*out).size` writable bytes.
pub(crate) unsafe fn fill_out<T: Copy>(err: &ErrBuf, out: *mut T, value: T) -> alm_status {
    if out.is_null() {
        return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "output struct is NULL");
    }
    // SAFETY: non-null; every out-struct starts with the caller's `uint32_t size`.
    let size = unsafe { std::ptr::read_unaligned(out.cast::<u32>()) } as usize;
    if size < 4 {
        return err.fail_with(
            alm_status::ALM_ERR_INVALID_ARGUMENT,
            "output struct `size` not set",
        );
    }
    // SAFETY: the caller's struct has `size` writable bytes.
    unsafe { write_sized(value, out, size) };
    alm_status::ALM_OK
}

/// A caller's input bytes `(ptr, len)`: empty for `len == 0`, an error for
/// a NULL `ptr` with `len > 0`.
///
/// # Safety
///
/// `ptr` must point to `len` readable bytes that outlive `'b` (or be NULL).
pub(crate) unsafe fn caller_bytes<'b>(
    err: &ErrBuf,
    ptr: *const u8,
    len: usize,
    name: &str,
) -> Result<&'b [u8], alm_status> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(err.fail_with(
            alm_status::ALM_ERR_NULL_ARGUMENT,
            &format!("`{name}` is NULL"),
        ));
    }
    // SAFETY: `len` readable bytes per the contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A caller's output buffer `(ptr, cap)`, like [`caller_bytes`].
///
/// # Safety
///
/// `ptr` must point to `cap` writable bytes not otherwise borrowed during
/// `'b` (or be NULL).
pub(crate) unsafe fn caller_bytes_mut<'b>(
    err: &ErrBuf,
    ptr: *mut c_char,
    cap: usize,
    name: &str,
) -> Result<&'b mut [u8], alm_status> {
    if cap == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(err.fail_with(
            alm_status::ALM_ERR_NULL_ARGUMENT,
            &format!("`{name}` is NULL"),
        ));
    }
    // SAFETY: `cap` writable bytes per the contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), cap) })
}

/// Reports a length-returning result: the length into `*n_out`, or with
/// `ALM_ERR_BUFFER_TOO_SMALL` the length needed.
pub(crate) fn sized_result(
    err: &ErrBuf,
    r: arenalm_core::Result<usize>,
    n_out: &mut usize,
) -> alm_status {
    use arenalm_core::error::TokenizerError;
    match r {
        Ok(n) => {
            *n_out = n;
            alm_status::ALM_OK
        }
        Err(Error::Tokenizer(TokenizerError::BufferTooSmall { needed })) => {
            *n_out = needed;
            err.fail_with(
                alm_status::ALM_ERR_BUFFER_TOO_SMALL,
                &format!("{needed} needed"),
            )
        }
        Err(e) => err.fail(&e),
    }
}

static VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(v) => v,
    Err(_) => c"unknown",
};

/// The library version, `"MAJOR.MINOR.PATCH"` (static string).
#[no_mangle]
pub extern "C" fn alm_version() -> *const c_char {
    VERSION.as_ptr()
}

/// A static, human-readable name for `status` (never NULL).
#[no_mangle]
pub extern "C" fn alm_status_str(status: alm_status) -> *const c_char {
    status.name().as_ptr()
}

/// Like [`alm_status_str`] for a raw integer (values outside the enum give
/// "unknown status").
#[no_mangle]
pub extern "C" fn alm_status_str_int(status: i32) -> *const c_char {
    use alm_status::*;
    let all = [
        ALM_OK,
        ALM_ERR_NULL_ARGUMENT,
        ALM_ERR_INVALID_ARGUMENT,
        ALM_ERR_BUDGET,
        ALM_ERR_OVERFLOW,
        ALM_ERR_GGUF,
        ALM_ERR_MODEL,
        ALM_ERR_TOKENIZER,
        ALM_ERR_FULL,
        ALM_ERR_BUFFER_TOO_SMALL,
        ALM_ERR_IO,
        ALM_ERR_IN_USE,
        ALM_ERR_PANIC,
    ];
    match all.iter().find(|s| **s as i32 == status) {
        Some(s) => s.name().as_ptr(),
        None => c"unknown status".as_ptr(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_truncate_and_terminate() {
        let mut buf = [0x7f as c_char; 6];
        ErrBuf::new(buf.as_mut_ptr(), buf.len()).write("héllo world");
        // 5 bytes fit: "h", "é" (2 bytes), "l", "l", then NUL.
        // c_char is i8 on x86_64 but u8 on aarch64, where `c as u8` is a needless cast.
        let bytes: Vec<u8> = buf.iter().map(|c| c.to_ne_bytes()[0]).collect();
        assert_eq!(&bytes, b"h\xc3\xa9ll\0");
        ErrBuf::new(std::ptr::null_mut(), 10).write("ignored");
    }

    #[test]
    fn a_panic_becomes_a_status() {
        let mut buf = [0 as c_char; 64];
        let s = guard(ErrBuf::new(buf.as_mut_ptr(), 64), || panic!("boom"));
        assert_eq!(s, alm_status::ALM_ERR_PANIC);
        assert_ne!(buf[0], 0);
    }

    #[test]
    fn every_status_has_a_name() {
        for i in -1..14 {
            // SAFETY: the function returns a static NUL-terminated string.
            let s = unsafe { std::ffi::CStr::from_ptr(alm_status_str_int(i)) };
            assert!(!s.to_bytes().is_empty());
        }
        // SAFETY: as above.
        let v = unsafe { std::ffi::CStr::from_ptr(alm_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
