//! The collecting sink hands a job's records back in-process: from a `#[pipeline]` sink through
//! the job's result, or as a handle given to a job built by hand; in each subtask's order, and
//! exactly once across in-process restarts from checkpoints.

use std::sync::atomic::{AtomicBool, Ordering};

use solstice::config::Config;
use solstice::job::JobBuilder;
use solstice::prelude::*;
use solstice_tests::{config, serial, temp_dir, within};

static FAIL: AtomicBool = AtomicBool::new(false);

const N: u64 = 200_000;

#[solstice::pipeline]
pub mod squares {
    use super::*;

    #[source(2)]
    pub fn numbers(cfg: &SourceConfig) -> Result<RangeSource> {
        RangeSource::from_config(cfg)
    }

    #[map(2)]
    pub fn square(x: u64) -> u64 {
        if x == 150_000 && FAIL.swap(false, Ordering::SeqCst) {
            panic!("injected failure at {x}");
        }
        x * x
    }

    #[sink(2)]
    pub fn out(cfg: &SinkConfig) -> Result<CollectSink<u64>> {
        CollectSink::from_config(cfg)
    }

    dag! { numbers -> square -> out }
}

fn expected() -> Vec<u64> {
    (0..N).map(|x| x * x).collect()
}

#[test]
fn records_come_back_through_the_result_in_each_subtask_s_order() {
    let _serial = serial();
    let yaml = format!("runtime: {{ threads: 2 }}\nsources: {{ numbers: {{ end: {N} }} }}\n");
    let (mut result, _) = squares::run(config(&yaml, &[])).unwrap();
    // Each subtask pulled chunks of the range in order, and its records come back in the
    // order it wrote them, one subtask after the other: two ascending runs.
    let got = result.collected::<u64>("out").unwrap();
    let descents = got.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(descents <= 1, "{descents} descents: not two ascending runs");
    let mut sorted = got;
    sorted.sort_unstable();
    assert_eq!(sorted, expected());
    assert_eq!(result.collected::<u64>("out").unwrap(), Vec::<u64>::new());
    let e = result.collected::<u32>("out").unwrap_err().to_string();
    assert!(e.contains("sink `out`") && e.contains("u32"), "{e}");
    let e = result.collected::<u64>("numbers").unwrap_err().to_string();
    assert!(e.contains("collecting sinks: out"), "{e}");
}

#[test]
fn exactly_once_across_a_restart_from_a_checkpoint() {
    let _serial = serial();
    let dir = temp_dir();
    let yaml = format!(
        "job:\n  checkpoint: {{ backend: 'file://{}', interval_records: 5000 }}\n  restart: {{ attempts: 2 }}\n\
         runtime: {{ threads: 2 }}\nsources: {{ numbers: {{ end: {N} }} }}\n",
        dir.path().display()
    );
    FAIL.store(true, Ordering::SeqCst);
    let (mut result, _) = within(std::time::Duration::from_secs(120), move || {
        squares::run(config(&yaml, &[])).unwrap()
    });
    assert!(!FAIL.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(result.restarts, 1);
    assert!(result.last_checkpoint.is_some());
    // Nothing the failed attempt staged after the restored checkpoint, nothing twice, nothing
    // lost. (The order is not the failure-free run's: the restored run hands the chunks that
    // were part read to whichever subtask asks first.)
    let mut got = result.collected::<u64>("out").unwrap();
    got.sort_unstable();
    assert_eq!(got, expected());
}

#[test]
fn a_handle_collects_from_a_job_built_by_hand() {
    let out = CollectSink::<String>::new();
    let sink = out.clone();
    let config = Config::builder().threads(2).build().unwrap();
    let job = Job::build("by_hand", config, move |b: &mut JobBuilder| {
        let numbers = b.source("numbers", Some(Parallelism::Fixed(3)), |_| {
            Ok(RangeSource::new(0..1000))
        })?;
        let text = b.map("text", None, &[numbers], |x: u64| x.to_string())?;
        b.sink("out", None, &[text], move |_| Ok(sink))
    })
    .unwrap();
    job.run().unwrap();
    let by_subtask = out.take_by_subtask();
    assert_eq!(by_subtask.len(), 1, "the sink runs one subtask");
    let mut got: Vec<u64> = by_subtask[0].iter().map(|s| s.parse().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    assert!(out.take().is_empty(), "take empties the handle");
}
