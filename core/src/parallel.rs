//! How the engine runs work on several threads without owning any.
//!
//! Core has no threads of its own. It describes work as `n_tasks`
//! independent tasks and hands them to a [`Parallel`] implementation: the
//! serial default here, a persistent thread pool in the host layer, or a C
//! caller's own parallel-for callback. Work is always split by output rows,
//! never inside a reduction, so results are bit-identical for any number of
//! threads.

/// Runs independent tasks, possibly concurrently.
///
/// # Safety
///
/// The engine hands each task exclusive access to the outputs and scratch
/// that belong to its index, so an implementation must never call `task(i)`
/// twice for the same `i` within one [`Parallel::run`], or concurrently with
/// itself: two calls with one index would alias mutable memory, which is
/// undefined behaviour. And `run` must not return while any call it made is
/// still running (the task borrows the caller's stack). Calling every index
/// exactly once is the contract too, but a task that is never called only
/// leaves its outputs unwritten: the engine detects that and reports an
/// error, it cannot cause undefined behaviour.
pub unsafe trait Parallel: Sync {
    /// Number of tasks worth creating for one operation (the worker count).
    fn threads(&self) -> usize;

    /// Calls `task(i)` once for every `i` in `0..n_tasks`, in any order and
    /// on any thread, and returns when all calls have returned.
    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync));
}

/// Runs every task on the calling thread, in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Serial;

// SAFETY: each index is called once, in order, on the calling thread, and
// every call returns before `run` does.
unsafe impl Parallel for Serial {
    fn threads(&self) -> usize {
        1
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        for i in 0..n_tasks {
            task(i);
        }
    }
}

/// The half-open range of `0..len` that task `task` of `n_tasks` owns when
/// `len` items are split as evenly as possible (the first `len % n_tasks`
/// tasks get one more). Tasks beyond `len` get an empty range.
pub fn split_range(len: usize, n_tasks: usize, task: usize) -> core::ops::Range<usize> {
    let n = n_tasks.max(1);
    let base = len / n;
    let extra = len % n;
    let start = task.min(n) * base + task.min(extra);
    let size = if task < n {
        base + usize::from(task < extra)
    } else {
        0
    };
    let start = start.min(len);
    start..(start + size).min(len)
}

/// A mutable slice that several tasks write through, each to its own
/// ranges. Only the engine uses it, for outputs that tasks split by rows.
pub(crate) struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _slice: core::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: the wrapper only hands out `&mut [T]` to ranges the caller promises
// are disjoint (see `range`), which is what `&mut [T]: Send` requires.
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}
// SAFETY: as above; it is a unique borrow of the slice.
unsafe impl<T: Send> Send for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    /// Shares `slice` for the wrapper's lifetime.
    pub(crate) fn new(slice: &'a mut [T]) -> Self {
        SharedMut {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
            _slice: core::marker::PhantomData,
        }
    }

    /// The elements `start..start + len`, or `None` if out of bounds.
    ///
    /// # Safety
    ///
    /// While the returned slice is alive, no other call may return a range
    /// that overlaps it.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn range(&self, start: usize, len: usize) -> Option<&mut [T]> {
        let end = start.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `start..end` is inside the borrowed slice; exclusivity of
        // the range is the caller's promise.
        Some(unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), len) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_range_covers_everything_once() {
        for len in 0..40 {
            for n in 1..9 {
                let mut next = 0;
                for t in 0..n {
                    let r = split_range(len, n, t);
                    assert_eq!(r.start, next);
                    assert!(r.len() == len / n || r.len() == len / n + 1);
                    next = r.end;
                }
                assert_eq!(next, len);
                assert!(split_range(len, n, n + 3).is_empty());
            }
        }
    }

    #[test]
    fn serial_runs_each_task_once() {
        use core::sync::atomic::{AtomicUsize, Ordering};
        let counts: [AtomicUsize; 5] = Default::default();
        Serial.run(5, &|i| {
            counts[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
    }
}
