//! The traits connectors implement. A source cuts its input into splits, which its subtasks pull
//! one at a time; a sink writes one output per subtask.

use crate::core::Data;
use crate::error::Result;

/// A bounded source of records, read in parallel by its subtasks.
///
/// The input is cut into *splits* ([`Source::splits`]): a byte range of a file, a row group, a
/// chunk of a range. Splits are not dealt out up front: each subtask asks the job's coordinator
/// for a split, reads it to the end with a [`SourceReader`], and asks for the next, so that a
/// faster or less loaded subtask (or worker process) reads more of the input. The split a subtask
/// holds, and its reader's position in it, are what a checkpoint records of the source; a split
/// that no subtask had started when the checkpoint was taken goes back to the pool on restore,
/// at whatever parallelism the job then runs.
pub trait Source: Send + Sync + 'static {
    /// The record type produced.
    type Item: Data;
    /// The reader of one split.
    type Reader: SourceReader<Self::Item>;

    /// Called once when the job starts, before any reader opens (not by `--explain`): e.g. to
    /// truncate a dead-letter file.
    fn start(&self) -> Result<()> {
        Ok(())
    }

    /// The splits of the input, in reading order, by name. The names are unique within the
    /// source and the same in every process and every run over the same input: checkpoints
    /// record positions under them, and a worker process opens a split by the name the
    /// coordinator hands it.
    fn splits(&self) -> Result<Vec<String>>;

    /// Opens a reader of split `split` (one of the names [`Source::splits`] returned): from its
    /// start, or with `resume` at a position a reader of that split reported
    /// ([`SourceReader::position`]) when a checkpoint was taken. A name this source does not
    /// know is an error that names it (e.g. a worker that sees other files than the
    /// coordinator).
    fn open(&self, split: &str, resume: Option<u64>) -> Result<Self::Reader>;
}

/// Progress of a source through its splits, as a checkpoint records it: split name → position
/// (format-specific: a byte offset, a row count, the next value), [`FINISHED`] for a split read
/// to the end. Splits absent from the map had not been started.
pub type Positions = std::collections::BTreeMap<String, u64>;

/// The position of a split that has been read completely.
pub const FINISHED: u64 = u64::MAX;

/// Reads one split of a source.
pub trait SourceReader<T>: Send + 'static {
    /// Appends at most `max` records to `out`. Returns `false` once the split is read to the
    /// end (the records appended by that call included).
    fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool>;

    /// How far the reader got in its split: the `resume` value with which [`Source::open`]
    /// continues right after the last record read (never [`FINISHED`]).
    fn position(&self) -> Result<u64>;
}

/// A destination of records, written by `parallelism` subtasks.
///
/// The sink itself is shared by its subtasks' writers (and by the coordinator, which calls
/// [`Sink::commit`]); see [`SinkWriter`] for the calls a writer receives.
pub trait Sink: Send + Sync + 'static {
    /// The record type consumed.
    type Item: Data;
    /// The writer of one subtask.
    type Writer: SinkWriter<Self::Item>;

    /// Opens the writer of `subtask` out of `parallelism`; called for every subtask of every
    /// run (a restart opens new writers).
    fn open(&self, subtask: usize, parallelism: usize) -> Result<Self::Writer>;

    /// Publishes a transaction that a writer's [`SinkWriter::pre_commit`] staged, once its
    /// checkpoint is complete (possibly after the writer's [`SinkWriter::finish`]). Idempotent:
    /// after a failure it may run again for the same transaction. The default does nothing
    /// (sinks without transactions).
    fn commit(&self, _transaction: &str) -> Result<()> {
        Ok(())
    }

    /// Makes a transaction that a writer's [`SinkWriter::pre_commit`] staged durable. Called
    /// for each transaction of a checkpoint before the checkpoint's manifest is written, on the
    /// coordinator's committing thread while the state's uploads run, so that `pre_commit`, on
    /// the barrier's path, need not wait for the disk. A transaction a previous checkpoint
    /// listed too may be published already by then: that is not an error. The default does
    /// nothing (for writers whose `pre_commit` makes its output durable itself).
    fn persist(&self, _transaction: &str) -> Result<()> {
        Ok(())
    }

    /// Before a run begins, for every sink, before any of them is [begun](Sink::begin): refuses
    /// a start that would mix the run's output with output already there that `start` does not
    /// account for (an earlier run's, another job's), naming what it found and the ways on.
    /// Changes nothing. The default accepts every start (sinks that keep no output between
    /// runs).
    fn check_start(&self, _start: &RunStart<'_>) -> Result<()> {
        Ok(())
    }

    /// Before a run begins, after every sink accepted it in [`Sink::check_start`]: makes the
    /// output what `start` says it is. For [`RunStart::New`], the output of the job discarded
    /// with `fresh` and whatever the sink's mode says goes; for [`RunStart::Restore`], output
    /// staged by any transaction not among the published ones (committed again just before),
    /// and output published after the restored checkpoint, so that nothing an aborted attempt
    /// wrote after it survives. The default does nothing.
    fn begin(&self, _start: &RunStart<'_>) -> Result<()> {
        Ok(())
    }
}

