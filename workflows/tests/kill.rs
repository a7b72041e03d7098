//! The exactly-once proof: the simple_etl binary, killed with SIGKILL at random moments and
//! restarted with `--restore latest` until it finishes, publishes exactly the output of a run
//! that was never killed — as a multiset, and in order for each user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn write_orders(path: &Path, n: u64) {
    let mut text = String::with_capacity(n as usize * 48);
    for id in 1..=n {
        let user = format!("User{}", (id * 7919) % 1009);
        let amount = ((id * 37) % 20_000) as f64 / 100.0 - 20.0;
        text.push_str(&format!(
            "{{\"id\":{id},\"user\":\"{user}\",\"amount\":{amount}}}\n"
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// Published output lines (hidden staging files excluded), per user in file order is not
/// meaningful across files, so lines are returned sorted.
fn published(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return lines;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        lines.extend(
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    lines.sort();
    lines
}

/// Each user's running order counts must be 1, 2, 3, ... with no gap and no repeat.
fn counts_per_user(lines: &[String]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        out.entry(v["user"].as_str().unwrap().to_string())
            .or_default()
            .push(v["orders"].as_u64().unwrap());
    }
    out.values_mut().for_each(|v| v.sort_unstable());
    out
}

fn command(input: &Path, out: &Path, checkpoints: &Path, restore: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_simple_etl"));
    cmd.current_dir(root())
        .args(["--config", "configs/simple_etl.yaml", "--job-id", "killed"])
        .arg("--set")
        .arg(format!("sources.orders.path={}", input.display()))
        .arg("--set")
        .arg(format!("sinks.out.path={}", out.display()))
        .arg("--set")
        .arg(format!(
            "job.checkpoint.backend=file://{}",
            checkpoints.display()
        ))
        .args([
            "--set",
            "job.checkpoint.interval_records=5000",
            "--set",
            "job.batch_size=256",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if restore {
        cmd.args(["--restore", "latest"]);
    }
    cmd
}

#[test]
fn sigkill_and_restore_gives_exactly_the_failure_free_output() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("orders.jsonl");
    write_orders(&input, 150_000);

    // The reference: one run, never killed.
    let reference_out = tmp.path().join("reference");
    let status = command(&input, &reference_out, &tmp.path().join("chk-ref"), false)
        .status()
        .unwrap();
    assert!(status.success());
    let reference = published(&reference_out);
    assert!(reference.len() > 100_000);

    // Kill at pseudo-random moments until the job completes; scenarios repeat until at least 10
    // kills happened in all.
    let mut seed: u64 = 0x5eed;
    let mut kills = 0;
    let mut scenario = 0;
    while kills < 10 {
        scenario += 1;
        assert!(scenario <= 20, "too many scenarios without enough kills");
        let out = tmp.path().join(format!("out-{scenario}"));
        let checkpoints = tmp.path().join(format!("chk-{scenario}"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            assert!(
                attempt <= 200,
                "the job does not make progress between kills"
            );
            let mut child = command(&input, &out, &checkpoints, attempt > 1)
                .spawn()
                .unwrap();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let delay = Duration::from_millis(50 + (seed >> 33) % 400);
            let started = Instant::now();
            let finished = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "attempt {attempt} failed: {status}");
                    break true;
                }
                if started.elapsed() >= delay {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            if finished {
                break;
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
        }
        let got = published(&out);
        eprintln!(
            "scenario {scenario}: finished after {attempt} attempt(s); {kills} kill(s) so far"
        );
        assert_eq!(
            got.len(),
            reference.len(),
            "scenario {scenario}: record count"
        );
        assert!(
            got == reference,
            "scenario {scenario}: output differs from the reference"
        );
        assert_eq!(counts_per_user(&got), counts_per_user(&reference));
    }
}
