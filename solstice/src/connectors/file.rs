//! File connectors for JSON lines.
//!
//! [`FileSource`] reads one or more files (paths, directories or globs), cut into byte-range splits
//! on line boundaries so that several subtasks can read one large file. [`FileSink`] writes one
//! file per subtask, `part-{subtask:05}.jsonl`, under a temporary name renamed into place when the
//! subtask completes.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{SinkConfig, SourceConfig};
use crate::core::connector::{Sink, SinkWriter, Source, SourceReader};
use crate::core::Data;
use crate::error::{Error, Result};

const MIN_SPLIT: u64 = 1 << 20;
const MAX_SPLIT: u64 = 64 << 20;

/// Reads JSON lines from files into records of type `T`.
pub struct FileSource<T> {
    files: Vec<(PathBuf, u64)>,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for FileSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("files", &self.files)
            .finish()
    }
}

impl<T: DeserializeOwned + Data> FileSource<T> {
    /// The source described by `sources.<stage>` in the job config.
    pub fn from_config(cfg: &SourceConfig) -> Result<Self> {
        let paths = cfg
            .path
            .as_ref()
            .ok_or_else(|| cfg.error("path", "missing (required)"))?;
        let files = resolve(&paths.to_vec(), &cfg.stage).map_err(|e| match e {
            Error::Io { path, source } => {
                cfg.error("path", format!("{}: {source}", path.display()))
            }
            e => e,
        })?;
        Ok(FileSource {
            files,
            _t: PhantomData,
        })
    }

    /// A source over explicit paths (files, directories or globs).
    pub fn new<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Self> {
        let paths: Vec<PathBuf> = paths
            .into_iter()
            .map(|p| p.as_ref().to_path_buf())
            .collect();
        let files = resolve(&paths, "source")?;
        Ok(FileSource {
            files,
            _t: PhantomData,
        })
    }

    /// The input files, in reading order, with their sizes.
    pub fn files(&self) -> &[(PathBuf, u64)] {
        &self.files
    }
}

fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Expands paths, directories and globs into a sorted, de-duplicated list of files with sizes.
fn resolve(paths: &[PathBuf], stage: &str) -> Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for path in paths {
        let text = path.to_string_lossy();
        if is_glob(&text) {
            let entries = glob::glob(&text).map_err(|e| Error::NoInput {
                stage: stage.to_string(),
                pattern: format!("{text} (invalid glob: {e})"),
            })?;
            let before = files.len();
            for entry in entries {
                let p = entry.map_err(|e| Error::io(e.path().to_path_buf(), e.into()))?;
                if p.is_file() {
                    files.push(p);
                }
            }
            if files.len() == before {
                return Err(Error::NoInput {
                    stage: stage.to_string(),
                    pattern: text.into_owned(),
                });
            }
        } else if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            if found.is_empty() {
                return Err(Error::NoInput {
                    stage: stage.to_string(),
                    pattern: format!("{} (empty directory)", path.display()),
                });
            }
            found.sort();
            files.extend(found);
        } else {
            std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
            Ok((p, len))
        })
        .collect()
}

/// A byte range of one file; it holds the lines that start inside it.
#[derive(Clone, Debug)]
struct Split {
    path: PathBuf,
    start: u64,
    end: u64,
}

fn splits(files: &[(PathBuf, u64)], parallelism: usize) -> Vec<Split> {
    let total: u64 = files.iter().map(|(_, l)| l).sum();
    let size = (total / (parallelism as u64 * 4).max(1)).clamp(MIN_SPLIT, MAX_SPLIT);
    let mut out = Vec::new();
    for (path, len) in files {
        let mut start = 0;
        loop {
            let end = (start + size).min(*len);
            out.push(Split {
                path: path.clone(),
                start,
                end,
            });
            if end >= *len {
                break;
            }
            start = end;
        }
    }
    out
}

impl<T: DeserializeOwned + Data> Source for FileSource<T> {
    type Item = T;
    type Reader = JsonlReader<T>;

    fn open(&self, subtask: usize, parallelism: usize) -> Result<JsonlReader<T>> {
        let mine = splits(&self.files, parallelism)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % parallelism == subtask)
            .map(|(_, s)| s)
            .collect();
        Ok(JsonlReader {
            splits: mine,
            current: None,
            line: Vec::new(),
            _t: PhantomData,
        })
    }
}

struct Open {
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    end: u64,
}

/// Reads the splits of one subtask, line by line.
pub struct JsonlReader<T> {
    splits: std::collections::VecDeque<Split>,
    current: Option<Open>,
    line: Vec<u8>,
    _t: PhantomData<fn() -> T>,
}

fn open_split(split: Split) -> Result<Open> {
    let file = File::open(&split.path).map_err(|e| Error::io(&split.path, e))?;
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let mut pos = split.start;
    if split.start > 0 {
        // The line that straddles `start` belongs to the previous split: skip to its end.
        reader
            .seek(SeekFrom::Start(split.start - 1))
            .map_err(|e| Error::io(&split.path, e))?;
        let mut skipped = Vec::new();
        let n = reader
            .read_until(b'\n', &mut skipped)
            .map_err(|e| Error::io(&split.path, e))?;
        pos = split.start - 1 + n as u64;
    }
    Ok(Open {
        path: split.path,
        reader,
        pos,
        end: split.end,
    })
}

