//! Who owns a file sink's output directory, and what a run starting does with what it finds.
//!
//! A sink directory holds part files (`part-…`), the staging files of runs in progress
//! (`.part-….inprogress`, `.part-….pending`) and a marker, `.solstice-sink.json`, naming the job
//! whose run wrote it last and the tag its file names carry. The part files of that run and of
//! its restarts and restores (its *lineage*) are named
//!
//! ```text
//! part-{subtask:05}[-{checkpoint:08}][-{tag}].{ext}
//! ```
//!
//! with the checkpoint that published them when the job takes checkpoints, and a tag (`r` and
//! eight hex digits) only in `append` mode, so that appended runs never reuse a name.
//!
//! - A **new** run refuses part files already there ([`SinkMode::Error`]), removes them
//!   ([`SinkMode::Overwrite`]) or leaves them ([`SinkMode::Append`]); starting over (`--fresh`)
//!   first removes the part files of the job's own lineage. It then writes the marker.
//! - A **restored** run keeps its lineage's part files up to the restored checkpoint and
//!   removes those published after it, and treats every other part file by the mode.
//!
//! Either way, staging files the run does not keep are removed.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::connector::{RunStart, SinkMode};
use crate::error::{Error, Result};

use super::SINK_MARKER as MARKER;

/// The marker: which job's lineage the directory's part files belong to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker {
    /// The job id.
    job: String,
    /// The tag the lineage's file names carry (`append` mode), if any.
    tag: Option<String>,
}

/// A part file name's fields; `None` for names that do not follow the scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PartName {
    pub(super) subtask: usize,
    pub(super) checkpoint: Option<u64>,
    pub(super) tag: Option<String>,
}

impl PartName {
    /// Parses `part-{subtask}[-{checkpoint}][-{tag}].{ext}` (any extension).
    pub(super) fn parse(name: &str) -> Option<PartName> {
        let stem = name.strip_prefix("part-")?.split_once('.')?.0;
        let mut fields = stem.split('-');
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let subtask = fields.next().filter(|s| digits(s))?.parse().ok()?;
        let mut part = PartName {
            subtask,
            checkpoint: None,
            tag: None,
        };
        let mut next = fields.next();
        if let Some(n) = next.filter(|s| digits(s)) {
            part.checkpoint = Some(n.parse().ok()?);
            next = fields.next();
        }
        if let Some(tag) = next {
            if !is_tag(tag) {
                return None;
            }
            part.tag = Some(tag.to_string());
        }
        fields.next().is_none().then_some(part)
    }
}

