//! Connectors: files (JSON lines, CSV, Parquet), stdout, integer ranges, and an in-memory
//! collecting sink. Each implements the traits in [`crate::core::connector`] and reads its own
//! options from its config section ([`crate::config::SourceConfig::options`]); the runtime knows
//! none of them by name.

pub mod collect;
pub mod file;
pub mod print;
pub mod range;

pub use collect::CollectSink;
pub use file::{FileSink, FileSource};
pub use print::PrintSink;
pub use range::RangeSource;
