//! The one place where tasks running in parallel write the same output
//! slice.
//!
//! [`crate::kernels::Kernels::matmul`] holds `&mut y` exclusively and splits
//! it among tasks by output feature: task `i` writes `y[r * n_out + n]` only
//! for the `n` it owns. Rust cannot express that interleaved split with
//! `split_at_mut`, so the slice is viewed as atomic cells instead, written
//! with relaxed stores (plain stores on every target we build for). This is
//! sound even if a faulty [`crate::parallel::Parallel`] ran a task twice or
//! concurrently with itself: two atomic stores of the same value race
//! harmlessly, where two `&mut` views of the same element would be
//! undefined behaviour.

use core::sync::atomic::{AtomicU32, Ordering};

static_assertions::assert_eq_size!(f32, AtomicU32);
static_assertions::const_assert!(
    core::mem::align_of::<f32>() >= core::mem::align_of::<AtomicU32>()
);

/// `&mut [f32]` shared between tasks as write-only cells.
pub(crate) struct OutView<'a> {
    cells: &'a [AtomicU32],
}

impl<'a> OutView<'a> {
    /// Views `y` as cells for as long as the borrow lasts.
    pub(crate) fn new(y: &'a mut [f32]) -> OutView<'a> {
        // SAFETY: `AtomicU32` has the size of `f32` and no stricter
        // alignment (asserted at compile time above) and allows any bit
        // pattern, so the pointer and length describe `y.len()` valid cells.
        // We hold `y` exclusively for `'a`, so nothing else accesses the
        // memory non-atomically while the view exists (the same reasoning as
        // the unstable `AtomicU32::from_mut_slice`).
        let cells =
            unsafe { core::slice::from_raw_parts(y.as_mut_ptr().cast::<AtomicU32>(), y.len()) };
        OutView { cells }
    }

    /// Stores `values` at `start..`; indices past the end are ignored.
    #[inline]
    pub(crate) fn set_run(&self, start: usize, values: &[f32]) {
        let cells = start
            .checked_add(values.len())
            .and_then(|end| self.cells.get(start..end))
            .unwrap_or(&[]);
        for (cell, v) in cells.iter().zip(values) {
            cell.store(v.to_bits(), Ordering::Relaxed);
        }
    }

    /// Stores `value` at `index`; an index past the end is ignored (the
    /// callers compute indices from checked shapes, so it cannot happen).
    #[inline]
    pub(crate) fn set(&self, index: usize, value: f32) {
        if let Some(cell) = self.cells.get(index) {
            cell.store(value.to_bits(), Ordering::Relaxed);
        }
    }
}
