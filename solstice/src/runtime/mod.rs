//! The runtime: the work-stealing executor, channels between tasks, and the tasks that read
//! sources and channels.
//!
//! Operators never see a channel: a chain of operators ends in a channel writer that the planner
//! attaches, so an operator does not know where its output goes.

pub(crate) mod channel;
pub(crate) mod coordinator;
pub(crate) mod executor;
pub(crate) mod tasks;
