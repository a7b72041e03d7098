//! A source of the integers of a range, cut into contiguous chunks (its splits); for generated
//! workloads, tests and benchmarks.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::config::SourceConfig;
use crate::core::connector::{Source, SourceReader};
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

/// Splits of at least this many integers (fewer only for a shorter range)...
const MIN_CHUNK: u64 = 1 << 16;
/// ...and about this many splits in all.
const CHUNKS: u64 = 64;

impl RangeSource {
    /// The chunk size: `CHUNKS` chunks, none shorter than `MIN_CHUNK`.
    fn chunk(&self) -> u64 {
        let len = self.range.end.saturating_sub(self.range.start);
        len.div_ceil(CHUNKS).max(MIN_CHUNK)
    }
}

impl Source for RangeSource {
    type Item = u64;
    type Reader = RangeReader;

    fn splits(&self) -> Result<Vec<String>> {
        let chunk = self.chunk();
        let mut out = Vec::new();
        let mut at = self.range.start;
        while at < self.range.end {
            out.push(format!("range@{at}"));
            at = at.saturating_add(chunk);
        }
        Ok(out)
    }

    fn open(&self, split: &str, resume: Option<u64>) -> Result<RangeReader> {
        let start = split
            .strip_prefix("range@")
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| {
                self.range.contains(s) && (s - self.range.start).is_multiple_of(self.chunk())
            })
            .ok_or_else(|| {
                Error::Plan(format!(
                    "range source {:?}: `{split}` is not one of its splits (was the checkpoint \
                     taken with another range?)",
                    self.range
                ))
            })?;
        let end = start.saturating_add(self.chunk()).min(self.range.end);
        Ok(RangeReader {
            next: resume.unwrap_or(start).clamp(start, end),
            end,
        })
    }
}

/// Reads one chunk of a [`RangeSource`].
#[derive(Debug)]
pub struct RangeReader {
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

    fn position(&self) -> Result<u64> {
        Ok(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_range() {
        for range in [10..1_000_003, 0..1, 5..5, 0..(64 << 16) + 3] {
            let src = RangeSource::new(range.clone());
            let mut all = Vec::new();
            for split in src.splits().unwrap() {
                let mut r = src.open(&split, None).unwrap();
                while r.read_batch(&mut all, 4096).unwrap() {}
            }
            assert_eq!(all, range.clone().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_chunk_resumes_at_its_position_and_unknown_names_are_refused() {
        let src = RangeSource::new(0..1_000_000);
        let split = &src.splits().unwrap()[1];
        let mut r = src.open(split, None).unwrap();
        let mut first = Vec::new();
        r.read_batch(&mut first, 10).unwrap();
        let mut resumed = src.open(split, Some(r.position().unwrap())).unwrap();
        let mut next = Vec::new();
        resumed.read_batch(&mut next, 1).unwrap();
        assert_eq!(next[0], first[9] + 1);
        let e = src.open("range@7", None).unwrap_err().to_string();
        assert!(e.contains("range@7"), "{e}");
    }
}
