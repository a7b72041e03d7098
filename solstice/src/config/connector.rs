//! What a connector's stage function is given: its section of the config, read into the
//! connector's own options type, with errors naming the key and the file.

use serde::de::DeserializeOwned;

use super::blame;
use crate::connectors::collect::Outputs;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

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
    overrides: &[String],
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
            Some(field) => Error::config(
                blame(&key, origin, overrides),
                format!("{key}.{field}: missing (required)"),
            ),
            None => Error::config(
                blame(&key, origin, overrides),
                format!("at `{key}`: {inner}"),
            ),
        }
    })
}

/// What a source stage's function is given: its name, its section of the config (the
/// connector's own options, read with [`SourceConfig::options`]), where the config came from,
/// and the job's counters.
#[derive(Clone, Debug, Default)]
pub struct SourceConfig {
    pub(super) stage: String,
    pub(super) origin: String,
    pub(super) section: Section,
    pub(super) metrics: Metrics,
    /// The config's `--set` overrides, so that an error about a key one of them set names it.
    pub(super) overrides: Vec<String>,
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
            &self.overrides,
        )
    }

    /// A config error about key `sources.<stage>.<key>`.
    pub fn error(&self, key: &str, message: impl std::fmt::Display) -> Error {
        let key = format!("sources.{}.{key}", self.stage);
        Error::config(
            blame(&key, &self.origin, &self.overrides),
            format!("{key}: {message}"),
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
    pub(super) stage: String,
    pub(super) origin: String,
    pub(super) section: Section,
    pub(super) metrics: Metrics,
    /// The config's `--set` overrides, so that an error about a key one of them set names it.
    pub(super) overrides: Vec<String>,
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
            &self.overrides,
        )
    }

    /// A config error about key `sinks.<stage>.<key>`.
    pub fn error(&self, key: &str, message: impl std::fmt::Display) -> Error {
        let key = format!("sinks.{}.{key}", self.stage);
        Error::config(
            blame(&key, &self.origin, &self.overrides),
            format!("{key}: {message}"),
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
