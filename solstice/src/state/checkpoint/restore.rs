//! Opening a checkpoint for restore: checking its parts against the manifest, falling back past
//! corrupt checkpoints, and reading parts with their integrity checked.

use std::fmt;

use futures_util::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;

use super::{CheckpointStore, Verification, CONCURRENCY};
use crate::error::{Error, Result};
use crate::state::backend::AsyncStore;
use crate::state::codec;
use crate::state::manifest::{
    check_header, checksum, CheckpointId, Checksum, Manifest, PartInfo, HEADER_LEN,
};

impl CheckpointStore {
    /// Opens checkpoint `id` of `job` for restore: reads its manifest and checks that every part
    /// it lists exists with the recorded size and a valid header (and, with
    /// [`Verification::Full`], the recorded checksum).
    ///
    /// A problem with the checkpoint's files is an [`Error::CorruptCheckpoint`] naming the file;
    /// a missing manifest is [`Error::CheckpointNotFound`]; a backend failure is
    /// [`Error::Backend`].
    pub fn open(&self, job: &str, id: CheckpointId) -> Result<OpenCheckpoint> {
        let manifest = self.read_manifest(job, id)?;
        let dir = self.checkpoint_dir(job, id)?;
        let present = self.sizes(&dir)?;
        let mut checks = Vec::new();
        for (stage, part) in manifest.parts() {
            let path = super::part_object(&dir, stage, &part.name, manifest.epoch);
            match present.get(&path) {
                None => {
                    return Err(self.corrupt(&path, "listed in the manifest, but missing".into()))
                }
                Some(&size) if size != part.size => {
                    return Err(self.corrupt(
                        &path,
                        format!(
                            "{size} bytes, but the manifest says {} (truncated or overwritten)",
                            part.size
                        ),
                    ))
                }
                Some(_) => {}
            }
            if part.size > self.max_part_bytes {
                return Err(Error::TooLarge {
                    url: self.backend.url().to_string(),
                    path,
                    size: part.size,
                    limit: self.max_part_bytes,
                });
            }
            checks.push((path, part.clone()));
        }
        let verification = self.verification;
        self.backend.run_async(move |store| async move {
            futures_util::stream::iter(checks)
                .map(|(path, part)| {
                    let store = store.clone();
                    async move { verify_part(&store, &path, &part, verification).await }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await
        })?;
        Ok(OpenCheckpoint {
            store: self.clone(),
            job: job.to_string(),
            manifest,
        })
    }

    /// Opens the newest complete checkpoint of `job` that passes [`CheckpointStore::open`],
    /// falling back to older ones past corrupt checkpoints, which it reports in
    /// [`RestorePoint::skipped`] (so the runtime can log e.g. "checkpoint chk-00000012 is
    /// corrupt (…): restoring chk-00000011").
    ///
    /// `Ok(None)` if `job` has no complete checkpoint (a fresh start). If it has some but none
    /// can be opened, that is an [`Error::NoValidCheckpoint`] listing why: starting from scratch
    /// then would repeat output. Backend failures are returned as they are, never skipped.
    pub fn open_latest_valid(&self, job: &str) -> Result<Option<RestorePoint>> {
        let candidates = self.restore_candidates(job)?;
        if candidates.is_empty() {
            return Ok(None);
        }
        let mut skipped = Vec::new();
        for id in candidates {
            match self.open(job, id) {
                Ok(checkpoint) => {
                    return Ok(Some(RestorePoint {
                        checkpoint,
                        skipped,
                    }))
                }
                // Corrupt, or pruned since it was listed.
                Err(e @ (Error::CorruptCheckpoint { .. } | Error::CheckpointNotFound { .. })) => {
                    skipped.push(SkippedCheckpoint { id, reason: e });
                }
                Err(e) => return Err(e),
            }
        }
        let reasons: Vec<String> = skipped.iter().map(ToString::to_string).collect();
        Err(Error::NoValidCheckpoint {
            job: job.to_string(),
            url: self.backend.url().to_string(),
            count: skipped.len(),
            reasons: reasons.join("; "),
        })
    }
}

/// Checks one part against its [`PartInfo`]; corruption is an [`Error::CorruptCheckpoint`].
async fn verify_part(
    store: &AsyncStore,
    path: &str,
    part: &PartInfo,
    verification: Verification,
) -> Result<()> {
    let corrupt = |reason: String| Error::CorruptCheckpoint {
        path: store.location(path),
        reason,
    };
    // Deleted or replaced since it was listed: as bad as missing.
    let missing = |e: Error| match e {
        Error::NotFound { .. } => corrupt("listed in the manifest, but missing".into()),
        Error::TooLarge { size, .. } => {
            corrupt(format!("{size} bytes, but the manifest says {}", part.size))
        }
        e => e,
    };
    if part.size < HEADER_LEN as u64 {
        return Err(corrupt(format!(
            "truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
            part.size
        )));
    }
    match verification {
        Verification::Headers => {
            let header = store
                .get_range(path, 0..HEADER_LEN as u64)
                .await
                .map_err(missing)?;
            check_header(&header).map_err(corrupt)
        }
        Verification::Full => {
            let (read, scan) = store
                .read_chunks(path, part.size, PartScan::default(), PartScan::update)
                .await
                .map_err(missing)?;
            if read != part.size {
                return Err(corrupt(format!(
                    "{read} bytes, but the manifest says {} (truncated)",
                    part.size
                )));
            }
            check_header(&scan.header).map_err(corrupt)?;
            if scan.checksum.finish() != part.checksum {
                return Err(corrupt("checksum mismatch".into()));
            }
            Ok(())
        }
    }
}

/// What [`verify_part`] gathers while reading a part: its header and checksum.
#[derive(Default)]
struct PartScan {
    header: Vec<u8>,
    checksum: Checksum,
}

impl PartScan {
    fn update(&mut self, chunk: &[u8]) {
        let want = HEADER_LEN
            .saturating_sub(self.header.len())
            .min(chunk.len());
        self.header.extend_from_slice(&chunk[..want]);
        self.checksum.update(chunk);
    }
}

/// A checkpoint opened for restore: its manifest was read and its parts checked.
#[derive(Clone, Debug)]
pub struct OpenCheckpoint {
    store: CheckpointStore,
    job: String,
    manifest: Manifest,
}

impl OpenCheckpoint {
    /// The checkpoint's id.
    pub fn id(&self) -> CheckpointId {
        self.manifest.checkpoint
    }

    /// The job's id.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The manifest: stages, parallelism, parts, extra entries.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Reads part `part` of `stage`, checking its size, header and checksum against the
    /// manifest. A part the manifest does not list is [`Error::NotFound`].
    pub fn read_part(&self, stage: &str, part: &str) -> Result<Vec<u8>> {
        let store = &self.store;
        let path = store.part_path(&self.job, self.id(), stage, part, self.manifest.epoch)?;
        let Some(info) = self.manifest.part(stage, part) else {
            return Err(Error::NotFound {
                url: store.backend.url().to_string(),
                path,
            });
        };
        if info.size > store.max_part_bytes {
            return Err(Error::TooLarge {
                url: store.backend.url().to_string(),
                path,
                size: info.size,
                limit: store.max_part_bytes,
            });
        }
        let bytes = match store.backend.get(&path, info.size) {
            Ok(bytes) => bytes,
            Err(Error::NotFound { .. }) => {
                return Err(store.corrupt(&path, "listed in the manifest, but missing".into()))
            }
            Err(Error::TooLarge { size, .. }) => {
                return Err(store.corrupt(
                    &path,
                    format!("{size} bytes, but the manifest says {}", info.size),
                ))
            }
            Err(e) => return Err(e),
        };
        if bytes.len() as u64 != info.size {
            return Err(store.corrupt(
                &path,
                format!(
                    "{} bytes, but the manifest says {} (truncated)",
                    bytes.len(),
                    info.size
                ),
            ));
        }
        check_header(&bytes).map_err(|reason| store.corrupt(&path, reason))?;
        if checksum(&bytes) != info.checksum {
            return Err(store.corrupt(&path, "checksum mismatch".into()));
        }
        Ok(bytes)
    }

    /// Reads part `part` of `stage` ([`OpenCheckpoint::read_part`]) and decodes it with the
    /// codec; a decoding failure is an [`Error::CorruptCheckpoint`] naming the file.
    pub fn decode_part<T: DeserializeOwned>(&self, stage: &str, part: &str) -> Result<T> {
        let bytes = self.read_part(stage, part)?;
        codec::decode(&bytes).map_err(|e| self.corrupt_part(stage, part, e.to_string()))
    }

    /// The parts `stage` wrote into this checkpoint (none if it wrote nothing).
    pub fn parts(&self, stage: &str) -> &[PartInfo] {
        self.manifest()
            .stages
            .get(stage)
            .map(|s| s.parts.as_slice())
            .unwrap_or_default()
    }

    /// Every part of `stage`, decoded ([`OpenCheckpoint::decode_part`]), in manifest order.
    pub fn decode_stage<T: DeserializeOwned>(&self, stage: &str) -> Result<Vec<T>> {
        self.parts(stage)
            .iter()
            .map(|part| self.decode_part(stage, &part.name))
            .collect()
    }

    /// An [`Error::CorruptCheckpoint`] naming part `part` of `stage`'s file.
    pub(crate) fn corrupt_part(&self, stage: &str, part: &str, reason: String) -> Error {
        let path = self
            .store
            .part_path(&self.job, self.id(), stage, part, self.manifest.epoch)
            .unwrap_or_default();
        self.store.corrupt(&path, reason)
    }
}

/// The checkpoint to restore, found by [`CheckpointStore::open_latest_valid`].
#[derive(Debug)]
pub struct RestorePoint {
    /// The newest checkpoint that could be opened.
    pub checkpoint: OpenCheckpoint,
    /// Newer complete checkpoints passed over, newest first, with why.
    pub skipped: Vec<SkippedCheckpoint>,
}

/// A complete checkpoint that could not be opened.
#[derive(Debug)]
pub struct SkippedCheckpoint {
    /// Its id.
    pub id: CheckpointId,
    /// Why: an [`Error::CorruptCheckpoint`] naming the file, or [`Error::CheckpointNotFound`].
    pub reason: Error,
}

impl fmt::Display for SkippedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checkpoint {} is unusable ({})", self.id, self.reason)
    }
}
