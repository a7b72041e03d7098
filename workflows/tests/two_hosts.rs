//! Two hosts: a coordinator and a worker in one network namespace, a second worker in another,
//! joined by a veth pair with addresses of the test's own; the job's output is exact. A worker
//! on another host (another UTS name too) with a `file://` checkpoint backend is refused.
//!
//! Namespaces need root. Without it the test says so and skips; as root (CI) it must run, and
//! it installs `iproute2` when `ip` is missing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::{is_root, per_user, published, reference_run, simple_etl, sorted, Lines, Running};

/// A 32-byte job secret as hex.
const SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces joined by a veth pair, removed when dropped (also when the test fails).
struct Hosts {
    a: String,
    b: String,
    ip_a: String,
    ip_b: String,
}

impl Hosts {
    fn create() -> Result<Hosts, String> {
        let id = std::process::id();
        let net = id % 250 + 1;
        let hosts = Hosts {
            a: format!("solstice-{id}-a"),
            b: format!("solstice-{id}-b"),
            ip_a: format!("10.213.{net}.1"),
            ip_b: format!("10.213.{net}.2"),
        };
        let (va, vb) = (format!("sol{id}a"), format!("sol{id}b"));
        let (va, vb) = (&va[..va.len().min(15)], &vb[..vb.len().min(15)]);
        sh(&["ip", "netns", "add", &hosts.a])?;
        sh(&["ip", "netns", "add", &hosts.b])?;
        sh(&["ip", "link", "add", va, "type", "veth", "peer", "name", vb])?;
        sh(&["ip", "link", "set", va, "netns", &hosts.a])?;
        sh(&["ip", "link", "set", vb, "netns", &hosts.b])?;
        for (ns, dev, ip) in [(&hosts.a, va, &hosts.ip_a), (&hosts.b, vb, &hosts.ip_b)] {
            let cidr = format!("{ip}/24");
            sh(&["ip", "-n", ns, "addr", "add", &cidr, "dev", dev])?;
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other end.
        let _ = sh(&["ip", "netns", "del", &self.a]);
        let _ = sh(&["ip", "netns", "del", &self.b]);
    }
}

/// The namespaces, or why they cannot be made here (`Err` fails the test as root).
fn hosts() -> Option<Hosts> {
    if !is_root() {
        eprintln!("skipped: network namespaces need root (CI runs this test as root)");
        return None;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        // A fresh machine without iproute2.
        let _ = sh(&["apt-get", "update", "-qq"]);
        sh(&["apt-get", "install", "-y", "-qq", "iproute2"]).expect("install iproute2");
    }
    Some(Hosts::create().expect("create two network namespaces as root"))
}

/// `cmd` run inside namespace `ns`.
fn inside(ns: &str, cmd: &Command) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(common::root())
        .env("SOLSTICE_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// The address after `key=` in `line`.
fn field(line: &str, key: &str) -> String {
    line.split(&format!("{key}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {key} in `{line}`"))
        .to_string()
}

#[test]
fn a_coordinator_and_workers_on_two_hosts_give_the_exact_output() {
    let Some(hosts) = hosts() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (input, reference) = reference_run(tmp.path(), 60_000);

    let (out, chk) = (tmp.path().join("out"), tmp.path().join("chk"));
    let job = simple_etl("hosts", &input, &out, &chk);
    let mut coordinator_cmd = simple_etl("hosts", &input, &out, &chk);
    let listen = format!("{}:0", hosts.ip_a);
    coordinator_cmd.args(["--coordinator", "--listen", &listen, "--workers", "2"]);
    let mut coordinator = Running(inside(&hosts.a, &coordinator_cmd).spawn().unwrap());
    let log = Lines::collect(coordinator.0.stderr.take().unwrap(), "coordinator");
    let addr = field(
        &log.wait_for("waiting for 2 worker(s)", Duration::from_secs(60)),
        "listen",
    );
    assert!(addr.starts_with(&hosts.ip_a), "{addr}");
    let mut worker_cmd = Command::new(job.get_program());
    worker_cmd
        .args(job.get_args())
        .args(["--worker", "--join", &addr]);
    let mut here = Running(inside(&hosts.a, &worker_cmd).spawn().unwrap());
    let _here_log = Lines::collect(here.0.stderr.take().unwrap(), "worker a");
    let mut there = Running(inside(&hosts.b, &worker_cmd).spawn().unwrap());
    let there_log = Lines::collect(there.0.stderr.take().unwrap(), "worker b");
    // The worker in the other namespace reaches the coordinator over the veth pair, and takes
    // its peer's connection on its own address there.
    let joined = there_log.wait_for("worker joined", Duration::from_secs(60));
    assert!(field(&joined, "data").starts_with(&hosts.ip_b), "{joined}");
    let status = coordinator.0.wait().unwrap();
    assert!(status.success(), "coordinator: {status}\n{}", log.all());
    for w in [&mut here, &mut there] {
        assert!(w.0.wait().unwrap().success());
    }
    let got = published(&out);
    assert_eq!(sorted(&got), sorted(&reference), "output as a multiset");
    assert_eq!(
        per_user(&got),
        per_user(&reference),
        "each user's totals in order"
    );

    // A worker on a host of another name, with checkpoints on this host's file system: refused.
    let other = tmp.path().join("out-other");
    let mut coordinator_cmd = simple_etl("other", &input, &other, &tmp.path().join("chk-o"));
    coordinator_cmd.args(["--coordinator", "--listen", &listen, "--workers", "1"]);
    let mut coordinator = Running(inside(&hosts.a, &coordinator_cmd).spawn().unwrap());
    let log = Lines::collect(coordinator.0.stderr.take().unwrap(), "coordinator 2");
    let addr = field(
        &log.wait_for("waiting for 1 worker(s)", Duration::from_secs(60)),
        "listen",
    );
    let job = simple_etl("other", &input, &other, &tmp.path().join("chk-o"));
    let exe = job.get_program().to_string_lossy().into_owned();
    let mut args: Vec<String> = job
        .get_args()
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    args.extend(["--worker".into(), "--join".into(), addr.clone()]);
    let script = format!(
        "hostname solstice-other-host && exec '{exe}' {}",
        args.join(" ")
    );
    let mut renamed = Command::new("unshare");
    renamed.args(["--uts", "sh", "-c", &script]);
    let mut worker = Running(inside(&hosts.b, &renamed).spawn().unwrap());
    let _worker_log = Lines::collect(worker.0.stderr.take().unwrap(), "worker other");
    let status = coordinator.0.wait().unwrap();
    assert!(
        !status.success(),
        "a file:// backend across hosts was accepted"
    );
    let said = log.all();
    assert!(
        said.contains("solstice-other-host") && said.contains("s3://"),
        "{said}"
    );
    drop(worker);
    assert!(!Path::new(&other).join("part-00000-00000001.jsonl").exists());
}
