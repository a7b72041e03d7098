//! The supervisor of a job: runs it to completion, restoring from a checkpoint when asked and
//! restarting from the last complete one after a failure (`job.restart`).
//!
//! One attempt opens the checkpoint to restore, prepares the sinks' output (refusing a start
//! that would publish output twice, recovering the restored checkpoint's transactions), deploys the
//! plan, and runs the executor next to the checkpoint coordinator. What the attempt reports goes
//! back to the job as a [`RunReport`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cluster::{AttemptSpec, Cluster, ClusterSpec};
use super::coordinator::{CheckpointStats, Coordinator, CoordinatorSpec, Schedule, Triggers};
use super::deploy::{deploy, Begin};
use super::executor;
use super::placement::Placement;
use super::splits::SplitPool;
use crate::config::Config;
use crate::core::connector::{Positions, RunStart};
use crate::core::graph::{Graph, NodeImpl};
use crate::core::plan::PhysicalPlan;
use crate::core::task::{Checkpoints, JobCounters, NoCheckpoints};
use crate::core::StageKind;
use crate::error::{Error, Result};
use crate::state::checkpoint::{CheckpointStore, OpenCheckpoint};
use crate::state::manifest::CheckpointId;

/// Which checkpoint a job restores from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// The newest complete checkpoint that can be opened (none: start from the beginning).
    Latest,
    /// Checkpoint `n` (`chk-0000000n`).
    Id(u64),
}

impl std::str::FromStr for Restore {
    type Err = Error;
    /// `latest`, or a checkpoint id as [`CheckpointId`] parses it (`12`, `chk-00000012`).
    fn from_str(s: &str) -> Result<Restore> {
        if s == "latest" {
            return Ok(Restore::Latest);
        }
        s.parse::<CheckpointId>()
            .map(|id| Restore::Id(id.0))
            .map_err(|_| {
                Error::config(
                    "--restore",
                    format!("`{s}` is not `latest` or a checkpoint id"),
                )
            })
    }
}

/// How a job's run begins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// From the beginning of the input. Refused when the job has complete checkpoints (its
    /// output would be published twice), and by a sink whose output already holds data its
    /// mode does not allow.
    #[default]
    New,
    /// From the beginning, after discarding the job's checkpoints and the output its sinks
    /// published before (`--fresh`).
    Fresh,
    /// From a checkpoint (`--restore`).
    Restore(Restore),
}

/// The checkpoint store of a job configured by `config`, when `job.checkpoint` is set.
pub(crate) fn checkpoint_store(config: &Config) -> Result<Option<CheckpointStore>> {
    match (&config.job.checkpoint, config.checkpoint_url()) {
        (Some(c), Some(url)) => Ok(Some(CheckpointStore::from_url(&url, &c.options)?)),
        _ => Ok(None),
    }
}

/// What a run of a job reports (the job adds its counters).
pub(crate) struct RunReport {
    /// Wall-clock time of the run, restarts included.
    pub duration: Duration,
    /// The part of `duration` before the first attempt's workers had all joined (zero in one
    /// process).
    pub startup: Duration,
    /// Channels between tasks of the last attempt.
    pub channels: usize,
    /// The batches all channels of the last attempt can hold together.
    pub buffer_capacity: usize,
    /// The most data batches buffered between tasks at any moment of the last attempt.
    pub peak_batches_in_flight: usize,
    /// Tasks of the plan.
    pub tasks: usize,
    /// Restarts after failures.
    pub restarts: usize,
    /// The checkpoints the last attempt completed.
    pub checkpoints: Vec<CheckpointStats>,
    /// The newest complete checkpoint when the job ended.
    pub last_checkpoint: Option<u64>,
    /// Per stateful subtask: its stage's name and its final keyed state, codec-encoded.
    pub final_states: Vec<(String, Vec<u8>)>,
    /// Counters of the worker processes (summed), when the job ran on workers.
    pub worker_counters: Vec<(String, u64)>,
}

