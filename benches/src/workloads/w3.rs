//! W3, ETL: JSON-lines orders → keep `amount > 50` → project to `{id, user, amount}` → JSON-lines
//! files. The checksum digests the output lines, read back after the run.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use solstice::prelude::*;

use super::{in_threads, Outcome, RunCtx};
use crate::data::{for_each_line, line_ranges, orders_path, Order, Sale};
use crate::digest::digest_part_files;
use crate::error::BenchError;

/// Orders above this amount are kept.
pub const MIN_AMOUNT: f64 = 50.0;

/// The Solstice pipeline of W3.
#[solstice::pipeline]
pub mod etl {
    use super::*;

    /// Orders, parsed from JSON lines.
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

    /// Writes JSON lines.
    #[sink]
    pub fn sales(cfg: &SinkConfig) -> Result<FileSink<Sale>> {
        FileSink::from_config(cfg)
    }

    dag! { orders -> large -> project -> sales }
}

/// Runs W3 through Solstice.
pub fn solstice(ctx: &RunCtx) -> crate::Result<Outcome> {
    let input = orders_path(&ctx.data, ctx.records);
    let out = ctx.fresh_out()?;
    let (result, elapsed) =
        ctx.run_pipeline::<etl::Pipeline>("w3", &[("orders", &input)], &[("sales", &out)])?;
    Ok(Outcome {
        elapsed,
        checksum: digest_part_files(&out)?.value(),
        crossed: super::crossed(&result),
    })
}

/// The hand-written W3 over one byte range of the input, into one output file. Like Solstice's
/// file sink, it makes the output durable (`sync_all`) before returning.
fn etl_range(input: &Path, range: (u64, u64), output: &Path) -> crate::Result<()> {
    let file = File::create(output).map_err(|e| BenchError::io(output, e))?;
    let mut out = BufWriter::with_capacity(256 << 10, file);
    for_each_line(input, range, |line| {
        let order: Order = serde_json::from_slice(line).map_err(|e| BenchError::json(input, e))?;
        if order.amount > MIN_AMOUNT {
            serde_json::to_writer(&mut out, &Sale::from(order))
                .map_err(|e| BenchError::json(output, e))?;
            out.write_all(b"\n")
                .map_err(|e| BenchError::io(output, e))?;
        }
        Ok(())
    })?;
    out.flush().map_err(|e| BenchError::io(output, e))?;
    out.get_ref()
        .sync_all()
        .map_err(|e| BenchError::io(output, e))
}

/// Runs the hand-written W3: `BufReader` lines + serde_json + `BufWriter`, one byte range of the
/// input and one output file per thread.
pub fn hand(ctx: &RunCtx) -> crate::Result<Outcome> {
    let input = orders_path(&ctx.data, ctx.records);
    let out = ctx.fresh_out()?;
    let start = Instant::now();
    let ranges = line_ranges(&input, ctx.threads)?;
    in_threads(ctx.threads, |i| {
        etl_range(&input, ranges[i], &out.join(format!("part-{i:05}.jsonl")))
    })?;
    let elapsed = start.elapsed();
    Ok(Outcome {
        elapsed,
        checksum: digest_part_files(&out)?.value(),
        crossed: 0,
    })
}
