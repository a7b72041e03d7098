//! The one error type of the library.
//!
//! Every variant carries the context a user needs to act: the stage and subtask, the file and line,
//! the config key. Binaries print it as one paragraph.

use std::path::PathBuf;

/// Result alias used throughout Solstice.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong building or running a job.
///
/// `Debug` prints the message and its causes, so `fn main() -> solstice::Result<()>` reports a
/// readable paragraph rather than a struct dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The YAML configuration (or a `--set` override) is invalid.
    #[error("config error in {file}: {message}")]
    Config {
        /// The config file (or `--set` for command-line overrides).
        file: String,
        /// What is wrong, naming the key.
        message: String,
    },

    /// The pipeline graph cannot be planned (e.g. a parallelism of zero).
    #[error("invalid job: {0}")]
    Plan(String),

    /// An I/O error on a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// No input files matched a source's path.
    #[error("source `{stage}`: no input files match {pattern}")]
    NoInput {
        /// The source stage.
        stage: String,
        /// The path or glob that matched nothing.
        pattern: String,
    },

    /// A record could not be decoded from an input file.
    #[error("{}:{line}: {reason}", path.display())]
    BadRecord {
        /// The input file.
        path: PathBuf,
        /// The 1-based line (or row) number.
        line: u64,
        /// Why the record was rejected.
        reason: String,
    },

    /// A Parquet row could not be decoded.
    #[error("{}: row group {row_group}, row {row}: {reason}", path.display())]
    BadRow {
        /// The input file.
        path: PathBuf,
        /// The row group (0-based).
        row_group: usize,
        /// The row within the row group (0-based).
        row: usize,
        /// Why the row was rejected.
        reason: String,
    },

    /// A file is not in the expected format (e.g. a corrupt Parquet footer).
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A record could not be encoded for an output.
    #[error("sink `{stage}`: cannot encode record: {reason}")]
    Encode {
        /// The sink stage.
        stage: String,
        /// Why encoding failed.
        reason: String,
    },

    /// A user's stage function panicked.
    #[error("stage `{stage}` (subtask {subtask}) panicked: {message}")]
    StagePanic {
        /// The stage whose function panicked.
        stage: String,
        /// The subtask index.
        subtask: usize,
        /// The panic payload, when it was a string.
        message: String,
    },

    /// A stage returned an error.
    #[error("stage `{stage}` (subtask {subtask}) failed: {source}")]
    Stage {
        /// The failing stage.
        stage: String,
        /// The subtask index.
        subtask: usize,
        /// The underlying error.
        #[source]
        source: Box<Error>,
    },

    /// Encoding or decoding state failed.
    #[error("codec error: {0}")]
    Codec(String),

    /// A state backend (object store) operation failed: unreachable, denied, misconfigured.
    #[error("state backend {}: {message}", location(url, path))]
    Backend {
        /// The backend's URL (`file:///…`, `s3://bucket/prefix`, …).
        url: String,
        /// The object (relative to the backend's root) the operation was about; may be empty.
        path: String,
        /// What went wrong.
        message: String,
    },

    /// A create-only write found the object already there (e.g. a checkpoint committed twice).
    #[error("{} already exists", location(url, path))]
    AlreadyExists {
        /// The backend's URL.
        url: String,
        /// The object, relative to the backend's root.
        path: String,
    },

    /// An object that was read does not exist.
    #[error("{} does not exist", location(url, path))]
    NotFound {
        /// The backend's URL.
        url: String,
        /// The object, relative to the backend's root.
        path: String,
    },

    /// An object is larger than the caller allows to read into memory.
    #[error(
        "{} is {size} bytes, more than the read limit of {limit} bytes",
        location(url, path)
    )]
    TooLarge {
        /// The backend's URL.
        url: String,
        /// The object, relative to the backend's root.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The limit the read was given.
        limit: u64,
    },

    /// A checkpoint that was asked for has no manifest: it never completed, or was pruned.
    #[error(
        "checkpoint {checkpoint} of job `{job}` does not exist in {url} \
         (it has no manifest: never completed, or pruned)"
    )]
    CheckpointNotFound {
        /// The job id.
        job: String,
        /// The checkpoint, as `chk-00000012`.
        checkpoint: String,
        /// The backend's URL.
        url: String,
    },

    /// A checkpoint file is truncated, corrupt, or not a Solstice file.
    #[error("checkpoint file {path} is corrupt: {reason}")]
    CorruptCheckpoint {
        /// The file's full location (backend URL and path).
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A job has complete checkpoints, but every one of them is corrupt: restoring from none of
    /// them (starting afresh) would repeat output, so this is an error.
    #[error(
        "job `{job}` has {count} complete checkpoint(s) in {url}, but none can be restored: \
         {reasons}"
    )]
    NoValidCheckpoint {
        /// The job id.
        job: String,
        /// The backend's URL.
        url: String,
        /// How many complete checkpoints were tried.
        count: usize,
        /// Why each was rejected, newest first.
        reasons: String,
    },

    /// A run without `--restore` (or `--fresh`) of a job that has complete checkpoints: it
    /// would publish its output a second time next to what the checkpoints published.
    #[error(
        "job `{job}` has complete checkpoints in {url} (newest: {latest}{}); to resume from \
         it run with `--restore latest`, to start over with `--fresh` (discards the job's \
         checkpoints and the output its sinks published)",
        if *finished { ", taken at the end of the input: the job ran to completion" } else { "" }
    )]
    CheckpointsExist {
        /// The job id.
        job: String,
        /// The checkpoint backend's URL.
        url: String,
        /// The newest complete checkpoint, as `chk-00000012`.
        latest: String,
        /// Whether that checkpoint was taken at the end of the input.
        finished: bool,
    },

    /// A sink's output already holds data that the run starting does not account for (an
    /// earlier run's, another job's), and its mode says to refuse (`sinks.<stage>.mode`).
    #[error("{key}: {message} (from {origin})")]
    OutputExists {
        /// The config key of the output, `sinks.<stage>.path`.
        key: String,
        /// The config file, or the `--set` that set the key.
        origin: String,
        /// What is there, whose it is, and the ways on.
        message: String,
    },

    /// A checkpoint asked for was not taken: the job takes no checkpoints, the checkpoint failed
    /// (an upload or commit error; the job goes on), or the job ended before it was taken.
    #[error("checkpoint{} not taken: {reason}", checkpoint_name(*id))]
    Checkpoint {
        /// The checkpoint's id, when one was allocated.
        id: Option<u64>,
        /// Why it was not taken.
        reason: String,
    },

    /// A newer run of the job claimed its checkpoint store: this run stops, publishing nothing
    /// more, so that the two never both publish output.
    #[error(
        "job `{job}` was started again elsewhere: {newer} took over its checkpoints in {url}; \
         this run (epoch {epoch}) stops without publishing anything more"
    )]
    Fenced {
        /// The job id.
        job: String,
        /// The checkpoint backend's URL.
        url: String,
        /// This run's epoch.
        epoch: u64,
        /// The newer run: its epoch, host, process and start.
        newer: String,
    },

    /// A name that becomes part of a checkpoint path (job id, stage, part) is not usable there.
    #[error("invalid {what} `{name}` for a checkpoint path: {reason}")]
    InvalidName {
        /// What the name names: "job id", "stage name", "part name".
        what: &'static str,
        /// The name.
        name: String,
        /// What is allowed.
        reason: String,
    },

    /// The records of a collecting sink cannot be handed back: no such sink, or another type.
    #[error("collected records of sink `{stage}`: {reason}")]
    Collected {
        /// The sink stage asked for.
        stage: String,
        /// What is wrong.
        reason: String,
    },

    /// A connection to another process of the job failed: the peer went away, fell silent,
    /// broke the wire protocol, or reported an error of its own.
    #[error("connection to {peer}: {message}")]
    Transport {
        /// The peer: its address, and its identity once the handshake told it.
        peer: String,
        /// What went wrong.
        message: String,
    },

    /// A worker process of the job failed: a task of it failed (`message` says how), or the
    /// worker itself did.
    #[error("{worker}: {message}")]
    Worker {
        /// The worker: its index, host and process id.
        worker: String,
        /// What failed there.
        message: String,
        /// A restart of the job can get past it (a stage's error or panic, a backend hiccup).
        restartable: bool,
    },

    /// A worker process of the job went away: it exited, was killed, or fell silent for longer
    /// than `runtime.heartbeat_ms`.
    #[error("{worker} was lost: {reason}")]
    WorkerLost {
        /// The worker: its index, host and process id.
        worker: String,
        /// How it was noticed.
        reason: String,
    },

    /// A run was stopped before it ended: its coordinator cancelled it.
    #[error("cancelled: {reason}")]
    Cancelled {
        /// Why.
        reason: String,
    },

    /// A connection to another process was refused while it was being set up: not a Solstice
    /// peer, another protocol version, the wrong job secret, or another build or configuration.
    #[error("handshake with {peer}: {message}")]
    Handshake {
        /// The peer's address (and identity, when the refusal came after it was told).
        peer: String,
        /// Why the connection was refused.
        message: String,
    },

    /// A runtime invariant was broken (a bug in Solstice, reported rather than panicking).
    #[error("internal error: {0}")]
    Internal(String),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            // Stage errors already print their cause inline.
            if !matches!(self, Error::Stage { .. } | Error::Io { .. }) {
                write!(f, "\n  caused by: {cause}")?;
            }
            source = cause.source();
        }
        Ok(())
    }
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Config`].
    pub fn config(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            file: file.into(),
            message: message.into(),
        }
    }
}

/// ` chk-00000012` for a checkpoint id, nothing without one.
fn checkpoint_name(id: Option<u64>) -> String {
    id.map(|n| format!(" {}", crate::state::manifest::CheckpointId(n)))
        .unwrap_or_default()
}

/// `url/path` for messages, without doubling the slash between them.
pub(crate) fn location(url: &str, path: &str) -> String {
    if path.is_empty() || url.ends_with('/') {
        format!("{url}{path}")
    } else {
        format!("{url}/{path}")
    }
}
