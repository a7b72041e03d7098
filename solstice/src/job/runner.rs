//! Running a job on a thread of its own.

use std::sync::Arc;

use super::JobResult;
use crate::error::{Error, Result};
use crate::runtime::coordinator::Triggers;
use crate::state::manifest::CheckpointId;

/// A job running on its own thread (see [`super::Job::start`]).
pub struct Runner {
    pub(super) triggers: Arc<Triggers>,
    pub(super) checkpoints: bool,
    pub(super) handle: std::io::Result<std::thread::JoinHandle<Result<JobResult>>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

impl Runner {
    /// Takes a checkpoint now (triggered after this call, not one already in flight) and waits
    /// until it is complete.
    /// Fails when the job takes no checkpoints, when the checkpoint fails, or when the job ends
    /// first.
    pub fn trigger_checkpoint(&self) -> Result<CheckpointId> {
        if !self.checkpoints {
            return Err(Error::Checkpoint {
                id: None,
                reason: "the job takes no checkpoints (no `job.checkpoint`)".into(),
            });
        }
        let request = self.triggers.request();
        let done = || self.handle.as_ref().map_or(true, |h| h.is_finished());
        self.triggers.wait_after(request, done)
    }

    /// Waits for the job to end.
    pub fn wait(self) -> Result<JobResult> {
        match self.handle {
            Ok(handle) => handle
                .join()
                .map_err(|_| Error::Internal("the job's thread panicked".into()))?,
            Err(e) => Err(Error::Internal(format!(
                "cannot start the job's thread: {e}"
            ))),
        }
    }
}
