//! Parquet: row groups split across subtasks, rows decoded from Arrow record batches with
//! `serde_arrow`, and a writer whose Arrow schema is derived from the record type.

use std::collections::VecDeque;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_arrow::schema::{SchemaLike, TracingOptions};

use super::options::{Compression, ParquetOptions};
use super::reject::Rejects;
use crate::core::connector::{Positions, FINISHED};
use crate::error::{Error, Result};

/// One row group of one file.
#[derive(Clone, Debug)]
pub(crate) struct RowGroup {
    pub path: PathBuf,
    pub index: usize,
}

fn bad_file(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        reason: format!("not a readable Parquet file: {e}"),
    }
}

/// Reads the footers of `files` and lists their row groups, in file order.
pub(crate) fn row_groups(files: &[(PathBuf, u64)]) -> Result<Vec<RowGroup>> {
    let mut out = Vec::new();
    for (path, _) in files {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad_file(path, e))?;
        let n = builder.metadata().num_row_groups();
        out.extend((0..n).map(|index| RowGroup {
            path: path.clone(),
            index,
        }));
    }
    Ok(out)
}

struct Open {
    group: RowGroup,
    reader: ParquetRecordBatchReader,
    /// Rows of the row group read so far.
    row: usize,
}

/// Reads the row groups of one subtask.
pub(crate) struct ParquetReader<T> {
    groups: VecDeque<RowGroup>,
    /// Restored: rows of a row group already read.
    resume: std::collections::HashMap<String, usize>,
    /// Row groups read to the end.
    done: Vec<RowGroup>,
    current: Option<Open>,
    rejects: Rejects,
    _t: PhantomData<fn() -> T>,
}

impl<T> ParquetReader<T> {
    pub(crate) fn new(groups: Vec<RowGroup>, rejects: Rejects) -> Self {
        ParquetReader {
            groups: groups.into(),
            resume: std::collections::HashMap::new(),
            done: Vec::new(),
            current: None,
            rejects,
            _t: PhantomData,
        }
    }
}

fn open(group: RowGroup, batch_size: usize, skip: usize) -> Result<Open> {
    let file = File::open(&group.path).map_err(|e| Error::io(&group.path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| {
            b.with_row_groups(vec![group.index])
                .with_batch_size(batch_size)
                .with_offset(skip)
                .build()
        })
        .map_err(|e| bad_file(&group.path, e))?;
    Ok(Open {
        group,
        reader,
        row: skip,
    })
}

impl<T: DeserializeOwned + Send + 'static> ParquetReader<T> {
    pub(crate) fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool> {
        loop {
            let cur = match &mut self.current {
                Some(c) => c,
                None => match self.groups.pop_front() {
                    Some(g) => {
                        let skip = self.resume.get(&g.key()).copied().unwrap_or(0);
                        self.current.insert(open(g, max.max(1), skip)?)
                    }
                    None => return Ok(false),
                },
            };
            let batch = match cur.reader.next() {
                Some(Ok(batch)) => batch,
                Some(Err(e)) => {
                    return Err(Error::BadFile {
                        path: cur.group.path.clone(),
                        reason: format!("row group {}: {e}", cur.group.index),
                    })
                }
                None => {
                    if let Some(cur) = self.current.take() {
                        self.done.push(cur.group);
                    }
                    continue;
                }
            };
            let rows = batch.num_rows();
            let deserializer = || {
                serde_arrow::Deserializer::from_record_batch(&batch)
                    .map_err(|e| bad_file(&cur.group.path, e))
            };
            match Vec::<T>::deserialize(deserializer()?) {
                Ok(records) => out.extend(records),
                Err(_) => {
                    let de = deserializer()?;
                    // Row by row, to name (or skip) exactly the rows that do not fit `T`.
                    for i in 0..rows {
                        let Some(item) = de.get(i) else { break };
                        match T::deserialize(item) {
                            Ok(record) => out.push(record),
                            Err(e) => {
                                let raw = de
                                    .get(i)
                                    .and_then(|it| serde_json::Value::deserialize(it).ok())
                                    .map(|v| v.to_string())
                                    .unwrap_or_default();
                                let error = Error::BadRow {
                                    path: cur.group.path.clone(),
                                    row_group: cur.group.index,
                                    row: cur.row + i,
                                    reason: e.to_string(),
                                };
                                self.rejects.reject(error, &raw)?;
                            }
                        }
                    }
                }
            }
            cur.row += rows;
            return Ok(true);
        }
    }
}

