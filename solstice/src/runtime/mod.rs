//! The runtime: the work-stealing executor, the messages between tasks and the ends they travel
//! through (local channels), the chain tails that partition output, the tasks that read sources
//! and inputs, the deployment of a plan into tasks and channels, the checkpoint coordinator, and
//! the supervisor that runs, restores and restarts a job; the transport between processes.
//!
//! Operators never see a channel: a chain of operators ends in a channel writer that the
//! deployment attaches, so an operator does not know where its output goes; a task reads an
//! [`message::Input`], so it does not know where its input comes from.

pub(crate) mod channel;
pub(crate) mod cluster;
pub(crate) mod coordinator;
pub(crate) mod deploy;
pub(crate) mod executor;
pub(crate) mod kits;
pub(crate) mod message;
pub(crate) mod partition;
pub(crate) mod placement;
pub(crate) mod protocol;
pub(crate) mod splits;
pub(crate) mod supervisor;
pub(crate) mod tasks;
// Its counters, frame reader and a few accessors serve its tests and benchmark only.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod transport;
pub(crate) mod worker;
