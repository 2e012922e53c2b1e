//! The C ABI. See `include/arenalm.h` (generated from this module).
//!
//! Conventions, for every function:
//!
//! * The return value is an [`alm_status`]; `ALM_OK` is 0.
//! * Pointers are checked: a NULL where an object is required gives
//!   `ALM_ERR_NULL_ARGUMENT`; a pointer to an array of `T` must be aligned
//!   for `T` and its length must fit the address space. Functions that free
//!   accept NULL.
//! * Handles are numbers checked against the library's handle table
//!   ([`handles`]): a stale, foreign or made-up handle is
//!   `ALM_ERR_BAD_HANDLE` and is never dereferenced.
//! * Parameter and result structs start with `uint32_t size` (see
//!   [`versioned`]): a size that does not end on a field boundary is
//!   refused, so no field is ever half copied.
//! * On failure a NUL-terminated message is written into `err` (at most
//!   `err_len` bytes, truncated on a UTF-8 boundary) when `err` is not NULL.
//!   Messages are formatted straight into that buffer: a failing call
//!   allocates nothing.
//! * A panic never crosses the boundary: it becomes `ALM_ERR_PANIC`.

#![allow(non_camel_case_types)]

mod engine;
pub(crate) mod handles;
mod model;
mod params;
mod plan;
mod tokenizer;
pub(crate) mod versioned;
mod whatif;

pub use engine::*;
pub use handles::{ALM_MAX_ENGINES, ALM_MAX_MODELS, ALM_MAX_TOKENIZERS};
pub use model::*;
pub use params::*;
pub use plan::*;
pub use tokenizer::*;
pub use whatif::*;

use std::ffi::c_char;
use std::fmt::{self, Write as _};
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
    /// An argument is out of range: a count above its `ALM_MAX_*` cap, an
    /// enum value the library does not know, a struct `size` that is not a
    /// field boundary, a misaligned array, a kernel the CPU lacks, a context
    /// beyond the model's training context without
    /// `allow_ctx_beyond_train`.
    ALM_ERR_INVALID_ARGUMENT = 2,
    /// The arena (or another buffer) is too small; the message says needed and available.
    ALM_ERR_BUDGET = 3,
    /// A size computation would overflow.
    ALM_ERR_OVERFLOW = 4,
    /// The model bytes are not a valid GGUF file (or exceed a safety cap).
    ALM_ERR_GGUF = 5,
    /// The model is valid GGUF but not a model the engine can run.
    ALM_ERR_MODEL = 6,
    /// The tokenizer refused its input or its tables, or a token id is
    /// outside the vocabulary.
    ALM_ERR_TOKENIZER = 7,
    /// A fixed capacity is reached: the context (KV cache), or every slot
    /// of a handle table (`ALM_MAX_MODELS`, `ALM_MAX_ENGINES`,
    /// `ALM_MAX_TOKENIZERS`).
    ALM_ERR_FULL = 8,
    /// An output buffer is too small; the needed size is reported where the
    /// function documents it.
    ALM_ERR_BUFFER_TOO_SMALL = 9,
    /// A file could not be opened or mapped, or is not a regular file.
    ALM_ERR_IO = 10,
    /// The object is still in use: a model with engines attached.
    ALM_ERR_IN_USE = 11,
    /// An internal error was caught at the boundary (a bug; please report it).
    /// The handle it happened on refuses further use with this status; free it.
    ALM_ERR_PANIC = 12,
    /// The handle is not a live handle of the expected type: already freed
    /// or closed, of another type (an engine passed as a tokenizer), the
    /// tokenizer of a freed engine, or a value the library never returned.
    ALM_ERR_BAD_HANDLE = 13,
    /// Another call is using this handle right now (on another thread, or
    /// from inside your own `parallel_for`). Engines and tokenizers take one
    /// call at a time; the library refuses rather than blocks.
    ALM_ERR_BUSY = 14,
}

impl alm_status {
    /// Every status, in value order.
    const ALL: [alm_status; 15] = [
        alm_status::ALM_OK,
        alm_status::ALM_ERR_NULL_ARGUMENT,
        alm_status::ALM_ERR_INVALID_ARGUMENT,
        alm_status::ALM_ERR_BUDGET,
        alm_status::ALM_ERR_OVERFLOW,
        alm_status::ALM_ERR_GGUF,
        alm_status::ALM_ERR_MODEL,
        alm_status::ALM_ERR_TOKENIZER,
        alm_status::ALM_ERR_FULL,
        alm_status::ALM_ERR_BUFFER_TOO_SMALL,
        alm_status::ALM_ERR_IO,
        alm_status::ALM_ERR_IN_USE,
        alm_status::ALM_ERR_PANIC,
        alm_status::ALM_ERR_BAD_HANDLE,
        alm_status::ALM_ERR_BUSY,
    ];

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
            alm_status::ALM_ERR_BAD_HANDLE => c"bad handle",
            alm_status::ALM_ERR_BUSY => c"handle busy in another call",
        }
    }
}