/// `r` and eight lowercase hex digits.
fn is_tag(s: &str) -> bool {
    s.len() == 9
        && s.starts_with('r')
        && s[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `-{tag}` for a tagged lineage, nothing otherwise: what file names of the lineage end with.
pub(super) fn suffix(tag: Option<&str>) -> String {
    tag.map(|t| format!("-{t}")).unwrap_or_default()
}

/// What a directory holds.
struct Found {
    marker: Option<Marker>,
    /// Part files: name and parsed fields.
    parts: Vec<(String, Option<PartName>)>,
    /// Staging files (hidden, `.part-…` ending in `.inprogress` or `.pending`).
    staging: Vec<String>,
}

impl Found {
    /// The part files of job `job`'s lineage (per the marker); with `checkpointed`, only those
    /// a checkpoint published.
    fn lineage(&self, job: &str, checkpointed: bool) -> HashSet<&str> {
        let Some(marker) = self.marker.as_ref().filter(|m| m.job == job) else {
            return HashSet::new();
        };
        self.parts
            .iter()
            .filter(|(_, p)| {
                p.as_ref().is_some_and(|p| {
                    p.tag == marker.tag && (!checkpointed || p.checkpoint.is_some())
                })
            })
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// The output directory of one file sink, as a run starting sees it.
#[derive(Clone, Debug)]
pub(super) struct OutputDir {
    pub(super) dir: PathBuf,
    pub(super) mode: SinkMode,
    /// The sink stage's name.
    pub(super) stage: String,
    /// The config file, or the `--set` that set the path.
    pub(super) origin: String,
}

impl OutputDir {
    fn scan(&self) -> Result<Found> {
        let mut found = Found {
            marker: None,
            parts: Vec::new(),
            staging: Vec::new(),
        };
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == MARKER {
                found.marker = Some(self.read_marker(&entry.path())?);
            } else if name.starts_with("part-") {
                let parsed = PartName::parse(&name);
                found.parts.push((name, parsed));
            } else if name.starts_with(".part-")
                && (name.ends_with(".inprogress") || name.ends_with(".pending"))
            {
                found.staging.push(name);
            }
        }
        found.parts.sort_by(|a, b| a.0.cmp(&b.0));
        found.staging.sort();
        Ok(found)
    }

    fn read_marker(&self, path: &Path) -> Result<Marker> {
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            reason: format!(
                "not a Solstice sink marker ({e}); it names the job that wrote {}: remove it \
                 together with the part files, or fix it",
                self.dir.display()
            ),
        })
    }

    fn refuse(&self, message: String) -> Error {
        Error::OutputExists {
            key: format!("sinks.{}.path", self.stage),
            origin: self.origin.clone(),
            message,
        }
    }

    /// Refuses `start` when the directory holds part files it does not account for and the
    /// mode is [`SinkMode::Error`]. Changes nothing.
    pub(super) fn check_start(&self, start: &RunStart<'_>) -> Result<()> {
        let found = self.scan()?;
        let job = start.job();
        if let RunStart::Restore { checkpoint, .. } = *start {
            if let Some(other) = found.marker.as_ref().filter(|m| m.job != job) {
                return Err(self.refuse(format!(
                    "{} holds the output of job `{}`, written after checkpoint {checkpoint} of \
                     job `{job}` was taken; restoring it would mix the two. Start over with \
                     --fresh, or give the job another output directory",
                    self.dir.display(),
                    other.job
                )));
            }
        }
        if self.mode != SinkMode::Error {
            return Ok(());
        }
        let (accounted, whose, fresh_helps) = match *start {
            RunStart::New { fresh, .. } => {
                let own = found.lineage(job, false);
                let all_own = own.len() == found.parts.len();
                let whose = match &found.marker {
                    Some(m) if m.job != job => format!("written by job `{}`", m.job),
                    _ if !fresh && all_own => {
                        format!("published by an earlier run of job `{job}`")
                    }
                    _ if !fresh && !own.is_empty() => format!("not all written by job `{job}`"),
                    _ => format!("not written by job `{job}`"),
                };
                let accounted = if fresh { own } else { HashSet::new() };
                (accounted, whose, !fresh && all_own)
            }
            RunStart::Restore { checkpoint, .. } => (
                found.lineage(job, true),
                format!(
                    "that no checkpoint of job `{job}` up to checkpoint {checkpoint} published"
                ),
                false,
            ),
        };
        let others: Vec<&str> = found
            .parts
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !accounted.contains(*n))
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        Err(self.refuse(format!(
            "{} already holds {} part file(s) {whose} ({}); set `sinks.{}.mode: overwrite` \
             to replace them or `append` to keep them and add to them{}",
            self.dir.display(),
            others.len(),
            name_list(&others),
            self.stage,
            if fresh_helps {
                ", or start over with --fresh (discards the job's earlier output and checkpoints)"
            } else {
                ""
            }
        )))
    }

    /// Makes the directory what `start` says (see the module docs); returns the tag the run's
    /// file names carry.
    pub(super) fn begin(&self, start: &RunStart<'_>) -> Result<Option<String>> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let found = self.scan()?;
        let job = start.job();
        let mut remove: Vec<&str> = Vec::new();
        let tag = match *start {
            RunStart::New { fresh, .. } => {
                remove.extend(found.staging.iter().map(String::as_str));
                if self.mode == SinkMode::Overwrite {
                    remove.extend(found.parts.iter().map(|(n, _)| n.as_str()));
                } else if fresh {
                    remove.extend(found.lineage(job, false));
                }
                let tag = (self.mode == SinkMode::Append).then(|| new_tag(&found));
                self.write_marker(&Marker {
                    job: job.to_string(),
                    tag: tag.clone(),
                })?;
                tag
            }
            RunStart::Restore {
                checkpoint,
                published,
                ..
            } => {
                let kept = |name: &str| {
                    published
                        .iter()
                        .any(|t| Path::new(t) == self.dir.join(name))
                };
                remove.extend(
                    found
                        .staging
                        .iter()
                        .map(String::as_str)
                        .filter(|n| !kept(n)),
                );
                let tag = found.marker.as_ref().and_then(|m| m.tag.clone());
                let lineage = found.lineage(job, true);
                for (name, parsed) in &found.parts {
                    let after = lineage.contains(name.as_str())
                        && parsed
                            .as_ref()
                            .and_then(|p| p.checkpoint)
                            .is_some_and(|c| c > checkpoint);
                    let foreign = !lineage.contains(name.as_str());
                    if after || (foreign && self.mode == SinkMode::Overwrite) {
                        remove.push(name);
                    }
                }
                if found.marker.is_none() {
                    self.write_marker(&Marker {
                        job: job.to_string(),
                        tag: None,
                    })?;
                }
                tag
            }
        };
        let parts = remove.iter().filter(|n| n.starts_with("part-")).count();
        for name in &remove {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        if parts > 0 {
            tracing::info!(
                sink = %self.stage,
                dir = %self.dir.display(),
                "removed {parts} part file(s) {}",
                match start {
                    RunStart::New { fresh: true, .. } if self.mode != SinkMode::Overwrite =>
                        "the job published before (--fresh)",
                    RunStart::New { .. } => "already there (mode overwrite)",
                    RunStart::Restore { .. } => "published after the restored checkpoint, or foreign (mode overwrite)",
                }
            );
        }
        Ok(tag)
    }

    fn write_marker(&self, marker: &Marker) -> Result<()> {
        let path = self.dir.join(MARKER);
        let temp = self.dir.join(format!("{MARKER}.tmp"));
        let text = serde_json::to_vec(marker).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(&temp, text).map_err(|e| Error::io(&temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| Error::io(&path, e))
    }
}

/// A tag no part file in `found` carries: from the clock, moved on while taken.
fn new_tag(found: &Found) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut n = (nanos ^ (nanos >> 32) ^ u64::from(std::process::id())) as u32;
    loop {
        let tag = format!("r{n:08x}");
        let taken = found
            .parts
            .iter()
            .any(|(_, p)| p.as_ref().and_then(|p| p.tag.as_deref()) == Some(tag.as_str()));
        if !taken {
            return tag;
        }
        n = n.wrapping_add(1);
    }
}

/// The first few names, and how many more.
fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 3;
    let mut text = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_parse() {
        let p = |s| PartName::parse(s);
        assert_eq!(
            p("part-00003.jsonl"),
            Some(PartName {
                subtask: 3,
                checkpoint: None,
                tag: None
            })
        );
        assert_eq!(
            p("part-00003-00000012.csv"),
            Some(PartName {
                subtask: 3,
                checkpoint: Some(12),
                tag: None
            })
        );
        assert_eq!(
            p("part-00000-00000001-r0123abcd.parquet").and_then(|p| p.tag),
            Some("r0123abcd".into())
        );
        assert_eq!(
            p("part-00001-r0123abcd.jsonl").map(|p| (p.checkpoint, p.tag)),
            Some((None, Some("r0123abcd".into())))
        );
        // Names of other writers are part files without fields.
        assert_eq!(p("part-00000-5f1c2d3e-uuid.snappy.parquet"), None);
        assert_eq!(p("part-x.jsonl"), None);
        assert_eq!(p("part-00000"), None);
    }
}
