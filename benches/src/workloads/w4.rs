//! W4, wordcount: JSON-lines text (each line a JSON string of words) → split into words → count
//! per word. The checksum digests the final counts.

use std::time::Instant;

use solstice::prelude::*;

use super::{in_threads, Outcome, RunCtx};
use crate::data::{for_each_line, line_ranges, lines_path};
use crate::digest::{hash_bytes, hash_pair, Digest, FxHashMap};
use crate::error::BenchError;
use crate::sum_sink::SumSink;

/// The Solstice pipeline of W4.
#[solstice::pipeline]
pub mod wordcount {
    use super::*;

    /// Lines of text: each JSON line is a string.
    #[source]
    pub fn lines(cfg: &SourceConfig) -> Result<FileSource<String>> {
        FileSource::from_config(cfg)
    }

    /// Splits a line into words at whitespace.
    #[flat_map]
    pub fn words(line: String) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    /// Partitions by the word itself, moving it into the key.
    #[key_by]
    pub fn by_word(w: String) -> (String, ()) {
        (w, ())
    }

    /// Counts each word; emits nothing (the result is the final state).
    #[stateful]
    pub fn count(n: &mut u64, _: ()) -> Option<u64> {
        *n += 1;
        None
    }

    /// Receives nothing.
    #[sink]
    pub fn done(cfg: &SinkConfig) -> Result<SumSink> {
        SumSink::from_config(cfg)
    }

    dag! { lines -> words -> by_word -> count -> done }
}

/// The digest of per-word counts.
fn digest<'a>(counts: impl Iterator<Item = (&'a String, &'a u64)>) -> u64 {
    let mut d = Digest::default();
    for (w, &n) in counts {
        d.add(hash_pair(hash_bytes(w.as_bytes()), n));
    }
    d.value()
}

/// Runs W4 through Solstice; the checksum is taken from the final keyed state.
pub fn solstice(ctx: &RunCtx) -> crate::Result<Outcome> {
    let input = lines_path(&ctx.data, ctx.records);
    let out = ctx.fresh_out()?;
    let config = ctx.config(&[("lines", &input)], &[("done", &out)])?;
    let start = Instant::now();
    let (_, state) = wordcount::run(config)?;
    let elapsed = start.elapsed();
    Ok(Outcome {
        elapsed,
        checksum: digest(state.count.iter()),
        crossed: 0,
    })
}

/// Runs the hand-written W4: a hash map per thread over one byte range of the input each, then a
/// merge. A word is allocated only the first time its thread sees it.
pub fn hand(ctx: &RunCtx) -> crate::Result<Outcome> {
    let input = lines_path(&ctx.data, ctx.records);
    let start = Instant::now();
    let ranges = line_ranges(&input, ctx.threads)?;
    let mut parts = in_threads(ctx.threads, |i| {
        let mut counts: FxHashMap<String, u64> = FxHashMap::default();
        for_each_line(&input, ranges[i], |line| {
            let text: String =
                serde_json::from_slice(line).map_err(|e| BenchError::json(&input, e))?;
            for w in text.split_whitespace() {
                match counts.get_mut(w) {
                    Some(n) => *n += 1,
                    None => {
                        counts.insert(w.to_owned(), 1);
                    }
                }
            }
            Ok(())
        })?;
        Ok(counts)
    })?;
    let mut counts = parts.swap_remove(0);
    for part in parts {
        for (w, n) in part {
            *counts.entry(w).or_insert(0) += n;
        }
    }
    let elapsed = start.elapsed();
    Ok(Outcome {
        elapsed,
        checksum: digest(counts.iter()),
        crossed: 0,
    })
}