/// The status for a core error.
pub(crate) fn status_of(e: &Error) -> alm_status {
    use arenalm_core::error::TokenizerError;
    match e {
        Error::Budget { .. } => alm_status::ALM_ERR_BUDGET,
        Error::Overflow { .. } => alm_status::ALM_ERR_OVERFLOW,
        Error::InvalidArgument { .. }
        | Error::OutOfRange { .. }
        | Error::ContextBeyondTraining { .. }
        | Error::Slab(_) => alm_status::ALM_ERR_INVALID_ARGUMENT,
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

/// Streams formatted text into a caller's buffer, keeping one byte for the
/// NUL and cutting on a UTF-8 boundary when the text does not fit.
struct ErrWriter {
    buf: ErrBuf,
    written: usize,
    full: bool,
}

impl fmt::Write for ErrWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.full {
            return Ok(());
        }
        let room = self.buf.len - 1 - self.written;
        let mut n = s.len().min(room);
        while n > 0 && !s.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: the caller promised `ptr` points to `len` writable bytes;
        // `written + n <= len - 1`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                s.as_ptr(),
                self.buf.ptr.cast::<u8>().add(self.written),
                n,
            )
        };
        self.written += n;
        self.full = n < s.len();
        Ok(())
    }
}

impl ErrBuf {
    pub(crate) fn new(ptr: *mut c_char, len: usize) -> Self {
        ErrBuf { ptr, len }
    }

    /// A buffer that drops every message (functions without `err`).
    pub(crate) fn none() -> Self {
        ErrBuf::new(std::ptr::null_mut(), 0)
    }

    /// Writes the formatted message, truncated on a UTF-8 boundary,
    /// NUL-terminated, without allocating.
    pub(crate) fn write(&self, msg: fmt::Arguments<'_>) {
        if self.ptr.is_null() || self.len == 0 {
            return;
        }
        let mut w = ErrWriter {
            buf: *self,
            written: 0,
            full: false,
        };
        let _ = w.write_fmt(msg);
        // SAFETY: `written <= len - 1`, inside the caller's buffer.
        unsafe { *self.ptr.add(w.written) = 0 };
    }

    /// Writes the message of `e` and returns its status.
    pub(crate) fn fail(&self, e: &Error) -> alm_status {
        self.write(format_args!("{e}"));
        status_of(e)
    }

    /// Writes `msg` and returns `status`.
    pub(crate) fn fail_with(&self, status: alm_status, msg: fmt::Arguments<'_>) -> alm_status {
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
            format_args!("internal error (a panic was caught at the C boundary); please report it"),
        ),
    }
}

/// Turns `Result<T, alm_status>` into `T` or returns the status.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(s) => return s,
        }
    };
}
pub(crate) use tri;

/// A caller's pointer to one writable `T`: refused when NULL or misaligned.
///
/// # Safety
///
/// `ptr` must be NULL or point to a writable `T` not otherwise borrowed
/// during `'b`.
pub(crate) unsafe fn out_ptr<'b, T>(
    err: &ErrBuf,
    ptr: *mut T,
    name: &str,
) -> Result<&'b mut T, alm_status> {
    if ptr.is_null() {
        return Err(err.fail_with(
            alm_status::ALM_ERR_NULL_ARGUMENT,
            format_args!("`{name}` is NULL"),
        ));
    }
    if !ptr.is_aligned() {
        return Err(err.fail_with(
            alm_status::ALM_ERR_INVALID_ARGUMENT,
            format_args!(
                "`{name}` is not aligned to {} bytes",
                std::mem::align_of::<T>()
            ),
        ));
    }
    // SAFETY: non-null, aligned, and writable per the contract.
    Ok(unsafe { &mut *ptr })
}

/// Checks what `slice::from_raw_parts` requires of `(ptr, len)` apart from
/// the memory itself: non-NULL unless empty, aligned, at most `isize::MAX`
/// bytes.
fn check_array<T>(err: &ErrBuf, ptr: *const T, len: usize, name: &str) -> Result<(), alm_status> {
    if len == 0 {
        return Ok(());
    }
    if ptr.is_null() {
        return Err(err.fail_with(
            alm_status::ALM_ERR_NULL_ARGUMENT,
            format_args!("`{name}` is NULL but its length is {len}"),
        ));
    }
    if !ptr.is_aligned() {
        return Err(err.fail_with(
            alm_status::ALM_ERR_INVALID_ARGUMENT,
            format_args!(
                "`{name}` is not aligned to {} bytes",
                std::mem::align_of::<T>()
            ),
        ));
    }
    let fits = len
        .checked_mul(std::mem::size_of::<T>().max(1))
        .is_some_and(|b| b <= isize::MAX as usize);
    if !fits {
        return Err(err.fail_with(
            alm_status::ALM_ERR_INVALID_ARGUMENT,
            format_args!("`{name}`: a length of {len} exceeds the address space"),
        ));
    }
    Ok(())
}

