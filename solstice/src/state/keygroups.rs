//! Key groups: the unit in which keyed state is partitioned and moved.
//!
//! A key hashes (with a hasher that is stable across processes and runs) into one of `max` key
//! groups; subtask `i` of a stage with parallelism `p` owns the contiguous range
//! `[i * max / p, (i + 1) * max / p)`.

use std::hash::{Hash, Hasher};
use std::ops::Range;

/// Default number of key groups (the maximum parallelism of a keyed stage).
pub const DEFAULT_KEY_GROUPS: usize = 128;

/// A fast 64-bit hasher whose output depends only on the bytes written: the same key maps to the
/// same key group in every process, on every run.
#[derive(Clone, Copy, Debug)]
pub struct StableHasher {
    state: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher {
            state: 0x243f_6a88_85a3_08d3,
        }
    }
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl StableHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // splitmix64 finalizer: spreads low-entropy keys over all bits.
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The stable 64-bit hash of a key.
#[inline]
pub fn hash_key<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = StableHasher::default();
    key.hash(&mut h);
    h.finish()
}

/// The key group of a key, in `0..max_key_groups`.
#[inline]
pub fn key_group<K: Hash + ?Sized>(key: &K, max_key_groups: usize) -> usize {
    group_of_hash(hash_key(key), max_key_groups)
}

/// The key group of a key whose stable hash is `hash`.
#[inline]
pub fn group_of_hash(hash: u64, max_key_groups: usize) -> usize {
    // Multiply-shift maps the hash uniformly onto the range without a division. It uses the
    // high bits of the hash; maps inside a key group use the low bits (see `state::keyed`).
    ((u128::from(hash) * max_key_groups as u128) >> 64) as usize
}

/// The subtask of a stage with `parallelism` subtasks that owns key group `kg`.
#[inline]
pub fn owner_of(kg: usize, max_key_groups: usize, parallelism: usize) -> usize {
    kg * parallelism / max_key_groups
}

/// The contiguous range of key groups owned by `subtask`.
pub fn range_of(subtask: usize, max_key_groups: usize, parallelism: usize) -> Range<usize> {
    let start = (subtask * max_key_groups).div_ceil(parallelism);
    let end = ((subtask + 1) * max_key_groups).div_ceil(parallelism);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hash_is_stable() {
        // Pinned: a change here moves every key to another key group and breaks old checkpoints.
        assert_eq!(
            key_group("alice", 128),
            key_group(&"alice".to_string(), 128)
        );
        assert_eq!(hash_key(&42u64), hash_key(&42u64));
        assert_ne!(hash_key("alice"), hash_key("bob"));
    }

    proptest! {
        #[test]
        fn ranges_partition_all_groups(max in 1usize..1024, p in 1usize..64) {
            prop_assume!(p <= max);
            let mut next = 0;
            for s in 0..p {
                let r = range_of(s, max, p);
                prop_assert_eq!(r.start, next);
                prop_assert!(!r.is_empty());
                next = r.end;
            }
            prop_assert_eq!(next, max);
        }

        #[test]
        fn owner_agrees_with_range(max in 1usize..1024, p in 1usize..64, kg_seed in any::<usize>()) {
            prop_assume!(p <= max);
            let kg = kg_seed % max;
            let owner = owner_of(kg, max, p);
            prop_assert!(range_of(owner, max, p).contains(&kg));
        }

        #[test]
        fn key_group_in_range(key in any::<u64>(), max in 1usize..4096) {
            prop_assert!(key_group(&key, max) < max);
        }
    }
}
