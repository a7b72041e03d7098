//! What a connector's stage function is given: its section of the config, read into the
//! connector's own options type, with errors naming the key and the file.

use serde::de::DeserializeOwned;

use std::path::{Path, PathBuf};

use super::{blame, relative_note, resolve_path};
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

/// What every connector's stage function is given, whichever side it is on.
#[derive(Clone, Debug, Default)]
pub(super) struct StageSection {
    /// `sources` or `sinks`: the config section the stage's entry is under.
    pub(super) side: &'static str,
    pub(super) stage: String,
    pub(super) origin: String,
    pub(super) section: Section,
    pub(super) metrics: Metrics,
    /// The config's `--set` overrides, so that an error about a key one of them set names it.
    pub(super) overrides: Vec<String>,
    /// What relative paths in the config file resolve against ([`super::Config::base_dir`]).
    pub(super) base_dir: Option<PathBuf>,
}

impl StageSection {
    fn options<T: DeserializeOwned>(&self) -> Result<T> {
        section_options(
            &self.section,
            &format!("{}.{}", self.side, self.stage),
            &self.origin,
            &self.overrides,
        )
    }

    fn error(&self, key: &str, message: impl std::fmt::Display) -> Error {
        let key = format!("{}.{}.{key}", self.side, self.stage);
        Error::config(
            blame(&key, &self.origin, &self.overrides),
            format!("{key}: {message}"),
        )
    }

    fn origin_of(&self, key: &str) -> String {
        let key = format!("{}.{}.{key}", self.side, self.stage);
        blame(&key, &self.origin, &self.overrides)
    }

    fn resolve_path(&self, key: &str, path: &Path) -> PathBuf {
        resolve_path(self.base_dir.as_deref(), &self.origin_of(key), path)
    }

    fn relative_note(&self, key: &str, path: &Path) -> String {
        relative_note(self.base_dir.as_deref(), &self.origin_of(key), path)
    }
}

/// The accessors both connector configs share, documented for the side they are on.
macro_rules! stage_section_accessors {
    ($side:literal) => {
        /// The stage's name.
        pub fn stage(&self) -> &str {
            &self.inner.stage
        }

        /// Where the config came from (its file, for error messages).
        pub fn origin(&self) -> &str {
            &self.inner.origin
        }

        #[doc = concat!("The raw `", $side, ".<stage>` section (null when the config has none).")]
        pub fn section(&self) -> &Section {
            &self.inner.section
        }

        /// The job's counters, e.g. for a `<stage>.skipped` count.
        pub fn metrics(&self) -> &Metrics {
            &self.inner.metrics
        }

        #[doc = concat!("The connector's options: `", $side, ".<stage>` deserialized into `T`. An")]
        /// absent section reads as an empty mapping. Unknown keys (with
        /// `#[serde(deny_unknown_fields)]`), wrong types and missing required keys are config
        #[doc = concat!("errors naming `", $side, ".<stage>.<key>` and the file (or the `--set`")]
        /// that wrote the key).
        pub fn options<T: DeserializeOwned>(&self) -> Result<T> {
            self.inner.options()
        }

        #[doc = concat!("A config error about key `", $side, ".<stage>.<key>`.")]
        pub fn error(&self, key: &str, message: impl std::fmt::Display) -> Error {
            self.inner.error(key, message)
        }

        #[doc = concat!("Where key `", $side, ".<stage>.<key>` was set: the `--set` that")]
        /// wrote it, else the config's origin.
        pub fn origin_of(&self, key: &str) -> String {
            self.inner.origin_of(key)
        }

        #[doc = concat!("The path the job uses for `path`, the value of key `", $side, ".<stage>.<key>`:")]
        /// relative paths written in the config file resolve against the file's directory,
        /// those of a `--set` (or of a config not read from a file) against the working
        /// directory.
        pub fn resolve_path(&self, key: &str, path: &Path) -> PathBuf {
            self.inner.resolve_path(key, path)
        }

        /// For an error about `path` as the config gives it: what a relative path was resolved
        /// against, e.g. ` (relative to the config file's directory, /srv/jobs)`; empty for an
        /// absolute one.
        pub fn relative_note(&self, key: &str, path: &Path) -> String {
            self.inner.relative_note(key, path)
        }
    };
}

/// What a source stage's function is given: its name, its section of the config (the
/// connector's own options, read with [`SourceConfig::options`]), where the config came from,
/// and the job's counters.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub(super) inner: StageSection,
}

impl Default for SourceConfig {
    /// An unnamed source's empty entry.
    fn default() -> Self {
        SourceConfig {
            inner: StageSection {
                side: "sources",
                ..StageSection::default()
            },
        }
    }
}

impl SourceConfig {
    stage_section_accessors!("sources");

    /// The same config, reporting to the job's counters `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.inner.metrics = metrics;
        self
    }
}

/// What a sink stage's function is given: its name, its section of the config (the connector's
/// own options, read with [`SinkConfig::options`]), where the config came from, and the job's
/// counters.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub(super) inner: StageSection,
    pub(crate) outputs: Outputs,
}

impl Default for SinkConfig {
    /// An unnamed sink's empty entry.
    fn default() -> Self {
        SinkConfig {
            inner: StageSection {
                side: "sinks",
                ..StageSection::default()
            },
            outputs: Outputs::default(),
        }
    }
}

impl SinkConfig {
    stage_section_accessors!("sinks");

    /// The same config, reporting to the job's counters `metrics` and registering collected
    /// output in `outputs`.
    pub(crate) fn with_job(mut self, metrics: Metrics, outputs: Outputs) -> Self {
        self.inner.metrics = metrics;
        self.outputs = outputs;
        self
    }
}
