//! What travels between tasks, and the two ends it travels through.
//!
//! A task reads its upstream subtasks through [`Input`]s and a chain writes downstream through
//! [`Output`]s. The local channel ([`super::channel`]) implements both; a transport between
//! processes implements them too, so that tasks and operators do not change with the place their
//! input comes from or their output goes to. Both ends move whole batches: one call per batch,
//! none per record.

use crate::core::task::Cx;
use crate::error::Result;

/// What travels from one task to another.
pub(crate) enum Msg<T> {
    /// A batch of records.
    Data(Vec<T>),
    /// Checkpoint barrier: everything before it belongs to checkpoint `n`, everything after to
    /// the next one.
    Barrier(u64),
    /// The sender will send nothing more.
    End,
}

/// The reading end of a stream from one upstream subtask.
///
/// An input is made for one reading task. Once [`Input::try_recv`] has returned `None`, the input
/// wakes that task (through the executor's waker) when a message arrives, so the task can
/// report [`crate::core::task::Step::Wait`] without missing it.
pub(crate) trait Input<T>: Send {
    /// The next message, or `None` when none is available now.
    fn try_recv(&mut self, cx: &mut Cx<'_>) -> Result<Option<Msg<T>>>;
    /// Hands an emptied batch buffer back for reuse by the sender (dropped when not needed).
    fn recycle(&mut self, buffer: Vec<T>);
}

/// The sending end of a stream to one downstream subtask.
///
/// When the stream is full, [`Output::try_send`] hands the message back and the output wakes
/// the sending task once there is room again.
pub(crate) trait Output<T>: Send {
    /// An empty buffer for the next batch: a recycled one, or a new one of `capacity`.
    fn buffer(&mut self, capacity: usize) -> Vec<T>;
    /// Sends `msg`, or hands it back when the stream is full.
    fn try_send(&mut self, msg: Msg<T>, cx: &mut Cx<'_>) -> Result<Option<Msg<T>>>;
}
