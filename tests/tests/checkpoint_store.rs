//! The checkpoint storage layer on real backends (`memory://` and `file://` in a temp dir):
//! writing parts, committing, listing, pruning, and falling back past corrupt checkpoints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use solstice::state::backend::StateBackend;
use solstice::state::checkpoint::{CheckpointStore, Verification};
use solstice::state::codec;
use solstice::state::manifest::{key_group_part, subtask_part, CheckpointId, Manifest};
use solstice::Error;
use solstice_tests::{temp_dir, TempDir};

const JOB: &str = "orders_job";
const KEY_GROUPS: usize = 4;

fn memory_store() -> CheckpointStore {
    CheckpointStore::from_url("memory://", &BTreeMap::new()).expect("memory backend")
}

/// A store in a fresh directory below a temp dir (the directory does not exist yet: the backend
/// creates it).
fn file_store() -> (TempDir, PathBuf, CheckpointStore) {
    let tmp = temp_dir();
    let root = tmp.path().join("checkpoints");
    let url = format!("file://{}", root.display());
    let store = CheckpointStore::from_url(&url, &BTreeMap::new()).expect("file backend");
    assert!(root.is_dir(), "the backend creates its directory");
    (tmp, root, store)
}

/// State of key group `kg` in checkpoint `n`: distinct per checkpoint, so a restore shows which
/// checkpoint it came from.
fn kg_state(n: u64, kg: usize) -> BTreeMap<String, u64> {
    (0..3)
        .map(|i| (format!("user-{kg}-{i}"), n * 1000 + kg as u64 * 10 + i))
        .collect()
}

/// Writes and commits a full checkpoint `n`: a keyed stage with one part per key group (uploaded
/// in the background) and a source with one part.
fn checkpoint(store: &CheckpointStore, n: u64) -> Manifest {
    let id = CheckpointId(n);
    let mut manifest = Manifest::new(JOB, id, KEY_GROUPS);
    let uploads: Vec<_> = (0..KEY_GROUPS)
        .map(|kg| {
            let bytes = codec::encode(&kg_state(n, kg)).unwrap();
            store
                .start_write_part(JOB, id, "totals", &key_group_part(kg, kg), bytes)
                .unwrap()
        })
        .collect();
    for upload in uploads {
        manifest.add_part("totals", 2, upload.wait().unwrap());
    }
    let position = codec::encode(&(n * 7)).unwrap();
    let part = store
        .write_part(JOB, id, "orders", &subtask_part(0), position)
        .unwrap();
    manifest.add_part("orders", 1, part);
    store.commit(JOB, &manifest).unwrap();
    manifest
}

/// Writes parts of checkpoint `n` without committing it: an attempt that never completed.
fn incomplete(store: &CheckpointStore, n: u64) {
    for kg in 0..KEY_GROUPS {
        let bytes = codec::encode(&kg_state(n, kg)).unwrap();
        store
            .write_part(
                JOB,
                CheckpointId(n),
                "totals",
                &key_group_part(kg, kg),
                bytes,
            )
            .unwrap();
    }
}

fn ids(ns: &[u64]) -> Vec<CheckpointId> {
    ns.iter().map(|&n| CheckpointId(n)).collect()
}

/// Where a store of epoch 0 (the default) writes a part.
fn part_file(root: &Path, n: u64, stage: &str, part: &str) -> PathBuf {
    root.join(JOB)
        .join(CheckpointId(n).to_string())
        .join(stage)
        .join(solstice::state::manifest::part_file(part, 0))
}

fn manifest_file(root: &Path, n: u64) -> PathBuf {
    root.join(JOB)
        .join(CheckpointId(n).to_string())
        .join("_manifest")
}

