//! Helpers shared by the end-to-end tests: temporary directories, JSONL files in and out, configs.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use solstice::config::Config;

pub use tempfile::TempDir;

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("solstice-test-")
        .tempdir()
        .expect("create temp dir")
}

/// Writes `records` as JSON lines to `path`.
pub fn write_jsonl<T: Serialize>(path: &Path, records: &[T]) {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).expect("encode"));
        text.push('\n');
    }
    std::fs::write(path, text).expect("write input");
}

/// Reads every `part-*.jsonl` file of a sink directory, in file order.
pub fn read_parts<T: DeserializeOwned>(dir: &Path) -> Vec<T> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read output dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f).expect("read part").lines() {
            out.push(serde_json::from_str(line).expect("decode output line"));
        }
    }
    out
}

/// Parses a YAML config, with `key=value` overrides.
pub fn config(yaml: &str, overrides: &[String]) -> Config {
    Config::parse(yaml, "test.yaml", overrides).expect("valid test config")
}

/// Runs `f` on another thread and fails the test if it has not returned within `limit`: a job
/// that hangs fails loudly instead of stalling the suite.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the job did not finish in time (hang?)")
}

/// A Python interpreter command with pyarrow importable: pyarrow is installed once with pip into
/// a cache directory (no system packages touched). Panics with the pip output if that fails.
pub fn python_with_pyarrow() -> std::process::Command {
    static READY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let dir = READY.get_or_init(|| {
        let home = std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = home.join(".cache/solstice-test-python/pyarrow-26.0.1");
        if !dir.join("pyarrow").exists() {
            let out = std::process::Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--target",
                ])
                .arg(&dir)
                .arg("pyarrow==26.0.1")
                .output()
                .expect("run python3 -m pip");
            assert!(
                out.status.success(),
                "pip install pyarrow failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    });
    let mut cmd = std::process::Command::new("python3");
    cmd.env("PYTHONPATH", dir);
    cmd
}
