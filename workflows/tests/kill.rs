//! The exactly-once proof: the simple_etl binary, killed with SIGKILL at random moments and
//! restarted with `--restore latest` until it finishes, publishes exactly the output of a run
//! that was never killed — as a multiset, and in order for each user (in the order the part
//! files were published).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{last_published, per_user, published, simple_etl, sorted, write_orders, Running};

fn command(input: &Path, out: &Path, checkpoints: &Path, restore: bool) -> Command {
    let mut cmd = simple_etl("killed", input, out, checkpoints);
    cmd.stderr(Stdio::null());
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
    let reference_sorted = sorted(&reference);
    let reference_per_user = per_user(&reference);
    // Each user's running order counts in the reference are 1, 2, 3, ...: the sequences
    // compared below are the users' sequences of totals.
    for (user, totals) in &reference_per_user {
        let counts: Vec<u64> = totals
            .iter()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["orders"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        let expected: Vec<u64> = (1..=totals.len() as u64).collect();
        assert_eq!(counts, expected, "reference: {user}'s order counts");
    }

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
            let published_before = last_published(&out);
            let mut child = Running(
                command(&input, &out, &checkpoints, attempt > 1)
                    .spawn()
                    .unwrap(),
            );
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let delay = Duration::from_millis(50 + (seed >> 33) % 400);
            // Every other attempt, the delay counts from the first checkpoint this attempt
            // publishes: the job progresses however slow the machine, and the other attempts
            // are killed at any moment, before any checkpoint too.
            let started = Instant::now();
            let mut since = (attempt % 2 == 1).then_some(started);
            let finished = loop {
                if let Some(status) = child.0.try_wait().unwrap() {
                    assert!(status.success(), "attempt {attempt} failed: {status}");
                    break true;
                }
                if since.is_none() && last_published(&out) > published_before {
                    since = Some(Instant::now());
                }
                if since.is_some_and(|t| t.elapsed() >= delay) {
                    break false;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "scenario {scenario}, attempt {attempt}: no checkpoint published in 120 s"
                );
                // Polls the process and the output directory.
                std::thread::sleep(Duration::from_millis(5));
            };
            drop(child); // SIGKILL, unless it finished
            if finished {
                break;
            }
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
        assert_eq!(
            sorted(&got),
            reference_sorted,
            "scenario {scenario}: output differs from the reference"
        );
        let got_per_user = per_user(&got);
        assert_eq!(
            got_per_user.keys().collect::<Vec<_>>(),
            reference_per_user.keys().collect::<Vec<_>>()
        );
        for (user, totals) in &reference_per_user {
            assert_eq!(
                &got_per_user[user], totals,
                "scenario {scenario}: {user}'s totals in publication order"
            );
        }
        // Nothing is left behind: every checkpoint folder is a complete checkpoint, at most
        // `retain` (3) of them, and no staged output remains beside the published files.
        let mut folders: Vec<String> = std::fs::read_dir(checkpoints.join("killed"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f != solstice::state::checkpoint::EPOCHS)
            .collect();
        folders.sort();
        let incomplete: Vec<&String> = folders
            .iter()
            .filter(|f| f.as_str() != solstice::state::checkpoint::EPOCHS)
            .filter(|f| {
                !checkpoints
                    .join("killed")
                    .join(f)
                    .join("_manifest")
                    .exists()
            })
            .collect();
        assert!(
            incomplete.is_empty() && folders.len() <= 3,
            "scenario {scenario}: checkpoint folders {folders:?}, without a manifest {incomplete:?}"
        );
        let staged: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            // The sink's marker stays: it names the job whose output the directory holds.
            .filter(|name| name.starts_with('.') && name != solstice::connectors::file::SINK_MARKER)
            .collect();
        assert!(
            staged.is_empty(),
            "scenario {scenario}: staged files left behind: {staged:?}"
        );
    }
}
