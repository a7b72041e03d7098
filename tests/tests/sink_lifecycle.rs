//! One sink writer lifecycle, with and without checkpoints: `write_batch`*, `pre_commit` at each
//! checkpoint (the end of the stream being the final one), then `finish` exactly once; each
//! staged transaction is persisted before it is committed. A sink written from the docs, which
//! completes its output in `finish`, loses nothing either way.

use std::sync::{Arc, Mutex};

use solstice::job::JobBuilder;
use solstice::prelude::*;
use solstice_tests::{config, temp_dir};

#[derive(Clone, Debug, PartialEq)]
enum Call {
    Write(usize),
    PreCommit(u64),
    Finish,
}

/// Records each call its writers receive, per subtask, and the sum each writer completed in
/// `finish` (as a sink that writes its result at the end would).
#[derive(Clone, Default)]
struct Recording {
    calls: Arc<Mutex<Vec<Vec<Call>>>>,
    sums: Arc<Mutex<Vec<u64>>>,
    /// Transactions `persist` was called for, in order.
    persisted: Arc<Mutex<Vec<String>>>,
    /// Transactions committed, and whether each had been persisted by then.
    committed: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Sink for Recording {
    type Item = u64;
    type Writer = RecordingWriter;

    fn open(&self, subtask: usize, parallelism: usize) -> Result<RecordingWriter> {
        self.calls
            .lock()
            .unwrap()
            .resize_with(parallelism, Vec::new);
        Ok(RecordingWriter {
            sink: self.clone(),
            subtask,
            sum: 0,
        })
    }

    fn persist(&self, transaction: &str) -> Result<()> {
        self.persisted.lock().unwrap().push(transaction.to_string());
        Ok(())
    }

    fn commit(&self, transaction: &str) -> Result<()> {
        let persisted = self
            .persisted
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == transaction);
        self.committed
            .lock()
            .unwrap()
            .push((transaction.to_string(), persisted));
        Ok(())
    }
}

struct RecordingWriter {
    sink: Recording,
    subtask: usize,
    sum: u64,
}

impl RecordingWriter {
    fn log(&self, call: Call) {
        self.sink.calls.lock().unwrap()[self.subtask].push(call);
    }
}

impl SinkWriter<u64> for RecordingWriter {
    fn write_batch(&mut self, batch: &mut Vec<u64>) -> Result<()> {
        self.log(Call::Write(batch.len()));
        self.sum += batch.drain(..).sum::<u64>();
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.log(Call::Finish);
        self.sink.sums.lock().unwrap().push(self.sum);
        Ok(())
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<String>> {
        self.log(Call::PreCommit(checkpoint));
        Ok(Some(format!("{}-{checkpoint}", self.subtask)))
    }
}

const N: u64 = 100_000;

fn run(yaml: &str) -> Recording {
    let sink = Recording::default();
    let handed = sink.clone();
    let job = Job::build("lifecycle", config(yaml, &[]), move |b: &mut JobBuilder| {
        let numbers = b.source("numbers", Some(Parallelism::Fixed(2)), |cfg| {
            RangeSource::from_config(cfg)
        })?;
        b.sink("out", Some(Parallelism::Fixed(2)), &[numbers], move |_| {
            Ok(handed)
        })
    })
    .unwrap();
    job.run().unwrap();
    sink
}

/// Every subtask: writes, pre-commits of increasing ids, `finish` last and once; the sums are
/// complete.
fn check(sink: &Recording, checkpoints: bool) {
    let calls = sink.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    for (subtask, calls) in calls.iter().enumerate() {
        assert_eq!(
            calls.last(),
            Some(&Call::Finish),
            "subtask {subtask}: {calls:?}"
        );
        let finishes = calls.iter().filter(|c| **c == Call::Finish).count();
        assert_eq!(finishes, 1, "subtask {subtask}: {calls:?}");
        let ids: Vec<u64> = calls
            .iter()
            .filter_map(|c| match c {
                Call::PreCommit(n) => Some(*n),
                _ => None,
            })
            .collect();
        if checkpoints {
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
            // The end of the stream is the final checkpoint, pre-committed before `finish`.
            assert!(
                matches!(calls[calls.len() - 2], Call::PreCommit(_)),
                "subtask {subtask}: {calls:?}"
            );
        } else {
            assert!(ids.is_empty(), "no checkpoints, no pre_commit: {calls:?}");
        }
    }
    // Every record reached one writer (which subtask read which chunk is the source's pull).
    let written: usize = calls
        .iter()
        .flatten()
        .map(|c| match c {
            Call::Write(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(written as u64, N, "records written by both subtasks");
    let sums = sink.sums.lock().unwrap();
    assert_eq!(sums.iter().sum::<u64>(), N * (N - 1) / 2, "no data lost");
    let committed = sink.committed.lock().unwrap();
    if checkpoints {
        // Both subtasks' transactions of the final checkpoint at least.
        assert!(committed.len() >= 2, "{committed:?}");
        assert!(
            committed.iter().all(|(_, persisted)| *persisted),
            "committed before persisted: {committed:?}"
        );
    } else {
        assert!(committed.is_empty(), "{committed:?}");
    }
}

#[test]
fn without_checkpoints_finish_completes_the_output() {
    let sink = run(&format!(
        "runtime: {{ threads: 2 }}\nsources: {{ numbers: {{ end: {N} }} }}\n"
    ));
    check(&sink, false);
}

#[test]
fn with_checkpoints_finish_is_still_called_after_the_final_pre_commit() {
    let dir = temp_dir();
    let sink = run(&format!(
        "job:\n  checkpoint: {{ backend: 'file://{}', interval_records: 10000 }}\n\
         runtime: {{ threads: 2 }}\nsources: {{ numbers: {{ end: {N} }} }}\n",
        dir.path().display()
    ));
    check(&sink, true);
}

#[solstice::pipeline]
pub mod copy {
    use super::*;

    #[source(2)]
    pub fn numbers(cfg: &SourceConfig) -> Result<RangeSource> {
        RangeSource::from_config(cfg)
    }

    #[sink(2)]
    pub fn files(cfg: &SinkConfig) -> Result<FileSink<u64>> {
        FileSink::from_config(cfg)
    }

    #[sink(2)]
    pub fn memory(cfg: &SinkConfig) -> Result<CollectSink<u64>> {
        CollectSink::from_config(cfg)
    }

    dag! {
        numbers -> files;
        numbers -> memory;
    }
}

#[test]
fn file_and_collect_sinks_lose_nothing_with_checkpoints() {
    for checkpoints in [false, true] {
        let dir = temp_dir();
        let job = if checkpoints {
            format!(
                "job:\n  checkpoint: {{ backend: 'file://{}/chk', interval_records: 10000 }}\n",
                dir.path().display()
            )
        } else {
            String::new()
        };
        let yaml = format!(
            "{job}runtime: {{ threads: 2 }}\nsources: {{ numbers: {{ end: {N} }} }}\n\
             sinks: {{ files: {{ path: '{}/out' }} }}\n",
            dir.path().display()
        );
        let (mut result, _) = copy::run(config(&yaml, &[])).unwrap();
        let all: Vec<u64> = (0..N).collect();
        assert_eq!(result.collected::<u64>("memory").unwrap(), all);
        let mut files: Vec<u64> = solstice_tests::read_parts(&dir.path().join("out"));
        files.sort_unstable();
        assert_eq!(files, all, "checkpoints: {checkpoints}");
    }
}
