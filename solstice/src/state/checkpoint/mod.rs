//! The checkpoint layout and catalogue over a [`StateBackend`]: writing parts, committing,
//! listing, pruning, and opening a checkpoint for restore with its integrity checked.
//!
//! Layout under the backend's root:
//!
//! ```text
//! {job_id}/chk-{n:08}/{stage}/{part}.e{epoch:08}   data files, codec-encoded (e.g. one per
//!                                                  key-group range), named after the run
//! {job_id}/chk-{n:08}/_manifest                    written last, create-only
//! {job_id}/_epochs/{epoch:08}                      one per run of the job (see `claim_epoch`)
//! ```
//!
//! A checkpoint without its manifest does not exist: it is in progress, or it failed. The
//! manifest lists every part with its size and checksum, so a reader can tell a truncated,
//! corrupt or foreign file, and fall back to the checkpoint before
//! ([`CheckpointStore::open_latest_valid`]).
//!
//! Not here: when checkpoints are taken (barriers) and what the parts hold (the runtime), how state
//! is encoded ([`super::codec`]), the manifest's contents ([`super::manifest`]).
//!
//! ```
//! use std::collections::BTreeMap;
//! use solstice::state::{checkpoint::CheckpointStore, codec, manifest::{CheckpointId, Manifest}};
//!
//! let store = CheckpointStore::from_url("memory://", &BTreeMap::new())?;
//! let id = CheckpointId(1);
//! let part = store.write_part("job", id, "totals", "kg-00000", codec::encode(&42u64)?)?;
//! let mut manifest = Manifest::new("job", id, 128);
//! manifest.add_part("totals", 1, part);
//! store.commit("job", &manifest)?;
//!
//! let restored = store.open_latest_valid("job")?.expect("a checkpoint");
//! assert_eq!(restored.checkpoint.id(), id);
//! assert_eq!(restored.checkpoint.decode_part::<u64>("totals", "kg-00000")?, 42);
//! # Ok::<(), solstice::Error>(())
//! ```

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt};

use super::backend::{StateBackend, UploadHandle};
use super::manifest::{
    check_header, check_name, check_stage, part_file, CheckpointId, Manifest, PartInfo, MANIFEST,
};
use crate::error::{Error, Result};

mod epoch;
mod restore;

pub use epoch::{EpochClaim, EPOCHS};
pub use restore::{OpenCheckpoint, RestorePoint, SkippedCheckpoint};

/// Default cap on a manifest read into memory: 64 MiB.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Default cap on a part read into memory: 1 GiB.
pub const DEFAULT_MAX_PART_BYTES: u64 = 1 << 30;

/// Requests in flight at once when checking or listing many objects.
const CONCURRENCY: usize = 8;

/// How much of a checkpoint [`CheckpointStore::open`] reads to check it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verification {
    /// Read every part and check its checksum (streamed: memory stays small). Catches any
    /// corruption before the restore starts, at the price of reading the checkpoint twice.
    #[default]
    Full,
    /// Check that every part exists with its recorded size, and read its header only.
    /// Bit flips inside a part are then caught when the part is read.
    Headers,
}

/// Checkpoints of jobs in a [`StateBackend`]. Cheap to clone.
///
/// All methods block the calling thread until the backend has answered, except the background
/// part writes ([`CheckpointStore::start_write_part`], [`CheckpointStore::write_part_then`]).
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    backend: StateBackend,
    /// The epoch part files are written under.
    epoch: u64,
    verification: Verification,
    max_manifest_bytes: u64,
    max_part_bytes: u64,
}

impl CheckpointStore {
    /// Checkpoints in `backend`, with [`Verification::Full`] and the default read limits.
    pub fn new(backend: StateBackend) -> Self {
        CheckpointStore {
            backend,
            epoch: 0,
            verification: Verification::Full,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            max_part_bytes: DEFAULT_MAX_PART_BYTES,
        }
    }

    /// Checkpoints in the backend at `url` (see [`StateBackend::open`] for URLs and options).
    pub fn from_url(url: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        Ok(CheckpointStore::new(StateBackend::open(url, options)?))
    }

    /// Sets how much [`CheckpointStore::open`] reads to check a checkpoint.
    pub fn with_verification(mut self, verification: Verification) -> Self {
        self.verification = verification;
        self
    }

