//! Keyed state of a stateful stage, stored per key group so that it can move between subtasks.

use std::hash::Hash;

use hashbrown::hash_table::{Entry, HashTable};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::codec;
use super::keygroups::hash_key;
use super::manifest::{key_group_part, key_groups_of_part};
use crate::error::{Error, Result};

/// The bounds a key of a keyed stage must satisfy.
pub trait Key: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<K: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static> Key for K {}

/// The bounds a state type of a stateful stage must satisfy.
pub trait StateValue: Default + Send + Serialize + DeserializeOwned + 'static {}
impl<S: Default + Send + Serialize + DeserializeOwned + 'static> StateValue for S {}

/// The hash a key-group table files a key under, from the key's stable hash.
///
/// Key groups are chosen by the top bits of the stable hash, so every key of one group shares
/// them; the tables' probe tags come from the top bits too. Rotating gives each table hash bits
/// that still differ between the keys of a group.
#[inline]
fn table_hash(hash: u64) -> u64 {
    hash.rotate_left(32)
}

/// One table from key to state per key group.
///
/// A subtask holds the key groups it owns; the state of a whole stage is the union of its
/// subtasks' key groups. Serialized as a list of `(key group, [(key, state)])` in key-group
/// order, so that any subset of key groups can be restored into any subtask.
pub struct KeyedState<K, S> {
    groups: Vec<(usize, HashTable<(K, S)>)>,
}

impl<K: std::fmt::Debug, S: std::fmt::Debug> std::fmt::Debug for KeyedState<K, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.groups
                    .iter()
                    .flat_map(|(_, t)| t.iter().map(|(k, s)| (k, s))),
            )
            .finish()
    }
}

impl<K: Clone, S: Clone> Clone for KeyedState<K, S> {
    fn clone(&self) -> Self {
        KeyedState {
            groups: self.groups.clone(),
        }
    }
}

impl<K, S> Default for KeyedState<K, S> {
    fn default() -> Self {
        KeyedState { groups: Vec::new() }
    }
}

impl<K: Key, S: StateValue> KeyedState<K, S> {
    /// Empty state for the contiguous key-group range `groups`.
    pub fn for_range(groups: std::ops::Range<usize>) -> Self {
        KeyedState {
            groups: groups.map(|kg| (kg, HashTable::new())).collect(),
        }
    }

    /// The state of `key` (whose stable hash is `hash`) in the key group at index `slot` of
    /// this state, created with `S::default()` on first use.
    #[inline]
    pub(crate) fn slot_entry(&mut self, slot: usize, hash: u64, key: K) -> (&K, &mut S) {
        let table = &mut self.groups[slot].1;
        let entry = table.entry(
            table_hash(hash),
            |(k, _)| *k == key,
            |(k, _)| table_hash(hash_key(k)),
        );
        let (k, s) = match entry {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert((key, S::default())).into_mut(),
        };
        (&*k, s)
    }

    /// The state held, as checkpoint parts of contiguous key-group ranges: each part is named
    /// by [`key_group_part`] and holds whole groups, cut when it reaches `target_bytes` (so
    /// small state is one part per subtask, one file to write, and large state several, written
    /// in parallel). A part is an index, `[(key group, byte length)]` encoded with the codec,
    /// followed by each group's entries, codec-encoded on their own.
    pub(crate) fn encode_parts(&self, target_bytes: usize) -> Result<Vec<(String, Vec<u8>)>> {
        let mut parts = Vec::new();
        let mut pending: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut pending_bytes = 0;
        for (i, (kg, table)) in self.groups.iter().enumerate() {
            let entries: Vec<(&K, &S)> = table.iter().map(|(k, s)| (k, s)).collect();
            let bytes = codec::encode(&entries)?;
            pending_bytes += bytes.len();
            pending.push((*kg, bytes));
            if pending_bytes >= target_bytes || i + 1 == self.groups.len() {
                parts.push(bundle(std::mem::take(&mut pending))?);
                pending_bytes = 0;
            }
        }
        Ok(parts)
    }

