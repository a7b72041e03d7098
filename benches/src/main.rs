//! `solstice-bench`: runs the workloads through Solstice and through hand-written Rust, each
//! measurement in a child process of its own (so that peak RSS is per run), checks that both give
//! the same checksum, and prints one comparison table with the targets.
//!
//! ```text
//! solstice-bench all|w1|w2|w3|w4|w5 [--threads 1,2] [--scale tiny|small|full] [--records N]
//!                                 [--repeat R] [--data DIR] [--set KEY=VALUE]...
//! solstice-bench rss-w3 [same options]
//! solstice-bench metrics-cost [same options]
//! solstice-bench ray --ray-address ray://HEAD:10001 [--records N] [--workers 2] [--repeat R]
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use solstice::job::CheckpointStats;
use solstice_bench::runner::{measure, work_dir};
use solstice_bench::{Engine, Report, RunCtx, Scale, Workload};

#[derive(Parser)]
#[command(
    name = "solstice-bench",
    about = "Solstice against hand-written Rust on the same workloads"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs every workload.
    All(SuiteArgs),
    /// W1 stateless: range -> map -> filter -> sum.
    W1(SuiteArgs),
    /// W2 keyed: range -> key_by -> sum per key.
    W2(SuiteArgs),
    /// W3 etl: JSON-lines orders -> filter -> project -> JSON-lines files.
    W3(SuiteArgs),
    /// W4 wordcount: JSON-lines text -> split -> count per word.
    W4(SuiteArgs),
    /// W5 parquet: the W3 ETL with Parquet in and out.
    W5(SuiteArgs),
    /// Peak RSS of W3 at 4x the records against 1x (target: < 1.2x).
    RssW3(SuiteArgs),
    /// W2 and W3 with a checkpoint every second vs none, and restart-to-first-output time.
    Checkpoints(SuiteArgs),
    /// W1 and W2 with the stages' metrics on against off (`runtime.metrics`), alternating in
    /// one run (target: at most 2% slower).
    MetricsCost(SuiteArgs),
    /// Measures one run in this process and prints it as one JSON line (used by the others).
    #[command(hide = true)]
    RunOne(RunOneArgs),
    /// W3 on Ray workers against `runtime.processes` on the same machine (needs a Ray
    /// cluster, and a Python with Ray in `SOLSTICE_RAY_PYTHON` or as `python3`).
    Ray(RayArgs),
    /// Runs a workload's job as a workflow binary runs its own, from the same options (the
    /// worker processes of a measurement, and the jobs of `ray`, start this).
    #[command(hide = true)]
    Job(JobArgs),
}

#[derive(Args)]
struct JobArgs {
    workload: Workload,
    #[command(flatten)]
    run: solstice::cli::RunArgs,
}

