//! What a finished job reports.

use std::any::Any;
use std::time::Duration;

use crate::connectors::collect::Outputs;
use crate::core::Data;
use crate::error::{Error, Result};
use crate::runtime::coordinator::CheckpointStats;
use crate::state::keyed::{Key, KeyedState, StateValue};

/// What a finished job reports.
pub struct JobResult {
    /// Wall-clock time of the run.
    pub duration: Duration,
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
    /// The job's counters, e.g. `orders.skipped`: records a source skipped under `on_error: skip`.
    pub counters: std::collections::BTreeMap<String, u64>,
    pub(super) final_states: Vec<(String, Box<dyn Any + Send>)>,
    /// The collecting sinks built by
    /// [`CollectSink::from_config`](crate::connectors::CollectSink::from_config), by stage name.
    pub(super) outputs: Outputs,
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
    /// Takes the final keyed state of stateful stage `stage`, merged over its subtasks.
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
            let part = state.downcast::<KeyedState<K, S>>().map_err(|_| {
                Error::Internal(format!("state of stage `{stage}` has another type"))
            })?;
            merged.merge(*part);
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
