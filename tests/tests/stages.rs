//! Each stage kind, fan-out and union, at several parallelisms, against a sequential reference.

use solstice::prelude::*;
use solstice_tests::{config, read_parts, temp_dir, write_jsonl};

#[solstice::pipeline]
pub mod kinds {
    use super::*;

    #[source]
    pub fn numbers(cfg: &SourceConfig) -> Result<FileSource<u64>> {
        FileSource::from_config(cfg)
    }

    #[map]
    pub fn square(x: u64) -> u64 {
        x * x
    }

    #[filter]
    pub fn odd(x: &u64) -> bool {
        x % 2 == 1
    }

    #[flat_map]
    pub fn twice(x: u64) -> Vec<u64> {
        vec![x, x + 1]
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<u64>> {
        FileSink::from_config(cfg)
    }

    dag! { numbers -> square -> odd -> twice -> out }
}

#[solstice::pipeline]
pub mod diamond {
    use super::*;

    #[source]
    pub fn numbers(cfg: &SourceConfig) -> Result<FileSource<u64>> {
        FileSource::from_config(cfg)
    }

    #[map]
    pub fn double(x: u64) -> i64 {
        2 * x as i64
    }

    #[map]
    pub fn negate(x: u64) -> i64 {
        -(x as i64)
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<i64>> {
        FileSink::from_config(cfg)
    }

    #[sink]
    pub fn copy(cfg: &SinkConfig) -> Result<FileSink<u64>> {
        FileSink::from_config(cfg)
    }

    // Fan-out from `numbers` to three stages, then a union of `double` and `negate`.
    dag! {
        numbers -> [double, negate] -> out;
        numbers -> copy;
    }
}

#[solstice::pipeline]
pub mod two_sources {
    use super::*;

    #[source]
    pub fn left(cfg: &SourceConfig) -> Result<FileSource<u64>> {
        FileSource::from_config(cfg)
    }

    #[source]
    pub fn right(cfg: &SourceConfig) -> Result<FileSource<u64>> {
        FileSource::from_config(cfg)
    }

    #[map(parallelism = 3)]
    pub fn inc(x: u64) -> u64 {
        x + 1
    }

    #[sink(2)]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<u64>> {
        FileSink::from_config(cfg)
    }

    dag! { [left, right] -> inc -> out }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn stage_functions_are_plain_functions() {
    assert_eq!(kinds::square(7), 49);
    assert!(kinds::odd(&49));
    assert_eq!(kinds::twice(3), vec![3, 4]);
}

#[test]
fn every_stateless_kind_matches_a_sequential_reference() {
    let dir = temp_dir();
    let input: Vec<u64> = (0..20_000).collect();
    write_jsonl(&dir.path().join("in.jsonl"), &input);
    let reference: Vec<u64> = sorted(
        input
            .iter()
            .map(|x| x * x)
            .filter(|x| x % 2 == 1)
            .flat_map(|x| [x, x + 1])
            .collect(),
    );
    // Each run replaces the output of the one before.
    let yaml = format!(
        "sources: {{ numbers: {{ path: {} }} }}\nsinks: {{ out: {{ path: {}, mode: overwrite }} }}\n",
        dir.path().join("in.jsonl").display(),
        dir.path().join("out").display()
    );
    for (parallelism, threads) in [(1, 1), (2, 2), (3, 2), (4, 4)] {
        // Different parallelism per stage breaks chains, so every edge kind is exercised.
        let overrides = vec![
            format!("runtime.threads={threads}"),
            format!("job.parallelism={parallelism}"),
            format!("stages.odd.parallelism={}", parallelism + 1),
            "job.batch_size=64".to_string(),
        ];
        let (result, _) = kinds::run(config(&yaml, &overrides)).unwrap();
        assert!(result.tasks >= 2);
        let got: Vec<u64> = read_parts(&dir.path().join("out"));
        assert_eq!(
            sorted(got),
            reference,
            "parallelism {parallelism}, threads {threads}"
        );
    }
}

#[test]
fn fan_out_and_union() {
    let dir = temp_dir();
    let input: Vec<u64> = (0..5_000).collect();
    write_jsonl(&dir.path().join("in.jsonl"), &input);
    let yaml = format!(
        "sources: {{ numbers: {{ path: {} }} }}\nsinks: {{ out: {{ path: {}, mode: overwrite }}, copy: {{ path: {}, mode: overwrite }} }}\n",
        dir.path().join("in.jsonl").display(),
        dir.path().join("out").display(),
        dir.path().join("copy").display(),
    );
    for overrides in [
        vec![],
        vec![
            "stages.negate.parallelism=2".to_string(),
            "runtime.threads=2".into(),
        ],
    ] {
        diamond::run(config(&yaml, &overrides)).unwrap();
        let mut reference: Vec<i64> = input.iter().map(|&x| 2 * x as i64).collect();
        reference.extend(input.iter().map(|&x| -(x as i64)));
        let got: Vec<i64> = read_parts(&dir.path().join("out"));
        assert_eq!(sorted(got), sorted(reference));
        let copy: Vec<u64> = read_parts(&dir.path().join("copy"));
        assert_eq!(sorted(copy), input);
    }
}

#[test]
fn union_of_two_sources_with_rebalance() {
    let dir = temp_dir();
    let left: Vec<u64> = (0..3_000).collect();
    let right: Vec<u64> = (10_000..12_500).collect();
    write_jsonl(&dir.path().join("left.jsonl"), &left);
    write_jsonl(&dir.path().join("right.jsonl"), &right);
    let yaml = format!(
        "runtime: {{ threads: 2 }}\nsources: {{ left: {{ path: {} }}, right: {{ path: {} }} }}\nsinks: {{ out: {{ path: {} }} }}\n",
        dir.path().join("left.jsonl").display(),
        dir.path().join("right.jsonl").display(),
        dir.path().join("out").display(),
    );
    two_sources::run(config(&yaml, &[])).unwrap();
    let reference: Vec<u64> = left.iter().chain(&right).map(|x| x + 1).collect();
    let got: Vec<u64> = read_parts(&dir.path().join("out"));
    assert_eq!(sorted(got), sorted(reference));
    // Two sink subtasks wrote two part files.
    assert!(dir.path().join("out/part-00001.jsonl").exists());
}

#[test]
fn explain_shows_chains_and_partitioning() {
    let dir = temp_dir();
    write_jsonl(&dir.path().join("in.jsonl"), &[1u64]);
    let yaml = format!(
        "sources: {{ numbers: {{ path: {} }} }}\nsinks: {{ out: {{ path: {} }} }}\n",
        dir.path().join("in.jsonl").display(),
        dir.path().join("out").display()
    );
    let job = kinds::job(config(&yaml, &["runtime.threads=2".into()])).unwrap();
    assert_eq!(
        job.explain(),
        "job `kinds`: 5 stages in 1 chains, 1 tasks on 2 threads, 128 key groups\n\
         chain 0 x1: numbers (source) -> square (map) -> odd (filter) -> twice (flat_map) -> out (sink)\n"
    );
    let job = kinds::job(config(
        &yaml,
        &[
            "stages.twice.parallelism=2".into(),
            "runtime.threads=2".into(),
        ],
    ))
    .unwrap();
    assert_eq!(
        job.explain(),
        "job `kinds`: 5 stages in 3 chains, 4 tasks on 2 threads, 128 key groups\n\
         chain 0 x1: numbers (source) -> square (map) -> odd (filter)\n\
         chain 1 x2: twice (flat_map)\n  <- chain 0: rebalance\n\
         chain 2 x1: out (sink)\n  <- chain 1: rebalance\n"
    );
}
