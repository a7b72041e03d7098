//! Checkpoints and restore inside one process: a job that fails after some checkpoints and is
//! restored from the latest one ends with exactly the state of a run that never failed, at the
//! same or another parallelism, and a corrupt newest checkpoint falls back to the previous one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use solstice::job::Restore;
use solstice::prelude::*;
use solstice_tests::{config, published, serial, temp_dir, write_jsonl, Gate, Held};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    pub key: String,
    pub value: u64,
}

/// The id at which `guard` panics (0: never); each test sets it before a run that must fail.
static FAIL_AT: AtomicU64 = AtomicU64::new(0);

#[solstice::pipeline]
pub mod sums {
    use super::*;

    #[source(2)]
    pub fn events(cfg: &SourceConfig) -> Result<FileSource<Event>> {
        FileSource::from_config(cfg)
    }

    #[map(2)]
    pub fn guard(e: Event) -> Event {
        if e.id == FAIL_AT.load(Ordering::Relaxed) {
            panic!("injected failure at event {}", e.id);
        }
        e
    }

    #[key_by(2)]
    pub fn by_key(e: Event) -> (String, u64) {
        (e.key, e.value)
    }

    #[stateful(2)]
    pub fn sum(acc: &mut (u64, u64), value: u64) -> Option<u64> {
        acc.0 += value;
        acc.1 += 1;
        None
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<PrintSink<u64>> {
        PrintSink::from_config(cfg)
    }

    dag! { events -> guard -> by_key -> sum -> out }
}

fn events(n: u64) -> Vec<Event> {
    (1..=n)
        .map(|id| Event {
            id,
            key: format!("k{}", (id * 7919) % 613),
            value: id % 17,
        })
        .collect()
}

fn reference(events: &[Event]) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in events {
        let t = out.entry(e.key.clone()).or_default();
        t.0 += e.value;
        t.1 += 1;
    }
    out
}

fn yaml(dir: &std::path::Path) -> String {
    format!(
        "job:\n  batch_size: 128\n  checkpoint: {{ backend: 'file://{}', interval_records: 20000, retain: 3 }}\n\
         runtime: {{ threads: 2 }}\nsources: {{ events: {{ path: '{}' }} }}\n",
        dir.join("checkpoints").display(),
        dir.join("events.jsonl").display()
    )
}

fn run(
    yaml: &str,
    overrides: &[String],
    restore: Option<Restore>,
) -> Result<(JobResult, sums::State)> {
    let mut job = sums::job(config(yaml, overrides))?;
    if let Some(r) = restore {
        job.restore_from(r);
    }
    let mut result = job.run()?;
    let state = sums::State::from_result(&mut result)?;
    Ok((result, state))
}

fn totals(state: &sums::State) -> BTreeMap<String, (u64, u64)> {
    state.sum.to_sorted()
}

#[test]
fn restore_after_a_failure_gives_the_failure_free_state() {
    let _serial = serial();
    let dir = temp_dir();
    let input = events(300_000);
    write_jsonl(&dir.path().join("events.jsonl"), &input);
    // Keep enough checkpoints that the one restored below survives the restored run's own.
    let yaml = yaml(dir.path()).replace("retain: 3", "retain: 50");
    let expected = reference(&input);

    FAIL_AT.store(250_000, Ordering::Relaxed);
    let err = run(&yaml, &[], None).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("injected failure at event 250000"), "{err}");
    FAIL_AT.store(0, Ordering::Relaxed);

    let store = sums::job(config(&yaml, &[]))
        .unwrap()
        .checkpoint_store()
        .unwrap()
        .unwrap();
    let taken = store.list("sums").unwrap();
    assert!(
        !taken.is_empty(),
        "checkpoints were taken before the failure"
    );
    let latest = *taken.last().unwrap();

    // Same parallelism.
    let (result, state) = run(&yaml, &[], Some(Restore::Latest)).unwrap();
    assert_eq!(totals(&state), expected);
    assert!(result.last_checkpoint.unwrap() >= latest.0);

    // Another parallelism, from the same checkpoint: key groups and splits move.
    let other = [
        "stages.sum.parallelism=3".to_string(),
        "stages.events.parallelism=3".to_string(),
        "stages.guard.parallelism=3".to_string(),
        "stages.by_key.parallelism=3".to_string(),
    ];
    let (_, state) = run(&yaml, &other, Some(Restore::Id(latest.0))).unwrap();
    assert_eq!(totals(&state), expected);
}

