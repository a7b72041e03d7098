//! The bad-input policy of a source: fail with the record's location, or skip it into a
//! dead-letter JSON-lines file and count it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::options::{FileSourceOptions, OnError};
use crate::config::SourceConfig;
use crate::error::{Error, Result};

/// Shared by all readers of one source.
#[derive(Clone, Debug)]
pub(crate) struct Rejects {
    policy: OnError,
    dead_letter: Option<Arc<DeadLetter>>,
    skipped: Arc<AtomicU64>,
}

#[derive(Debug)]
struct DeadLetter {
    path: PathBuf,
    out: Mutex<Option<BufWriter<File>>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    file: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row_group: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<usize>,
    reason: &'a str,
    raw: &'a str,
}

impl Rejects {
    /// The policy of `sources.<stage>` (`options`); `skip` needs `dead_letter`.
    pub(crate) fn from_config(cfg: &SourceConfig, options: &FileSourceOptions) -> Result<Rejects> {
        let dead_letter = match (options.on_error, &options.dead_letter) {
            (OnError::Skip, None) => {
                return Err(cfg.error("dead_letter", "required with `on_error: skip`"))
            }
            (OnError::Skip, Some(path)) => Some(Arc::new(DeadLetter {
                path: cfg.resolve_path("dead_letter", path),
                out: Mutex::new(None),
            })),
            (OnError::Fail, _) => None,
        };
        Ok(Rejects {
            policy: options.on_error,
            dead_letter,
            skipped: cfg.metrics().counter(&format!("{}.skipped", cfg.stage())),
        })
    }

    /// Fails on bad input (for sources built without a config).
    pub(crate) fn fail() -> Rejects {
        Rejects {
            policy: OnError::Fail,
            dead_letter: None,
            skipped: Arc::default(),
        }
    }

    /// Creates (or truncates) the dead-letter file when the job starts.
    pub(crate) fn start(&self) -> Result<()> {
        if let Some(dl) = &self.dead_letter {
            if let Some(dir) = dl.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            let file = File::create(&dl.path).map_err(|e| Error::io(&dl.path, e))?;
            *dl.out
                .lock()
                .map_err(|_| Error::Internal("dead-letter lock poisoned".into()))? =
                Some(BufWriter::new(file));
        }
        Ok(())
    }

    /// Handles a record that failed to decode: returns `error` under `fail`; under `skip`
    /// records it (with its raw text) in the dead-letter file and counts it.
    pub(crate) fn reject(&self, error: Error, raw: &str) -> Result<()> {
        let Some(dl) = self
            .dead_letter
            .as_ref()
            .filter(|_| self.policy == OnError::Skip)
        else {
            return Err(error);
        };
        let entry = match &error {
            Error::BadRecord { path, line, reason } => Entry {
                file: path,
                line: Some(*line),
                row_group: None,
                row: None,
                reason,
                raw,
            },
            Error::BadRow {
                path,
                row_group,
                row,
                reason,
            } => Entry {
                file: path,
                line: None,
                row_group: Some(*row_group),
                row: Some(*row),
                reason,
                raw,
            },
            _ => return Err(error),
        };
        let mut guard = dl
            .out
            .lock()
            .map_err(|_| Error::Internal("dead-letter lock poisoned".into()))?;
        let out = match guard.as_mut() {
            Some(out) => out,
            None => {
                // Readers opened outside a job run (e.g. directly in a test).
                let file = File::create(&dl.path).map_err(|e| Error::io(&dl.path, e))?;
                guard.insert(BufWriter::new(file))
            }
        };
        serde_json::to_writer(&mut *out, &entry)
            .map_err(|e| Error::io(&dl.path, std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(|e| Error::io(&dl.path, e))?;
        // Flushed per record: the dead letters are there even if the job dies later.
        out.flush().map_err(|e| Error::io(&dl.path, e))?;
        self.skipped.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