/// How a run of a job begins, as its sinks see it ([`Sink::check_start`], [`Sink::begin`]).
#[derive(Clone, Copy, Debug)]
pub enum RunStart<'a> {
    /// From the beginning of the input, nothing restored.
    New {
        /// The job id.
        job: &'a str,
        /// Starting over (`--fresh`): the output this job published before is discarded.
        fresh: bool,
        /// This run's epoch (see [`RunStart::epoch`]).
        epoch: u64,
    },
    /// After checkpoint `checkpoint` of the job (0: a restart before any checkpoint completed).
    Restore {
        /// The job id.
        job: &'a str,
        /// The checkpoint restored.
        checkpoint: u64,
        /// This sink's transactions in that checkpoint, all published when `begin` is called.
        published: &'a [String],
        /// This run's epoch (see [`RunStart::epoch`]).
        epoch: u64,
    },
}

impl RunStart<'_> {
    /// The job id.
    pub fn job(&self) -> &str {
        match self {
            RunStart::New { job, .. } | RunStart::Restore { job, .. } => job,
        }
    }

    /// The run's epoch: with checkpoints, a number unique to this run among all runs of the job
    /// on its checkpoint store, higher than every earlier run's (0 without checkpoints). A sink
    /// that names its staging files after it never shares a file with another run of the same
    /// job still running (a restart while the old process lives on, a job started twice).
    pub fn epoch(&self) -> u64 {
        match self {
            RunStart::New { epoch, .. } | RunStart::Restore { epoch, .. } => *epoch,
        }
    }
}

/// What a sink does with output it finds when a new run starts (`sinks.<stage>.mode`), after
/// Spark's save modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkMode {
    /// Refuse to start while the output holds anything this run does not account for
    /// (Spark's `errorifexists`; the default).
    #[default]
    Error,
    /// Remove what is there and write the new output in its place.
    Overwrite,
    /// Keep what is there and add the new output next to it, under names that cannot collide.
    Append,
}

/// Writes the records of one sink subtask.
///
/// # Lifecycle
///
/// One lifecycle, the same whether or not the job takes checkpoints:
///
/// 1. [`Sink::open`] creates the writer;
/// 2. [`write_batch`](SinkWriter::write_batch) is called for each batch of input, and, only in
///    a job that takes checkpoints (`job.checkpoint`), [`pre_commit(n)`](SinkWriter::pre_commit)
///    at each checkpoint barrier `n` (ids increase);
/// 3. at end of stream: in a job that takes checkpoints, one last `pre_commit` (the end of the
///    stream is the job's final checkpoint); then [`finish`](SinkWriter::finish), always,
///    exactly once.
///
/// So a writer that only implements `write_batch` and `finish` (the default `pre_commit`
/// stages nothing) sees all its data in both modes: `finish` completes the output. A
/// transactional writer stages everything in `pre_commit`, and its `finish` only releases what
/// is left (the final `pre_commit` has staged the tail); [`Sink::commit`] publishes each staged
/// transaction once its checkpoint is complete.
///
/// When a run fails, its writers are dropped without `finish`; on restart, new writers are
/// opened and [`Sink::begin`] drops what the failed run staged or published after the
/// checkpoint restored.
pub trait SinkWriter<T>: Send + 'static {
    /// Writes all records of `batch`, draining it.
    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()>;

    /// Completes the output (e.g. flushes it, renames a file into place): called once, at end
    /// of stream, after the final [`pre_commit`](SinkWriter::pre_commit) when the job takes
    /// checkpoints.
    fn finish(&mut self) -> Result<()>;

    /// Checkpoint `checkpoint` (in a job that takes checkpoints, the end of the stream is one
    /// too, the final one, followed by [`finish`](SinkWriter::finish)): stages everything
    /// written since the previous one, not yet visible (durable by itself, or once
    /// [`Sink::persist`] has run), and returns the transaction
    /// that [`Sink::commit`] publishes once the checkpoint is complete. The default stages
    /// nothing: what was written becomes visible as the writer writes it or at `finish`
    /// (at-least-once sinks).
    fn pre_commit(&mut self, _checkpoint: u64) -> Result<Option<String>> {
        Ok(None)
    }
}
