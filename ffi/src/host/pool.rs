//! A persistent thread pool implementing core's [`Parallel`].
//!
//! One dispatch per matrix multiplication means hundreds per generated
//! token, so waking workers through the OS each time would cost more than
//! the work. Workers therefore spin on a generation counter for a short,
//! timed while after each job ([`SPIN`]), then park on a condition variable
//! (woken only when some worker sleeps, so a dispatch to spinning workers
//! makes no system call). The calling thread takes tasks too, and a dispatch
//! allocates nothing.
//!
//! # Claims
//!
//! Tasks are claimed one at a time from a single word holding the job's
//! generation and the next index. A worker claims only for the generation
//! whose job it read, so a claim succeeds only while that job's `run` is
//! still waiting for it: `run` never waits for a worker that has not started
//! (or is descheduled before claiming), only for tasks actually claimed.
//!
//! # A busy neighbour
//!
//! Edge devices run other work. When another process keeps a core busy, the
//! scheduler shares it between that process and our worker in slices of
//! milliseconds, and a worker descheduled while holding a task stalls the
//! whole dispatch for the rest of the slice — a 2-thread run can fall far
//! below a 1-thread one. The pool measures every dispatch: when the caller
//! waits for others much longer than its own share took, and it keeps
//! happening, the pool runs the following dispatches on the caller alone
//! (the workers park, leaving the shared core to the neighbour), then tries
//! the workers again, waiting longer after each failed try. Work is split
//! by outputs, never inside a reduction, so results are identical either
//! way.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arenalm_core::parallel::Parallel;

/// How long a waiting worker spins before it parks: enough to bridge the
/// gap between two dispatches of one forward pass (norms, RoPE, the next
/// activation quantization), short enough not to burn a shared core.
const SPIN: Duration = Duration::from_micros(200);

/// How long the calling thread spins on straggling tasks before it starts
/// yielding its time slice.
const SPIN_CALLER: Duration = Duration::from_micros(50);

/// Bits of the claim word that hold the next task index; the rest hold the
/// job's generation.
const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// Jobs of more tasks run on the caller alone (never reached by the engine,
/// whose jobs are a few tasks per thread).
const MAX_TASKS: usize = INDEX_MASK as usize;

/// The job being run: a type-erased pointer to the task closure.
#[derive(Clone, Copy)]
struct Job {
    /// `&(dyn Fn(usize) + Sync)` with its lifetime erased; dereferenced only
    /// after a successful claim of this job's generation, which `run`
    /// outlives (it waits for every claimed task).
    task: *const (dyn Fn(usize) + Sync),
    n_tasks: usize,
    generation: u64,
}

// SAFETY: the pointee is `Sync`, and it is only used under a claim (see
// `Job::task`).
unsafe impl Send for Job {}

struct Shared {
    /// Bumped for every new job (and at shutdown): what workers wait on.
    generation: AtomicU64,
    /// The current job; written by `run` before bumping `generation`.
    job: Mutex<Option<Job>>,
    /// `generation << INDEX_BITS | next index` of the current job.
    claim: AtomicU64,
    /// Tasks of the current job finished.
    done: AtomicUsize,
    /// Workers parked or about to park.
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
    /// A task of the current job panicked.
    panicked: AtomicBool,
    wake_lock: Mutex<()>,
    wake: Condvar,
}

/// What `run` remembers between dispatches to decide whether workers help.
#[derive(Debug, Default)]
struct Adapt {
    /// Dispatches left to run on the caller alone.
    solo_left: u32,
    /// How many dispatches the next solo stretch lasts.
    backoff: u32,
    /// Recent dispatches in which the caller waited for stragglers much
    /// longer than its own share took (a decaying count).
    stalls: u32,
}

impl Adapt {
    /// Solo stretches start at this many dispatches (a fraction of a
    /// token)...
    const FIRST_BACKOFF: u32 = 64;
    /// ... and grow up to this many (a few hundred tokens).
    const MAX_BACKOFF: u32 = 1 << 16;
    /// `stalls` at which the pool goes solo.
    const STALL_LIMIT: u32 = 8;
    /// A wait shorter than this is never a stall: a worker that was merely
    /// slower, or woken from parking, costs tens of microseconds; one the
    /// scheduler took away costs a time slice (milliseconds).
    const STALL_MIN: Duration = Duration::from_micros(500);

