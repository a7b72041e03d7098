//! The options of the file connectors: what `sources.<name>` of a [`super::FileSource`] and
//! `sinks.<name>` of a [`super::FileSink`] hold, read with
//! [`SourceConfig::options`](crate::config::SourceConfig::options).
//!
//! ```yaml
//! sources:
//!   orders: { path: data/orders.jsonl, format: jsonl, on_error: skip, dead_letter: bad.jsonl }
//! sinks:
//!   out: { path: out/totals, format: parquet, parquet: { row_group_size: 131072, compression: zstd } }
//! ```

use std::path::{Path, PathBuf};

use crate::core::connector::SinkMode;
use serde::{Deserialize, Serialize};

/// Record format of a file connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON document per line.
    Jsonl,
    /// Comma- (or otherwise) separated values with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format a file extension implies (`.jsonl`/`.json`/`.ndjson`, `.csv`/`.tsv`,
    /// `.parquet`/`.pq`).
    pub fn from_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "jsonl" | "json" | "ndjson" => Format::Jsonl,
            "csv" | "tsv" => Format::Csv,
            "parquet" | "pq" => Format::Parquet,
            _ => return None,
        })
    }

    /// The extension of files written in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// What a source does with a record it cannot decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop the job with `file:line: reason` (the default).
    #[default]
    Fail,
    /// Write the record to the dead-letter file, count it, and go on.
    Skip,
}

/// CSV dialect of a source or sink (`csv:` under the connector).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvOptions {
    /// Field delimiter, one ASCII character (default `,`).
    pub delimiter: char,
    /// Quote character, one ASCII character (default `"`).
    pub quote: char,
    /// Whether the first row is a header naming the columns (default true). Records are matched
    /// to columns by name when there is a header, by position otherwise.
    pub header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: ',',
            quote: '"',
            header: true,
        }
    }
}

/// Compression codec of Parquet output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// Snappy.
    Snappy,
    /// Zstandard, default level (the default).
    #[default]
    Zstd,
}

/// Parquet settings of a sink (`parquet:` under the sink).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetOptions {
    /// Rows per row group (default 131072).
    pub row_group_size: usize,
    /// Compression codec (default zstd).
    pub compression: Compression,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            row_group_size: 128 * 1024,
            compression: Compression::Zstd,
        }
    }
}

/// One path or several; each may be a file, a directory (all files in it) or a glob.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Paths {
    /// A single path or glob.
    One(PathBuf),
    /// Several paths or globs.
    Many(Vec<PathBuf>),
}

impl Paths {
    /// The paths as a list.
    pub fn to_vec(&self) -> Vec<PathBuf> {
        match self {
            Paths::One(p) => vec![p.clone()],
            Paths::Many(v) => v.clone(),
        }
    }
}

impl From<PathBuf> for Paths {
    fn from(path: PathBuf) -> Paths {
        Paths::One(path)
    }
}

impl From<&Path> for Paths {
    fn from(path: &Path) -> Paths {
        Paths::One(path.to_path_buf())
    }
}

impl From<&str> for Paths {
    fn from(path: &str) -> Paths {
        Paths::One(path.into())
    }
}

impl From<String> for Paths {
    fn from(path: String) -> Paths {
        Paths::One(path.into())
    }
}

impl From<Vec<PathBuf>> for Paths {
    fn from(paths: Vec<PathBuf>) -> Paths {
        Paths::Many(paths)
    }
}

/// `sources.<name>:` of a [`super::FileSource`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceOptions {
    /// Input file(s), directory or glob (required). Relative paths are relative to the working
    /// directory.
    pub path: Paths,
    /// Record format (default: from the file extension, else jsonl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// What to do with a record that cannot be decoded (default: fail).
    #[serde(default)]
    pub on_error: OnError,
    /// With `on_error: skip`, the JSON-lines file that receives rejected records with their
    /// file, line and reason (required with `skip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<PathBuf>,
    /// CSV dialect.
    #[serde(default)]
    pub csv: CsvOptions,
}

impl FileSourceOptions {
    /// Options reading `path` with every other setting at its default.
    pub fn new(path: impl Into<Paths>) -> Self {
        FileSourceOptions {
            path: path.into(),
            format: None,
            on_error: OnError::Fail,
            dead_letter: None,
            csv: CsvOptions::default(),
        }
    }

    /// Sets the record format.
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// Skips undecodable records into the dead-letter file `path` (`on_error: skip`).
    pub fn skip_into(mut self, dead_letter: impl Into<PathBuf>) -> Self {
        self.on_error = OnError::Skip;
        self.dead_letter = Some(dead_letter.into());
        self
    }
}

/// `sinks.<name>:` of a [`super::FileSink`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkOptions {
    /// Output directory (required); subtask `i` writes `part-{i:05}.<ext>` in it.
    pub path: PathBuf,
    /// Record format (default: jsonl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// CSV dialect.
    #[serde(default)]
    pub csv: CsvOptions,
    /// Parquet settings.
    #[serde(default)]
    pub parquet: ParquetOptions,
    /// What a new run does with part files already in `path` (default: refuse to start).
    #[serde(default)]
    pub mode: SinkMode,
}

impl FileSinkOptions {
    /// Options writing into directory `path` with every other setting at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSinkOptions {
            path: path.into(),
            format: None,
            csv: CsvOptions::default(),
            parquet: ParquetOptions::default(),
            mode: SinkMode::Error,
        }
    }

    /// Sets the record format.
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// Sets what a new run does with part files already in the directory.
    pub fn mode(mut self, mode: SinkMode) -> Self {
        self.mode = mode;
        self
    }
}
