//! Keyed state of a stateful stage, stored per key group so that it can move between subtasks.

use std::collections::HashMap;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::keygroups::StableBuildHasher;

/// The bounds a key of a keyed stage must satisfy.
pub trait Key: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<K: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static> Key for K {}

/// The bounds a state type of a stateful stage must satisfy.
pub trait StateValue: Default + Send + Serialize + DeserializeOwned + 'static {}
impl<S: Default + Send + Serialize + DeserializeOwned + 'static> StateValue for S {}

/// One map from key to state per key group.
///
/// A subtask holds the key groups it owns; the state of a whole stage is the union of its
/// subtasks' key groups. Serialized as a list of `(key group, [(key, state)])` in key-group order,
/// so that any subset of key groups can be restored into any subtask.
#[derive(Debug, Clone)]
pub struct KeyedState<K, S> {
    groups: Vec<(usize, HashMap<K, S, StableBuildHasher>)>,
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
            groups: groups.map(|kg| (kg, HashMap::default())).collect(),
        }
    }

    /// The state of `key` in key group `kg`, created with `S::default()` on first use.
    ///
    /// `slot` is the index of `kg` within this state (`kg - first key group`), which the stateful
    /// operator computes once per record.
    #[inline]
    pub(crate) fn slot_entry(&mut self, slot: usize, key: K) -> &mut S {
        self.groups[slot].1.entry(key).or_default()
    }

    /// Number of key groups held.
    pub(crate) fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The state of `key`, if any.
    pub fn get(&self, key: &K) -> Option<&S> {
        self.groups.iter().find_map(|(_, m)| m.get(key))
    }

    /// Number of keys with state.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|(_, m)| m.len()).sum()
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
        self.groups.iter().flat_map(|(_, m)| m.iter())
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
            .map(|(kg, m)| (*kg, m.iter().collect()))
            .collect();
        groups.serialize(serializer)
    }
}

impl<'de, K: Key, S: StateValue> Deserialize<'de> for KeyedState<K, S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let groups: Vec<(usize, Vec<(K, S)>)> = Vec::deserialize(deserializer)?;
        let mut groups: Vec<(usize, HashMap<K, S, StableBuildHasher>)> = groups
            .into_iter()
            .map(|(kg, entries)| (kg, entries.into_iter().collect()))
            .collect();
        groups.sort_by_key(|(kg, _)| *kg);
        Ok(KeyedState { groups })
    }
}
