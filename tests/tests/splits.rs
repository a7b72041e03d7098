//! Source splits are pulled: a subtask asks for its next split when it finishes one, so a subtask
//! held up on a slow split leaves the rest of the input to the others.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use solstice::config::Config;
use solstice::job::JobBuilder;
use solstice::prelude::*;
use solstice_tests::within;

/// How many splits the test source has.
const SPLITS: usize = 8;
/// Records per split.
const PER_SPLIT: u64 = 1000;

/// Splits `s0`..`s7` of 1000 records each. The reader of `s0` does not return its first batch
/// until every other split has been opened: with splits dealt out up front, the subtask given
/// `s0` would also hold some of the others, and the job could never end.
struct Uneven {
    opened: Arc<(Mutex<usize>, Condvar)>,
}

impl Source for Uneven {
    type Item = u64;
    type Reader = UnevenReader;

    fn splits(&self) -> solstice::Result<Vec<String>> {
        Ok((0..SPLITS).map(|i| format!("s{i}")).collect())
    }

    fn open(&self, split: &str, resume: Option<u64>) -> solstice::Result<UnevenReader> {
        let index: u64 = split[1..].parse().expect("a split name of this source");
        let (count, changed) = &*self.opened;
        *count.lock().unwrap() += 1;
        changed.notify_all();
        let start = index * PER_SPLIT;
        Ok(UnevenReader {
            next: resume.unwrap_or(start),
            end: start + PER_SPLIT,
            slow: index == 0,
            opened: self.opened.clone(),
        })
    }
}

struct UnevenReader {
    next: u64,
    end: u64,
    slow: bool,
    opened: Arc<(Mutex<usize>, Condvar)>,
}

impl SourceReader<u64> for UnevenReader {
    fn read_batch(&mut self, out: &mut Vec<u64>, max: usize) -> solstice::Result<bool> {
        if std::mem::take(&mut self.slow) {
            let (count, changed) = &*self.opened;
            let (count, timeout) = changed
                .wait_timeout_while(count.lock().unwrap(), Duration::from_secs(60), |n| {
                    *n < SPLITS
                })
                .unwrap();
            if timeout.timed_out() {
                return Err(solstice::Error::Plan(format!(
                    "split s0: only {} of {SPLITS} splits were opened while it was held up",
                    *count
                )));
            }
        }
        let stop = self.end.min(self.next + max as u64);
        out.extend(self.next..stop);
        self.next = stop;
        Ok(self.next < self.end)
    }

    fn position(&self) -> solstice::Result<u64> {
        Ok(self.next)
    }
}

#[test]
fn a_subtask_held_up_on_one_split_leaves_the_others_to_the_rest() {
    let opened = Arc::new((Mutex::new(0), Condvar::new()));
    let out = CollectSink::<u64>::new();
    let sink = out.clone();
    let config = Config::builder().threads(2).build().unwrap();
    let job = Job::build("uneven", config, move |b: &mut JobBuilder| {
        let numbers = b.source("numbers", Some(Parallelism::Fixed(2)), move |_| {
            Ok(Uneven {
                opened: opened.clone(),
            })
        })?;
        b.sink("out", Some(Parallelism::Fixed(2)), &[numbers], move |_| {
            Ok(sink)
        })
    })
    .unwrap();
    let result = within(Duration::from_secs(120), move || job.run().unwrap());
    let mut got = out.take();
    got.sort_unstable();
    assert_eq!(got, (0..SPLITS as u64 * PER_SPLIT).collect::<Vec<_>>());
    // One subtask read `s0` alone; the other read the seven others.
    let mut handed: Vec<u64> = (0..2)
        .map(|i| {
            result
                .counters
                .get(&format!("numbers.splits.{i}"))
                .copied()
                .unwrap_or(0)
        })
        .collect();
    handed.sort_unstable();
    assert_eq!(handed, [1, SPLITS as u64 - 1], "{:?}", result.counters);
}
