//! What a checkpoint is made of: its id, its manifest, and the integrity data of its parts.
//!
//! The manifest is the checkpoint's table of contents, written last: the job's number of key
//! groups, which stages were snapshotted at which parallelism, and which part files each wrote
//! (with size and checksum, so that a reader can tell a truncated or flipped file). It is encoded
//! with [`super::codec`] inside a checksummed envelope. Where the files live and how they are
//! read is [`super::checkpoint`]'s business.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hasher;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::codec;
use crate::error::{Error, Result};

/// Length of the codec header (magic, version, codec id) that starts every part file.
pub(crate) use codec::{check_header, HEADER_LEN};

/// The name of a checkpoint's manifest file, next to its stages' directories.
pub const MANIFEST: &str = "_manifest";

/// The number of a checkpoint of a job; checkpoints of a job are numbered upwards.
///
/// Displayed (and named in storage) as `chk-00000012`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckpointId(pub u64);

impl CheckpointId {
    /// Parses a directory name written by `Display` (`chk-00000012`); anything else is `None`.
    pub(crate) fn from_dir_name(name: &str) -> Option<CheckpointId> {
        let digits = name.strip_prefix("chk-")?;
        if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id = CheckpointId(digits.parse().ok()?);
        // Only the canonical spelling: `chk-000000012` is not checkpoint 12.
        (id.to_string() == name).then_some(id)
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chk-{:08}", self.0)
    }
}

impl FromStr for CheckpointId {
    type Err = Error;

    /// Accepts `12` and `chk-00000012` (e.g. for `--restore`).
    fn from_str(s: &str) -> Result<CheckpointId> {
        let digits = s.strip_prefix("chk-").unwrap_or(s);
        digits
            .parse()
            .map(CheckpointId)
            .map_err(|_| Error::InvalidName {
                what: "checkpoint id",
                name: s.to_string(),
                reason: "expected a number such as `12` or `chk-00000012`".into(),
            })
    }
}

/// A part file of a checkpoint as written: its name, size and checksum.
///
/// [`super::checkpoint::CheckpointStore::write_part`] returns it; the runtime puts it in the
/// manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// The part's name within its stage (e.g. `kg-00017` or `subtask-00003`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// XXH64 (seed 0) of all its bytes, header included.
    pub checksum: u64,
}

impl PartInfo {
    /// The info of a part named `name` holding `bytes`.
    pub fn of(name: impl Into<String>, bytes: &[u8]) -> PartInfo {
        PartInfo {
            name: name.into(),
            size: bytes.len() as u64,
            checksum: checksum(bytes),
        }
    }
}

/// The name of the part holding key groups `first..=last` of a keyed stage: `kg-00000-00063`.
pub fn key_group_part(first: usize, last: usize) -> String {
    format!("kg-{first:05}-{last:05}")
}

/// The key groups a part named by [`key_group_part`] holds; `None` for other names.
pub fn key_groups_of_part(name: &str) -> Option<std::ops::RangeInclusive<usize>> {
    let (first, last) = name.strip_prefix("kg-")?.split_once('-')?;
    let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last).then_some(first..=last)
}

/// The file name of part `part` written by the run of epoch `epoch`: `kg-00000-00063.e00000003`.
pub fn part_file(part: &str, epoch: u64) -> String {
    format!("{part}.e{epoch:08}")
}

/// The name of the part holding the state of subtask `subtask` (e.g. of a source or sink):
/// `subtask-00003`.
pub fn subtask_part(subtask: usize) -> String {
    format!("subtask-{subtask:05}")
}

/// What one stage wrote into a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSnapshot {
    /// The stage's parallelism when the checkpoint was taken.
    pub parallelism: usize,
    /// The parts it wrote, in the order they were added.
    pub parts: Vec<PartInfo>,
}

/// The table of contents of a complete checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The checkpoint it describes.
    pub checkpoint: CheckpointId,
    /// The job's id.
    pub job_id: String,
    /// The job's number of key groups (keyed state is split into this many groups).
    pub key_groups: usize,
    /// Per stage name, its parallelism and parts.
    pub stages: BTreeMap<String, StageSnapshot>,
    /// True for the final checkpoint of a run whose input ended: its stateful stages have run
    /// their end-of-input hooks, and a restore from it must not run them again.
    pub end_of_input: bool,
    /// The epoch of the run that took it (see [`super::checkpoint::CheckpointStore::claim_epoch`]):
    /// its part files' names carry it, so that two runs of one job never write the same file.
    pub epoch: u64,
}

impl Manifest {
    /// An empty manifest of checkpoint `checkpoint` of `job_id`.
    pub fn new(job_id: impl Into<String>, checkpoint: CheckpointId, key_groups: usize) -> Self {
        Manifest {
            checkpoint,
            job_id: job_id.into(),
            key_groups,
            stages: BTreeMap::new(),
            end_of_input: false,
            epoch: 0,
        }
    }

    /// Records `part` as written by `stage`, running at `parallelism`.
    pub fn add_part(&mut self, stage: impl Into<String>, parallelism: usize, part: PartInfo) {
        let snapshot = self.stages.entry(stage.into()).or_default();
        snapshot.parallelism = parallelism;
        snapshot.parts.push(part);
    }

    /// The info of part `part` of `stage`, if the manifest lists it.
    pub fn part(&self, stage: &str, part: &str) -> Option<&PartInfo> {
        self.stages
            .get(stage)?
            .parts
            .iter()
            .find(|p| p.name == part)
    }

    /// Every `(stage, part)` listed.
    pub fn parts(&self) -> impl Iterator<Item = (&str, &PartInfo)> {
        self.stages
            .iter()
            .flat_map(|(stage, s)| s.parts.iter().map(move |p| (stage.as_str(), p)))
    }

