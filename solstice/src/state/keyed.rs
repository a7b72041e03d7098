//! Keyed state of a stateful stage, stored per key group so that it can move between subtasks.

use std::hash::Hash;

use hashbrown::hash_table::{Entry, HashTable};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::keygroups::hash_key;

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

    /// Each key group held, encoded with the codec on its own (for per-group checkpoint parts).
    pub(crate) fn encode_groups(&self) -> crate::error::Result<Vec<(usize, Vec<u8>)>> {
        self.groups
            .iter()
            .map(|(kg, t)| {
                let entries: Vec<(&K, &S)> = t.iter().map(|(k, s)| (k, s)).collect();
                Ok((*kg, super::codec::encode(&entries)?))
            })
            .collect()
    }

    /// Puts the entries of key group `kg`, decoded from `bytes` (written by `encode_groups`),
    /// into this state, which must own that group.
    pub(crate) fn restore_group(&mut self, kg: usize, bytes: &[u8]) -> crate::error::Result<()> {
        let entries: Vec<(K, S)> = super::codec::decode(bytes)?;
        let table = self
            .groups
            .iter_mut()
            .find(|(g, _)| *g == kg)
            .map(|(_, t)| t)
            .ok_or_else(|| {
                crate::error::Error::Internal(format!("key group {kg} is not owned here"))
            })?;
        table.clear();
        for (k, s) in entries {
            let h = table_hash(hash_key(&k));
            table.insert_unique(h, (k, s), |(k, _)| table_hash(hash_key(k)));
        }
        Ok(())
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
