//! A persistent thread pool built for one job shape: "run this closure on every thread with
//! (thread index, thread count) and wait for all". Matmuls in a decode step are short (tens of
//! microseconds), so waking threads must be cheap: workers spin briefly on an atomic generation
//! counter after each job, then park on a condition variable. No allocation per run.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::KernelError;

/// How long a worker spins for the next job before parking.
const SPIN: Duration = Duration::from_micros(200);

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    /// Bumped by 2 per `run`; bit 0 is the mode of the current job (1 = dynamic). Workers wait
    /// for it to change.
    generation: AtomicUsize,
    /// Workers that have not finished the current full-mode job.
    pending: AtomicUsize,
    /// Dynamic mode: `(generation tag << 32) | (workers inside << 1) | open`.
    gate: AtomicU64,
    /// Workers parked (or about to park) on `cv`.
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
    panicked: AtomicBool,
    /// The current job; written by `run` before `generation` is bumped, read after.
    job: std::cell::UnsafeCell<Option<*const Job>>,
    lock: Mutex<()>,
    cv: Condvar,
}

// SAFETY: `job` is only written by the thread inside `run` (serialized by `run_lock`) while no
// worker reads it (full mode: all workers finished the previous job, `pending` == 0; dynamic
// mode: the gate was closed and no worker is inside), and read by workers only after an acquire
// load of the generation published after the write (dynamic mode: after entering the open gate
// of that generation). The pointee is `Sync`, so calling it from several threads is allowed.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced while `run` keeps the closure alive.
unsafe impl Send for Shared {}

/// A fixed set of worker threads that run closures `f(ith, nth)` on all threads at once.
///
/// The calling thread takes part as thread 0, so `ThreadPool::new(1)` starts no thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
    run_lock: Mutex<()>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads)
            .finish()
    }
}

impl ThreadPool {
    /// Starts a pool of `n_threads` threads (including the caller). Zero is an error.
    pub fn new(n_threads: usize) -> Result<ThreadPool, KernelError> {
        if n_threads == 0 {
            return Err(KernelError::Invalid(
                "thread pool needs at least one thread",
            ));
        }
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            gate: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            job: std::cell::UnsafeCell::new(None),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        });
        let mut pool = ThreadPool {
            shared: shared.clone(),
            workers: Vec::with_capacity(n_threads - 1),
            n_threads,
            run_lock: Mutex::new(()),
        };
        for ith in 1..n_threads {
            let sh = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("lmrun-kern-{ith}"))
                .spawn(move || worker(sh, ith, n_threads))
                .map_err(|e| KernelError::Spawn(e.to_string()))?;
            pool.workers.push(h);
        }
        // One empty job that every worker must take: the pool is ready (each thread started,
        // its start-up allocations done) when `new` returns, not during the first real job.
        pool.run(|_, _| {});
        Ok(pool)
    }

    /// A pool with [`ThreadPool::default_threads`] threads.
    pub fn with_default_threads() -> Result<ThreadPool, KernelError> {
        ThreadPool::new(ThreadPool::default_threads())
    }

    /// Number of threads (including the caller).
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Physical cores available to this process: distinct (package, core) pairs in
    /// `/sys/devices/system/cpu/cpu*/topology` on Linux, never more than
    /// `available_parallelism()`; falls back to `available_parallelism()` elsewhere.
    pub fn default_threads() -> usize {
        let logical = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        match physical_cores() {
            Some(p) if p > 0 => p.min(logical),
            _ => logical,
        }
    }

    /// Runs `f(ith, nth)` for every `ith` in `0..nth` (thread 0 is the caller) and returns
    /// when all have finished. A panic in any call is re-raised here after all threads finish.
    /// Calls from several threads are serialized; a call from inside a job of this pool runs
    /// all indices on the calling thread.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        self.run_mode(&f, false)
    }

    /// Like [`ThreadPool::run`], but a worker that has not started by the time the caller's own
    /// call `f(0, nth)` returns is skipped. For closures that take work from a shared counter
    /// until it runs out (then the caller alone finishes everything if the other cores are
    /// busy, instead of waiting for a descheduled worker); never for fixed per-thread
    /// partitions.
    pub fn run_dynamic<F: Fn(usize, usize) + Sync>(&self, f: F) {
        self.run_mode(&f, true)
    }

    fn run_mode(&self, f: &(dyn Fn(usize, usize) + Sync + '_), dynamic: bool) {
        let nth = self.n_threads;
        if nth == 1 {
            f(0, 1);
            return;
        }
        if IN_JOB.with(|c| c.get()) {
            // called from inside a job (e.g. a matmul inside `run`): the other threads are busy
            // with the outer job, so run every index here instead of deadlocking.
            for ith in 0..nth {
                f(ith, nth);
            }
            return;
        }
        let _guard = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let sh = &*self.shared;
        // SAFETY: the lifetime is erased only for the duration of this call: we wait below until
        // every worker that may call it has finished (full mode: pending == 0; dynamic mode: the
        // gate is closed and empty) before returning or unwinding.
        let fptr: *const Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize, usize) + Sync + '_), &'static Job>(f) };
        // SAFETY: no worker reads `job` now (previous job fully finished, see `Sync`).
        unsafe { *sh.job.get() = Some(fptr) };
        sh.panicked.store(false, Relaxed);
        let g = (sh.generation.load(Relaxed) | 1) + 1 + dynamic as usize;
        if dynamic {
            sh.gate.store(((g as u64 & 0xFFFF_FFFF) << 32) | 1, SeqCst);
        } else {
            sh.pending.store(nth - 1, SeqCst);
        }
        sh.generation.store(g, SeqCst);
        if sh.sleepers.load(SeqCst) > 0 {
            let _l = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.cv.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| in_job(|| f(0, nth))));
        if dynamic {
            sh.gate.fetch_and(!1, AcqRel);
        }
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let busy = if dynamic {
                sh.gate.load(Acquire) & 0xFFFF_FFFE != 0
            } else {
                sh.pending.load(Acquire) != 0
            };
            if !busy {
                break;
            }
            if spins < 1 << 16 || start.elapsed() < SPIN {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if sh.panicked.load(Acquire) {
            panic!("a thread-pool worker panicked");
        }
    }
}

