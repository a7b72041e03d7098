//! Running a job again never publishes its output twice: a job with complete checkpoints
//! refuses a new run (`--restore latest` resumes, `--fresh` starts over), a sink refuses part
//! files that the run does not account for unless its mode says otherwise, and a restore from an
//! older checkpoint takes back what later checkpoints published.

use std::collections::BTreeMap;
use std::path::Path;

use solstice::job::Restore;
use solstice::prelude::*;
use solstice_tests::{config, published, temp_dir, write_jsonl, SINK_MARKER};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Event {
    pub key: String,
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Running {
    pub key: String,
    pub count: u64,
    pub sum: u64,
}

#[solstice::pipeline]
pub mod totals {
    use super::*;

    #[source]
    pub fn events(cfg: &SourceConfig) -> Result<FileSource<Event>> {
        FileSource::from_config(cfg)
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

    dag! { events -> by_key -> total -> out }
}

const EVENTS: u64 = 30_000;

/// The input in `dir`, and every running total of a run over it, sorted.
fn setup(dir: &Path) -> Vec<Running> {
    let input: Vec<Event> = (0..EVENTS)
        .map(|i| Event {
            key: format!("k{}", (i * 7919) % 101),
            value: i % 13,
        })
        .collect();
    write_jsonl(&dir.join("events.jsonl"), &input);
    let mut acc: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut expected: Vec<Running> = input
        .iter()
        .map(|e| {
            let t = acc.entry(e.key.clone()).or_default();
            t.0 += e.value;
            t.1 += 1;
            Running {
                key: e.key.clone(),
                count: t.1,
                sum: t.0,
            }
        })
        .collect();
    expected.sort();
    expected
}

/// The job's YAML: checkpoints every 4,000 records into `<dir>/checkpoints` (when
/// `checkpoints`), output into `<dir>/out`, and `sink` added to the sink's entry.
fn yaml(dir: &Path, checkpoints: bool, sink: &str) -> String {
    let checkpoint = if checkpoints {
        format!(
            "  checkpoint: {{ backend: 'file://{}', interval_records: 4000, retain: 10 }}\n",
            dir.join("checkpoints").display()
        )
    } else {
        String::new()
    };
    format!(
        "job:\n  batch_size: 256\n  channel_capacity: 2\n{checkpoint}runtime: {{ threads: 2 }}\n\
         sources: {{ events: {{ path: '{}' }} }}\nsinks: {{ out: {{ path: '{}' {sink} }} }}\n",
        dir.join("events.jsonl").display(),
        dir.join("out").display()
    )
}

/// How a run begins.
enum Begin {
    New,
    Fresh,
    Restore(Restore),
}

fn run(yaml: &str, begin: Begin) -> Result<JobResult> {
    let mut job = totals::job(config(yaml, &[]))?;
    match begin {
        Begin::New => {}
        Begin::Fresh => job.fresh(),
        Begin::Restore(r) => job.restore_from(r),
    }
    job.run()
}

/// The names in the output directory, sorted, but for the sink's marker.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != SINK_MARKER)
        .collect();
    names.sort();
    names
}

/// The checkpoints the job's store holds.
fn checkpoints(yaml: &str) -> Vec<String> {
    let job = totals::job(config(yaml, &[])).unwrap();
    let store = job.checkpoint_store().unwrap().unwrap();
    store
        .list(job.id())
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn a_rerun_of_a_checkpointed_job_is_refused_and_publishes_nothing() {
    let dir = temp_dir();
    let expected = setup(dir.path());
    let yaml = yaml(dir.path(), true, "");
    run(&yaml, Begin::New).unwrap();
    let before = names(dir.path());
    assert_eq!(published::<Running>(&dir.path().join("out")).0, expected);

    let e = run(&yaml, Begin::New).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::CheckpointsExist { .. }), "{text}");
    for part in [
        "job `totals` has complete checkpoints",
        "file://",
        "newest: chk-",
        "taken at the end of the input",
        "`--restore latest`",
        "`--fresh`",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    assert_eq!(
        names(dir.path()),
        before,
        "the refused run changed the output"
    );
    assert_eq!(published::<Running>(&dir.path().join("out")).0, expected);

    // Resuming the finished job publishes nothing new either.
    run(&yaml, Begin::Restore(Restore::Latest)).unwrap();
    assert_eq!(published::<Running>(&dir.path().join("out")).0, expected);
}

#[test]
fn fresh_starts_over_with_no_trace_of_the_earlier_run() {
    let dir = temp_dir();
    let expected = setup(dir.path());
    let yaml = yaml(dir.path(), true, "");
    run(&yaml, Begin::New).unwrap();
    let first = checkpoints(&yaml);
    assert!(first.len() >= 2, "{first:?}");

    let leftover = dir.path().join("checkpoints/totals/leftover");
    std::fs::write(&leftover, "anything under the job's folder").unwrap();

    run(&yaml, Begin::Fresh).unwrap();
    let (records, hidden) = published::<Running>(&dir.path().join("out"));
    assert_eq!(records, expected, "output of exactly one run");
    assert!(hidden.is_empty(), "{hidden:?}");
    // The job's checkpoint folder went whole; checkpoint ids start again.
    assert!(!leftover.exists());
    let second = checkpoints(&yaml);
    assert_eq!(second.first().map(String::as_str), Some("chk-00000001"));
    // And a rerun is refused again, now naming the new run's checkpoints.
    assert!(matches!(
        run(&yaml, Begin::New),
        Err(Error::CheckpointsExist { .. })
    ));
}

#[test]
fn a_foreign_part_file_is_refused_unless_the_mode_says_otherwise() {
    let dir = temp_dir();
    let expected = setup(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let foreign = Running {
        key: "someone else's".into(),
        count: 1,
        sum: 1,
    };
    write_jsonl(
        &out.join("part-00000.jsonl"),
        std::slice::from_ref(&foreign),
    );

    for checkpoints in [false, true] {
        let e = run(&yaml(dir.path(), checkpoints, ""), Begin::New).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::OutputExists { .. }), "{text}");
        for part in [
            "sinks.out.path: ",
            "already holds 1 part file(s) not written by job `totals` (part-00000.jsonl)",
            "`sinks.out.mode: overwrite`",
            "`append`",
            "(from test.yaml)",
        ] {
            assert!(text.contains(part), "`{part}` missing from: {text}");
        }
        // Starting over concerns the job's own output, not someone else's.
        let e = run(&yaml(dir.path(), checkpoints, ""), Begin::Fresh).unwrap_err();
        assert!(matches!(e, Error::OutputExists { .. }), "{e}");
        assert_eq!(names(dir.path()), ["part-00000.jsonl"]);
    }

    // Append keeps it, and appends again without reusing a name.
    let append = yaml(dir.path(), false, ", mode: append");
    run(&append, Begin::New).unwrap();
    run(&append, Begin::New).unwrap();
    let (records, hidden) = published::<Running>(&out);
    let mut want = expected.clone();
    want.extend(expected.iter().cloned());
    want.push(foreign.clone());
    want.sort();
    assert_eq!(records, want);
    assert!(hidden.is_empty(), "{hidden:?}");
    assert_eq!(
        names(dir.path()).len(),
        1 + 2 + 2,
        "{:?}",
        names(dir.path())
    );

    // Overwrite replaces everything there.
    run(&yaml(dir.path(), true, ", mode: overwrite"), Begin::New).unwrap();
    assert_eq!(published::<Running>(&out).0, expected);
    assert!(names(dir.path())
        .iter()
        .all(|n| n.len() == "part-00000-00000001.jsonl".len()));
}