#[test]
fn corrupt_newest_checkpoint_falls_back_to_the_previous_one() {
    let _serial = serial();
    let dir = temp_dir();
    let input = events(200_000);
    write_jsonl(&dir.path().join("events.jsonl"), &input);
    let yaml = yaml(dir.path());
    // A run that completes, leaving checkpoints behind.
    let (_, state) = run(&yaml, &[], None).unwrap();
    assert_eq!(totals(&state), reference(&input));
    let store = sums::job(config(&yaml, &[]))
        .unwrap()
        .checkpoint_store()
        .unwrap()
        .unwrap();
    let taken = store.list("sums").unwrap();
    assert!(taken.len() >= 2, "{taken:?}");
    let newest = *taken.last().unwrap();

    // Flip bytes in one part of the newest checkpoint.
    let chk = dir
        .path()
        .join("checkpoints/sums")
        .join(newest.to_string())
        .join("sum");
    let part = std::fs::read_dir(&chk)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&part).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&part, bytes).unwrap();

    let point = store.open_latest_valid("sums").unwrap().unwrap();
    assert!(point.checkpoint.id() < newest);
    assert_eq!(point.skipped.len(), 1);

    // Restoring the previous checkpoint of a finished job replays what followed it: the state
    // of the whole input again, exactly.
    let (_, state) = run(&yaml, &[], Some(Restore::Latest)).unwrap();
    assert_eq!(totals(&state), reference(&input));
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Running {
    pub key: String,
    pub count: u64,
    pub sum: u64,
}

/// The id at which `guard2` panics (0: never).
static FAIL_OUT_AT: AtomicU64 = AtomicU64::new(0);
/// When set, `guard2` panics at `FAIL_OUT_AT` once, then lets it pass (a transient failure).
static FAIL_ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where the source of `running` stops while a test holds it (open: never).
static HOLD: Gate = Gate::new();

/// Emits every running total to files: the output shows any record lost or written twice.
/// One source subtask up to the keyed exchange keeps each key's records in input order, so each
/// running total is deterministic.
#[solstice::pipeline]
pub mod running {
    use super::*;

    #[source]
    pub fn events(cfg: &SourceConfig) -> Result<Held<FileSource<Event>>> {
        Ok(Held::new(FileSource::from_config(cfg)?, &HOLD))
    }

    #[map]
    pub fn guard2(e: Event) -> Event {
        if e.id == FAIL_OUT_AT.load(Ordering::Relaxed) {
            if FAIL_ONCE.swap(false, Ordering::Relaxed) {
                FAIL_OUT_AT.store(0, Ordering::Relaxed);
            }
            panic!("injected failure at event {}", e.id);
        }
        e
    }

    #[key_by]
    pub fn by_key(e: Event) -> (String, u64) {
        (e.key, e.value)
    }

    #[stateful(2)]
    pub fn total(acc: &mut (u64, u64), key: &str, value: u64) -> Option<Running> {
        acc.0 += value;
        acc.1 += 1;
        Some(Running {
            key: key.to_owned(),
            count: acc.1,
            sum: acc.0,
        })
    }

    #[sink(2)]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Running>> {
        FileSink::from_config(cfg)
    }

    dag! { events -> guard2 -> by_key -> total -> out }
}

/// Every running total of the failure-free run, sorted.
fn running_totals(input: &[Event]) -> Vec<Running> {
    let mut expected = running_totals_in_order(input);
    expected.sort();
    expected
}

/// Every running total of the failure-free run, one per input record, in input order.
fn running_totals_in_order(input: &[Event]) -> Vec<Running> {
    let mut expected = Vec::new();
    let mut acc: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in input {
        let t = acc.entry(e.key.clone()).or_default();
        t.0 += e.value;
        t.1 += 1;
        expected.push(Running {
            key: e.key.clone(),
            count: t.1,
            sum: t.0,
        });
    }
    expected
}

