//! The YAML job configuration: what every key means and its default.
//!
//! ```yaml
//! job:
//!   id: simple_etl          # default: the pipeline's name; --job-id overrides
//!   parallelism: 1          # default parallelism of stages that set none
//!   key_groups: 128         # key groups of keyed stages (their maximum parallelism)
//!   batch_size: 1024        # records per batch between tasks
//!   channel_capacity: 16    # batches a channel holds before the sender waits
//! runtime:
//!   threads: 4              # worker threads; default: available cores
//!   processes: 1            # worker processes this host spawns (1: the job runs in this one)
//!   heartbeat_ms: 3000      # a process silent for this long is lost
//!   metrics: true           # count records in/out of every stage and time its waits
//!   rejoin_timeout_secs: 60 # how long a lost worker that joined by hand is waited for
//!   join_timeout_secs: 600  # how long workers joining by hand are waited for at the start
//!   secret_file: job.secret # the job secret (hex) for workers joining by hand
//!   ray:                    # with --ray-address: the workers Ray runs
//!     workers: 2            # worker processes, one Ray actor each
//!     cpus_per_worker: 1    # CPUs of each actor's bundle; runtime.threads defaults to it
//!     placement: spread     # spread | pack
//!     binary: /shared/bin/simple_etl  # or https://...; default: the submitting binary is uploaded
//!     python_env: { env_vars: { RUST_LOG: info } }  # added to the job's runtime_env
//!     dashboard_port: 8265  # the job server port a ray://HEAD address maps to
//!     start_timeout_secs: 120 # placing the workers and their joining, at most
//! stages:
//!   totals: { parallelism: [2, 10] }
//! sources:
//!   orders: { path: data/orders.jsonl, format: jsonl, on_error: skip, dead_letter: bad.jsonl }
//! sinks:
//!   out: { path: out/totals, format: parquet, parquet: { row_group_size: 131072, compression: zstd } }
//! ```
//!
//! Unknown keys, wrong types and missing required keys are errors naming the key and the file.
//! The job-level sections are checked when the config is read; each connector owns the options
//! of its `sources.<name>` / `sinks.<name>` section and checks them when the job is built
//! ([`SourceConfig::options`]; the file connector's are in
//! [`crate::connectors::file::FileSourceOptions`] and
//! [`crate::connectors::file::FileSinkOptions`]).
//!
//! A program that embeds a job can build the same configuration in code, with the same
//! validation, through [`Config::builder`].

mod builder;
mod connector;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::builder::ConfigBuilder;
pub use self::connector::{Section, SinkConfig, SourceConfig};
use crate::connectors::collect::Outputs;
use crate::core::parallelism::Parallelism;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::state::keygroups::DEFAULT_KEY_GROUPS;

/// A whole job configuration, as read from YAML.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Job-wide settings.
    #[serde(default)]
    pub job: JobSection,
    /// The process's executor.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Per-stage settings, keyed by stage name.
    #[serde(default)]
    pub stages: BTreeMap<String, StageSection>,
    /// Source connector settings, keyed by source stage name: each connector reads its own
    /// section (see [`SourceConfig::options`]).
    #[serde(default)]
    pub sources: BTreeMap<String, Section>,
    /// Sink connector settings, keyed by sink stage name: each connector reads its own section
    /// (see [`SinkConfig::options`]).
    #[serde(default)]
    pub sinks: BTreeMap<String, Section>,
    /// Where this configuration came from, for error messages.
    #[serde(skip)]
    pub origin: String,
    /// The `KEY=VALUE` overrides applied on top of it (`--set`), in order: an error about a key
    /// one of them set names that `--set` instead of the file.
    #[serde(skip)]
    pub overrides: Vec<String>,
    /// The directory that relative paths written in the config file resolve against: the
    /// file's own (absolute). `None` for a config not read from a file (parsed from text, built
    /// in code): its relative paths, like those of `--set`, resolve against the working
    /// directory. See [`Config::resolve_path`].
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// `job:` settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobSection {
    /// Job id (default: the pipeline name).
    pub id: Option<String>,
    /// Parallelism of stages that set none in the attribute or under `stages:`.
    pub parallelism: Parallelism,
    /// Number of key groups; the maximum parallelism of a keyed stage.
    pub key_groups: usize,
    /// Records per batch between tasks.
    pub batch_size: usize,
    /// Batches a channel holds before its senders wait (backpressure).
    pub channel_capacity: usize,
    /// Checkpointing; absent: no checkpoints.
    pub checkpoint: Option<CheckpointSection>,
    /// What to do when the job fails (default: no restart).
    pub restart: RestartSection,
}

