//! simple_etl on a real local Ray cluster (head plus one more node, see `ray_cluster`),
//! submitted with `--ray-address`: the output equals a local run's; a worker killed with
//! SIGKILL is restarted by Ray and the job recovers with exact output; the errors a user meets
//! (no cluster, too few CPUs, a binary the nodes cannot run) end with a clear message and a
//! non-zero exit; a binary given as an http:// URL is downloaded on the nodes.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

mod common;
mod ray_cluster;

use common::{
    alive, kill, per_user, published, reference_run, simple_etl, sorted, wait_until, write_orders,
    Lines,
};
use ray_cluster::RayCluster;

/// simple_etl submitted to the cluster, with `sets` on top of [`simple_etl`]'s.
fn on_ray(
    cluster: &RayCluster,
    job: &str,
    input: &Path,
    out: &Path,
    chk: &Path,
    sets: &[&str],
) -> Command {
    let local = simple_etl(job, input, out, chk);
    let mut cmd = cluster.inside(local.get_program());
    cmd.args(local.get_args()).args([
        "--set",
        "stages.totals.parallelism=2",
        "--set",
        "runtime.threads=1",
    ]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    cmd.args(["--ray-address", "ray://127.0.0.1:10001"])
        .current_dir(common::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` to its end: its status, and its stdout and stderr (the job's log and the
/// client's messages).
fn finish(mut cmd: Command, what: &str) -> (ExitStatus, Lines, Lines) {
    let mut child = common::Running(cmd.spawn().unwrap());
    let log = Lines::collect(child.0.stdout.take().unwrap(), &format!("{what} log"));
    let err = Lines::collect(child.0.stderr.take().unwrap(), what);
    let status = child.0.wait().unwrap();
    (status, log, err)
}

/// The workers' processes of job `job` (started by the actors, in the cluster's namespace).
fn workers(cluster: &RayCluster, job: &str) -> Vec<u32> {
    cluster
        .pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.contains(&&b"--worker"[..])
                    && args
                        .windows(2)
                        .any(|w| w[0] == b"--job-id" && w[1] == job.as_bytes())
            })
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// The job's time in a coordinator's log: from the last worker joining to the end (no upload,
/// placement or process start).
fn job_seconds(log: &Lines) -> f64 {
    log.wait_for("job finished", Duration::from_secs(10));
    // Seconds of the day of a log line's timestamp (`2026-12-02T20:08:10.610263Z ...`).
    let at = |line: &str| -> f64 {
        let time = line.split('T').nth(1).unwrap();
        let time = &time[..time.find('Z').unwrap()];
        let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
        parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
    };
    let all = log.all();
    let joined = all
        .lines()
        .filter(|l| l.contains(" joined; data at "))
        .map(at)
        .fold(0.0, f64::max);
    let end = all
        .lines()
        .find(|l| l.contains("job finished"))
        .map(at)
        .unwrap();
    end - joined
}

#[test]
fn simple_etl_on_a_ray_cluster() {
    let Some(cluster) = RayCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let orders: u64 = std::env::var("SOLSTICE_RAY_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150_000);
    let (input, reference) = reference_run(tmp.path(), orders);

    // 1. Two workers on the cluster: the output of the local run. The same job on
    //    `runtime.processes: 2` gives the figures: both job times from the coordinator's log
    //    (last worker joined to the end), and on Ray the time from submission to the first
    //    published output.
    let figure_sets = [
        format!("job.checkpoint.interval_records={}", (orders / 4).max(1)),
        "job.batch_size=1024".to_string(),
    ];
    let figure_sets: Vec<&str> = figure_sets.iter().map(String::as_str).collect();
    let mut local = simple_etl(
        "local",
        &input,
        &tmp.path().join("out-processes"),
        &tmp.path().join("chk-processes"),
    );
    local.args([
        "--set",
        "runtime.processes=2",
        "--set",
        "runtime.threads=1",
        "--set",
        "stages.totals.parallelism=2",
    ]);
    for set in &figure_sets {
        local.args(["--set", set]);
    }
    local.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (status, _, local_log) = finish(local, "processes");
    assert!(status.success(), "{}", local_log.all());
    let out = tmp.path().join("out-ray");
    let mut cmd = on_ray(
        &cluster,
        "on-ray",
        &input,
        &out,
        &tmp.path().join("chk-ray"),
        &["runtime.ray={workers: 2, cpus_per_worker: 1}"],
    );
    for set in &figure_sets {
        cmd.args(["--set", set]);
    }
    let submitted = Instant::now();
    let mut child = common::Running(cmd.spawn().unwrap());
    let log = Lines::collect(child.0.stdout.take().unwrap(), "ray log");
    let err = Lines::collect(child.0.stderr.take().unwrap(), "ray");
    wait_until(
        Duration::from_secs(300),
        "the first output or the job's end",
        || common::last_published(&out) > 0 || !alive(child.0.id()),
    );
    let first = submitted.elapsed();
    let status = child.0.wait().unwrap();
    let total = submitted.elapsed();
    assert!(
        status.success(),
        "the job failed: {status}\n{}\n{}",
        log.all(),
        err.all()
    );
    let got = published(&out);
    assert_eq!(sorted(&got), sorted(&reference), "output as a multiset");
    assert_eq!(
        per_user(&got),
        per_user(&reference),
        "each user's totals in order"
    );
    assert!(
        log.find("[worker 0]").is_some() && log.find("[worker 1]").is_some(),
        "the workers' logs reach the job's log:\n{}",
        log.all()
    );
    let (processes, ray) = (job_seconds(&local_log), job_seconds(&log));
    let rate = |s: f64| orders as f64 / s / 1e6;
    println!(
        "simple_etl, {orders} orders: runtime.processes=2 {processes:.2} s ({:.2} M orders/s); \
         2 Ray workers {ray:.2} s ({:.2} M orders/s), ratio {:.2}x; on Ray, first output \
         published {:.2} s and the end {:.2} s after submission",
        rate(processes),
        rate(ray),
        processes / ray,
        first.as_secs_f64(),
        total.as_secs_f64()
    );

    // 2. A worker killed mid-run: Ray restarts its actor, the new worker joins, the job
    //    restores from its last checkpoint and finishes with the exact output.
    let out = tmp.path().join("out-killed");
    let cmd = on_ray(
        &cluster,
        "killed-on-ray",
        &input,
        &out,
        &tmp.path().join("chk-killed"),
        &[
            "runtime.ray={workers: 2, cpus_per_worker: 1}",
            "job.restart={attempts: 100, backoff_ms: 0}",
        ],
    );
    let mut cmd = cmd;
    let mut child = common::Running(cmd.spawn().unwrap());
    let log = Lines::collect(child.0.stdout.take().unwrap(), "killed log");
    let err = Lines::collect(child.0.stderr.take().unwrap(), "killed");
    // Once a checkpoint is published and both workers run, one of them is killed.
    wait_until(
        Duration::from_secs(300),
        "a checkpoint with both workers running",
        || {
            !alive(child.0.id())
                || (common::last_published(&out) > 0
                    && workers(&cluster, "killed-on-ray").len() == 2)
        },
    );
    let victim = workers(&cluster, "killed-on-ray").first().copied();
    if let Some(pid) = victim {
        kill(pid);
    }
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "the job failed: {status}\n{}\n{}",
        log.all(),
        err.all()
    );
    let victim =
        victim.expect("the job finished before a worker could be killed: make the input larger");
    let text = log.all();
    assert!(
        text.contains("started again (its actor was restarted)"),
        "Ray did not restart the killed worker ({victim}):\n{text}"
    );
    assert!(
        text.contains("restarting from the last complete"),
        "the job did not restore:\n{text}"
    );
    let got = published(&out);
    assert_eq!(
        sorted(&got),
        sorted(&reference),
        "output after the kill, as a multiset"
    );
    assert_eq!(
        per_user(&got),
        per_user(&reference),
        "each user's totals in order, after the kill"
    );

    // 3. More CPUs than the cluster has: a clear message instead of a wait.
    let cmd = on_ray(
        &cluster,
        "too-big",
        &input,
        &tmp.path().join("out-big"),
        &tmp.path().join("chk-big"),
        &["runtime.ray={workers: 3, cpus_per_worker: 2}"],
    );
    let (status, log, err) = finish(cmd, "too big");
    assert!(!status.success());
    let text = format!("{}\n{}", log.all(), err.all());
    assert!(
        text.contains("3 worker(s) of 2 CPU(s) each")
            && text.contains("4 CPUs")
            && text.contains("room for 2"),
        "{text}"
    );

    // 4. A binary the nodes cannot run.
    let not_a_binary = tmp.path().join("not-a-binary");
    std::fs::write(&not_a_binary, "plain text").unwrap();
    let binary = format!("runtime.ray.binary={}", not_a_binary.display());
    let cmd = on_ray(
        &cluster,
        "bad-binary",
        &input,
        &tmp.path().join("out-bad"),
        &tmp.path().join("chk-bad"),
        &["runtime.ray={workers: 2, cpus_per_worker: 1}", &binary],
    );
    let (status, log, err) = finish(cmd, "bad binary");
    assert!(!status.success());
    let text = format!("{}\n{}", log.all(), err.all());
    assert!(
        text.contains("is not executable on node 127.0.0.1") && text.contains("not-a-binary"),
        "{text}"
    );

    // 5. Ctrl-C (SIGINT to the submitting process) stops the job on the cluster: the client
    //    exits with 130 and the job's workers are gone.
    let out = tmp.path().join("out-stopped");
    let mut cmd = on_ray(
        &cluster,
        "stopped",
        &input,
        &out,
        &tmp.path().join("chk-stopped"),
        &["runtime.ray={workers: 2, cpus_per_worker: 1}"],
    );
    let mut child = common::Running(cmd.spawn().unwrap());
    let log = Lines::collect(child.0.stdout.take().unwrap(), "stopped log");
    let err = Lines::collect(child.0.stderr.take().unwrap(), "stopped");
    wait_until(
        Duration::from_secs(120),
        "both workers of the job to stop",
        || workers(&cluster, "stopped").len() == 2 || !alive(child.0.id()),
    );
    assert!(
        alive(child.0.id()),
        "the job ended before it could be interrupted:\n{}",
        log.all()
    );
    let pid = child.0.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}\n{}", log.all(), err.all());
    assert!(err.find("is STOPPED").is_some(), "{}", err.all());
    wait_until(
        Duration::from_secs(30),
        "the stopped job's workers to exit",
        || workers(&cluster, "stopped").is_empty(),
    );

    // 6. The binary from an http:// URL (served inside the cluster's namespace): the driver
    //    and each worker's actor download it, and the output is exact.
    let served = tmp.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let program = simple_etl("any", &input, &out, &out)
        .get_program()
        .to_owned();
    std::fs::copy(&program, served.join("simple_etl")).unwrap();
    let mut server = cluster.inside("python3");
    server
        .args([
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "0",
            "--directory",
        ])
        .arg(&served)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = common::Running(server.spawn().unwrap());
    let serving = Lines::collect(server.0.stdout.take().unwrap(), "http server");
    let line = serving.wait_for("Serving HTTP on 127.0.0.1 port ", Duration::from_secs(30));
    let port: u16 = line
        .split("port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in `{line}`"));
    let url = format!("http://127.0.0.1:{port}/simple_etl");
    let binary = format!("runtime.ray.binary={url}");
    let out = tmp.path().join("out-url");
    let cmd = on_ray(
        &cluster,
        "from-url",
        &input,
        &out,
        &tmp.path().join("chk-url"),
        &["runtime.ray={workers: 2, cpus_per_worker: 1}", &binary],
    );
    let (status, log, err) = finish(cmd, "binary from a URL");
    assert!(status.success(), "{status}\n{}\n{}", log.all(), err.all());
    let text = format!("{}\n{}", log.all(), err.all());
    assert!(
        text.matches(&format!("(downloaded from {url}")).count() >= 3,
        "the driver and both workers download the binary:\n{text}"
    );
    assert_eq!(
        sorted(&published(&out)),
        sorted(&reference),
        "output of the downloaded binary, as a multiset"
    );
    drop(server);
    drop(cluster);
}

#[test]
fn no_ray_cluster_at_the_address_is_a_clear_error() {
    let python = ray_cluster::ray_python();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("orders.jsonl");
    write_orders(&input, 10);
    let mut cmd = simple_etl(
        "nowhere",
        &input,
        &tmp.path().join("out"),
        &tmp.path().join("chk"),
    );
    // Port 9 (discard): nothing listens there.
    cmd.args(["--ray-address", "http://127.0.0.1:9"])
        .env("SOLSTICE_RAY_PYTHON", &python)
        .stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("no Ray cluster answers at http://127.0.0.1:9"),
        "{text}"
    );
    assert!(!text.contains("Traceback"), "{text}");
}
