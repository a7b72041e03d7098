//! Naming and measuring runs: workloads, engines, scales, and the report of one measured run.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};
use crate::workloads::{w1, w2, w3, w4, w5};
pub use crate::workloads::{Outcome, RunCtx};

/// One of the five workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Stateless map/filter/sum over a range.
    W1,
    /// Keyed sum over a range.
    W2,
    /// JSON-lines ETL.
    W3,
    /// Word count over JSON-lines text.
    W4,
    /// The W3 ETL with Parquet in and out.
    W5,
}

impl Workload {
    /// Every workload, in order.
    pub const ALL: [Workload; 5] = [
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
    ];

    /// The short name (`w1`..`w5`).
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
            Workload::W4 => "w4",
            Workload::W5 => "w5",
        }
    }

    /// The name with a one-word description.
    pub fn title(self) -> &'static str {
        match self {
            Workload::W1 => "w1 stateless",
            Workload::W2 => "w2 keyed",
            Workload::W3 => "w3 etl",
            Workload::W4 => "w4 wordcount",
            Workload::W5 => "w5 parquet",
        }
    }

    /// What one record is.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::W1 => "numbers",
            Workload::W2 => "records",
            Workload::W3 => "orders",
            Workload::W4 => "words",
            Workload::W5 => "orders",
        }
    }

    /// The input size at full scale.
    pub fn full_records(self) -> u64 {
        match self {
            Workload::W1 => 50_000_000,
            Workload::W2 => 20_000_000,
            Workload::W3 => 2_000_000,
            Workload::W4 => 20_000_000,
            Workload::W5 => 2_000_000,
        }
    }

    /// Generates the input of `records` records into `dir` (a no-op when it exists).
    pub fn prepare(self, dir: &Path, records: u64) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        match self {
            Workload::W1 | Workload::W2 => crate::data::write_range(dir, records),
            Workload::W3 => crate::data::write_orders(dir, records),
            Workload::W4 => crate::data::write_lines(dir, records),
            Workload::W5 => crate::data::write_orders_parquet(dir, records),
        }
        .map(drop)
    }

    /// Runs the workload once on `engine`.
    pub fn run(self, engine: Engine, ctx: &RunCtx) -> Result<Outcome> {
        let on_processes;
        let (engine, ctx) = match engine {
            Engine::Processes => {
                on_processes = RunCtx {
                    processes: true,
                    ..ctx.clone()
                };
                (Engine::Solstice, &on_processes)
            }
            e => (e, ctx),
        };
        match (self, engine) {
            (Workload::W1 | Workload::W4 | Workload::W5, Engine::Solstice) if ctx.processes => {
                Err(BenchError::Other(format!(
                    "{} does not run on worker processes in the suite",
                    self.name()
                )))
            }
            (Workload::W1, Engine::Solstice) => w1::solstice(ctx),
            (Workload::W1, Engine::Hand) => w1::hand(ctx),
            (Workload::W2, Engine::Solstice) => w2::solstice(ctx),
            (Workload::W2, Engine::Hand) => w2::hand(ctx),
            (Workload::W3, Engine::Solstice) => w3::solstice(ctx),
            (Workload::W3, Engine::Hand) => w3::hand(ctx),
            (Workload::W4, Engine::Solstice) => w4::solstice(ctx),
            (Workload::W4, Engine::Hand) => w4::hand(ctx),
            (Workload::W5, Engine::Solstice) => w5::solstice(ctx),
            (Workload::W5, Engine::Hand) => w5::hand(ctx),
            (_, Engine::Processes) => unreachable!("mapped to Solstice on processes above"),
        }
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown workload `{s}` (expected w1, w2, w3, w4 or w5)"))
    }
}

/// What runs a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The Solstice pipeline.
    Solstice,
    /// The hand-written Rust implementation.
    Hand,
    /// The Solstice pipeline on `threads` worker processes of one thread each (W2 and W3).
    Processes,
}

impl Engine {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Solstice => "solstice",
            Engine::Hand => "hand",
            Engine::Processes => "processes",
        }
    }
}

