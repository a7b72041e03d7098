//! The checkpoint coordinator of one job run (DESIGN.md §4).
//!
//! It triggers checkpoint `n` at the sources (every `interval_secs` or every `interval_records`
//! records read), collects the snapshot parts tasks hand it while their uploads run in the
//! background, and the tasks' acknowledgements. When every task has taken its snapshot and every
//! part is durable, it writes the manifest (create-only), publishes the sinks' staged
//! transactions, and then, off the checkpoint's path (when no checkpoint is due, and at the end),
//! prunes old checkpoints. One regular checkpoint aligns at a time, and one commits, on a thread
//! of its own, while the next may align; one that fails (an upload error, the job draining
//! before every task saw the barrier) is abandoned with a warning and the job goes on.
//!
//! The end of a bounded stream is the final checkpoint: each task reports its last snapshot
//! under [`Coordinator::final_id`] when its input ends, and [`Coordinator::finish`] commits it
//! once the job has run to completion. Restoring that checkpoint replays nothing.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::core::graph::ErasedSink;
use crate::core::task::{Checkpoints, TaskId};
use crate::error::{Error, Result};
use crate::state::checkpoint::{CheckpointStore, PartUpload};
use crate::state::codec;
use crate::state::manifest::{CheckpointId, Manifest, PartInfo};

/// What one completed checkpoint cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The checkpoint's id.
    pub id: u64,
    /// From the trigger (or, for the final checkpoint, the end of the run) until it was
    /// complete: its manifest written and the sinks' output it staged published.
    pub duration: Duration,
    /// The part of `duration` until every task had taken its snapshot: the barriers' travel
    /// behind the records buffered between tasks, and each task's snapshot on the way (a file
    /// sink closes the file it stages). Zero for the final checkpoint. What remains of
    /// `duration` is making the sinks' staged output durable ([`Sink::persist`], which grows
    /// with the output written since the previous checkpoint) while the state's parts upload,
    /// the manifest, and publishing.
    ///
    /// [`Sink::persist`]: crate::core::connector::Sink::persist
    pub alignment: Duration,
    /// Bytes of its parts.
    pub bytes: u64,
    /// Records the sources read between the previous checkpoint's trigger and this one's (for
    /// the final checkpoint: until the end of the input).
    pub records: u64,
}

/// When checkpoints are taken.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    pub interval: Option<Duration>,
    pub interval_records: Option<u64>,
    pub retain: usize,
    /// How long a checkpoint waits for every task's snapshot.
    pub timeout: Duration,
}

/// A checkpoint that timed out: its id and the tasks (of the plan) that never took their
/// snapshot.
#[derive(Clone, Debug)]
pub(crate) struct Stalled {
    pub id: u64,
    pub tasks: Vec<usize>,
    pub waited: Duration,
}

/// What became of a checkpoint: its id, or why it was not taken (as [`Error::Checkpoint`]).
type Outcome = std::result::Result<CheckpointId, Failure>;

/// Why a checkpoint was not taken; cloned to every waiter.
#[derive(Clone, Debug)]
struct Failure {
    id: Option<u64>,
    reason: String,
}

impl Failure {
    fn error(self) -> Error {
        Error::Checkpoint {
            id: self.id,
            reason: self.reason,
        }
    }
}

/// Checkpoints asked for on demand (`Runner::trigger_checkpoint`), and the outcome of the
/// latest checkpoint taken to serve them, shared by the job's runs (restarts included).
///
/// Requests are numbered; a checkpoint triggered by requests serves every request made before
/// its trigger, and a request's caller waits for the outcome of a checkpoint serving it (not of
/// one already in flight when it asked).
#[derive(Debug, Default)]
pub(crate) struct Triggers {
    requested: AtomicBool,
    /// Requests made so far.
    requests: AtomicU64,
    /// The highest request served, and the outcome of the checkpoint that served it.
    outcomes: Mutex<(u64, Option<Outcome>)>,
    reported: Condvar,
}

impl Triggers {
    /// Asks for a checkpoint; returns the request's number, to wait for its outcome.
    pub(crate) fn request(&self) -> u64 {
        let number = self.requests.fetch_add(1, Ordering::AcqRel) + 1;
        self.requested.store(true, Ordering::Release);
        number
    }

