//! State: key groups, keyed state of stateful stages, the codec that serializes it, and where
//! checkpoints are kept: object-store backends ([`backend`]), the checkpoint layout and catalogue
//! ([`checkpoint`], [`manifest`]). Operators and the runtime depend on this module, never the
//! other way round; the coordinator that drives checkpoints lives in the runtime.

pub mod backend;
pub mod checkpoint;
pub mod codec;
pub mod keyed;
pub mod keygroups;
pub mod manifest;