    /// Sets the epoch that the part files written through this store are named after (default 0):
    /// the one [`CheckpointStore::claim_epoch`] gave the run.
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// The epoch part files are written under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Sets the largest part that may be written or read (default [`DEFAULT_MAX_PART_BYTES`]).
    pub fn with_max_part_bytes(mut self, max: u64) -> Self {
        self.max_part_bytes = max;
        self
    }

    /// Sets the largest manifest that may be read (default [`DEFAULT_MAX_MANIFEST_BYTES`]).
    pub fn with_max_manifest_bytes(mut self, max: u64) -> Self {
        self.max_manifest_bytes = max;
        self
    }

    /// The backend.
    pub fn backend(&self) -> &StateBackend {
        &self.backend
    }

    /// Writes part `part` of `stage` into checkpoint `id` of `job` and waits until it is durable.
    ///
    /// `bytes` must be codec-encoded ([`crate::state::codec::encode`]); a part written by an
    /// earlier attempt is overwritten. Returns the [`PartInfo`] to put in the manifest.
    pub fn write_part(
        &self,
        job: &str,
        id: CheckpointId,
        stage: &str,
        part: &str,
        bytes: Vec<u8>,
    ) -> Result<PartInfo> {
        let upload = self.start_write_part(job, id, stage, part, bytes)?;
        let path = upload.path.clone();
        let info = upload.wait()?;
        self.backend.sync(&[path])?;
        Ok(info)
    }

    /// Like [`CheckpointStore::write_part`], but returns once the upload has started: the
    /// [`PartUpload`] can be polled or waited on. Names and the codec header are checked here.
    ///
    /// On `file://` the finished upload is written but not yet durable: [`CheckpointStore::commit`]
    /// makes every part of the checkpoint durable at once before it writes the manifest.
    pub fn start_write_part(
        &self,
        job: &str,
        id: CheckpointId,
        stage: &str,
        part: &str,
        bytes: Vec<u8>,
    ) -> Result<PartUpload> {
        let (path, info) = self.prepare_part(job, id, stage, part, &bytes)?;
        Ok(PartUpload {
            info,
            upload: self.backend.upload_unsynced(&path, bytes),
            path,
        })
    }

    /// Like [`CheckpointStore::start_write_part`], calling `done` with the outcome when the
    /// upload has finished (on the backend's I/O thread: see [`StateBackend::upload_then`]).
    /// Errors found before the upload starts are returned, and `done` is not called. The part
    /// is durable when `done` runs.
    pub fn write_part_then(
        &self,
        job: &str,
        id: CheckpointId,
        stage: &str,
        part: &str,
        bytes: Vec<u8>,
        done: impl FnOnce(Result<PartInfo>) + Send + 'static,
    ) -> Result<()> {
        let (path, info) = self.prepare_part(job, id, stage, part, &bytes)?;
        self.backend
            .upload_then(&path, bytes, move |result| done(result.map(|()| info)));
        Ok(())
    }

    fn prepare_part(
        &self,
        job: &str,
        id: CheckpointId,
        stage: &str,
        part: &str,
        bytes: &[u8],
    ) -> Result<(String, PartInfo)> {
        let path = self.part_path(job, id, stage, part, self.epoch)?;
        check_header(bytes).map_err(|reason| {
            Error::Codec(format!(
                "checkpoint part {}: {reason} (parts must be encoded with state::codec)",
                self.backend.location(&path)
            ))
        })?;
        let size = bytes.len() as u64;
        if size > self.max_part_bytes {
            return Err(Error::TooLarge {
                url: self.backend.url().to_string(),
                path,
                size,
                limit: self.max_part_bytes,
            });
        }
        Ok((path, PartInfo::of(part, bytes)))
    }

