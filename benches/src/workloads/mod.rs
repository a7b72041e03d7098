//! The five workloads, each as a Solstice pipeline and as a hand-written implementation of the
//! same computation. Both take a [`RunCtx`] and return an [`Outcome`]: the time of the
//! computation alone (data generation, job configuration and reading results back are not timed)
//! and a checksum of its result.

pub mod w1;
pub mod w2;
pub mod w3;
pub mod w4;
pub mod w5;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use solstice::cli::RunArgs;
use solstice::config::{Config, SourceConfig};
use solstice::connectors::RangeSource;
use solstice::job::JobResult;
use solstice::Pipeline;

use crate::error::{BenchError, Result};

/// What one run of a workload is given.
#[derive(Clone, Debug)]
pub struct RunCtx {
    /// Input size, in the workload's unit (numbers, records, orders or words).
    pub records: u64,
    /// Worker threads (Solstice: `runtime.threads` and `job.parallelism`).
    pub threads: usize,
    /// The directory holding the generated input.
    pub data: PathBuf,
    /// A scratch directory of this run, for its output.
    pub work: PathBuf,
    /// Extra `key=value` Solstice config overrides (ignored by hand-written runs).
    pub overrides: Vec<String>,
    /// Solstice runs on `threads` worker processes of one thread each instead of one process
    /// of `threads` threads (`runtime.processes`).
    pub processes: bool,
}

/// What one run of a workload measured.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Time of the computation alone.
    pub elapsed: Duration,
    /// Checksum of the result; equal for Solstice and hand-written when both are right.
    pub checksum: u64,
    /// Bytes of encoded batches sent between processes (0 in one process).
    pub crossed: u64,
}

/// The bytes of encoded batches a job's workers sent each other.
pub(crate) fn crossed(result: &JobResult) -> u64 {
    result
        .counters
        .get("transport.bytes_sent")
        .copied()
        .unwrap_or(0)
}

impl RunCtx {
    /// The output directory of this run, emptied.
    pub(crate) fn fresh_out(&self) -> Result<PathBuf> {
        let out = self.work.join("out");
        if out.exists() {
            std::fs::remove_dir_all(&out).map_err(|e| BenchError::io(&out, e))?;
        }
        std::fs::create_dir_all(&out).map_err(|e| BenchError::io(&out, e))?;
        Ok(out)
    }

    /// The Solstice config of this run: `threads` worker threads (or processes), every stage at
    /// parallelism `threads`, the given source and sink paths, then the user's overrides.
    pub(crate) fn config(
        &self,
        sources: &[(&str, &Path)],
        sinks: &[(&str, &Path)],
    ) -> Result<Config> {
        let yaml = self.yaml(sources, sinks)?;
        Ok(Config::parse(&yaml, "solstice-bench", &self.overrides)?)
    }

    /// The YAML of [`RunCtx::config`], before the overrides.
    fn yaml(&self, sources: &[(&str, &Path)], sinks: &[(&str, &Path)]) -> Result<String> {
        let quote = |p: &Path| {
            serde_json::to_string(&p.to_string_lossy()).map_err(|e| BenchError::json(p, e))
        };
        let t = self.threads;
        let mut yaml = match self.processes {
            false => format!("job: {{ parallelism: {t} }}\nruntime: {{ threads: {t} }}\n"),
            true => {
                format!("job: {{ parallelism: {t} }}\nruntime: {{ threads: 1, processes: {t} }}\n")
            }
        };
        for (section, entries) in [("sources", sources), ("sinks", sinks)] {
            if entries.is_empty() {
                continue;
            }
            yaml.push_str(section);
            yaml.push_str(":\n");
            for (name, path) in entries {
                yaml.push_str(&format!("  {name}: {{ path: {} }}\n", quote(path)?));
            }
        }
        Ok(yaml)
    }