fn write_commit_list_restore(store: &CheckpointStore) {
    assert_eq!(store.list(JOB).unwrap(), vec![]);
    assert_eq!(store.latest(JOB).unwrap(), None);
    assert!(store.open_latest_valid(JOB).unwrap().is_none());

    let first = checkpoint(store, 1);
    let second = checkpoint(store, 2);
    assert_eq!(store.list(JOB).unwrap(), ids(&[1, 2]));
    assert_eq!(store.latest(JOB).unwrap(), Some(CheckpointId(2)));
    assert_eq!(store.restore_candidates(JOB).unwrap(), ids(&[2, 1]));
    assert_eq!(store.read_manifest(JOB, CheckpointId(1)).unwrap(), first);

    let restored = store.open_latest_valid(JOB).unwrap().expect("a checkpoint");
    assert!(restored.skipped.is_empty());
    let open = restored.checkpoint;
    assert_eq!(open.id(), CheckpointId(2));
    assert_eq!(open.manifest(), &second);
    assert_eq!(open.manifest().stages["totals"].parallelism, 2);
    assert_eq!(open.manifest().stages["totals"].parts.len(), KEY_GROUPS);
    for kg in 0..KEY_GROUPS {
        let state: BTreeMap<String, u64> =
            open.decode_part("totals", &key_group_part(kg, kg)).unwrap();
        assert_eq!(state, kg_state(2, kg));
    }
    assert_eq!(
        open.decode_part::<u64>("orders", &subtask_part(0)).unwrap(),
        14
    );
    // A part the manifest does not list.
    let err = open.read_part("totals", "kg-00099-00099").unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    // Unchecked read of an older checkpoint's part.
    let bytes = store
        .read_part(JOB, CheckpointId(1), "orders", &subtask_part(0))
        .unwrap();
    assert_eq!(codec::decode::<u64>(&bytes).unwrap(), 7);
}

#[test]
fn write_commit_list_restore_in_memory() {
    write_commit_list_restore(&memory_store());
}

#[test]
fn write_commit_list_restore_on_disk() {
    let (_tmp, root, store) = file_store();
    write_commit_list_restore(&store);
    assert!(manifest_file(&root, 2).is_file());
    assert!(part_file(&root, 2, "totals", "kg-00003-00003").is_file());
    // A second store over the same directory (a restarted process) sees the same checkpoints.
    let url = format!("file://{}", root.display());
    let again = CheckpointStore::from_url(&url, &BTreeMap::new()).unwrap();
    assert_eq!(again.list(JOB).unwrap(), ids(&[1, 2]));
}

#[test]
fn a_checkpoint_without_manifest_does_not_exist() {
    for store in [memory_store(), file_store().2] {
        checkpoint(&store, 1);
        incomplete(&store, 2);
        assert_eq!(store.list(JOB).unwrap(), ids(&[1]));
        assert_eq!(store.latest(JOB).unwrap(), Some(CheckpointId(1)));
        let err = store.open(JOB, CheckpointId(2)).unwrap_err();
        assert!(matches!(err, Error::CheckpointNotFound { .. }), "{err}");
        assert!(err.to_string().contains("chk-00000002"), "{err}");
        let restored = store.open_latest_valid(JOB).unwrap().unwrap();
        assert_eq!(restored.checkpoint.id(), CheckpointId(1));
        // Other jobs in the same backend are separate.
        assert_eq!(store.list("other_job").unwrap(), vec![]);
    }
}

#[test]
fn committing_twice_is_the_distinct_already_exists_error() {
    let store = memory_store();
    let manifest = checkpoint(&store, 1);
    let mut again = manifest.clone();
    // A different manifest under the same id.
    again.stages.entry("orders".into()).or_default().parallelism = 3;
    let err = store.commit(JOB, &again).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "memory://orders_job/chk-00000001/_manifest already exists"
    );
    // The first commit stands.
    assert_eq!(store.read_manifest(JOB, CheckpointId(1)).unwrap(), manifest);
}

#[test]
fn commit_refuses_a_manifest_listing_unwritten_parts() {
    let store = memory_store();
    let id = CheckpointId(1);
    let mut manifest = Manifest::new(JOB, id, KEY_GROUPS);
    let part = store
        .write_part(
            JOB,
            id,
            "totals",
            "kg-00000-00000",
            codec::encode(&1u8).unwrap(),
        )
        .unwrap();
    let mut missing = part.clone();
    missing.name = "kg-00001-00001".into();
    manifest.add_part("totals", 1, part);
    manifest.add_part("totals", 1, missing);
    let err = store.commit(JOB, &manifest).unwrap_err();
    assert!(
        err.to_string()
            .contains("kg-00001-00001.e00000000 is missing"),
        "{err}"
    );
    assert_eq!(store.list(JOB).unwrap(), vec![]);

    let err = store.commit("another_job", &manifest).unwrap_err();
    assert!(err.to_string().contains("another_job"), "{err}");
}

