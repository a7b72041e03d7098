//! Solstice: a typed batch-and-streaming dataflow framework.
//!
//! Annotate plain functions inside a module with `#[solstice::pipeline]`; the macro type-checks the
//! DAG at compile time and generates the job, its state struct and a command-line entry point. The
//! runtime runs the job on a work-stealing thread pool.
//!
//! ```
//! use solstice::prelude::*;
//!
//! #[solstice::pipeline]
//! pub mod doubled {
//!     use super::*;
//!
//!     #[source]
//!     pub fn numbers(cfg: &SourceConfig) -> Result<FileSource<u64>> { FileSource::from_config(cfg) }
//!
//!     #[map(parallelism = 2)]
//!     pub fn double(x: u64) -> u64 { x * 2 }
//!
//!     #[sink]
//!     pub fn out(cfg: &SinkConfig) -> Result<PrintSink<u64>> { PrintSink::from_config(cfg) }
//!
//!     dag! { numbers -> double -> out }
//! }
//!
//! fn main() {
//!     assert_eq!(doubled::double(21), 42); // stage functions stay plain functions
//! }
//! ```
//!
//! Module map: [`core`] (job model, plan), [`job`] (builder, run), [`connectors`], [`state`]
//! (key groups, keyed state, codec), [`config`] (YAML), [`cli`] (what a workflow's `main` calls),
//! [`Pipeline`] (what a `#[pipeline]` module implements).

#![warn(missing_docs)]

pub mod build;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod core;
pub mod error;
pub mod job;
pub mod metrics;
pub(crate) mod operators;
mod pipeline;
mod ray;
pub(crate) mod runtime;
pub mod state;

pub use error::{Error, Result};
pub use pipeline::Pipeline;
pub use solstice_macros::pipeline;

/// What a workflow author needs, in one import.
pub mod prelude {
    pub use crate::config::{Config, SinkConfig, SourceConfig};
    pub use crate::connectors::{CollectSink, FileSink, FileSource, PrintSink, RangeSource};
    pub use crate::core::connector::{Sink, SinkWriter, Source, SourceReader};
    pub use crate::core::parallelism::Parallelism;
    pub use crate::job::{Job, JobResult};
    pub use crate::state::keyed::KeyedState;
    pub use crate::{Error, Result};
    pub use serde::{Deserialize, Serialize};
    pub use solstice_macros::pipeline;
}

/// The surface generated code uses. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::cli;
    pub use crate::config::{Config, SinkConfig, SourceConfig};
    pub use crate::core::connector::{Sink, Source};
    pub use crate::core::keyed::KeyValue;
    pub use crate::core::parallelism::Parallelism;
    pub use crate::job::{Job, JobBuilder, JobResult, KeyedStream, Stream};
    pub use crate::pipeline::Pipeline;
    pub use crate::state::codec;
    pub use crate::state::keyed::KeyedState;
    pub use serde;
    pub use std::iter::{IntoIterator, Iterator};
    pub use std::option::Option;
    pub use std::result::Result as StdResult;
    pub use std::string::String;

    /// Generated pipelines return this result type.
    pub type Result<T> = crate::Result<T>;
}
