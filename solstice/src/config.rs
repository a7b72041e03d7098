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
//!   processes: 1            # only 1 is supported by this build
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

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
    /// Processes (default 1; only 1 is supported by this build).
    pub processes: Option<usize>,
}

/// `stages.<name>:` settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageSection {
    /// Overrides the parallelism given in the stage's attribute.
    pub parallelism: Option<Parallelism>,
}

/// The raw YAML of one connector's section (`sources.<name>` or `sinks.<name>`): the connector
/// reads it into its own options type with [`SourceConfig::options`] / [`SinkConfig::options`].
pub type Section = serde_yaml_ng::Value;

/// Deserializes a connector's section into `T`: an absent (or empty) section reads as an empty
/// mapping, so options whose keys all have defaults need no entry. Errors name the key
/// (`sources.<stage>.<key>`) and the file, as errors in the rest of the config do.
fn section_options<T: DeserializeOwned>(
    section: &Section,
    prefix: &str,
    origin: &str,
) -> Result<T> {
    let empty = Section::Mapping(Default::default());
    let value = if section.is_null() { &empty } else { section };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." {
            prefix.to_string()
        } else {
            format!("{prefix}.{path}")
        };
        let inner = e.into_inner().to_string();
        match inner
            .strip_prefix("missing field `")
            .and_then(|f| f.strip_suffix('`'))
        {
            Some(field) => Error::config(origin, format!("{key}.{field}: missing (required)")),
            None => Error::config(origin, format!("at `{key}`: {inner}")),
        }
    })
}

/// What a source stage's function is given: its name, its section of the config (the
/// connector's own options, read with [`SourceConfig::options`]), where the config came from,
/// and the job's counters.
#[derive(Clone, Debug, Default)]
pub struct SourceConfig {
    stage: String,
    origin: String,
    section: Section,
    metrics: Metrics,
}

impl SourceConfig {
    /// The source stage's name.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Where the config came from (its file, for error messages).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The raw `sources.<stage>` section (null when the config has none).
    pub fn section(&self) -> &Section {
        &self.section
    }

    /// The job's counters, e.g. for a `<stage>.skipped` count.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The connector's options: `sources.<stage>` deserialized into `T`. An absent section reads
    /// as an empty mapping. Unknown keys (with `#[serde(deny_unknown_fields)]`), wrong types
    /// and missing required keys are config errors naming `sources.<stage>.<key>` and the file.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T> {
        section_options(
            &self.section,
            &format!("sources.{}", self.stage),
            &self.origin,
        )
    }

    /// A config error about key `sources.<stage>.<key>`.
    pub fn error(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::config(
            &self.origin,
            format!("sources.{}.{key}: {message}", self.stage),
        )
    }

    /// The same config, reporting to the job's counters `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }
}

/// What a sink stage's function is given: its name, its section of the config (the connector's
/// own options, read with [`SinkConfig::options`]), where the config came from, and the job's
/// counters.
#[derive(Clone, Debug, Default)]
pub struct SinkConfig {
    stage: String,
    origin: String,
    section: Section,
    metrics: Metrics,
    pub(crate) outputs: Outputs,
}

impl SinkConfig {
    /// The sink stage's name.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Where the config came from (its file, for error messages).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The raw `sinks.<stage>` section (null when the config has none).
    pub fn section(&self) -> &Section {
        &self.section
    }

    /// The job's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The connector's options: `sinks.<stage>` deserialized into `T`, with the errors of
    /// [`SourceConfig::options`] (naming `sinks.<stage>.<key>` and the file).
    pub fn options<T: DeserializeOwned>(&self) -> Result<T> {
        section_options(
            &self.section,
            &format!("sinks.{}", self.stage),
            &self.origin,
        )
    }

    /// A config error about key `sinks.<stage>.<key>`.
    pub fn error(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::config(
            &self.origin,
            format!("sinks.{}.{key}: {message}", self.stage),
        )
    }

    /// The same config, reporting to the job's counters `metrics` and registering collected
    /// output in `outputs`.
    pub(crate) fn with_job(mut self, metrics: Metrics, outputs: Outputs) -> Self {
        self.metrics = metrics;
        self.outputs = outputs;
        self
    }
}

impl Config {
    /// Reads a YAML file and applies `key=value` overrides (dotted keys, YAML values).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::parse(&text, &origin, overrides)
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
            apply_override(&mut value, o).map_err(|m| Error::config(origin, m))?;
        }
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." {
                Error::config(origin, inner)
            } else {
                Error::config(origin, format!("at `{path}`: {inner}"))
            }
        })?;
        config.origin = origin.to_string();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let err = |m: String| Err(Error::config(&self.origin, m));
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
        if let Some(p) = self.runtime.processes {
            if p != 1 {
                return err(format!(
                    "runtime.processes: {p} processes requested, but this build runs one process"
                ));
            }
        }
        Ok(())
    }

    /// Worker threads to run with.
    pub fn threads(&self) -> usize {
        self.runtime
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// What source stage `stage`'s function is given: its `sources.<stage>` section (null when
    /// absent) and this config's origin.
    pub fn source_config(&self, stage: &str) -> SourceConfig {
        SourceConfig {
            stage: stage.to_string(),
            origin: self.origin.clone(),
            section: self.sources.get(stage).cloned().unwrap_or_default(),
            metrics: Metrics::default(),
        }
    }

    /// What sink stage `stage`'s function is given: its `sinks.<stage>` section (null when
    /// absent) and this config's origin.
    pub fn sink_config(&self, stage: &str) -> SinkConfig {
        SinkConfig {
            stage: stage.to_string(),
            origin: self.origin.clone(),
            section: self.sinks.get(stage).cloned().unwrap_or_default(),
            metrics: Metrics::default(),
            outputs: Outputs::default(),
        }
    }
}

