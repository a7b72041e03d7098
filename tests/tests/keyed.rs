//! key_by + stateful: the same totals at every parallelism and thread count, and per-key output
//! order equal to input order.

use std::collections::BTreeMap;

use solstice::prelude::*;
use solstice_tests::{config, read_parts, temp_dir, write_jsonl};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub key: String,
    pub value: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sum {
    pub key: String,
    pub sum: u64,
    pub count: u64,
}

#[solstice::pipeline]
pub mod sums {
    use super::*;

    #[source]
    pub fn events(cfg: &SourceConfig) -> Result<FileSource<Event>> {
        FileSource::from_config(cfg)
    }

    #[key_by]
    pub fn by_key(e: &Event) -> String {
        e.key.clone()
    }

    #[stateful]
    pub fn sum(acc: &mut Sum, e: Event) -> Option<Sum> {
        if acc.key.is_empty() {
            acc.key = e.key;
        }
        acc.sum += e.value;
        acc.count += 1;
        Some(acc.clone())
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Sum>> {
        FileSink::from_config(cfg)
    }

    dag! { events -> by_key -> sum -> out }
}

/// The same sums with the key moved out of the record and handed to the stateful function.
#[solstice::pipeline]
pub mod sums_owned {
    use super::*;

    #[source]
    pub fn events(cfg: &SourceConfig) -> Result<FileSource<Event>> {
        FileSource::from_config(cfg)
    }

    #[key_by]
    pub fn by_key(e: Event) -> (String, u64) {
        (e.key, e.value)
    }

    #[stateful]
    pub fn sum(acc: &mut Sum, key: &str, value: u64) -> Option<Sum> {
        key.clone_into(&mut acc.key);
        acc.sum += value;
        acc.count += 1;
        Some(acc.clone())
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Sum>> {
        FileSink::from_config(cfg)
    }

    dag! { events -> by_key -> sum -> out }
}

fn input() -> Vec<Event> {
    let mut x: u64 = 7;
    (0..30_000)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Event {
                key: format!("k{}", (x >> 33) % 997),
                value: i % 13,
            }
        })
        .collect()
}

#[test]
fn same_totals_at_every_parallelism_and_thread_count() {
    let dir = temp_dir();
    let events = input();
    write_jsonl(&dir.path().join("events.jsonl"), &events);

    // Sequential reference: final totals, and each key's sequence of running totals.
    let mut totals: BTreeMap<String, Sum> = BTreeMap::new();
    let mut per_key: BTreeMap<String, Vec<Sum>> = BTreeMap::new();
    for e in &events {
        let acc = totals.entry(e.key.clone()).or_default();
        acc.key = e.key.clone();
        acc.sum += e.value;
        acc.count += 1;
        per_key.entry(e.key.clone()).or_default().push(acc.clone());
    }

    let yaml = format!(
        "job: {{ batch_size: 100, channel_capacity: 4 }}\nsources: {{ events: {{ path: {} }} }}\nsinks: {{ out: {{ path: {}, mode: overwrite }} }}\n",
        dir.path().join("events.jsonl").display(),
        dir.path().join("out").display()
    );
    for parallelism in [1, 2, 4, 8] {
        for threads in [1, 2, 4] {
            // Sink parallelism: equal (chained), one (rebalance into one file), or other.
            let sink = [parallelism, 1, 3][threads % 3];
            let overrides = vec![
                format!("stages.sum.parallelism={parallelism}"),
                format!("stages.out.parallelism={sink}"),
                format!("runtime.threads={threads}"),
            ];
            let (_, state) = sums::run(config(&yaml, &overrides)).unwrap();
            let what = format!("parallelism {parallelism}, threads {threads}");
            assert_eq!(state.sum.to_sorted(), totals, "{what}");
            assert_eq!(state.sum.key_groups().count(), 128, "{what}");

            let out: Vec<Sum> = read_parts(&dir.path().join("out"));
            let mut got: BTreeMap<String, Vec<Sum>> = BTreeMap::new();
            for s in out {
                got.entry(s.key.clone()).or_default().push(s);
            }
            if sink != parallelism && sink != 1 {
                // Rebalancing into several files keeps the records, not their order per key.
                got.values_mut().for_each(|v| v.sort_by_key(|s| s.count));
            }
            assert_eq!(got, per_key, "{what}, sink parallelism {sink}");
        }
    }
}

#[test]
fn owned_key_by_and_keyed_stateful_give_the_same_totals() {
    let dir = temp_dir();
    let events = input();
    write_jsonl(&dir.path().join("events.jsonl"), &events);
    let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in &events {
        let t = totals.entry(e.key.clone()).or_default();
        t.0 += e.value;
        t.1 += 1;
    }
    let yaml = format!(
        "sources: {{ events: {{ path: {} }} }}\nsinks: {{ out: {{ path: {}, mode: overwrite }} }}\n",
        dir.path().join("events.jsonl").display(),
        dir.path().join("out").display()
    );
    for parallelism in [1, 3] {
        let overrides = vec![
            format!("stages.sum.parallelism={parallelism}"),
            "runtime.threads=2".to_string(),
        ];
        let (_, state) = sums_owned::run(config(&yaml, &overrides)).unwrap();
        let got: BTreeMap<String, (u64, u64)> = state
            .sum
            .iter()
            .map(|(k, s)| (k.clone(), (s.sum, s.count)))
            .collect();
        assert_eq!(got, totals);
        assert!(state.sum.iter().all(|(k, s)| *k == s.key));
    }
}