/// `job.restart:` the restart strategy.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartSection {
    /// Restarts from the last complete checkpoint before giving up (default 0; needs
    /// `job.checkpoint` to restart anywhere but at the beginning).
    pub attempts: usize,
    /// Wait before each restart, in milliseconds (default 0).
    pub backoff_ms: u64,
}

/// `job.checkpoint:` settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Where checkpoints go: `file:///abs/dir`, `memory://`, `s3://bucket/prefix`, `gs://…`,
    /// `az://…` (default: `file://<working directory>/checkpoints`).
    pub backend: Option<String>,
    /// Take a checkpoint every this many seconds.
    pub interval_secs: Option<f64>,
    /// Take a checkpoint every this many records read by the sources.
    pub interval_records: Option<u64>,
    /// Complete checkpoints to keep (default 3).
    pub retain: usize,
    /// How long a checkpoint may wait for every task's snapshot, in seconds (default 600). A
    /// task that misses it is stuck: in a job on worker processes the attempt fails, naming
    /// the tasks and their workers, and the job restarts from the last complete checkpoint; in
    /// one process the checkpoint is abandoned with a warning naming the tasks.
    pub timeout_secs: Option<f64>,
    /// Backend options, e.g. `endpoint`, `region`, `access_key_id`, `secret_access_key`,
    /// `allow_http` for S3 (the standard environment variables are read too).
    pub options: BTreeMap<String, String>,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection {
            backend: None,
            interval_secs: None,
            interval_records: None,
            retain: 3,
            timeout_secs: None,
            options: BTreeMap::new(),
        }
    }
}

impl CheckpointSection {
    /// The backend URL, with the default applied.
    pub fn backend_url(&self) -> String {
        match &self.backend {
            Some(url) => url.clone(),
            None => {
                let dir = std::env::current_dir().unwrap_or_else(|_| std::env::temp_dir());
                format!("file://{}", dir.join("checkpoints").display())
            }
        }
    }
}

impl Default for JobSection {
    fn default() -> Self {
        JobSection {
            id: None,
            parallelism: Parallelism::Fixed(1),
            key_groups: DEFAULT_KEY_GROUPS,
            batch_size: 1024,
            channel_capacity: 16,
            checkpoint: None,
            restart: RestartSection::default(),
        }
    }
}

/// `runtime:` settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Worker threads of the work-stealing pool (default: available cores).
    pub threads: Option<usize>,
    /// Worker processes to spawn on this host (default 1: the job runs in this process). With
    /// more, this process coordinates them and runs no task itself.
    pub processes: Option<usize>,
    /// Counts records and batches into and out of every stage's subtasks and times their
    /// waits (default true; `false` only to measure what that costs).
    pub metrics: Option<bool>,
    /// A process of the job that sends nothing for this long is lost (default 3000 ms): its
    /// connections fail, and the job restarts from its last complete checkpoint.
    pub heartbeat_ms: Option<u64>,
    /// How long a coordinator waits for a replacement of a lost worker that joined by hand
    /// (default 60 s).
    pub rejoin_timeout_secs: Option<u64>,
    /// How long a coordinator waits at the start for the workers that join by hand (default:
    /// without limit; on Ray, `runtime.ray.start_timeout_secs`).
    pub join_timeout_secs: Option<u64>,
    /// A file holding the job secret as hex digits (at least 32), for a coordinator and workers
    /// started by hand; `SOLSTICE_SECRET` overrides it. Relative to the config file.
    pub secret_file: Option<PathBuf>,
    /// How the job runs on a Ray cluster (`--ray-address`); ignored otherwise.
    pub ray: Option<RaySection>,
}