    /// If checkpoints were asked for: the number of the last request the checkpoint about to
    /// be triggered serves.
    fn take_request(&self) -> Option<u64> {
        self.requested
            .swap(false, Ordering::AcqRel)
            .then(|| self.requests.load(Ordering::Acquire))
    }

    /// Reports the outcome of a checkpoint that served the requests up to `served`.
    fn report(&self, served: u64, outcome: Outcome) {
        let mut guard = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        if served > guard.0 {
            *guard = (served, Some(outcome));
            self.reported.notify_all();
        }
    }

    /// Waits for the outcome of a checkpoint serving request `number`, or until `done()` says
    /// the job ended.
    pub(crate) fn wait_after(&self, number: u64, done: impl Fn() -> bool) -> Result<CheckpointId> {
        let mut guard = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if guard.0 >= number {
                if let Some(outcome) = &guard.1 {
                    return outcome.clone().map_err(Failure::error);
                }
            }
            if done() {
                return Err(Error::Checkpoint {
                    id: None,
                    reason: "the job ended before the checkpoint was taken".into(),
                });
            }
            guard = self
                .reported
                .wait_timeout(guard, Duration::from_millis(20))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// How long the commit of a checkpoint waits for a worker process to write one of its parts.
pub(crate) const REMOTE_PART_DEADLINE: Duration = Duration::from_secs(300);

/// A part of a checkpoint on its way to the store.
enum PendingPart {
    /// Written by this process.
    Upload(PartUpload),
    /// Written by a worker process, which sends its info once written.
    Remote {
        worker: String,
        name: String,
        rx: crossbeam_channel::Receiver<Result<PartInfo>>,
    },
}

impl PendingPart {
    fn wait(self) -> Result<PartInfo> {
        match self {
            PendingPart::Upload(upload) => upload.wait(),
            PendingPart::Remote { worker, name, rx } => {
                match rx.recv_timeout(REMOTE_PART_DEADLINE) {
                    Ok(result) => result,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(Error::Checkpoint {
                        id: None,
                        reason: format!(
                            "{worker} did not write part {name} within {REMOTE_PART_DEADLINE:?}"
                        ),
                    }),
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        Err(Error::Checkpoint {
                            id: None,
                            reason: format!("{worker} went away before writing part {name}"),
                        })
                    }
                }
            }
        }
    }
}

/// A checkpoint being taken.
struct Inflight {
    id: u64,
    acked: HashSet<TaskId>,
    uploads: Vec<(usize, PendingPart)>,
    /// Staged sink transactions, published once the checkpoint is committed.
    transactions: Vec<(usize, String)>,
    error: Option<Error>,
}

impl Inflight {
    fn new(id: u64) -> Inflight {
        Inflight {
            id,
            acked: HashSet::new(),
            uploads: Vec::new(),
            transactions: Vec::new(),
            error: None,
        }
    }
}

/// A checkpoint every task took its snapshot of, on its way to the committing thread.
struct Aligned {
    inflight: Inflight,
    /// When it was triggered.
    started: Instant,
    /// From the trigger until the last task's snapshot.
    alignment: Duration,
    /// Records read since the previous checkpoint's trigger.
    records: u64,
    /// The last on-demand request it serves, if it was asked for.
    served: Option<u64>,
}

struct State {
    regular: Option<Inflight>,
    last: Option<Inflight>,
}

/// Coordinates the checkpoints of one job run.
pub(crate) struct Coordinator<'a> {
    store: CheckpointStore,
    job: String,
    key_groups: usize,
    stage_names: Vec<String>,
    stage_parallelism: Vec<usize>,
    /// Per stage, its sink connector (publishes staged transactions).
    sinks: Vec<Option<&'a dyn ErasedSink>>,
    schedule: Schedule,
    /// Checkpoints asked for on demand, and their outcomes.
    triggers: &'a Triggers,
    /// The checkpoint sources are asked to start (0 until the first one of this run).
    requested: AtomicU64,
    /// The highest checkpoint id used so far, by this run or earlier ones.
    last_id: AtomicU64,
    /// The final checkpoint's id, once a task reached the end of its input (0: not yet).
    final_id: AtomicU64,
    /// Records read by all sources so far (for `interval_records`).
    records: AtomicU64,
    /// The record count at which the next `interval_records` checkpoint is due (`u64::MAX`:
    /// none): the source batch that reaches it wakes the coordinator at once.
    records_due: AtomicU64,
    /// A checkpoint was committed since the last prune.
    prune_due: AtomicBool,
    /// The sources' record count when the last checkpoint was triggered.
    records_at_trigger: AtomicU64,
    /// Records of checkpoints that were triggered but not completed, counted in the next one
    /// that completes.
    records_carried: AtomicU64,
    completed: AtomicU64,
    /// Set once a newer run of the job claimed the store (see [`Coordinator::fenced`]).
    fenced: AtomicBool,
    /// The newer run, as [`Error::Fenced`] names it.
    newer: Mutex<Option<String>>,
    /// The first checkpoint that timed out waiting for snapshots, if any.
    stalled: Mutex<Option<Stalled>>,
    stats: Mutex<Vec<CheckpointStats>>,
    state: Mutex<State>,
    changed: Condvar,
    /// Where triggers and completions are announced (to worker processes), if anywhere.
    notices: Option<crossbeam_channel::Sender<Notice>>,
}

