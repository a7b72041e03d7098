//! The logical graph recorded by the job builder: one node per stage, with its typed pieces erased
//! behind small traits so that the planner can wire any chain of stages.
//!
//! The erasure costs one downcast per task at wiring time and one virtual call per batch between
//! chained operators; records themselves are processed in monomorphized loops.

use crate::core::connector::RunStart;
use crate::core::parallelism::Parallelism;
use crate::core::task::{Task, TaskId};
use crate::core::{AnyBox, StageKind};
use crate::error::Result;

/// How records travel from one chain's subtasks to the next chain's subtasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Partitioning {
    /// Subtask `i` sends to subtask `i` (equal parallelism).
    Forward,
    /// Batches go round-robin to all downstream subtasks.
    Rebalance,
    /// Records go to the subtask owning their key group.
    Hash,
}

/// What a task needs to know about the subtask it runs.
#[derive(Clone)]
pub(crate) struct SubtaskCtx {
    pub stage: usize,
    pub name: String,
    pub subtask: usize,
    pub parallelism: usize,
    pub key_groups: usize,
    pub batch_size: usize,
    /// The checkpoint this run restores from, if any.
    pub restore: Option<std::sync::Arc<crate::state::checkpoint::OpenCheckpoint>>,
    /// Source stages: where the restored checkpoint left the splits (empty: from the start).
    /// Only the splits it finished matter to a task (subtask 0 reports them on); the ones part
    /// read come from `splits`.
    pub positions: std::sync::Arc<crate::core::connector::Positions>,
    /// Source stages: where the subtask gets its splits.
    pub splits: std::sync::Arc<dyn crate::core::task::SplitFeed>,
}

/// A source stage: builds the task of one subtask, pushing into `chain`
/// (a `Box<dyn BatchSink<Item>>`).
pub(crate) trait ErasedSource: Send + Sync {
    fn start(&self) -> Result<()>;
    /// The source's split names ([`crate::core::connector::Source::splits`]).
    fn splits(&self) -> Result<Vec<String>>;
    fn task(&self, ctx: &SubtaskCtx, chain: AnyBox) -> Result<Box<dyn Task>>;
}

/// An operator stage: wraps the downstream `Box<dyn BatchSink<Out>>` into a `Box<dyn BatchSink<In>>`.
pub(crate) trait ErasedOp: Send {
    fn wrap(&self, ctx: &SubtaskCtx, next: AnyBox) -> Result<AnyBox>;
}

/// A sink stage: opens the `Box<dyn BatchSink<In>>` of one subtask, and publishes or discards
/// the transactions its writers staged.
pub(crate) trait ErasedSink: Send + Sync {
    fn open(&self, ctx: &SubtaskCtx) -> Result<AnyBox>;
    fn commit(&self, transaction: &str) -> Result<()>;
    fn persist(&self, transaction: &str) -> Result<()>;
    fn check_start(&self, start: &RunStart<'_>) -> Result<()>;
    fn begin(&self, start: &RunStart<'_>) -> Result<()>;
}

/// Typed by a stage's input type: makes its input channels and the task that reads them.
pub(crate) trait InputKit: Send {
    /// A channel of `capacity` batches from one sending subtask to task `reader`:
    /// `(sender, receiver)`.
    fn channel(&self, capacity: usize, reader: TaskId) -> (AnyBox, AnyBox);
    /// The receiving end of logical channel `channel` of `connection`, from a sending subtask
    /// in the process at its other end, with room for `capacity` batches; `waker` wakes its
    /// reading task.
    fn remote_input(
        &self,
        connection: &crate::runtime::transport::Connection,
        channel: u32,
        capacity: u32,
        waker: crate::runtime::executor::RemoteWaker,
    ) -> Result<AnyBox>;
    /// The sending end of logical channel `channel` of `connection`, to a receiving subtask in
    /// the process at its other end; `waker` wakes the sending task.
    fn remote_output(
        &self,
        connection: &crate::runtime::transport::Connection,
        channel: u32,
        waker: crate::runtime::executor::RemoteWaker,
    ) -> Result<AnyBox>;
    /// The task that reads `receivers` (one per sending subtask) into `chain`.
    fn task(&self, receivers: Vec<AnyBox>, chain: AnyBox) -> Result<Box<dyn Task>>;
    /// `sink` (a `Box<dyn BatchSink<In>>`, this stage's) counting every batch it takes as a
    /// batch into `into` and out of `from` (the stage before it in the chain).
    fn meter(&self, sink: AnyBox, into: Option<Meter>, from: Option<Meter>) -> Result<AnyBox>;
}

/// A subtask's meter, as the deployment hands it to the chain.
pub(crate) type Meter = std::sync::Arc<crate::metrics::SubtaskMeter>;

/// Typed by a stage's output type: makes the tail of a chain that writes to channels.
pub(crate) trait OutputKit: Send {
    /// A `Box<dyn BatchSink<Out>>` sending to `senders`: the channel to the matching subtask
    /// for a forward edge, else one channel per downstream subtask.
    fn channel_out(
        &self,
        senders: Vec<AnyBox>,
        how: Partitioning,
        ctx: &SubtaskCtx,
    ) -> Result<AnyBox>;
    /// A `Box<dyn BatchSink<Out>>` that copies every batch to each of `outs`.
    fn fan_out(&self, outs: Vec<AnyBox>) -> Result<AnyBox>;
    /// `tail` (a `Box<dyn BatchSink<Out>>`: the chain's writer to its channels) counting every
    /// batch it takes as a batch out of `from` (the chain's last stage).
    fn meter(&self, tail: AnyBox, from: Meter) -> Result<AnyBox>;
}

/// The implementation of a node, by role.
pub(crate) enum NodeImpl {
    Source(Box<dyn ErasedSource>),
    Op(Box<dyn ErasedOp>),
    Sink(Box<dyn ErasedSink>),
}

/// One stage of the logical graph.
pub(crate) struct Node {
    pub name: String,
    pub kind: StageKind,
    pub parallelism: Parallelism,
    /// Upstream nodes; several means a union.
    pub inputs: Vec<usize>,
    pub imp: NodeImpl,
    /// Present on every node with an input (operators and sinks).
    pub input_kit: Option<Box<dyn InputKit>>,
    /// Present on every node with an output (sources and operators).
    pub output_kit: Option<Box<dyn OutputKit>>,
}

/// The logical graph, nodes in creation order (which is a topological order: a stream exists
/// before any stage reads it).
#[derive(Default)]
pub(crate) struct Graph {
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Downstream nodes of `node`, in creation order.
    pub fn outputs(&self, node: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.nodes[n].inputs.contains(&node))
            .collect()
    }

    /// The index of the stage called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}
