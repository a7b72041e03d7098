//! Jobs of several processes: the same output at 1, 2 and 3 processes; a worker killed again
//! and again while the job recovers by itself; a killed coordinator takes its workers along and
//! `--restore latest` finishes; workers started by hand, and peers that must be refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{
    alive, children_of, kill, last_published, per_user, published, reference_run, simple_etl,
    sorted, wordcount, write_lines, write_orders, Lines, Running,
};

/// Runs `cmd` to completion, asserting success: what it printed on stderr.
fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.stderr(Stdio::piped()).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}: {}\n{said}", out.status);
    said
}

/// The rows of the end-of-run summary in `said`: each stage's name, records in and out.
fn summary_rows(said: &str) -> Vec<(String, u64, u64)> {
    let mut rows = Vec::new();
    let mut lines = said.lines().skip_while(|l| !l.starts_with("stage "));
    assert!(lines.next().is_some(), "no summary in:\n{said}");
    for line in lines {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() != 8 {
            break;
        }
        rows.push((
            cols[0].to_string(),
            cols[3].parse().unwrap(),
            cols[4].parse().unwrap(),
        ));
    }
    rows
}

/// All published output lines of a sink directory, as a multiset.
fn all_lines(dir: &Path) -> Vec<String> {
    let mut lines = published(dir);
    lines.sort_unstable();
    lines
}

#[test]
fn simple_etl_and_wordcount_give_the_same_output_at_1_2_and_3_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let orders = tmp.path().join("orders.jsonl");
    write_orders(&orders, 40_000);
    let text = tmp.path().join("lines.jsonl");
    write_lines(&text, 6_000);
    let mut reference: Option<(Vec<String>, Vec<String>)> = None;
    let mut etl_summary = None;
    for processes in [1, 2, 3] {
        for threads in [1, 2] {
            let case = format!("p{processes}-t{threads}");
            let set = |cmd: &mut Command| {
                cmd.arg("--set")
                    .arg(format!("runtime.processes={processes}"))
                    .arg("--set")
                    .arg(format!("runtime.threads={threads}"));
            };
            let etl_out = tmp.path().join(format!("etl-{case}"));
            let mut etl = simple_etl(
                "etl",
                &orders,
                &etl_out,
                &tmp.path().join(format!("etl-chk-{case}")),
            );
            set(&mut etl);
            // The stages' record counts of the end-of-run summary (with processes: the
            // workers' meters, summed by the coordinator) are the same in every case.
            let rows = summary_rows(&run(etl, &format!("simple_etl {case}")));
            assert_eq!(rows.len(), 6, "{rows:?}");
            assert!(rows.iter().all(|r| r.1 + r.2 > 0), "{case}: {rows:?}");
            match &etl_summary {
                None => etl_summary = Some(rows),
                Some(first) => assert_eq!(&rows, first, "simple_etl {case}: summary"),
            }
            let wc_out = tmp.path().join(format!("wc-{case}"));
            let mut wc = wordcount(
                "wc",
                &text,
                &wc_out,
                &tmp.path().join(format!("wc-chk-{case}")),
            );
            set(&mut wc);
            run(wc, &format!("wordcount {case}"));
            let etl_lines = published(&etl_out);
            let wc_lines = all_lines(&wc_out);
            match &reference {
                None => {
                    assert!(
                        etl_lines.len() > 30_000,
                        "{case}: {} lines",
                        etl_lines.len()
                    );
                    assert!(wc_lines.len() > 2_000, "{case}: {} words", wc_lines.len());
                    reference = Some((etl_lines, wc_lines));
                }
                Some((etl_ref, wc_ref)) => {
                    assert_eq!(sorted(&etl_lines), sorted(etl_ref), "simple_etl {case}");
                    assert_eq!(
                        per_user(&etl_lines),
                        per_user(etl_ref),
                        "simple_etl {case}: each user's totals in order"
                    );
                    assert_eq!(&wc_lines, wc_ref, "wordcount {case}");
                }
            }
        }
    }
}

/// The worker processes of coordinator `pid`.
fn workers_of(pid: u32) -> Vec<u32> {
    children_of(pid)
}

