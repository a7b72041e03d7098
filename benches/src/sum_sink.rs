//! A sink that sums `u64` records: each subtask writes the wrapping sum and count of its records
//! to `sum-{subtask:05}.txt` in the sink's directory when its input ends; [`read_sums`] adds them
//! up after the job.

use std::path::{Path, PathBuf};

use solstice::prelude::*;

use crate::error::BenchError;

/// `sinks.<stage>` of a [`SumSink`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SumSinkOptions {
    /// The directory of the sum files.
    path: PathBuf,
}

/// Sums the `u64` records it receives (see the module docs).
#[derive(Clone, Debug)]
pub struct SumSink {
    dir: PathBuf,
}

impl SumSink {
    /// The sink configured by `sinks.<stage>.path` (the directory of the sum files).
    pub fn from_config(cfg: &SinkConfig) -> Result<SumSink> {
        let SumSinkOptions { path } = cfg.options()?;
        Ok(SumSink { dir: path })
    }

    /// A sink writing its sum files into `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> SumSink {
        SumSink { dir: dir.into() }
    }
}

impl Sink for SumSink {
    type Item = u64;
    type Writer = SumWriter;

    fn open(&self, subtask: usize, _parallelism: usize) -> Result<SumWriter> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::Io {
            path: self.dir.clone(),
            source: e,
        })?;
        Ok(SumWriter {
            path: self.dir.join(format!("sum-{subtask:05}.txt")),
            sum: 0,
            count: 0,
        })
    }
}

/// One subtask of a [`SumSink`].
#[derive(Debug)]
pub struct SumWriter {
    path: PathBuf,
    sum: u64,
    count: u64,
}

impl SinkWriter<u64> for SumWriter {
    fn write_batch(&mut self, batch: &mut Vec<u64>) -> Result<()> {
        self.sum = batch.iter().fold(self.sum, |s, &x| s.wrapping_add(x));
        self.count += batch.len() as u64;
        batch.clear();
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        std::fs::write(&self.path, format!("{} {}\n", self.sum, self.count)).map_err(|e| {
            Error::Io {
                path: self.path.clone(),
                source: e,
            }
        })
    }
}

/// The wrapping sum and the count of all records a [`SumSink`] received, from its sum files in
/// `dir`.
pub fn read_sums(dir: &Path) -> crate::Result<(u64, u64)> {
    let (mut sum, mut count) = (0u64, 0u64);
    let entries = std::fs::read_dir(dir).map_err(|e| BenchError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BenchError::io(dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with("sum-") {
            continue;
        }
        let path = entry.path();
        let text = std::fs::read_to_string(&path).map_err(|e| BenchError::io(&path, e))?;
        let bad = || BenchError::Other(format!("{}: not `sum count`: {text:?}", path.display()));
        let (s, c) = text.trim().split_once(' ').ok_or_else(bad)?;
        sum = sum.wrapping_add(s.parse().map_err(|_| bad())?);
        count += c.parse::<u64>().map_err(|_| bad())?;
    }
    Ok((sum, count))
}