thread_local! {
    /// Whether this thread is executing a pool job right now.
    static IN_JOB: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with `IN_JOB` set (restored even if `f` panics).
fn in_job<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_JOB.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(IN_JOB.with(|c| c.replace(true)));
    f()
}

fn worker(sh: Arc<Shared>, ith: usize, nth: usize) {
    let mut seen = 0usize;
    loop {
        // wait for a new generation: spin, then park
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let g = sh.generation.load(Acquire);
            if g != seen {
                seen = g;
                break;
            }
            if sh.shutdown.load(Acquire) {
                return;
            }
            spins += 1;
            if !spins.is_multiple_of(64) || start.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let mut l = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.sleepers.fetch_add(1, SeqCst);
            while sh.generation.load(SeqCst) == seen && !sh.shutdown.load(SeqCst) {
                l = sh.cv.wait(l).unwrap_or_else(|e| e.into_inner());
            }
            sh.sleepers.fetch_sub(1, SeqCst);
        }
        if sh.shutdown.load(Acquire) {
            return;
        }
        let dynamic = seen & 1 == 1;
        if dynamic {
            // enter the gate only if it is still open for this very generation
            let tag = (seen as u64 & 0xFFFF_FFFF) << 32;
            let mut st = sh.gate.load(Acquire);
            let entered = loop {
                if st & 0xFFFF_FFFF_0000_0000 != tag || st & 1 == 0 {
                    break false;
                }
                match sh.gate.compare_exchange_weak(st, st + 2, AcqRel, Acquire) {
                    Ok(_) => break true,
                    Err(now) => st = now,
                }
            };
            if !entered {
                continue;
            }
        }
        // SAFETY: `job` was written before the generation bump we just observed (acquire), and
        // `run` keeps the closure alive until this worker signals completion below (full mode:
        // `pending`; dynamic mode: leaving the gate it entered while open).
        let job = unsafe { *sh.job.get() };
        if let Some(fp) = job {
            // SAFETY: see above; the pointee is alive and `Sync`.
            let f = unsafe { &*fp };
            if catch_unwind(AssertUnwindSafe(|| in_job(|| f(ith, nth)))).is_err() {
                sh.panicked.store(true, Release);
            }
        }
        if dynamic {
            sh.gate.fetch_sub(2, AcqRel);
        } else {
            sh.pending.fetch_sub(1, AcqRel);
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.cv.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

fn physical_cores() -> Option<usize> {
    let mut set = std::collections::HashSet::new();
    let dir = std::fs::read_dir("/sys/devices/system/cpu").ok()?;
    for e in dir.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Some(num) = name.strip_prefix("cpu") else {
            continue;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let topo = e.path().join("topology");
        let core = std::fs::read_to_string(topo.join("core_id")).ok()?;
        let pkg = std::fs::read_to_string(topo.join("physical_package_id")).unwrap_or_default();
        set.insert((pkg.trim().to_string(), core.trim().to_string()));
    }
    if set.is_empty() {
        None
    } else {
        Some(set.len())
    }
}

/// A mutable f32 slice that several pool threads write at disjoint indices.
pub(crate) struct DisjointOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: access goes through `write`, whose contract requires disjoint indices per thread.
unsafe impl Sync for DisjointOut {}

impl DisjointOut {
    pub(crate) fn new(s: &mut [f32]) -> DisjointOut {
        DisjointOut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// Writes `v` at `i..i + v.len()` (bounds-checked once).
    ///
    /// # Safety
    /// As for [`write`](Self::write), for every index written.
    #[inline(always)]
    pub(crate) unsafe fn write_slice(&self, i: usize, v: &[f32]) {
        assert!(i <= self.len && v.len() <= self.len - i);
        // SAFETY: in bounds (checked above); exclusive per the function contract; `v` is a
        // separate borrow, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), self.ptr.add(i), v.len()) };
    }

    /// Writes `v` at `i` (bounds-checked).
    ///
    /// # Safety
    /// No other thread may access index `i` during the lifetime of this `DisjointOut`, and the
    /// slice it was made from must outlive all writes.
    #[inline(always)]
    pub(crate) unsafe fn write(&self, i: usize, v: f32) {
        assert!(i < self.len);
        // SAFETY: in bounds (checked above); exclusive per the function contract.
        unsafe { *self.ptr.add(i) = v };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_thread_many_times() {
        let pool = ThreadPool::new(3).unwrap();
        let hits = AtomicUsize::new(0);
        for _ in 0..2000 {
            pool.run(|ith, nth| {
                assert!(ith < nth);
                assert_eq!(nth, 3);
                hits.fetch_add(1 << (8 * ith), Relaxed);
            });
        }
        assert_eq!(hits.load(Relaxed), 2000 * (1 + (1 << 8) + (1 << 16)));
        // after a pause the workers have parked; they must still wake up
        std::thread::sleep(Duration::from_millis(5));
        pool.run(|ith, _| {
            hits.fetch_add(ith, Relaxed);
        });
        assert!(ThreadPool::new(0).is_err());
        assert!(ThreadPool::default_threads() >= 1);
    }

    #[test]
    fn worker_panic_is_reported() {
        let pool = ThreadPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| pool.run(|ith, _| assert_eq!(ith, 0))));
        assert!(r.is_err());
        pool.run(|_, _| {}); // still usable
    }

    #[test]
    fn nested_runs_do_not_deadlock() {
        let pool = ThreadPool::new(2).unwrap();
        let hits = AtomicUsize::new(0);
        pool.run(|_, _| {
            pool.run(|_, _| {
                hits.fetch_add(1, Relaxed);
            });
            pool.run_dynamic(|_, _| {
                hits.fetch_add(1, Relaxed);
            });
        });
        assert_eq!(hits.load(Relaxed), 2 * (2 + 2));
    }

    #[test]
    fn dynamic_runs_cover_all_work() {
        let pool = ThreadPool::new(2).unwrap();
        for round in 0..3000 {
            let next = AtomicUsize::new(0);
            let done = AtomicUsize::new(0);
            pool.run_dynamic(|_, _| loop {
                let c = next.fetch_add(1, Relaxed);
                if c >= 17 {
                    break;
                }
                done.fetch_add(1, Relaxed);
            });
            assert_eq!(done.load(Relaxed), 17);
            if round % 3 == 0 {
                // interleave with full runs: every thread must still take part
                let hits = AtomicUsize::new(0);
                pool.run(|_, _| {
                    hits.fetch_add(1, Relaxed);
                });
                assert_eq!(hits.load(Relaxed), 2);
            }
        }
    }
}
