//! Order-independent digests of results, so that outputs produced in any order (by any number of
//! subtasks or threads) compare equal when they hold the same records.

use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::data::splitmix64;
use crate::error::{BenchError, Result};

/// A stable 64-bit hash of bytes (FNV-1a, then splitmix64 to spread it).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix64(h)
}

/// The hash of a `(key, value)` pair of a keyed result.
pub fn hash_pair(key: u64, value: u64) -> u64 {
    splitmix64(key ^ splitmix64(value).rotate_left(17))
}

/// A multiset digest: the count of items and the wrapping sum of their hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    count: u64,
    sum: u64,
}

impl Digest {
    /// Adds an item by its hash.
    pub fn add(&mut self, hash: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(hash);
    }

    /// Items added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest as one number.
    pub fn value(&self) -> u64 {
        splitmix64(self.sum ^ splitmix64(self.count))
    }
}

/// The digest of every line of every `part-*` file in `dir` (what a JSON-lines sink wrote).
pub fn digest_part_files(dir: &Path) -> Result<Digest> {
    let mut digest = Digest::default();
    let entries = std::fs::read_dir(dir).map_err(|e| BenchError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BenchError::io(dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with("part-") {
            continue;
        }
        // Streamed line by line: reading a whole file at once would show in the run's peak RSS.
        let path = entry.path();
        let file = File::open(&path).map_err(|e| BenchError::io(&path, e))?;
        let mut reader = BufReader::with_capacity(256 << 10, file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| BenchError::io(&path, e))?;
            if n == 0 {
                break;
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if !text.is_empty() {
                digest.add(hash_bytes(text));
            }
        }
    }
    Ok(digest)
}

/// FxHash: the fast, non-keyed hasher of rustc, used by the hand-written implementations' hash
/// maps (what a performance-minded Rust programmer would pick over SipHash).
#[derive(Clone, Copy, Debug, Default)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// `BuildHasher` of [`FxHasher`].
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// A `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_order() {
        let (mut a, mut b) = (Digest::default(), Digest::default());
        for h in [1, 2, 3] {
            a.add(hash_pair(h, h * 10));
        }
        for h in [3, 1, 2] {
            b.add(hash_pair(h, h * 10));
        }
        assert_eq!(a.value(), b.value());
        b.add(hash_bytes(b"x"));
        assert_ne!(a.value(), b.value());
    }
}