#[derive(Args)]
struct RayArgs {
    /// The cluster: `ray://HEAD:10001` or `http://HEAD:8265`.
    #[arg(long)]
    ray_address: String,
    /// Orders of the input.
    #[arg(long, default_value_t = 5_000_000)]
    records: u64,
    /// Workers of each run: processes, or Ray actors of one CPU each.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Runs of each configuration; the fastest counts.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Keeps generated input in DIR (reused when present) instead of a temporary directory.
    /// Every node of the cluster must read it at the same path.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Solstice config override KEY=VALUE of both runs; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args, Clone)]
struct SuiteArgs {
    /// Thread counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Input sizes: tiny (1/1000), small (1/10) or full.
    #[arg(long, default_value = "full")]
    scale: Scale,
    /// Input size of every selected workload, overriding --scale.
    #[arg(long)]
    records: Option<u64>,
    /// Runs per measurement (in the same child process); the fastest counts.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Keeps generated input in DIR (reused when present) instead of a temporary directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Solstice config override KEY=VALUE (e.g. job.batch_size=4096); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args)]
struct RunOneArgs {
    workload: Workload,
    #[arg(long)]
    engine: Engine,
    #[arg(long)]
    threads: usize,
    #[arg(long)]
    records: u64,
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    #[arg(long = "set")]
    set: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::All(args) => suite(&Workload::ALL, &args),
        Cmd::W1(args) => suite(&[Workload::W1], &args),
        Cmd::W2(args) => suite(&[Workload::W2], &args),
        Cmd::W3(args) => suite(&[Workload::W3], &args),
        Cmd::W4(args) => suite(&[Workload::W4], &args),
        Cmd::W5(args) => suite(&[Workload::W5], &args),
        Cmd::RssW3(args) => rss_w3(&args),
        Cmd::Checkpoints(args) => checkpoints(&args),
        Cmd::MetricsCost(args) => metrics_cost(&args),
        Cmd::RunOne(args) => run_one(args),
        Cmd::Ray(args) => on_ray(&args),
        Cmd::Job(args) => solstice_bench::workloads::run_job(args.workload, &args.run)
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| format!("job of {}: {e}", args.workload.name())),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("solstice-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `ray`: the comparison and its report.
fn on_ray(args: &RayArgs) -> Result<ExitCode, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let data = DataDir::new(args.data.as_deref())?;
    let bench = solstice_bench::ray::RayBench {
        address: args.ray_address.clone(),
        records: args.records,
        workers: args.workers,
        repeat: args.repeat,
        data: data.path.clone(),
        overrides: args.set.clone(),
    };
    let figures = solstice_bench::ray::compare(&exe, &bench).map_err(|e| e.to_string())?;
    print!("{}", solstice_bench::ray::report(&bench, &figures));
    Ok(ExitCode::SUCCESS)
}

/// The child side: one measurement, one JSON line on stdout.
fn run_one(args: RunOneArgs) -> Result<ExitCode, String> {
    let ctx = RunCtx {
        records: args.records,
        threads: args.threads,
        work: work_dir(&args.data, args.workload, args.engine, args.threads),
        data: args.data,
        overrides: args.set,
        processes: false,
    };
    let report = measure(args.workload, args.engine, &ctx, args.repeat)
        .map_err(|e| format!("{} on {}: {e}", args.workload.name(), args.engine.name()))?;
    // The output was only needed for the checksum.
    let _ = std::fs::remove_dir_all(&ctx.work);
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(ExitCode::SUCCESS)
}

/// The input directory: the one given, or a temporary one removed on exit.
struct DataDir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl DataDir {
    fn new(given: Option<&Path>) -> Result<DataDir, String> {
        match given {
            Some(p) => {
                std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
                Ok(DataDir {
                    path: p.to_path_buf(),
                    _temp: None,
                })
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("solstice-bench-")
                    .tempdir()
                    .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
                Ok(DataDir {
                    path: temp.path().to_path_buf(),
                    _temp: Some(temp),
                })
            }
        }
    }
}

/// Generates the input of `workload` (not timed as part of any run).
fn prepare(workload: Workload, dir: &Path, records: u64) -> Result<(), String> {
    let started = Instant::now();
    workload
        .prepare(dir, records)
        .map_err(|e| format!("generating {} input: {e}", workload.name()))?;
    eprintln!(
        "input of {}: {records} {} ({:.1} s)",
        workload.name(),
        workload.unit(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs one measurement in a child process (this executable, `run-one`).
fn child(
    workload: Workload,
    engine: Engine,
    threads: usize,
    records: u64,
    args: &SuiteArgs,
    data: &Path,
) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("run-one")
        .arg(workload.name())
        .args(["--engine", engine.name()])
        .args(["--threads", &threads.to_string()])
        .args(["--records", &records.to_string()])
        .args(["--repeat", &args.repeat.to_string()])
        .arg("--data")
        .arg(data);
    for s in &args.set {
        cmd.args(["--set", s]);
    }
    let what = format!(
        "{} on {} with {threads} thread(s)",
        workload.name(),
        engine.name()
    );
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{what}: cannot start the child process: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what}: the child process failed ({})",
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| format!("{what}: the child process printed no report"))?;
    let report: Report =
        serde_json::from_str(line).map_err(|e| format!("{what}: bad report `{line}`: {e}"))?;
    let crossed = match report.crossed_bytes {
        0 => String::new(),
        n => format!(", {:.0} MB sent between processes", n as f64 / 1e6),
    };
    eprintln!(
        "  {:<4} {:<8} t{threads}: {:>8.3} s  {:>7.1} MB  checksum {:#018x}{crossed}",
        workload.name(),
        engine.name(),
        report.seconds,
        mb(report.peak_rss_kb),
        report.checksum
    );
    Ok(report)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// `1.23 G`, `45.6 M`, `789 k`.
fn rate(per_second: f64) -> String {
    if per_second >= 1e9 {
        format!("{:.2} G", per_second / 1e9)
    } else if per_second >= 1e6 {
        format!("{:.1} M", per_second / 1e6)
    } else {
        format!("{:.0} k", per_second / 1e3)
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// The Solstice/hand-written throughput ratio a workload must reach at `threads` threads.
fn ratio_target(workload: Workload, threads: usize) -> Option<f64> {
    match workload {
        Workload::W1 if threads == 1 => Some(0.8),
        Workload::W1 | Workload::W5 => None,
        _ => Some(0.5),
    }
}

/// Machine context printed above the results: measurements are only comparable within one run.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!("{cores} cores, load average {load}")
}

struct Pair {
    workload: Workload,
    threads: usize,
    hand: Report,
    solstice: Report,
    /// W2 and W3 at 2 threads and more: on that many processes of one thread each.
    processes: Option<Report>,
}

/// The throughput on `threads` processes of one thread against one process of `threads`
/// threads that a workload must reach (W2 crosses processes with half its records: keyed).
fn processes_target(workload: Workload) -> Option<f64> {
    match workload {
        Workload::W2 => Some(0.6),
        Workload::W3 => Some(0.9),
        _ => None,
    }
}

impl Pair {
    fn ratio(&self) -> f64 {
        self.solstice.throughput() / self.hand.throughput()
    }
}

fn suite(workloads: &[Workload], args: &SuiteArgs) -> Result<ExitCode, String> {
    if args.threads.contains(&0) {
        return Err("--threads: thread counts must be at least 1".into());
    }
    let data = DataDir::new(args.data.as_deref())?;
    let records = |w: Workload| args.records.unwrap_or_else(|| args.scale.records(w));
    eprintln!(
        "solstice-bench: scale {}, threads {:?}, repeat {}, {}; input in {}",
        args.scale.name(),
        args.threads,
        args.repeat,
        machine(),
        data.path.display()
    );
    for &w in workloads {
        prepare(w, &data.path, records(w))?;
    }
    let mut pairs = Vec::new();
    for &w in workloads {
        for &t in &args.threads {
            let hand = child(w, Engine::Hand, t, records(w), args, &data.path)?;
            let solstice = child(w, Engine::Solstice, t, records(w), args, &data.path)?;
            if hand.checksum != solstice.checksum {
                return Err(format!(
                    "CHECKSUM MISMATCH on {} with {t} thread(s): hand-written {:#018x}, \
                     Solstice {:#018x}; the two implementations disagree, so the timings mean \
                     nothing (input kept in {})",
                    w.title(),
                    hand.checksum,
                    solstice.checksum,
                    data.path.display()
                ));
            }
            let processes = match processes_target(w) {
                Some(_) if t >= 2 => {
                    let p = child(w, Engine::Processes, t, records(w), args, &data.path)?;
                    if p.checksum != hand.checksum {
                        return Err(format!(
                            "CHECKSUM MISMATCH on {} on {t} processes: hand-written {:#018x}, \
                             Solstice {:#018x} (input kept in {})",
                            w.title(),
                            hand.checksum,
                            p.checksum,
                            data.path.display()
                        ));
                    }
                    Some(p)
                }
                _ => None,
            };
            pairs.push(Pair {
                workload: w,
                threads: t,
                hand,
                solstice,
                processes,
            });
        }
    }
    println!("{}", table(&pairs, args));
    Ok(ExitCode::SUCCESS)
}

fn table(pairs: &[Pair], args: &SuiteArgs) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nSolstice vs hand-written Rust (scale {}, best of {}, {})",
        args.scale.name(),
        args.repeat.max(1),
        machine()
    );
    if !args.set.is_empty() {
        let _ = writeln!(s, "Solstice overrides: {}", args.set.join(" "));
    }
    let _ = writeln!(
        s,
        "\n| workload     | threads | engine       | records/s | ratio | peak RSS (MB) | checksum | target          |"
    );
    let _ = writeln!(
        s,
        "|--------------|--------:|--------------|----------:|------:|--------------:|----------|-----------------|"
    );
    for p in pairs {
        for (engine, r) in [("hand-written", &p.hand), ("solstice", &p.solstice)] {
            let (ratio, target) = if engine == "solstice" {
                let ratio = p.ratio();
                let target = ratio_target(p.workload, p.threads)
                    .map(|t| format!(">= {t:.2}x {}", verdict(ratio >= t)))
                    .unwrap_or_default();
                (format!("{ratio:.2}x"), target)
            } else {
                ("1.00x".to_string(), String::new())
            };
            let _ = writeln!(
                s,
                "| {:<12} | {:>7} | {:<12} | {:>9} | {:>5} | {:>13.1} | {:<8} | {:<15} |",
                p.workload.title(),
                p.threads,
                engine,
                rate(r.throughput()),
                ratio,
                mb(r.peak_rss_kb),
                "OK",
                target
            );
        }
        if let Some(r) = &p.processes {
            let ratio = r.throughput() / p.solstice.throughput();
            let target = processes_target(p.workload)
                .map(|t| format!(">= {t:.2}x {}", verdict(ratio >= t)))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "| {:<12} | {:>7} | {:<12} | {:>9} | {:>5} | {:>13.1} | {:<8} | {:<15} |",
                p.workload.title(),
                format!("{}x1", p.threads),
                "processes",
                rate(r.throughput()),
                format!("{ratio:.2}x"),
                mb(r.peak_rss_kb),
                "OK",
                target
            );
        }
    }
    let _ = writeln!(s, "\nTargets:");
    for p in pairs {
        if let Some(t) = ratio_target(p.workload, p.threads) {
            let ratio = p.ratio();
            let _ = writeln!(
                s,
                "  {} {} thread(s): Solstice/hand-written {ratio:.2}x, want >= {t:.2}x  {}",
                p.workload.title(),
                p.threads,
                verdict(ratio >= t)
            );
        }
    }
    for p in pairs {
        if let (Some(r), Some(t)) = (&p.processes, processes_target(p.workload)) {
            let ratio = r.throughput() / p.solstice.throughput();
            let _ = writeln!(
                s,
                "  {} on {} processes x 1 thread / 1 process x {} threads: {ratio:.2}x, want \
                 >= {t:.2}x  {}",
                p.workload.title(),
                p.threads,
                p.threads,
                verdict(ratio >= t)
            );
        }
    }
    let w3 = |t: usize| {
        pairs
            .iter()
            .find(|p| p.workload == Workload::W3 && p.threads == t)
    };
    if let (Some(one), Some(two)) = (w3(1), w3(2)) {
        let speedup = two.solstice.throughput() / one.solstice.throughput();
        let hand = two.hand.throughput() / one.hand.throughput();
        let _ = writeln!(
            s,
            "  w3 etl scaling: Solstice 2 threads / 1 thread {speedup:.2}x, want >= 1.80x  {} \
             (hand-written: {hand:.2}x)",
            verdict(speedup >= 1.8)
        );
    }
    if pairs.iter().any(|p| p.workload == Workload::W3) {
        let _ = writeln!(
            s,
            "  w3 etl peak RSS at 4x records: see `solstice-bench rss-w3` (want < 1.20x)"
        );
    }
    s
}

/// Peak RSS of W3 at its size and at 4x its size, per thread count and engine.
fn rss_w3(args: &SuiteArgs) -> Result<ExitCode, String> {
    let w = Workload::W3;
    let base = args.records.unwrap_or_else(|| args.scale.records(w));
    let big = base * 4;
    let data = DataDir::new(args.data.as_deref())?;
    eprintln!(
        "solstice-bench rss-w3: {base} vs {big} orders, threads {:?}, {}; input in {}",
        args.threads,
        machine(),
        data.path.display()
    );
    prepare(w, &data.path, base)?;
    prepare(w, &data.path, big)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nw3 etl peak RSS, {base} vs {big} orders ({})\n",
        machine()
    );
    let _ = writeln!(
        s,
        "| threads | engine       | {:>17} | {:>17} | ratio | target        |",
        format!("RSS at {} (MB)", short(base)),
        format!("RSS at {} (MB)", short(big))
    );
    let _ = writeln!(
        s,
        "|--------:|--------------|------------------:|------------------:|------:|---------------|"
    );
    for &t in &args.threads {
        for engine in [Engine::Hand, Engine::Solstice] {
            let small = child(w, engine, t, base, args, &data.path)?;
            let large = child(w, engine, t, big, args, &data.path)?;
            let ratio = large.peak_rss_kb as f64 / small.peak_rss_kb.max(1) as f64;
            let target = if engine == Engine::Solstice {
                format!("< 1.20x {}", verdict(ratio < 1.2))
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "| {t:>7} | {:<12} | {:>17.1} | {:>17.1} | {ratio:>4.2}x | {target:<13} |",
                if engine == Engine::Hand {
                    "hand-written"
                } else {
                    "solstice"
                },
                mb(small.peak_rss_kb),
                mb(large.peak_rss_kb),
            );
        }
    }
    println!("{s}");
    Ok(ExitCode::SUCCESS)
}

