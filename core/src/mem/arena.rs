//! Bump allocation over one caller-supplied byte buffer.
//!
//! The arena owns the invariant behind "give it N bytes and it never uses
//! more": every byte the engine writes at run time comes out of it, and every
//! request is checked before a pointer is formed.
//!
//! # Layout rules (the planner relies on them)
//!
//! * The usable region starts at the first [`ARENA_ALIGN`]-aligned address of
//!   the buffer; the bytes skipped before it are reported by
//!   [`Arena::skipped`] and are not part of [`Arena::capacity`]. A buffer
//!   that is already 64-byte aligned loses nothing.
//! * Every allocation starts on an [`ARENA_ALIGN`] boundary and its size is
//!   rounded up to a multiple of [`ARENA_ALIGN`] ([`Arena::round`]). So the
//!   bytes an allocation uses never depend on what came before it, and a plan
//!   is the plain sum of rounded item sizes.
//! * All sizes and offsets are computed with checked arithmetic: a hostile
//!   element count gives [`Error::Overflow`] or [`Error::Budget`], never a
//!   wrapped size or a pointer past the end.
//!
//! Allocations live as long as the buffer (`'a`). Scratch that must be
//! released is carved inside [`Arena::scope`], whose sub-arena cannot leak
//! slices out of the closure, so rewinding is sound.

use core::marker::PhantomData;
use core::mem::{align_of, size_of, MaybeUninit};
use core::ptr::NonNull;

use crate::error::{Error, Result};

/// Alignment of every arena allocation, in bytes (a cache line; enough for
/// any SIMD load the kernels issue).
pub const ARENA_ALIGN: usize = 64;

/// Types that may be carved from zeroed arena bytes.
///
/// # Safety
///
/// Implementors must be plain data: every bit pattern, in particular all
/// zeros, is a valid value; no padding bytes that could be read; no drop glue;
/// alignment at most [`ARENA_ALIGN`].
pub unsafe trait Pod: Copy + 'static {}

// SAFETY: primitive integers and floats accept every bit pattern and have no padding.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for i8 {}
// SAFETY: as above.
unsafe impl Pod for u16 {}
// SAFETY: as above.
unsafe impl Pod for i16 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for i32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl Pod for i64 {}
// SAFETY: as above.
unsafe impl Pod for usize {}
// SAFETY: as above.
unsafe impl Pod for f32 {}
// SAFETY: as above.
unsafe impl Pod for f64 {}
// SAFETY: `half::f16` is a `repr(transparent)` wrapper over `u16`.
unsafe impl Pod for half::f16 {}
// SAFETY: `half::bf16` is a `repr(transparent)` wrapper over `u16`.
unsafe impl Pod for half::bf16 {}
// SAFETY: an array of plain data is plain data with no padding between elements.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// A bump allocator over a caller's byte buffer.
pub struct Arena<'a> {
    /// First aligned byte of the buffer.
    base: NonNull<u8>,
    /// Usable bytes from `base`.
    capacity: usize,
    /// Bytes skipped before `base` to reach alignment.
    skipped: usize,
    /// Bytes handed out (always a multiple of `ARENA_ALIGN`).
    used: usize,
    /// Largest `used` ever seen, including inside scopes.
    high_water: usize,
    _buf: PhantomData<&'a mut [u8]>,
}

// SAFETY: the arena is a unique borrow of a byte buffer; moving it to another
// thread moves that unique borrow, as `&mut [u8]: Send` allows.
unsafe impl Send for Arena<'_> {}

