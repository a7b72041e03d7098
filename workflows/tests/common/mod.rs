//! Helpers shared by the workflow tests that run `simple_etl` on generated orders.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Writes `n` orders of about 1000 users, some with negative amounts, as JSON lines.
pub fn write_orders(path: &Path, n: u64) {
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

/// The published part files (`part-{subtask:05}-{checkpoint:08}.jsonl`; hidden staging files
/// excluded) in publication order: by checkpoint, then subtask; with their checkpoint ids.
pub fn part_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let order = name
            .strip_prefix("part-")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(stem, _ext)| stem.split_once('-'))
            .and_then(|(subtask, checkpoint)| {
                Some((
                    checkpoint.parse::<u64>().ok()?,
                    subtask.parse::<u64>().ok()?,
                ))
            })
            .unwrap_or_else(|| panic!("not a published part file: {}", path.display()));
        parts.push((order, path));
    }
    parts.sort();
    parts
        .into_iter()
        .map(|((checkpoint, _), path)| (checkpoint, path))
        .collect()
}

/// Published output lines in publication order: the part files in order, each file's lines in
/// order.
pub fn published(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for (_, path) in part_files(dir) {
        lines.extend(
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    lines
}

/// The newest checkpoint whose output is published (0: none).
pub fn last_published(dir: &Path) -> u64 {
    part_files(dir)
        .last()
        .map_or(0, |(checkpoint, _)| *checkpoint)
}

/// A running job, killed (SIGKILL) when dropped: also when the test fails.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Each user's output lines (running totals), in the order given.
pub fn per_user(lines: &[String]) -> BTreeMap<String, Vec<&str>> {
    let mut out: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        out.entry(v["user"].as_str().unwrap().to_string())
            .or_default()
            .push(l);
    }
    out
}

/// `lines`, sorted: the output as a multiset.
pub fn sorted(lines: &[String]) -> Vec<&str> {
    let mut sorted: Vec<&str> = lines.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted
}

/// `simple_etl` as job `job` on `input`, publishing into `out`, checkpointing into
/// `checkpoints` every 5000 records in batches of 256; stdout discarded.
pub fn simple_etl(job: &str, input: &Path, out: &Path, checkpoints: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_simple_etl"));
    cmd.current_dir(root())
        .args(["--config", "configs/simple_etl.yaml", "--job-id", job])
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
        .stdout(Stdio::null());
    cmd
}
