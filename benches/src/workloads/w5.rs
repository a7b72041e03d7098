//! W5, Parquet ETL: the W3 computation with Parquet in and out. Orders (the W3 orders, as
//! Parquet with several row groups) → keep `amount > 50` → project to `{id, user, amount}` →
//! Parquet files. The checksum digests the output rows, read back after the run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use solstice::prelude::*;

use super::{in_threads, Outcome, RunCtx};
use crate::data::{arrow_fields, orders_parquet_path, parquet_writer, Order, Sale};
use crate::digest::{hash_bytes, Digest};
use crate::error::BenchError;
use crate::workloads::w3::MIN_AMOUNT;

/// The Solstice pipeline of W5.
#[solstice::pipeline]
pub mod parquet_etl {
    use super::*;

    /// Orders, decoded from Parquet row groups.
    #[source]
    pub fn orders(cfg: &SourceConfig) -> Result<FileSource<Order>> {
        FileSource::from_config(cfg)
    }

    /// Keeps large orders.
    #[filter]
    pub fn large(o: &Order) -> bool {
        o.amount > MIN_AMOUNT
    }

    /// Drops the tags.
    #[map]
    pub fn project(o: Order) -> Sale {
        Sale::from(o)
    }

    /// Writes Parquet (`format: parquet` is set by the benchmark).
    #[sink]
    pub fn sales(cfg: &SinkConfig) -> Result<FileSink<Sale>> {
        FileSink::from_config(cfg)
    }

    dag! { orders -> large -> project -> sales }
}

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> BenchError {
    BenchError::Parquet(format!("{}: {e}", path.display()))
}

/// The digest of every row of the `part-*` Parquet files in `dir`, one row group at a time.
fn digest_parquet_parts(dir: &Path) -> crate::Result<u64> {
    let mut digest = Digest::default();
    let entries = std::fs::read_dir(dir).map_err(|e| BenchError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| BenchError::io(dir, e))?.path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        {
            continue;
        }
        let file = File::open(&path).map_err(|e| BenchError::io(&path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| parquet_error(&path, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| parquet_error(&path, e))?;
            let rows: Vec<Sale> =
                serde_arrow::from_record_batch(&batch).map_err(|e| parquet_error(&path, e))?;
            for row in rows {
                let json = serde_json::to_vec(&row).map_err(|e| BenchError::json(&path, e))?;
                digest.add(hash_bytes(&json));
            }
        }
    }
    Ok(digest.value())
}

/// Runs W5 through Solstice.
pub fn solstice(ctx: &RunCtx) -> crate::Result<Outcome> {
    let input = orders_parquet_path(&ctx.data, ctx.records);
    let out = ctx.fresh_out()?;
    // The sink's format and row groups win over the user's overrides.
    let mut overrides = ctx.overrides.clone();
    overrides.push("sinks.sales.format=parquet".into());
    overrides.push(format!(
        "sinks.sales.parquet.row_group_size={}",
        crate::data::PARQUET_ROW_GROUP
    ));
    let ctx = RunCtx {
        overrides,
        ..ctx.clone()
    };
    let config = ctx.config(&[("orders", &input)], &[("sales", &out)])?;
    let start = Instant::now();
    parquet_etl::run(config)?;
    let elapsed = start.elapsed();
    Ok(Outcome {
        elapsed,
        checksum: digest_parquet_parts(&out)?,
        crossed: 0,
    })
}

/// The hand-written W5 over the row groups `i, i + parts, ...` of the input, into one file:
/// Arrow batches decoded into `Order`s with serde_arrow, filtered and projected, encoded back
/// and written with `ArrowWriter`; durable (`sync_all`) before returning, like `FileSink`.
fn etl_row_groups(input: &Path, i: usize, parts: usize, output: &Path) -> crate::Result<()> {
    let file = File::open(input).map_err(|e| BenchError::io(input, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(input, e))?;
    let groups: Vec<usize> = (0..builder.metadata().num_row_groups())
        .filter(|g| g % parts == i)
        .collect();
    let reader = builder
        .with_row_groups(groups)
        .with_batch_size(1024)
        .build()
        .map_err(|e| parquet_error(input, e))?;
    let fields = arrow_fields::<Sale>()?;
    let out = File::create(output).map_err(|e| BenchError::io(output, e))?;
    let mut writer = parquet_writer(out, &fields)?;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(input, e))?;
        let orders: Vec<Order> =
            serde_arrow::from_record_batch(&batch).map_err(|e| parquet_error(input, e))?;
        let sales: Vec<Sale> = orders
            .into_iter()
            .filter(|o| o.amount > MIN_AMOUNT)
            .map(Sale::from)
            .collect();
        if sales.is_empty() {
            continue;
        }
        let batch =
            serde_arrow::to_record_batch(&fields, &sales).map_err(|e| parquet_error(output, e))?;
        writer.write(&batch).map_err(|e| parquet_error(output, e))?;
    }
    let file = writer.into_inner().map_err(|e| parquet_error(output, e))?;
    file.sync_all().map_err(|e| BenchError::io(output, e))
}

/// Runs the hand-written W5: one share of the row groups and one output file per thread.
pub fn hand(ctx: &RunCtx) -> crate::Result<Outcome> {
    let input = orders_parquet_path(&ctx.data, ctx.records);
    let out = ctx.fresh_out()?;
    let start = Instant::now();
    let outputs: Vec<PathBuf> = (0..ctx.threads)
        .map(|i| out.join(format!("part-{i:05}.parquet")))
        .collect();
    in_threads(ctx.threads, |i| {
        etl_row_groups(&input, i, ctx.threads, &outputs[i])
    })?;
    let elapsed = start.elapsed();
    Ok(Outcome {
        elapsed,
        checksum: digest_parquet_parts(&out)?,
        crossed: 0,
    })
}