    /// Records a parallel dispatch: the caller's own work took `own`, then
    /// it waited `wait` for the other threads.
    fn record(&mut self, own: Duration, wait: Duration) {
        let stalled = wait > Self::STALL_MIN && wait > own * 4;
        if stalled {
            self.stalls += 2;
        } else {
            self.stalls = self.stalls.saturating_sub(1);
            if self.stalls == 0 {
                // Working well again: the next stretch starts short.
                self.backoff = 0;
            }
        }
        if self.stalls >= Self::STALL_LIMIT {
            self.backoff = if self.backoff == 0 {
                Self::FIRST_BACKOFF
            } else {
                (self.backoff * 2).min(Self::MAX_BACKOFF)
            };
            self.solo_left = self.backoff;
            // One stall after the stretch ends sends it back.
            self.stalls = Self::STALL_LIMIT - 2;
        }
    }
}

/// A pool of `threads - 1` workers plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    /// Serializes `run` calls from different threads; holds the adaptive
    /// state.
    run_lock: Mutex<Adapt>,
}

impl ThreadPool {
    /// A pool running tasks on `threads` threads (the caller included).
    /// `threads` of 0 or 1 runs everything on the caller.
    pub fn new(threads: usize) -> std::io::Result<ThreadPool> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: Mutex::new(None),
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            wake_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut pool = ThreadPool {
            shared,
            workers: Vec::with_capacity(threads - 1),
            threads,
            run_lock: Mutex::new(Adapt::default()),
        };
        for i in 1..threads {
            let shared = Arc::clone(&pool.shared);
            let handle = std::thread::Builder::new()
                .name(format!("arenalm-{i}"))
                .spawn(move || worker(&shared))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Whether the last dispatches ran on the caller alone because the
    /// workers kept stalling (for tests and reports).
    pub fn is_solo(&self) -> bool {
        self.run_lock
            .lock()
            .map(|a| a.solo_left > 0)
            .unwrap_or(false)
    }
}

/// Claims and runs tasks of `job` until none are left (or the job is no
/// longer the current one).
fn drain(shared: &Shared, job: Job) {
    let tag = job.generation << INDEX_BITS;
    let mut word = shared.claim.load(Ordering::Acquire);
    loop {
        let index = (word & INDEX_MASK) as usize;
        if word & !INDEX_MASK != tag || index >= job.n_tasks {
            return;
        }
        match shared.claim.compare_exchange_weak(
            word,
            word + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {}
            Err(now) => {
                word = now;
                continue;
            }
        }
        // SAFETY: the claim of `index` for this generation succeeded, so the
        // task is not done and `run` (which waits for `done` to reach
        // `n_tasks`) has not returned: the closure is alive.
        let task = unsafe { &*job.task };
        // Core never panics; if a task somehow did, count it as done so no
        // thread is left waiting, and let `run` report it on the caller.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(index)));
        if result.is_err() {
            shared.panicked.store(true, Ordering::Release);
        }
        shared.done.fetch_add(1, Ordering::AcqRel);
        word = shared.claim.load(Ordering::Acquire);
    }
}

fn worker(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        // Wait for a new generation: spin for a while, then park.
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let g = shared.generation.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                break;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) || start.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            shared.sleepers.fetch_add(1, Ordering::SeqCst);
            let guard = shared.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
            if shared.generation.load(Ordering::SeqCst) == seen {
                let _unused = shared.wake.wait(guard);
            }
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let job = *shared.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = job {
            drain(shared, job);
        }
    }
}