#[test]
fn prune_keeps_the_newest_and_removes_older_and_stale_incomplete_ones() {
    let (_tmp, root, store) = file_store();
    checkpoint(&store, 1);
    incomplete(&store, 2); // failed attempt, older than the newest complete: stale
    checkpoint(&store, 3);
    checkpoint(&store, 4);
    checkpoint(&store, 5);
    incomplete(&store, 6); // in progress: kept

    let deleted = store.prune(JOB, 2).unwrap();
    assert_eq!(deleted, ids(&[1, 2, 3]));
    assert_eq!(store.list(JOB).unwrap(), ids(&[4, 5]));
    let mut dirs: Vec<String> = std::fs::read_dir(root.join(JOB))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs, ["chk-00000004", "chk-00000005", "chk-00000006"]);
    assert!(part_file(&root, 6, "totals", "kg-00000-00000").is_file());

    // Nothing more to do; and retain 0 still keeps the newest complete checkpoint.
    assert_eq!(store.prune(JOB, 2).unwrap(), vec![]);
    assert_eq!(store.prune(JOB, 0).unwrap(), ids(&[4]));
    assert_eq!(store.list(JOB).unwrap(), ids(&[5]));
    let restored = store.open_latest_valid(JOB).unwrap().unwrap();
    assert_eq!(restored.checkpoint.id(), CheckpointId(5));
}

#[test]
fn prune_removes_what_a_killed_writer_left_in_a_stale_folder() {
    let (_tmp, root, store) = file_store();
    checkpoint(&store, 1);
    // A process killed while writing checkpoint 2 can leave the store's temporary file of an
    // unfinished write, or only the directories made for it: listing the store shows neither.
    let stale = root.join(JOB).join("chk-00000002");
    std::fs::create_dir_all(stale.join("totals")).unwrap();
    std::fs::write(
        stale.join("totals").join("kg-00000-00000#1"),
        b"half a part",
    )
    .unwrap();
    let empty = root.join(JOB).join("chk-00000003");
    std::fs::create_dir_all(empty.join("events")).unwrap();
    checkpoint(&store, 4);

    assert_eq!(store.prune(JOB, 3).unwrap(), ids(&[2, 3]));
    assert!(!stale.exists() && !empty.exists());
    assert_eq!(store.list(JOB).unwrap(), ids(&[1, 4]));
}

#[test]
fn prune_in_memory_and_without_complete_checkpoints() {
    let store = memory_store();
    incomplete(&store, 1);
    // No complete checkpoint: everything may be in progress, nothing is deleted.
    assert_eq!(store.prune(JOB, 1).unwrap(), vec![]);
    for n in 2..=6 {
        checkpoint(&store, n);
    }
    assert_eq!(store.prune(JOB, 3).unwrap(), ids(&[1, 2, 3]));
    assert_eq!(store.list(JOB).unwrap(), ids(&[4, 5, 6]));
    let left: Vec<String> = store
        .backend()
        .list(JOB)
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    assert!(
        left.iter().all(|p| !p.contains("chk-00000001")
            && !p.contains("chk-00000002")
            && !p.contains("chk-00000003")),
        "{left:?}"
    );
}

