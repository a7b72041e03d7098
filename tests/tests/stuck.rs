//! A worker that is alive but stuck (a stage that never returns, while its heartbeats and
//! connections go on) is found by the checkpoint timeout: the attempt fails naming the worker and
//! its tasks, the worker is replaced, and the job restores and finishes with exact output.

use std::process::Command;

use solstice_tests::{published, temp_dir};

#[test]
fn a_stuck_worker_is_replaced_and_the_job_finishes_exactly() {
    let dir = temp_dir();
    let n: u64 = 400_000;
    let config = dir.path().join("job.yaml");
    std::fs::write(
        &config,
        format!(
            "job:\n  id: stuck\n  checkpoint: {{ backend: 'file://{}', interval_secs: 0.2, \
             timeout_secs: 2 }}\n  restart: {{ attempts: 3 }}\n\
             runtime: {{ threads: 1, processes: 2 }}\n\
             sources: {{ numbers: {{ end: {n} }} }}\n\
             sinks: {{ out: {{ path: out, format: jsonl }} }}\n",
            dir.path().join("chk").display()
        ),
    )
    .unwrap();
    let marker = dir.path().join("stuck-once");
    let run = Command::new(env!("CARGO_BIN_EXE_stuck"))
        .args(["--config", config.to_str().unwrap()])
        .env("STUCK_MARKER", &marker)
        .env("RUST_LOG", "solstice=info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert!(marker.exists(), "the stage never got stuck:\n{log}");
    // The coordinator said which worker was stuck, and on which checkpoint.
    let said = log
        .lines()
        .find(|l| l.contains("stuck: no snapshot for checkpoint"))
        .unwrap_or_else(|| panic!("no word of a stuck worker in:\n{log}"));
    assert!(
        said.contains("worker ") && said.contains("tasks ["),
        "{said}"
    );
    eprintln!("{said}");
    let (mut got, pending) = published::<u64>(&dir.path().join("out"));
    assert!(pending.is_empty(), "{pending:?}");
    got.sort_unstable();
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "each record exactly once");
}
