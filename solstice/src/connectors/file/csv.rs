//! CSV: whole files per subtask (quoted fields may span lines), a serde reader matching columns
//! by header name, and a writer with a header row.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::options::CsvOptions;
use super::reject::Rejects;
use crate::core::connector::{Positions, FINISHED};
use crate::error::{Error, Result};

fn byte(c: char, what: &str) -> Result<u8> {
    u8::try_from(c)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| Error::Plan(format!("csv {what} `{c}` is not one ASCII character")))
}

/// Checks that the dialect's characters are single ASCII bytes.
pub(crate) fn check(options: &CsvOptions) -> std::result::Result<(), String> {
    byte(options.delimiter, "delimiter").map_err(|e| e.to_string())?;
    byte(options.quote, "quote").map_err(|e| e.to_string())?;
    Ok(())
}

struct Open {
    path: PathBuf,
    reader: csv::Reader<BufReader<File>>,
    headers: Option<csv::ByteRecord>,
}

/// Reads the CSV files of one subtask.
pub(crate) struct CsvReader<T> {
    files: VecDeque<PathBuf>,
    /// Restored: where to resume in a file (byte offset and line of the next record).
    resume: std::collections::HashMap<PathBuf, (u64, u64)>,
    /// Files read to the end.
    done: Vec<PathBuf>,
    current: Option<Open>,
    record: csv::ByteRecord,
    options: CsvOptions,
    rejects: Rejects,
    _t: PhantomData<fn() -> T>,
}

impl<T> CsvReader<T> {
    pub(crate) fn new(files: Vec<PathBuf>, options: CsvOptions, rejects: Rejects) -> Self {
        CsvReader {
            files: files.into(),
            resume: std::collections::HashMap::new(),
            done: Vec::new(),
            current: None,
            record: csv::ByteRecord::new(),
            options,
            rejects,
            _t: PhantomData,
        }
    }

    fn open(&self, path: PathBuf) -> Result<Open> {
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(byte(self.options.delimiter, "delimiter")?)
            .quote(byte(self.options.quote, "quote")?)
            .has_headers(self.options.header)
            .flexible(true)
            .from_reader(BufReader::with_capacity(256 << 10, file));
        let headers = if self.options.header {
            let h = reader
                .byte_headers()
                .map_err(|e| csv_error(&path, 1, &e))?
                .clone();
            Some(h)
        } else {
            None
        };
        if let Some(&(byte, line)) = self.resume.get(&path) {
            let mut at = csv::Position::new();
            at.set_byte(byte).set_line(line);
            reader.seek(at).map_err(|e| csv_error(&path, line, &e))?;
        }
        Ok(Open {
            path,
            reader,
            headers,
        })
    }
}

fn csv_error(path: &Path, line: u64, e: &csv::Error) -> Error {
    let line = e.position().map_or(line, |p| p.line());
    match e.kind() {
        csv::ErrorKind::Io(_) => Error::io(path, std::io::Error::other(e.to_string())),
        _ => Error::BadRecord {
            path: path.to_path_buf(),
            line,
            reason: e.to_string(),
        },
    }
}

fn raw(record: &csv::ByteRecord, delimiter: char) -> String {
    let fields: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    fields.join(&delimiter.to_string())
}

impl<T> CsvReader<T> {
    /// Applies restored positions: finished files stay finished, the others resume at their
    /// byte offset.
    pub(crate) fn restore(&mut self, positions: &Positions) {
        let mut files = VecDeque::new();
        for path in self.files.drain(..) {
            let key = path.display().to_string();
            match positions.get(&key) {
                Some(&FINISHED) => self.done.push(path),
                Some(&byte) if byte > 0 => {
                    let line = positions.get(&format!("{key}#line")).copied().unwrap_or(1);
                    self.resume.insert(path.clone(), (byte, line));
                    files.push_back(path);
                }
                _ => files.push_back(path),
            }
        }
        self.files = files;
    }
}

impl<T: DeserializeOwned + Send + 'static> CsvReader<T> {
    pub(crate) fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool> {
        let target = out.len() + max;
        while out.len() < target {
            if self.current.is_none() {
                match self.files.pop_front() {
                    Some(path) => self.current = Some(self.open(path)?),
                    None => return Ok(false),
                }
            }
            let Some(cur) = self.current.as_mut() else {
                continue;
            };
            let more = match cur.reader.read_byte_record(&mut self.record) {
                Ok(more) => more,
                Err(e) => {
                    let error = csv_error(&cur.path, 0, &e);
                    if matches!(error, Error::Io { .. }) {
                        return Err(error);
                    }
                    self.rejects.reject(error, "")?;
                    continue;
                }
            };
            if !more {
                if let Some(cur) = self.current.take() {
                    self.done.push(cur.path);
                }
                continue;
            }
            let line = self.record.position().map_or(0, |p| p.line());
            let expected = cur.headers.as_ref().map(|h| h.len());
            let decoded = match expected {
                Some(n) if n != self.record.len() => {
                    Err(format!("expected {n} fields, found {}", self.record.len()))
                }
                _ => self
                    .record
                    .deserialize::<T>(cur.headers.as_ref())
                    .map_err(|e| e.to_string()),
            };
            match decoded {
                Ok(record) => out.push(record),
                Err(reason) => {
                    let error = Error::BadRecord {
                        path: cur.path.clone(),
                        line,
                        reason,
                    };
                    self.rejects
                        .reject(error, &raw(&self.record, self.options.delimiter))?;
                }
            }
        }
        Ok(!(self.current.is_none() && self.files.is_empty()))
    }

    /// File → byte offset of the next record (and `file#line` → its line), or `FINISHED`.
    pub(crate) fn position(&self) -> Positions {
        let mut at: Positions = self
            .done
            .iter()
            .map(|p| (p.display().to_string(), FINISHED))
            .collect();
        if let Some(cur) = &self.current {
            let pos = cur.reader.position();
            at.insert(cur.path.display().to_string(), pos.byte());
            at.insert(format!("{}#line", cur.path.display()), pos.line());
        }
        at.extend(self.files.iter().map(|p| (p.display().to_string(), 0)));
        at
    }
}

/// Writes one subtask's CSV part file.
pub(crate) struct CsvWriter {
    out: csv::Writer<File>,
}

impl CsvWriter {
    pub(crate) fn create(file: File, options: &CsvOptions) -> Result<CsvWriter> {
        let out = csv::WriterBuilder::new()
            .delimiter(byte(options.delimiter, "delimiter")?)
            .quote(byte(options.quote, "quote")?)
            .has_headers(options.header)
            .buffer_capacity(256 << 10)
            .from_writer(file);
        Ok(CsvWriter { out })
    }

    pub(crate) fn write<T: Serialize>(
        &mut self,
        batch: &mut Vec<T>,
        temp: &Path,
        stage: &str,
    ) -> Result<()> {
        for record in batch.drain(..) {
            self.out.serialize(&record).map_err(|e| match e.kind() {
                csv::ErrorKind::Io(_) => Error::io(temp, std::io::Error::other(e.to_string())),
                _ => Error::Encode {
                    stage: stage.to_string(),
                    reason: e.to_string(),
                },
            })?;
        }
        Ok(())
    }

    /// Flushes the file, and with `sync` makes it durable.
    pub(crate) fn finish(&mut self, temp: &Path, sync: bool) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(temp, e))?;
        super::sync_if(self.out.get_ref(), sync, temp)
    }
}
