//! Deployment: the physical plan made into running pieces. Every subtask of every chain becomes a
//! task; every edge between a sending and a receiving subtask becomes a channel; each chain's
//! operators are wrapped around its tail (a sink, or a writer to the downstream channels).
//!
//! In a job of one process every subtask runs here. In a job of several worker processes, a
//! worker deploys only the subtasks its [`Placement`] gives it: a channel between two of them is
//! a local channel, one to or from a subtask of another worker is a logical channel of the
//! connection to that worker, numbered alike by every worker (its index among all channels of
//! the plan, from 1). Which subtask runs where, and over which transport its channels go, is
//! decided here and nowhere else.

use std::collections::HashMap;
use std::sync::Arc;

use super::executor::{ExternalWakes, TaskSlot};
use super::placement::Placement;
use super::transport::Connection;
use crate::config::Config;
use crate::core::connector::Positions;
use crate::core::graph::{Graph, Meter, NodeImpl, Partitioning, SubtaskCtx};
use crate::core::plan::PhysicalPlan;
use crate::core::task::SplitFeed;
use crate::core::AnyBox;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::state::checkpoint::OpenCheckpoint;

/// Where a worker process deploys its part of a plan.
pub(crate) struct Site<'a> {
    /// The worker of every task.
    pub placement: &'a Placement,
    /// This worker's index.
    pub me: usize,
    /// The connections to the other workers, by worker index (`None` for this one).
    pub peers: &'a [Option<Arc<Connection>>],
    /// Wake-ups of this worker's tasks from the connections' threads.
    pub wakes: &'a ExternalWakes,
}

/// The tasks and channels of one run of a job.
pub(crate) struct Deployment {
    /// One task per subtask of each chain this process runs, in chain order.
    pub slots: Vec<TaskSlot>,
    /// Per slot: its task's index in the whole plan.
    pub global: Vec<usize>,
    /// Channels between tasks (one per sending and receiving subtask pair).
    pub channels: usize,
    /// The batches all channels can hold together.
    pub buffer_capacity: usize,
}

/// Where an attempt's tasks begin.
pub(crate) struct Begin<'a> {
    /// The checkpoint every task restores from, if any.
    pub restore: Option<Arc<OpenCheckpoint>>,
    /// Per source stage: where the restored checkpoint left its splits.
    pub positions: &'a HashMap<usize, Arc<Positions>>,
    /// Where source subtasks pull their splits from.
    pub splits: Arc<dyn SplitFeed>,
}

