//! W2, keyed: the numbers `0..n`, keyed by `splitmix64(i) % 100_000`, summed per key.

use std::time::Instant;

use solstice::prelude::*;

use super::{chunk, in_threads, range_source, Outcome, RunCtx};
use crate::data::splitmix64;
use crate::digest::{hash_pair, Digest, FxHashMap};
use crate::sum_sink::SumSink;

/// Number of distinct keys.
pub const KEYS: u64 = 100_000;

/// The key of record `i`.
#[inline]
pub fn key_of(i: u64) -> u64 {
    splitmix64(i) % KEYS
}

/// The Solstice pipeline of W2.
#[solstice::pipeline]
pub mod keyed {
    use super::*;

    /// The numbers `0..n`.
    #[source]
    pub fn numbers(cfg: &SourceConfig) -> Result<RangeSource> {
        range_source(cfg)
    }

    /// One of 100 000 keys, spread by splitmix64.
    #[key_by]
    pub fn by_key(i: &u64) -> u64 {
        key_of(*i)
    }

    /// Sums the records of each key; emits nothing (the result is the final state).
    #[stateful]
    pub fn sum(acc: &mut u64, i: u64) -> Option<u64> {
        *acc = acc.wrapping_add(i);
        None
    }

    /// Receives nothing.
    #[sink]
    pub fn done(cfg: &SinkConfig) -> Result<SumSink> {
        SumSink::from_config(cfg)
    }

    dag! { numbers -> by_key -> sum -> done }
}

/// The digest of per-key sums.
fn digest<'a>(sums: impl Iterator<Item = (&'a u64, &'a u64)>) -> u64 {
    let mut d = Digest::default();
    for (&k, &s) in sums {
        d.add(hash_pair(k, s));
    }
    d.value()
}

/// Runs W2 through Solstice; the checksum is taken from the final keyed state.
pub fn solstice(ctx: &RunCtx) -> crate::Result<Outcome> {
    let range = crate::data::range_path(&ctx.data, ctx.records);
    let out = ctx.fresh_out()?;
    let (mut result, elapsed) =
        ctx.run_pipeline::<keyed::Pipeline>("w2", &[("numbers", &range)], &[("done", &out)])?;
    let state = keyed::State::from_result(&mut result)?;
    Ok(Outcome {
        elapsed,
        checksum: digest(state.sum.iter()),
        crossed: super::crossed(&result),
    })
}

/// Runs the hand-written W2: a hash map per thread over contiguous chunks, then a merge.
pub fn hand(ctx: &RunCtx) -> crate::Result<Outcome> {
    let n = crate::data::read_range(&crate::data::range_path(&ctx.data, ctx.records))?;
    let start = Instant::now();
    let mut parts = in_threads(ctx.threads, |i| {
        let mut sums: FxHashMap<u64, u64> = FxHashMap::default();
        for x in chunk(n, i, ctx.threads) {
            let acc = sums.entry(key_of(x)).or_insert(0);
            *acc = acc.wrapping_add(x);
        }
        Ok(sums)
    })?;
    let mut sums = parts.swap_remove(0);
    for part in parts {
        for (k, s) in part {
            let acc = sums.entry(k).or_insert(0);
            *acc = acc.wrapping_add(s);
        }
    }
    let elapsed = start.elapsed();
    Ok(Outcome {
        elapsed,
        checksum: digest(sums.iter()),
        crossed: 0,
    })
}
