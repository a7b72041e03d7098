//! Connectors: files (JSON lines), stdout, and integer ranges. Each implements the traits in
//! [`crate::core::connector`]; the runtime knows none of them by name.

pub mod file;
pub mod print;
pub mod range;

pub use file::{FileSink, FileSource};
pub use print::PrintSink;
pub use range::RangeSource;
