//! The end-of-input hook of a stateful stage (`#[stateful(on_end = f)]`): its output is written
//! exactly once, with and without checkpoints and at any parallelism; restoring the final
//! checkpoint does not run it again; a restore from a regular checkpoint after a failure runs it
//! once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use solstice::job::Restore;
use solstice::prelude::*;
use solstice_tests::{config, published, serial, temp_dir, write_jsonl, TempDir};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    pub key: String,
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Final {
    pub key: String,
    pub count: u64,
    pub sum: u64,
}

/// The id at which `guard` panics (0: never).
static FAIL_AT: AtomicU64 = AtomicU64::new(0);

#[solstice::pipeline]
pub mod finals {
    use super::*;

    #[source]
    pub fn events(cfg: &SourceConfig) -> Result<FileSource<Event>> {
        FileSource::from_config(cfg)
    }

    #[map]
    pub fn guard(e: Event) -> Event {
        if e.id == FAIL_AT.load(Ordering::Relaxed) {
            panic!("injected failure at event {}", e.id);
        }
        e
    }

    #[key_by]
    pub fn by_key(e: Event) -> (String, u64) {
        (e.key, e.value)
    }

    /// Emits nothing while the input lasts.
    #[stateful(2, on_end = emit)]
    pub fn total(acc: &mut (u64, u64), value: u64) -> Option<Final> {
        acc.0 += value;
        acc.1 += 1;
        None
    }

    pub fn emit(key: &str, acc: &(u64, u64)) -> Option<Final> {
        Some(Final {
            key: key.to_owned(),
            count: acc.1,
            sum: acc.0,
        })
    }

    #[sink(2)]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Final>> {
        FileSink::from_config(cfg)
    }

    dag! { events -> guard -> by_key -> total -> out }
}

/// The keyed form, `fn(&mut State, &Key, In)`, with elastic parallelism and a hook that emits
/// two records per key.
#[solstice::pipeline]
pub mod keyed_finals {
    use super::*;

    #[source]
    pub fn events(cfg: &SourceConfig) -> Result<FileSource<Event>> {
        FileSource::from_config(cfg)
    }

    #[key_by]
    pub fn by_key(e: Event) -> (String, u64) {
        (e.key, e.value)
    }

    #[stateful(parallelism = (3, 4), on_end = both)]
    pub fn total(acc: &mut (u64, u64), _key: &str, value: u64) -> Vec<Final> {
        acc.0 += value;
        acc.1 += 1;
        Vec::new()
    }