/// `n` events in a temp dir, every running total of them, and the YAML of a `running` job
/// writing to `<dir>/out`.
fn running_job(n: u64) -> (solstice_tests::TempDir, Vec<Running>, String) {
    let dir = temp_dir();
    let input = events(n);
    write_jsonl(&dir.path().join("events.jsonl"), &input);
    let yaml = format!(
        "{}sinks: {{ out: {{ path: '{}' }} }}\n",
        yaml(dir.path()),
        dir.path().join("out").display()
    );
    (dir, running_totals(&input), yaml)
}

#[test]
fn file_sink_output_is_exactly_once_across_a_failure_and_restore() {
    let _serial = serial();
    let (dir, expected, yaml) = running_job(200_000);
    let out = dir.path().join("out");
    let run_once = |restore: Option<Restore>| {
        let mut job = running::job(config(&yaml, &[]))?;
        if let Some(r) = restore {
            job.restore_from(r);
        }
        job.run()
    };

    FAIL_OUT_AT.store(170_000, Ordering::Relaxed);
    assert!(run_once(None).is_err());
    FAIL_OUT_AT.store(0, Ordering::Relaxed);
    let (partial, _) = published::<Running>(&out);
    assert!(
        partial.len() < expected.len(),
        "only committed output is visible"
    );

    run_once(Some(Restore::Latest)).unwrap();
    let (records, hidden) = published::<Running>(&out);
    assert_eq!(records.len(), expected.len());
    assert_eq!(
        records, expected,
        "the output differs from the failure-free output"
    );
    assert!(
        hidden.is_empty(),
        "nothing staged is left behind: {hidden:?}"
    );

    // Restoring the final checkpoint of the finished job publishes nothing new.
    let files = |d: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = files(&out);
    run_once(Some(Restore::Latest)).unwrap();
    let after = published::<Running>(&out).0;
    assert_eq!(
        after,
        expected,
        "restoring the final checkpoint changed the output: {} records, files {:?} -> {:?}",
        after.len(),
        before,
        files(&out)
    );
}

#[test]
fn restart_strategy_recovers_from_a_transient_failure_with_exact_output() {
    let _serial = serial();
    let (dir, expected, yaml) = running_job(150_000);
    let out = dir.path().join("out");
    let yaml = yaml.replace(
        "job:\n",
        "job:\n  restart: { attempts: 2, backoff_ms: 10 }\n",
    );
    FAIL_ONCE.store(true, Ordering::Relaxed);
    FAIL_OUT_AT.store(120_000, Ordering::Relaxed);
    let result = running::job(config(&yaml, &[])).unwrap().run().unwrap();
    assert_eq!(result.restarts, 1);
    let (records, hidden) = published::<Running>(&out);
    assert_eq!(
        records, expected,
        "the output differs from the failure-free output"
    );
    assert!(hidden.is_empty(), "{hidden:?}");
}