/// Creates every task and channel of `plan` (of `graph`, configured by `config`) that runs in
/// this process (all of them without a `site`): each task restores from `begin.restore` if
/// given, each source subtask pulls its splits from `begin.splits`, knowing its stage's
/// restored `positions`. With `metrics`, every stage of a chain counts the batches into and
/// out of it in its subtask's meter, and the executor times the task's waits into them.
pub(crate) fn deploy(
    graph: &Graph,
    plan: &PhysicalPlan,
    config: &Config,
    begin: Begin<'_>,
    site: Option<&Site<'_>>,
    metrics: Option<&Metrics>,
) -> Result<Deployment> {
    let Begin {
        restore,
        positions,
        splits,
    } = begin;
    let chains = &plan.chains;
    let alone;
    let placement = match site {
        Some(s) => s.placement,
        None => {
            alone = Placement::new(plan, 1);
            &alone
        }
    };
    let me = site.map_or(0, |s| s.me);
    let here = |c: usize, i: usize| placement.worker(c, i) == me;
    // This process's slot of each of its tasks, by task index.
    let mut local = HashMap::new();
    let mut global = Vec::new();
    for (c, chain) in chains.iter().enumerate() {
        for i in 0..chain.parallelism {
            if here(c, i) {
                local.insert(placement.task(c, i), global.len());
                global.push(placement.task(c, i));
            }
        }
    }
    let peer = |w: usize| -> Result<&Arc<Connection>> {
        site.and_then(|s| s.peers.get(w))
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::Internal(format!("no connection to worker {w}")))
    };
    let waker = |task: usize| -> Result<_> {
        let wakes = site.ok_or_else(|| Error::Internal("remote channel without a site".into()))?;
        wakes.wakes.waker(local[&task])
    };
    let ctx = |node: usize, subtask: usize, parallelism: usize| SubtaskCtx {
        stage: node,
        name: graph.nodes[node].name.clone(),
        subtask,
        parallelism,
        key_groups: plan.key_groups,
        batch_size: config.job.batch_size,
        restore: restore.clone(),
        positions: positions.get(&node).cloned().unwrap_or_default(),
        splits: splits.clone(),
    };
    // One channel per (sending subtask, receiving subtask) pair, so that a receiver can stop
    // reading one sender (barrier alignment) while the others go on. A receiver's channels
    // share its capacity: memory stays bounded by `channel_capacity` batches per receiver.
    let mut senders: HashMap<(usize, usize, usize, usize), AnyBox> = HashMap::new();
    let mut rxs: Vec<Vec<Vec<AnyBox>>> = Vec::with_capacity(chains.len());
    let mut channels = 0;
    let mut capacity_total = 0;
    let mut id: u32 = 0;
    for (d, chain) in chains.iter().enumerate() {
        let head = &graph.nodes[chain.nodes[0]];
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
                let capacity = config.job.channel_capacity.div_ceil(pairs.len()).max(2);
                for (u, i) in pairs {
                    // Every process numbers every channel of the plan alike.
                    id += 1;
                    let (sends, reads) = (here(u, i), here(d, j));
                    match (sends, reads) {
                        (true, true) => {
                            let (tx, rx) = kit.channel(capacity, local[&placement.task(d, j)]);
                            senders.insert((u, i, d, j), tx);
                            receivers.push(rx);
                        }
                        (false, true) => {
                            let from = peer(placement.worker(u, i))?;
                            let waker = waker(placement.task(d, j))?;
                            receivers.push(kit.remote_input(from, id, capacity as u32, waker)?);
                        }
                        (true, false) => {
                            let to = peer(placement.worker(d, j))?;
                            let waker = waker(placement.task(u, i))?;
                            senders.insert((u, i, d, j), kit.remote_output(to, id, waker)?);
                        }
                        (false, false) => continue,
                    }
                    channels += 1;
                    if reads {
                        capacity_total += capacity;
                    }
                }
            }
            per_subtask.push(receivers);
        }
        rxs.push(per_subtask);
    }
    let mut slots = Vec::with_capacity(global.len());
    for (c, chain) in chains.iter().enumerate() {
        let p = chain.parallelism;
        let mut receivers = std::mem::take(&mut rxs[c]).into_iter();
        let last = *chain
            .nodes
            .last()
            .ok_or_else(|| Error::Internal("empty chain".into()))?;
        for i in 0..p {
            let inputs = receivers.next();
            if !here(c, i) {
                continue;
            }
            let meters: Vec<Meter> = match metrics {
                Some(m) => chain
                    .nodes
                    .iter()
                    .map(|&n| m.meter(&graph.nodes[n].name, i))
                    .collect(),
                None => Vec::new(),
            };
            let meter = |k: usize| meters.get(k).cloned();
            let mut sink: Option<AnyBox> = None;
            if !chain.outputs.is_empty() {
                let kit = graph.nodes[last].output_kit.as_ref().ok_or_else(|| {
                    Error::Internal(format!("stage `{}` has no output", graph.nodes[last].name))
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
                let tail = if outs.len() == 1 {
                    outs.pop()
                        .ok_or_else(|| Error::Internal("no output".into()))?
                } else {
                    kit.fan_out(outs)?
                };
                sink = Some(match meter(chain.nodes.len() - 1) {
                    Some(m) => kit.meter(tail, m)?,
                    None => tail,
                });
            }
            // The entrance of stage `k` of the chain, counted into it and out of the one before.
            let entrance = |k: usize, n: usize, s: AnyBox| -> Result<AnyBox> {
                if meters.is_empty() {
                    return Ok(s);
                }
                let kit = graph.nodes[n]
                    .input_kit
                    .as_ref()
                    .ok_or_else(|| Error::Internal("no input kit".into()))?;
                kit.meter(s, meter(k), k.checked_sub(1).and_then(meter))
            };
            let mut task = None;
            for (k, &n) in chain.nodes.iter().enumerate().rev() {
                let node = &graph.nodes[n];
                match &node.imp {
                    NodeImpl::Sink(s) => sink = Some(entrance(k, n, s.open(&ctx(n, i, p))?)?),
                    NodeImpl::Op(op) => {
                        let next = sink
                            .take()
                            .ok_or_else(|| Error::Internal("op without output".into()))?;
                        sink = Some(entrance(k, n, op.wrap(&ctx(n, i, p), next)?)?);
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
                    let head = &graph.nodes[chain.nodes[0]];
                    let kit = head
                        .input_kit
                        .as_ref()
                        .ok_or_else(|| Error::Internal("no input kit".into()))?;
                    let inputs =
                        inputs.ok_or_else(|| Error::Internal("missing receivers".into()))?;
                    let chain_sink = sink
                        .take()
                        .ok_or_else(|| Error::Internal("no chain".into()))?;
                    kit.task(inputs, chain_sink)?
                }
            };
            slots.push(TaskSlot::new(task, chain.nodes[0], i, meters));
        }
    }
    Ok(Deployment {
        slots,
        global,
        channels,
        buffer_capacity: capacity_total,
    })
}