/// `2M`, `800k`, `1500`.
fn short(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// The mean records between regular checkpoints (the first and the final one left out: they
/// count from the start, and to the end, of the input).
fn regular_spacing(checkpoints: &[CheckpointStats]) -> f64 {
    let regular: Vec<u64> = checkpoints
        .iter()
        .filter(|c| !c.alignment.is_zero())
        .skip(1)
        .map(|c| c.records)
        .collect();
    regular.iter().sum::<u64>() as f64 / regular.len().max(1) as f64
}

/// The cost of checkpoints: throughput of W2 and W3 with a checkpoint every second and with 40
/// asked for by `interval_records`, against none (target: < 5% loss); checkpoints per second,
/// duration (barrier alignment and writing), size, records between checkpoints against those
/// asked for; and restart-to-first-output with ~100 MB of state (target: < 2 s). In this
/// process, threads as given (the first of `--threads`).
fn checkpoints(args: &SuiteArgs) -> Result<ExitCode, String> {
    use solstice_bench::checkpoints as ck;
    let rate_text = rate;
    // The restart measurement injects a panic into a worker; the job reports it as its error.
    solstice::cli::quiet_stage_panics();
    let data = DataDir::new(args.data.as_deref())?;
    let threads = args.threads.first().copied().unwrap_or(2);
    let work = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    println!(
        "solstice-bench checkpoints: {threads} thread(s), {}\n",
        machine()
    );
    println!("| workload | checkpoints | records/s | loss | checkpoints taken | mean duration | mean size |");
    println!("|---|---|--:|--:|--:|--:|--:|");
    let mut timings = Vec::new();
    for w in [Workload::W2, Workload::W3] {
        // Long enough runs for several 1 s checkpoints: 200M records of W2, 8M orders of W3.
        let longer = if w == Workload::W2 { 10 } else { 4 };
        let records = args
            .records
            .unwrap_or_else(|| args.scale.records(w) * longer);
        prepare(w, &data.path, records)?;
        let ctx = RunCtx {
            records,
            threads,
            data: data.path.clone(),
            work: work.path().join(w.name()),
            overrides: args.set.clone(),
            processes: false,
        };
        let run = |dir: Option<&Path>, every: ck::Every| -> Result<ck::Measured, String> {
            let mut best: Option<ck::Measured> = None;
            for i in 0..args.repeat.max(1) {
                let chk = dir.map(|d| d.join(format!("{i}")));
                let m = match w {
                    Workload::W2 => ck::w2(&ctx, chk.as_deref(), every),
                    _ => ck::w3(&ctx, chk.as_deref(), every),
                }
                .map_err(|e| format!("{}: {e}", w.name()))?;
                if best.as_ref().is_none_or(|b| m.elapsed < b.elapsed) {
                    best = Some(m);
                }
            }
            best.ok_or_else(|| "no run".to_string())
        };
        let plain = run(None, ck::Every::Second)?;
        let speed = |m: &ck::Measured| records as f64 / m.elapsed.as_secs_f64();
        println!(
            "| {} | none | {} | | | | |",
            w.title(),
            rate_text(speed(&plain))
        );
        // A checkpoint every second, then 40 asked for over the run by `interval_records`.
        let asked = records / 40;
        for every in [ck::Every::Second, ck::Every::Records(asked)] {
            let dir = work.path().join(format!("chk-{}-{every:?}", w.name()));
            let with = run(Some(&dir), every)?;
            let loss = 1.0 - speed(&with) / speed(&plain);
            let c = &with.checkpoints;
            let n = c.len().max(1) as f64;
            let mean = |f: &dyn Fn(&CheckpointStats) -> f64| c.iter().map(f).sum::<f64>() / n;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let duration = mean(&|c| ms(c.duration));
            let alignment = mean(&|c| ms(c.alignment));
            let kib = mean(&|c| c.bytes as f64 / 1024.0);
            let label = match every {
                ck::Every::Second => "every 1 s".to_string(),
                ck::Every::Records(n) => format!("every {n} records"),
            };
            println!(
                "| {} | {label} | {} | {:.1}% {} | {} | {duration:.0} ms | {kib:.0} KiB |",
                w.title(),
                rate_text(speed(&with)),
                loss * 100.0,
                if loss < 0.05 { "PASS" } else { "MISS" },
                c.len()
            );
            timings.push(format!(
                "{} {label}: {:.1} checkpoints/s sustained; per checkpoint {duration:.1} ms, of \
                 which {alignment:.1} ms barrier alignment and {:.1} ms writing {kib:.0} KiB; \
                 {:.0} records between checkpoints (mean of the regular ones){}",
                w.title(),
                c.len() as f64 / with.elapsed.as_secs_f64(),
                duration - alignment,
                regular_spacing(c),
                match every {
                    ck::Every::Records(n) => format!(", {n} asked"),
                    ck::Every::Second => String::new(),
                }
            ));
        }
    }
    println!();
    for t in &timings {
        println!("{t}");
    }
    let keys = match args.scale {
        Scale::Tiny => 3_500,
        Scale::Small => 350_000,
        Scale::Full => 3_500_000,
    };
    let ctx = RunCtx {
        records: keys,
        threads,
        data: data.path.clone(),
        work: work.path().join("restart"),
        overrides: Vec::new(),
        processes: false,
    };
    let (bytes, first) = ck::restart_to_first_output(&ctx, keys, &work.path().join("chk-restart"))
        .map_err(|e| format!("restart: {e}"))?;
    println!(
        "\nrestart to first output: {:.2} s with a {:.1} MB checkpoint ({keys} keys) {}",
        first.as_secs_f64(),
        bytes as f64 / 1e6,
        if first < Duration::from_secs(2) {
            "PASS (< 2 s)"
        } else {
            "MISS (want < 2 s)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `metrics-cost`: each of W1 and W2 at each thread count, metered and not, in alternating
/// child processes (`--repeat` rounds, each child the best of 3 runs); the fastest of each.
fn metrics_cost(args: &SuiteArgs) -> Result<ExitCode, String> {
    let data = DataDir::new(args.data.as_deref())?;
    let mut off_args = args.clone();
    off_args.set.push("runtime.metrics=false".into());
    let mut on_args = args.clone();
    on_args.repeat = 3;
    off_args.repeat = 3;
    let mut rows = Vec::new();
    for w in [Workload::W1, Workload::W2] {
        let records = args.records.unwrap_or_else(|| args.scale.records(w));
        prepare(w, &data.path, records)?;
        for &threads in &args.threads {
            let (mut on, mut off) = (f64::MAX, f64::MAX);
            for _ in 0..args.repeat.max(1) {
                on = on.min(
                    child(w, Engine::Solstice, threads, records, &on_args, &data.path)?.seconds,
                );
                off = off.min(
                    child(w, Engine::Solstice, threads, records, &off_args, &data.path)?.seconds,
                );
            }
            let ratio = off / on;
            let pass = ratio >= 0.98;
            rows.push(format!(
                "| {} | {threads} | {}/s | {}/s | {ratio:.3}x | ≥ 0.98x {} |",
                w.title(),
                rate(records as f64 / off),
                rate(records as f64 / on),
                verdict(pass)
            ));
        }
    }
    println!("solstice-bench metrics-cost: {}\n", machine());
    println!("| workload | threads | metrics off | metrics on | on / off | target |");
    println!("|---|--:|--:|--:|--:|---|");
    for row in rows {
        println!("{row}");
    }
    Ok(ExitCode::SUCCESS)
}