    /// Checks what a reader relies on: names usable in paths, no part listed twice.
    pub(crate) fn check(&self) -> Result<()> {
        check_name("job id", &self.job_id)?;
        for (stage, snapshot) in &self.stages {
            check_stage(stage)?;
            let mut seen = std::collections::BTreeSet::new();
            for part in &snapshot.parts {
                check_name("part name", &part.name)?;
                if !seen.insert(part.name.as_str()) {
                    return Err(Error::InvalidName {
                        what: "part name",
                        name: part.name.clone(),
                        reason: format!("stage `{stage}` lists it twice"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The manifest file's bytes: the codec-encoded manifest inside a checksummed envelope.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let manifest = codec::encode(self)?;
        codec::encode(&Envelope {
            checksum: checksum(&manifest),
            manifest,
        })
    }

    /// Decodes a manifest file; the error says what is wrong with it.
    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        let envelope: Envelope = codec::decode(bytes).map_err(|e| e.to_string())?;
        if checksum(&envelope.manifest) != envelope.checksum {
            return Err("checksum mismatch".into());
        }
        codec::decode(&envelope.manifest).map_err(|e| e.to_string())
    }
}

/// The manifest file: a checksum over the encoded manifest, so that any flipped byte is caught.
#[derive(Serialize, Deserialize)]
struct Envelope {
    checksum: u64,
    manifest: Vec<u8>,
}

/// The checksum of part and manifest bytes: XXH64 with seed 0.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0, bytes)
}

/// An incremental [`checksum`], for reading a part in chunks.
#[derive(Default)]
pub(crate) struct Checksum(twox_hash::XxHash64);

impl Checksum {
    /// Adds `bytes`.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// The checksum of everything added.
    pub(crate) fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// Checks a name that becomes one path segment: ASCII letters, digits, `-`, `_`, `.`; not
/// starting with `.`; at most 200 bytes. These names work on every object store and file system.
pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 200 {
        Some("it is longer than 200 bytes")
    } else if name.starts_with('.') {
        Some("it starts with `.`")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Some("only ASCII letters, digits, `-`, `_` and `.` are allowed")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidName {
            what,
            name: name.to_string(),
            reason: reason.into(),
        }),
    }
}

/// [`check_name`] for a stage, which must also not be the manifest's name.
pub(crate) fn check_stage(stage: &str) -> Result<()> {
    check_name("stage name", stage)?;
    if stage == MANIFEST {
        return Err(Error::InvalidName {
            what: "stage name",
            name: stage.to_string(),
            reason: "it is reserved for the checkpoint's manifest".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let mut m = Manifest::new("job-1", CheckpointId(12), 128);
        m.add_part("totals", 2, PartInfo::of(key_group_part(0, 0), b"abc"));
        m.add_part("totals", 2, PartInfo::of(key_group_part(1, 1), b"de"));
        m.add_part("orders", 1, PartInfo::of(subtask_part(0), b"f"));
        m
    }

    #[test]
    fn checkpoint_id_names() {
        assert_eq!(CheckpointId(12).to_string(), "chk-00000012");
        assert_eq!(CheckpointId(1_234_567_890).to_string(), "chk-1234567890");
        assert_eq!(
            CheckpointId::from_dir_name("chk-00000012"),
            Some(CheckpointId(12))
        );
        assert_eq!(
            CheckpointId::from_dir_name("chk-1234567890"),
            Some(CheckpointId(1_234_567_890))
        );
        for bad in [
            "chk-12",
            "chk-000000012",
            "chk-0000001a",
            "12",
            "chk-",
            "_manifest",
        ] {
            assert_eq!(CheckpointId::from_dir_name(bad), None, "{bad}");
        }
        assert_eq!("12".parse::<CheckpointId>().unwrap(), CheckpointId(12));
        assert_eq!(
            "chk-00000012".parse::<CheckpointId>().unwrap(),
            CheckpointId(12)
        );
        assert!("latest".parse::<CheckpointId>().is_err());
    }

    #[test]
    fn manifest_round_trip() {
        let m = manifest();
        let bytes = m.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(m.part("totals", "kg-00001-00001").unwrap().size, 2);
        assert_eq!(m.parts().count(), 3);
        m.check().unwrap();
    }

    #[test]
    fn every_flipped_byte_of_a_manifest_is_caught() {
        let bytes = manifest().encode().unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(Manifest::decode(&bad).is_err(), "flip at {i} not caught");
        }
        for len in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn manifest_check_rejects_bad_names() {
        let mut m = manifest();
        m.add_part("totals", 2, PartInfo::of("../escape", b""));
        assert!(m.check().unwrap_err().to_string().contains("../escape"));
        let mut m = manifest();
        m.add_part("totals", 2, PartInfo::of(key_group_part(0, 0), b""));
        assert!(m.check().unwrap_err().to_string().contains("twice"));
        let mut m = manifest();
        m.add_part("_manifest", 1, PartInfo::of("p", b""));
        assert!(m.check().unwrap_err().to_string().contains("reserved"));
    }

    #[test]
    fn names() {
        check_name("job id", "simple_etl-2.v1").unwrap();
        for bad in ["", ".hidden", "a/b", "a b", "é", ".."] {
            assert!(check_name("job id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn incremental_checksum_matches() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut c = Checksum::default();
        for chunk in data.chunks(333) {
            c.update(chunk);
        }
        assert_eq!(c.finish(), checksum(&data));
    }

    #[test]
    fn headers() {
        let good = codec::encode(&5u32).unwrap();
        check_header(&good).unwrap();
        assert!(check_header(&good[..3]).unwrap_err().contains("truncated"));
        assert!(check_header(b"PK\x03\x04 zip file")
            .unwrap_err()
            .contains("magic"));
    }
}