    /// Completes checkpoint `manifest.checkpoint` of `job` by writing its manifest, create-only.
    ///
    /// Every part the manifest lists must be written (with the recorded size) before; a missing
    /// one is an [`Error::Internal`]. Committing a checkpoint twice fails with
    /// [`Error::AlreadyExists`], and leaves the first commit in place.
    pub fn commit(&self, job: &str, manifest: &Manifest) -> Result<()> {
        let id = manifest.checkpoint;
        if manifest.job_id != job {
            return Err(Error::Internal(format!(
                "the manifest of {id} of job `{}` was committed for job `{job}`",
                manifest.job_id
            )));
        }
        manifest.check()?;
        let dir = self.checkpoint_dir(job, id)?;
        let present = self.sizes(&dir)?;
        for (stage, part) in manifest.parts() {
            let path = part_object(&dir, stage, &part.name, manifest.epoch);
            match present.get(&path) {
                Some(&size) if size == part.size => {}
                found => {
                    return Err(Error::Internal(format!(
                        "cannot commit {id} of job `{job}`: part {} is {} (the manifest says {} \
                         bytes); wait for every part's upload before committing",
                        self.backend.location(&path),
                        found.map_or("missing".to_string(), |s| format!("{s} bytes")),
                        part.size
                    )))
                }
            }
        }
        self.commit_written(job, manifest, || Ok(()))
    }

    /// [`CheckpointStore::commit`] for a caller that waited for every part's upload itself (the
    /// checkpoint coordinator): the parts are not listed again. Makes them durable, running
    /// `meanwhile` (e.g. the sinks' own syncs) while the fsyncs run, then writes the manifest,
    /// create-only, if both succeeded.
    pub(crate) fn commit_written(
        &self,
        job: &str,
        manifest: &Manifest,
        meanwhile: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let dir = self.checkpoint_dir(job, manifest.checkpoint)?;
        let parts: Vec<String> = manifest
            .parts()
            .map(|(stage, part)| part_object(&dir, stage, &part.name, manifest.epoch))
            .collect();
        let synced = self.backend.start_sync(&parts);
        let meanwhile = meanwhile();
        let synced = synced.wait();
        meanwhile?;
        synced?;
        self.backend
            .put_create_only(&format!("{dir}/{MANIFEST}"), manifest.encode()?)
    }

    /// Deletes everything of `job` in the store but the epochs of its runs (which must survive,
    /// so that an older run still going learns that a newer one started): every checkpoint,
    /// complete or not.
    pub fn discard(&self, job: &str) -> Result<()> {
        check_name("job id", job)?;
        let listing = self.backend.list_dir(job)?;
        for dir in listing.dirs.iter().filter(|d| *d != EPOCHS) {
            self.backend.delete_dir(&format!("{job}/{dir}"))?;
        }
        self.backend
            .delete_many(listing.objects.into_iter().map(|o| o.path).collect())
    }

    /// Takes checkpoint `id` of `job` back: deletes its manifest, so that it is not complete any
    /// more (its parts go with the next prune).
    pub(crate) fn uncommit(&self, job: &str, id: CheckpointId) -> Result<()> {
        let dir = self.checkpoint_dir(job, id)?;
        self.backend.delete(&format!("{dir}/{MANIFEST}"))
    }

    /// The complete checkpoints of `job` (those with a manifest), oldest first.
    pub fn list(&self, job: &str) -> Result<Vec<CheckpointId>> {
        Ok(self
            .catalogue(job)?
            .into_iter()
            .filter_map(|(id, complete)| complete.then_some(id))
            .collect())
    }

    /// The newest complete checkpoint of `job`, if any.
    pub fn latest(&self, job: &str) -> Result<Option<CheckpointId>> {
        Ok(self.list(job)?.pop())
    }

    /// The complete checkpoints of `job`, newest first: the order to try them in on restore.
    pub fn restore_candidates(&self, job: &str) -> Result<Vec<CheckpointId>> {
        let mut ids = self.list(job)?;
        ids.reverse();
        Ok(ids)
    }

    /// Reads and checks the manifest of checkpoint `id` of `job`.
    ///
    /// [`Error::CheckpointNotFound`] if it has none; [`Error::CorruptCheckpoint`] if it cannot be
    /// decoded, fails its checksum, or describes another checkpoint or job.
    pub fn read_manifest(&self, job: &str, id: CheckpointId) -> Result<Manifest> {
        let path = format!("{}/{MANIFEST}", self.checkpoint_dir(job, id)?);
        let bytes = match self.backend.get(&path, self.max_manifest_bytes) {
            Ok(bytes) => bytes,
            Err(Error::NotFound { url, .. }) => {
                return Err(Error::CheckpointNotFound {
                    job: job.to_string(),
                    checkpoint: id.to_string(),
                    url,
                })
            }
            Err(Error::TooLarge { size, limit, .. }) => {
                return Err(self.corrupt(
                    &path,
                    format!("{size} bytes, more than the manifest limit of {limit} bytes"),
                ))
            }
            Err(e) => return Err(e),
        };
        let manifest = Manifest::decode(&bytes).map_err(|reason| self.corrupt(&path, reason))?;
        if manifest.checkpoint != id || manifest.job_id != job {
            return Err(self.corrupt(
                &path,
                format!(
                    "it describes {} of job `{}`",
                    manifest.checkpoint, manifest.job_id
                ),
            ));
        }
        manifest
            .check()
            .map_err(|e| self.corrupt(&path, e.to_string()))?;
        Ok(manifest)
    }