impl<'a> Arena<'a> {
    /// An arena over `buf`. The first bytes up to the next [`ARENA_ALIGN`]
    /// boundary are skipped (see [`Arena::skipped`]).
    pub fn new(buf: &'a mut [u8]) -> Arena<'a> {
        let len = buf.len();
        let start = buf.as_mut_ptr();
        let skip = start.align_offset(ARENA_ALIGN).min(len);
        // SAFETY: `skip <= len`, so the offset stays inside (or one past) `buf`.
        let base = unsafe { start.add(skip) };
        Arena {
            // `base` is derived from a slice pointer, which is never null.
            base: NonNull::new(base).unwrap_or(NonNull::dangling()),
            capacity: len - skip,
            skipped: skip,
            used: 0,
            high_water: 0,
            _buf: PhantomData,
        }
    }

    /// `bytes` rounded up to a multiple of [`ARENA_ALIGN`]: what an
    /// allocation of `bytes` consumes. `None` on overflow.
    pub const fn round(bytes: usize) -> Option<usize> {
        match bytes.checked_add(ARENA_ALIGN - 1) {
            Some(v) => Some(v & !(ARENA_ALIGN - 1)),
            None => None,
        }
    }

    /// What an allocation of `n` values of `T` consumes. `None` on overflow.
    pub const fn bytes_for<T>(n: usize) -> Option<usize> {
        match n.checked_mul(size_of::<T>()) {
            Some(b) => Arena::round(b),
            None => None,
        }
    }

    /// Usable bytes (after the alignment skip).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes skipped at the start of the buffer to reach 64-byte alignment.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Bytes handed out so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Bytes still available.
    pub fn remaining(&self) -> usize {
        self.capacity - self.used
    }

    /// The most bytes ever in use at once, scopes included.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// Carves `n` zeroed values of `T`, aligned to [`ARENA_ALIGN`].
    /// `what` names the allocation in a [`Error::Budget`] error.
    pub fn take_slice<T: Pod>(&mut self, n: usize, what: &'static str) -> Result<&'a mut [T]> {
        let bytes = Arena::footprint::<T>(n, what)?;
        let ptr = self.bump(bytes, what)?;
        // SAFETY: `bump` reserved `bytes >= n * size_of::<T>()` bytes at `ptr`,
        // inside the buffer, never handed out before, aligned to 64 >=
        // align_of::<T>(); they were zeroed by `bump`, and all-zero bytes are a
        // valid `T` (Pod). The buffer outlives `'a`.
        Ok(unsafe { core::slice::from_raw_parts_mut(ptr.cast::<T>(), n) })
    }

    /// Carves `n` zeroed bytes.
    pub fn take_bytes(&mut self, n: usize, what: &'static str) -> Result<&'a mut [u8]> {
        self.take_slice::<u8>(n, what)
    }

    /// Carves one value of `T`, initialised to `value`.
    pub fn take_value<T: Pod>(&mut self, value: T, what: &'static str) -> Result<&'a mut T> {
        let slot = self.take_slice::<T>(1, what)?;
        match slot.first_mut() {
            Some(v) => {
                *v = value;
                Ok(v)
            }
            None => Err(Error::Overflow { what }),
        }
    }

    /// Moves `value` into the arena and returns it. Unlike
    /// [`Arena::take_slice`], `T` need not be [`Pod`]; its destructor, if
    /// any, never runs (arena contents are never dropped).
    pub fn take_init<T: 'a>(&mut self, value: T, what: &'static str) -> Result<&'a mut T> {
        Ok(self.take_uninit::<T>(what)?.write(value))
    }

    /// Carves the place of one `T`, to be written later (what a
    /// [`Carver::slot`](super::Carver::slot) yields). `T` need not be [`Pod`].
    pub fn take_uninit<T: 'a>(&mut self, what: &'static str) -> Result<&'a mut MaybeUninit<T>> {
        let bytes = Arena::footprint::<T>(1, what)?;
        let ptr = self.bump(bytes, what)?.cast::<MaybeUninit<T>>();
        // SAFETY: `bump` reserved at least size_of::<T>() fresh bytes at `ptr`,
        // aligned to 64 >= align_of::<T>() (checked by `footprint`), inside a
        // buffer that outlives `'a`; a `MaybeUninit` needs no valid contents,
        // and no other reference to those bytes exists or will be handed out.
        Ok(unsafe { &mut *ptr })
    }