// SAFETY: every task index is claimed exactly once (one successful
// compare-exchange per index of the claim word), and `run` returns only
// after `done` counts every claimed task as finished.
unsafe impl Parallel for ThreadPool {
    fn threads(&self) -> usize {
        self.threads
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        let mut adapt = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.workers.is_empty() || n_tasks == 1 || n_tasks > MAX_TASKS || adapt.solo_left > 0 {
            adapt.solo_left = adapt.solo_left.saturating_sub(1);
            for i in 0..n_tasks {
                task(i);
            }
            return;
        }
        let s = &*self.shared;
        let generation =
            s.generation.load(Ordering::Relaxed).wrapping_add(1) & (u64::MAX >> INDEX_BITS);
        // SAFETY: only the lifetime is erased; the pointer is dereferenced
        // only under a claim of this generation, and this function returns
        // only after every claimed task is done (see `drain`).
        let erased: *const (dyn Fn(usize) + Sync) = unsafe {
            std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(task)
        };
        let job = Job {
            task: erased,
            n_tasks,
            generation,
        };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        s.done.store(0, Ordering::Release);
        s.claim.store(generation << INDEX_BITS, Ordering::Release);
        s.generation.store(generation, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            // Wake parked workers (spinning ones see the generation change).
            let _g = s.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let start = Instant::now();
        drain(s, job);
        let own = start.elapsed();
        // Wait for the tasks others claimed.
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < n_tasks {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > own + SPIN_CALLER {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        adapt.record(own, start.elapsed().saturating_sub(own));
        if s.panicked.swap(false, Ordering::AcqRel) {
            // Every claimed task is done with the closure; surface the
            // failure here, where the C boundary's panic guard turns it
            // into a status.
            panic!("a parallel task panicked");
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
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
        // Long enough for the workers to exhaust their spin and park.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            pool.shared.sleepers.load(Ordering::SeqCst) > 0,
            "workers park"
        );
        pool.run(8, &|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 16);
    }

    #[test]
    fn a_stalling_worker_sends_the_pool_solo_and_it_comes_back() {
        let mut a = Adapt::default();
        let ms = Duration::from_millis;
        // Balanced dispatches: never solo.
        for _ in 0..1000 {
            a.record(ms(1), Duration::from_micros(100));
        }
        assert_eq!(a.solo_left, 0);
        // A worker that keeps leaving the caller waiting a time slice.
        for _ in 0..4 {
            a.record(Duration::from_micros(50), ms(3));
        }
        assert_eq!(a.solo_left, Adapt::FIRST_BACKOFF);
        // Stalling again right after the stretch doubles the next one.
        a.solo_left = 0;
        a.record(Duration::from_micros(50), ms(3));
        assert_eq!(a.solo_left, 2 * Adapt::FIRST_BACKOFF);
        // Good dispatches decay the count and reset the back-off.
        a.solo_left = 0;
        for _ in 0..100 {
            a.record(ms(1), Duration::from_micros(100));
        }
        assert_eq!((a.stalls, a.backoff), (0, 0));
        // Waits of a wake-up or of a slightly slower worker are no stalls.
        for _ in 0..1000 {
            a.record(Duration::from_micros(10), Duration::from_micros(300));
        }
        assert_eq!(a.solo_left, 0);
    }

    #[test]
    fn a_pool_whose_worker_keeps_stalling_runs_solo() {
        // Tasks that a worker runs sleep 3 ms, as if its core went to another
        // process mid-task; on the caller they take 50 us.
        let pool = ThreadPool::new(2).unwrap();
        let hits = AtomicUsize::new(0);
        let task = |_: usize| {
            hits.fetch_add(1, Ordering::Relaxed);
            if std::thread::current().name() == Some("arenalm-1") {
                std::thread::sleep(Duration::from_millis(3));
            } else {
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(50) {
                    std::hint::spin_loop();
                }
            }
        };
        for _ in 0..60 {
            pool.run(8, &task);
            if pool.is_solo() {
                break;
            }
        }
        assert!(
            pool.is_solo(),
            "the pool should stop waiting for its worker"
        );
        // Solo dispatches still run every task.
        let before = hits.load(Ordering::Relaxed);
        pool.run(8, &task);
        assert_eq!(hits.load(Ordering::Relaxed), before + 8);
    }
}
