//! The work-stealing executor: a pool of threads, each with a local FIFO deque, a global injector,
//! and stealing between threads. Tasks are cooperative: a run handles a bounded slice of work and
//! reports whether it should run again, wait for a wake-up, or is done.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use crate::core::task::{Checkpoints, Cx, JobCounters, Step, Task, TaskId, Wake};
use crate::error::{Error, Result};

const IDLE: u8 = 0;
const SCHEDULED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const DONE: u8 = 4;

/// Rounds of looking for work (spinning, then yielding) before a thread parks.
const SPIN_ROUNDS: u32 = 40;

/// A task and what the executor needs to report about it.
pub(crate) struct TaskSlot {
    pub task: Mutex<Option<Box<dyn Task>>>,
    /// The first stage of the task's chain.
    pub stage: usize,
    pub subtask: usize,
    state: AtomicU8,
}

impl TaskSlot {
    pub(crate) fn new(task: Box<dyn Task>, stage: usize, subtask: usize) -> Self {
        TaskSlot {
            task: Mutex::new(Some(task)),
            stage,
            subtask,
            state: AtomicU8::new(IDLE),
        }
    }
}

struct Pool<'a> {
    slots: &'a [TaskSlot],
    stage_names: &'a [String],
    injector: Injector<TaskId>,
    stealers: Vec<Stealer<TaskId>>,
    /// Tasks not finished yet (shared with the checkpoint coordinator).
    live: &'a AtomicUsize,
    cancelled: AtomicBool,
    error: Mutex<Option<Error>>,
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    sleep_cv: Condvar,
    counters: &'a JobCounters,
    final_states: &'a Mutex<Vec<(usize, Vec<u8>)>>,
    checkpoints: &'a dyn Checkpoints,
}