/// A checkpoint taken on demand from a running job holds exactly what was read before it: the
/// source stops after `HELD` records until both checkpoints are taken, so the job cannot end
/// first and the checkpoint's point in the input is known.
#[test]
fn checkpoints_on_demand_from_a_running_job() {
    const HELD: u64 = 40_000;
    let _serial = serial();
    let (dir, expected, yaml) = running_job(100_000);
    let in_order = running_totals_in_order(&events(100_000));
    let out = dir.path().join("out");
    // No interval: checkpoints happen only when asked for. Keep all of them.
    let yaml = yaml
        .replace("interval_records: 20000, ", "")
        .replace("retain: 3", "retain: 50");
    let hold = HOLD.close(HELD);
    let runner = running::job(config(&yaml, &[])).unwrap().start();
    HOLD.wait_held(1, std::time::Duration::from_secs(120));
    let first = runner.trigger_checkpoint().unwrap();
    // Complete: the sink published every record read before it, and nothing else.
    let mut before: Vec<Running> = in_order[..HELD as usize].to_vec();
    before.sort();
    let (published_first, hidden) = published::<Running>(&out);
    assert_eq!(published_first, before, "published by checkpoint {first}");
    assert!(hidden.is_empty(), "{hidden:?}");
    let second = runner.trigger_checkpoint().unwrap();
    assert!(second > first);
    assert_eq!(
        published::<Running>(&out).0,
        before,
        "nothing was read since {first}"
    );
    drop(hold);
    let result = runner.wait().unwrap();
    assert!(result.last_checkpoint > Some(second.0), "{result:?}");
    assert_eq!(published::<Running>(&out).0, expected);
    let store = running::job(config(&yaml, &[]))
        .unwrap()
        .checkpoint_store()
        .unwrap()
        .unwrap();
    let taken = store.list("running").unwrap();
    assert!(
        taken.contains(&first) && taken.contains(&second),
        "{taken:?}"
    );

    // Restored from the first, a job resumes right after the records before it, with their
    // state: into a new directory it publishes exactly the running totals of the rest.
    let elsewhere = format!("sinks.out.path={}", dir.path().join("rest").display());
    let mut job = running::job(config(&yaml, &[elsewhere])).unwrap();
    job.restore_from(Restore::Id(first.0));
    job.run().unwrap();
    let mut rest: Vec<Running> = in_order[HELD as usize..].to_vec();
    rest.sort();
    let (published_rest, hidden) = published::<Running>(&dir.path().join("rest"));
    assert_eq!(published_rest, rest, "restored from {first}");
    assert!(hidden.is_empty(), "{hidden:?}");

    // Without `job.checkpoint` there is nothing to trigger.
    let plain = format!(
        "sources: {{ events: {{ path: '{}' }} }}\n",
        dir.path().join("events.jsonl").display()
    );
    let runner = sums::job(config(&plain, &[])).unwrap().start();
    let err = runner.trigger_checkpoint().unwrap_err().to_string();
    assert!(err.contains("no `job.checkpoint`"), "{err}");
    runner.wait().unwrap();
}

#[test]
fn csv_and_parquet_sources_resume_from_a_checkpoint() {
    let _serial = serial();
    let input = events(300_000);
    for format in ["csv", "parquet"] {
        let dir = temp_dir();
        let file = dir.path().join(format!("events.{format}"));
        let mut sink = solstice::connectors::FileSink::<Event>::with_format(
            dir.path().join("gen"),
            if format == "csv" {
                solstice::connectors::file::Format::Csv
            } else {
                solstice::connectors::file::Format::Parquet
            },
        );
        if format == "parquet" {
            // Many row groups, so that two source subtasks share the file.
            let cfg = config(
                &format!(
                    "sinks: {{ out: {{ path: '{}', format: parquet, parquet: {{ row_group_size: 20000 }} }} }}",
                    dir.path().join("gen").display()
                ),
                &[],
            );
            sink = solstice::connectors::FileSink::from_config(&cfg.sink_config("out")).unwrap();
        }
        let mut w = sink.open(0, 1).unwrap();
        w.write_batch(&mut input.clone()).unwrap();
        w.finish().unwrap();
        std::fs::rename(dir.path().join(format!("gen/part-00000.{format}")), &file).unwrap();

        let yaml = yaml(dir.path()).replace("events.jsonl", &format!("events.{format}"));
        FAIL_AT.store(250_000, Ordering::Relaxed);
        assert!(
            run(&yaml, &[], None).is_err(),
            "{format}: the injected failure"
        );
        FAIL_AT.store(0, Ordering::Relaxed);
        let (result, state) = run(&yaml, &[], Some(Restore::Latest)).unwrap();
        assert!(result.last_checkpoint.is_some());
        assert_eq!(totals(&state), reference(&input), "{format}");
    }
}

#[test]
fn restoring_into_another_number_of_key_groups_is_refused() {
    let _serial = serial();
    FAIL_AT.store(0, Ordering::Relaxed);
    let dir = temp_dir();
    write_jsonl(&dir.path().join("events.jsonl"), &events(1_000));
    let yaml = yaml(dir.path());
    let (result, _) = run(&yaml, &[], None).unwrap();
    assert!(result.last_checkpoint.is_some());
    let err = run(
        &yaml,
        &["job.key_groups=64".to_string()],
        Some(Restore::Latest),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("taken with 128 key groups, the job has 64"),
        "{message}"
    );
}