impl RowGroup {
    /// The row group's name in checkpointed positions.
    fn key(&self) -> String {
        format!("{}#{}", self.path.display(), self.index)
    }
}

impl<T> ParquetReader<T> {
    /// Applies restored positions: finished row groups stay finished, the others skip the rows
    /// already read.
    pub(crate) fn restore(&mut self, positions: &Positions) {
        let mut groups = VecDeque::new();
        for group in self.groups.drain(..) {
            match positions.get(&group.key()) {
                Some(&FINISHED) => self.done.push(group),
                Some(&rows) if rows > 0 => {
                    self.resume.insert(group.key(), rows as usize);
                    groups.push_back(group);
                }
                _ => groups.push_back(group),
            }
        }
        self.groups = groups;
    }

    /// Row group → rows read, or `FINISHED`.
    pub(crate) fn position(&self) -> Positions {
        let mut at: Positions = self.done.iter().map(|g| (g.key(), FINISHED)).collect();
        if let Some(cur) = &self.current {
            at.insert(cur.group.key(), cur.row as u64);
        }
        at.extend(self.groups.iter().map(|g| (g.key(), 0)));
        at
    }
}

/// Writes one subtask's Parquet part file.
pub(crate) struct ParquetWriter {
    fields: Vec<arrow::datatypes::FieldRef>,
    out: Option<ArrowWriter<File>>,
}

/// The Arrow fields of record type `T`, traced from its `Deserialize` impl.
pub(crate) fn fields_of<T: DeserializeOwned>(
    stage: &str,
) -> Result<Vec<arrow::datatypes::FieldRef>> {
    let options = TracingOptions::default()
        .allow_null_fields(true)
        .strings_as_large_utf8(false)
        .sequence_as_large_list(false);
    Vec::<arrow::datatypes::FieldRef>::from_type::<T>(options).map_err(|e| Error::Encode {
        stage: stage.to_string(),
        reason: format!("cannot derive a Parquet schema from the record type: {e}"),
    })
}

impl ParquetWriter {
    pub(crate) fn create(
        file: File,
        fields: Vec<arrow::datatypes::FieldRef>,
        options: &ParquetOptions,
        temp: &Path,
    ) -> Result<ParquetWriter> {
        let codec = match options.compression {
            Compression::None => Codec::UNCOMPRESSED,
            Compression::Snappy => Codec::SNAPPY,
            Compression::Zstd => Codec::ZSTD(ZstdLevel::default()),
        };
        let props = WriterProperties::builder()
            .set_compression(codec)
            .set_max_row_group_row_count(Some(options.row_group_size.max(1)))
            .build();
        let schema = Arc::new(arrow::datatypes::Schema::new(fields.clone()));
        let out = ArrowWriter::try_new(file, schema, Some(props))
            .map_err(|e| Error::io(temp, std::io::Error::other(e)))?;
        Ok(ParquetWriter {
            fields,
            out: Some(out),
        })
    }

    pub(crate) fn write<T: Serialize>(
        &mut self,
        batch: &mut Vec<T>,
        temp: &Path,
        stage: &str,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let records =
            serde_arrow::to_record_batch(&self.fields, batch).map_err(|e| Error::Encode {
                stage: stage.to_string(),
                reason: e.to_string(),
            })?;
        batch.clear();
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| Error::Internal("write after finish".into()))?;
        out.write(&records)
            .map_err(|e| Error::io(temp, std::io::Error::other(e)))
    }

    /// Writes the footer, and with `sync` makes the file durable.
    pub(crate) fn finish(&mut self, temp: &Path, sync: bool) -> Result<()> {
        let Some(out) = self.out.take() else {
            return Ok(());
        };
        let file = out
            .into_inner()
            .map_err(|e| Error::io(temp, std::io::Error::other(e)))?;
        super::sync_if(&file, sync, temp)
    }
}
