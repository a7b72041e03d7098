//! A source of the integers of a range, split into contiguous chunks across subtasks; for
//! generated workloads, tests and benchmarks.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::config::SourceConfig;
use crate::core::connector::{Positions, Source, SourceReader, FINISHED};
use crate::error::{Error, Result};

/// Emits every `u64` of a range once.
#[derive(Clone, Debug)]
pub struct RangeSource {
    range: Range<u64>,
}

/// `sources.<name>:` of a [`RangeSource`]: `{ start: 0, end: 1000000 }` emits `start..end`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RangeOptions {
    /// The first integer (default 0).
    #[serde(default)]
    pub start: u64,
    /// One past the last integer (required).
    pub end: u64,
}

impl RangeSource {
    /// A source of `range`.
    pub fn new(range: Range<u64>) -> Self {
        RangeSource { range }
    }

    /// The source of `sources.<stage>` ([`RangeOptions`]).
    pub fn from_config(cfg: &SourceConfig) -> Result<Self> {
        let RangeOptions { start, end } = cfg.options()?;
        if start > end {
            return Err(cfg.error("start", format!("{start} is after `end` ({end})")));
        }
        Ok(RangeSource::new(start..end))
    }
}

impl Source for RangeSource {
    type Item = u64;
    type Reader = RangeReader;

    fn open_at(
        &self,
        subtask: usize,
        parallelism: usize,
        positions: &Positions,
    ) -> Result<RangeReader> {
        let mut reader = self.open(subtask, parallelism)?;
        if !positions.is_empty() {
            let key = format!("range@{}", reader.start);
            let at = positions.get(&key).copied().ok_or_else(|| {
                Error::Plan(format!(
                    "range source: the checkpoint has no position for {key} (was it taken with \
                     another range or parallelism?)"
                ))
            })?;
            reader.next = at.min(reader.end);
        }
        Ok(reader)
    }

    fn open(&self, subtask: usize, parallelism: usize) -> Result<RangeReader> {
        let len = u128::from(self.range.end.saturating_sub(self.range.start));
        let at = |i: usize| self.range.start + (len * i as u128 / parallelism as u128) as u64;
        Ok(RangeReader {
            start: at(subtask),
            next: at(subtask),
            end: at(subtask + 1),
        })
    }
}

/// Reads one subtask's chunk of a [`RangeSource`].
#[derive(Debug)]
pub struct RangeReader {
    start: u64,
    next: u64,
    end: u64,
}

impl SourceReader<u64> for RangeReader {
    fn read_batch(&mut self, out: &mut Vec<u64>, max: usize) -> Result<bool> {
        let stop = self.end.min(self.next.saturating_add(max as u64));
        out.extend(self.next..stop);
        self.next = stop;
        Ok(self.next < self.end)
    }

    fn position(&self) -> Result<Positions> {
        let at = if self.next >= self.end {
            FINISHED
        } else {
            self.next
        };
        Ok(Positions::from([(format!("range@{}", self.start), at)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_range() {
        let src = RangeSource::new(10..1_000_003);
        for p in [1, 2, 3, 8] {
            let mut all = Vec::new();
            for s in 0..p {
                let mut r = src.open(s, p).unwrap();
                while r.read_batch(&mut all, 4096).unwrap() {}
            }
            all.sort_unstable();
            assert_eq!(all, (10..1_000_003).collect::<Vec<_>>());
        }
    }
}
