//! W3 on Ray workers against W3 on `runtime.processes` on the same machine, in one run.
//!
//! Both run the same job (the W3 pipeline, a checkpoint every tenth of the input) as a workflow
//! binary would: this executable's `job w3 --config FILE`, once with `runtime.processes: N` and
//! once with `runtime.ray: { workers: N, cpus_per_worker: 1 }` and `--ray-address`. A job's time
//! is what its coordinator reports, less the time until its workers had joined (spawning them,
//! or on Ray: placing and starting actors), so that the comparison is of the running job. On
//! Ray, the times from submission to the first published output and to the client's exit are
//! measured too. Both runs' outputs must have the same digest.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::data::orders_path;
use crate::digest::digest_part_files;
use crate::error::{BenchError, Result};
use crate::Workload;

/// The smallest ratio of Ray's job throughput to `runtime.processes`' that passes.
pub const TARGET: f64 = 0.9;

/// What [`compare`] is given.
#[derive(Clone, Debug)]
pub struct RayBench {
    /// The cluster (`ray://HOST:10001` or `http://HOST:8265`).
    pub address: String,
    /// Orders of the input.
    pub records: u64,
    /// Workers of each run (processes, or Ray actors of one CPU).
    pub workers: usize,
    /// Runs of each configuration; the fastest counts.
    pub repeat: usize,
    /// The directory of the input (generated when missing) and of the runs' output.
    pub data: PathBuf,
    /// Extra config overrides of both runs.
    pub overrides: Vec<String>,
}

/// One run of the job.
#[derive(Clone, Copy, Debug)]
pub struct JobRun {
    /// The coordinator's time of the job less its `startup`.
    pub job: Duration,
    /// Until the job's workers had all joined.
    pub startup: Duration,
    /// From starting the command to the first published output file.
    pub first_output: Option<Duration>,
    /// From starting the command to its exit.
    pub total: Duration,
}

/// The figures of [`compare`]: the fastest run of each configuration.
#[derive(Clone, Copy, Debug)]
pub struct RayFigures {
    /// On `runtime.processes`.
    pub processes: JobRun,
    /// On Ray.
    pub ray: JobRun,
}

impl RayFigures {
    /// Ray's job throughput over that of `runtime.processes`.
    pub fn ratio(&self) -> f64 {
        self.processes.job.as_secs_f64() / self.ray.job.as_secs_f64()
    }
}

/// Runs the comparison with `exe` (this benchmark's executable).
pub fn compare(exe: &Path, bench: &RayBench) -> Result<RayFigures> {
    if bench.repeat == 0 || bench.workers == 0 {
        return Err(BenchError::Other(
            "--repeat and --workers must be at least 1".into(),
        ));
    }
    Workload::W3.prepare(&bench.data, bench.records)?;
    let mut best: Option<RayFigures> = None;
    let mut expected = None;
    for i in 0..bench.repeat {
        let processes = run_job(exe, bench, i, false, &mut expected)?;
        let ray = run_job(exe, bench, i, true, &mut expected)?;
        best = Some(match best {
            None => RayFigures { processes, ray },
            Some(b) => RayFigures {
                processes: faster(b.processes, processes),
                ray: faster(b.ray, ray),
            },
        });
    }
    best.ok_or_else(|| BenchError::Other("no run".into()))
}

fn faster(a: JobRun, b: JobRun) -> JobRun {
    if b.job < a.job {
        b
    } else {
        a
    }
}

