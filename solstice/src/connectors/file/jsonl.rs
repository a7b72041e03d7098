//! JSON lines: byte-range splits on line boundaries, a line reader, and a writer.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::reject::Rejects;
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

impl Split {
    /// The split's name ([`crate::core::connector::Source::splits`]).
    pub(crate) fn key(&self) -> String {
        format!("{}@{}", self.path.display(), self.start)
    }
}

/// Reads the lines of one JSONL split.
pub(crate) struct JsonlReader<T> {
    path: PathBuf,
    reader: BufReader<File>,
    /// The offset of the next line to read.
    pos: u64,
    end: u64,
    /// Offset of the split's first line, and its line number once computed (only on errors).
    first: u64,
    first_line: Option<u64>,
    lines: u64,
    line: Vec<u8>,
    rejects: Rejects,
    _t: PhantomData<fn() -> T>,
}

impl<T> JsonlReader<T> {
    /// Opens `split` (at its `resume` offset, if set).
    pub(crate) fn open(split: Split, rejects: Rejects) -> Result<Self> {
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
        Ok(JsonlReader {
            path: split.path,
            reader,
            pos,
            end: split.end,
            first: pos,
            first_line: if pos == 0 { Some(1) } else { None },
            lines: 0,
            line: Vec::new(),
            rejects,
            _t: PhantomData,
        })
    }

    /// The byte offset of the next line to read.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }
}

/// The 1-based line number of the line starting at byte `offset` of `path`.
pub(super) fn line_at(path: &Path, offset: u64) -> Result<u64> {
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

impl<T: DeserializeOwned + Send + 'static> JsonlReader<T> {
    /// Reads up to `max` records; `false` once the split is read to the end.
    pub(crate) fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool> {
        let target = out.len() + max;
        while out.len() < target {
            if self.pos >= self.end {
                return Ok(false);
            }
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Error::io(&self.path, e))?;
            if n == 0 {
                return Ok(false);
            }
            self.pos += n as u64;
            self.lines += 1;
            let text = self.line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<T>(text) {
                Ok(record) => out.push(record),
                Err(e) => {
                    let first = match self.first_line {
                        Some(l) => l,
                        None => *self.first_line.insert(line_at(&self.path, self.first)?),
                    };
                    let error = Error::BadRecord {
                        path: self.path.clone(),
                        line: first + self.lines - 1,
                        reason: e.to_string(),
                    };
                    self.rejects.reject(error, &String::from_utf8_lossy(text))?;
                }
            }
        }
        Ok(self.pos < self.end)
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