#[test]
fn switching_checkpoints_on_or_off_leaves_no_other_mode_files() {
    let dir = temp_dir();
    let expected = setup(dir.path());
    let with = yaml(dir.path(), true, "");
    let without = yaml(dir.path(), false, "");

    run(&with, Begin::New).unwrap();
    // The same job without checkpoints would add `part-0000N.jsonl` files to the checkpointed
    // ones: refused, pointing at --fresh since the output is the job's own.
    let text = run(&without, Begin::New).unwrap_err().to_string();
    assert!(
        text.contains("published by an earlier run of job `totals`") && text.contains("--fresh"),
        "{text}"
    );
    run(&without, Begin::Fresh).unwrap();
    assert_eq!(names(dir.path()), ["part-00000.jsonl", "part-00001.jsonl"]);
    assert_eq!(published::<Running>(&dir.path().join("out")).0, expected);

    // And back: the run without checkpoints knew no checkpoint store, so the first run's
    // checkpoints are still there and refuse; with them gone, the files would.
    assert!(matches!(
        run(&with, Begin::New),
        Err(Error::CheckpointsExist { .. })
    ));
    std::fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();
    let text = run(&with, Begin::New).unwrap_err().to_string();
    assert!(text.contains("published by an earlier run"), "{text}");
    run(&with, Begin::Fresh).unwrap();
    let names = names(dir.path());
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("part-0000") && n.len() == 25),
        "{names:?}"
    );
    assert_eq!(published::<Running>(&dir.path().join("out")).0, expected);
}

#[test]
fn restoring_an_older_checkpoint_takes_back_what_later_ones_published() {
    let dir = temp_dir();
    let expected = setup(dir.path());
    let yaml = yaml(dir.path(), true, "");
    run(&yaml, Begin::New).unwrap();
    let all = checkpoints(&yaml);
    assert!(all.len() >= 3, "{all:?}");
    // The second of them: at least one later checkpoint published output after it.
    run(&yaml, Begin::Restore(all[1].parse().unwrap())).unwrap();
    let (records, hidden) = published::<Running>(&dir.path().join("out"));
    assert_eq!(records.len(), expected.len(), "published once");
    assert_eq!(records, expected);
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn a_restore_refuses_a_directory_another_job_took_over() {
    let dir = temp_dir();
    setup(dir.path());
    let yaml = yaml(dir.path(), true, "");
    run(&yaml, Begin::New).unwrap();
    // Another job takes the directory over.
    let other = config(
        &yaml,
        &["job.id=other".into(), "sinks.out.mode=overwrite".into()],
    );
    totals::job(other).unwrap().run().unwrap();
    let text = run(&yaml, Begin::Restore(Restore::Latest))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("holds the output of job `other`") && text.contains("job `totals`"),
        "{text}"
    );
}
