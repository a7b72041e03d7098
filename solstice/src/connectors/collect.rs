//! A sink collecting records in memory, for tests and for programs that embed a job and want
//! its results back.
//!
//! [`CollectSink`] is two-phase like the file sink, so what it hands back is exactly-once with
//! respect to restarts inside the process (`job.restart`, or `Job::restore_from` on a job built
//! with the same sink): each subtask buffers its records locally (no lock per record or batch),
//! stages them at each checkpoint's `pre_commit`, and they become visible when the checkpoint is
//! complete; what a failed attempt staged after the checkpoint it restarts from is discarded.
//! Without checkpoints, a subtask's records become visible when its input ends.
//!
//! Two ways to read the records:
//! - a sink built by [`CollectSink::from_config`] (the `#[sink]` function of a pipeline)
//!   registers itself with the job under its stage name, and
//!   [`JobResult::collected`](crate::job::JobResult::collected) takes its records;
//! - a sink built by [`CollectSink::new`] is a handle: keep a clone, hand the other to the job,
//!   and [`CollectSink::take`] the records after `run`.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::config::SinkConfig;
use crate::core::connector::{RunStart, Sink, SinkWriter};
use crate::core::Data;
use crate::error::{Error, Result};

/// `sinks.<name>:` of a [`CollectSink`]: it takes no settings (an entry, if any, must be
/// empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CollectOptions {}

/// The published position of the records a subtask handed over at end of stream without
/// staging them (jobs without checkpoints): after everything it staged.
const AT_END: u64 = u64::MAX;

/// Collects records in memory: see the [module docs](self).
pub struct CollectSink<T> {
    shared: Arc<Mutex<Collected<T>>>,
}

struct Collected<T> {
    /// Staged by `pre_commit`, by transaction, not yet published.
    staged: HashMap<String, Staged<T>>,
    /// Published records by (subtask, checkpoint): each subtask's in publication order.
    published: BTreeMap<(usize, u64), Vec<T>>,
}

struct Staged<T> {
    subtask: usize,
    checkpoint: u64,
    records: Vec<T>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        CollectSink {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        CollectSink {
            shared: Arc::new(Mutex::new(Collected {
                staged: HashMap::new(),
                published: BTreeMap::new(),
            })),
        }
    }
}

impl<T> std::fmt::Debug for CollectSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CollectSink")
    }
}

impl<T: Data> CollectSink<T> {
    /// An empty collecting sink; it and its clones share the records.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sink of `sinks.<stage>` ([`CollectOptions`]), registered with the job so that
    /// [`JobResult::collected`](crate::job::JobResult::collected) hands its records back.
    pub fn from_config(cfg: &SinkConfig) -> Result<Self> {
        let CollectOptions {} = cfg.options()?;
        let sink = Self::new();
        cfg.outputs.register(cfg.stage(), Box::new(sink.clone()))?;
        Ok(sink)
    }

    fn lock(&self) -> MutexGuard<'_, Collected<T>> {
        // A panic while holding the lock leaves the maps consistent (no step is half done).
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the published records, subtask after subtask, each subtask's in the order it
    /// wrote them. Records staged but not yet committed stay behind.
    pub fn take(&self) -> Vec<T> {
        let published = std::mem::take(&mut self.lock().published);
        let mut out = Vec::with_capacity(published.values().map(Vec::len).sum());
        for mut records in published.into_values() {
            out.append(&mut records);
        }
        out
    }

    /// Takes the published records of each subtask (index: subtask), in the order it wrote
    /// them.
    pub fn take_by_subtask(&self) -> Vec<Vec<T>> {
        let published = std::mem::take(&mut self.lock().published);
        let mut out: Vec<Vec<T>> = Vec::new();
        for ((subtask, _), mut records) in published {
            if out.len() <= subtask {
                out.resize_with(subtask + 1, Vec::new);
            }
            out[subtask].append(&mut records);
        }
        out
    }
}

impl<T: Data> Sink for CollectSink<T> {
    type Item = T;
    type Writer = CollectWriter<T>;

    fn open(&self, subtask: usize, _parallelism: usize) -> Result<CollectWriter<T>> {
        Ok(CollectWriter {
            sink: self.clone(),
            subtask,
            buffer: Vec::new(),
        })
    }

    fn commit(&self, transaction: &str) -> Result<()> {
        let mut collected = self.lock();
        // Absent: published already (committing is idempotent), or staged by another process.
        if let Some(staged) = collected.staged.remove(transaction) {
            let mut records = staged.records;
            collected
                .published
                .entry((staged.subtask, staged.checkpoint))
                .or_default()
                .append(&mut records);
        }
        Ok(())
    }

    /// A new run drops what was staged (and, starting over, what was published); a restored
    /// one drops what was staged outside the restored checkpoint and what was published after
    /// it. Records taken already are the caller's.
    fn begin(&self, start: &RunStart<'_>) -> Result<()> {
        let mut collected = self.lock();
        match *start {
            RunStart::New { fresh, .. } => {
                collected.staged.clear();
                if fresh {
                    collected.published.clear();
                }
            }
            RunStart::Restore {
                checkpoint,
                published,
                ..
            } => {
                collected
                    .staged
                    .retain(|transaction, _| published.contains(transaction));
                collected
                    .published
                    .retain(|&(_, published_at), _| published_at <= checkpoint);
            }
        }
        Ok(())
    }
}

/// One subtask of a [`CollectSink`]: buffers its records until they are staged or handed over.
pub struct CollectWriter<T> {
    sink: CollectSink<T>,
    subtask: usize,
    buffer: Vec<T>,
}

