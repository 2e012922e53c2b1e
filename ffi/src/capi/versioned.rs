//! Versioned structs: every parameter and result struct of the C API starts
//! with `uint32_t size`, the caller's `sizeof` of it, so the struct can grow
//! while older callers keep working.
//!
//! The rule this module enforces for every such struct: `size` is accepted
//! only if it is at least the whole struct this library knows (fields past
//! it are a newer header's and are ignored), or if it ends exactly where a
//! C struct made of the leading fields would end: at the end of a field,
//! and a multiple of those fields' alignment (so no padding in between).
//! Any other value, for example one that ends inside a function pointer, is
//! refused with `ALM_ERR_INVALID_ARGUMENT`, so the library never uses half a
//! field. Bytes are copied one by one, so the caller's struct needs no
//! particular alignment.
//!
//! Each struct lists its fields once with [`versioned!`]; the listing is
//! checked against the definition at compile time (an exhaustive
//! destructuring pattern with every field's type) and in a test (offsets in
//! order, no gap but padding).

use std::mem::size_of;

use super::{alm_status, ErrBuf};

/// A `#[repr(C)]` struct whose first field is `uint32_t size`.
pub(crate) trait Versioned: Copy + 'static {
    /// The struct's name in the header, for messages.
    const NAME: &'static str;
    /// `(offset, size, alignment)` of every field, in declaration order.
    const FIELDS: &'static [(usize, usize, usize)];
}

/// Implements [`Versioned`] for a struct from the list of all its fields
/// and their types (a missing field or a wrong type does not compile).
macro_rules! versioned {
    ($t:ident { $($f:ident : $ft:ty),+ $(,)? }) => {
        impl $crate::capi::versioned::Versioned for $t {
            const NAME: &'static str = stringify!($t);
            const FIELDS: &'static [(usize, usize, usize)] = &[$((
                ::std::mem::offset_of!($t, $f),
                ::std::mem::size_of::<$ft>(),
                ::std::mem::align_of::<$ft>(),
            )),+];
        }
        const _: fn($t) = |v: $t| {
            let $t { $($f),+ } = v;
            $(let _: $ft = $f;)+
        };
    };
}
pub(crate) use versioned;

/// Whether `size` is a size the library accepts for `T` (see the module doc).
pub(crate) fn size_accepted<T: Versioned>(size: usize) -> bool {
    if size >= size_of::<T>() {
        return true;
    }
    let mut align = 1;
    for &(offset, bytes, field_align) in T::FIELDS {
        align = align.max(field_align);
        let end = offset + bytes;
        if end == size {
            return size.is_multiple_of(align);
        }
        if end > size {
            return false;
        }
    }
    false
}

fn refuse<T: Versioned>(err: &ErrBuf, name: &str, size: usize) -> alm_status {
    err.fail_with(
        alm_status::ALM_ERR_INVALID_ARGUMENT,
        format_args!(
            "`{name}->size` = {size} is not sizeof({ty}) ({full}) nor the end of one of its fields",
            ty = T::NAME,
            full = size_of::<T>()
        ),
    )
}

/// Copies `n` bytes of `value` into `out` and sets `out->size` to `n`.
///
/// # Safety
///
/// `out` must point to `n >= 4` writable bytes; `n <= size_of::<T>()`.
unsafe fn write_prefix<T: Versioned>(value: T, out: *mut T, n: usize) {
    // SAFETY: `out` has `n` writable bytes and `value` has `n` readable ones;
    // unaligned-safe byte copies; `n >= 4` covers the size field.
    unsafe {
        std::ptr::copy_nonoverlapping((&value as *const T).cast::<u8>(), out.cast::<u8>(), n);
        std::ptr::write_unaligned(out.cast::<u32>(), n as u32);
    }
}

/// Reads a caller's parameter struct over `defaults`: NULL gives the
/// defaults; otherwise `size` must be accepted, and `min(size, sizeof)`
/// bytes are copied.
///
/// # Safety
///
/// `p` must be NULL or point to at least `min((*p).size, sizeof(T))`
/// readable bytes, the first four of which hold that size. Every bit
/// pattern of the copied bytes must be a valid `T` (plain integers, floats,
/// raw and optional function pointers).
pub(crate) unsafe fn read_params<T: Versioned>(
    err: &ErrBuf,
    p: *const T,
    defaults: T,
    name: &str,
) -> Result<T, alm_status> {
    if p.is_null() {
        return Ok(defaults);
    }
    // SAFETY: every versioned struct begins with the caller's `uint32_t size`.
    let size = unsafe { std::ptr::read_unaligned(p.cast::<u32>()) } as usize;
    if !size_accepted::<T>(size) {
        return Err(refuse::<T>(err, name, size));
    }
    let n = size.min(size_of::<T>());
    let mut out = defaults;
    // SAFETY: the caller's struct has `n` readable bytes and ours `n` writable;
    // the copy ends on a field boundary, so no field is half copied.
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut out as *mut T).cast::<u8>(), n) };
    Ok(out)
}

/// The body of every `alm_*_default_params`: writes `value` into the
/// caller's struct of `out_size` bytes and sets its `size`.
///
/// # Safety
///
/// `out` must be NULL or point to `out_size` writable bytes.
pub(crate) unsafe fn fill_defaults<T: Versioned>(
    out: *mut T,
    out_size: usize,
    value: T,
) -> alm_status {
    let err = ErrBuf::none();
    super::guard(err, || {
        if out.is_null() {
            return alm_status::ALM_ERR_NULL_ARGUMENT;
        }
        if !size_accepted::<T>(out_size) {
            return alm_status::ALM_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: `out` has `out_size` writable bytes per the contract.
        unsafe { write_prefix(value, out, out_size.min(size_of::<T>())) };
        alm_status::ALM_OK
    })
}

/// Fills a caller's result struct, whose leading `size` field the caller
/// set to `sizeof` its struct; `out->size` becomes the bytes written.
///
/// # Safety
///
/// `out` must be NULL or point to `(*out).size` writable bytes.
pub(crate) unsafe fn fill_out<T: Versioned>(
    err: &ErrBuf,
    out: *mut T,
    value: T,
    name: &str,
) -> alm_status {
    if out.is_null() {
        return err.fail_with(
            alm_status::ALM_ERR_NULL_ARGUMENT,
            format_args!("`{name}` is NULL"),
        );
    }
    // SAFETY: non-null; every versioned struct starts with the caller's size.
    let size = unsafe { std::ptr::read_unaligned(out.cast::<u32>()) } as usize;
    if !size_accepted::<T>(size) {
        return refuse::<T>(err, name, size);
    }
    // SAFETY: the caller's struct has `size` writable bytes.
    unsafe { write_prefix(value, out, size.min(size_of::<T>())) };
    alm_status::ALM_OK
}

/// Checks a [`versioned!`] listing against the struct: fields in order,
/// each at the next offset its alignment allows, the last one ending where
/// the struct's padding starts, and `size` first.
#[cfg(test)]
pub(crate) fn assert_listing_matches<T: Versioned>() {
    let fields = T::FIELDS;
    assert_eq!(fields[0], (0, 4, 4), "{}: `size` must come first", T::NAME);
    let mut end: usize = 0;
    let mut align = 1;
    for &(offset, bytes, a) in fields {
        assert_eq!(
            offset,
            end.next_multiple_of(a),
            "{}: field at {offset}",
            T::NAME
        );
        end = offset + bytes;
        align = align.max(a);
    }
    assert_eq!(end.next_multiple_of(align), size_of::<T>(), "{}", T::NAME);
    assert_eq!(align, std::mem::align_of::<T>(), "{}", T::NAME);
}
