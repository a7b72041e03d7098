//! The stages' meters: records in and out of every stage, counted per batch, add up to what the
//! pipeline did (a filter keeps half, a flat_map doubles, a keyed stage emits once per key),
//! chained or not, at any parallelism; the shares of time are ratios that add up to one; with
//! `runtime.metrics: false` nothing is counted and the output is the same.

use solstice::job::StageFigures;
use solstice::prelude::*;
use solstice_tests::{config, published, temp_dir, write_jsonl};

#[solstice::pipeline]
pub mod metered {
    use super::*;

    #[source]
    pub fn numbers(cfg: &SourceConfig) -> Result<FileSource<u64>> {
        FileSource::from_config(cfg)
    }

    #[filter]
    pub fn even(x: &u64) -> bool {
        x.is_multiple_of(2)
    }

    #[flat_map]
    pub fn twice(x: u64) -> Vec<u64> {
        vec![x, x + 1]
    }

    #[key_by]
    pub fn by_rest(x: u64) -> (u64, u64) {
        (x % 10, x)
    }

    #[stateful(on_end = emit)]
    pub fn total(acc: &mut u64, x: u64) -> Option<u64> {
        *acc += x;
        None
    }

    pub fn emit(_key: &u64, acc: &u64) -> Option<u64> {
        Some(*acc)
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<u64>> {
        FileSink::from_config(cfg)
    }

    dag! { numbers -> even -> twice -> by_rest -> total -> out }
}

fn run(threads: usize, sets: &[&str]) -> (solstice::job::JobResult, Vec<u64>) {
    let dir = temp_dir();
    let input = dir.path().join("in.jsonl");
    let numbers: Vec<u64> = (0..10_000).collect();
    write_jsonl(&input, &numbers);
    let out = dir.path().join("out");
    let yaml = format!(
        "job: {{ parallelism: {threads}, batch_size: 64 }}\nruntime: {{ threads: {threads} }}\n\
         sources: {{ numbers: {{ path: {} }} }}\nsinks: {{ out: {{ path: {} }} }}\n",
        input.display(),
        out.display()
    );
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let result = metered::job(config(&yaml, &sets)).unwrap().run().unwrap();
    let (got, _) = published::<u64>(&out);
    (result, got)
}

fn stage<'a>(result: &'a solstice::job::JobResult, name: &str) -> &'a StageFigures {
    result
        .stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage `{name}` in {:?}", result.stages))
}

#[test]
fn records_in_and_out_of_every_stage_add_up() {
    for threads in [1, 2] {
        let (result, got) = run(threads, &[]);
        assert_eq!(got.len(), 10, "one total per key");
        let io = |name: &str| {
            let s = stage(&result, name);
            (s.records_in, s.records_out)
        };
        assert_eq!(io("numbers"), (0, 10_000), "{threads} thread(s)");
        assert_eq!(io("even"), (10_000, 5_000));
        assert_eq!(io("twice"), (5_000, 10_000));
        assert_eq!(io("by_rest"), (10_000, 10_000));
        assert_eq!(io("total"), (10_000, 10));
        assert_eq!(io("out"), (10, 0));
        for s in &result.stages {
            assert_eq!(s.parallelism, threads, "{s:?}");
            let total = s.busy + s.idle + s.backpressured;
            assert!(
                (total - 1.0).abs() < 1e-9 && s.busy > 0.0,
                "shares of {}: {s:?}",
                s.name
            );
        }
        let even = stage(&result, "even");
        assert!(even.batches_in >= 10_000 / 64 && even.batches_in <= even.records_in);
        // Every stage's subtasks are in the counters too, by name.
        assert!(result
            .counters
            .contains_key(&format!("stage.total.{}.records_in", threads - 1)));
        let summary = result.summary();
        assert!(
            summary.contains("twice") && summary.contains("flat_map") && summary.contains("5000"),
            "{summary}"
        );
    }
}

#[test]
fn without_metrics_nothing_is_counted_and_the_output_is_the_same() {
    let (on, with) = run(2, &[]);
    let (off, without) = run(2, &["runtime.metrics=false"]);
    assert_eq!(with, without);
    assert!(on.stages.iter().any(|s| s.records_in > 0));
    assert!(off
        .stages
        .iter()
        .all(|s| s.records_in == 0 && s.records_out == 0 && s.busy == 0.0));
}
