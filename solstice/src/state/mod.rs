//! State: key groups, keyed state of stateful stages, and the codec that serializes it.
//!
//! Checkpoint coordination and object-store backends live here too once they exist; operators and
//! the runtime depend on this module, never the other way round.

pub mod codec;
pub mod keyed;
pub mod keygroups;