    /// Reads part `part` of `stage` of checkpoint `id` as this store's epoch wrote it, checking
    /// only its codec header and the part size limit. Prefer [`OpenCheckpoint::read_part`],
    /// which reads the parts the manifest lists and checks their size and checksum.
    pub fn read_part(
        &self,
        job: &str,
        id: CheckpointId,
        stage: &str,
        part: &str,
    ) -> Result<Vec<u8>> {
        let path = self.part_path(job, id, stage, part, self.epoch)?;
        let bytes = self.backend.get(&path, self.max_part_bytes)?;
        check_header(&bytes).map_err(|reason| self.corrupt(&path, reason))?;
        Ok(bytes)
    }

    /// Deletes old checkpoints of `job`: keeps the newest `retain` complete ones, and deletes
    /// every older checkpoint directory, complete or not. Incomplete checkpoints newer than the
    /// newest complete one (in progress) are kept. Returns the deleted checkpoints, oldest first.
    ///
    /// `retain` is at least 1: the newest complete checkpoint is never deleted. A deleted
    /// checkpoint loses its manifest first, so a prune cut short leaves it incomplete (invisible),
    /// never complete with parts missing; the next prune finishes it.
    pub fn prune(&self, job: &str, retain: usize) -> Result<Vec<CheckpointId>> {
        let catalogue = self.catalogue(job)?;
        let complete: Vec<CheckpointId> = catalogue
            .iter()
            .filter_map(|(&id, &complete)| complete.then_some(id))
            .collect();
        let Some(&newest) = complete.last() else {
            return Ok(Vec::new());
        };
        let oldest_kept = complete[complete.len().saturating_sub(retain.max(1))];
        let mut deleted = Vec::new();
        for (&id, &is_complete) in &catalogue {
            let doomed = if is_complete {
                id < oldest_kept
            } else {
                id < newest
            };
            if !doomed {
                continue;
            }
            let dir = self.checkpoint_dir(job, id)?;
            if is_complete {
                self.backend.delete(&format!("{dir}/{MANIFEST}"))?;
            }
            self.backend.delete_dir(&dir)?;
            deleted.push(id);
        }
        Ok(deleted)
    }

    /// Every checkpoint directory of `job`, with whether it is complete (has its manifest).
    fn catalogue(&self, job: &str) -> Result<BTreeMap<CheckpointId, bool>> {
        check_name("job id", job)?;
        let listing = self.backend.list_dir(job)?;
        let ids: Vec<CheckpointId> = listing
            .dirs
            .iter()
            .filter_map(|name| CheckpointId::from_dir_name(name))
            .collect();
        let job = job.to_string();
        self.backend.run_async(move |store| async move {
            futures_util::stream::iter(ids)
                .map(|id| {
                    let (store, path) = (store.clone(), format!("{job}/{id}/{MANIFEST}"));
                    async move { Ok((id, store.exists(&path).await?)) }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect()
                .await
        })
    }

    /// Path -> size of every object under `dir`.
    fn sizes(&self, dir: &str) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .backend
            .list(dir)?
            .into_iter()
            .map(|o| (o.path, o.size))
            .collect())
    }

    fn checkpoint_dir(&self, job: &str, id: CheckpointId) -> Result<String> {
        check_name("job id", job)?;
        Ok(format!("{job}/{id}"))
    }

    /// The path of part `part` of `stage` in checkpoint `id`, written by the run of `epoch`.
    fn part_path(
        &self,
        job: &str,
        id: CheckpointId,
        stage: &str,
        part: &str,
        epoch: u64,
    ) -> Result<String> {
        check_stage(stage)?;
        check_name("part name", part)?;
        Ok(part_object(
            &self.checkpoint_dir(job, id)?,
            stage,
            part,
            epoch,
        ))
    }

