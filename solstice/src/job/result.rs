//! What a finished job reports.

use std::time::Duration;

use crate::connectors::collect::Outputs;
use crate::core::{Data, StageKind};
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
    /// `orders.splits.3`: the splits source subtask 3 pulled in the last run;
    /// `stage.NAME.SUBTASK.FIELD`: the meters [`JobResult::stages`] sums up.
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Per stage, in the graph's order: what its subtasks did (all zero with
    /// `runtime.metrics: false`).
    pub stages: Vec<StageFigures>,
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
        stages: &[(String, StageKind, usize)],
        outputs: Outputs,
    ) -> Self {
        let stages = stages
            .iter()
            .map(|(name, kind, parallelism)| StageFigures::of(name, *kind, *parallelism, &counters))
            .collect();
        JobResult {
            stages,
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

    /// The end-of-run summary the command line prints: one row per stage (records in and out,
    /// busy / idle / backpressured shares), then the run's duration, checkpoints and restarts.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let width = self
            .stages
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!(
            "{:<width$}  {:<8}  {:>3}  {:>12}  {:>12}  {:>5}  {:>5}  {:>5}\n",
            "stage", "kind", "par", "records in", "records out", "busy", "idle", "back"
        );
        let pct = |x: f64| format!("{:.0}%", x * 100.0);
        for s in &self.stages {
            let _ = writeln!(
                out,
                "{:<width$}  {:<8}  {:>3}  {:>12}  {:>12}  {:>5}  {:>5}  {:>5}",
                s.name,
                s.kind.attribute(),
                s.parallelism,
                s.records_in,
                s.records_out,
                pct(s.busy),
                pct(s.idle),
                pct(s.backpressured)
            );
        }
        let checkpoints = match (self.checkpoints.len(), self.last_checkpoint) {
            (0, None) => "none".to_string(),
            (n, Some(last)) => format!(
                "{n} this run, last complete {}",
                crate::state::manifest::CheckpointId(last)
            ),
            (n, None) => format!("{n}"),
        };
        let _ = writeln!(
            out,
            "duration {:.3}s; checkpoints: {checkpoints}; restarts: {}",
            self.duration.as_secs_f64(),
            self.restarts
        );
        out
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

/// What one stage's subtasks did over the run, summed (records and batches) or over their
/// summed lifetimes (the ratios). Records are counted per batch at the stage's entrance and exit
/// in the chain; a source has no input, a sink no output. The counts include records a restored
/// attempt read again. Times come from the executor: a chained stage shares its task's.
#[derive(Clone, Debug, PartialEq)]
pub struct StageFigures {
    /// The stage's name.
    pub name: String,
    /// Its kind.
    pub kind: StageKind,
    /// Subtasks it ran with.
    pub parallelism: usize,
    /// Records that came in.
    pub records_in: u64,
    /// Records that went out.
    pub records_out: u64,
    /// Batches that came in.
    pub batches_in: u64,
    /// Batches that went out.
    pub batches_out: u64,
    /// Of its subtasks' time, the share spent waiting for input.
    pub idle: f64,
    /// The share spent waiting for room downstream.
    pub backpressured: f64,
    /// What is left: the share spent working (or ready to, waiting for a thread).
    pub busy: f64,
}

impl StageFigures {
    /// Stage `name`'s figures from the meters in `counters`.
    pub(crate) fn of(
        name: &str,
        kind: StageKind,
        parallelism: usize,
        counters: &std::collections::BTreeMap<String, u64>,
    ) -> StageFigures {
        let sum = |field: &str| -> u64 {
            (0..parallelism)
                .map(|i| {
                    counters
                        .get(&format!("stage.{name}.{i}.{field}"))
                        .copied()
                        .unwrap_or(0)
                })
                .sum()
        };
        let alive = sum("alive_ns") as f64;
        let share = |ns: u64| {
            if alive > 0.0 {
                (ns as f64 / alive).min(1.0)
            } else {
                0.0
            }
        };
        let idle = share(sum("idle_ns"));
        let backpressured = share(sum("backpressured_ns"));
        StageFigures {
            name: name.to_string(),
            kind,
            parallelism,
            records_in: sum("records_in"),
            records_out: sum("records_out"),
            batches_in: sum("batches_in"),
            batches_out: sum("batches_out"),
            idle,
            backpressured,
            busy: if alive > 0.0 {
                (1.0 - idle - backpressured).max(0.0)
            } else {
                0.0
            },
        }
    }
}
