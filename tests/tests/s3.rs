//! Checkpoints on a real S3-protocol server (SeaweedFS, started by the test on 127.0.0.1): the
//! store's operations with signature checks, the atomic create-only manifest, and a job that
//! fails, restores from S3 and publishes exactly the failure-free output.

use std::time::{Duration, Instant};

use solstice::error::Error;
use solstice::state::checkpoint::CheckpointStore;
use solstice::state::codec;
use solstice::state::manifest::{CheckpointId, Manifest};
use solstice_tests::S3Server;

/// The server may need a moment after its port opens before it stores objects (its volume
/// server registers with the master): wait until a write goes through.
fn store(server: &S3Server, prefix: &str) -> CheckpointStore {
    let url = format!("s3://{}/{prefix}", S3Server::BUCKET);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let store = CheckpointStore::from_url(&url, &server.options()).expect("open s3 store");
        match store.backend().put("probe/ready", b"ready".to_vec()) {
            Ok(()) => return store,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the S3 server never answered: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

#[test]
fn checkpoints_on_s3_commit_once_list_and_restore() {
    let server = S3Server::start();
    let store = store(&server, "ckpt");
    let job = "orders";
    let id = CheckpointId(1);
    let bytes = codec::encode(&vec![1u64, 2, 3]).unwrap();
    let info = store
        .write_part(job, id, "totals", "kg-00000", bytes.clone())
        .unwrap();
    assert!(
        store.list(job).unwrap().is_empty(),
        "no manifest yet: no checkpoint"
    );
    let mut manifest = Manifest::new(job, id, 128);
    manifest.add_part("totals", 1, info);
    store.commit(job, &manifest).unwrap();
    assert_eq!(store.list(job).unwrap(), vec![id]);
    // The manifest is created once: a second commit fails and the first stands.
    assert!(matches!(
        store.commit(job, &manifest),
        Err(Error::AlreadyExists { .. })
    ));
    let open = store.open_latest_valid(job).unwrap().unwrap();
    assert_eq!(open.checkpoint.id(), id);
    let back: Vec<u64> = open.checkpoint.decode_part("totals", "kg-00000").unwrap();
    assert_eq!(back, vec![1, 2, 3]);
}

#[test]
fn wrong_credentials_are_refused() {
    let server = S3Server::start();
    let _ready = store(&server, "ready");
    let mut options = server.options();
    options.insert("secret_access_key".into(), "not-the-secret".into());
    let url = format!("s3://{}/bad", S3Server::BUCKET);
    let store = CheckpointStore::from_url(&url, &options).unwrap();
    let bytes = codec::encode(&1u64).unwrap();
    let err = store
        .write_part("job", CheckpointId(1), "s", "p", bytes)
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
}

mod job {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use solstice::job::Restore;
    use solstice::prelude::*;
    use solstice::state::manifest::CheckpointId;
    use solstice_tests::{config, temp_dir, within, write_jsonl, Gate, Held, S3Server};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Event {
        pub id: u64,
        pub key: String,
    }

    /// Fail once at event 60 000 (the first test).
    static FAIL: AtomicBool = AtomicBool::new(false);
    /// Holds the source open (the outage test).
    static GATE: Gate = Gate::new();
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[solstice::pipeline]
    pub mod counts {
        use super::*;

        #[source]
        pub fn events(cfg: &SourceConfig) -> Result<Held<FileSource<Event>>> {
            Ok(Held::new(FileSource::from_config(cfg)?, &GATE))
        }

        #[map]
        pub fn guard(e: Event) -> Event {
            if e.id == 60_000 && FAIL.swap(false, Ordering::Relaxed) {
                panic!("injected failure");
            }
            e
        }

        #[key_by]
        pub fn by_key(e: Event) -> (String, ()) {
            (e.key, ())
        }

        #[stateful(2)]
        pub fn count(n: &mut u64, key: &str, _: ()) -> Option<(String, u64)> {
            *n += 1;
            Some((key.to_owned(), *n))
        }

        #[sink]
        pub fn out(cfg: &SinkConfig) -> Result<FileSink<(String, u64)>> {
            FileSink::from_config(cfg)
        }

        dag! { events -> guard -> by_key -> count -> out }
    }

    fn expected(n: u64) -> Vec<(String, u64)> {
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut out: Vec<(String, u64)> = (1..=n)
            .map(|id| {
                let k = format!("k{}", id % 97);
                let c = seen.entry(k.clone()).or_default();
                *c += 1;
                (k, *c)
            })
            .collect();
        out.sort();
        out
    }

    fn published(dir: &std::path::Path) -> Vec<(String, u64)> {
        solstice_tests::published(dir).0
    }

    fn setup(n: u64, server: &S3Server, extra: &str) -> (solstice_tests::TempDir, String) {
        let dir = temp_dir();
        let events: Vec<Event> = (1..=n)
            .map(|id| Event {
                id,
                key: format!("k{}", id % 97),
            })
            .collect();
        write_jsonl(&dir.path().join("events.jsonl"), &events);
        let opts: Vec<String> = server
            .options()
            .iter()
            .map(|(k, v)| format!("{k}: '{v}'"))
            .collect();
        let yaml = format!(
            "job:\n  checkpoint: {{ backend: 's3://{}/{}', {extra} options: {{ {} }} }}\n\
             sources: {{ events: {{ path: '{}' }} }}\nsinks: {{ out: {{ path: '{}' }} }}\n",
            S3Server::BUCKET,
            dir.path().file_name().unwrap().to_string_lossy(),
            opts.join(", "),
            dir.path().join("events.jsonl").display(),
            dir.path().join("out").display()
        );
        (dir, yaml)
    }

    #[test]
    fn a_job_restored_from_s3_publishes_exactly_the_failure_free_output() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let server = S3Server::start();
        let _ready = super::store(&server, "ready");
        let (dir, yaml) = setup(100_000, &server, "interval_records: 10000,");
        FAIL.store(true, Ordering::Relaxed);
        assert!(counts::job(config(&yaml, &[])).unwrap().run().is_err());
        let mut job = counts::job(config(&yaml, &[])).unwrap();
        job.restore_from(Restore::Latest);
        let result = job.run().unwrap();
        assert!(result.last_checkpoint.is_some());
        assert_eq!(published(&dir.path().join("out")), expected(100_000));
    }

    /// A checkpoint taken while the server is down fails, the job goes on, and a checkpoint
    /// taken once the server is back succeeds: the output is exact. The source holds the job
    /// open until the test is done with it, so every checkpoint is taken from a running job.
    #[test]
    fn an_s3_outage_fails_a_checkpoint_but_not_the_job() {
        within(Duration::from_secs(300), || {
            let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
            let mut server = S3Server::start();
            let _ready = super::store(&server, "ready");
            // No interval: the checkpoints are the three below and the final one.
            let (dir, yaml) = setup(100_000, &server, "");
            let hold = GATE.close(u64::MAX);
            let runner = counts::job(config(&yaml, &[])).unwrap().start();
            let before = runner
                .trigger_checkpoint()
                .expect("a checkpoint before the outage");

            server.stop();
            let started = Instant::now();
            let err = runner
                .trigger_checkpoint()
                .expect_err("a checkpoint during the outage fails");
            eprintln!(
                "the checkpoint failed after {:?} of retries: {err}",
                started.elapsed()
            );
            let failed = CheckpointId(before.0 + 1);
            match &err {
                solstice::Error::Checkpoint { id, reason } => {
                    assert_eq!(*id, Some(failed.0), "the failed checkpoint's id: {err}");
                    assert!(reason.contains("state backend"), "{err}");
                }
                other => panic!("expected a checkpoint error, got: {other}"),
            }

            server.restart();
            // Wait until the server stores objects again.
            let _ready = super::store(&server, "ready");
            let after = runner
                .trigger_checkpoint()
                .expect("a checkpoint after the outage");
            assert!(after > failed, "{after} after {failed}");
            let store = counts::job(config(&yaml, &[]))
                .unwrap()
                .checkpoint_store()
                .unwrap()
                .unwrap();
            assert_eq!(
                store.list("counts").unwrap(),
                vec![before, after],
                "the failed checkpoint has no manifest"
            );

            drop(hold);
            let result = runner.wait().expect("the job survives the outage");
            assert!(
                result.last_checkpoint > Some(after.0),
                "the final checkpoint follows: {:?}",
                result.last_checkpoint
            );
            assert_eq!(published(&dir.path().join("out")), expected(100_000));
        });
    }
}
