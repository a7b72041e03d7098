//! The job model: stage kinds, parallelism, the connector and operator interfaces, the logical
//! graph the builder records, the physical plan derived from it, and the keyed record types.
//!
//! Nothing here runs a task: the runtime deploys a physical plan into running subtasks and
//! supervises the run; the `job` module is the API over both.

pub mod connector;
pub(crate) mod graph;
pub(crate) mod keyed;
pub mod parallelism;
pub(crate) mod plan;
pub(crate) mod task;

use std::any::Any;

/// The bounds every record type satisfies: records are moved between threads in batches, cloned
/// where a stream fans out to several stages, and encoded where an edge crosses from one process
/// to another (which edges do is decided when the job runs, so every record type can be encoded).
#[diagnostic::on_unimplemented(
    message = "records of type `{Self}` cannot travel between stages",
    label = "records of this stage are `{Self}`",
    note = "a record type must be `Clone + Send + 'static` and derive `Serialize` and `Deserialize` \
            (edges between processes carry records encoded)"
)]
pub trait Data: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static {}
impl<T: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static> Data for T {}

/// A type-erased box used only while wiring tasks, never per record.
pub(crate) type AnyBox = Box<dyn Any + Send>;

/// Unboxes a wiring-time `AnyBox`, reporting a type mismatch as an internal error.
pub(crate) fn downcast<T: 'static>(b: AnyBox, what: &str) -> crate::error::Result<T> {
    b.downcast::<T>()
        .map(|b| *b)
        .map_err(|_| crate::error::Error::Internal(format!("type mismatch while wiring {what}")))
}

/// What a stage does, which decides how it is chained and partitioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StageKind {
    /// Produces records from a connector.
    Source,
    /// One record in, one record out.
    Map,
    /// One record in, any number out.
    FlatMap,
    /// Keeps the records a predicate accepts.
    Filter,
    /// Computes each record's key; its output is hash-partitioned into key groups.
    KeyBy,
    /// Keyed state per key, updated by each record of that key.
    Stateful,
    /// Writes records to a connector.
    Sink,
}

impl StageKind {
    /// The attribute that declares a stage of this kind.
    pub fn attribute(self) -> &'static str {
        match self {
            StageKind::Source => "source",
            StageKind::Map => "map",
            StageKind::FlatMap => "flat_map",
            StageKind::Filter => "filter",
            StageKind::KeyBy => "key_by",
            StageKind::Stateful => "stateful",
            StageKind::Sink => "sink",
        }
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.attribute())
    }
}
