//! Connectors: files (JSON lines) and stdout. Each implements the traits in
//! [`crate::core::connector`]; the runtime knows none of them by name.

pub mod file;
pub mod print;

pub use file::{FileSink, FileSource};
pub use print::PrintSink;