/// A caller's input array `(ptr, len)`: empty for `len == 0`.
///
/// # Safety
///
/// `ptr` must point to `len` readable, initialized `T` that outlive `'b`
/// (or `len` must be 0).
pub(crate) unsafe fn caller_slice<'b, T>(
    err: &ErrBuf,
    ptr: *const T,
    len: usize,
    name: &str,
) -> Result<&'b [T], alm_status> {
    check_array(err, ptr, len, name)?;
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: checked non-null, aligned and in size above; readable per the contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A caller's output array `(ptr, cap)`, like [`caller_slice`].
///
/// # Safety
///
/// `ptr` must point to `cap` writable `T` not otherwise borrowed during
/// `'b` (or `cap` must be 0).
pub(crate) unsafe fn caller_slice_mut<'b, T>(
    err: &ErrBuf,
    ptr: *mut T,
    cap: usize,
    name: &str,
) -> Result<&'b mut [T], alm_status> {
    check_array(err, ptr, cap, name)?;
    if cap == 0 {
        return Ok(&mut []);
    }
    // SAFETY: checked non-null, aligned and in size above; writable per the contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, cap) })
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
                format_args!("{needed} needed"),
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

/// A static, human-readable name for a status (never NULL). Takes any
/// integer: a value that is not an `alm_status` gives "unknown status".
#[no_mangle]
pub extern "C" fn alm_status_str(status: i32) -> *const c_char {
    match alm_status::ALL.iter().find(|s| **s as i32 == status) {
        Some(s) => s.name().as_ptr(),
        None => c"unknown status".as_ptr(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(buf: &[c_char]) -> Vec<u8> {
        buf.iter()
            .map(|&c| c.to_ne_bytes()[0])
            .take_while(|&b| b != 0)
            .collect()
    }

    #[test]
    fn messages_truncate_and_terminate() {
        let mut buf = [0x7f as c_char; 6];
        ErrBuf::new(buf.as_mut_ptr(), buf.len()).write(format_args!("h{}llo {}", "é", "world"));
        // 5 bytes fit: "h", "é" (2 bytes), "l", "l", then NUL.
        // c_char is i8 on x86_64 but u8 on aarch64, where `c as u8` is a needless cast.
        let bytes: Vec<u8> = buf.iter().map(|c| c.to_ne_bytes()[0]).collect();
        assert_eq!(&bytes, b"h\xc3\xa9ll\0");
        ErrBuf::new(std::ptr::null_mut(), 10).write(format_args!("ignored"));
        // A one-byte buffer holds only the NUL.
        let mut one = [0x7f as c_char; 1];
        ErrBuf::new(one.as_mut_ptr(), 1).write(format_args!("x"));
        assert_eq!(one[0], 0);
        // Pieces that arrive one by one stop at the first that does not fit.
        // (7 bytes: 6 of text; "défg" is cut after "dé", "h" is dropped.)
        let mut buf = [0x7f as c_char; 7];
        ErrBuf::new(buf.as_mut_ptr(), 7).write(format_args!("{}{}{}", "abc", "défg", "h"));
        assert_eq!(text(&buf), "abcdé".as_bytes());
    }

    #[test]
    fn a_panic_becomes_a_status() {
        let mut buf = [0 as c_char; 64];
        let s = guard(ErrBuf::new(buf.as_mut_ptr(), 64), || panic!("boom"));
        assert_eq!(s, alm_status::ALM_ERR_PANIC);
        assert_ne!(buf[0], 0);
    }

    #[test]
    fn every_status_has_a_name_and_others_are_unknown() {
        for (i, s) in alm_status::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
        }
        for i in [-1, i32::MIN, 15, 99, i32::MAX] {
            // SAFETY: the function returns a static NUL-terminated string.
            let s = unsafe { std::ffi::CStr::from_ptr(alm_status_str(i)) };
            assert_eq!(s.to_bytes(), b"unknown status");
        }
        for i in 0..15 {
            // SAFETY: as above.
            let s = unsafe { std::ffi::CStr::from_ptr(alm_status_str(i)) };
            assert_ne!(s.to_bytes(), b"unknown status");
        }
        // SAFETY: as above.
        let v = unsafe { std::ffi::CStr::from_ptr(alm_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn arrays_are_checked_before_slices_are_made() {
        let err = ErrBuf::none();
        let x = [1u32, 2, 3];
        // SAFETY: valid array, or calls refused before any slice exists.
        unsafe {
            assert_eq!(caller_slice(&err, x.as_ptr(), 3, "x").unwrap(), &x);
            assert_eq!(
                caller_slice::<u32>(&err, std::ptr::null(), 0, "x").unwrap(),
                &[] as &[u32]
            );
            assert_eq!(
                caller_slice::<u32>(&err, std::ptr::null(), 1, "x").unwrap_err(),
                alm_status::ALM_ERR_NULL_ARGUMENT
            );
            let odd = x.as_ptr().cast::<u8>().add(1).cast::<u32>();
            assert_eq!(
                caller_slice(&err, odd, 1, "x").unwrap_err(),
                alm_status::ALM_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                caller_slice(&err, x.as_ptr(), usize::MAX / 2, "x").unwrap_err(),
                alm_status::ALM_ERR_INVALID_ARGUMENT
            );
        }
    }
}
