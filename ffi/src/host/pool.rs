//! A persistent thread pool implementing core's [`Parallel`].
//!
//! One dispatch per matrix multiplication means hundreds per generated
//! token, so waking workers through the OS each time would cost more than
//! the work. Workers therefore wait on a generation counter for a while
//! after each job (about [`SPIN_LIMIT`] checks: a short busy spin, then
//! yielding the CPU so an oversubscribed machine still makes progress) and
//! only then park on a condition variable. The calling thread takes tasks
//! too, and a dispatch allocates nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use arenalm_core::parallel::Parallel;

/// Wait iterations before a waiting worker parks.
pub(crate) const SPIN_LIMIT: u32 = 30_000;

/// Busy-wait iterations before a waiting thread starts yielding its time
/// slice: on a machine with more runnable threads than cores, a thread that
/// only spins can burn the slice the thread it waits for needs.
const SPIN_BEFORE_YIELD: u32 = 20_000;

/// One step of waiting: spin at first, then yield to the scheduler.
#[inline]
fn wait_step(spins: &mut u32) {
    if *spins < SPIN_BEFORE_YIELD {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
    *spins = spins.saturating_add(1);
}

/// The job being run: a type-erased pointer to the task closure.
#[derive(Clone, Copy)]
struct Job {
    /// `&(dyn Fn(usize) + Sync)` with its lifetime erased; valid while
    /// `run` has not returned.
    task: *const (dyn Fn(usize) + Sync),
    n_tasks: usize,
}

// SAFETY: the pointee is `Sync`, and `run` keeps it alive until every worker
// is done with it.
unsafe impl Send for Job {}

struct Shared {
    /// Incremented for every new job (and once more at shutdown).
    generation: AtomicU64,
    /// The current job; written by `run` before bumping `generation`.
    job: Mutex<Option<Job>>,
    /// Next task index to take.
    next: AtomicUsize,
    /// Tasks finished.
    done: AtomicUsize,
    /// Workers that have finished looking at the current job.
    idle_workers: AtomicUsize,
    shutdown: AtomicBool,
    /// A task of the current job panicked.
    panicked: AtomicBool,
    wake_lock: Mutex<()>,
    wake: Condvar,
}

/// A pool of `threads - 1` workers plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    /// Serializes `run` calls from different threads.
    run_lock: Mutex<()>,
}

impl ThreadPool {
    /// A pool running tasks on `threads` threads (the caller included).
    /// `threads` of 0 or 1 runs everything on the caller.
    pub fn new(threads: usize) -> std::io::Result<ThreadPool> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: Mutex::new(None),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            idle_workers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            wake_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut workers = Vec::with_capacity(threads - 1);
        for i in 1..threads {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("arenalm-{i}"))
                .spawn(move || worker(&shared))?;
            workers.push(handle);
        }
        Ok(ThreadPool {
            shared,
            workers,
            threads,
            run_lock: Mutex::new(()),
        })
    }
}

/// Takes and runs tasks of `job` until none are left.
fn drain(shared: &Shared, job: Job) {
    loop {
        let i = shared.next.fetch_add(1, Ordering::AcqRel);
        if i >= job.n_tasks {
            return;
        }
        // SAFETY: `run` does not return (so the closure stays alive) until
        // `done` reaches `n_tasks`, which needs this call to finish.
        let task = unsafe { &*job.task };
        // Core never panics; if a task somehow did, count it as done so no
        // thread is left waiting, and let `run` report it on the caller.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(i)));
        if result.is_err() {
            shared.panicked.store(true, Ordering::Release);
        }
        shared.done.fetch_add(1, Ordering::AcqRel);
    }
}

fn worker(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        // Wait for a new generation: spin first, then park.
        let mut spins = 0u32;
        loop {
            let g = shared.generation.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                break;
            }
            if spins < SPIN_LIMIT {
                wait_step(&mut spins);
            } else {
                let guard = shared.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
                if shared.generation.load(Ordering::Acquire) == seen {
                    let _unused = shared.wake.wait(guard);
                }
            }
        }
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let job = *shared.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = job {
            drain(shared, job);
        }
        shared.idle_workers.fetch_add(1, Ordering::AcqRel);
    }
}

impl Parallel for ThreadPool {
    fn threads(&self) -> usize {
        self.threads
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if self.workers.is_empty() || n_tasks == 1 {
            for i in 0..n_tasks {
                task(i);
            }
            return;
        }
        let _serial = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: only the lifetime is erased; the pointer is used by workers
        // strictly before this function returns (see the waits below).
        let erased: *const (dyn Fn(usize) + Sync) = unsafe {
            std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(task)
        };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Job {
            task: erased,
            n_tasks,
        });
        s.next.store(0, Ordering::Release);
        s.done.store(0, Ordering::Release);
        s.idle_workers.store(0, Ordering::Release);
        s.generation.fetch_add(1, Ordering::AcqRel);
        {
            // Wake parked workers (spinning ones see the generation change).
            let _g = s.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        drain(
            s,
            Job {
                task: erased,
                n_tasks,
            },
        );
        // Wait for every task, then for every worker to stop touching the job.
        let mut spins = 0;
        while s.done.load(Ordering::Acquire) < n_tasks {
            wait_step(&mut spins);
        }
        while s.idle_workers.load(Ordering::Acquire) < self.workers.len() {
            wait_step(&mut spins);
        }
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if s.panicked.swap(false, Ordering::AcqRel) {
            // Every thread is done with the closure; surface the failure here,
            // where the C boundary's panic guard turns it into a status.
            panic!("a parallel task panicked");
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        {
            let _g = self
                .shared
                .wake_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once_across_many_dispatches() {
        for threads in [1, 2, 3, 4] {
            let pool = ThreadPool::new(threads).unwrap();
            let counts: Vec<AtomicUsize> = (0..97).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..500 {
                pool.run(97, &|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(
                counts.iter().all(|c| c.load(Ordering::Relaxed) == 500),
                "{threads} threads"
            );
        }
    }

    #[test]
    fn workers_wake_after_parking() {
        let pool = ThreadPool::new(3).unwrap();
        let hits = AtomicUsize::new(0);
        pool.run(8, &|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        // Long enough for the workers to exhaust their spin budget and park.
        std::thread::sleep(std::time::Duration::from_millis(300));
        pool.run(8, &|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 16);
    }
}