    pub fn both(key: &str, acc: &(u64, u64)) -> [Final; 2] {
        let one = Final {
            key: key.to_owned(),
            count: acc.1,
            sum: acc.0,
        };
        let mut other = one.clone();
        other.key.push('!');
        [one, other]
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Final>> {
        FileSink::from_config(cfg)
    }

    dag! { events -> by_key -> total -> out }
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

/// One final record per key, sorted: the sequential reference.
fn reference(events: &[Event]) -> Vec<Final> {
    let mut acc: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in events {
        let t = acc.entry(e.key.clone()).or_default();
        t.0 += e.value;
        t.1 += 1;
    }
    acc.into_iter()
        .map(|(key, (sum, count))| Final { key, count, sum })
        .collect()
}

/// `n` events in a temp dir, their reference output, and the YAML of a job writing to
/// `<dir>/out` (with checkpoints every 10k records when `checkpoints`). Small batches, so that
/// the hook's output spans many.
fn setup(n: u64, checkpoints: bool) -> (TempDir, Vec<Event>, String) {
    let dir = temp_dir();
    let input = events(n);
    write_jsonl(&dir.path().join("events.jsonl"), &input);
    let checkpoint = if checkpoints {
        format!(
            "  checkpoint: {{ backend: 'file://{}', interval_records: 10000, retain: 50 }}\n",
            dir.path().join("checkpoints").display()
        )
    } else {
        String::new()
    };
    let yaml = format!(
        "job:\n  batch_size: 16\n{checkpoint}runtime: {{ threads: 2 }}\n\
         sources: {{ events: {{ path: '{}' }} }}\nsinks: {{ out: {{ path: '{}' }} }}\n",
        dir.path().join("events.jsonl").display(),
        dir.path().join("out").display()
    );
    (dir, input, yaml)
}

fn run(yaml: &str, overrides: &[String], restore: Option<Restore>) -> Result<finals::State> {
    let mut job = finals::job(config(yaml, overrides))?;
    if let Some(r) = restore {
        job.restore_from(r);
    }
    let mut result = job.run()?;
    finals::State::from_result(&mut result)
}

fn at_parallelism(p: usize) -> Vec<String> {
    vec![format!("stages.total.parallelism={p}")]
}

/// The final state, as the reference computes it.
fn state_of(state: &finals::State) -> Vec<Final> {
    state
        .total
        .to_sorted()
        .into_iter()
        .map(|(key, (sum, count))| Final { key, count, sum })
        .collect()
}

#[test]
fn the_hook_writes_one_record_per_key_once() {
    let _serial = serial();
    for checkpoints in [false, true] {
        for p in [1, 3] {
            let (dir, input, yaml) = setup(50_000, checkpoints);
            let expected = reference(&input);
            let state = run(&yaml, &at_parallelism(p), None).unwrap();
            let (records, hidden) = published::<Final>(&dir.path().join("out"));
            assert_eq!(
                records, expected,
                "checkpoints: {checkpoints}, parallelism {p}"
            );
            assert!(hidden.is_empty(), "{hidden:?}");
            // The hook leaves the keyed state as it is.
            assert_eq!(state_of(&state), expected);
        }
    }
}

#[test]
fn the_keyed_form_with_elastic_parallelism_emits_all_the_hook_returns() {
    let _serial = serial();
    let (dir, input, yaml) = setup(20_000, false);
    let mut result = keyed_finals::job(config(&yaml, &[]))
        .unwrap()
        .run()
        .unwrap();
    let state = keyed_finals::State::from_result(&mut result).unwrap();
    assert_eq!(state.total.len(), 613);
    let mut expected = Vec::new();
    for f in reference(&input) {
        let mut other = f.clone();
        other.key.push('!');
        expected.push(f);
        expected.push(other);
    }
    expected.sort();
    let (records, _) = published::<Final>(&dir.path().join("out"));
    assert_eq!(records, expected);
}

#[test]
fn restoring_the_final_checkpoint_does_not_run_the_hook_again() {
    let _serial = serial();
    for p in [1, 3] {
        let (dir, input, yaml) = setup(50_000, true);
        let expected = reference(&input);
        let out = dir.path().join("out");
        run(&yaml, &at_parallelism(p), None).unwrap();
        assert_eq!(published::<Final>(&out).0, expected);

        let store = finals::job(config(&yaml, &[]))
            .unwrap()
            .checkpoint_store()
            .unwrap()
            .unwrap();
        let taken = store.list("finals").unwrap();
        assert!(taken.len() >= 2, "{taken:?}");
        let latest = *taken.last().unwrap();
        let regular = taken[0];
        assert!(
            store
                .open("finals", latest)
                .unwrap()
                .manifest()
                .end_of_input
        );
        assert!(
            !store
                .open("finals", regular)
                .unwrap()
                .manifest()
                .end_of_input
        );

        // Twice: the restored run's own final checkpoint is marked too.
        for _ in 0..2 {
            let state = run(&yaml, &at_parallelism(p), Some(Restore::Latest)).unwrap();
            let (records, hidden) = published::<Final>(&out);
            assert_eq!(records, expected, "parallelism {p}: output changed");
            assert!(hidden.is_empty(), "{hidden:?}");
            assert_eq!(state_of(&state), expected);
        }
        let newest = *store.list("finals").unwrap().last().unwrap();
        assert!(newest > latest);
        assert!(
            store
                .open("finals", newest)
                .unwrap()
                .manifest()
                .end_of_input
        );
    }
}

#[test]
fn a_restore_after_a_failure_runs_the_hook_once() {
    let _serial = serial();
    for p in [1, 3] {
        let (dir, input, yaml) = setup(50_000, true);
        let expected = reference(&input);
        let out = dir.path().join("out");

        FAIL_AT.store(45_000, Ordering::Relaxed);
        let err = run(&yaml, &at_parallelism(p), None)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        FAIL_AT.store(0, Ordering::Relaxed);
        assert!(err.contains("injected failure at event 45000"), "{err}");
        let store = finals::job(config(&yaml, &[]))
            .unwrap()
            .checkpoint_store()
            .unwrap()
            .unwrap();
        let taken = store.list("finals").unwrap();
        let latest = *taken.last().expect("checkpoints before the failure");
        assert!(
            !store
                .open("finals", latest)
                .unwrap()
                .manifest()
                .end_of_input
        );
        assert_eq!(
            published::<Final>(&out).0,
            Vec::new(),
            "nothing ran the hook yet"
        );

        // From the regular checkpoint, at another parallelism than the failed run's.
        let other = at_parallelism(if p == 1 { 3 } else { 1 });
        let state = run(&yaml, &other, Some(Restore::Latest)).unwrap();
        let (records, hidden) = published::<Final>(&out);
        assert_eq!(records, expected, "parallelism {p}");
        assert!(hidden.is_empty(), "{hidden:?}");
        assert_eq!(state_of(&state), expected);
    }
}
