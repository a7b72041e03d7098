//! Deterministic input data: the same record count gives the same bytes on every run.
//!
//! Files are named after their record count inside the data directory and written once (to a
//! temporary name, renamed into place), so a directory can be reused across runs.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

/// The splitmix64 mixing function: a fast, well-distributed bijection on `u64`.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An input order of the ETL workload (W3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Order id, unique.
    pub id: u64,
    /// The ordering user.
    pub user: String,
    /// Amount, in `0.00..100.00`.
    pub amount: f64,
    /// Zero to three tags.
    pub tags: Vec<String>,
}

/// An output record of the ETL workload (W3): an order without its tags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sale {
    /// Order id.
    pub id: u64,
    /// The ordering user.
    pub user: String,
    /// Amount.
    pub amount: f64,
}

impl From<Order> for Sale {
    fn from(o: Order) -> Sale {
        Sale {
            id: o.id,
            user: o.user,
            amount: o.amount,
        }
    }
}

const TAGS: [&str; 8] = [
    "gift",
    "express",
    "bulk",
    "promo",
    "retail",
    "wholesale",
    "vip",
    "return",
];

/// Order number `i` of the ETL input.
pub fn order(i: u64) -> Order {
    let r = splitmix64(i ^ 0x0e7c_0003);
    let tags = (0..(r >> 60) % 4)
        .map(|t| TAGS[((r >> (40 + 3 * t)) & 7) as usize].to_string())
        .collect();
    Order {
        id: i,
        user: format!("user{:05}", r % 20_000),
        amount: ((r >> 20) % 10_000) as f64 / 100.0,
        tags,
    }
}

/// Number of distinct words of the wordcount vocabulary (W4).
pub const VOCABULARY: usize = 50_000;
/// Words per line of the wordcount input (the last line may hold fewer).
pub const WORDS_PER_LINE: u64 = 10;

