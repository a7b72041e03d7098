//! What a finished job reports.

use std::time::Duration;

use crate::connectors::collect::Outputs;
use crate::core::Data;
use crate::error::{Error, Result};
use crate::runtime::coordinator::CheckpointStats;
use crate::runtime::supervisor::RunReport;
use crate::state::codec;
use crate::state::keyed::{Key, KeyedState, StateValue};

/// What a finished job reports.
pub struct JobResult {
    /// Wall-clock time of the run.
    pub duration: Duration,
    /// The part of `duration` until the job's worker processes had all joined (zero when it
    /// ran in one process): spawning them, or on a cluster manager, placing and starting them.
    pub startup: Duration,
    /// Number of channels between tasks (one per sending and receiving subtask pair).
    pub channels: usize,
    /// The batches all channels can hold together.
    pub buffer_capacity: usize,
    /// The most data batches that were buffered between tasks at any moment.
    pub peak_batches_in_flight: usize,
    /// Number of tasks that ran.
    pub tasks: usize,
    /// The newest complete checkpoint when the job ended (including one it restored from).
    pub last_checkpoint: Option<u64>,
    /// Restarts after failures (`job.restart`).
    pub restarts: usize,
    /// The checkpoints the (last) run completed, with their duration and size.
    pub checkpoints: Vec<CheckpointStats>,
    /// The job's counters, e.g. `orders.skipped`: records a source skipped under `on_error: skip`;
    /// `orders.splits.3`: the splits source subtask 3 pulled in the last run.
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Per stateful subtask: its stage and its final keyed state, codec-encoded.
    final_states: Vec<(String, Vec<u8>)>,
    /// The collecting sinks built by
    /// [`CollectSink::from_config`](crate::connectors::CollectSink::from_config), by stage name.
    outputs: Outputs,
}

impl std::fmt::Debug for JobResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobResult")
            .field("duration", &self.duration)
            .field("tasks", &self.tasks)
            .field("peak_batches_in_flight", &self.peak_batches_in_flight)
            .finish()
    }
}

impl JobResult {
    /// The result of a run, with the job's counters.
    pub(super) fn new(
        report: RunReport,
        counters: std::collections::BTreeMap<String, u64>,
        outputs: Outputs,
    ) -> Self {
        JobResult {
            duration: report.duration,
            startup: report.startup,
            channels: report.channels,
            buffer_capacity: report.buffer_capacity,
            peak_batches_in_flight: report.peak_batches_in_flight,
            tasks: report.tasks,
            last_checkpoint: report.last_checkpoint,
            restarts: report.restarts,
            checkpoints: report.checkpoints,
            counters,
            final_states: report.final_states,
            outputs,
        }
    }

    /// Takes the final keyed state of stateful stage `stage`, merged over its subtasks: each
    /// subtask handed it over encoded with [`codec`], as it would cross a process boundary.
    pub fn take_state<K: Key, S: StateValue>(&mut self, stage: &str) -> Result<KeyedState<K, S>> {
        let mut merged = KeyedState::default();
        let mut found = false;
        let mut rest = Vec::new();
        for (name, state) in self.final_states.drain(..) {
            if name != stage {
                rest.push((name, state));
                continue;
            }
            found = true;
            let part: KeyedState<K, S> = codec::decode(&state)
                .map_err(|e| Error::Internal(format!("final state of stage `{stage}`: {e}")))?;
            merged.merge(part);
        }
        self.final_states = rest;
        if !found {
            return Err(Error::Internal(format!(
                "no final state for stage `{stage}`"
            )));
        }
        Ok(merged)
    }

    /// Takes the records of collecting sink `stage` (one built by
    /// [`CollectSink::from_config`](crate::connectors::CollectSink::from_config)): those
    /// published, subtask after subtask, each subtask's in the order it wrote them. A second call
    /// returns what was published since (nothing, after `run`). Fails when no collecting sink
    /// has that name or its records are not `T`.
    pub fn collected<T: Data>(&mut self, stage: &str) -> Result<Vec<T>> {
        self.outputs.take(stage)
    }
}