/// `runtime.ray:` settings: the workers a job submitted with `--ray-address` asks Ray for.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaySection {
    /// Worker processes, one Ray actor each (default 2).
    pub workers: Option<usize>,
    /// CPUs Ray reserves for each worker, one placement-group bundle each (default 1); also the
    /// worker's `runtime.threads` when that is not set.
    pub cpus_per_worker: Option<usize>,
    /// How the bundles are placed on the cluster's nodes (default `spread`).
    pub placement: Option<RayPlacement>,
    /// The workflow binary as a path every node can run (absolute, or a `file://` URL), or an
    /// `http://` or `https://` URL that the driver and each worker's actor download it from
    /// (each time it starts). By default the binary that submits the job is uploaded with the
    /// job's working directory.
    pub binary: Option<String>,
    /// Entries added to the Ray job's runtime environment (`pip`, `uv`, `conda`, `env_vars`,
    /// `py_executable`, ...), for the driver and the workers' actors; `working_dir` is
    /// Solstice's own.
    pub python_env: Option<BTreeMap<String, serde_json::Value>>,
    /// The port of Ray's job server on the head node that a `ray://HEAD:PORT` address is mapped
    /// to (default 8265, Ray's dashboard port).
    pub dashboard_port: Option<u16>,
    /// How long the driver waits for the cluster to place the workers and for them to join
    /// (default 120 s).
    pub start_timeout_secs: Option<u64>,
}

/// Placement of a Ray job's workers over the nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RayPlacement {
    /// On as many nodes as possible (Ray's `SPREAD`).
    #[default]
    Spread,
    /// On as few nodes as possible (Ray's `PACK`).
    Pack,
}

/// `stages.<name>:` settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageSection {
    /// Overrides the parallelism given in the stage's attribute.
    pub parallelism: Option<Parallelism>,
}

