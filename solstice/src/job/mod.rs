//! A planned job: build it from a pipeline and a config, explain it, run it.

pub mod builder;

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::core::graph::{Graph, NodeImpl, SubtaskCtx};
use crate::core::plan::PhysicalPlan;
use crate::core::task::JobCounters;
use crate::core::{AnyBox, StageKind};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::runtime::executor::{self, TaskSlot};
use crate::state::keyed::{Key, KeyedState, StateValue};

pub use builder::{JobBuilder, KeyedStream, Stream};

/// A job ready to run: its graph, physical plan and configuration.
pub struct Job {
    name: String,
    id: String,
    graph: Graph,
    plan: PhysicalPlan,
    config: Config,
    metrics: Metrics,
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

    /// Runs the job to completion on `runtime.threads` threads.
    pub fn run(self) -> Result<JobResult> {
        let started = Instant::now();
        let threads = self.config.threads();
        tracing::info!(job = %self.id, threads, tasks = self.plan.task_count(), "job starting");
        for node in &self.graph.nodes {
            if let NodeImpl::Source(source) = &node.imp {
                source.start()?;
            }
        }
        let (slots, channels) = self.instantiate()?;
        let names: Vec<String> = self.graph.nodes.iter().map(|n| n.name.clone()).collect();
        let counters = JobCounters::default();
        let finals: Mutex<Vec<(usize, Box<dyn Any + Send>)>> = Mutex::new(Vec::new());
        executor::run(&slots, &names, threads, &counters, &finals)?;
        drop(slots);
        let finals = finals
            .into_inner()
            .map_err(|_| Error::Internal("state lock poisoned".into()))?;
        let duration = started.elapsed();
        tracing::info!(job = %self.id, ?duration, "job finished");
        Ok(JobResult {
            duration,
            channels,
            channel_capacity: self.config.job.channel_capacity,
            peak_batches_in_flight: counters.peak_in_flight.load(Ordering::Relaxed),
            tasks: self.plan.task_count(),
            counters: self.metrics.snapshot(),
            final_states: finals
                .into_iter()
                .map(|(n, s)| (names[n].clone(), s))
                .collect(),
        })
    }

    /// Creates every task and channel of the plan. Returns the tasks and the channel count.
    fn instantiate(&self) -> Result<(Vec<TaskSlot>, usize)> {
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
        };
        // Channels into each chain's subtasks: sender clones (a stack per channel) and receivers.
        let mut txs: Vec<Vec<Vec<AnyBox>>> = Vec::with_capacity(chains.len());
        let mut rxs: Vec<Vec<AnyBox>> = Vec::with_capacity(chains.len());
        let mut senders_of: Vec<usize> = Vec::with_capacity(chains.len());
        let mut channels = 0;
        for (c, chain) in chains.iter().enumerate() {
            let head = &self.graph.nodes[chain.nodes[0]];
            let senders: usize = chain
                .inputs
                .iter()
                .map(|&u| {
                    let forward = chains[u].outputs.iter().any(|&(d, how)| {
                        d == c && how == crate::core::graph::Partitioning::Forward
                    });
                    if forward {
                        1
                    } else {
                        chains[u].parallelism
                    }
                })
                .sum();
            senders_of.push(senders);
            let (mut t, mut r) = (Vec::new(), Vec::new());
            if let Some(kit) = head.input_kit.as_ref().filter(|_| !chain.inputs.is_empty()) {
                for i in 0..chain.parallelism {
                    let (tx, rx) =
                        kit.channel(self.config.job.channel_capacity, base[c] + i, senders);
                    t.push(tx);
                    r.push(rx);
                    channels += 1;
                }
            }
            txs.push(t);
            rxs.push(r);
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
                        let targets: Vec<usize> =
                            if how == crate::core::graph::Partitioning::Forward {
                                vec![i]
                            } else {
                                (0..chains[d].parallelism).collect()
                            };
                        let mut senders = Vec::with_capacity(targets.len());
                        for j in targets {
                            senders.push(txs[d][j].pop().ok_or_else(|| {
                                Error::Internal("ran out of channel senders".into())
                            })?);
                        }
                        outs.push(kit.channel_out(senders, how, &ctx(last, i, p))?);
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
                        let rx = receivers
                            .next()
                            .ok_or_else(|| Error::Internal("missing receiver".into()))?;
                        let chain_sink = sink
                            .take()
                            .ok_or_else(|| Error::Internal("no chain".into()))?;
                        kit.task(rx, senders_of[c], chain_sink)?
                    }
                };
                slots.push(TaskSlot::new(task, chain.nodes[0], i));
            }
        }
        Ok((slots, channels))
    }
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

/// What a finished job reports.
pub struct JobResult {
    /// Wall-clock time of the run.
    pub duration: Duration,
    /// Number of channels between tasks.
    pub channels: usize,
    /// Capacity of each channel, in batches.
    pub channel_capacity: usize,
    /// The most data batches that were buffered between tasks at any moment.
    pub peak_batches_in_flight: usize,
    /// Number of tasks that ran.
    pub tasks: usize,
    /// The job's counters, e.g. `orders.skipped`: records a source skipped under `on_error: skip`.
    pub counters: std::collections::BTreeMap<String, u64>,
    final_states: Vec<(String, Box<dyn Any + Send>)>,
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
}
