//! The work-stealing executor: a pool of threads, each with a local FIFO deque, a global injector,
//! and stealing between threads. Tasks are cooperative: a run handles a bounded slice of work and
//! reports whether it should run again, wait for a wake-up, or is done.
//!
//! Tasks are woken by pool threads (through [`Cx::waker`]) and, through [`ExternalWakes`], by
//! threads outside the pool (the transport's socket threads): an outside thread only posts the
//! task's id, and a pool thread makes the state transition, so that every transition of a task's
//! state stays on a pool thread. What wakes whom (channels, connections) lives elsewhere.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use crate::core::graph::Meter;
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
    /// The meters of the chain's stages (empty without metrics): the task's waits count in
    /// each.
    meters: Vec<Meter>,
    /// Since when, and for what (`true`: input), the task has been waiting.
    parked: Mutex<Option<(Instant, bool)>>,
}

impl TaskSlot {
    /// The slot of `task`, subtask `subtask` of the chain starting at stage `stage`, whose
    /// stages' meters are `meters` (empty: not metered).
    pub(crate) fn new(
        task: Box<dyn Task>,
        stage: usize,
        subtask: usize,
        meters: Vec<Meter>,
    ) -> Self {
        for m in &meters {
            m.task_started();
        }
        TaskSlot {
            task: Mutex::new(Some(task)),
            stage,
            subtask,
            state: AtomicU8::new(IDLE),
            meters,
            parked: Mutex::new(None),
        }
    }

    /// The task runs again: the wait since it parked counts in its meters.
    fn unpark(&self) {
        if self.meters.is_empty() {
            return;
        }
        let parked = self.parked.lock().map(|mut p| p.take()).unwrap_or(None);
        if let Some((since, idle)) = parked {
            let ns = since.elapsed().as_nanos() as u64;
            for m in &self.meters {
                m.waited(ns, idle);
            }
        }
    }

    /// The task waits, for input (`idle`) or for room downstream.
    fn park(&self, idle: bool) {
        if self.meters.is_empty() {
            return;
        }
        if let Ok(mut parked) = self.parked.lock() {
            *parked = Some((Instant::now(), idle));
        }
    }

    fn ended(&self) {
        for m in &self.meters {
            m.task_ended();
        }
    }
}

impl Drop for TaskSlot {
    fn drop(&mut self) {
        self.ended();
    }
}