#[test]
fn a_worker_killed_again_and_again_is_recovered_from_by_the_job_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, reference) = reference_run(tmp.path(), 200_000);
    let out = tmp.path().join("out");
    let mut cmd = simple_etl("killed", &input, &out, &tmp.path().join("chk"));
    cmd.args([
        "--set",
        "runtime.processes=2",
        "--set",
        "runtime.threads=1",
        "--set",
        "stages.totals.parallelism=2",
        "--set",
        "job.restart={attempts: 1000, backoff_ms: 0}",
    ])
    .stderr(Stdio::piped());
    let mut job = Running(cmd.spawn().unwrap());
    let log = Lines::collect(job.0.stderr.take().unwrap(), "coordinator");
    let coordinator = job.0.id();
    let mut seed: u64 = 0x600d;
    let mut kills = 0;
    let mut killed: Vec<u32> = Vec::new();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = job.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the job did not finish in 300 s; {kills} kills"
        );
        // A worker not killed yet, once both are up: a kill lands while the job runs, not
        // while it is replacing the worker killed before.
        let workers: Vec<u32> = workers_of(coordinator)
            .into_iter()
            .filter(|p| !killed.contains(p) && alive(*p))
            .collect();
        if kills < 12 && workers.len() == 2 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Every other kill waits for a checkpoint published after the previous one, so that
            // the job progresses however slow the machine; the others land at any moment.
            if kills % 2 == 1 {
                let published_before = last_published(&out);
                let wait = Instant::now();
                while last_published(&out) == published_before
                    && job.0.try_wait().unwrap().is_none()
                {
                    assert!(wait.elapsed() < Duration::from_secs(120), "no progress");
                    // Polls the output directory.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let delay = Duration::from_millis(20 + (seed >> 33) % 150);
            std::thread::sleep(delay); // the random moment of the kill, not a wait for a condition
            let victim = workers[(seed >> 20) as usize % workers.len()];
            if job.0.try_wait().unwrap().is_none() {
                kill(victim);
                killed.push(victim);
                kills += 1;
            }
            continue;
        }
        // Polls the job and its workers.
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "the job failed: {status}\n{}", log.all());
    assert!(
        kills >= 10,
        "only {kills} kills before the job finished: make the input larger"
    );
    let restarts = log
        .all()
        .matches("restarting from the last complete")
        .count();
    assert!(restarts >= 10, "{restarts} restarts for {kills} kills");
    let got = published(&out);
    assert_eq!(sorted(&got), sorted(&reference), "output as a multiset");
    assert_eq!(
        per_user(&got),
        per_user(&reference),
        "each user's totals in publication order"
    );
}

#[test]
fn a_killed_coordinator_takes_its_workers_along_and_restore_latest_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, reference) = reference_run(tmp.path(), 150_000);
    let (out, chk) = (tmp.path().join("out"), tmp.path().join("chk"));
    let with_processes = |cmd: &mut Command| {
        cmd.args(["--set", "runtime.processes=2", "--set", "runtime.threads=1"]);
    };
    let mut cmd = simple_etl("coordinator", &input, &out, &chk);
    with_processes(&mut cmd);
    let mut job = Running(cmd.stderr(Stdio::null()).spawn().unwrap());
    let coordinator = job.0.id();
    let started = Instant::now();
    while last_published(&out) == 0 {
        assert!(
            job.0.try_wait().unwrap().is_none(),
            "finished before a checkpoint"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        // Polls the output directory.
        std::thread::sleep(Duration::from_millis(5));
    }
    let workers = workers_of(coordinator);
    assert_eq!(workers.len(), 2, "workers {workers:?}");
    kill(coordinator);
    let _ = job.0.wait();
    let killed = Instant::now();
    while workers.iter().any(|&w| alive(w)) {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "workers {workers:?} outlived their coordinator by 5 s"
        );
        // Polls the worker processes.
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut restore = simple_etl("coordinator", &input, &out, &chk);
    with_processes(&mut restore);
    restore.args(["--restore", "latest"]);
    run(restore, "--restore latest");
    let got = published(&out);
    assert_eq!(sorted(&got), sorted(&reference), "output as a multiset");
    assert_eq!(
        per_user(&got),
        per_user(&reference),
        "each user's totals in order"
    );
}