/// Flips one byte of `path` at `offset` from the end.
fn flip(path: &Path, from_end: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() - from_end;
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// Restores and checks the fallback: chk-2 was spoiled, chk-1 is restored, and the reason names
/// `spoiled` and contains `why`.
fn assert_falls_back(store: &CheckpointStore, spoiled: &Path, why: &str) {
    let restored = store.open_latest_valid(JOB).unwrap().expect("a checkpoint");
    assert_eq!(restored.checkpoint.id(), CheckpointId(1));
    assert_eq!(restored.skipped.len(), 1);
    let skipped = &restored.skipped[0];
    assert_eq!(skipped.id, CheckpointId(2));
    assert!(
        matches!(skipped.reason, Error::CorruptCheckpoint { .. }),
        "{}",
        skipped.reason
    );
    let message = skipped.to_string();
    let name = spoiled
        .strip_prefix(spoiled.ancestors().nth(4).unwrap())
        .unwrap();
    assert!(message.contains(&*name.to_string_lossy()), "{message}");
    assert!(message.contains(why), "{message}");
    assert!(
        message.starts_with("checkpoint chk-00000002 is unusable ("),
        "{message}"
    );
    let state: BTreeMap<String, u64> = restored
        .checkpoint
        .decode_part("totals", &key_group_part(0, 0))
        .unwrap();
    assert_eq!(state, kg_state(1, 0));
}

fn two_checkpoints() -> (TempDir, PathBuf, CheckpointStore) {
    let (tmp, root, store) = file_store();
    checkpoint(&store, 1);
    checkpoint(&store, 2);
    (tmp, root, store)
}

#[test]
fn a_flipped_byte_in_a_part_falls_back_to_the_previous_checkpoint() {
    let (_tmp, root, store) = two_checkpoints();
    let part = part_file(&root, 2, "totals", "kg-00002-00002");
    flip(&part, 1); // in the payload: the header is fine, the checksum is not
    assert_falls_back(&store, &part, "checksum mismatch");
    let err = store.open(JOB, CheckpointId(2)).unwrap_err();
    assert!(
        err.to_string().starts_with("checkpoint file file://"),
        "{err}"
    );
}

#[test]
fn a_flipped_byte_in_a_manifest_falls_back_to_the_previous_checkpoint() {
    let (_tmp, root, store) = two_checkpoints();
    let manifest = manifest_file(&root, 2);
    flip(&manifest, 3);
    assert_falls_back(&store, &manifest, "_manifest is corrupt");
    let err = store.read_manifest(JOB, CheckpointId(2)).unwrap_err();
    assert!(matches!(err, Error::CorruptCheckpoint { .. }), "{err}");
}

#[test]
fn a_truncated_part_falls_back_to_the_previous_checkpoint() {
    let (_tmp, root, store) = two_checkpoints();
    let part = part_file(&root, 2, "orders", "subtask-00000");
    let bytes = std::fs::read(&part).unwrap();
    std::fs::write(&part, &bytes[..bytes.len() - 1]).unwrap();
    assert_falls_back(&store, &part, "truncated");
}

#[test]
fn a_truncated_manifest_falls_back_to_the_previous_checkpoint() {
    let (_tmp, root, store) = two_checkpoints();
    let manifest = manifest_file(&root, 2);
    let bytes = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();
    assert_falls_back(&store, &manifest, "_manifest is corrupt");
}

#[test]
fn a_missing_part_falls_back_to_the_previous_checkpoint() {
    let (_tmp, root, store) = two_checkpoints();
    let part = part_file(&root, 2, "totals", "kg-00001-00001");
    std::fs::remove_file(&part).unwrap();
    assert_falls_back(&store, &part, "missing");
}

#[test]
fn a_foreign_file_is_not_a_checkpoint_file() {
    let (_tmp, root, store) = two_checkpoints();
    // Same size as the part it replaces, so only its content gives it away.
    let part = part_file(&root, 2, "totals", "kg-00000-00000");
    let len = std::fs::metadata(&part).unwrap().len() as usize;
    let foreign: Vec<u8> = b"PAR1 not a state file at all "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect();
    std::fs::write(&part, &foreign).unwrap();
    assert_falls_back(&store, &part, "bad magic");
    let err = store
        .read_part(JOB, CheckpointId(2), "totals", "kg-00000-00000")
        .unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");

    // A foreign manifest too.
    let manifest = manifest_file(&root, 2);
    std::fs::write(&manifest, b"{\"not\": \"a manifest\"}").unwrap();
    assert_falls_back(&store, &manifest, "bad magic");
}

#[test]
fn header_verification_defers_payload_checks_to_reads() {
    let (_tmp, root, store) = two_checkpoints();
    let store = store.with_verification(Verification::Headers);
    let part = part_file(&root, 2, "totals", "kg-00003-00003");
    flip(&part, 2);
    let open = store
        .open(JOB, CheckpointId(2))
        .expect("headers are intact");
    let err = open.read_part("totals", "kg-00003-00003").unwrap_err();
    assert!(matches!(err, Error::CorruptCheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(err.to_string().contains("kg-00003-00003"), "{err}");
    // The intact parts still read.
    let _: BTreeMap<String, u64> = open.decode_part("totals", "kg-00002-00002").unwrap();
}

#[test]
fn when_every_checkpoint_is_corrupt_restoring_is_an_error() {
    let (_tmp, root, store) = two_checkpoints();
    flip(&part_file(&root, 1, "totals", "kg-00000-00000"), 1);
    flip(&manifest_file(&root, 2), 1);
    let err = store.open_latest_valid(JOB).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, Error::NoValidCheckpoint { count: 2, .. }),
        "{message}"
    );
    assert!(
        message.starts_with("job `orders_job` has 2 complete checkpoint(s) in file://"),
        "{message}"
    );
    assert!(message.contains("chk-00000002"), "{message}");
    assert!(message.contains("chk-00000001"), "{message}");
}

#[test]
fn reads_are_size_capped() {
    let backend = StateBackend::open("memory://", &BTreeMap::new()).unwrap();
    backend.put("blob", vec![7; 4096]).unwrap();
    assert_eq!(backend.get("blob", 4096).unwrap().len(), 4096);
    let err = backend.get("blob", 4095).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                size: 4096,
                limit: 4095,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "memory://blob is 4096 bytes, more than the read limit of 4095 bytes"
    );

    // A manifest larger than the store's limit is not read (and counts as corrupt).
    let store = CheckpointStore::new(backend.clone());
    checkpoint(&store, 1);
    let small = CheckpointStore::new(backend.clone()).with_max_manifest_bytes(16);
    let err = small.read_manifest(JOB, CheckpointId(1)).unwrap_err();
    assert!(err.to_string().contains("manifest limit of 16"), "{err}");
    // Parts over the part limit are neither written nor read.
    let tiny = CheckpointStore::new(backend).with_max_part_bytes(8);
    let err = tiny
        .write_part(
            JOB,
            CheckpointId(9),
            "s",
            "p",
            codec::encode(&[0u8; 32]).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    let err = tiny.open(JOB, CheckpointId(1)).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[test]
fn bad_names_and_unencoded_parts_are_rejected_before_writing() {
    let store = memory_store();
    let bytes = codec::encode(&1u32).unwrap();
    let err = store
        .write_part("../etc", CheckpointId(1), "s", "p", bytes.clone())
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidName { what: "job id", .. }),
        "{err}"
    );
    let err = store
        .write_part(JOB, CheckpointId(1), "_manifest", "p", bytes.clone())
        .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    let err = store
        .write_part(JOB, CheckpointId(1), "s", "a/b", bytes)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidName {
                what: "part name",
                ..
            }
        ),
        "{err}"
    );
    let err = store
        .write_part(JOB, CheckpointId(1), "s", "p", b"raw bytes".to_vec())
        .unwrap_err();
    assert!(matches!(err, Error::Codec(_)), "{err}");
    assert!(store.backend().list("").unwrap().is_empty());
}

