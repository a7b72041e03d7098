//! The Solstice benchmark suite: four workloads, each run through Solstice and through a
//! hand-written Rust implementation of the same computation, compared by throughput, peak memory
//! and a checksum of the result.
//!
//! | workload | computation |
//! |---|---|
//! | `w1` stateless | `u64` range → `x * 2 + 1` → keep `x % 3 != 0` → sum |
//! | `w2` keyed | `u64` range → key `splitmix64(i) % 100_000` → sum of `i` per key |
//! | `w3` etl | JSON-lines orders → keep `amount > 50` → project → JSON-lines files |
//! | `w4` wordcount | JSON-lines text → split into words → count per word |
//!
//! The library holds the workloads ([`workloads`]), their deterministic input data ([`data`]),
//! order-independent result digests ([`digest`]) and the measurement of one run ([`runner`]); the
//! `solstice-bench` binary runs every measurement in a child process of its own and prints the
//! comparison table.

#![warn(missing_docs)]

pub mod checkpoints;
pub mod data;
pub mod digest;
pub mod error;
pub mod ray;
pub mod runner;
pub mod sum_sink;
pub mod workloads;

pub use error::{BenchError, Result};
pub use runner::{Engine, Outcome, Report, RunCtx, Scale, Workload};