/// Where idle pool threads park, and how a new task in a queue is announced to them.
struct Parker {
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Parker {
    fn new() -> Self {
        Parker {
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    /// Wakes one parked thread, if any. Called after a push to a queue: the fence orders the
    /// push before the load of `sleepers`, against the sleeper's increment-then-check in
    /// [`Pool::sleep`], so that either the sleeper sees the push or this sees the sleeper.
    fn notify_one(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock();
            self.cv.notify_one();
        }
    }

    fn notify_all(&self) {
        let _guard = self.lock.lock();
        self.cv.notify_all();
    }
}

/// Wake-ups of a job's tasks from threads outside the pool, e.g. a connection's socket threads
/// when a frame arrives for a task. Made before the job runs (the ends of a connection get their
/// [`RemoteWaker`]s when they are built) and handed to [`run_with`]; it serves one run at a
/// time, and may serve several runs one after another.
///
/// An outside thread cannot take part in the task state machine (the slots are borrowed by one
/// run), so it posts the task's id in a queue of its own and notifies a parked thread; a pool
/// thread takes the id and wakes the task as its own wake-ups do. A task is in that queue at
/// most once, so the queue holds at most one entry per task, whatever the outside threads do.
#[derive(Clone)]
pub(crate) struct ExternalWakes {
    hub: Arc<Hub>,
}

struct Hub {
    parker: Parker,
    /// Tasks woken from outside, not yet taken by a pool thread.
    queue: Injector<TaskId>,
    /// Per task: its id is in `queue` (so a second wake-up need not queue it again).
    queued: Box<[AtomicBool]>,
    /// A run is using this hub (two at once would share one parker's sleepers).
    attached: AtomicBool,
    /// Set by [`ExternalWakes::cancel`]: the run stops with the error stored here.
    cancelled: AtomicBool,
    cancel: Mutex<Option<Error>>,
}

impl ExternalWakes {
    /// Wake-ups for the tasks `0..tasks` of a job.
    pub(crate) fn new(tasks: usize) -> Self {
        ExternalWakes {
            hub: Arc::new(Hub {
                parker: Parker::new(),
                queue: Injector::new(),
                queued: (0..tasks).map(|_| AtomicBool::new(false)).collect(),
                attached: AtomicBool::new(false),
                cancelled: AtomicBool::new(false),
                cancel: Mutex::new(None),
            }),
        }
    }

    /// An owned handle that wakes `task` from any thread.
    #[cfg_attr(not(test), allow(dead_code))] // for the transport, which deployment does not use yet
    pub(crate) fn waker(&self, task: TaskId) -> Result<RemoteWaker> {
        if task >= self.hub.queued.len() {
            return Err(Error::Internal(format!(
                "no external wake-ups for task {task}: made for {} tasks",
                self.hub.queued.len()
            )));
        }
        Ok(RemoteWaker {
            hub: self.hub.clone(),
            task,
        })
    }

    /// Stops the run these wake-ups serve (or the next one) from any thread: its threads stop
    /// running tasks and the run returns `error`, unless it failed with another one first.
    pub(crate) fn cancel(&self, error: Error) {
        let hub = &*self.hub;
        if let Ok(mut slot) = hub.cancel.lock() {
            slot.get_or_insert(error);
        }
        hub.cancelled.store(true, Ordering::Release);
        hub.parker.notify_all();
    }

    /// Takes the tasks woken from outside since the last call, without a pool: for tests of
    /// the wakers' users that drive the tasks themselves.
    #[cfg(test)]
    pub(crate) fn take_woken(&self) -> Vec<TaskId> {
        let mut woken = Vec::new();
        while let Some(task) = self.hub.take() {
            woken.push(task);
        }
        woken
    }
}

impl Hub {
    /// The next task woken from outside, its `queued` flag cleared.
    fn take(&self) -> Option<TaskId> {
        loop {
            match self.queue.steal() {
                Steal::Success(task) => {
                    // A swap, not a store: it reads the flag's latest value, so that it acquires
                    // what every outside waker that found the flag set (and so did not queue the
                    // task again) did before its own swap.
                    if let Some(flag) = self.queued.get(task) {
                        flag.swap(false, Ordering::AcqRel);
                    }
                    return Some(task);
                }
                Steal::Retry => continue,
                Steal::Empty => return None,
            }
        }
    }
}

/// Makes one task runnable from any thread: owned, cloneable, `Send + Sync`.
#[derive(Clone)]
pub(crate) struct RemoteWaker {
    hub: Arc<Hub>,
    task: TaskId,
}

impl RemoteWaker {
    /// The task this handle wakes.
    #[allow(dead_code)] // for the transport's deployment, which does not use it yet
    pub(crate) fn task(&self) -> TaskId {
        self.task
    }

    /// Makes the task runnable. What the caller did before (e.g. put a frame in an inbox) is
    /// visible to the task's next run: the flag's read-modify-write, the queue and the pool
    /// thread's wake-up carry it there.
    pub(crate) fn wake(&self) {
        let hub = &*self.hub;
        let Some(flag) = hub.queued.get(self.task) else {
            return;
        };
        if flag.swap(true, Ordering::AcqRel) {
            // Queued already, not yet taken: the taker's swap reads this one's.
            return;
        }
        hub.queue.push(self.task);
        hub.parker.notify_one();
    }
}

impl std::fmt::Debug for RemoteWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteWaker(task {})", self.task)
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
    /// Wake-ups from outside the pool; its parker is where this pool's threads park.
    hub: &'a Hub,
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
    let external = ExternalWakes::new(0);
    run_with(
        slots,
        stage_names,
        threads,
        counters,
        final_states,
        checkpoints,
        live,
        &external,
    )
}

/// Frees a hub for the next run when a run ends.
struct Detach<'h>(&'h Hub);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        self.0.attached.store(false, Ordering::Release);
    }
}