#[test]
fn parts_written_from_many_threads_and_polled_to_completion() {
    let (_tmp, _root, store) = file_store();
    let id = CheckpointId(1);
    // Blocking writes from several threads at once, as pool threads would.
    let parts: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|kg| {
                let store = &store;
                scope.spawn(move || {
                    let bytes = codec::encode(&kg_state(1, kg)).unwrap();
                    store
                        .write_part(JOB, id, "totals", &key_group_part(kg, kg), bytes)
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // A background write polled without blocking, with a deadline.
    let mut upload = store
        .start_write_part(
            JOB,
            id,
            "orders",
            "subtask-00000",
            codec::encode(&3u64).unwrap(),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let source = loop {
        if let Some(result) = upload.try_wait() {
            break result.unwrap();
        }
        assert!(Instant::now() < deadline, "upload did not finish");
        std::thread::yield_now();
    };
    // And one reported through a callback.
    let (tx, rx) = std::sync::mpsc::channel();
    store
        .write_part_then(
            JOB,
            id,
            "sink",
            "subtask-00000",
            codec::encode(&"txn").unwrap(),
            move |r| tx.send(r).unwrap(),
        )
        .unwrap();
    let sink = rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();

    let mut manifest = Manifest::new(JOB, id, 8);
    for part in parts {
        manifest.add_part("totals", 8, part);
    }
    manifest.add_part("orders", 1, source);
    manifest.add_part("sink", 1, sink);
    store.commit(JOB, &manifest).unwrap();
    let open = store.open(JOB, id).unwrap();
    assert_eq!(open.manifest().parts().count(), 10);
    assert_eq!(
        open.decode_part::<String>("sink", "subtask-00000").unwrap(),
        "txn"
    );
}
