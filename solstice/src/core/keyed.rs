//! The records of a keyed stream: what a key_by stage sends to a stateful stage.
//!
//! They live in `core` because both sides use them: the key_by operator makes them, the
//! runtime routes them by key group, the stateful operator reads them.

/// A record with its key and key group, as sent from a key_by stage to a stateful stage.
///
/// Between processes it travels as `(key, value)`: the receiver hashes the key again, which
/// costs less than the eight bytes of the hash on the wire.
#[derive(Clone, Debug)]
pub struct Keyed<K, V> {
    /// The stable hash of `key`; its key group and its slot in keyed state derive from it.
    pub hash: u64,
    /// The key computed by the key_by stage.
    pub key: K,
    /// The record.
    pub value: V,
}

/// The result of a key_by stage that takes its record by value: the key, and the record to send
/// on (often the rest of the input).
#[diagnostic::on_unimplemented(
    message = "a #[key_by] stage that takes its record by value returns `(Key, Value)`, not `{Self}`"
)]
pub trait KeyValue {
    /// The key.
    type Key;
    /// The record sent to the stateful stage.
    type Value;
    /// Splits into key and value.
    fn split(self) -> (Self::Key, Self::Value);
}

impl<K, V> KeyValue for (K, V) {
    type Key = K;
    type Value = V;
    #[inline]
    fn split(self) -> (K, V) {
        self
    }
}

impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for Keyed<K, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&self.key)?;
        tuple.serialize_element(&self.value)?;
        tuple.end()
    }
}

impl<'de, K, V> serde::Deserialize<'de> for Keyed<K, V>
where
    K: serde::Deserialize<'de> + std::hash::Hash,
    V: serde::Deserialize<'de>,
{
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (key, value) = <(K, V)>::deserialize(deserializer)?;
        Ok(Keyed {
            hash: crate::state::keygroups::hash_key(&key),
            key,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Keyed;
    use crate::state::codec;
    use crate::state::keygroups::hash_key;

    #[test]
    fn crosses_without_its_hash_and_gets_it_back() {
        let batch: Vec<Keyed<String, u64>> = ["a", "bb", "ccc"]
            .iter()
            .enumerate()
            .map(|(i, k)| Keyed {
                hash: hash_key(&k.to_string()),
                key: k.to_string(),
                value: i as u64,
            })
            .collect();
        let mut bytes = Vec::new();
        codec::encode_batch_into(&batch[..], &mut bytes).unwrap();
        let plain: Vec<(String, u64)> = batch.iter().map(|r| (r.key.clone(), r.value)).collect();
        let mut plain_bytes = Vec::new();
        codec::encode_batch_into(&plain[..], &mut plain_bytes).unwrap();
        assert_eq!(bytes, plain_bytes, "the hash is not on the wire");
        let mut back: Vec<Keyed<String, u64>> = Vec::new();
        codec::decode_append::<_, { 1 << 20 }>(&bytes, &mut back).unwrap();
        for (a, b) in batch.iter().zip(&back) {
            assert_eq!((a.hash, &a.key, a.value), (b.hash, &b.key, b.value));
        }
        assert_eq!(back.len(), 3);
    }
}
