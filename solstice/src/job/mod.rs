//! A planned job: build it from a pipeline and a config, explain it, run it.
//!
//! This module is the job's API. Planning is `core::plan`; validation is
//! `validate.rs`; running (deployment, restore, restarts, checkpoints) is the runtime's
//! supervisor.

pub mod builder;
mod result;
mod runner;
mod validate;

use std::sync::Arc;

use crate::config::Config;
use crate::connectors::collect::Outputs;
use crate::core::graph::Graph;
use crate::core::plan::PhysicalPlan;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::runtime::cluster::ClusterSpec;
pub use crate::runtime::coordinator::CheckpointStats;
use crate::runtime::coordinator::Triggers;
use crate::runtime::placement::Placement;
use crate::runtime::supervisor::{self, Supervisor};
pub use crate::runtime::supervisor::{Restore, Start};
use crate::runtime::transport::Endpoint;
use crate::runtime::worker::{self, WorkerJob};
use crate::state::checkpoint::CheckpointStore;

pub use builder::{JobBuilder, KeyedStream, Stream};
pub use result::{JobResult, StageFigures};
pub use runner::Runner;

/// A job ready to run: its graph, physical plan and configuration.
pub struct Job {
    name: String,
    id: String,
    graph: Graph,
    plan: PhysicalPlan,
    config: Config,
    metrics: Metrics,
    outputs: Outputs,
    begin: Start,
    triggers: Arc<Triggers>,
    /// Its worker processes, when it runs on workers (set by the command line).
    cluster: Option<ClusterSpec>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
    }
}

impl Job {
    /// Builds the job of pipeline `name`: `build` records its stages; the config is then checked
    /// against them and the physical plan made.
    pub fn build(
        name: &str,
        config: Config,
        build: impl FnOnce(&mut JobBuilder) -> Result<()>,
    ) -> Result<Job> {
        let mut builder = JobBuilder::new(config);
        build(&mut builder)?;
        let JobBuilder {
            graph,
            config,
            metrics,
            outputs,
        } = builder;
        validate::check_graph(&graph)?;
        validate::check_config_names(&graph, &config, name)?;
        let plan = PhysicalPlan::new(&graph, config.job.key_groups)?;
        let id = config.job.id.clone().unwrap_or_else(|| name.to_string());
        Ok(Job {
            name: name.to_string(),
            id,
            graph,
            plan,
            config,
            metrics,
            outputs,
            begin: Start::New,
            triggers: Arc::default(),
            cluster: None,
        })
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job id (`job.id`, `--job-id`, or the pipeline's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The physical plan as text: chains, parallelism, partitioning, key groups; with several
    /// worker processes, which runs what.
    pub fn explain(&self) -> String {
        let mut text = self
            .plan
            .explain(&self.graph, &self.id, self.config.threads());
        let workers = match &self.cluster {
            Some(spec) => spec.workers(),
            None => self.config.processes(),
        };
        if workers > 1 {
            text += &Placement::new(&self.plan, workers).explain(&self.graph, &self.plan);
        }
        text
    }

    /// Runs the job on worker processes (see [`crate::cli`]).
    pub(crate) fn on_cluster(&mut self, spec: ClusterSpec) {
        self.cluster = Some(spec);
    }

    /// Serves as a worker of this job's coordinator at `join` until the coordinator ends the
    /// job.
    pub(crate) fn serve(&self, join: std::net::SocketAddr, endpoint: Endpoint) -> Result<()> {
        worker::serve(
            &WorkerJob {
                id: &self.id,
                graph: &self.graph,
                plan: &self.plan,
                config: &self.config,
                metrics: &self.metrics,
            },
            join,
            endpoint,
        )
    }

    /// The job's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts the job on a thread of its own; the [`Runner`] takes checkpoints on demand and
    /// waits for the result.
    pub fn start(self) -> Runner {
        let triggers = self.triggers.clone();
        let checkpoints = self.config.job.checkpoint.is_some();
        let handle = std::thread::Builder::new()
            .name(format!("solstice-job-{}", self.id))
            .spawn(move || self.run());
        Runner {
            triggers,
            checkpoints,
            handle,
        }
    }

    /// Restores the job's state from a checkpoint when it runs: the latest complete one (falling
    /// back to older ones when it is corrupt) or a given one. Needs `job.checkpoint`.
    pub fn restore_from(&mut self, restore: Restore) {
        self.begin = Start::Restore(restore);
    }

    /// Starts over when it runs (`--fresh`): discards the job's checkpoints and the output its
    /// sinks published in earlier runs, then runs from the beginning of the input. Without it
    /// (and without [`Job::restore_from`]), a job with complete checkpoints refuses to run.
    pub fn fresh(&mut self) {
        self.begin = Start::Fresh;
    }

    /// The job's checkpoint store, when `job.checkpoint` is configured.
    pub fn checkpoint_store(&self) -> Result<Option<CheckpointStore>> {
        supervisor::checkpoint_store(&self.config)
    }

    /// Runs the job to completion on `runtime.threads` threads.
    pub fn run(self) -> Result<JobResult> {
        if self.cluster.is_none() && self.config.processes() > 1 {
            return Err(crate::Error::config(
                &self.config.origin,
                format!(
                    "runtime.processes: {} worker processes are spawned by a workflow binary's \
                     command line (its `main` calls solstice::cli), which starts them as copies \
                     of itself; a job run through the API runs in this process (set 1)",
                    self.config.processes()
                ),
            ));
        }
        let report = Supervisor {
            id: &self.id,
            graph: &self.graph,
            plan: &self.plan,
            config: &self.config,
            triggers: &self.triggers,
            cluster: self.cluster.as_ref(),
            metrics: &self.metrics,
        }
        .run(self.begin)?;
        let mut counters = self.metrics.snapshot();
        for (name, n) in &report.worker_counters {
            *counters.entry(name.clone()).or_default() += n;
        }
        let stages: Vec<(String, crate::core::StageKind, usize)> = self
            .graph
            .nodes
            .iter()
            .enumerate()
            .map(|(n, node)| (node.name.clone(), node.kind, self.plan.parallelism_of(n)))
            .collect();
        Ok(JobResult::new(
            report,
            counters,
            &stages,
            self.outputs.clone(),
        ))
    }
}
