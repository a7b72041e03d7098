//! The checkpoint coordinator of one job run (DESIGN.md §4).
//!
//! It triggers checkpoint `n` at the sources (every `interval_secs`, every `interval_records`
//! records read, or on demand), collects the snapshot parts tasks hand it while their uploads run
//! in the background, and the tasks' acknowledgements. When every task has taken its snapshot and
//! every part is durable, it writes the manifest (create-only) and prunes old checkpoints. One
//! checkpoint is in flight at a time. A checkpoint that fails (an upload error, the job draining
//! before every task saw the barrier) is abandoned with a warning; the job goes on.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::core::task::{Checkpoints, TaskId};
use crate::error::{Error, Result};
use crate::state::checkpoint::{CheckpointStore, PartUpload};
use crate::state::manifest::{CheckpointId, Manifest};

/// When checkpoints are taken.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    pub interval: Option<Duration>,
    pub interval_records: Option<u64>,
    pub retain: usize,
}

struct Inflight {
    id: u64,
    acked: Vec<bool>,
    acks: usize,
    uploads: Vec<(usize, PartUpload)>,
    error: Option<Error>,
}

/// Coordinates the checkpoints of one job run.
pub(crate) struct Coordinator {
    store: CheckpointStore,
    job: String,
    key_groups: usize,
    stage_names: Vec<String>,
    stage_parallelism: Vec<usize>,
    schedule: Schedule,
    /// The checkpoint sources are asked to start (0 until the first one of this run).
    requested: AtomicU64,
    /// The highest checkpoint id used so far, by this run or earlier ones.
    last_id: AtomicU64,
    /// Records read by all sources so far (for `interval_records`).
    records: AtomicU64,
    completed: AtomicU64,
    inflight: Mutex<Option<Inflight>>,
    changed: Condvar,
}

impl Coordinator {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: CheckpointStore,
        job: String,
        key_groups: usize,
        stage_names: Vec<String>,
        stage_parallelism: Vec<usize>,
        schedule: Schedule,
        last_completed: u64,
        last_used: u64,
    ) -> Coordinator {
        Coordinator {
            store,
            job,
            key_groups,
            stage_names,
            stage_parallelism,
            schedule,
            requested: AtomicU64::new(0),
            // New checkpoints never reuse an id: an earlier run may have left parts (or a
            // complete checkpoint newer than the one restored) under it.
            last_id: AtomicU64::new(last_used.max(last_completed)),
            records: AtomicU64::new(0),
            completed: AtomicU64::new(last_completed),
            inflight: Mutex::new(None),
            changed: Condvar::new(),
        }
    }

    /// The newest complete checkpoint of this run (or the one it restored from; 0: none).
    pub(crate) fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Inflight>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs until `stop` is set. `tasks` is the number of tasks of the job; `live` counts those
    /// not finished: a job whose tasks have started to finish is draining and takes no more
    /// checkpoints (its finished tasks could not acknowledge them).
    pub(crate) fn run(&self, tasks: usize, live: &AtomicUsize, stop: &AtomicBool) {
        let mut last_time = Instant::now();
        let mut last_records = 0;
        while !stop.load(Ordering::Acquire) {
            {
                let guard = self.lock();
                let _ = self.changed.wait_timeout(guard, Duration::from_millis(5));
            }
            if live.load(Ordering::Acquire) < tasks {
                continue;
            }
            let records = self.records.load(Ordering::Relaxed);
            let due = self
                .schedule
                .interval
                .is_some_and(|i| last_time.elapsed() >= i)
                || self
                    .schedule
                    .interval_records
                    .is_some_and(|n| records.saturating_sub(last_records) >= n);
            if !due {
                continue;
            }
            last_time = Instant::now();
            last_records = records;
            // Ids only grow: the barriers of an abandoned checkpoint may still be in flight.
            let id = self.last_id.fetch_add(1, Ordering::AcqRel) + 1;
            match self.checkpoint(id, tasks, live, stop) {
                Ok(Some(manifest)) => {
                    let bytes: u64 = manifest
                        .stages
                        .values()
                        .flat_map(|s| s.parts.iter().map(|p| p.size))
                        .sum();
                    tracing::info!(
                        job = %self.job,
                        checkpoint = %CheckpointId(id),
                        bytes,
                        millis = last_time.elapsed().as_millis() as u64,
                        "checkpoint complete"
                    );
                    self.completed.store(id, Ordering::Release);
                    if let Err(e) = self.store.prune(&self.job, self.schedule.retain) {
                        tracing::warn!(job = %self.job, "pruning old checkpoints failed: {e}");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(job = %self.job, checkpoint = %CheckpointId(id), "checkpoint failed, the job goes on: {e}");
                }
            }
        }
    }

    /// Takes checkpoint `id`: `Ok(None)` if the job started draining before every task saw the
    /// barrier.
    fn checkpoint(
        &self,
        id: u64,
        tasks: usize,
        live: &AtomicUsize,
        stop: &AtomicBool,
    ) -> Result<Option<Manifest>> {
        *self.lock() = Some(Inflight {
            id,
            acked: vec![false; tasks],
            acks: 0,
            uploads: Vec::new(),
            error: None,
        });
        self.requested.store(id, Ordering::Release);
        let mut guard = self.lock();
        loop {
            let Some(inflight) = guard.as_ref() else {
                return Err(Error::Internal("checkpoint state vanished".into()));
            };
            if inflight.acks == tasks {
                break;
            }
            if stop.load(Ordering::Acquire) || live.load(Ordering::Acquire) < tasks {
                *guard = None;
                return Ok(None);
            }
            guard = self
                .changed
                .wait_timeout(guard, Duration::from_millis(5))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let inflight = guard
            .take()
            .ok_or_else(|| Error::Internal("checkpoint state vanished".into()))?;
        drop(guard);
        if let Some(e) = inflight.error {
            return Err(e);
        }
        let mut manifest = Manifest::new(self.job.clone(), CheckpointId(id), self.key_groups);
        for (stage, upload) in inflight.uploads {
            let info = upload.wait()?;
            manifest.add_part(
                self.stage_names[stage].clone(),
                self.stage_parallelism[stage],
                info,
            );
        }
        self.store.commit(&self.job, &manifest)?;
        Ok(Some(manifest))
    }
}

impl Checkpoints for Coordinator {
    fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    fn records_read(&self, n: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
    }

    fn part(&self, id: u64, stage: usize, part: String, bytes: Vec<u8>) {
        let upload = self.store.start_write_part(
            &self.job,
            CheckpointId(id),
            &self.stage_names[stage],
            &part,
            bytes,
        );
        let mut guard = self.lock();
        let Some(inflight) = guard.as_mut().filter(|f| f.id == id) else {
            return;
        };
        match upload {
            Ok(u) => inflight.uploads.push((stage, u)),
            Err(e) => {
                inflight.error.get_or_insert(e);
            }
        }
    }

    fn ack(&self, id: u64, task: TaskId) {
        let mut guard = self.lock();
        if let Some(inflight) = guard.as_mut().filter(|f| f.id == id) {
            if let Some(seen) = inflight.acked.get_mut(task) {
                if !*seen {
                    *seen = true;
                    inflight.acks += 1;
                }
            }
        }
        drop(guard);
        self.changed.notify_all();
    }
}
