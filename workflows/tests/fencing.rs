//! Fencing: a second run of a job started while the first still runs, on the same checkpoint
//! store and output (a restart while the old process lives on, a job started twice). The newer
//! run claims the store; the older one stops with an error naming it, publishing nothing more;
//! the newer one finishes with exactly the output of a run alone; and every complete checkpoint
//! left in the store still restores.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use solstice::state::checkpoint::CheckpointStore;

mod common;

use common::{per_user, published, simple_etl, sorted, write_orders, Running};

const JOB: &str = "twice";

fn command(input: &Path, out: &Path, checkpoints: &Path) -> Command {
    simple_etl(JOB, input, out, checkpoints)
}

/// True once the job has a complete checkpoint in `checkpoints`.
fn has_checkpoint(checkpoints: &Path) -> bool {
    std::fs::read_dir(checkpoints.join(JOB)).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .any(|e| e.path().join("_manifest").is_file())
    })
}

#[test]
fn a_second_run_fences_the_first_and_every_checkpoint_still_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("orders.jsonl");
    write_orders(&input, 400_000);

    let reference_out = tmp.path().join("reference");
    let status = command(&input, &reference_out, &tmp.path().join("chk-ref"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let reference = published(&reference_out);

    let (out, checkpoints) = (tmp.path().join("out"), tmp.path().join("chk"));
    let first_log = tmp.path().join("first.log");
    let mut first = Running(
        command(&input, &out, &checkpoints)
            .stderr(std::fs::File::create(&first_log).unwrap())
            .spawn()
            .unwrap(),
    );
    // The second run starts once the first has completed a checkpoint: it restores that one
    // (or a later one) while the first goes on.
    let started = Instant::now();
    while !has_checkpoint(&checkpoints) {
        assert!(
            first.0.try_wait().unwrap().is_none(),
            "the first run ended before its first checkpoint"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint in 120 s"
        );
        // No event tells of a manifest written by another process: poll the condition (under
        // the deadline above), as the kill test polls its output directory.
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = command(&input, &out, &checkpoints)
        .args(["--restore", "latest"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let second_pid = second.id();
    let second = second.wait_with_output().unwrap();
    let second_log = String::from_utf8_lossy(&second.stderr);
    assert!(
        second.status.success(),
        "the second run failed: {second_log}"
    );
    let status = first.0.wait().unwrap();
    let first_log = std::fs::read_to_string(&first_log).unwrap();
    assert!(
        !status.success(),
        "the first run finished although a newer one took over: {first_log}"
    );
    assert!(
        first_log.contains(&format!("job `{JOB}` was started again elsewhere"))
            && first_log.contains(&format!("process {second_pid} on ")),
        "the first run's error names the second: {first_log}"
    );

    // The published output is that of one run alone: as a multiset, and per user in order.
    let got = published(&out);
    assert_eq!(sorted(&got), sorted(&reference));
    assert_eq!(per_user(&got), per_user(&reference));

    // Every complete checkpoint left in the store opens with every part's checksum verified.
    let url = format!("file://{}", checkpoints.display());
    let store = CheckpointStore::from_url(&url, &Default::default()).unwrap();
    let complete = store.list(JOB).unwrap();
    assert!(!complete.is_empty());
    for id in complete {
        store
            .open(JOB, id)
            .unwrap_or_else(|e| panic!("{id} does not restore: {e}"));
    }
}