    /// Runs pipeline `P` of `workload` under this run's config and returns its result and the
    /// time of the run. With `processes`, the config goes to a file that the spawned workers
    /// (`solstice-bench job <workload> --config FILE ... --worker --join ADDR`) read too,
    /// and the time includes starting them.
    pub(crate) fn run_pipeline<P: Pipeline>(
        &self,
        workload: &str,
        sources: &[(&str, &Path)],
        sinks: &[(&str, &Path)],
    ) -> Result<(JobResult, Duration)> {
        if !self.processes {
            let job = P::job(self.config(sources, sinks)?)?;
            let start = Instant::now();
            let result = job.run()?;
            return Ok((result, start.elapsed()));
        }
        let file = self.work.join("job.yaml");
        std::fs::create_dir_all(&self.work).map_err(|e| BenchError::io(&self.work, e))?;
        std::fs::write(&file, self.yaml(sources, sinks)?).map_err(|e| BenchError::io(&file, e))?;
        let args = worker_args(file, self.overrides.clone());
        let job = solstice::cli::job_from_args(P::NAME, P::build, &args, &["job", workload])?
            .ok_or_else(|| BenchError::Other("a coordinator served as a worker".into()))?;
        let start = Instant::now();
        let result = job.run()?;
        Ok((result, start.elapsed()))
    }
}

/// The run options of a job from `config` with overrides `set`, nothing else given.
fn worker_args(config: PathBuf, set: Vec<String>) -> RunArgs {
    RunArgs {
        config,
        job_id: None,
        set,
        explain: false,
        restore: None,
        fresh: false,
        list_checkpoints: false,
        coordinator: false,
        listen: None,
        workers: None,
        worker: false,
        join: None,
        address_file: None,
        base_dir: None,
        ray_address: None,
    }
}

/// Runs `workload`'s pipeline from the options of a workflow binary's command line, as its
/// binary would (`--config`, `--ray-address`, `--worker --join`, ...): this executable is
/// started again with `job <workload>` before those options (the workers that
/// [`RunCtx::run_pipeline`] spawns, and the coordinator and workers of a Ray submission).
pub fn run_job(workload: crate::Workload, args: &RunArgs) -> Result<()> {
    let prefix = ["job", workload.name()];
    let run = match workload {
        crate::Workload::W1 => run_as::<w1::stateless::Pipeline>,
        crate::Workload::W2 => run_as::<w2::keyed::Pipeline>,
        crate::Workload::W3 => run_as::<w3::etl::Pipeline>,
        crate::Workload::W4 => run_as::<w4::wordcount::Pipeline>,
        crate::Workload::W5 => run_as::<w5::parquet_etl::Pipeline>,
    };
    Ok(run(args, &prefix)?)
}

fn run_as<P: Pipeline>(args: &RunArgs, prefix: &[&str]) -> solstice::Result<()> {
    solstice::cli::run_embedded(P::NAME, P::build, args, prefix)
}

/// `sources.<stage>` of [`range_source`]: the range descriptor file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeFileOptions {
    path: PathBuf,
}

/// A [`RangeSource`] over `0..n`, where `n` is read from the range descriptor file named by
/// `sources.<stage>.path` (see [`crate::data::write_range`]).
pub fn range_source(cfg: &SourceConfig) -> solstice::Result<RangeSource> {
    let RangeFileOptions { path } = cfg.options()?;
    let n = crate::data::read_range(&path).map_err(|e| cfg.error("path", e))?;
    Ok(RangeSource::new(0..n))
}

/// The `i`-th of `parts` contiguous chunks of `0..n` (the same cut as [`RangeSource`]).
pub(crate) fn chunk(n: u64, i: usize, parts: usize) -> std::ops::Range<u64> {
    let at = |i: usize| (u128::from(n) * i as u128 / parts as u128) as u64;
    at(i)..at(i + 1)
}

/// Runs `f(0)`, ..., `f(parts - 1)`, each on a thread of its own when `parts > 1`, and returns
/// their results in order.
pub(crate) fn in_threads<T: Send>(
    parts: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    if parts <= 1 {
        return Ok(vec![f(0)?]);
    }
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = (0..parts).map(|i| s.spawn(move || f(i))).collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| BenchError::WorkerPanic)?)
            .collect()
    })
}
