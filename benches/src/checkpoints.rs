//! The cost of exactly-once: W2 and W3 with a checkpoint every second, and with one every
//! `interval_records` (file:// backend), against no checkpoints, and the time from a restart to
//! the first output with about 100 MB of keyed state.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use solstice::job::{CheckpointStats, JobResult, Restore};
use solstice::prelude::*;

use crate::error::{BenchError, Result};
use crate::workloads::{w2, w3, RunCtx};

/// One measured run.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Wall-clock time of the job.
    pub elapsed: Duration,
    /// The checkpoints it completed.
    pub checkpoints: Vec<CheckpointStats>,
}

/// When checkpoints are taken.
#[derive(Clone, Copy, Debug)]
pub enum Every {
    /// Every second (`interval_secs: 1`).
    Second,
    /// Every this many records read (`interval_records`).
    Records(u64),
}

fn checkpointed(ctx: &RunCtx, dir: &Path, every: Every) -> RunCtx {
    let mut ctx = ctx.clone();
    ctx.overrides
        .push(format!("job.checkpoint.backend=file://{}", dir.display()));
    ctx.overrides.push(match every {
        Every::Second => "job.checkpoint.interval_secs=1".into(),
        Every::Records(n) => format!("job.checkpoint.interval_records={n}"),
    });
    ctx
}

fn measure(result: JobResult, started: Instant) -> Measured {
    Measured {
        elapsed: started.elapsed(),
        checkpoints: result.checkpoints,
    }
}

/// W2 without checkpoints (`None`) or with checkpoints as `every` says into `dir`.
pub fn w2(ctx: &RunCtx, dir: Option<&Path>, every: Every) -> Result<Measured> {
    let ctx = dir.map_or_else(|| ctx.clone(), |d| checkpointed(ctx, d, every));
    let range = crate::data::range_path(&ctx.data, ctx.records);
    let out = ctx.fresh_out()?;
    let config = ctx.config(&[("numbers", &range)], &[("done", &out)])?;
    let started = Instant::now();
    let (result, _) = w2::keyed::run(config)?;
    Ok(measure(result, started))
}

/// W3 without checkpoints (`None`) or with checkpoints as `every` says into `dir`.
pub fn w3(ctx: &RunCtx, dir: Option<&Path>, every: Every) -> Result<Measured> {
    let ctx = dir.map_or_else(|| ctx.clone(), |d| checkpointed(ctx, d, every));
    let input = crate::data::orders_path(&ctx.data, ctx.records);
    let out = ctx.fresh_out()?;
    let config = ctx.config(&[("orders", &input)], &[("sales", &out)])?;
    let started = Instant::now();
    let (result, _) = w3::etl::run(config)?;
    Ok(measure(result, started))
}

/// The record at which the restart job fails (0: never).
static FAIL_AT: AtomicU64 = AtomicU64::new(0);
/// When the restarted job's sink first received a record.
static FIRST_OUTPUT: OnceLock<Instant> = OnceLock::new();
static WATCH_OUTPUT: AtomicBool = AtomicBool::new(false);

/// Wide per-key state: about 100 MB of checkpoint for 2.5M keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Wide {
    /// Records seen.
    pub count: u64,
    /// Some payload, as a real aggregate would have.
    pub fields: [u64; 4],
    /// The last value.
    pub last: u64,
}

/// A sink noting the instant of its first record.
#[derive(Debug, Default)]
pub struct FirstOutput;

impl Sink for FirstOutput {
    type Item = u64;
    type Writer = FirstOutput;
    fn open(&self, _: usize, _: usize) -> solstice::Result<FirstOutput> {
        Ok(FirstOutput)
    }
}

impl SinkWriter<u64> for FirstOutput {
    fn write_batch(&mut self, batch: &mut Vec<u64>) -> solstice::Result<()> {
        if !batch.is_empty() && WATCH_OUTPUT.load(Ordering::Relaxed) {
            let _ = FIRST_OUTPUT.set(Instant::now());
        }
        batch.clear();
        Ok(())
    }
    fn finish(&mut self) -> solstice::Result<()> {
        Ok(())
    }
}

/// Keys `0..keys` twice over; fails at record `FAIL_AT` of the second pass.
#[solstice::pipeline]
pub mod restart {
    use super::*;

    /// The records.
    #[source]
    pub fn numbers(cfg: &SourceConfig) -> solstice::Result<RangeSource> {
        crate::workloads::range_source(cfg)
    }

    /// Fails once at `FAIL_AT`.
    #[map]
    pub fn guard(x: u64) -> u64 {
        if x == FAIL_AT.load(Ordering::Relaxed) && x != 0 {
            FAIL_AT.store(0, Ordering::Relaxed);
            panic!("injected failure at record {x}");
        }
        x
    }

    /// Key: the record modulo the key count (read from the second line of the range file).
    #[key_by]
    pub fn by_key(x: u64) -> (u64, u64) {
        (x % KEYS.load(Ordering::Relaxed), x)
    }

    /// Updates the wide state; emits the record.
    #[stateful]
    pub fn update(s: &mut Wide, x: u64) -> Option<u64> {
        s.count += 1;
        s.fields = [x, x ^ 1, x ^ 2, x ^ 3];
        s.last = x;
        Some(x)
    }

    /// Notes the first output.
    #[sink]
    pub fn out(_cfg: &SinkConfig) -> solstice::Result<FirstOutput> {
        Ok(FirstOutput)
    }

    dag! { numbers -> guard -> by_key -> update -> out }
}

static KEYS: AtomicU64 = AtomicU64::new(1);

/// The restart measurement: `keys` keys, the job fails after building the state and one
/// checkpoint of it; returns (checkpoint size, time from the restart's start to its first
/// output).
pub fn restart_to_first_output(ctx: &RunCtx, keys: u64, dir: &Path) -> Result<(u64, Duration)> {
    KEYS.store(keys, Ordering::Relaxed);
    let total = keys * 3;
    let range = crate::data::write_range(&ctx.data, total)?;
    let yaml = format!(
        "job:\n  checkpoint: {{ backend: 'file://{}', interval_records: {keys}, retain: 2 }}\n\
         runtime: {{ threads: {t} }}\nsources: {{ numbers: {{ path: '{}' }} }}\n",
        dir.display(),
        range.display(),
        t = ctx.threads
    );
    let config = |y: &str| Config::parse(y, "checkpoint bench", &[]).map_err(BenchError::from);
    FAIL_AT.store(keys * 5 / 2, Ordering::Relaxed);
    if restart::job(config(&yaml)?)?.run().is_ok() {
        return Err(BenchError::Other(
            "the restart job did not fail as injected".into(),
        ));
    }
    let store = restart::job(config(&yaml)?)?
        .checkpoint_store()?
        .ok_or_else(|| BenchError::Other("no checkpoint store".into()))?;
    let latest = store
        .latest("restart")?
        .ok_or_else(|| BenchError::Other("no checkpoint before the failure".into()))?;
    let manifest = store.read_manifest("restart", latest)?;
    let bytes: u64 = manifest
        .stages
        .values()
        .flat_map(|s| s.parts.iter().map(|p| p.size))
        .sum();
    let mut job = restart::job(config(&yaml)?)?;
    job.restore_from(Restore::Latest);
    WATCH_OUTPUT.store(true, Ordering::Relaxed);
    let started = Instant::now();
    job.run()?;
    let first = FIRST_OUTPUT
        .get()
        .ok_or_else(|| BenchError::Other("the restarted job wrote nothing".into()))?;
    Ok((bytes, first.saturating_duration_since(started)))
}
