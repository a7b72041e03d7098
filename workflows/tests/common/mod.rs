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

/// The processes whose parent is `pid` (from `/proc`).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after its `)`.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out.sort_unstable();
    out
}

/// True while process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// SIGKILLs process `pid`.
pub fn kill(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// The lines a child writes to stderr, collected by a thread as they come (and echoed to this
/// test's stderr, so that a failing test shows them).
pub struct Lines(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Lines {
    /// Starts collecting `stderr` (or another output) of a spawned child.
    pub fn collect(stderr: impl std::io::Read + Send + 'static, tag: &str) -> Lines {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (sink, tag) = (lines.clone(), tag.to_string());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                eprintln!("[{tag}] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Lines(lines)
    }

    /// The first line containing `needle` so far.
    pub fn find(&self, needle: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }

    /// Waits until a line contains `needle`, at most `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self.find(needle) {
                return line;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no line with `{needle}` within {timeout:?}"
            );
            // Polls the lines the reading thread collects.
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Everything collected so far.
    pub fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// Writes `n` lines of text (JSON strings) over a vocabulary of about 3000 words.
pub fn write_lines(path: &Path, n: u64) {
    let mut text = String::new();
    for i in 0..n {
        let words: Vec<String> = (0..8)
            .map(|k| format!("w{}", (i * 31 + k * 977) % 3001))
            .collect();
        text.push_str(&format!("\"{}\"\n", words.join(" ")));
    }
    std::fs::write(path, text).unwrap();
}

/// `wordcount` as job `job` on `input`, publishing into `out`, checkpointing into
/// `checkpoints` every 5000 records in batches of 256; stdout discarded.
pub fn wordcount(job: &str, input: &Path, out: &Path, checkpoints: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wordcount"));
    cmd.current_dir(root())
        .args(["--config", "configs/wordcount.yaml", "--job-id", job])
        .arg("--set")
        .arg(format!("sources.lines.path={}", input.display()))
        .arg("--set")
        .arg(format!("sinks.counts.path={}", out.display()))
        .arg("--set")
        .arg(format!(
            "job.checkpoint={{backend: \"file://{}\", interval_records: 5000}}",
            checkpoints.display()
        ))
        .args(["--set", "job.batch_size=256"])
        .stdout(Stdio::null());
    cmd
}

/// True when this process runs as root (network namespaces need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Writes `orders` orders to `dir/orders.jsonl` and runs simple_etl once on them, never killed,
/// on one process: the input and the reference output every other run must equal.
pub fn reference_run(dir: &Path, orders: u64) -> (PathBuf, Vec<String>) {
    let input = dir.join("orders.jsonl");
    write_orders(&input, orders);
    let out = dir.join("reference");
    let run = simple_etl("ref", &input, &out, &dir.join("chk-ref"))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the reference run failed: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    (input, published(&out))
}

/// Waits until `done` holds, at most `timeout`; panics naming `what` when it does not.
pub fn wait_until(timeout: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        // The conditions waited for are files and processes, which notify no one: poll them.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