/// Runs the job once, on Ray or on processes, and checks its output's digest against the
/// first run's.
fn run_job(
    exe: &Path,
    bench: &RayBench,
    run: usize,
    on_ray: bool,
    expected: &mut Option<u64>,
) -> Result<JobRun> {
    let kind = if on_ray { "ray" } else { "processes" };
    let work = bench.data.join(format!("ray-bench-{kind}-{run}"));
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| BenchError::io(&work, e))?;
    }
    let out = work.join("out");
    std::fs::create_dir_all(&out).map_err(|e| BenchError::io(&out, e))?;
    let quote =
        |p: &Path| serde_json::to_string(&p.to_string_lossy()).map_err(|e| BenchError::json(p, e));
    let n = bench.workers;
    let runtime = match on_ray {
        true => format!("{{ threads: 1, ray: {{ workers: {n}, cpus_per_worker: 1 }} }}"),
        false => format!("{{ threads: 1, processes: {n} }}"),
    };
    let chk = work.join("chk");
    let yaml = format!(
        "job:\n  parallelism: {n}\n  checkpoint: {{ backend: {}, interval_records: {} }}\n\
         runtime: {runtime}\nsources:\n  orders: {{ path: {} }}\nsinks:\n  sales: {{ path: {} }}\n",
        quote(Path::new(&format!("file://{}", chk.display())))?,
        (bench.records / 10).max(1),
        quote(&orders_path(&bench.data, bench.records))?,
        quote(&out)?,
    );
    let config = work.join("job.yaml");
    std::fs::write(&config, yaml).map_err(|e| BenchError::io(&config, e))?;
    let id = format!("ray-bench-{kind}-{run}");
    let mut cmd = Command::new(exe);
    cmd.args(["job", "w3", "--config"])
        .arg(&config)
        .args(["--job-id", &id]);
    for set in &bench.overrides {
        cmd.args(["--set", set]);
    }
    if on_ray {
        cmd.args(["--ray-address", &bench.address]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| BenchError::Other(format!("cannot start {}: {e}", exe.display())))?;
    let log = Arc::new(Mutex::new(String::new()));
    let readers = [
        collect(child.stdout.take(), &log),
        collect(child.stderr.take(), &log),
    ];
    let mut first_output = None;
    let status = loop {
        if first_output.is_none() && has_published(&out) {
            first_output = Some(started.elapsed());
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(BenchError::Other(format!("waiting for the job: {e}"))),
        }
        // Polls for the first published part (the sink publishes at checkpoints) at a
        // resolution of 10 ms.
        std::thread::sleep(Duration::from_millis(10));
    };
    let total = started.elapsed();
    for reader in readers.into_iter().flatten() {
        let _ = reader.join();
    }
    if first_output.is_none() && has_published(&out) {
        first_output = Some(total);
    }
    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
    if !status.success() {
        return Err(BenchError::Other(format!(
            "the job on {kind} failed ({status}):\n{log}"
        )));
    }
    let (duration, startup) = finished_line(&log, &id).ok_or_else(|| {
        BenchError::Other(format!(
            "the job on {kind} did not report its time (`job `{id}` finished in ...`):\n{log}"
        ))
    })?;
    let digest = digest_part_files(&out)?.value();
    match expected {
        None => *expected = Some(digest),
        Some(d) if *d == digest => {}
        Some(_) => {
            return Err(BenchError::Other(format!(
                "the output of the job on {kind} (run {run}) differs from the first run's"
            )))
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(JobRun {
        job: duration.saturating_sub(startup),
        startup,
        first_output,
        total,
    })
}

/// Appends each line `stream` gives to `log` (on a thread of its own).
fn collect(
    stream: Option<impl Read + Send + 'static>,
    log: &Arc<Mutex<String>>,
) -> Option<std::thread::JoinHandle<()>> {
    let stream = stream?;
    let log = Arc::clone(log);
    Some(std::thread::spawn(move || {
        for line in BufReader::new(stream)
            .lines()
            .map_while(std::io::Result::ok)
        {
            if let Ok(mut log) = log.lock() {
                log.push_str(&line);
                log.push('\n');
            }
        }
    }))
}

/// True when `out` holds a published output file.
fn has_published(out: &Path) -> bool {
    std::fs::read_dir(out).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("part-"))
    })
}

/// The duration and startup of job `id` from the CLI's last line about it: ``job `ID` finished
/// in 1.234s (5 tasks; the first 0.100s until its workers had joined)``.
pub fn finished_line(log: &str, id: &str) -> Option<(Duration, Duration)> {
    let head = format!("job `{id}` finished in ");
    let line = log.lines().rev().find_map(|l| {
        let at = l.find(&head)?;
        Some(&l[at + head.len()..])
    })?;
    let seconds = |text: &str| -> Option<Duration> {
        let number = text.split('s').next()?;
        Duration::try_from_secs_f64(number.trim().parse().ok()?).ok()
    };
    let duration = seconds(line)?;
    let startup = match line.find("; the first ") {
        Some(at) => seconds(&line[at + "; the first ".len()..])?,
        None => Duration::ZERO,
    };
    Some((duration, startup))
}

/// The report of `figures` as printed by `solstice-bench ray`.
pub fn report(bench: &RayBench, figures: &RayFigures) -> String {
    let rate = |run: &JobRun| bench.records as f64 / run.job.as_secs_f64() / 1e6;
    let n = bench.workers;
    let mut text = format!(
        "w3 etl, {} orders, fastest of {} run(s) each:\n",
        bench.records, bench.repeat
    );
    for (what, run) in [
        (format!("runtime.processes={n}"), &figures.processes),
        (format!("{n} Ray workers"), &figures.ray),
    ] {
        text.push_str(&format!(
            "  {what:<22} job {:>7.3} s  {:>6.2} M orders/s  (workers joined after {:.3} s)\n",
            run.job.as_secs_f64(),
            rate(run),
            run.startup.as_secs_f64()
        ));
    }
    let first = figures
        .ray
        .first_output
        .map_or("none".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    let ratio = figures.ratio();
    text.push_str(&format!(
        "  on Ray, from submission: first output published {first}, end {:.2} s\n\
         ratio Ray / processes: {ratio:.2}x (target >= {TARGET}x): {}\n",
        figures.ray.total.as_secs_f64(),
        if ratio >= TARGET { "pass" } else { "FAIL" }
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finished_line_gives_duration_and_startup() {
        let log = "x\njob `a` finished in 2.500s (4 tasks; the first 0.250s until its workers \
                   had joined)\n";
        assert_eq!(
            finished_line(log, "a"),
            Some((Duration::from_millis(2500), Duration::from_millis(250)))
        );
        let log = "[coordinator] job `b` finished in 1.000s (3 tasks)";
        assert_eq!(
            finished_line(log, "b"),
            Some((Duration::from_secs(1), Duration::ZERO))
        );
        assert_eq!(finished_line(log, "a"), None);
    }
}
