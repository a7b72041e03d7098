//! A planned job: build it from a pipeline and a config, explain it, run it.

pub mod builder;
mod result;
mod runner;

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::connectors::collect::Outputs;
use crate::core::connector::Positions;
use crate::core::graph::{Graph, NodeImpl, Partitioning, SubtaskCtx};
use crate::core::plan::PhysicalPlan;
use crate::core::task::{Checkpoints, JobCounters, NoCheckpoints};
use crate::core::{AnyBox, StageKind};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
pub use crate::runtime::coordinator::CheckpointStats;
use crate::runtime::coordinator::{Coordinator, Schedule, Triggers};
use crate::runtime::executor::{self, TaskSlot};
use crate::state::checkpoint::{CheckpointStore, OpenCheckpoint};
use crate::state::manifest::CheckpointId;

pub use builder::{JobBuilder, KeyedStream, Stream};
pub use result::JobResult;
pub use runner::{Restore, Runner};

/// A job ready to run: its graph, physical plan and configuration.
pub struct Job {
    name: String,
    id: String,
    graph: Graph,
    plan: PhysicalPlan,
    config: Config,
    metrics: Metrics,
    outputs: Outputs,
    restore: Option<Restore>,
    triggers: Arc<Triggers>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
    }
}

impl Job {
    /// Builds the job of pipeline `name`: `build` records its stages; the config is then checked
    /// against them and the physical plan made.
    pub fn build(
        name: &str,
        config: Config,
        build: impl FnOnce(&mut JobBuilder) -> Result<()>,
    ) -> Result<Job> {
        let mut builder = JobBuilder::new(config);
        build(&mut builder)?;
        let JobBuilder {
            graph,
            config,
            metrics,
            outputs,
        } = builder;
        check_graph(&graph)?;
        check_config_names(&graph, &config, name)?;
        let plan = PhysicalPlan::new(&graph, config.job.key_groups)?;
        let id = config.job.id.clone().unwrap_or_else(|| name.to_string());
        Ok(Job {
            name: name.to_string(),
            id,
            graph,
            plan,
            config,
            metrics,
            outputs,
            restore: None,
            triggers: Arc::default(),
        })
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job id (`job.id`, `--job-id`, or the pipeline's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The physical plan as text: chains, parallelism, partitioning, key groups.
    pub fn explain(&self) -> String {
        self.plan
            .explain(&self.graph, &self.id, self.config.threads())
    }

    /// Restores the job's state from checkpoint `id` when it runs.
    pub fn restore_from_checkpoint(&mut self, id: CheckpointId) {
        self.restore = Some(Restore::Id(id.0));
    }

    /// Starts the job on a thread of its own; the [`Runner`] takes checkpoints on demand and
    /// waits for the result.
    pub fn start(self) -> Runner {
        let triggers = self.triggers.clone();
        let checkpoints = self.config.job.checkpoint.is_some();
        let handle = std::thread::Builder::new()
            .name(format!("solstice-job-{}", self.id))
            .spawn(move || self.run());
        Runner {
            triggers,
            checkpoints,
            handle,
        }
    }

    /// Restores the job's state from a checkpoint when it runs: the latest complete one (falling
    /// back to older ones when it is corrupt) or a given one. Needs `job.checkpoint`.
    pub fn restore_from(&mut self, restore: Restore) {
        self.restore = Some(restore);
    }

    /// The job's checkpoint store, when `job.checkpoint` is configured.
    pub fn checkpoint_store(&self) -> Result<Option<CheckpointStore>> {
        match &self.config.job.checkpoint {
            None => Ok(None),
            Some(c) => Ok(Some(CheckpointStore::from_url(
                &c.backend_url(),
                &c.options,
            )?)),
        }
    }

    /// Opens the checkpoint to restore, logging the newer ones that could not be opened.
    fn open_restore(&self, store: Option<&CheckpointStore>) -> Result<Option<OpenCheckpoint>> {
        let Some(restore) = self.restore else {
            return Ok(None);
        };
        let store = store.ok_or_else(|| {
            Error::config(
                &self.config.origin,
                "--restore needs `job.checkpoint` in the config",
            )
        })?;
        match restore {
            Restore::Id(n) => Ok(Some(store.open(&self.id, CheckpointId(n))?)),
            Restore::Latest => match store.open_latest_valid(&self.id)? {
                None => {
                    tracing::info!(job = %self.id, "no checkpoint to restore: starting from the beginning");
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

    /// Publishes the sink transactions of the restored checkpoint (again: publishing is
    /// idempotent) and discards whatever later attempts staged.
    fn recover_sinks(&self, checkpoint: &OpenCheckpoint) -> Result<()> {
        for node in &self.graph.nodes {
            let NodeImpl::Sink(sink) = &node.imp else {
                continue;
            };
            let mut keep = Vec::new();
            if let Some(stage) = checkpoint.manifest().stages.get(&node.name) {
                for part in &stage.parts {
                    let transactions: Vec<String> =
                        checkpoint.decode_part(&node.name, &part.name)?;
                    for t in transactions {
                        sink.commit(&t)?;
                        keep.push(t);
                    }
                }
            }
            sink.discard_uncommitted(&keep)?;
        }
        Ok(())
    }

    /// The highest checkpoint id any run of this job has used (complete or not).
    fn highest_checkpoint_id(&self, store: &CheckpointStore) -> Result<u64> {
        let listing = store.backend().list_dir(&self.id)?;
        Ok(listing
            .dirs
            .iter()
            .filter_map(|d| CheckpointId::from_dir_name(d))
            .map(|id| id.0)
            .max()
            .unwrap_or(0))
    }

    /// The merged source positions of each source stage in `checkpoint`.
    fn positions(&self, checkpoint: &OpenCheckpoint) -> Result<HashMap<usize, Arc<Positions>>> {
        let mut out = HashMap::new();
        for (id, node) in self.graph.nodes.iter().enumerate() {
            if node.kind != StageKind::Source {
                continue;
            }
            let mut merged = Positions::new();
            if let Some(stage) = checkpoint.manifest().stages.get(&node.name) {
                for part in &stage.parts {
                    let p: Positions = checkpoint.decode_part(&node.name, &part.name)?;
                    merged.extend(p);
                }
            }
            out.insert(id, Arc::new(merged));
        }
        Ok(out)
    }

    /// Runs the job to completion on `runtime.threads` threads.
    pub fn run(mut self) -> Result<JobResult> {
        let started = Instant::now();
        tracing::info!(
            job = %self.id,
            threads = self.config.threads(),
            tasks = self.plan.task_count(),
            "job starting"
        );
        for node in &self.graph.nodes {
            if let NodeImpl::Source(source) = &node.imp {
                source.start()?;
            }
        }
        let restart = self.config.job.restart.clone();
        let mut attempt = 0;
        loop {
            match self.run_once() {
                Ok(mut result) => {
                    result.duration = started.elapsed();
                    result.restarts = attempt;
                    return Ok(result);
                }
                Err(e) if attempt < restart.attempts && restartable(&e) => {
                    attempt += 1;
                    tracing::warn!(
                        job = %self.id,
                        attempt,
                        of = restart.attempts,
                        "restarting from the last complete checkpoint after: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(restart.backoff_ms));
                    self.restore = Some(Restore::Latest);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt: restore if asked, run every task to completion.
    fn run_once(&self) -> Result<JobResult> {
        let started = Instant::now();
        let threads = self.config.threads();
        let store = self.checkpoint_store()?;
        let restored = self.open_restore(store.as_ref())?;
        let positions = match &restored {
            Some(c) => {
                tracing::info!(job = %self.id, checkpoint = %c.id(), "restoring");
                self.positions(c)?
            }
            None => HashMap::new(),
        };
        match &restored {
            Some(c) => self.recover_sinks(c)?,
            // Restarting before any checkpoint completed: nothing was published; what the failed
            // attempt staged is dropped.
            None if self.restore.is_some() => {
                for node in &self.graph.nodes {
                    if let NodeImpl::Sink(sink) = &node.imp {
                        sink.discard_uncommitted(&[])?;
                    }
                }
            }
            None => {}
        }
        let restored_id = restored.as_ref().map_or(0, |c| c.id().0);
        let restored = restored.map(Arc::new);
        let (slots, channels, buffer_capacity) = self.instantiate(restored, &positions)?;
        let names: Vec<String> = self.graph.nodes.iter().map(|n| n.name.clone()).collect();
        let counters = JobCounters::default();
        let finals: Mutex<Vec<(usize, Box<dyn Any + Send>)>> = Mutex::new(Vec::new());
        let tasks = slots.len();
        let live = AtomicUsize::new(tasks);
        let stop = AtomicBool::new(false);
        let coordinator = match (store, &self.config.job.checkpoint) {
            (Some(store), Some(c)) => {
                // The highest checkpoint id any run used, complete or not.
                let last_used = self.highest_checkpoint_id(&store)?;
                Some(Coordinator::new(
                    store,
                    self.id.clone(),
                    self.plan.key_groups,
                    names.clone(),
                    self.graph
                        .nodes
                        .iter()
                        .map(|n| n.parallelism.initial())
                        .collect(),
                    self.graph
                        .nodes
                        .iter()
                        .map(|n| match &n.imp {
                            NodeImpl::Sink(s) => Some(&**s),
                            _ => None,
                        })
                        .collect(),
                    Schedule {
                        interval: c.interval_secs.map(Duration::from_secs_f64),
                        interval_records: c.interval_records,
                        retain: c.retain,
                    },
                    &self.triggers,
                    restored_id,
                    last_used,
                ))
            }
            _ => None,
        };
        let checkpoints: &dyn Checkpoints = match &coordinator {
            Some(c) => c,
            None => &NoCheckpoints,
        };
        std::thread::scope(|scope| {
            if let Some(c) = &coordinator {
                let (live, stop) = (&live, &stop);
                scope.spawn(move || c.run(tasks, live, stop));
            }
            let outcome = executor::run(
                &slots,
                &names,
                threads,
                &counters,
                &finals,
                checkpoints,
                &live,
            );
            stop.store(true, Ordering::Release);
            outcome
        })?;
        if let Some(c) = &coordinator {
            c.finish(tasks)?;
        }
        drop(slots);
        let finals = finals
            .into_inner()
            .map_err(|_| Error::Internal("state lock poisoned".into()))?;
        let duration = started.elapsed();
        tracing::info!(job = %self.id, ?duration, "job finished");
        Ok(JobResult {
            duration,
            channels,
            buffer_capacity,
            peak_batches_in_flight: counters.peak_in_flight.load(Ordering::Relaxed),
            tasks: self.plan.task_count(),
            counters: self.metrics.snapshot(),
            outputs: self.outputs.clone(),
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
        })
    }

    /// Creates every task and channel of the plan. Returns the tasks, the channel count and the
    /// batches all channels can hold together.
    fn instantiate(
        &self,
        restore: Option<Arc<OpenCheckpoint>>,
        positions: &HashMap<usize, Arc<Positions>>,
    ) -> Result<(Vec<TaskSlot>, usize, usize)> {
        let chains = &self.plan.chains;
        let mut base = Vec::with_capacity(chains.len());
        let mut next = 0;
        for c in chains {
            base.push(next);
            next += c.parallelism;
        }
        let ctx = |node: usize, subtask: usize, parallelism: usize| SubtaskCtx {
            stage: node,
            name: self.graph.nodes[node].name.clone(),
            subtask,
            parallelism,
            key_groups: self.plan.key_groups,
            batch_size: self.config.job.batch_size,
            restore: restore.clone(),
            positions: positions.get(&node).cloned().unwrap_or_default(),
        };
        // One channel per (sending subtask, receiving subtask) pair, so that a receiver can stop
        // reading one sender (barrier alignment) while the others go on. A receiver's channels
        // share its capacity: memory stays bounded by `channel_capacity` batches per receiver.
        let mut senders: HashMap<(usize, usize, usize, usize), AnyBox> = HashMap::new();
        let mut rxs: Vec<Vec<Vec<AnyBox>>> = Vec::with_capacity(chains.len());
        let mut channels = 0;
        let mut capacity_total = 0;
        for (d, chain) in chains.iter().enumerate() {
            let head = &self.graph.nodes[chain.nodes[0]];
            let mut per_subtask = Vec::with_capacity(chain.parallelism);
            for j in 0..chain.parallelism {
                let mut pairs = Vec::new();
                for &u in &chain.inputs {
                    let forward = chains[u]
                        .outputs
                        .iter()
                        .any(|&(t, how)| t == d && how == Partitioning::Forward);
                    if forward {
                        pairs.push((u, j));
                    } else {
                        pairs.extend((0..chains[u].parallelism).map(|i| (u, i)));
                    }
                }
                let mut receivers = Vec::with_capacity(pairs.len());
                if !pairs.is_empty() {
                    let kit = head
                        .input_kit
                        .as_ref()
                        .ok_or_else(|| Error::Internal("no input kit".into()))?;
                    let capacity = self
                        .config
                        .job
                        .channel_capacity
                        .div_ceil(pairs.len())
                        .max(2);
                    for (u, i) in pairs {
                        let (tx, rx) = kit.channel(capacity, base[d] + j);
                        senders.insert((u, i, d, j), tx);
                        receivers.push(rx);
                        channels += 1;
                        capacity_total += capacity;
                    }
                }
                per_subtask.push(receivers);
            }
            rxs.push(per_subtask);
        }
        let mut slots = Vec::with_capacity(next);
        for (c, chain) in chains.iter().enumerate() {
            let p = chain.parallelism;
            let mut receivers = std::mem::take(&mut rxs[c]).into_iter();
            let last = *chain
                .nodes
                .last()
                .ok_or_else(|| Error::Internal("empty chain".into()))?;
            for i in 0..p {
                let mut sink: Option<AnyBox> = None;
                if !chain.outputs.is_empty() {
                    let kit = self.graph.nodes[last].output_kit.as_ref().ok_or_else(|| {
                        Error::Internal(format!(
                            "stage `{}` has no output",
                            self.graph.nodes[last].name
                        ))
                    })?;
                    let mut outs = Vec::new();
                    for &(d, how) in &chain.outputs {
                        let targets: Vec<usize> = if how == Partitioning::Forward {
                            vec![i]
                        } else {
                            (0..chains[d].parallelism).collect()
                        };
                        let mut txs = Vec::with_capacity(targets.len());
                        for j in targets {
                            txs.push(senders.remove(&(c, i, d, j)).ok_or_else(|| {
                                Error::Internal("missing channel between subtasks".into())
                            })?);
                        }
                        outs.push(kit.channel_out(txs, how, &ctx(last, i, p))?);
                    }
                    sink = Some(if outs.len() == 1 {
                        outs.pop()
                            .ok_or_else(|| Error::Internal("no output".into()))?
                    } else {
                        kit.fan_out(outs)?
                    });
                }
                let mut task = None;
                for &n in chain.nodes.iter().rev() {
                    let node = &self.graph.nodes[n];
                    match &node.imp {
                        NodeImpl::Sink(s) => sink = Some(s.open(&ctx(n, i, p))?),
                        NodeImpl::Op(op) => {
                            let next = sink
                                .take()
                                .ok_or_else(|| Error::Internal("op without output".into()))?;
                            sink = Some(op.wrap(&ctx(n, i, p), next)?);
                        }
                        NodeImpl::Source(s) => {
                            let next = sink
                                .take()
                                .ok_or_else(|| Error::Internal("source without output".into()))?;
                            task = Some(s.task(&ctx(n, i, p), next)?);
                        }
                    }
                }
                let task = match task {
                    Some(t) => t,
                    None => {
                        let head = &self.graph.nodes[chain.nodes[0]];
                        let kit = head
                            .input_kit
                            .as_ref()
                            .ok_or_else(|| Error::Internal("no input kit".into()))?;
                        let inputs = receivers
                            .next()
                            .ok_or_else(|| Error::Internal("missing receivers".into()))?;
                        let chain_sink = sink
                            .take()
                            .ok_or_else(|| Error::Internal("no chain".into()))?;
                        kit.task(inputs, chain_sink)?
                    }
                };
                slots.push(TaskSlot::new(task, chain.nodes[0], i));
            }
        }
        Ok((slots, channels, capacity_total))
    }
}

/// Failures a restart can get past: a stage's panic or error, a state backend hiccup. Config
/// and plan errors would fail again.
fn restartable(e: &Error) -> bool {
    matches!(
        e,
        Error::StagePanic { .. } | Error::Stage { .. } | Error::Backend { .. } | Error::Io { .. }
    )
}

/// Every stage that emits records has a downstream stage; key_by feeds stateful stages only;
/// stateful stages read key_by stages only.
fn check_graph(graph: &Graph) -> Result<()> {
    for (id, node) in graph.nodes.iter().enumerate() {
        let outs = graph.outputs(id);
        if node.kind != StageKind::Sink && outs.is_empty() {
            return Err(Error::Plan(format!(
                "stage `{}` is not connected to any downstream stage",
                node.name
            )));
        }
        if node.kind == StageKind::KeyBy {
            if let Some(&bad) = outs
                .iter()
                .find(|&&o| graph.nodes[o].kind != StageKind::Stateful)
            {
                return Err(Error::Plan(format!(
                    "key_by stage `{}` feeds `{}`, which is not a stateful stage",
                    node.name, graph.nodes[bad].name
                )));
            }
        }
    }
    Ok(())
}

/// Every stage named under `stages:`, `sources:` and `sinks:` exists and has the right kind.
fn check_config_names(graph: &Graph, config: &Config, pipeline: &str) -> Result<()> {
    let names = || {
        graph
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let check = |section: &str, name: &str, kind: Option<StageKind>| -> Result<()> {
        match graph.find(name) {
            None => Err(Error::config(
                &config.origin,
                format!(
                    "{section}.{name}: pipeline `{pipeline}` has no stage `{name}` (stages: {})",
                    names()
                ),
            )),
            Some(n) if kind.is_some_and(|k| graph.nodes[n].kind != k) => Err(Error::config(
                &config.origin,
                format!(
                    "{section}.{name}: stage `{name}` is a {} stage",
                    graph.nodes[n].kind
                ),
            )),
            Some(_) => Ok(()),
        }
    };
    for name in config.stages.keys() {
        check("stages", name, None)?;
    }
    for name in config.sources.keys() {
        check("sources", name, Some(StageKind::Source))?;
    }
    for name in config.sinks.keys() {
        check("sinks", name, Some(StageKind::Sink))?;
    }
    Ok(())
}