impl<T> std::fmt::Debug for CollectWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectWriter")
            .field("subtask", &self.subtask)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl<T: Data> SinkWriter<T> for CollectWriter<T> {
    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        self.buffer.append(batch);
        Ok(())
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<String>> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let transaction = format!("collect-{}-{checkpoint}", self.subtask);
        let staged = Staged {
            subtask: self.subtask,
            checkpoint,
            records: std::mem::take(&mut self.buffer),
        };
        self.sink.lock().staged.insert(transaction.clone(), staged);
        Ok(Some(transaction))
    }

    fn finish(&mut self) -> Result<()> {
        // With checkpoints the final pre_commit staged everything; without, this publishes.
        if !self.buffer.is_empty() {
            let mut collected = self.sink.lock();
            collected
                .published
                .entry((self.subtask, AT_END))
                .or_default()
                .append(&mut self.buffer);
        }
        Ok(())
    }
}

/// The collecting sinks of one job, by stage name: how [`CollectSink::from_config`] hands its
/// records to the job's result.
#[derive(Clone, Default)]
pub(crate) struct Outputs {
    sinks: Arc<Mutex<BTreeMap<String, Box<dyn Any + Send>>>>,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outputs")
    }
}

impl Outputs {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Box<dyn Any + Send>>> {
        self.sinks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the sink of stage `stage` (a `CollectSink<T>`).
    fn register(&self, stage: &str, sink: Box<dyn Any + Send>) -> Result<()> {
        if self.lock().insert(stage.to_string(), sink).is_some() {
            return Err(Error::Collected {
                stage: stage.to_string(),
                reason: "two collecting sinks registered under this name".into(),
            });
        }
        Ok(())
    }

    /// Takes the published records of the collecting sink of stage `stage`.
    pub(crate) fn take<T: Data>(&self, stage: &str) -> Result<Vec<T>> {
        let sinks = self.lock();
        let sink = sinks.get(stage).ok_or_else(|| Error::Collected {
            stage: stage.to_string(),
            reason: format!(
                "no collecting sink has this name (collecting sinks: {})",
                if sinks.is_empty() {
                    "none".to_string()
                } else {
                    sinks.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
        })?;
        let sink = sink
            .downcast_ref::<CollectSink<T>>()
            .ok_or_else(|| Error::Collected {
                stage: stage.to_string(),
                reason: format!(
                    "its records are not of type `{}`",
                    std::any::type_name::<T>()
                ),
            })?;
        Ok(sink.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_records_are_visible_on_commit_only_and_discarded_on_restore() {
        let sink = CollectSink::<u32>::new();
        let mut w = sink.open(0, 1).unwrap();
        w.write_batch(&mut vec![1, 2]).unwrap();
        let t1 = w.pre_commit(1).unwrap().unwrap();
        w.write_batch(&mut vec![3]).unwrap();
        let t2 = w.pre_commit(2).unwrap().unwrap();
        assert_eq!(
            w.pre_commit(3).unwrap(),
            None,
            "nothing new: nothing staged"
        );
        assert!(sink.take().is_empty(), "staged is not visible");
        sink.commit(&t1).unwrap();
        sink.commit(&t1).unwrap();
        assert_eq!(sink.take(), vec![1, 2]);
        // A restore to checkpoint 1 drops what checkpoint 2 staged.
        sink.begin(&RunStart::Restore {
            job: "j",
            checkpoint: 1,
            published: std::slice::from_ref(&t1),
            epoch: 1,
        })
        .unwrap();
        sink.commit(&t2).unwrap();
        assert!(sink.take().is_empty());
    }

    #[test]
    fn each_subtask_in_publication_order() {
        let sink = CollectSink::<u32>::new();
        let mut a = sink.open(0, 2).unwrap();
        let mut b = sink.open(1, 2).unwrap();
        b.write_batch(&mut vec![10]).unwrap();
        a.write_batch(&mut vec![1]).unwrap();
        let (ta, tb) = (a.pre_commit(4).unwrap(), b.pre_commit(4).unwrap());
        a.write_batch(&mut vec![2]).unwrap();
        let ta2 = a.pre_commit(5).unwrap().unwrap();
        // Commits out of order still publish each subtask's records in its order.
        sink.commit(&ta2).unwrap();
        sink.commit(&tb.unwrap()).unwrap();
        sink.commit(&ta.unwrap()).unwrap();
        b.write_batch(&mut vec![11]).unwrap();
        b.finish().unwrap();
        assert_eq!(sink.take_by_subtask(), vec![vec![1, 2], vec![10, 11]]);
    }

    #[test]
    fn result_lookup_names_the_stage_and_type() {
        let outputs = Outputs::default();
        let cfg = crate::config::Config::default()
            .sink_config("out")
            .with_job(Default::default(), outputs.clone());
        let sink = CollectSink::<u32>::from_config(&cfg).unwrap();
        let mut w = sink.open(0, 1).unwrap();
        w.write_batch(&mut vec![7]).unwrap();
        w.finish().unwrap();
        let e = outputs.take::<u64>("out").unwrap_err().to_string();
        assert!(e.contains("`out`") && e.contains("u64"), "{e}");
        let e = outputs.take::<u32>("outt").unwrap_err().to_string();
        assert!(e.contains("collecting sinks: out"), "{e}");
        assert_eq!(outputs.take::<u32>("out").unwrap(), vec![7]);
    }
}
