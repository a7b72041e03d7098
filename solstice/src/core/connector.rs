//! The traits connectors implement. A source splits its input across subtasks; a sink writes one
//! output per subtask.

use crate::core::Data;
use crate::error::Result;

/// A bounded source of records, read in parallel by `parallelism` subtasks.
pub trait Source: Send + 'static {
    /// The record type produced.
    type Item: Data;
    /// The reader of one subtask.
    type Reader: SourceReader<Self::Item>;

    /// Called once when the job starts, before any reader opens (not by `--explain`): e.g. to
    /// truncate a dead-letter file.
    fn start(&self) -> Result<()> {
        Ok(())
    }

    /// Opens the reader of `subtask` out of `parallelism`. Subtasks read disjoint parts of the
    /// input whose union is the whole input.
    fn open(&self, subtask: usize, parallelism: usize) -> Result<Self::Reader>;
}

/// Reads the part of a source assigned to one subtask.
pub trait SourceReader<T>: Send + 'static {
    /// Appends at most `max` records to `out`. Returns `false` once the input is exhausted.
    fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool>;
}

/// A destination of records, written by `parallelism` subtasks.
pub trait Sink: Send + 'static {
    /// The record type consumed.
    type Item: Data;
    /// The writer of one subtask.
    type Writer: SinkWriter<Self::Item>;

    /// Opens the writer of `subtask` out of `parallelism`.
    fn open(&self, subtask: usize, parallelism: usize) -> Result<Self::Writer>;
}

/// Writes the records of one sink subtask.
pub trait SinkWriter<T>: Send + 'static {
    /// Writes all records of `batch`, draining it.
    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()>;
    /// Completes the output (e.g. renames a file into place). Called once, at end of stream.
    fn finish(&mut self) -> Result<()>;
}
