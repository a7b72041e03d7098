//! A real local Ray cluster for the tests: Ray from PyPI at the version `ray/requirements.txt`
//! pins, installed once into a virtual environment in the test cache directory, and a head plus
//! one more node started in a network namespace of the test's own where loopback is the only
//! interface, so that every node is on 127.0.0.1 and nothing listens beyond it. Dropping the
//! cluster kills every process in the namespace and removes it (also when a test fails).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned requirement, e.g. `ray[default]==2.60.0`.
fn requirement() -> String {
    let text = include_str!("../../../ray/requirements.txt");
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .expect("ray/requirements.txt names the Ray requirement")
        .to_string()
}

fn version() -> String {
    requirement()
        .split_once("==")
        .map(|(_, v)| v.trim().to_string())
        .expect("the Ray requirement is pinned with ==")
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The virtual environment with Ray, installed on first use (under a lock, into a temporary
/// directory renamed into place, so that a failed or concurrent install leaves nothing half
/// done).
pub fn ray_env() -> PathBuf {
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME is set"));
    let cache = home.join(".cache/solstice-test-python");
    let dir = cache.join(format!("ray-{}", version()));
    if dir.join("bin/python").exists() {
        return dir;
    }
    std::fs::create_dir_all(&cache).unwrap();
    let lock = std::fs::File::create(cache.join(".ray.lock")).unwrap();
    lock.lock().unwrap();
    if dir.join("bin/python").exists() {
        return dir;
    }
    let tmp = cache.join(format!("ray-{}.tmp-{}", version(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&tmp),
        "python3 -m venv",
    )
    .unwrap_or_else(|e| panic!("cannot make a virtual environment for Ray: {e}"));
    run(
        Command::new(tmp.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &requirement(),
        ]),
        "pip install ray",
    )
    .unwrap_or_else(|e| panic!("cannot install Ray: {e}"));
    std::fs::rename(&tmp, &dir).unwrap();
    dir
}

/// True when this process runs as root (the owner of its `/proc` entry).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The Python of [`ray_env`].
pub fn ray_python() -> PathBuf {
    ray_env().join("bin/python")
}

/// A Ray head and one more node, 2 CPUs each, in network namespace `ns`.
pub struct RayCluster {
    ns: String,
    temp: PathBuf,
}

impl RayCluster {
    /// Starts the cluster; `None` (with the reason printed) where namespaces cannot be made.
    pub fn start() -> Option<RayCluster> {
        if !is_root() {
            eprintln!("skipped: the Ray cluster runs in a network namespace, which needs root (CI runs this test as root)");
            return None;
        }
        if Command::new("ip").arg("-V").output().is_err() {
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            run(
                Command::new("apt-get").args(["install", "-y", "-qq", "iproute2"]),
                "apt-get install iproute2",
            )
            .unwrap();
        }
        let env = ray_env();
        let id = std::process::id();
        // Short: Ray's socket paths under it must stay within the limit of 107 bytes.
        let cluster = RayCluster {
            ns: format!("solstice-ray-{id}"),
            temp: PathBuf::from(format!("/tmp/sray-{id}")),
        };
        let _ = std::fs::remove_dir_all(&cluster.temp);
        run(
            Command::new("ip").args(["netns", "add", &cluster.ns]),
            "ip netns add",
        )
        .unwrap();
        run(
            Command::new("ip").args(["-n", &cluster.ns, "link", "set", "lo", "up"]),
            "ip link set lo up",
        )
        .unwrap();
        let head = cluster.temp.join("h");
        let node = cluster.temp.join("n1");
        let mut start_head = cluster.ray_cli(&env);
        start_head
            .args([
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                "6379",
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                "8265",
                "--ray-client-server-port",
                "10001",
                "--num-cpus",
                "2",
                "--disable-usage-stats",
                "--temp-dir",
            ])
            .arg(&head);
        run(&mut start_head, "ray start --head").unwrap();
        let mut start_node = cluster.ray_cli(&env);
        start_node
            .args([
                "start",
                "--address",
                "127.0.0.1:6379",
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                "2",
                "--disable-usage-stats",
                "--temp-dir",
            ])
            .arg(&node);
        run(&mut start_node, "ray start (second node)").unwrap();
        cluster.check_nodes(&env);
        Some(cluster)
    }

    /// `ray` (the CLI of the installed Ray) inside the namespace.
    fn ray_cli(&self, env: &Path) -> Command {
        let mut cmd = self.inside(env.join("bin/python"));
        cmd.args(["-c", "from ray.scripts.scripts import main; main()"]);
        cmd
    }

    /// Waits until both nodes are alive, and checks that they are on 127.0.0.1.
    fn check_nodes(&self, env: &Path) {
        let script = "import ray, json\n\
            ray.init(address='127.0.0.1:6379', logging_level='error')\n\
            print(json.dumps([[n['NodeManagerAddress'], n['Alive']] for n in ray.nodes()]))\n";
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = run(
                self.inside(env.join("bin/python")).args(["-c", script]),
                "list the Ray nodes",
            )
            .unwrap();
            let line = out.lines().last().unwrap_or_default();
            let nodes: Vec<(String, bool)> = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("cannot read the node list `{line}`: {e}"));
            let alive: Vec<&String> = nodes.iter().filter(|n| n.1).map(|n| &n.0).collect();
            if alive.len() == 2 {
                assert!(
                    alive.iter().all(|a| *a == "127.0.0.1"),
                    "a Ray node is not on 127.0.0.1: {nodes:?}"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Ray nodes did not come up within 60 s: {nodes:?}"
            );
            // Polls the cluster's node table.
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `program` to run inside the cluster's namespace, with the Ray environment first on
    /// `PATH` (where the driver's `python` is found) and as the submitting Python.
    pub fn inside(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let env = ray_env();
        let path = format!(
            "{}:{}",
            env.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg("env")
            .arg(format!("PATH={path}"))
            .arg(format!(
                "SOLSTICE_RAY_PYTHON={}",
                env.join("bin/python").display()
            ))
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// The processes in the cluster's namespace.
    pub fn pids(&self) -> Vec<u32> {
        Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for RayCluster {
    fn drop(&mut self) {
        // Every process of the cluster is in the namespace (Ray daemonizes, so they are not
        // this process's children): kill them until none is left.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            // Lets the killed processes exit before the namespace is listed again.
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.temp);
    }
}
