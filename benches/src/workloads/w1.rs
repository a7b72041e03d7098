//! W1, stateless: the numbers `0..n` → `x * 2 + 1` → keep `!x.is_multiple_of(3)` → wrapping sum.

use std::time::Instant;

use solstice::prelude::*;

use super::{chunk, in_threads, range_source, Outcome, RunCtx};
use crate::sum_sink::{read_sums, SumSink};

/// The Solstice pipeline of W1.
#[solstice::pipeline]
pub mod stateless {
    use super::*;

    /// The numbers `0..n`.
    #[source]
    pub fn numbers(cfg: &SourceConfig) -> Result<RangeSource> {
        range_source(cfg)
    }

    /// `x * 2 + 1`.
    #[map]
    pub fn odd(x: u64) -> u64 {
        x.wrapping_mul(2).wrapping_add(1)
    }

    /// Drops multiples of 3.
    #[filter]
    pub fn not_multiple_of_3(x: &u64) -> bool {
        !x.is_multiple_of(3)
    }

    /// Sums what is left.
    #[sink]
    pub fn total(cfg: &SinkConfig) -> Result<SumSink> {
        SumSink::from_config(cfg)
    }

    dag! { numbers -> odd -> not_multiple_of_3 -> total }
}

/// Runs W1 through Solstice.
pub fn solstice(ctx: &RunCtx) -> crate::Result<Outcome> {
    let range = crate::data::range_path(&ctx.data, ctx.records);
    let out = ctx.fresh_out()?;
    let config = ctx.config(&[("numbers", &range)], &[("total", &out)])?;
    let start = Instant::now();
    stateless::run(config)?;
    let elapsed = start.elapsed();
    let (sum, _) = read_sums(&out)?;
    Ok(Outcome {
        elapsed,
        checksum: sum,
        crossed: 0,
    })
}

/// The hand-written W1 over the numbers of `range`.
fn sum_range(range: std::ops::Range<u64>) -> u64 {
    range
        .map(|x| x.wrapping_mul(2).wrapping_add(1))
        .filter(|x| !x.is_multiple_of(3))
        .fold(0u64, u64::wrapping_add)
}

/// Runs the hand-written W1: one loop, or one loop per thread over contiguous chunks.
pub fn hand(ctx: &RunCtx) -> crate::Result<Outcome> {
    let n = crate::data::read_range(&crate::data::range_path(&ctx.data, ctx.records))?;
    let start = Instant::now();
    let parts = in_threads(ctx.threads, |i| Ok(sum_range(chunk(n, i, ctx.threads))))?;
    let sum = parts.into_iter().fold(0u64, u64::wrapping_add);
    Ok(Outcome {
        elapsed: start.elapsed(),
        checksum: sum,
        crossed: 0,
    })
}
