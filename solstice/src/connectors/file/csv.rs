//! CSV: whole files per subtask (quoted fields may span lines), a serde reader matching columns
//! by header name, and a writer with a header row.

use std::fs::File;
use std::io::BufReader;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::options::CsvOptions;
use super::reject::Rejects;
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

/// Reads the records of one CSV file (a file is one split: quoted fields may span lines).
pub(crate) struct CsvReader<T> {
    path: PathBuf,
    reader: csv::Reader<BufReader<File>>,
    headers: Option<csv::ByteRecord>,
    record: csv::ByteRecord,
    delimiter: char,
    rejects: Rejects,
    _t: PhantomData<fn() -> T>,
}

impl<T> CsvReader<T> {
    /// Opens `path`, resuming at byte offset `resume` (a record's start) if given.
    pub(crate) fn open(
        path: PathBuf,
        options: &CsvOptions,
        rejects: Rejects,
        resume: Option<u64>,
    ) -> Result<Self> {
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(byte(options.delimiter, "delimiter")?)
            .quote(byte(options.quote, "quote")?)
            .has_headers(options.header)
            .flexible(true)
            .from_reader(BufReader::with_capacity(256 << 10, file));
        let headers = if options.header {
            let h = reader
                .byte_headers()
                .map_err(|e| csv_error(&path, 1, &e))?
                .clone();
            Some(h)
        } else {
            None
        };
        if let Some(byte) = resume.filter(|&b| b > 0) {
            // Lines are counted from the file's start, so that errors name the right one.
            let line = super::jsonl::line_at(&path, byte)?;
            let mut at = csv::Position::new();
            at.set_byte(byte).set_line(line);
            reader.seek(at).map_err(|e| csv_error(&path, line, &e))?;
        }
        Ok(CsvReader {
            path,
            reader,
            headers,
            record: csv::ByteRecord::new(),
            delimiter: options.delimiter,
            rejects,
            _t: PhantomData,
        })
    }

    /// The byte offset of the next record.
    pub(crate) fn position(&self) -> u64 {
        self.reader.position().byte()
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

impl<T: DeserializeOwned + Send + 'static> CsvReader<T> {
    /// Reads up to `max` records; `false` once the file is read to the end.
    pub(crate) fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool> {
        let target = out.len() + max;
        while out.len() < target {
            let more = match self.reader.read_byte_record(&mut self.record) {
                Ok(more) => more,
                Err(e) => {
                    let error = csv_error(&self.path, 0, &e);
                    if matches!(error, Error::Io { .. }) {
                        return Err(error);
                    }
                    self.rejects.reject(error, "")?;
                    continue;
                }
            };
            if !more {
                return Ok(false);
            }
            let line = self.record.position().map_or(0, |p| p.line());
            let expected = self.headers.as_ref().map(|h| h.len());
            let decoded = match expected {
                Some(n) if n != self.record.len() => {
                    Err(format!("expected {n} fields, found {}", self.record.len()))
                }
                _ => self
                    .record
                    .deserialize::<T>(self.headers.as_ref())
                    .map_err(|e| e.to_string()),
            };
            match decoded {
                Ok(record) => out.push(record),
                Err(reason) => {
                    let error = Error::BadRecord {
                        path: self.path.clone(),
                        line,
                        reason,
                    };
                    self.rejects
                        .reject(error, &raw(&self.record, self.delimiter))?;
                }
            }
        }
        Ok(true)
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