/// Runs one job: its plan, configuration and on-demand checkpoint requests.
pub(crate) struct Supervisor<'a> {
    /// The job id.
    pub id: &'a str,
    /// The job's logical graph: its stages and their connectors.
    pub graph: &'a Graph,
    /// The physical plan of `graph`.
    pub plan: &'a PhysicalPlan,
    /// The job's configuration.
    pub config: &'a Config,
    /// Checkpoints asked for on demand, shared with the job's [`crate::job::Runner`].
    pub triggers: &'a Triggers,
    /// The job's worker processes, when it runs on workers rather than in this process.
    pub cluster: Option<&'a ClusterSpec>,
    /// The job's counters and its stages' meters.
    pub metrics: &'a crate::metrics::Metrics,
}

impl Supervisor<'_> {
    /// Runs the job to completion on `runtime.threads` threads, beginning as `start` says, and
    /// restarting from the latest checkpoint after a restartable failure.
    pub(crate) fn run(&self, start: Start) -> Result<RunReport> {
        let started = Instant::now();
        tracing::info!(
            job = %self.id,
            threads = self.config.threads(),
            tasks = self.plan.task_count(),
            "job starting"
        );
        let restart = self.config.job.restart.clone();
        // The run's epoch is claimed before anything is listed or restored: an older run still
        // going then either completed its checkpoint before (and this run sees it) or sees this
        // epoch before publishing it (and stops).
        let store = match checkpoint_store(self.config)? {
            Some(store) => {
                let claim = store.claim_epoch(self.id)?;
                tracing::debug!(job = %self.id, "claimed {claim}");
                Some(store.with_epoch(claim.epoch))
            }
            None => None,
        };
        let mut cluster = match self.cluster {
            Some(spec) => Some(Cluster::start(spec.clone())?),
            None => None,
        };
        let mut attempt = 0;
        let mut startup = None;
        // An attempt that failed before it ran (its workers did not all join) leaves the start
        // as it was: `--fresh` must still discard, a new run still begins anew.
        let mut runs = 0;
        loop {
            let this = if runs > 0 {
                Start::Restore(Restore::Latest)
            } else {
                start
            };
            let ready = match &mut cluster {
                Some(cluster) => cluster.ready(attempt == 0),
                None => Ok(()),
            };
            if ready.is_ok() && cluster.is_some() {
                startup.get_or_insert_with(|| started.elapsed());
            }
            let outcome = ready
                .and_then(|()| self.fence(store.as_ref()))
                .and_then(|()| {
                    runs += 1;
                    self.run_once(this, runs - 1, attempt, store.as_ref(), cluster.as_mut())
                });
            match outcome {
                Ok(mut report) => {
                    report.duration = started.elapsed();
                    report.startup = startup.unwrap_or_default();
                    report.restarts = attempt;
                    if let Some(cluster) = cluster {
                        cluster.shutdown();
                    }
                    return Ok(report);
                }
                Err(e) if matches!(e, Error::Fenced { .. }) => return Err(e),
                Err(e) => {
                    // A run that failed because a newer one took its files away says so.
                    if let Err(fenced) = self.fence(store.as_ref()) {
                        tracing::warn!(job = %self.id, "this run failed: {e}");
                        return Err(fenced);
                    }
                    if attempt >= restart.attempts || !restartable(&e) {
                        return Err(e);
                    }
                    attempt += 1;
                    tracing::warn!(
                        job = %self.id,
                        attempt,
                        of = restart.attempts,
                        "restarting from the last complete checkpoint after: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(restart.backoff_ms));
                }
            }
        }
    }

    /// [`Error::Fenced`] when a newer run of the job claimed its checkpoint store.
    fn fence(&self, store: Option<&CheckpointStore>) -> Result<()> {
        let Some(store) = store else {
            return Ok(());
        };
        match store.newer_epoch(self.id, store.epoch())? {
            None => Ok(()),
            Some(newer) => Err(Error::Fenced {
                job: self.id.to_string(),
                url: store.backend().url().to_string(),
                epoch: store.epoch(),
                newer: newer.to_string(),
            }),
        }
    }

    /// A new run of a job with complete checkpoints would publish its output a second time:
    /// refused, naming the newest checkpoint.
    fn refuse_rerun(&self, store: &CheckpointStore) -> Result<()> {
        let Some(&latest) = store.list(self.id)?.last() else {
            return Ok(());
        };
        let finished = store
            .read_manifest(self.id, latest)
            .is_ok_and(|m| m.end_of_input);
        Err(Error::CheckpointsExist {
            job: self.id.to_string(),
            url: store.backend().url().to_string(),
            latest: latest.to_string(),
            finished,
        })
    }

    /// The transactions each sink published in `checkpoint`, by node index.
    fn published(&self, checkpoint: &OpenCheckpoint) -> Result<HashMap<usize, Vec<String>>> {
        let mut out = HashMap::new();
        for (id, node) in self.graph.nodes.iter().enumerate() {
            if !matches!(node.imp, NodeImpl::Sink(_)) {
                continue;
            }
            let parts: Vec<Vec<String>> = checkpoint.decode_stage(&node.name)?;
            out.insert(id, parts.concat());
        }
        Ok(out)
    }

    /// Prepares the job's outputs for an attempt: every sink first checks the start (so that a
    /// refusal changes nothing), then, starting over, the job's checkpoints go; the restored
    /// checkpoint's transactions are published (again: publishing is idempotent), and every
    /// sink begins: a restored one drops what later attempts staged or published.
    fn begin_sinks(
        &self,
        start: Start,
        attempt: usize,
        restored: Option<&OpenCheckpoint>,
        store: Option<&CheckpointStore>,
    ) -> Result<()> {
        let published = match restored {
            Some(c) => self.published(c)?,
            None => HashMap::new(),
        };
        let none = Vec::new();
        let epoch = store.map_or(0, CheckpointStore::epoch);
        let run_start = |id: usize| match restored {
            Some(c) => RunStart::Restore {
                job: self.id,
                checkpoint: c.id().0,
                published: published.get(&id).unwrap_or(&none),
                epoch,
            },
            // A restart before any checkpoint completed continues the first attempt's output.
            None if attempt > 0 => RunStart::Restore {
                job: self.id,
                checkpoint: 0,
                published: &none,
                epoch,
            },
            None => RunStart::New {
                job: self.id,
                fresh: start == Start::Fresh,
                epoch,
            },
        };
        let sinks = || {
            self.graph
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(id, n)| match &n.imp {
                    NodeImpl::Sink(sink) => Some((id, sink)),
                    _ => None,
                })
        };
        for (id, sink) in sinks() {
            sink.check_start(&run_start(id))?;
        }
        if let (Start::Fresh, Some(store)) = (start, store) {
            if attempt == 0 {
                let discarded = store.list(self.id)?.len();
                store.discard(self.id)?;
                tracing::info!(job = %self.id, "--fresh: discarded {discarded} complete checkpoint(s) and everything else under {} but the epochs of its runs", store.backend().location(self.id));
            }
        }
        for (id, sink) in sinks() {
            for t in published.get(&id).unwrap_or(&none) {
                sink.commit(t)?;
            }
            sink.begin(&run_start(id))?;
        }
        Ok(())
    }

    /// Opens the checkpoint to restore, logging the newer ones that could not be opened.
    fn open_restore(
        &self,
        restore: Restore,
        store: Option<&CheckpointStore>,
    ) -> Result<Option<OpenCheckpoint>> {
        let store = store.ok_or_else(|| {
            Error::config(
                &self.config.origin,
                "--restore needs `job.checkpoint` in the config",
            )
        })?;
        match restore {
            Restore::Id(n) => Ok(Some(store.open(self.id, CheckpointId(n))?)),
            Restore::Latest => match store.open_latest_valid(self.id)? {
                None => {
                    tracing::warn!(job = %self.id, "no complete checkpoint to restore: starting from the beginning of the input");
                    Ok(None)
                }
                Some(point) => {
                    for skipped in &point.skipped {
                        tracing::warn!(job = %self.id, "{skipped}; trying an older checkpoint");
                    }
                    Ok(Some(point.checkpoint))
                }
            },
        }
    }

    /// Keyed state is filed by key group: a checkpoint restores only into a job with as many.
    fn check_key_groups(&self, checkpoint: &OpenCheckpoint) -> Result<()> {
        let taken = checkpoint.manifest().key_groups;
        if taken == self.plan.key_groups {
            return Ok(());
        }
        Err(Error::config(
            &self.config.origin,
            format!(
                "job.key_groups: checkpoint {} was taken with {taken} key groups, the job has {} \
                 (keyed state cannot be restored into another number of key groups)",
                checkpoint.id(),
                self.plan.key_groups
            ),
        ))
    }

    /// The highest checkpoint id any run of this job has used (complete or not).
    fn highest_checkpoint_id(&self, store: &CheckpointStore) -> Result<u64> {
        let listing = store.backend().list_dir(self.id)?;
        Ok(listing
            .dirs
            .iter()
            .filter_map(|d| CheckpointId::from_dir_name(d))
            .map(|id| id.0)
            .max()
            .unwrap_or(0))
    }

    /// One attempt: restore if asked, run every task to completion.
    /// `run` counts the attempts that came this far before; `attempt` all of them.
    fn run_once(
        &self,
        start: Start,
        run: usize,
        attempt: usize,
        store: Option<&CheckpointStore>,
        cluster: Option<&mut Cluster>,
    ) -> Result<RunReport> {
        let started = Instant::now();
        let threads = self.config.threads();
        let store = store.cloned();
        let restored = match start {
            Start::Restore(r) => self.open_restore(r, store.as_ref())?,
            Start::New | Start::Fresh => None,
        };
        if let (Start::New, Some(store)) = (start, &store) {
            self.refuse_rerun(store)?;
        }
        let positions = match &restored {
            Some(c) => {
                tracing::info!(job = %self.id, checkpoint = %c.id(), "restoring");
                self.check_key_groups(c)?;
                source_positions(self.graph, c)?
            }
            None => HashMap::new(),
        };
        self.begin_sinks(start, run, restored.as_ref(), store.as_ref())?;
        if run == 0 {
            for node in &self.graph.nodes {
                if let NodeImpl::Source(source) = &node.imp {
                    source.start()?;
                }
            }
        }
        let restored_id = restored.as_ref().map_or(0, |c| c.id().0);
        let restored = restored.map(Arc::new);
        let epoch = store.as_ref().map_or(0, CheckpointStore::epoch);
        // On workers, the tasks are made there; here, before the coordinator counts them.
        let splits = Arc::new(SplitPool::new(self.graph, &positions)?);
        let deployment = match cluster {
            None => Some(deploy(
                self.graph,
                self.plan,
                self.config,
                Begin {
                    restore: restored,
                    positions: &positions,
                    splits: splits.clone(),
                },
                None,
                self.config.metered().then_some(self.metrics),
            )?),
            Some(_) => None,
        };
        let names: Vec<String> = self.graph.nodes.iter().map(|n| n.name.clone()).collect();
        let tasks = self.plan.task_count();
        let live = AtomicUsize::new(tasks);
        let stop = AtomicBool::new(false);
        let (notice_tx, notices) = crossbeam_channel::unbounded();
        let notice_tx = cluster.is_some().then_some(notice_tx);
        let coordinator = match (store, &self.config.job.checkpoint) {
            (Some(store), Some(c)) => {
                // What earlier runs abandoned (checkpoints they never completed, older than the
                // newest complete one) goes now, not only after this run's first commit: a run
                // killed again before it completes a checkpoint would otherwise add to it. The
                // restored state was read when the tasks were made (on workers, they read it
                // from the restored checkpoint, which a prune keeps).
                if let Err(e) = store.prune(self.id, c.retain) {
                    tracing::warn!(job = %self.id, "cannot prune old checkpoints: {e}");
                }
                // The highest checkpoint id any run used, complete or not.
                let last_used = self.highest_checkpoint_id(&store)?;
                Some(Coordinator::new(CoordinatorSpec {
                    store,
                    job: self.id.to_string(),
                    key_groups: self.plan.key_groups,
                    stage_names: names.clone(),
                    stage_parallelism: self
                        .graph
                        .nodes
                        .iter()
                        .map(|n| n.parallelism.initial())
                        .collect(),
                    sinks: self
                        .graph
                        .nodes
                        .iter()
                        .map(|n| match &n.imp {
                            NodeImpl::Sink(s) => Some(&**s),
                            _ => None,
                        })
                        .collect(),
                    schedule: Schedule {
                        interval: c.interval_secs.map(Duration::from_secs_f64),
                        interval_records: c.interval_records,
                        retain: c.retain,
                        timeout: Duration::from_secs_f64(c.timeout_secs.unwrap_or(600.0)),
                    },
                    triggers: self.triggers,
                    last_completed: restored_id,
                    last_used,
                    notices: notice_tx,
                }))
            }
            _ => None,
        };
        let checkpoints: &dyn Checkpoints = match &coordinator {
            Some(c) => c,
            None => &NoCheckpoints,
        };
        let counters = JobCounters::default();
        let finals: Mutex<Vec<(usize, Vec<u8>)>> = Mutex::new(Vec::new());
        let mut worker_counters = Vec::new();
        let (mut channels, mut buffer_capacity) = (0, 0);
        std::thread::scope(|scope| -> Result<()> {
            if let Some(c) = &coordinator {
                let (live, stop) = (&live, &stop);
                scope.spawn(move || c.run(tasks, live, stop));
            }
            let outcome = match (cluster, &deployment) {
                (Some(cluster), _) => {
                    let placement = Placement::new(self.plan, cluster.workers());
                    let spec = AttemptSpec {
                        attempt: attempt as u32,
                        restore: restored_id,
                        epoch,
                        placement: &placement,
                        checkpoints: coordinator.as_ref().map(|c| (c, &notices)),
                        live: &live,
                        splits: &splits,
                    };
                    cluster.run(&spec).map(|report| {
                        counters
                            .peak_in_flight
                            .store(report.peak_in_flight, Ordering::Relaxed);
                        if let Ok(mut f) = finals.lock() {
                            f.extend(report.final_states);
                        }
                        worker_counters = report.counters;
                    })
                }
                (None, Some(deployment)) => {
                    channels = deployment.channels;
                    buffer_capacity = deployment.buffer_capacity;
                    executor::run(
                        &deployment.slots,
                        &names,
                        threads,
                        &counters,
                        &finals,
                        checkpoints,
                        &live,
                    )
                }
                (None, None) => Err(Error::Internal("nothing deployed".into())),
            };
            stop.store(true, Ordering::Release);
            outcome
        })?;
        if let Some(c) = &coordinator {
            c.finish(tasks)?;
        }
        drop(deployment);
        let finals = finals
            .into_inner()
            .map_err(|_| Error::Internal("state lock poisoned".into()))?;
        worker_counters.extend(splits.counters());
        let duration = started.elapsed();
        tracing::info!(job = %self.id, ?duration, "job finished");
        Ok(RunReport {
            duration,
            startup: Duration::ZERO,
            channels,
            buffer_capacity,
            peak_batches_in_flight: counters.peak_in_flight.load(Ordering::Relaxed),
            tasks,
            restarts: 0,
            checkpoints: coordinator.as_ref().map(|c| c.stats()).unwrap_or_default(),
            last_checkpoint: coordinator
                .as_ref()
                .map(Checkpoints::completed)
                .filter(|&n| n > 0),
            final_states: finals
                .into_iter()
                .map(|(n, s)| (names[n].clone(), s))
                .collect(),
            worker_counters,
        })
    }
}

/// The merged source positions of each source stage of `graph` in `checkpoint`.
pub(crate) fn source_positions(
    graph: &Graph,
    checkpoint: &OpenCheckpoint,
) -> Result<HashMap<usize, Arc<Positions>>> {
    let mut out = HashMap::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        if node.kind != StageKind::Source {
            continue;
        }
        let parts: Vec<Positions> = checkpoint.decode_stage(&node.name)?;
        out.insert(id, Arc::new(parts.into_iter().flatten().collect()));
    }
    Ok(out)
}

/// Failures a restart can get past: a stage's panic or error, a state backend hiccup. Config
/// and plan errors would fail again.
pub(crate) fn restartable(e: &Error) -> bool {
    match e {
        Error::StagePanic { .. }
        | Error::Stage { .. }
        | Error::Backend { .. }
        | Error::Io { .. }
        | Error::WorkerLost { .. }
        | Error::Transport { .. } => true,
        Error::Worker { restartable, .. } => *restartable,
        _ => false,
    }
}
