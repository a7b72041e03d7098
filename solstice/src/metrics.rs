//! Named counters of a job (e.g. `orders.skipped`), updated by connectors and reported in the
//! job result; and the meters of its stages' subtasks and tasks, counted per batch and per task
//! run (never per record), reported under the same names (`stage.NAME.SUBTASK.FIELD`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The meters of a job's subtasks, by stage name and subtask index.
type Meters = BTreeMap<(String, usize), Arc<SubtaskMeter>>;

/// A registry of named counters shared by everything in one job.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    counters: Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>,
    meters: Arc<Mutex<Meters>>,
}

impl Metrics {
    /// The counter called `name`, created at zero on first use.
    pub fn counter(&self, name: &str) -> Arc<AtomicU64> {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_string()).or_default().clone()
    }

    /// The meter of subtask `subtask` of stage `stage`, created on first use; the same one for
    /// every attempt of the job in this process, so that its counts only grow.
    pub(crate) fn meter(&self, stage: &str, subtask: usize) -> Arc<SubtaskMeter> {
        let mut map = self.meters.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((stage.to_string(), subtask))
            .or_insert_with(|| Arc::new(SubtaskMeter::new()))
            .clone()
    }

    /// The current value of every counter, and of every meter's fields as
    /// `stage.NAME.SUBTASK.FIELD` (see [`SubtaskMeter::fields`]).
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = {
            let map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            map.iter()
                .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
                .collect()
        };
        let map = self.meters.lock().unwrap_or_else(|p| p.into_inner());
        for ((stage, subtask), meter) in map.iter() {
            for (field, value) in meter.fields() {
                out.insert(format!("stage.{stage}.{subtask}.{field}"), value);
            }
        }
        out
    }
}

/// Adds `n` to a counter that only one thread writes at a time (the thread running the task
/// that owns it; the task's lock orders successive runs): a load and a store, no locked
/// read-modify-write on the hot path.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// What one subtask of a stage did: records and batches in and out, counted per batch by the
/// chain around it, and, from the executor, the time its task (the chain it is part of) spent
/// waiting for input (idle) and waiting for room downstream (backpressured). Aligned to a cache
/// line, so that subtasks on different threads never share one.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct SubtaskMeter {
    records_in: AtomicU64,
    batches_in: AtomicU64,
    records_out: AtomicU64,
    batches_out: AtomicU64,
    /// Nanoseconds its task waited on empty inputs (a source: for a split).
    idle_ns: AtomicU64,
    /// Nanoseconds its task waited on a full output.
    backpressured_ns: AtomicU64,
    /// Nanoseconds its tasks existed, summed over attempts (up to now for a running one).
    alive_ns: AtomicU64,
    /// When the running attempt's task began, as nanoseconds since `epoch` (0: none running).
    running_since: AtomicU64,
    epoch: Instant,
}

impl SubtaskMeter {
    fn new() -> Self {
        SubtaskMeter {
            records_in: AtomicU64::new(0),
            batches_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            batches_out: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
            alive_ns: AtomicU64::new(0),
            running_since: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// A batch of `n` records came in.
    #[inline]
    pub(crate) fn batch_in(&self, n: usize) {
        bump(&self.records_in, n as u64);
        bump(&self.batches_in, 1);
    }

    /// A batch of `n` records went out.
    #[inline]
    pub(crate) fn batch_out(&self, n: usize) {
        bump(&self.records_out, n as u64);
        bump(&self.batches_out, 1);
    }

    /// Its task waited `ns` nanoseconds, for input (`idle`) or for room downstream.
    pub(crate) fn waited(&self, ns: u64, idle: bool) {
        match idle {
            true => bump(&self.idle_ns, ns),
            false => bump(&self.backpressured_ns, ns),
        }
    }

    /// A task of this subtask begins (an attempt deployed it).
    pub(crate) fn task_started(&self) {
        let now = (self.epoch.elapsed().as_nanos() as u64).max(1);
        self.running_since.store(now, Ordering::Relaxed);
    }

    /// Its task ended (finished, or its attempt stopped).
    pub(crate) fn task_ended(&self) {
        let since = self.running_since.swap(0, Ordering::Relaxed);
        if since > 0 {
            let now = self.epoch.elapsed().as_nanos() as u64;
            self.alive_ns
                .fetch_add(now.saturating_sub(since), Ordering::Relaxed);
        }
    }

    /// Its fields by name: `records_in`, `batches_in`, `records_out`, `batches_out`, `idle_ns`,
    /// `backpressured_ns`, `alive_ns` (the busy time is what is left of `alive_ns`).
    pub(crate) fn fields(&self) -> [(&'static str, u64); 7] {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let since = load(&self.running_since);
        let running = match since {
            0 => 0,
            s => (self.epoch.elapsed().as_nanos() as u64).saturating_sub(s),
        };
        [
            ("records_in", load(&self.records_in)),
            ("batches_in", load(&self.batches_in)),
            ("records_out", load(&self.records_out)),
            ("batches_out", load(&self.batches_out)),
            ("idle_ns", load(&self.idle_ns)),
            ("backpressured_ns", load(&self.backpressured_ns)),
            ("alive_ns", load(&self.alive_ns) + running),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_are_reported_under_their_stage_and_subtask() {
        let metrics = Metrics::default();
        let m = metrics.meter("parse", 1);
        m.batch_in(10);
        m.batch_in(5);
        m.batch_out(7);
        m.waited(100, true);
        m.waited(30, false);
        assert!(Arc::ptr_eq(&m, &metrics.meter("parse", 1)));
        let s = metrics.snapshot();
        assert_eq!(s["stage.parse.1.records_in"], 15);
        assert_eq!(s["stage.parse.1.batches_in"], 2);
        assert_eq!(s["stage.parse.1.records_out"], 7);
        assert_eq!(s["stage.parse.1.batches_out"], 1);
        assert_eq!(s["stage.parse.1.idle_ns"], 100);
        assert_eq!(s["stage.parse.1.backpressured_ns"], 30);
        m.task_started();
        m.task_ended();
        assert!(metrics.snapshot().contains_key("stage.parse.1.alive_ns"));
    }
}