/// Runs `slots` to completion on `threads` threads. Returns the first error, after which every
/// other task is cancelled.
pub(crate) fn run(
    slots: &[TaskSlot],
    stage_names: &[String],
    threads: usize,
    counters: &JobCounters,
    final_states: &Mutex<Vec<(usize, Vec<u8>)>>,
    checkpoints: &dyn Checkpoints,
    live: &AtomicUsize,
) -> Result<()> {
    let workers: Vec<Worker<TaskId>> = (0..threads).map(|_| Worker::new_fifo()).collect();
    let pool = Pool {
        slots,
        stage_names,
        injector: Injector::new(),
        stealers: workers.iter().map(Worker::stealer).collect(),
        live,
        cancelled: AtomicBool::new(false),
        error: Mutex::new(None),
        sleepers: AtomicUsize::new(0),
        sleep_lock: Mutex::new(()),
        sleep_cv: Condvar::new(),
        counters,
        final_states,
        checkpoints,
    };
    for (id, slot) in slots.iter().enumerate() {
        slot.state.store(SCHEDULED, Ordering::SeqCst);
        pool.injector.push(id);
    }
    if !slots.is_empty() {
        std::thread::scope(|scope| {
            for (index, local) in workers.into_iter().enumerate() {
                let pool = &pool;
                std::thread::Builder::new()
                    .name(format!("solstice-worker-{index}"))
                    .spawn_scoped(scope, move || pool.work(local))
                    .map(|_| ())
                    .unwrap_or_else(|e| {
                        pool.fail(Error::Internal(format!("cannot start worker thread: {e}")))
                    });
            }
        });
    }
    let error = pool
        .error
        .lock()
        .map(|mut e| e.take())
        .unwrap_or_else(|p| p.into_inner().take());
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The waker handed to tasks running on one worker thread.
struct LocalWaker<'p, 'a> {
    pool: &'p Pool<'a>,
    local: &'p Worker<TaskId>,
}

impl Wake for LocalWaker<'_, '_> {
    fn wake(&self, task: TaskId) {
        // Every transition of a task's state is a read-modify-write (AcqRel), this one too when
        // it changes nothing (the task is already queued or notified): the state's modification
        // order is then one release sequence, so the run that follows a wake-up in that order
        // (its `RUNNING` swap, or the failed `RUNNING -> IDLE` exchange) acquires everything the
        // waker did before, e.g. the message it put in a channel. A plain load here would let
        // the waker see `SCHEDULED` while the task's next run misses the message (the two
        // threads' store-then-load orders are not ordered with each other), and the task would
        // then wait for a wake-up that already happened.
        let state = &self.pool.slots[task].state;
        let mut cur = state.load(Ordering::Relaxed);
        loop {
            let next = match cur {
                IDLE => SCHEDULED,
                RUNNING => NOTIFIED,
                SCHEDULED | NOTIFIED => cur,
                _ => return,
            };
            match state.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        if cur == IDLE {
            self.local.push(task);
            self.pool.notify_one();
        }
    }
}

impl Pool<'_> {
    fn work(&self, local: Worker<TaskId>) {
        let waker = LocalWaker {
            pool: self,
            local: &local,
        };
        loop {
            if self.cancelled.load(Ordering::Acquire) || self.live.load(Ordering::Acquire) == 0 {
                return;
            }
            match self.find(&local).or_else(|| self.spin(&local)) {
                Some(id) => self.run_one(id, &waker),
                None => self.sleep(&local),
            }
        }
    }

    fn find(&self, local: &Worker<TaskId>) -> Option<TaskId> {
        if let Some(id) = local.pop() {
            return Some(id);
        }
        loop {
            let mut retry = false;
            match self.injector.steal_batch_and_pop(local) {
                Steal::Success(id) => return Some(id),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            for stealer in &self.stealers {
                match stealer.steal() {
                    Steal::Success(id) => return Some(id),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    /// Looks for work a little longer before parking: waking a parked thread costs a system
    /// call per batch when producer and consumer run on different threads.
    fn spin(&self, local: &Worker<TaskId>) -> Option<TaskId> {
        for round in 0..SPIN_ROUNDS {
            if round < 8 {
                for _ in 0..(1 << round) {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
            if self.cancelled.load(Ordering::Acquire) || self.live.load(Ordering::Acquire) == 0 {
                return None;
            }
            if let Some(id) = self.find(local) {
                return Some(id);
            }
        }
        None
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    fn sleep(&self, local: &Worker<TaskId>) {
        let Ok(guard) = self.sleep_lock.lock() else {
            return;
        };
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let idle = local.is_empty()
            && !self.has_work()
            && !self.cancelled.load(Ordering::Acquire)
            && self.live.load(Ordering::Acquire) > 0;
        if idle {
            // Parks until notified, without a timeout: every task put in a queue is announced
            // through `notify_one` (after the queue push, against `sleepers` above), and the end
            // of the job or a failure through `notify_all`, so a timeout could only hide a lost
            // wake-up. History: until the executor's wake-up protocol had tests of its own, a
            // 1 ms timeout capped this wait; with 50 ms, W2 at 2 threads sometimes ran 2.5x
            // slower, and the tests in `tests.rs` now fail if a notification is lost.
            drop(self.sleep_cv.wait(guard));
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    fn notify_one(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.sleep_lock.lock();
            self.sleep_cv.notify_one();
        }
    }

    fn notify_all(&self) {
        let _guard = self.sleep_lock.lock();
        self.sleep_cv.notify_all();
    }

    fn fail(&self, error: Error) {
        if let Ok(mut slot) = self.error.lock() {
            if slot.is_none() {
                *slot = Some(error);
            }
        }
        self.cancelled.store(true, Ordering::Release);
        self.notify_all();
    }

    fn run_one(&self, id: TaskId, waker: &LocalWaker<'_, '_>) {
        let slot = &self.slots[id];
        // A swap, not a store: it reads the latest wake-up (see `LocalWaker::wake`).
        slot.state.swap(RUNNING, Ordering::AcqRel);
        let mut cx = Cx {
            waker,
            task: id,
            stage: slot.stage,
            subtask: slot.subtask,
            counters: self.counters,
            final_states: self.final_states,
            checkpoints: self.checkpoints,
        };
        let outcome = {
            let Ok(mut guard) = slot.task.lock() else {
                self.fail(Error::Internal("task lock poisoned".into()));
                return;
            };
            let Some(task) = guard.as_mut() else {
                return;
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| task.run(&mut cx)));
            if matches!(outcome, Ok(Ok(Step::Done))) {
                // Dropping the task closes its channels and files now, not at job end.
                guard.take();
            }
            outcome
        };
        let stage = self.stage_names.get(cx.stage).cloned().unwrap_or_default();
        match outcome {
            Ok(Ok(Step::Yield)) => {
                slot.state.swap(SCHEDULED, Ordering::AcqRel);
                waker.local.push(id);
                self.notify_one();
            }
            Ok(Ok(Step::Wait)) => {
                if slot
                    .state
                    .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    // Woken while running (NOTIFIED): run again.
                    slot.state.swap(SCHEDULED, Ordering::AcqRel);
                    waker.local.push(id);
                    self.notify_one();
                }
            }
            Ok(Ok(Step::Done)) => {
                slot.state.swap(DONE, Ordering::AcqRel);
                if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
                    self.notify_all();
                }
            }
            Ok(Err(e)) => {
                let e = match e {
                    e @ (Error::Stage { .. } | Error::StagePanic { .. }) => e,
                    e => Error::Stage {
                        stage,
                        subtask: slot.subtask,
                        source: Box::new(e),
                    },
                };
                self.fail(e);
            }
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                self.fail(Error::StagePanic {
                    stage,
                    subtask: slot.subtask,
                    message,
                });
            }
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests;
