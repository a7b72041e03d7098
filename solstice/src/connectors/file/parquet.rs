//! Parquet: row groups split across subtasks, rows decoded from Arrow record batches with
//! `serde_arrow`, and a writer whose Arrow schema is derived from the record type.

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

/// Reads one row group (opened at the first read, which gives the batch size).
pub(crate) struct ParquetReader<T> {
    group: RowGroup,
    /// Rows to skip: read before the checkpoint restored.
    skip: usize,
    current: Option<Open>,
    rejects: Rejects,
    _t: PhantomData<fn() -> T>,
}

impl<T> ParquetReader<T> {
    /// A reader of `group`, skipping its first `skip` rows.
    pub(crate) fn new(group: RowGroup, skip: usize, rejects: Rejects) -> Self {
        ParquetReader {
            group,
            skip,
            current: None,
            rejects,
            _t: PhantomData,
        }
    }

    /// Rows of the row group read so far.
    pub(crate) fn position(&self) -> u64 {
        self.current.as_ref().map_or(self.skip, |c| c.row) as u64
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
    /// Reads the next batch of at most `max` rows; `false` once the row group is read.
    pub(crate) fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool> {
        let cur = match &mut self.current {
            Some(c) => c,
            None => self
                .current
                .insert(open(self.group.clone(), max.max(1), self.skip)?),
        };
        let batch = match cur.reader.next() {
            Some(Ok(batch)) => batch,
            Some(Err(e)) => {
                return Err(Error::BadFile {
                    path: cur.group.path.clone(),
                    reason: format!("row group {}: {e}", cur.group.index),
                })
            }
            None => return Ok(false),
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
        Ok(true)
    }
}

impl RowGroup {
    /// The row group's name ([`crate::core::connector::Source::splits`]).
    pub(crate) fn key(&self) -> String {
        format!("{}#{}", self.path.display(), self.index)
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
