//! Backpressure between processes: a fast source in one worker feeds a slow sink in another
//! over a connection; the sender waits for credit, and nothing queues beyond the credits the
//! receiver granted (asserted on the transport's counters, which each worker reports).

use std::process::Command;

use solstice_tests::temp_dir;

/// `key=value` pairs of the transport line the coordinator logs for worker `worker`.
fn counters(log: &str, worker: usize) -> std::collections::BTreeMap<String, u64> {
    let line = log
        .lines()
        .find(|l| l.contains(&format!("worker {worker} (")) && l.contains(": transport "))
        .unwrap_or_else(|| panic!("no transport line for worker {worker} in:\n{log}"));
    line.split(": transport ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

#[test]
fn a_slow_sink_in_another_process_holds_the_sender_to_its_credits() {
    let dir = temp_dir();
    let n: u64 = 300_000;
    let config = dir.path().join("job.yaml");
    std::fs::write(
        &config,
        format!(
            "job: {{ id: backpressure, channel_capacity: 8 }}\n\
             runtime: {{ threads: 1, processes: 2 }}\n\
             sources: {{ numbers: {{ end: {n} }} }}\n\
             sinks: {{ out: {{ path: out, format: jsonl }} }}\n"
        ),
    )
    .unwrap();
    let explain = Command::new(env!("CARGO_BIN_EXE_backpressure"))
        .args(["--config", config.to_str().unwrap(), "--explain"])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&explain.stdout);
    // The source runs on worker 0 only, the sink's first subtask on worker 1.
    assert!(
        plan.contains("worker 0: chain 0 (numbers) [0], chain 1 (slowly) [1]")
            && plan.contains("worker 1: chain 1 (slowly) [0]"),
        "{plan}"
    );
    let run = Command::new(env!("CARGO_BIN_EXE_backpressure"))
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    let sender = counters(&log, 0);
    let receiver = counters(&log, 1);
    // Every batch for the other process needed a credit, and the sender ran out of them: the
    // slow receiver held it back.
    assert!(sender["batches_sent"] > 100, "{sender:?}");
    assert!(
        sender["batches_sent"] <= sender["credits_received"],
        "{sender:?}"
    );
    assert!(
        sender["credit_waits"] > 0,
        "the sender never waited: {sender:?}"
    );
    // Nothing queued beyond the credits: at the sender's writer, or in the receiver's inbox.
    let capacity = receiver["max_inbox_capacity"];
    assert_eq!(capacity, 8, "{receiver:?}");
    assert!(sender["max_writer_queue"] <= capacity, "{sender:?}");
    assert!(receiver["max_inbox"] <= capacity, "{receiver:?}");
    // And every record arrived once.
    let (mut got, hidden): (Vec<u64>, Vec<String>) =
        solstice_tests::published(&dir.path().join("out"));
    got.sort_unstable();
    assert!(hidden.is_empty(), "{hidden:?}");
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}
