//! The records of a keyed stream: what a key_by stage sends to a stateful stage.
//!
//! They live in `core` because both sides use them: the key_by operator makes them, the
//! runtime routes them by key group, the stateful operator reads them.

/// A record with its key and key group, as sent from a key_by stage to a stateful stage.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
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