/// The 1-based line number of the line starting at byte `offset` of `path`.
pub(crate) fn line_at(path: &Path, offset: u64) -> u64 {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    let mut reader = BufReader::new(file).take(offset);
    let mut buf = vec![0u8; 64 << 10];
    let mut lines = 1;
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
    lines
}

impl<T: DeserializeOwned + Data> SourceReader<T> for JsonlReader<T> {
    fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool> {
        let target = out.len() + max;
        while out.len() < target {
            let cur = match &mut self.current {
                Some(c) => c,
                None => match self.splits.pop_front() {
                    Some(s) => self.current.insert(open_split(s)?),
                    None => return Ok(false),
                },
            };
            if cur.pos >= cur.end {
                self.current = None;
                continue;
            }
            self.line.clear();
            let n = cur
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Error::io(&cur.path, e))?;
            if n == 0 {
                self.current = None;
                continue;
            }
            let start = cur.pos;
            cur.pos += n as u64;
            let text = self.line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<T>(text) {
                Ok(record) => out.push(record),
                Err(e) => {
                    return Err(Error::BadRecord {
                        path: cur.path.clone(),
                        line: line_at(&cur.path, start),
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(!(self.current.is_none() && self.splits.is_empty()))
    }
}

/// Writes records as JSON lines, one file per sink subtask.
pub struct FileSink<T> {
    dir: PathBuf,
    stage: String,
    _t: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for FileSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink").field("dir", &self.dir).finish()
    }
}

impl<T: Serialize + Data> FileSink<T> {
    /// The sink described by `sinks.<stage>` in the job config.
    pub fn from_config(cfg: &SinkConfig) -> Result<Self> {
        let dir = cfg
            .path
            .clone()
            .ok_or_else(|| cfg.error("path", "missing (required)"))?;
        Ok(FileSink {
            dir,
            stage: cfg.stage.clone(),
            _t: PhantomData,
        })
    }

    /// A sink writing `part-*.jsonl` files into `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSink {
            dir: dir.into(),
            stage: "sink".into(),
            _t: PhantomData,
        }
    }

    /// The final path of subtask `subtask`'s file.
    pub fn part_path(&self, subtask: usize) -> PathBuf {
        self.dir.join(format!("part-{subtask:05}.jsonl"))
    }
}

fn part_index(name: &str) -> Option<usize> {
    name.strip_prefix("part-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

impl<T: Serialize + Data> Sink for FileSink<T> {
    type Item = T;
    type Writer = JsonlWriter<T>;

    fn open(&self, subtask: usize, parallelism: usize) -> Result<JsonlWriter<T>> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        if subtask == 0 {
            // Part files of an earlier run with more subtasks would otherwise mix into this output.
            let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if part_index(&name).is_some_and(|i| i >= parallelism) {
                    std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
                }
            }
        }
        let target = self.part_path(subtask);
        let temp = self
            .dir
            .join(format!(".part-{subtask:05}.jsonl.inprogress"));
        let file = File::create(&temp).map_err(|e| Error::io(&temp, e))?;
        Ok(JsonlWriter {
            out: BufWriter::with_capacity(256 << 10, file),
            temp,
            target,
            stage: self.stage.clone(),
            _t: PhantomData,
        })
    }
}

/// Writes one subtask's part file.
pub struct JsonlWriter<T> {
    out: BufWriter<File>,
    temp: PathBuf,
    target: PathBuf,
    stage: String,
    _t: PhantomData<fn(T)>,
}

impl<T: Serialize + Data> SinkWriter<T> for JsonlWriter<T> {
    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        for record in batch.drain(..) {
            serde_json::to_writer(&mut self.out, &record).map_err(|e| {
                if e.is_io() {
                    Error::io(&self.temp, std::io::Error::other(e))
                } else {
                    Error::Encode {
                        stage: self.stage.clone(),
                        reason: e.to_string(),
                    }
                }
            })?;
            self.out
                .write_all(b"\n")
                .map_err(|e| Error::io(&self.temp, e))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.temp, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&self.temp, e))?;
        std::fs::rename(&self.temp, &self.target).map_err(|e| Error::io(&self.target, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_every_line_once() {
        let dir = std::env::temp_dir().join(format!("solstice-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.jsonl");
        let mut text = String::new();
        for i in 0..200_000u64 {
            text.push_str(&format!("{i}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let src = FileSource::<u64>::new([&path]).unwrap();
        for p in [1, 2, 3, 7] {
            let mut all = Vec::new();
            for s in 0..p {
                let mut r = src.open(s, p).unwrap();
                let mut buf = Vec::new();
                while r.read_batch(&mut buf, 1000).unwrap() {}
                all.extend(buf);
            }
            all.sort_unstable();
            assert_eq!(all, (0..200_000).collect::<Vec<_>>(), "parallelism {p}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let dir = std::env::temp_dir().join(format!("solstice-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.jsonl");
        std::fs::write(&path, "1\n2\n{oops\n4\n").unwrap();
        let src = FileSource::<u64>::new([&path]).unwrap();
        let mut r = src.open(0, 1).unwrap();
        let err = r.read_batch(&mut Vec::new(), 100).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl:3:"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
