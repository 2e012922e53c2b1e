//! How the engine runs work on several threads without owning any.
//!
//! Core has no threads of its own. It describes work as `n_tasks`
//! independent tasks and hands them to a [`Parallel`] implementation: the
//! serial default here, a persistent thread pool in the host layer, or a C
//! caller's own parallel-for callback. Work is always split by output rows,
//! never inside a reduction, so results are bit-identical for any number of
//! threads.

/// Runs independent tasks, possibly concurrently.
pub trait Parallel: Sync {
    /// Number of tasks worth creating for one operation (the worker count).
    fn threads(&self) -> usize;

    /// Calls `task(i)` once for every `i` in `0..n_tasks`, in any order and
    /// on any thread, and returns when all calls have returned.
    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync));
}

/// Runs every task on the calling thread, in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Serial;

impl Parallel for Serial {
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
