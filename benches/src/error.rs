//! The error type of the benchmark library.

use std::path::{Path, PathBuf};

/// Result alias of the benchmark library.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// What can go wrong generating data, running a workload or reading its output back.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An I/O error on a file or directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON line that could not be decoded or encoded.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// Solstice failed to build or run a job.
    #[error("solstice: {0}")]
    Engine(#[from] solstice::Error),
    /// Reading or writing Parquet failed.
    #[error("parquet: {0}")]
    Parquet(String),
    /// A worker thread of a hand-written implementation panicked.
    #[error("a worker thread panicked")]
    WorkerPanic,
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

impl BenchError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A JSON error in `path`.
    pub fn json(path: impl AsRef<Path>, source: serde_json::Error) -> Self {
        BenchError::Json {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