/// Builds a [`Config`] in code (see [`Config::builder`]). Each setting goes into the same YAML
/// tree a file would give, at the key named in its doc; [`ConfigBuilder::build`] then checks it
/// exactly as [`Config::parse`] checks a file: errors name the key, and the origin
/// (`Config::builder()` unless [`ConfigBuilder::origin`] says otherwise).
#[derive(Debug)]
pub struct ConfigBuilder {
    root: serde_yaml_ng::Value,
    origin: String,
    overrides: Vec<String>,
    /// The first setting that could not be represented in YAML, reported by `build`.
    error: Option<Error>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        ConfigBuilder {
            root: serde_yaml_ng::Value::Mapping(Default::default()),
            origin: "Config::builder()".to_string(),
            overrides: Vec::new(),
            error: None,
        }
    }
}

impl ConfigBuilder {
    /// Sets the value at dotted key `key` (e.g. `job.batch_size`) to `value`, serialized into
    /// the YAML tree; any serializable value will do (typed options, `serde_json::json!`).
    pub fn set(mut self, key: &str, value: impl Serialize) -> Self {
        if self.error.is_some() {
            return self;
        }
        let parts: Vec<&str> = key.split('.').collect();
        let result = serde_yaml_ng::to_value(&value)
            .map_err(|e| format!("{key}: cannot be represented in YAML: {e}"))
            .and_then(|v| insert_at(&mut self.root, &parts, v));
        if let Err(m) = result {
            self.error = Some(Error::config(&self.origin, m));
        }
        self
    }

    /// Sets a stage's options under a name that may contain dots (a stage name is one key).
    fn set_stage(mut self, section: &str, stage: &str, value: impl Serialize) -> Self {
        if self.error.is_some() {
            return self;
        }
        let result = serde_yaml_ng::to_value(&value)
            .map_err(|e| format!("{section}.{stage}: cannot be represented in YAML: {e}"))
            .and_then(|v| insert_at(&mut self.root, &[section, stage], v));
        if let Err(m) = result {
            self.error = Some(Error::config(&self.origin, m));
        }
        self
    }

    /// `job.id`.
    pub fn id(self, id: impl Into<String>) -> Self {
        self.set("job.id", id.into())
    }

    /// `runtime.threads`.
    pub fn threads(self, threads: usize) -> Self {
        self.set("runtime.threads", threads)
    }

    /// `job.parallelism`: of stages that set none.
    pub fn parallelism(self, parallelism: Parallelism) -> Self {
        self.set("job.parallelism", parallelism)
    }

    /// `job.key_groups`.
    pub fn key_groups(self, key_groups: usize) -> Self {
        self.set("job.key_groups", key_groups)
    }

    /// `job.batch_size`.
    pub fn batch_size(self, batch_size: usize) -> Self {
        self.set("job.batch_size", batch_size)
    }

    /// `job.channel_capacity`.
    pub fn channel_capacity(self, channel_capacity: usize) -> Self {
        self.set("job.channel_capacity", channel_capacity)
    }

    /// `job.checkpoint`.
    pub fn checkpoint(self, checkpoint: CheckpointSection) -> Self {
        self.set("job.checkpoint", checkpoint)
    }

    /// `job.restart`.
    pub fn restart(self, restart: RestartSection) -> Self {
        self.set("job.restart", restart)
    }

    /// `stages.<stage>.parallelism`.
    pub fn stage_parallelism(self, stage: &str, parallelism: Parallelism) -> Self {
        self.set_stage(
            "stages",
            stage,
            StageSection {
                parallelism: Some(parallelism),
            },
        )
    }

    /// `sources.<stage>`: the source's options, e.g. a
    /// [`FileSourceOptions`](crate::connectors::file::FileSourceOptions) or a user connector's
    /// own options type.
    pub fn source(self, stage: &str, options: impl Serialize) -> Self {
        self.set_stage("sources", stage, options)
    }

    /// `sinks.<stage>`: the sink's options, e.g. a
    /// [`FileSinkOptions`](crate::connectors::file::FileSinkOptions).
    pub fn sink(self, stage: &str, options: impl Serialize) -> Self {
        self.set_stage("sinks", stage, options)
    }

    /// A `key=value` override applied after every other setting, as `--set` is.
    pub fn set_override(mut self, spec: impl Into<String>) -> Self {
        self.overrides.push(spec.into());
        self
    }

    /// Names the config in error messages (default `Config::builder()`).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    /// The config, checked as [`Config::parse`] checks a file.
    pub fn build(self) -> Result<Config> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Config::from_value(self.root, &self.origin, &self.overrides)
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
}