/// A 32-byte job secret as hex.
const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[test]
fn workers_by_hand_and_the_peers_they_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, reference) = reference_run(tmp.path(), 60_000);
    let out = tmp.path().join("out");
    let chk = tmp.path().join("chk");
    let mut cmd = simple_etl("byhand", &input, &out, &chk);
    cmd.args(["--coordinator", "--listen", "127.0.0.1:0", "--workers", "2"])
        .env("SOLSTICE_SECRET", SECRET)
        .stderr(Stdio::piped());
    let mut coordinator = Running(cmd.spawn().unwrap());
    let log = Lines::collect(coordinator.0.stderr.take().unwrap(), "coordinator");
    let line = log.wait_for("waiting for 2 worker(s)", Duration::from_secs(60));
    let addr = line
        .split("listen=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in `{line}`"))
        .to_string();
    let worker = |secret: &str, exe: &Path| {
        let cmd = simple_etl("byhand", &input, &out, &chk);
        let mut w = Command::new(exe);
        w.current_dir(common::root())
            .args(cmd.get_args())
            .args(["--worker", "--join", &addr])
            .env("SOLSTICE_SECRET", secret)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        w
    };
    let exe = Path::new(env!("CARGO_BIN_EXE_simple_etl"));

    // A worker with another secret is refused; the coordinator logs its address.
    let wrong = worker(&SECRET.replace("00", "11"), exe).output().unwrap();
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        said.contains("handshake"),
        "the refused worker says: {said}"
    );
    log.wait_for("refused a connection", Duration::from_secs(10));

    // A worker of another build (the same program with one byte more) is refused by name.
    let other = tmp.path().join("simple_etl-other");
    let mut bytes = std::fs::read(exe).unwrap();
    bytes.push(0);
    std::fs::write(&other, bytes).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let foreign = worker(SECRET, &other).output().unwrap();
    assert!(!foreign.status.success());
    let said = String::from_utf8_lossy(&foreign.stderr);
    assert!(
        said.contains("build"),
        "the worker of another build says: {said}"
    );

    // A worker of the same build with another config (one key set otherwise) is refused too,
    // and says that the config differs.
    let mut differing = worker(SECRET, exe);
    differing.args(["--set", "job.batch_size=999"]);
    let differing = differing.output().unwrap();
    assert!(!differing.status.success());
    let said = String::from_utf8_lossy(&differing.stderr);
    assert!(
        said.contains("config hash differs"),
        "the worker with another config says: {said}"
    );

    // Garbage on the coordinator's port closes that connection only.
    {
        use std::io::Write;
        let mut garbage = std::net::TcpStream::connect(&addr).unwrap();
        let _ = garbage.write_all(&[0xde; 4096]);
    }
    log.wait_for("not a Solstice transport peer", Duration::from_secs(10));

    // Two good workers: the job runs; garbage on a worker's data port changes nothing.
    let mut w0 = Running(worker(SECRET, exe).spawn().unwrap());
    let l0 = Lines::collect(w0.0.stderr.take().unwrap(), "worker a");
    let mut w1 = Running(worker(SECRET, exe).spawn().unwrap());
    let _l1 = Lines::collect(w1.0.stderr.take().unwrap(), "worker b");
    let joined = l0.wait_for("data=", Duration::from_secs(60));
    let data = joined
        .split("data=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    {
        use std::io::Write;
        if let Ok(mut garbage) = std::net::TcpStream::connect(&data) {
            let _ = garbage.write_all(b"GET / HTTP/1.1\r\n\r\n");
        }
    }
    let status = coordinator.0.wait().unwrap();
    assert!(status.success(), "coordinator: {status}\n{}", log.all());
    for w in [&mut w0, &mut w1] {
        let status = w.0.wait().unwrap();
        assert!(status.success(), "worker: {status}");
    }
    let got = published(&out);
    assert_eq!(sorted(&got), sorted(&reference), "output as a multiset");
    assert_eq!(
        per_user(&got),
        per_user(&reference),
        "each user's totals in order"
    );
}

#[test]
fn a_coordinator_gives_up_on_workers_that_never_join_after_join_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("orders.jsonl");
    common::write_orders(&input, 10);
    let mut cmd = simple_etl(
        "nobody-joins",
        &input,
        &tmp.path().join("out"),
        &tmp.path().join("chk"),
    );
    cmd.args(["--coordinator", "--listen", "127.0.0.1:0", "--workers", "2"])
        .args(["--set", "runtime.join_timeout_secs=1"])
        .args(["--set", "job.restart={attempts: 0}"])
        .env("SOLSTICE_SECRET", SECRET);
    let out = cmd.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("2 of 2 worker(s) did not join the coordinator"),
        "{said}"
    );
}