    /// What carving `n` values of `T` consumes, or why it cannot: an
    /// alignment above [`ARENA_ALIGN`], or a size that overflows (named
    /// `what`). The one size rule the planner's counting and the arena's
    /// carving both use.
    pub fn footprint<T>(n: usize, what: &'static str) -> Result<usize> {
        if align_of::<T>() > ARENA_ALIGN {
            return Err(Error::InvalidArgument {
                what: "type alignment exceeds the arena alignment",
            });
        }
        Arena::bytes_for::<T>(n).ok_or(Error::Overflow { what })
    }

    /// Runs `f` with a sub-arena over the bytes not yet used. Everything `f`
    /// carves is released when it returns; the parent's high-water mark
    /// records the peak reached inside.
    pub fn scope<R>(&mut self, f: impl FnOnce(&mut Arena<'_>) -> R) -> R {
        // SAFETY: `used <= capacity`, so the pointer stays inside the buffer.
        let sub_base = unsafe { self.base.as_ptr().add(self.used) };
        let mut sub = Arena {
            base: NonNull::new(sub_base).unwrap_or(NonNull::dangling()),
            capacity: self.capacity - self.used,
            skipped: 0,
            used: 0,
            high_water: 0,
            _buf: PhantomData,
        };
        // `sub` borrows `self` mutably for the closure's duration (through the
        // elided lifetime), so nothing carved from it can outlive the call.
        let out = f(&mut sub);
        self.high_water = self.high_water.max(self.used + sub.high_water);
        out
    }

    /// Reserves `bytes` (a multiple of `ARENA_ALIGN`) and zeroes them.
    fn bump(&mut self, bytes: usize, what: &'static str) -> Result<*mut u8> {
        let available = self.remaining();
        if bytes > available {
            return Err(Error::Budget {
                what,
                needed: bytes,
                available,
            });
        }
        // SAFETY: `used + bytes <= capacity`, so the range lies inside the buffer.
        let ptr = unsafe { self.base.as_ptr().add(self.used) };
        // SAFETY: `ptr..ptr + bytes` is inside the buffer and not handed out yet.
        unsafe { core::ptr::write_bytes(ptr, 0, bytes) };
        self.used += bytes;
        self.high_water = self.high_water.max(self.used);
        Ok(ptr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(64))]
    struct Aligned<const N: usize>([u8; N]);

    #[test]
    fn aligned_buffer_loses_nothing_and_rounds_every_allocation() {
        let mut buf = Aligned([0xAAu8; 1024]);
        let mut a = Arena::new(&mut buf.0);
        assert_eq!(a.skipped(), 0);
        assert_eq!(a.capacity(), 1024);
        let x = a.take_slice::<f32>(3, "x").unwrap();
        assert_eq!(x, &[0.0; 3]); // zeroed
        assert_eq!(x.as_ptr() as usize % ARENA_ALIGN, 0);
        assert_eq!(a.used(), 64); // 12 bytes round to one line
        let y = a.take_slice::<u16>(33, "y").unwrap(); // 66 bytes -> 128
        assert_eq!(y.as_ptr() as usize % ARENA_ALIGN, 0);
        assert_eq!(a.used(), 192);
        assert_eq!(a.remaining(), 1024 - 192);
        assert_eq!(a.high_water(), 192);
    }

    #[test]
    fn misaligned_buffer_skips_to_alignment() {
        let mut buf = Aligned([0u8; 256]);
        let mut a = Arena::new(&mut buf.0[5..]);
        assert_eq!(a.skipped(), 59);
        assert_eq!(a.capacity(), 256 - 64);
        let x = a.take_bytes(1, "x").unwrap();
        assert_eq!(x.as_ptr() as usize % ARENA_ALIGN, 0);
    }

    #[test]
    fn too_small_says_needed_and_available() {
        let mut buf = Aligned([0u8; 128]);
        let mut a = Arena::new(&mut buf.0);
        a.take_bytes(10, "first").unwrap();
        let err = a.take_slice::<u32>(40, "second").unwrap_err();
        assert_eq!(
            err,
            Error::Budget {
                what: "second",
                needed: 192,
                available: 64
            }
        );
        // A failed request leaves the arena unchanged.
        assert_eq!(a.used(), 64);
    }

    #[test]
    fn hostile_counts_overflow_instead_of_wrapping() {
        let mut buf = Aligned([0u8; 128]);
        let mut a = Arena::new(&mut buf.0);
        assert_eq!(
            a.take_slice::<u64>(usize::MAX / 4, "huge").unwrap_err(),
            Error::Overflow { what: "huge" }
        );
        assert_eq!(
            a.take_bytes(usize::MAX - 10, "huge").unwrap_err(),
            Error::Overflow { what: "huge" }
        );
        assert!(matches!(
            a.take_bytes(usize::MAX - 200, "big").unwrap_err(),
            Error::Budget { .. }
        ));
        assert_eq!(a.used(), 0);
    }

    #[test]
    fn scope_releases_and_records_high_water() {
        let mut buf = Aligned([0u8; 1024]);
        let mut a = Arena::new(&mut buf.0);
        let keep = a.take_bytes(64, "keep").unwrap();
        keep[0] = 7;
        let inner_used = a.scope(|s| {
            let t = s.take_bytes(300, "tmp").unwrap();
            t[0] = 1;
            s.used()
        });
        assert_eq!(inner_used, 320);
        assert_eq!(a.used(), 64);
        assert_eq!(a.high_water(), 384);
        // The released bytes are handed out again, zeroed.
        let again = a.take_bytes(64, "again").unwrap();
        assert_eq!(again[0], 0);
        assert_eq!(keep[0], 7);
    }

    #[test]
    fn take_init_places_a_non_pod_value() {
        let mut buf = Aligned([0u8; 256]);
        let mut a = Arena::new(&mut buf.0);
        let text = "hello";
        let v = a.take_init((text, 7u16), "pair").unwrap();
        assert_eq!(*v, ("hello", 7));
        assert_eq!(v as *const _ as usize % ARENA_ALIGN, 0);
        assert_eq!(a.used(), 64);
    }

    #[test]
    fn zero_length_takes_cost_nothing() {
        let mut buf = Aligned([0u8; 64]);
        let mut a = Arena::new(&mut buf.0);
        assert!(a.take_slice::<f32>(0, "none").unwrap().is_empty());
        assert_eq!(a.used(), 0);
    }

    #[test]
    fn empty_buffer_is_a_budget_error() {
        let mut empty: [u8; 0] = [];
        let mut a = Arena::new(&mut empty);
        assert_eq!(a.capacity(), 0);
        assert!(matches!(
            a.take_bytes(1, "x").unwrap_err(),
            Error::Budget {
                needed: 64,
                available: 0,
                ..
            }
        ));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the sequence of requests: allocations never overlap,
            /// stay inside the buffer, are aligned, zeroed, and `used` is the
            /// sum of rounded sizes of the successful ones.
            #[test]
            fn allocations_are_disjoint_aligned_and_accounted(
                offset in 0usize..64,
                sizes in proptest::collection::vec(0usize..700, 0..24),
            ) {
                let mut buf = Aligned([0x5Au8; 4096]);
                let lo = buf.0.as_ptr() as usize;
                let hi = lo + buf.0.len();
                let mut a = Arena::new(&mut buf.0[offset..]);
                let mut spans: [(usize, usize); 24] = [(0, 0); 24];
                let mut n = 0;
                let mut expected_used = 0;
                for s in sizes {
                    match a.take_bytes(s, "p") {
                        Ok(b) => {
                            prop_assert!(b.iter().all(|&x| x == 0));
                            b.fill(0xEE);
                            let start = b.as_ptr() as usize;
                            prop_assert_eq!(start % ARENA_ALIGN, 0);
                            prop_assert!(start >= lo && start + s <= hi);
                            for &(p, q) in &spans[..n] {
                                prop_assert!(start + s <= p || start >= q);
                            }
                            spans[n] = (start, start + s);
                            n += 1;
                            expected_used += Arena::round(s).unwrap();
                        }
                        Err(Error::Budget { needed, available, .. }) => {
                            prop_assert!(needed > available);
                            prop_assert_eq!(available, a.remaining());
                        }
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                    prop_assert_eq!(a.used(), expected_used);
                    prop_assert!(a.used() <= a.capacity());
                }
            }
        }
    }
}