    /// Restores, from part `name` (written by [`KeyedState::encode_parts`], perhaps by a subtask
    /// with other groups), the groups this state owns. `Ok(false)` if the part holds none.
    pub(crate) fn restore_part(&mut self, name: &str, bytes: &[u8]) -> Result<bool> {
        let Some(range) = key_groups_of_part(name) else {
            return Err(Error::Codec(format!(
                "`{name}` is not the name of a key-group part"
            )));
        };
        if !self.groups.iter().any(|(kg, _)| range.contains(kg)) {
            return Ok(false);
        }
        let (index, mut at): (Vec<(u64, u64)>, usize) = codec::decode_prefix(bytes)?;
        for (kg, len) in index {
            let end = usize::try_from(len)
                .ok()
                .and_then(|len| at.checked_add(len))
                .filter(|&end| end <= bytes.len())
                .ok_or_else(|| {
                    Error::Codec(format!(
                        "part `{name}`: key group {kg} runs past the end of the part"
                    ))
                })?;
            let kg = usize::try_from(kg)
                .ok()
                .filter(|kg| range.contains(kg))
                .ok_or_else(|| {
                    Error::Codec(format!(
                        "part `{name}` holds key group {kg}, outside its name's range"
                    ))
                })?;
            if let Some(table) = self
                .groups
                .iter_mut()
                .find(|(g, _)| *g == kg)
                .map(|(_, t)| t)
            {
                let entries: Vec<(K, S)> = codec::decode(&bytes[at..end])?;
                table.clear();
                for (k, s) in entries {
                    let h = table_hash(hash_key(&k));
                    table.insert_unique(h, (k, s), |(k, _)| table_hash(hash_key(k)));
                }
            }
            at = end;
        }
        if at != bytes.len() {
            return Err(Error::Codec(format!(
                "part `{name}`: {} bytes after its last key group",
                bytes.len() - at
            )));
        }
        Ok(true)
    }

    /// Number of key groups held.
    pub(crate) fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The state of `key`, if any.
    pub fn get(&self, key: &K) -> Option<&S> {
        let h = table_hash(hash_key(key));
        self.groups
            .iter()
            .find_map(|(_, t)| t.find(h, |(k, _)| k == key).map(|(_, s)| s))
    }

    /// Number of keys with state.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|(_, t)| t.len()).sum()
    }

    /// True when no key has state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Key groups held here, in ascending order.
    pub fn key_groups(&self) -> impl Iterator<Item = usize> + '_ {
        self.groups.iter().map(|(kg, _)| *kg)
    }

    /// All `(key, state)` pairs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &S)> {
        self.groups
            .iter()
            .flat_map(|(_, t)| t.iter().map(|(k, s)| (k, s)))
    }

    /// Moves all key groups of `other` into `self`, keeping key groups sorted.
    pub fn merge(&mut self, other: KeyedState<K, S>) {
        self.groups.extend(other.groups);
        self.groups.sort_by_key(|(kg, _)| *kg);
    }

    /// A sorted `key -> state` map, convenient for comparing results in tests.
    pub fn to_sorted(&self) -> std::collections::BTreeMap<K, S>
    where
        K: Ord,
        S: Clone,
    {
        self.iter().map(|(k, s)| (k.clone(), s.clone())).collect()
    }
}

impl<K: Key, S: Serialize> Serialize for KeyedState<K, S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        let groups: Vec<(usize, Vec<(&K, &S)>)> = self
            .groups
            .iter()
            .map(|(kg, t)| (*kg, t.iter().map(|(k, s)| (k, s)).collect()))
            .collect();
        groups.serialize(serializer)
    }
}

impl<'de, K: Key, S: StateValue> Deserialize<'de> for KeyedState<K, S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let groups: Vec<(usize, Vec<(K, S)>)> = Vec::deserialize(deserializer)?;
        let mut groups: Vec<(usize, HashTable<(K, S)>)> = groups
            .into_iter()
            .map(|(kg, entries)| {
                let mut table = HashTable::with_capacity(entries.len());
                for (k, s) in entries {
                    let h = table_hash(hash_key(&k));
                    table.insert_unique(h, (k, s), |(k, _)| table_hash(hash_key(k)));
                }
                (kg, table)
            })
            .collect();
        groups.sort_by_key(|(kg, _)| *kg);
        Ok(KeyedState { groups })
    }
}

/// One key-group part: the index of `groups` (contiguous, in order, at least one), then their
/// bytes.
fn bundle(groups: Vec<(usize, Vec<u8>)>) -> Result<(String, Vec<u8>)> {
    let (first, last) = match (groups.first(), groups.last()) {
        (Some(f), Some(l)) => (f.0, l.0),
        _ => return Err(Error::Internal("an empty key-group part".into())),
    };
    let index: Vec<(u64, u64)> = groups
        .iter()
        .map(|(kg, b)| (*kg as u64, b.len() as u64))
        .collect();
    let mut out = codec::encode(&index)?;
    out.reserve(groups.iter().map(|(_, b)| b.len()).sum());
    for (_, bytes) in &groups {
        out.extend_from_slice(bytes);
    }
    Ok((key_group_part(first, last), out))
}
