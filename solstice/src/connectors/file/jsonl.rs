//! JSON lines: byte-range splits on line boundaries, a line reader, and a writer.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::reject::Rejects;
use crate::core::connector::{Positions, FINISHED};
use crate::error::{Error, Result};

const MIN_SPLIT: u64 = 1 << 20;
const MAX_SPLIT: u64 = 64 << 20;

/// A byte range of one file; it holds the lines that start inside it.
#[derive(Clone, Debug)]
pub(crate) struct Split {
    pub path: PathBuf,
    pub start: u64,
    pub end: u64,
    /// Where a restored reader resumes: the start of the next unread line.
    pub resume: Option<u64>,
}

/// Cuts files into splits of 1–64 MiB, about 32 in all. The cut does not depend on the
/// parallelism, so positions checkpointed at one parallelism resume at another.
pub(crate) fn splits(files: &[(PathBuf, u64)]) -> Vec<Split> {
    let total: u64 = files.iter().map(|(_, l)| l).sum();
    let size = (total / 32).clamp(MIN_SPLIT, MAX_SPLIT);
    let mut out = Vec::new();
    for (path, len) in files {
        let mut start = 0;
        loop {
            let end = (start + size).min(*len);
            out.push(Split {
                path: path.clone(),
                start,
                end,
                resume: None,
            });
            if end >= *len {
                break;
            }
            start = end;
        }
    }
    out
}

struct Open {
    key: String,
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    end: u64,
    /// Offset of the split's first line, and its line number once computed (only on errors).
    first: u64,
    first_line: Option<u64>,
    lines: u64,
}

impl Split {
    /// The split's name in checkpointed positions.
    pub(crate) fn key(&self) -> String {
        format!("{}@{}", self.path.display(), self.start)
    }
}

/// Reads the JSONL splits of one subtask.
pub(crate) struct JsonlReader<T> {
    splits: VecDeque<Split>,
    /// Names of the splits read to the end.
    done: Vec<String>,
    current: Option<Open>,
    line: Vec<u8>,
    rejects: Rejects,
    _t: PhantomData<fn() -> T>,
}

impl<T> JsonlReader<T> {
    pub(crate) fn new(splits: Vec<Split>, rejects: Rejects) -> Self {
        JsonlReader {
            splits: splits.into(),
            done: Vec::new(),
            current: None,
            line: Vec::new(),
            rejects,
            _t: PhantomData,
        }
    }
}

fn open_split(split: Split) -> Result<Open> {
    let key = split.key();
    let file = File::open(&split.path).map_err(|e| Error::io(&split.path, e))?;
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let mut pos = split.start;
    if let Some(at) = split.resume {
        reader
            .seek(SeekFrom::Start(at))
            .map_err(|e| Error::io(&split.path, e))?;
        pos = at;
    } else if split.start > 0 {
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
        key,
        path: split.path,
        reader,
        pos,
        end: split.end,
        first: pos,
        first_line: if pos == 0 { Some(1) } else { None },
        lines: 0,
    })
}

/// The 1-based line number of the line starting at byte `offset` of `path`.
fn line_at(path: &Path, offset: u64) -> Result<u64> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file).take(offset);
    let mut buf = vec![0u8; 64 << 10];
    let mut lines = 1;
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}

impl<T> JsonlReader<T> {
    /// Records splits a restored checkpoint says are read completely.
    pub(crate) fn finished(&mut self, keys: Vec<String>) {
        self.done.extend(keys);
    }
}

impl<T: DeserializeOwned + Send + 'static> JsonlReader<T> {
    pub(crate) fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool> {
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
                self.done.push(std::mem::take(&mut cur.key));
                self.current = None;
                continue;
            }
            self.line.clear();
            let n = cur
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Error::io(&cur.path, e))?;
            if n == 0 {
                self.done.push(std::mem::take(&mut cur.key));
                self.current = None;
                continue;
            }
            cur.pos += n as u64;
            cur.lines += 1;
            let text = self.line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<T>(text) {
                Ok(record) => out.push(record),
                Err(e) => {
                    let first = match cur.first_line {
                        Some(l) => l,
                        None => *cur.first_line.insert(line_at(&cur.path, cur.first)?),
                    };
                    let error = Error::BadRecord {
                        path: cur.path.clone(),
                        line: first + cur.lines - 1,
                        reason: e.to_string(),
                    };
                    self.rejects.reject(error, &String::from_utf8_lossy(text))?;
                }
            }
        }
        Ok(!(self.current.is_none() && self.splits.is_empty()))
    }

    /// Split name → byte offset of the next line to read, or `FINISHED`.
    pub(crate) fn position(&self) -> Positions {
        let mut at: Positions = self.done.iter().map(|k| (k.clone(), FINISHED)).collect();
        if let Some(cur) = &self.current {
            at.insert(cur.key.clone(), cur.pos);
        }
        at.extend(self.splits.iter().map(|s| (s.key(), s.start)));
        at
    }
}

/// Writes one subtask's JSONL part file.
pub(crate) struct JsonlWriter {
    pub(crate) out: BufWriter<File>,
}

impl JsonlWriter {
    pub(crate) fn write<T: Serialize>(
        &mut self,
        batch: &mut Vec<T>,
        temp: &Path,
        stage: &str,
    ) -> Result<()> {
        for record in batch.drain(..) {
            serde_json::to_writer(&mut self.out, &record).map_err(|e| {
                if e.is_io() {
                    Error::io(temp, std::io::Error::other(e))
                } else {
                    Error::Encode {
                        stage: stage.to_string(),
                        reason: e.to_string(),
                    }
                }
            })?;
            self.out.write_all(b"\n").map_err(|e| Error::io(temp, e))?;
        }
        Ok(())
    }

    /// Flushes the file, and with `sync` makes it durable.
    pub(crate) fn finish(&mut self, temp: &Path, sync: bool) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(temp, e))?;
        super::sync_if(self.out.get_ref(), sync, temp)
    }
}