    fn corrupt(&self, path: &str, reason: String) -> Error {
        Error::CorruptCheckpoint {
            path: self.backend.location(path),
            reason,
        }
    }
}

/// The object of part `name` of `stage` in the checkpoint directory `dir`, written by the run of
/// `epoch`.
fn part_object(dir: &str, stage: &str, name: &str, epoch: u64) -> String {
    format!("{dir}/{stage}/{}", part_file(name, epoch))
}

/// A background part write started by [`CheckpointStore::start_write_part`].
#[derive(Debug)]
pub struct PartUpload {
    info: PartInfo,
    upload: UploadHandle,
    /// Where it goes, relative to the backend's root.
    path: String,
}

impl PartUpload {
    /// The part's info (known before the upload finishes).
    pub fn info(&self) -> &PartInfo {
        &self.info
    }

    /// Blocks until the part is written (durable once its checkpoint is committed); returns its
    /// info for the manifest.
    pub fn wait(self) -> Result<PartInfo> {
        self.upload.wait().map(|()| self.info)
    }

    /// The outcome if the upload has finished, `None` while it runs (see
    /// [`UploadHandle::try_wait`]).
    pub fn try_wait(&mut self) -> Option<Result<PartInfo>> {
        let info = &self.info;
        self.upload
            .try_wait()
            .map(|result| result.map(|()| info.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::codec;
    use crate::state::manifest::key_group_part;

    fn store() -> CheckpointStore {
        CheckpointStore::from_url("memory://", &BTreeMap::new()).unwrap()
    }

    fn complete(store: &CheckpointStore, job: &str, n: u64) {
        let id = CheckpointId(n);
        let part = store
            .write_part(
                job,
                id,
                "s",
                &key_group_part(0, 0),
                codec::encode(&n).unwrap(),
            )
            .unwrap();
        let mut manifest = Manifest::new(job, id, 1);
        manifest.epoch = store.epoch();
        manifest.add_part("s", 1, part);
        store.commit(job, &manifest).unwrap();
    }

    #[test]
    fn layout() {
        // Part files carry the epoch of the run that wrote them.
        let store = store().with_epoch(3);
        complete(&store, "job", 12);
        let paths: Vec<String> = store
            .backend()
            .list("")
            .unwrap()
            .into_iter()
            .map(|o| o.path)
            .collect();
        assert_eq!(
            paths,
            [
                "job/chk-00000012/_manifest",
                "job/chk-00000012/s/kg-00000-00000.e00000003"
            ]
        );
    }

    #[test]
    fn other_objects_in_the_job_directory_are_left_alone() {
        let store = store();
        let backend = store.backend();
        backend.put("job/chk-7/x", vec![1]).unwrap();
        backend.put("job/chk-000000001/_manifest", vec![1]).unwrap();
        backend.put("job/notes.txt", vec![1]).unwrap();
        backend.put("job/staging/a", vec![1]).unwrap();
        complete(&store, "job", 1);
        complete(&store, "job", 2);
        assert_eq!(
            store.list("job").unwrap(),
            [CheckpointId(1), CheckpointId(2)]
        );
        assert_eq!(store.prune("job", 1).unwrap(), [CheckpointId(1)]);
        for path in [
            "job/chk-7/x",
            "job/chk-000000001/_manifest",
            "job/notes.txt",
            "job/staging/a",
        ] {
            assert!(backend.exists(path).unwrap(), "{path}");
        }
    }

    #[test]
    fn a_manifest_of_another_checkpoint_is_corrupt_here() {
        let store = store();
        complete(&store, "job", 1);
        // Copy chk-1's manifest (and part) to chk-2: valid bytes, wrong place.
        let backend = store.backend();
        let manifest = backend.get("job/chk-00000001/_manifest", 1 << 20).unwrap();
        backend.put("job/chk-00000002/_manifest", manifest).unwrap();
        let err = store.read_manifest("job", CheckpointId(2)).unwrap_err();
        assert!(
            err.to_string()
                .contains("describes chk-00000001 of job `job`"),
            "{err}"
        );
        let restored = store.open_latest_valid("job").unwrap().unwrap();
        assert_eq!(restored.checkpoint.id(), CheckpointId(1));
        assert_eq!(restored.skipped[0].id, CheckpointId(2));
    }
}
