//! The interfaces between operators and the runtime: batches flow through `BatchSink`s inside a
//! task; the runtime schedules `Task`s and hands each run a [`Cx`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::Result;

/// Index of a task in the running job.
pub(crate) type TaskId = usize;

/// What a task's run reports to the executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// More work is ready: run again later (the task used up its slice).
    Yield,
    /// Waiting for input (an empty channel, a split not yet handed out); it will be woken.
    Wait,
    /// Waiting for room in a full output channel (backpressure); it will be woken.
    Blocked,
    /// Finished: end-of-stream was handled and all output delivered.
    Done,
}

/// Wakes tasks; implemented by the executor.
pub(crate) trait Wake {
    /// Makes `task` runnable (a no-op if it is already queued).
    fn wake(&self, task: TaskId);
}

/// Where tasks report checkpoint work; implemented by the checkpoint coordinator.
pub(crate) trait Checkpoints: Sync {
    /// True when the job takes checkpoints (end of stream is then the final checkpoint).
    fn enabled(&self) -> bool;
    /// [`crate::Error::Fenced`] once a newer run of the job took over its checkpoint store:
    /// sources return it, which stops the job.
    fn fenced(&self) -> Result<()>;
    /// The id of the job's final checkpoint, taken at end of stream: every task reports its
    /// last snapshot under it when its input ends (allocated on first use; in a worker process,
    /// asked of the coordinator, which can fail).
    fn final_id(&self) -> Result<u64>;
    /// The newest complete checkpoint (0: none).
    fn completed(&self) -> u64;
    /// The newest checkpoint the coordinator asked sources to start (0: none yet).
    fn requested(&self) -> u64;
    /// A source read `n` more records (drives `interval_records`).
    fn records_read(&self, n: u64);
    /// Stores one part of checkpoint `id`: stage (graph node) `stage`, part name `part`.
    fn part(&self, id: u64, stage: usize, part: String, bytes: Vec<u8>);
    /// Task `task` has taken its snapshot for checkpoint `id` and forwarded the barrier.
    fn ack(&self, id: u64, task: TaskId);
}

/// The coordinator of a job without checkpoints: nothing is ever requested.
pub(crate) struct NoCheckpoints;

impl Checkpoints for NoCheckpoints {
    fn enabled(&self) -> bool {
        false
    }
    fn fenced(&self) -> Result<()> {
        Ok(())
    }
    fn final_id(&self) -> Result<u64> {
        Ok(0)
    }
    fn completed(&self) -> u64 {
        0
    }
    fn requested(&self) -> u64 {
        0
    }
    fn records_read(&self, _: u64) {}
    fn part(&self, _: u64, _: usize, _: String, _: Vec<u8>) {}
    fn ack(&self, _: u64, _: TaskId) {}
}

/// A split handed to a source subtask: its name and, when the checkpoint restored had it part
/// read, where to resume.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Assignment {
    /// The split's name ([`crate::core::connector::Source::splits`]).
    pub split: String,
    /// The position to resume at (`None`: from its start).
    pub resume: Option<u64>,
}

/// Where source tasks get their splits: the job's split assigner, in this process or, in a
/// worker process, behind the connection to the coordinator.
pub(crate) trait SplitFeed: Send + Sync {
    /// The next split for subtask `subtask` of source stage `stage`, run by task `task`:
    /// `Ready(Some(_))`; `Ready(None)` once every split is handed out; or `Pending`: asked, and
    /// `task` is woken when the answer is there (the next call returns it).
    fn next(
        &self,
        stage: usize,
        subtask: usize,
        task: TaskId,
    ) -> Result<std::task::Poll<Option<Assignment>>>;
}

/// Counters shared by all tasks of a job, updated per batch (never per record).
#[derive(Debug, Default)]
pub(crate) struct JobCounters {
    /// Data batches sent to a channel and not yet received.
    pub in_flight: AtomicUsize,
    /// The highest value `in_flight` reached.
    pub peak_in_flight: AtomicUsize,
}

impl JobCounters {
    pub(crate) fn batch_sent(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn batch_received(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The context of one task run.
pub(crate) struct Cx<'a> {
    pub(crate) waker: &'a dyn Wake,
    pub(crate) task: TaskId,
    /// The stage (graph node) currently processing, for naming it in panics.
    pub(crate) stage: usize,
    pub(crate) subtask: usize,
    pub(crate) counters: &'a JobCounters,
    /// Final keyed states handed over by stateful subtasks at end of stream: (stage, the
    /// subtask's `KeyedState`, codec-encoded).
    pub(crate) final_states: &'a Mutex<Vec<(usize, Vec<u8>)>>,
    /// The checkpoint coordinator.
    pub(crate) checkpoints: &'a dyn Checkpoints,
}

/// A push-based consumer of record batches: an operator (which forwards to the next one), a sink,
/// or the channel writer at the end of a chain.
///
/// Operators drain `batch`; the caller reuses its allocation.
pub(crate) trait BatchSink<T>: Send {
    /// Consumes all records of `batch`.
    fn push(&mut self, batch: &mut Vec<T>, cx: &mut Cx<'_>) -> Result<()>;
    /// Sends partly filled output buffers downstream (the input went idle).
    fn flush_partial(&mut self, cx: &mut Cx<'_>) -> Result<()>;
    /// Hands pending output to channels. `false`: a channel is full and the task will be woken.
    fn try_flush(&mut self, cx: &mut Cx<'_>) -> Result<bool>;
    /// End of stream: flush state, finish files, send end markers.
    fn end(&mut self, cx: &mut Cx<'_>) -> Result<()>;
    /// Checkpoint barrier `id`: snapshot state (through `cx.checkpoints`), then pass the barrier
    /// on, after every record that came before it.
    fn checkpoint(&mut self, id: u64, cx: &mut Cx<'_>) -> Result<()>;
}

/// A schedulable unit: one subtask of a chain.
pub(crate) trait Task: Send {
    /// Runs a bounded slice of work.
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step>;
}