/// What a coordinator announces to the worker processes of its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// The sources are to start checkpoint `n`.
    Trigger(u64),
    /// Checkpoint `n` is complete.
    Completed(u64),
}

/// What a coordinator is made from.
pub(crate) struct CoordinatorSpec<'a> {
    /// Where checkpoints go.
    pub store: CheckpointStore,
    /// The job id.
    pub job: String,
    /// The job's key groups.
    pub key_groups: usize,
    /// Per stage (graph node): its name.
    pub stage_names: Vec<String>,
    /// Per stage: its parallelism.
    pub stage_parallelism: Vec<usize>,
    /// Per stage: its sink connector, if it is a sink.
    pub sinks: Vec<Option<&'a dyn ErasedSink>>,
    /// When checkpoints are taken.
    pub schedule: Schedule,
    /// Checkpoints asked for on demand, and their outcomes.
    pub triggers: &'a Triggers,
    /// The checkpoint the run restored from (0: none).
    pub last_completed: u64,
    /// The highest checkpoint id any earlier run used, complete or not.
    pub last_used: u64,
    /// Where triggers and completions are announced, if anywhere.
    pub notices: Option<crossbeam_channel::Sender<Notice>>,
}

impl<'a> Coordinator<'a> {
    pub(crate) fn new(spec: CoordinatorSpec<'a>) -> Coordinator<'a> {
        let CoordinatorSpec {
            store,
            job,
            key_groups,
            stage_names,
            stage_parallelism,
            sinks,
            schedule,
            triggers,
            last_completed,
            last_used,
            notices,
        } = spec;
        let records_due = schedule.interval_records.unwrap_or(u64::MAX);
        Coordinator {
            store,
            job,
            key_groups,
            stage_names,
            stage_parallelism,
            sinks,
            schedule,
            triggers,
            requested: AtomicU64::new(0),
            // New checkpoints never reuse an id: an earlier run may have left parts (or a
            // complete checkpoint newer than the one restored) under it.
            last_id: AtomicU64::new(last_used.max(last_completed)),
            final_id: AtomicU64::new(0),
            records: AtomicU64::new(0),
            records_due: AtomicU64::new(records_due),
            prune_due: AtomicBool::new(false),
            records_at_trigger: AtomicU64::new(0),
            records_carried: AtomicU64::new(0),
            completed: AtomicU64::new(last_completed),
            fenced: AtomicBool::new(false),
            newer: Mutex::new(None),
            stalled: Mutex::new(None),
            stats: Mutex::new(Vec::new()),
            state: Mutex::new(State {
                regular: None,
                last: None,
            }),
            changed: Condvar::new(),
            notices,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs until `stop` is set. `tasks` is the number of tasks of the job; `live` counts those
    /// not finished. Once the end of the input is reached anywhere, only the final checkpoint
    /// remains to be taken.
    ///
    /// A checkpoint whose every task has taken its snapshot is committed (its uploads awaited,
    /// its manifest written, its sinks' output published) on a thread of its own, while this one
    /// may trigger the next: at most one checkpoint aligns and one commits at a time, and they
    /// commit in id order.
    pub(crate) fn run(&self, tasks: usize, live: &AtomicUsize, stop: &AtomicBool) {
        // A rendezvous channel: handing over waits until the previous commit is done.
        let (to_commit, commits) = crossbeam_channel::bounded::<Aligned>(0);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for aligned in commits {
                    self.complete(aligned);
                }
            });
            self.trigger_loop(tasks, live, stop, &to_commit);
            drop(to_commit);
        });
    }

    fn trigger_loop(
        &self,
        tasks: usize,
        live: &AtomicUsize,
        stop: &AtomicBool,
        to_commit: &crossbeam_channel::Sender<Aligned>,
    ) {
        let mut last_time = Instant::now();
        let wait = || {
            let guard = self.lock();
            let _ = self.changed.wait_timeout(guard, Duration::from_millis(5));
        };
        while !stop.load(Ordering::Acquire) {
            let fenced = self.fenced.load(Ordering::Acquire);
            if fenced
                || self.final_id.load(Ordering::Acquire) != 0
                || live.load(Ordering::Acquire) < tasks
            {
                wait();
                continue;
            }
            let records = self.records.load(Ordering::Relaxed);
            let since = records - self.records_at_trigger.load(Ordering::Relaxed);
            let served = self.triggers.take_request();
            let due = served.is_some()
                || self
                    .schedule
                    .interval
                    .is_some_and(|i| last_time.elapsed() >= i)
                || self.schedule.interval_records.is_some_and(|n| since >= n);
            if !due {
                self.prune();
                wait();
                continue;
            }
            last_time = Instant::now();
            self.records_at_trigger.store(records, Ordering::Relaxed);
            if let Some(n) = self.schedule.interval_records {
                self.records_due
                    .store(records.saturating_add(n), Ordering::Relaxed);
            }
            // Ids only grow: the barriers of an abandoned checkpoint may still be in flight.
            let id = self.last_id.fetch_add(1, Ordering::AcqRel) + 1;
            match self.align(id, tasks, live, stop) {
                Some(inflight) => {
                    let aligned = Aligned {
                        inflight,
                        started: last_time,
                        alignment: last_time.elapsed(),
                        records: since,
                        served,
                    };
                    if let Err(unsent) = to_commit.send(aligned) {
                        // The committing thread is gone (it cannot be while this one runs).
                        self.complete(unsent.into_inner());
                    }
                }
                None => {
                    // Its records count in the next checkpoint that completes.
                    self.records_carried.fetch_add(since, Ordering::Relaxed);
                    if let Some(served) = served {
                        let reason = match self.stalled() {
                            Some(s) if s.id == id => format!(
                                "tasks {:?} took no snapshot within {:?}",
                                s.tasks, s.waited
                            ),
                            _ => "the job is ending".to_string(),
                        };
                        let failure = Failure {
                            id: Some(id),
                            reason,
                        };
                        self.triggers.report(served, Err(failure));
                    }
                }
            }
        }
    }

    /// Commits an aligned checkpoint and reports the outcome.
    fn complete(&self, aligned: Aligned) {
        let id = aligned.inflight.id;
        let served = aligned.served;
        let outcome = match self.commit(aligned.inflight) {
            Ok(bytes) => {
                let records = aligned.records + self.records_carried.swap(0, Ordering::Relaxed);
                self.log_complete(id, aligned.started, aligned.alignment, bytes, records);
                Ok(CheckpointId(id))
            }
            Err(e) => {
                if self.fenced.load(Ordering::Acquire) {
                    tracing::error!(job = %self.job, checkpoint = %CheckpointId(id), "{e}");
                } else {
                    tracing::warn!(
                        job = %self.job,
                        checkpoint = %CheckpointId(id),
                        "checkpoint failed, the job goes on: {e}"
                    );
                }
                self.records_carried
                    .fetch_add(aligned.records, Ordering::Relaxed);
                Err(Failure {
                    id: Some(id),
                    reason: e.to_string(),
                })
            }
        };
        if let Some(served) = served {
            self.triggers.report(served, outcome);
        }
    }

    fn log_complete(
        &self,
        id: u64,
        started: Instant,
        alignment: Duration,
        bytes: u64,
        records: u64,
    ) {
        let duration = started.elapsed();
        tracing::info!(
            job = %self.job,
            checkpoint = %CheckpointId(id),
            bytes,
            records,
            millis = duration.as_millis() as u64,
            alignment_millis = alignment.as_millis() as u64,
            "checkpoint complete"
        );
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.push(CheckpointStats {
            id,
            duration,
            alignment,
            records,
            bytes,
        });
    }

    /// The first checkpoint of this run that timed out waiting for its tasks' snapshots.
    pub(crate) fn stalled(&self) -> Option<Stalled> {
        self.stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Statistics of the checkpoints this run completed.
    pub(crate) fn stats(&self) -> Vec<CheckpointStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts regular checkpoint `id` and waits until every task has taken its snapshot;
    /// `None` if the job started draining first (the checkpoint is abandoned).
    fn align(
        &self,
        id: u64,
        tasks: usize,
        live: &AtomicUsize,
        stop: &AtomicBool,
    ) -> Option<Inflight> {
        self.lock().regular = Some(Inflight::new(id));
        self.requested.store(id, Ordering::Release);
        self.notify(Notice::Trigger(id));
        let started = Instant::now();
        let mut guard = self.lock();
        loop {
            let acks = guard.regular.as_ref().map_or(0, |f| f.acked.len());
            if acks == tasks {
                // Every part was handed over before its task's acknowledgement.
                return guard.regular.take();
            }
            let waited = started.elapsed();
            if waited >= self.schedule.timeout {
                let missing: Vec<usize> = match &guard.regular {
                    Some(f) => (0..tasks).filter(|t| !f.acked.contains(t)).collect(),
                    None => Vec::new(),
                };
                tracing::error!(
                    job = %self.job,
                    checkpoint = %CheckpointId(id),
                    "abandoned: tasks {missing:?} took no snapshot within {waited:?} (stuck?)"
                );
                guard.regular = None;
                drop(guard);
                let mut stalled = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
                stalled.get_or_insert(Stalled {
                    id,
                    tasks: missing,
                    waited,
                });
                return None;
            }
            let draining = self.final_id.load(Ordering::Acquire) != 0;
            if stop.load(Ordering::Acquire) || live.load(Ordering::Acquire) < tasks || draining {
                guard.regular = None;
                return None;
            }
            guard = self
                .changed
                .wait_timeout(guard, Duration::from_millis(5))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Waits for the uploads of `inflight`, writes its manifest, publishes its sink
    /// transactions, and asks for old checkpoints to be pruned. Returns the checkpoint's size in
    /// bytes.
    fn commit(&self, inflight: Inflight) -> Result<u64> {
        if let Some(e) = inflight.error {
            return Err(e);
        }
        let id = inflight.id;
        let started = Instant::now();
        self.check_fence()?;
        let mut manifest = Manifest::new(self.job.clone(), CheckpointId(id), self.key_groups);
        manifest.end_of_input = id == self.final_id.load(Ordering::Acquire);
        manifest.epoch = self.store.epoch();
        // The sinks' staged output is made durable, on a thread of its own, while the state's
        // parts upload and are made durable.
        let persist = || -> Result<()> {
            for (stage, transaction) in &inflight.transactions {
                if let Some(sink) = self.sinks.get(*stage).copied().flatten() {
                    sink.persist(transaction)?;
                }
            }
            Ok(())
        };
        let parts = inflight.uploads.len();
        let (bytes, uploaded) = std::thread::scope(|scope| -> Result<_> {
            let persisting = match inflight.transactions.is_empty() {
                true => None,
                false => Some(scope.spawn(persist)),
            };
            let persisted = || match persisting {
                None => Ok(()),
                Some(thread) => thread
                    .join()
                    .unwrap_or_else(|_| Err(Error::Internal("a sink's persist panicked".into()))),
            };
            let mut bytes = 0;
            for (stage, upload) in inflight.uploads {
                let info = match upload.wait() {
                    Ok(info) => info,
                    Err(e) => {
                        let _ = persisted();
                        return Err(e);
                    }
                };
                bytes += info.size;
                manifest.add_part(
                    self.stage_names[stage].clone(),
                    self.stage_parallelism[stage],
                    info,
                );
            }
            let uploaded = started.elapsed();
            self.store.commit_written(&self.job, &manifest, persisted)?;
            Ok((bytes, uploaded))
        })?;
        // A newer run that claimed the store before this manifest was written may not have seen
        // it: take the checkpoint back rather than publish what it covers beside that run.
        if let Some(newer) = self.store.newer_epoch(&self.job, self.store.epoch())? {
            if let Err(e) = self.store.uncommit(&self.job, CheckpointId(id)) {
                tracing::warn!(job = %self.job, checkpoint = %CheckpointId(id), "cannot take back the checkpoint: {e}");
            }
            return Err(self.fence(newer.to_string()));
        }
        self.completed.fetch_max(id, Ordering::AcqRel);
        self.notify(Notice::Completed(id));
        let committed = started.elapsed();
        // Committed: the sinks' staged output becomes visible. A failure from here on is redone
        // by a restore of this checkpoint (publishing is idempotent).
        for (stage, transaction) in &inflight.transactions {
            if let Some(sink) = self.sinks.get(*stage).copied().flatten() {
                sink.commit(transaction)?;
            }
        }
        self.prune_due.store(true, Ordering::Release);
        tracing::debug!(
            job = %self.job,
            checkpoint = %CheckpointId(id),
            parts,
            uploads_after_acks = ?uploaded,
            durable = ?committed - uploaded,
            sinks = ?started.elapsed() - committed,
            "checkpoint committed"
        );
        Ok(bytes)
    }

    /// After every task ran to completion: commits the final checkpoint.
    pub(crate) fn finish(&self, tasks: usize) -> Result<()> {
        let started = Instant::now();
        let inflight = self.lock().last.take();
        let Some(inflight) = inflight else {
            self.prune();
            return Ok(());
        };
        if inflight.acked.len() != tasks {
            return Err(Error::Internal(format!(
                "final checkpoint: {} of {tasks} tasks reported",
                inflight.acked.len()
            )));
        }
        let id = inflight.id;
        let bytes = self.commit(inflight)?;
        // Since the last trigger, and what triggered checkpoints that did not complete read.
        let records = self.records.load(Ordering::Relaxed)
            - self.records_at_trigger.load(Ordering::Relaxed)
            + self.records_carried.swap(0, Ordering::Relaxed);
        self.log_complete(id, started, Duration::ZERO, bytes, records);
        self.prune();
        Ok(())
    }

    /// Records that the newer run `newer` claimed the store, and returns the error this run
    /// stops with.
    fn fence(&self, newer: String) -> Error {
        *self.newer.lock().unwrap_or_else(|p| p.into_inner()) = Some(newer);
        self.fenced.store(true, Ordering::Release);
        self.changed.notify_all();
        self.fenced_error()
    }

    /// The error of a run a newer one took over from.
    fn fenced_error(&self) -> Error {
        let newer = self.newer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Error::Fenced {
            job: self.job.clone(),
            url: self.store.backend().url().to_string(),
            epoch: self.store.epoch(),
            newer: newer.unwrap_or_else(|| "a newer run".into()),
        }
    }

    /// Fails once a newer run took over.
    fn check_fence(&self) -> Result<()> {
        match self.fenced.load(Ordering::Acquire) {
            true => Err(self.fenced_error()),
            false => Ok(()),
        }
    }

    /// Deletes the checkpoints that `retain` no longer keeps, if one was committed since the
    /// last prune. A failure is a warning: the next prune (or the next run's) tries again.
    fn prune(&self) {
        if self.fenced.load(Ordering::Acquire) || !self.prune_due.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.store.prune(&self.job, self.schedule.retain) {
            tracing::warn!(job = %self.job, "pruning old checkpoints failed: {e}");
        }
    }

    fn notify(&self, notice: Notice) {
        if let Some(tx) = &self.notices {
            let _ = tx.send(notice);
        }
    }

    /// The id of the final checkpoint, allocated on first use.
    pub(crate) fn allocate_final_id(&self) -> u64 {
        let mut state = self.lock();
        let current = self.final_id.load(Ordering::Acquire);
        if current != 0 {
            return current;
        }
        let id = self.last_id.fetch_add(1, Ordering::AcqRel) + 1;
        state.last = Some(Inflight::new(id));
        self.final_id.store(id, Ordering::Release);
        drop(state);
        self.changed.notify_all();
        id
    }

    /// A worker process announces part `name` of stage `stage` of checkpoint `id`, which it is
    /// writing to the store itself, with the sink transactions it stages. Returns where to send
    /// the part's info once written (`None` when the checkpoint is not in flight any more): the
    /// commit waits for it, and fails naming `worker` when the sender goes away or it takes
    /// longer than [`REMOTE_PART_DEADLINE`].
    pub(crate) fn announce_part(
        &self,
        id: u64,
        stage: usize,
        name: String,
        transactions: Vec<String>,
        worker: &str,
    ) -> Option<crossbeam_channel::Sender<Result<PartInfo>>> {
        let mut state = self.lock();
        let inflight = Self::inflight(&mut state, id)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        inflight.uploads.push((
            stage,
            PendingPart::Remote {
                worker: worker.to_string(),
                name,
                rx,
            },
        ));
        inflight
            .transactions
            .extend(transactions.into_iter().map(|t| (stage, t)));
        Some(tx)
    }

    /// Records read by the sources of a worker process (drives `interval_records`).
    pub(crate) fn remote_records(&self, n: u64) {
        Checkpoints::records_read(self, n);
    }

    /// The in-flight checkpoint `id` is about, if any.
    fn inflight(state: &mut State, id: u64) -> Option<&mut Inflight> {
        if state.last.as_ref().is_some_and(|f| f.id == id) {
            return state.last.as_mut();
        }
        state.regular.as_mut().filter(|f| f.id == id)
    }
}

impl Checkpoints for Coordinator<'_> {
    fn enabled(&self) -> bool {
        true
    }

    fn fenced(&self) -> Result<()> {
        self.check_fence()
    }

    fn final_id(&self) -> Result<u64> {
        Ok(self.allocate_final_id())
    }

    fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    fn records_read(&self, n: u64) {
        let before = self.records.fetch_add(n, Ordering::Relaxed);
        let due = self.records_due.load(Ordering::Relaxed);
        if before < due && before.saturating_add(n) >= due {
            // Under the lock, so that the wake-up cannot fall between the coordinator's check
            // and its wait. Once per interval, not per batch.
            drop(self.lock());
            self.changed.notify_all();
        }
    }

    fn part(&self, id: u64, stage: usize, part: String, bytes: Vec<u8>) {
        let transactions = match self.sinks.get(stage).copied().flatten() {
            Some(_) => match codec::decode::<Vec<String>>(&bytes) {
                Ok(t) => t,
                Err(e) => {
                    if let Some(f) = Self::inflight(&mut self.lock(), id) {
                        f.error.get_or_insert(e);
                    }
                    return;
                }
            },
            None => Vec::new(),
        };
        let upload = self.store.start_write_part(
            &self.job,
            CheckpointId(id),
            &self.stage_names[stage],
            &part,
            bytes,
        );
        let mut state = self.lock();
        let Some(inflight) = Self::inflight(&mut state, id) else {
            return;
        };
        match upload {
            Ok(u) => inflight.uploads.push((stage, PendingPart::Upload(u))),
            Err(e) => {
                inflight.error.get_or_insert(e);
            }
        }
        inflight
            .transactions
            .extend(transactions.into_iter().map(|t| (stage, t)));
    }

    fn ack(&self, id: u64, task: TaskId) {
        if let Some(inflight) = Self::inflight(&mut self.lock(), id) {
            inflight.acked.insert(task);
        }
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_waits_for_a_checkpoint_triggered_after_it() {
        let triggers = Triggers::default();
        let first = triggers.request();
        assert_eq!(triggers.take_request(), Some(first));
        assert_eq!(triggers.take_request(), None, "taken once");
        // Asked while the checkpoint serving `first` is still in flight.
        let second = triggers.request();
        triggers.report(first, Ok(CheckpointId(7)));
        // `done` says the job ended at the first look: only an outcome already there that
        // serves the request is returned.
        let ended = || true;
        assert_eq!(triggers.wait_after(first, ended).unwrap(), CheckpointId(7));
        let e = triggers.wait_after(second, ended).unwrap_err();
        assert!(e.to_string().contains("ended before"), "{e}");
        assert_eq!(triggers.take_request(), Some(second));
        triggers.report(second, Ok(CheckpointId(8)));
        assert_eq!(triggers.wait_after(second, ended).unwrap(), CheckpointId(8));
        // An outcome serving older requests only never overwrites a newer one.
        triggers.report(first, Ok(CheckpointId(9)));
        assert_eq!(triggers.wait_after(second, ended).unwrap(), CheckpointId(8));
    }
}