/// The word of rank `rank` (0 is the most frequent): syllables of a consonant and a vowel, in
/// bijective base 85, so every rank has a distinct word and frequent words are short.
pub fn word(rank: usize) -> String {
    const CONSONANTS: &[u8] = b"bcdfghjklmnprstvz";
    const VOWELS: &[u8] = b"aeiou";
    let base = CONSONANTS.len() * VOWELS.len();
    let mut n = rank + 1;
    let mut out = Vec::new();
    while n > 0 {
        let d = (n - 1) % base;
        out.push(VOWELS[d % VOWELS.len()]);
        out.push(CONSONANTS[d / VOWELS.len()]);
        n = (n - 1) / base;
    }
    out.reverse();
    out.into_iter().map(char::from).collect()
}

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)` (Zipf, s = 1).
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks.
    pub fn new(n: usize) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (0..n)
            .map(|r| {
                acc += 1.0 / (r as f64 + 1.0);
                acc
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= acc);
        Zipf { cdf }
    }

    /// The rank drawn by the random word `random`.
    pub fn sample(&self, random: u64) -> usize {
        let u = (random >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// The range descriptor of W1 and W2: a file holding the number of records.
pub fn range_path(dir: &Path, records: u64) -> PathBuf {
    dir.join(format!("range-{records}.txt"))
}

/// The orders file of W3.
pub fn orders_path(dir: &Path, records: u64) -> PathBuf {
    dir.join(format!("orders-{records}.jsonl"))
}

/// The text lines file of W4 (`records` words in all).
pub fn lines_path(dir: &Path, records: u64) -> PathBuf {
    dir.join(format!("lines-{records}.jsonl"))
}

/// Writes `path` through `fill` unless it exists; the file appears complete or not at all.
fn write_once(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let temp = path.with_extension("partial");
    let file = File::create(&temp).map_err(|e| BenchError::io(&temp, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    fill(&mut out).map_err(|e| BenchError::io(&temp, e))?;
    out.flush().map_err(|e| BenchError::io(&temp, e))?;
    drop(out);
    std::fs::rename(&temp, path).map_err(|e| BenchError::io(path, e))
}

/// Writes the range descriptor of `records` numbers; returns its path.
pub fn write_range(dir: &Path, records: u64) -> Result<PathBuf> {
    let path = range_path(dir, records);
    write_once(&path, |out| writeln!(out, "{records}"))?;
    Ok(path)
}

/// Reads a range descriptor written by [`write_range`].
pub fn read_range(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(path, e))?;
    text.trim().parse().map_err(|e| {
        BenchError::Other(format!(
            "{}: not a record count ({e}): {text:?}",
            path.display()
        ))
    })
}

/// Writes `records` orders as JSON lines; returns the file's path.
pub fn write_orders(dir: &Path, records: u64) -> Result<PathBuf> {
    let path = orders_path(dir, records);
    write_once(&path, |out| {
        for i in 0..records {
            serde_json::to_writer(&mut *out, &order(i))?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    Ok(path)
}

/// Writes `records` Zipf-distributed words as JSON-string lines of [`WORDS_PER_LINE`] words
/// separated by spaces; returns the file's path.
pub fn write_lines(dir: &Path, records: u64) -> Result<PathBuf> {
    let path = lines_path(dir, records);
    let vocabulary: Vec<String> = (0..VOCABULARY).map(word).collect();
    let zipf = Zipf::new(VOCABULARY);
    write_once(&path, |out| {
        let mut line = String::new();
        let mut i = 0;
        while i < records {
            line.clear();
            let n = WORDS_PER_LINE.min(records - i);
            for k in 0..n {
                if k > 0 {
                    line.push(' ');
                }
                line.push_str(&vocabulary[zipf.sample(splitmix64(i + k))]);
            }
            i += n;
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    Ok(path)
}

/// Cuts `path` into `parts` byte ranges that start and end on line boundaries (a line belongs to
/// the range its first byte falls into, as in Solstice's file splits). Ranges may be empty.
pub fn line_ranges(path: &Path, parts: usize) -> Result<Vec<(u64, u64)>> {
    let len = std::fs::metadata(path)
        .map_err(|e| BenchError::io(path, e))?
        .len();
    let mut file = File::open(path).map_err(|e| BenchError::io(path, e))?;
    let mut bounds = vec![0];
    for i in 1..parts.max(1) {
        let cut = len * i as u64 / parts as u64;
        let prev = *bounds.last().unwrap_or(&0);
        let bound = if cut == 0 || cut <= prev {
            prev
        } else {
            // The line holding byte `cut - 1` ends the previous range.
            file.seek(SeekFrom::Start(cut - 1))
                .map_err(|e| BenchError::io(path, e))?;
            let mut reader = BufReader::with_capacity(64 << 10, &mut file);
            let mut skipped = Vec::new();
            let n = reader
                .read_until(b'\n', &mut skipped)
                .map_err(|e| BenchError::io(path, e))?;
            cut - 1 + n as u64
        };
        bounds.push(bound.min(len));
    }
    bounds.push(len);
    Ok(bounds.windows(2).map(|w| (w[0], w[1])).collect())
}

/// Calls `f` with every non-empty line (without its newline) of the byte range `range` of `path`.
pub fn for_each_line(
    path: &Path,
    range: (u64, u64),
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut file = File::open(path).map_err(|e| BenchError::io(path, e))?;
    file.seek(SeekFrom::Start(range.0))
        .map_err(|e| BenchError::io(path, e))?;
    let mut reader =
        BufReader::with_capacity(256 << 10, file.take(range.1.saturating_sub(range.0)));
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| BenchError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        let text = line.trim_ascii();
        if !text.is_empty() {
            f(text)?;
        }
    }
}

/// The orders file of W5: the W3 orders as Parquet.
pub fn orders_parquet_path(dir: &Path, records: u64) -> PathBuf {
    dir.join(format!("orders-{records}.parquet"))
}

/// Rows per row group of the W5 input (several row groups, so subtasks share the file).
pub const PARQUET_ROW_GROUP: usize = 128 * 1024;

/// The Arrow fields of `T`, as Solstice's Parquet sink derives them.
pub fn arrow_fields<T: serde::de::DeserializeOwned>() -> Result<Vec<arrow::datatypes::FieldRef>> {
    use serde_arrow::schema::{SchemaLike, TracingOptions};
    let options = TracingOptions::default()
        .allow_null_fields(true)
        .strings_as_large_utf8(false)
        .sequence_as_large_list(false);
    Vec::<arrow::datatypes::FieldRef>::from_type::<T>(options)
        .map_err(|e| BenchError::Parquet(format!("schema: {e}")))
}

/// A Parquet writer of `fields` into `file`: zstd, [`PARQUET_ROW_GROUP`] rows per row group.
pub fn parquet_writer(
    file: File,
    fields: &[arrow::datatypes::FieldRef],
) -> Result<parquet::arrow::ArrowWriter<File>> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP))
        .build();
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields.to_vec()));
    parquet::arrow::ArrowWriter::try_new(file, schema, Some(props))
        .map_err(|e| BenchError::Parquet(e.to_string()))
}

/// Writes `records` orders (the same as [`write_orders`]) as Parquet; returns the file's path.
pub fn write_orders_parquet(dir: &Path, records: u64) -> Result<PathBuf> {
    let path = orders_parquet_path(dir, records);
    if path.exists() {
        return Ok(path);
    }
    let temp = path.with_extension("partial");
    let file = File::create(&temp).map_err(|e| BenchError::io(&temp, e))?;
    let fields = arrow_fields::<Order>()?;
    let mut writer = parquet_writer(file, &fields)?;
    let mut next = 0;
    while next < records {
        let end = (next + 65_536).min(records);
        let chunk: Vec<Order> = (next..end).map(order).collect();
        let batch = serde_arrow::to_record_batch(&fields, &chunk)
            .map_err(|e| BenchError::Parquet(e.to_string()))?;
        writer
            .write(&batch)
            .map_err(|e| BenchError::Parquet(e.to_string()))?;
        next = end;
    }
    writer
        .close()
        .map_err(|e| BenchError::Parquet(e.to_string()))?;
    std::fs::rename(&temp, &path).map_err(|e| BenchError::io(&path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_and_frequent_ones_short() {
        let words: std::collections::HashSet<String> = (0..VOCABULARY).map(word).collect();
        assert_eq!(words.len(), VOCABULARY);
        assert_eq!(word(0).len(), 2);
        assert!(word(VOCABULARY - 1).len() <= 6);
    }

    #[test]
    fn zipf_favours_low_ranks() {
        let z = Zipf::new(1000);
        let low = (0..10_000u64)
            .filter(|&i| z.sample(splitmix64(i)) < 10)
            .count();
        assert!(low > 3_000, "{low}");
        assert!((0..10_000u64).all(|i| z.sample(splitmix64(i)) < 1000));
    }

    #[test]
    fn line_ranges_cover_every_line_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_orders(dir.path(), 1_000).expect("orders");
        for parts in [1, 2, 3, 7] {
            let mut ids = Vec::new();
            for range in line_ranges(&path, parts).expect("ranges") {
                for_each_line(&path, range, |line| {
                    let o: Order = serde_json::from_slice(line).expect("order");
                    ids.push(o.id);
                    Ok(())
                })
                .expect("read");
            }
            ids.sort_unstable();
            assert_eq!(ids, (0..1_000).collect::<Vec<_>>(), "{parts} parts");
        }
    }
}
