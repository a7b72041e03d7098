//! The typed builder of a [`Config`], for programs that embed a job.

use serde::Serialize;

use super::{insert_at, CheckpointSection, Config, RestartSection, StageSection};
use crate::core::parallelism::Parallelism;
use crate::error::{Error, Result};

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