/// [`run`], with tasks that are also woken from outside the pool through `external`.
#[allow(clippy::too_many_arguments)] // `run`'s arguments and one more; a struct would only rename them
pub(crate) fn run_with(
    slots: &[TaskSlot],
    stage_names: &[String],
    threads: usize,
    counters: &JobCounters,
    final_states: &Mutex<Vec<(usize, Vec<u8>)>>,
    checkpoints: &dyn Checkpoints,
    live: &AtomicUsize,
    external: &ExternalWakes,
) -> Result<()> {
    let hub = &*external.hub;
    if hub.attached.swap(true, Ordering::AcqRel) {
        return Err(Error::Internal(
            "external wake-ups are already serving another run".into(),
        ));
    }
    // Detached again however the run ends.
    let _detach = Detach(hub);
    let workers: Vec<Worker<TaskId>> = (0..threads).map(|_| Worker::new_fifo()).collect();
    let pool = Pool {
        slots,
        stage_names,
        injector: Injector::new(),
        stealers: workers.iter().map(Worker::stealer).collect(),
        live,
        cancelled: AtomicBool::new(false),
        error: Mutex::new(None),
        hub,
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
    let mut error = pool
        .error
        .lock()
        .map(|mut e| e.take())
        .unwrap_or_else(|p| p.into_inner().take());
    if error.is_none() && hub.cancelled.load(Ordering::Acquire) {
        error = hub.cancel.lock().ok().and_then(|mut e| e.take());
    }
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
            self.pool.hub.parker.notify_one();
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
            if self.stopped() || self.live.load(Ordering::Acquire) == 0 {
                return;
            }
            match self.find(&waker).or_else(|| self.spin(&waker)) {
                Some(id) => self.run_one(id, &waker),
                None => self.sleep(&local),
            }
        }
    }

    fn find(&self, waker: &LocalWaker<'_, '_>) -> Option<TaskId> {
        let local = waker.local;
        if let Some(id) = local.pop() {
            return Some(id);
        }
        if self.take_external(waker) {
            if let Some(id) = local.pop() {
                return Some(id);
            }
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

    /// Wakes the tasks woken from outside the pool (onto this thread's deque, as a wake-up from
    /// a task running here would). True when there were any.
    fn take_external(&self, waker: &LocalWaker<'_, '_>) -> bool {
        let mut any = false;
        while let Some(task) = self.hub.take() {
            // A hub outlives runs and may be made for more tasks than this run has.
            if task < self.slots.len() {
                waker.wake(task);
                any = true;
            }
        }
        any
    }

    /// Looks for work a little longer before parking: waking a parked thread costs a system
    /// call per batch when producer and consumer run on different threads.
    fn spin(&self, waker: &LocalWaker<'_, '_>) -> Option<TaskId> {
        for round in 0..SPIN_ROUNDS {
            if round < 8 {
                for _ in 0..(1 << round) {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
            if self.stopped() || self.live.load(Ordering::Acquire) == 0 {
                return None;
            }
            if let Some(id) = self.find(waker) {
                return Some(id);
            }
        }
        None
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty()
            || !self.hub.queue.is_empty()
            || self.stealers.iter().any(|s| !s.is_empty())
    }

    fn sleep(&self, local: &Worker<TaskId>) {
        let parker = &self.hub.parker;
        let Ok(guard) = parker.lock.lock() else {
            return;
        };
        parker.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let idle = local.is_empty()
            && !self.has_work()
            && !self.stopped()
            && self.live.load(Ordering::Acquire) > 0;
        if idle {
            // Parks until notified, without a timeout: every task put in a queue is announced
            // through `notify_one` (after the queue push, against `sleepers` above; outside
            // wakers too, after their push to the hub's queue), and the end of the job or a
            // failure through `notify_all`, so a timeout could only hide a lost wake-up.
            // History: until the executor's wake-up protocol had tests of its own, a 1 ms
            // timeout capped this wait; with 50 ms, W2 at 2 threads sometimes ran 2.5x slower,
            // and the tests in `tests.rs` now fail if a notification is lost.
            drop(parker.cv.wait(guard));
        }
        parker.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// The run failed, or was cancelled from outside.
    fn stopped(&self) -> bool {
        self.cancelled.load(Ordering::Acquire) || self.hub.cancelled.load(Ordering::Acquire)
    }

    fn notify_one(&self) {
        self.hub.parker.notify_one();
    }

    fn notify_all(&self) {
        self.hub.parker.notify_all();
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
        slot.unpark();
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
        if let Ok(Ok(step @ (Step::Wait | Step::Blocked))) = &outcome {
            slot.park(*step == Step::Wait);
        }
        match outcome {
            Ok(Ok(Step::Yield)) => {
                slot.state.swap(SCHEDULED, Ordering::AcqRel);
                waker.local.push(id);
                self.notify_one();
            }
            Ok(Ok(Step::Wait | Step::Blocked)) => {
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
                slot.ended();
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