impl FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "solstice" => Ok(Engine::Solstice),
            "hand" | "hand-written" => Ok(Engine::Hand),
            "processes" => Ok(Engine::Processes),
            _ => Err(format!(
                "unknown engine `{s}` (expected solstice, hand or processes)"
            )),
        }
    }
}

/// Input sizes relative to the full workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// 1/1000 of full: for smoke tests.
    Tiny,
    /// 1/10 of full.
    Small,
    /// The sizes of the targets.
    Full,
}

impl Scale {
    /// The input size of `workload` at this scale.
    pub fn records(self, workload: Workload) -> u64 {
        let divisor = match self {
            Scale::Tiny => 1000,
            Scale::Small => 10,
            Scale::Full => 1,
        };
        (workload.full_records() / divisor).max(1)
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scale::Tiny => "tiny",
            Scale::Small => "small",
            Scale::Full => "full",
        }
    }
}

impl FromStr for Scale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tiny" => Ok(Scale::Tiny),
            "small" => Ok(Scale::Small),
            "full" => Ok(Scale::Full),
            _ => Err(format!(
                "unknown scale `{s}` (expected tiny, small or full)"
            )),
        }
    }
}

/// The result of one measured run, as a child process prints it (one JSON line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Workload name (`w1`..`w4`).
    pub workload: String,
    /// Engine name (`solstice` or `hand`).
    pub engine: String,
    /// Threads used.
    pub threads: usize,
    /// Input records processed.
    pub records: u64,
    /// Seconds of the fastest repetition.
    pub seconds: f64,
    /// Checksum of the result (equal across repetitions).
    pub checksum: u64,
    /// Peak resident set size of the process, in KiB (`VmHWM`).
    pub peak_rss_kb: u64,
    /// Bytes of encoded batches sent between processes in the fastest repetition.
    #[serde(default)]
    pub crossed_bytes: u64,
}

impl Report {
    /// Records per second.
    pub fn throughput(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
}

/// The peak resident set size of this process so far, in KiB (`VmHWM` of `/proc/self/status`;
/// 0 where that file does not exist).
pub fn peak_rss_kb() -> Result<u64> {
    let path = Path::new("/proc/self/status");
    let status = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(BenchError::io(path, e)),
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| BenchError::Other("no VmHWM in /proc/self/status".into()))
}

/// The scratch directory of a run of `workload` on `engine` with `threads` threads.
pub fn work_dir(data: &Path, workload: Workload, engine: Engine, threads: usize) -> PathBuf {
    data.join("work")
        .join(format!("{}-{}-t{threads}", workload.name(), engine.name()))
}

/// Runs `workload` on `engine` `repeat` times (at least once) in this process and reports the
/// fastest run. Every repetition must give the same checksum. The input must have been prepared.
pub fn measure(workload: Workload, engine: Engine, ctx: &RunCtx, repeat: usize) -> Result<Report> {
    let mut best: Option<Outcome> = None;
    for _ in 0..repeat.max(1) {
        let outcome = workload.run(engine, ctx)?;
        if let Some(b) = best {
            if b.checksum != outcome.checksum {
                return Err(BenchError::Other(format!(
                    "{} on {}: checksum {:#018x} differs from the previous repetition's {:#018x}",
                    workload.name(),
                    engine.name(),
                    outcome.checksum,
                    b.checksum
                )));
            }
        }
        if best.is_none_or(|b| outcome.elapsed < b.elapsed) {
            best = Some(outcome);
        }
    }
    let best = best.ok_or_else(|| BenchError::Other("no repetition ran".into()))?;
    Ok(Report {
        workload: workload.name().to_string(),
        engine: engine.name().to_string(),
        threads: ctx.threads,
        records: ctx.records,
        seconds: best.elapsed.max(Duration::from_nanos(1)).as_secs_f64(),
        checksum: best.checksum,
        peak_rss_kb: peak_rss_kb()?,
        crossed_bytes: best.crossed,
    })
}