impl Config {
    /// Reads a YAML file and applies `key=value` overrides (dotted keys, YAML values).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut config = Config::parse(&text, &origin, overrides)?;
        // A bare file name (`--config job.yaml`) has the empty path as its parent.
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        config.base_dir = Some(std::path::absolute(dir).map_err(|e| Error::io(dir, e))?);
        Ok(config)
    }

    /// The URL of the checkpoint backend, when `job.checkpoint` is set: its `backend` (a plain
    /// relative path there resolves like every path, see [`Config::resolve_path`]), by default
    /// `file://<working directory>/checkpoints`.
    pub fn checkpoint_url(&self) -> Option<String> {
        let c = self.job.checkpoint.as_ref()?;
        Some(match &c.backend {
            Some(b) if !b.contains("://") => self
                .resolve_path("job.checkpoint.backend", Path::new(b))
                .display()
                .to_string(),
            _ => c.backend_url(),
        })
    }

    /// The path the job uses for `path`, the value of dotted key `key`: a relative path written
    /// in the config file resolves against the file's directory ([`Config::base_dir`]); one
    /// given by `--set`, or in a config not read from a file, against the working directory
    /// (it is returned as it is).
    pub fn resolve_path(&self, key: &str, path: &Path) -> PathBuf {
        resolve_path(self.base_dir.as_deref(), &self.origin_of(key), path)
    }

    /// Parses YAML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Config> {
        let mut value: serde_yaml_ng::Value = if text.trim().is_empty() {
            serde_yaml_ng::Value::Mapping(Default::default())
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| Error::config(origin, e.to_string()))?
        };
        if value.is_null() {
            value = serde_yaml_ng::Value::Mapping(Default::default());
        }
        Config::from_value(value, origin, overrides)
    }

    /// A builder of a config in code: the same YAML tree and validation as [`Config::parse`].
    ///
    /// ```
    /// use solstice::config::Config;
    /// use solstice::connectors::file::{FileSinkOptions, FileSourceOptions};
    ///
    /// let config = Config::builder()
    ///     .threads(2)
    ///     .source("orders", FileSourceOptions::new("data/orders.jsonl"))
    ///     .sink("out", FileSinkOptions::new("out/totals"))
    ///     .build()?;
    /// assert_eq!(config.threads(), 2);
    /// # Ok::<(), solstice::Error>(())
    /// ```
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The config of a YAML tree (after `overrides`); what [`Config::parse`] and
    /// [`ConfigBuilder::build`] both end in.
    fn from_value(
        mut value: serde_yaml_ng::Value,
        origin: &str,
        overrides: &[String],
    ) -> Result<Config> {
        for o in overrides {
            apply_override(&mut value, o).map_err(|m| Error::config("--set", m))?;
        }
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." {
                Error::config(origin, inner)
            } else {
                Error::config(
                    blame(&path, origin, overrides),
                    format!("at `{path}`: {inner}"),
                )
            }
        })?;
        config.origin = origin.to_string();
        config.overrides = overrides.to_vec();
        config.validate()?;
        Ok(config)
    }

    /// Where the value at dotted key `key` came from, for an error about it: the last `--set`
    /// that wrote it (or a key above or below it), else the config's origin.
    pub fn origin_of(&self, key: &str) -> String {
        blame(key, &self.origin, &self.overrides)
    }

    fn validate(&self) -> Result<()> {
        // Each message starts with the key it is about.
        let err = |m: String| {
            let key = m.split(':').next().unwrap_or_default();
            Err(Error::config(self.origin_of(key), m))
        };
        if self.job.key_groups == 0 || self.job.key_groups > u16::MAX as usize {
            return err(format!(
                "job.key_groups: {} is not in 1..=65535",
                self.job.key_groups
            ));
        }
        if self.job.batch_size == 0 {
            return err("job.batch_size: must be at least 1".into());
        }
        if self.job.channel_capacity == 0 {
            return err("job.channel_capacity: must be at least 1".into());
        }
        if let Some(c) = &self.job.checkpoint {
            if c.retain == 0 {
                return err("job.checkpoint.retain: must be at least 1".into());
            }
            if c.interval_secs.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
                return err("job.checkpoint.interval_secs: must be a positive number".into());
            }
            if c.interval_records == Some(0) {
                return err("job.checkpoint.interval_records: must be at least 1".into());
            }
            if c.timeout_secs.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
                return err("job.checkpoint.timeout_secs: must be a positive number".into());
            }
        }
        if self.job.restart.attempts > 0 && self.job.checkpoint.is_none() {
            return err(
                "job.restart: restarting needs `job.checkpoint` (without it a restart would \
                 repeat the output written before the failure)"
                    .into(),
            );
        }
        if self.runtime.threads == Some(0) {
            return err("runtime.threads: must be at least 1".into());
        }
        if self.runtime.processes == Some(0) {
            return err("runtime.processes: must be at least 1".into());
        }
        if let Some(ray) = &self.runtime.ray {
            if ray.workers == Some(0) {
                return err("runtime.ray.workers: must be at least 1".into());
            }
            if ray.cpus_per_worker == Some(0) {
                return err("runtime.ray.cpus_per_worker: must be at least 1".into());
            }
            if ray.start_timeout_secs == Some(0) {
                return err("runtime.ray.start_timeout_secs: must be at least 1".into());
            }
            if let Some(env) = &ray.python_env {
                if env.contains_key("working_dir") {
                    return err(
                        "runtime.ray.python_env: `working_dir` is set by Solstice (it uploads \
                         the binary and the config with it)"
                            .into(),
                    );
                }
            }
            if let Some(binary) = &ray.binary {
                let downloaded = ["http://", "https://"]
                    .iter()
                    .any(|scheme| binary.starts_with(scheme));
                let path = binary.strip_prefix("file://").unwrap_or(binary);
                if !downloaded && binary.contains("://") && !binary.starts_with("file://") {
                    return err(format!(
                        "runtime.ray.binary: `{binary}`: give a path every node can run \
                         (absolute, or file://) or an http:// or https:// URL every node can \
                         download (for an object store: a presigned URL)"
                    ));
                }
                if !downloaded && !Path::new(path).is_absolute() {
                    return err(format!(
                        "runtime.ray.binary: `{binary}` is not an absolute path (the nodes \
                         run it from the job's working directory)"
                    ));
                }
            }
        }
        if let Some(ms) = self.runtime.heartbeat_ms {
            if ms < 10 {
                return err(format!(
                    "runtime.heartbeat_ms: {ms} ms is too short (at least 10)"
                ));
            }
        }
        Ok(())
    }

    /// Worker processes to spawn (`runtime.processes`, default 1).
    pub fn processes(&self) -> usize {
        self.runtime.processes.unwrap_or(1)
    }

    /// Whether stages are metered (`runtime.metrics`, default true).
    pub fn metered(&self) -> bool {
        self.runtime.metrics.unwrap_or(true)
    }

    /// The heartbeat timeout (`runtime.heartbeat_ms`, default 3 s).
    pub fn heartbeat(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.runtime.heartbeat_ms.unwrap_or(3000))
    }

    /// A hash of the job's settings (every section, not where the file was read from): a
    /// worker whose configuration hashes differently from its coordinator's is refused.
    pub fn fingerprint(&self) -> Result<String> {
        use std::hash::Hasher;
        let text = serde_json::to_vec(self)
            .map_err(|e| Error::Internal(format!("cannot hash the configuration: {e}")))?;
        let mut hasher = twox_hash::XxHash64::with_seed(0);
        hasher.write(&text);
        Ok(format!("{:016x}", hasher.finish()))
    }

    /// Worker threads to run with.
    pub fn threads(&self) -> usize {
        self.runtime
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Stage `stage`'s entry in `entries`, the config's `side` (`sources` or `sinks`; null when
    /// absent).
    fn stage_section(
        &self,
        side: &'static str,
        entries: &BTreeMap<String, Section>,
        stage: &str,
    ) -> connector::StageSection {
        connector::StageSection {
            side,
            stage: stage.to_string(),
            origin: self.origin.clone(),
            section: entries.get(stage).cloned().unwrap_or_default(),
            metrics: Metrics::default(),
            overrides: self.overrides.clone(),
            base_dir: self.base_dir.clone(),
        }
    }

    /// What source stage `stage`'s function is given: its `sources.<stage>` section (null when
    /// absent) and this config's origin.
    pub fn source_config(&self, stage: &str) -> SourceConfig {
        SourceConfig {
            inner: self.stage_section("sources", &self.sources, stage),
        }
    }

    /// What sink stage `stage`'s function is given: its `sinks.<stage>` section (null when
    /// absent) and this config's origin.
    pub fn sink_config(&self, stage: &str) -> SinkConfig {
        SinkConfig {
            inner: self.stage_section("sinks", &self.sinks, stage),
            outputs: Outputs::default(),
        }
    }
}

/// Puts `value` at `parts` in a YAML tree, creating mappings on the way (and replacing nulls).
fn insert_at(
    root: &mut serde_yaml_ng::Value,
    parts: &[&str],
    value: serde_yaml_ng::Value,
) -> Result<(), String> {
    use serde_yaml_ng::Value;
    let key = parts.join(".");
    if parts.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{key}`: empty key segment"));
    }
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Default::default());
        }
        let map = node
            .as_mapping_mut()
            .ok_or_else(|| format!("{key}: `{}` is not a mapping", parts[..i].join(".")))?;
        let k = Value::String((*part).to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert(Value::Null);
    }
    Ok(())
}

/// `--set KEY=VALUE` for the last of `overrides` that wrote `key`, a key above it or one below
/// it; else `origin`.
/// `path` resolved against `base` unless it is absolute, `base` is `None`, or `from` (where the
/// key was set) is a `--set`.
fn resolve_path(base: Option<&Path>, from: &str, path: &Path) -> PathBuf {
    match base {
        Some(base) if path.is_relative() && !from.starts_with("--set ") => base.join(path),
        _ => path.to_path_buf(),
    }
}

/// For an error about `path` as given (before [`resolve_path`]): what a relative one was taken
/// relative to, as ` (relative to the config file's directory, /abs/dir)`; nothing for an
/// absolute path.
pub(crate) fn relative_note(base: Option<&Path>, from: &str, path: &Path) -> String {
    if !path.is_relative() {
        return String::new();
    }
    match base {
        Some(base) if !from.starts_with("--set ") => {
            format!(
                " (relative to the config file's directory, {})",
                base.display()
            )
        }
        _ => {
            let cwd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "?".into());
            format!(" (relative to the working directory, {cwd})")
        }
    }
}

fn blame(key: &str, origin: &str, overrides: &[String]) -> String {
    let covers = |set: &str| {
        set == key
            || key
                .strip_prefix(set)
                .is_some_and(|rest| rest.starts_with('.'))
            || set
                .strip_prefix(key)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    overrides
        .iter()
        .rev()
        .find(|o| covers(o.split_once('=').map_or(o.as_str(), |(k, _)| k)))
        .map_or_else(|| origin.to_string(), |o| format!("--set {o}"))
}

/// Applies `a.b.c=value` to a YAML tree, creating mappings on the way.
fn apply_override(root: &mut serde_yaml_ng::Value, spec: &str) -> Result<(), String> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| format!("--set {spec}: expected key=value"))?;
    let parsed: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(raw).map_err(|e| format!("--set {key}: bad value: {e}"))?;
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("--set {spec}: empty key segment"));
    }
    insert_at(root, &parts, parsed).map_err(|m| format!("--set {m}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::parse(
            "job: { id: a }\nstages:\n  totals: { parallelism: [2, 10] }\n",
            "x.yaml",
            &[
                "stages.totals.parallelism=4".into(),
                "runtime.threads=3".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.job.key_groups, 128);
        assert_eq!(c.stages["totals"].parallelism, Some(Parallelism::Fixed(4)));
        assert_eq!(c.threads(), 3);
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = Config::parse("job: { id: a, batch_sise: 3 }\n", "cfg.yaml", &[]).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("cfg.yaml") && m.contains("batch_sise") && m.contains("job"),
            "{m}"
        );
    }

    #[test]
    fn wrong_type_names_key() {
        let e = Config::parse("runtime: { threads: many }\n", "cfg.yaml", &[]).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("runtime.threads") && m.contains("cfg.yaml"),
            "{m}"
        );
        let e = Config::parse("stages: { a: { parallelism: [3, 1] } }", "c.yaml", &[]).unwrap_err();
        assert!(e.to_string().contains("stages.a.parallelism"), "{e}");
    }

    #[test]
    fn an_error_in_a_set_value_names_the_set_flag() {
        let file_of = |e: Error| match e {
            Error::Config { file, .. } => file,
            other => panic!("expected a config error, got {other}"),
        };
        let yaml = "job: { batch_size: 8 }\nruntime: { threads: 2 }\n";
        let e = Config::parse(yaml, "cfg.yaml", &["runtime.threads=many".into()]).unwrap_err();
        assert_eq!(file_of(e), "--set runtime.threads=many");
        let e = Config::parse(yaml, "cfg.yaml", &["runtime.threads=0".into()]).unwrap_err();
        assert_eq!(file_of(e), "--set runtime.threads=0");
        let e = Config::parse(yaml, "cfg.yaml", &["runtime.threads".into()]).unwrap_err();
        assert_eq!(file_of(e), "--set");
        // A key the file set, next to an override of another key, is still the file's.
        let bad = "job: { batch_size: 0 }\n";
        let e = Config::parse(bad, "cfg.yaml", &["runtime.threads=2".into()]).unwrap_err();
        assert_eq!(file_of(e), "cfg.yaml");

        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Options {
            n: u64,
        }
        let c = Config::parse(
            "sources: { numbers: { n: 1 } }\n",
            "cfg.yaml",
            &["sources.numbers.n=lots".into()],
        )
        .unwrap();
        let e = c.source_config("numbers").options::<Options>().unwrap_err();
        assert_eq!(file_of(e), "--set sources.numbers.n=lots");
        let e = c.source_config("numbers").error("n", "too many");
        assert_eq!(file_of(e), "--set sources.numbers.n=lots");
        let e = c.sink_config("out").error("path", "missing");
        assert_eq!(file_of(e), "cfg.yaml");
    }
}
