//! Epochs: which run of a job owns its checkpoints now.
//!
//! Every run of a job that takes checkpoints claims the next epoch of the job in the store, a
//! create-only object `{job_id}/_epochs/{n:08}` naming the host, the process and the time it
//! started. A run's part files carry its epoch, so two runs of one job (a restart while the old
//! process still runs, a partitioned host, a user starting the job twice) never write the same
//! file, and a checkpoint one of them completed stays intact. Before a run publishes what a
//! checkpoint covers, it checks that no newer epoch exists; the older run then stops, naming the
//! newer one.
//!
//! A newer run claims its epoch before it lists the checkpoints to restore, and an older run
//! checks for a newer epoch after writing a manifest and before publishing: so either the newer
//! run sees the older run's checkpoint (and restores it, or one after it), or the older run sees
//! the newer epoch and takes its checkpoint back, publishing nothing.

use serde::{Deserialize, Serialize};

use super::CheckpointStore;
use crate::error::{Error, Result};
use crate::state::codec;

/// The folder of a job's epochs, under its checkpoints.
pub const EPOCHS: &str = "_epochs";

/// Epoch objects older than this many epochs before the newest are deleted when an epoch is
/// claimed (a run that old is long gone).
const KEPT_EPOCHS: u64 = 64;

/// Who claimed an epoch: enough to find the process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochClaim {
    /// The epoch.
    pub epoch: u64,
    /// The host name of the process.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it claimed the epoch, in milliseconds since the Unix epoch.
    pub started_millis: u64,
}

impl EpochClaim {
    /// A claim of `epoch` by this process, now.
    pub fn here(epoch: u64) -> EpochClaim {
        EpochClaim {
            epoch,
            host: host_name(),
            pid: std::process::id(),
            started_millis: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

impl std::fmt::Display for EpochClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "epoch {} (process {} on {}, started at {} ms since the Unix epoch)",
            self.epoch, self.pid, self.host, self.started_millis
        )
    }
}

/// This machine's host name (`unknown host` where it cannot be read).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

impl CheckpointStore {
    /// Claims the next epoch of `job` for this process and returns the claim. Epochs only grow:
    /// two runs claiming at once get different ones (the claim is a create-only write).
    pub fn claim_epoch(&self, job: &str) -> Result<EpochClaim> {
        crate::state::manifest::check_name("job id", job)?;
        let dir = format!("{job}/{EPOCHS}");
        for _ in 0..100 {
            let next = self.epochs(job)?.last().map_or(1, |n| n + 1);
            let claim = EpochClaim::here(next);
            match self
                .backend()
                .put_create_only(&format!("{dir}/{next:08}"), codec::encode(&claim)?)
            {
                Ok(()) => {
                    let old: Vec<String> = self
                        .epochs(job)?
                        .into_iter()
                        .filter(|&n| n + KEPT_EPOCHS < next)
                        .map(|n| format!("{dir}/{n:08}"))
                        .collect();
                    if !old.is_empty() {
                        self.backend().delete_many(old)?;
                    }
                    return Ok(claim);
                }
                // Another run claimed it first: try the one after.
                Err(Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Internal(format!(
            "cannot claim an epoch of job `{job}` in {}: other runs keep claiming them",
            self.backend().url()
        )))
    }

    /// The newest epoch of `job` after `epoch`, if a newer run claimed one.
    pub fn newer_epoch(&self, job: &str, epoch: u64) -> Result<Option<EpochClaim>> {
        // A newer run claimed `epoch + 1` (epochs are claimed in order), so one request tells
        // whether there is one; a listing then finds the newest.
        let next = format!("{job}/{EPOCHS}/{:08}", epoch + 1);
        match self.backend().exists(&next) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) => return Err(e),
        }
        let newest = self.epochs(job)?.last().copied().unwrap_or(epoch + 1);
        let path = format!("{job}/{EPOCHS}/{newest:08}");
        let claim = self
            .backend()
            .get(&path, 64 << 10)
            .ok()
            .and_then(|bytes| codec::decode::<EpochClaim>(&bytes).ok())
            .unwrap_or_else(|| EpochClaim {
                epoch: newest,
                host: "unknown host (its claim cannot be read)".into(),
                pid: 0,
                started_millis: 0,
            });
        Ok(Some(claim))
    }

    /// The epochs of `job` claimed so far, ascending.
    fn epochs(&self, job: &str) -> Result<Vec<u64>> {
        let mut epochs: Vec<u64> = self
            .backend()
            .list_dir(&format!("{job}/{EPOCHS}"))?
            .objects
            .iter()
            .filter_map(|o| o.path.rsplit('/').next()?.parse().ok())
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn epochs_grow_and_a_newer_run_is_seen() {
        let store = CheckpointStore::from_url("memory://", &BTreeMap::new()).unwrap();
        let first = store.claim_epoch("job").unwrap();
        assert_eq!(first.epoch, 1);
        assert_eq!(store.newer_epoch("job", 1).unwrap(), None);
        let second = store.claim_epoch("job").unwrap();
        let third = store.claim_epoch("job").unwrap();
        assert_eq!((second.epoch, third.epoch), (2, 3));
        // The older run learns of the newest one.
        assert_eq!(store.newer_epoch("job", 1).unwrap(), Some(third.clone()));
        assert_eq!(store.newer_epoch("job", 3).unwrap(), None);
        assert!(third
            .to_string()
            .contains(&format!("process {}", std::process::id())));
        // Other jobs have epochs of their own.
        assert_eq!(store.claim_epoch("other").unwrap().epoch, 1);
    }

    #[test]
    fn old_epochs_are_deleted() {
        let store = CheckpointStore::from_url("memory://", &BTreeMap::new()).unwrap();
        for _ in 0..KEPT_EPOCHS + 5 {
            store.claim_epoch("job").unwrap();
        }
        let epochs = store.epochs("job").unwrap();
        assert_eq!(epochs.first(), Some(&5));
        assert_eq!(epochs.last(), Some(&(KEPT_EPOCHS + 5)));
    }
}
